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


def load_demo_images() -> LabeledImages:
    """Fashion-MNIST when installed, else the bundled digits."""
    return load_fashion_mnist() if fashion_mnist_available() else load_digits_images()
