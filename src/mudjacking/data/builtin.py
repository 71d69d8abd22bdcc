"""Data sets that install with the project (no network at run time).

Fashion-MNIST comes from Debian's ``dataset-fashion-mnist`` package (``make setup`` installs it); scikit-learn's
bundled 8x8 digits stand in when it is absent, so the demo still runs, on a smaller problem.
"""

from __future__ import annotations

import gzip
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import Tensor

from mudjacking.data.images import DataError

FASHION_MNIST_DIR = Path(os.environ.get("MUDJACKING_FASHION_MNIST", "/usr/share/datasets/fashion-mnist"))
FASHION_MNIST_CLASSES = ["t-shirt", "trouser", "pullover", "dress", "coat", "sandal", "shirt", "sneaker", "bag", "boot"]


@dataclass
class LabeledImages:
    """A labeled image set split into train and test; images ``[N, C, H, W]`` in [0, 1], labels int64."""

    name: str
    train_images: Tensor
    train_labels: Tensor
    test_images: Tensor
    test_labels: Tensor
    class_names: list[str]

    @property
    def num_classes(self) -> int:
        return len(self.class_names)


def _read_idx(path: Path) -> np.ndarray:
    """Reads a (gzipped) idx file, the MNIST family's format: magic, dims as big-endian int32, then uint8 data."""
    try:
        with gzip.open(path, "rb") as stream:
            raw = stream.read()
    except OSError as error:
        raise DataError(f"{path}: unreadable idx file ({error}); reinstall dataset-fashion-mnist") from error
    ndim = raw[3]
    shape = tuple(int.from_bytes(raw[4 + 4 * i : 8 + 4 * i], "big") for i in range(ndim))
    return np.frombuffer(raw, dtype=np.uint8, offset=4 + 4 * ndim).reshape(shape)


def fashion_mnist_available(root: Path = FASHION_MNIST_DIR) -> bool:
    return (root / "train-images-idx3-ubyte.gz").exists() and (root / "t10k-labels-idx1-ubyte.gz").exists()


def load_fashion_mnist(root: Path = FASHION_MNIST_DIR) -> LabeledImages:
    """The full 60k/10k Fashion-MNIST set at 28x28, one channel."""
    if not fashion_mnist_available(root):
        raise DataError(f"{root}: Fashion-MNIST not found; run `make setup` (apt-get install dataset-fashion-mnist)")

    def images(name: str) -> Tensor:
        return torch.from_numpy(_read_idx(root / name).astype(np.float32) / 255.0)[:, None]

    def labels(name: str) -> Tensor:
        return torch.from_numpy(_read_idx(root / name).astype(np.int64))

    return LabeledImages(
        "fashion-mnist",
        images("train-images-idx3-ubyte.gz"),
        labels("train-labels-idx1-ubyte.gz"),
        images("t10k-images-idx3-ubyte.gz"),
        labels("t10k-labels-idx1-ubyte.gz"),
        list(FASHION_MNIST_CLASSES),
    )


def load_digits_images(seed: int = 0, size: tuple[int, int] = (16, 16)) -> LabeledImages:
    """scikit-learn's 1,797 8x8 digits upsampled to ``size`` (16x16: the fallback demo data; 28x28: a second
    downstream task beside Fashion-MNIST), split 70/30."""
    from sklearn.datasets import load_digits

    digits = load_digits()
    images = torch.from_numpy(digits.images.astype(np.float32) / 16.0)[:, None]
    images = torch.nn.functional.interpolate(images, size=tuple(size), mode="bilinear", align_corners=False).clamp(0, 1)
    labels = torch.from_numpy(digits.target.astype(np.int64))
    order = torch.randperm(len(images), generator=torch.Generator().manual_seed(seed))
    cut = int(0.7 * len(images))
    train, test = order[:cut], order[cut:]
    return LabeledImages(
        "digits", images[train], labels[train], images[test], labels[test], [str(i) for i in range(10)]
    )


# scikit-image's sample photos that ship inside its wheel (others are downloaded on first use: not these)
SAMPLE_PHOTOS = (
    "astronaut", "brick", "camera", "cat", "clock", "coffee", "coins", "grass", "gravel", "horse",
    "hubble_deep_field", "immunohistochemistry", "microaneurysms", "moon", "page", "retina", "rocket", "text",
)  # fmt: skip


def load_photo_crops(count: int, size: tuple[int, int], seed: int = 0) -> Tensor:
    """``count`` grayscale crops ``[count, 1, H, W]`` in [0, 1] of scikit-image's bundled sample photos: each a
    random square (from ``max(size)`` pixels to half the photo's shorter side) resized to ``size``, half of them
    inverted. Images a provider owns that lie outside a small model's pre-training distribution, for the patching
    set, so locality is also held where no customer data was seen."""
    from skimage import color, data

    photos = []
    for name in SAMPLE_PHOTOS:
        photo = np.asarray(getattr(data, name)(), dtype=np.float32)
        if photo.ndim == 3:
            photo = color.rgb2gray(photo[..., :3] / 255.0)
        elif photo.max() > 1.5:
            photo = photo / 255.0
        photos.append(torch.from_numpy(photo.astype(np.float32)))
    generator = torch.Generator().manual_seed(seed)

    def draw(high: int, low: int = 0) -> int:
        return int(torch.randint(low, high, (1,), generator=generator))

    crops = []
    for _ in range(count):
        photo = photos[draw(len(photos))]
        height, width = photo.shape
        side = draw(min(height, width) // 2 + 1, max(size))
        top, left = draw(height - side + 1), draw(width - side + 1)
        crop = torch.nn.functional.interpolate(
            photo[None, None, top : top + side, left : left + side], size, mode="area"
        )
        crops.append(1 - crop[0] if draw(2) else crop[0])
    return torch.stack(crops).clamp(0, 1) if crops else torch.empty(0, 1, *size)


def load_demo_images() -> LabeledImages:
    """Fashion-MNIST when installed, else the bundled digits."""
    return load_fashion_mnist() if fashion_mnist_available() else load_digits_images()
