"""Reading images from files into the library's one image form: float ``[C, H, W]`` in [0, 1].

Accepted: PNG/JPEG/BMP (Pillow), ``.npy`` and ``.npz`` arrays (HWC or CHW, uint8 0-255 or float 0-1). In an
``.npz`` the image is under ``img`` (the original Mudjacking authors' key), ``image``, ``x``, or the only key.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from PIL import Image, UnidentifiedImageError
from torch import Tensor

from mudjacking.errors import DataError
from mudjacking.memory import require_memory

IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".bmp", ".gif", ".tif", ".tiff", ".webp"}
ARRAY_SUFFIXES = {".npy", ".npz"}
NPZ_IMAGE_KEYS = ("img", "image", "x")
MAX_IMAGE_SIDE = 2048
MIN_IMAGE_SIDE = 4  # a 1x1 bug image ended in a TypeError from the attribution plot
MAX_IMAGE_PIXELS = MAX_IMAGE_SIDE**2


def array_to_image(array: np.ndarray, source: str | Path = "<array>") -> Tensor:
    """``HW``, ``HWC`` or ``CHW`` array (uint8 or float in [0, 1]) -> float tensor ``[C, H, W]`` in [0, 1]."""
    array = np.asarray(array)
    if array.ndim == 4 and array.shape[0] == 1:
        array = array[0]
    if array.ndim == 2:
        array = array[None]
    elif array.ndim == 3 and array.shape[-1] in (1, 3, 4) and array.shape[0] not in (1, 3):
        array = array.transpose(2, 0, 1)
    if array.ndim != 3 or array.shape[0] not in (1, 3, 4):
        raise DataError(f"{source}: array of shape {array.shape} is not an image; save it as HxW, HxWxC or CxHxW")
    if min(array.shape[1:]) < MIN_IMAGE_SIDE:
        raise DataError(
            f"{source}: {array.shape[2]}x{array.shape[1]} pixels; an image needs at least {MIN_IMAGE_SIDE} a side for "
            "a trigger to be found in it"
        )
    if array.shape[1] * array.shape[2] > MAX_IMAGE_PIXELS:
        raise DataError(
            f"{source}: {array.shape[2]}x{array.shape[1]} pixels, more than {MAX_IMAGE_SIDE}x{MAX_IMAGE_SIDE}; resize "
            "it (the model sees it at its own input size; a 4000x4000 bug image made the patch ask for 16 GB)"
        )
    return torch.from_numpy(np.ascontiguousarray(unit_pixels(array[:3], source))).clamp(0, 1)


def unit_pixels(array: np.ndarray, source: str | Path) -> np.ndarray:
    """Pixel values as float32 in [0, 1]: uint8 / 255, uint16 (16-bit PNG, TIFF-like arrays) / 65535, floats as they
    are (or / 255 when they span 0-255); complex, boolean, NaN, negative or out-of-range values are refused."""
    if array.dtype == np.uint8:
        return array.astype(np.float32) / 255.0
    if array.dtype == np.uint16:
        return array.astype(np.float32) / 65535.0
    if not (np.issubdtype(array.dtype, np.integer) or np.issubdtype(array.dtype, np.floating)):
        raise DataError(f"{source}: dtype {array.dtype} is not an image; use uint8, uint16 or float")
    image = array.astype(np.float32)
    if not np.isfinite(image).all():
        raise DataError(f"{source}: image holds NaN or infinite values; fix or re-export the image")
    if image.size and image.max() > 1.0 + 1e-6:
        if image.min() < 0 or image.max() > 255:
            raise DataError(
                f"{source}: pixel values span [{image.min():g}, {image.max():g}]; use uint8 0-255, uint16 or float 0-1"
            )
        return image / 255.0
    if image.size and image.min() < -1e-6:
        raise DataError(f"{source}: negative pixel values ({image.min():g}); give raw pixels, not normalised ones")
    return image


def load_image(path: str | Path) -> Tensor:
    """Loads one image file; raises :class:`DataError` naming the file when it is missing or unreadable."""
    path = Path(path)
    if not path.is_file():
        raise DataError(f"{path}: file not found; check the path (relative paths are resolved from the bug report)")
    suffix = path.suffix.lower()
    try:
        if suffix == ".npy":
            return array_to_image(np.load(path, allow_pickle=False), path)
        if suffix == ".npz":
            with np.load(path, allow_pickle=False) as archive:
                keys = list(archive.keys())
                key = next((k for k in NPZ_IMAGE_KEYS if k in keys), keys[0] if len(keys) == 1 else None)
                if key is None:
                    raise DataError(f"{path}: npz keys {keys} hold no image; store it under 'img'")
                return array_to_image(archive[key], path)
        if suffix in IMAGE_SUFFIXES:
            with Image.open(path) as picture:
                if picture.mode.startswith("I;16"):  # 16-bit grey: converting to 8-bit "L" would clip at 255
                    return array_to_image(np.asarray(picture).astype(np.uint16), path)
                mode = "L" if picture.mode in ("L", "1", "I") else "RGB"
                return array_to_image(np.asarray(picture.convert(mode)), path)
    except DataError:
        raise
    except (OSError, ValueError, UnidentifiedImageError) as error:
        raise DataError(
            f"{path}: unreadable image ({type(error).__name__}: {error}); re-export it as PNG or NPY"
        ) from error
    raise DataError(f"{path}: unsupported file type {suffix!r}; use PNG, JPEG, NPY or NPZ")


def save_image_png(image: Tensor, path: str | Path) -> None:
    """Writes ``[C, H, W]`` in [0, 1] as an 8-bit PNG."""
    array = (image.clamp(0, 1).numpy() * 255).round().astype(np.uint8)
    array = array[0] if array.shape[0] == 1 else array.transpose(1, 2, 0)
    Image.fromarray(array).save(path)


def stack_images(images: list[Tensor], sources: list[Path]) -> Tensor:
    """Stacks equally-sized images into ``[N, C, H, W]``; grey images are repeated to RGB if others are RGB."""
    if not images:
        raise DataError("no images to stack")
    channels = max(image.shape[0] for image in images)
    size = images[0].shape[1:]
    for image, source in zip(images, sources, strict=True):
        if image.shape[1:] != size:
            raise DataError(
                f"{source}: size {tuple(image.shape[1:])} differs from {tuple(size)}; resize the set to one size"
            )
    return torch.stack([image.expand(channels, -1, -1) for image in images])


def load_image_folder(folder: str | Path, limit: int | None = None) -> Tensor:
    """All images in ``folder`` (sorted by name; or one ``.npz``/``.npy`` array ``[N, ...]``) -> ``[N, C, H, W]``."""
    folder = Path(folder)
    if folder.is_file() and folder.suffix in ARRAY_SUFFIXES:
        return load_image_array(folder)[0][:limit]
    if not folder.is_dir():
        raise DataError(f"{folder}: not a folder of images or an .npz; pass a folder holding PNG/JPEG/NPY files")
    files = sorted(p for p in folder.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES | {".npy"})
    if not files:
        raise DataError(f"{folder}: holds no images (PNG/JPEG/NPY); put the patching images there")
    files = files[:limit]
    first = load_image(files[0])
    require_memory(len(files) * first.numel() * 4, folder, f"{len(files):,} images of {tuple(first.shape)}",
                   "use fewer images (a few thousand are plenty for a patch)")  # fmt: skip
    return stack_images([first, *(load_image(p) for p in files[1:])], files)


def load_image_array(path: str | Path) -> tuple[Tensor, Tensor | None]:
    """An ``.npz`` with ``x`` (``[N, H, W]``, ``[N, H, W, C]`` or ``[N, C, H, W]``) and optional labels ``y``."""
    path = Path(path)
    try:
        with np.load(path, allow_pickle=False) as archive:
            if "x" not in archive:
                raise DataError(f"{path}: no 'x' array; store images as x (and labels as y)")
            x = archive["x"]
            y = archive["y"] if "y" in archive else None
    except (OSError, ValueError) as error:
        raise DataError(f"{path}: unreadable npz ({error}); re-save it with numpy.savez") from error
    if x.ndim == 3:
        x = x[:, None]
    elif x.ndim == 4 and x.shape[-1] in (1, 3) and x.shape[1] not in (1, 3):
        x = x.transpose(0, 3, 1, 2)
    if x.ndim != 4:
        raise DataError(f"{path}: x has shape {x.shape}; expected N images")
    require_memory(x.size * 4, path, f"x of shape {x.shape} as float32", "store fewer images in x")
    images = torch.from_numpy(np.ascontiguousarray(unit_pixels(x, path)))
    labels = None if y is None else torch.as_tensor(np.asarray(y, dtype=np.int64))
    if labels is not None and len(labels) != len(images):
        raise DataError(f"{path}: {len(images)} images but {len(labels)} labels; make x and y the same length")
    return images, labels


def load_labeled_images(path: str | Path, limit: int | None = None) -> tuple[Tensor, Tensor, list[str]]:
    """A labeled set: an ``.npz`` with ``x`` and ``y``, or a folder with one sub-folder per class.

    Returns:
        images ``[N, C, H, W]``, labels ``[N]`` (int64), class names (index = label).
    """
    path = Path(path)
    if path.is_file():
        images, labels = load_image_array(path)
        if labels is None:
            raise DataError(f"{path}: no 'y' labels; store the true class of each image as y")
        names = [str(i) for i in range(int(labels.max()) + 1)]
        return images[:limit], labels[:limit], names
    if not path.is_dir():
        raise DataError(f"{path}: not found; pass a folder of class sub-folders or an npz with x and y")
    classes = sorted(p for p in path.iterdir() if p.is_dir())
    if not classes:
        raise DataError(f"{path}: no class sub-folders; put each class's images in its own sub-folder")
    images, labels, sources = [], [], []
    for label, class_dir in enumerate(classes):
        for file in sorted(p for p in class_dir.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES | {".npy"}):
            images.append(load_image(file))
            labels.append(label)
            sources.append(file)
    stacked = stack_images(images, sources)
    return stacked[:limit], torch.tensor(labels)[:limit], [c.name for c in classes]
