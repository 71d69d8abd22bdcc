"""An image trigger: a mask of pixels and the values stamped there, ``x ⊕ t = x·(1 − m) + p·m``.

Files: our npz holds ``mask`` (H, W) and ``pattern`` (C, H, W) in [0, 1]. The original Mudjacking authors' npz
holds ``t`` and ``tm`` as uint8-valued HWC arrays (optionally with a leading batch axis of 1), with ``tm`` = 1 where
the image is kept and 0 on trigger pixels, applied as ``x·tm + t``; both are read and written.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from mudjacking.data.images import DataError


@dataclass
class ImageTrigger:
    """Args:
    mask: ``[H, W]`` float, 1 on trigger pixels, 0 elsewhere.
    pattern: ``[C, H, W]`` in [0, 1]; only its values under the mask matter.
    """

    mask: Tensor
    pattern: Tensor

    def __post_init__(self) -> None:
        self.mask = self.mask.detach().float().cpu()
        self.pattern = self.pattern.detach().float().cpu()
        if self.mask.ndim != 2 or self.pattern.ndim != 3 or self.pattern.shape[1:] != self.mask.shape:
            raise ValueError(
                f"mask [H, W] and pattern [C, H, W] must agree, "
                f"got {tuple(self.mask.shape)} and {tuple(self.pattern.shape)}"
            )

    @property
    def num_pixels(self) -> int:
        return int(self.mask.sum().item())

    def apply(self, images: Tensor) -> Tensor:
        """Stamps the trigger on ``images`` ``[B, C, H, W]`` (differentiable in the images)."""
        if tuple(images.shape[-2:]) != tuple(self.mask.shape):
            raise ValueError(
                f"trigger is {tuple(self.mask.shape)} but images are {tuple(images.shape[-2:])}; resize one of them"
            )
        mask = self.mask.to(images)
        pattern = self.pattern.to(images)
        if pattern.shape[0] != images.shape[1]:
            pattern = pattern.mean(0, keepdim=True).expand(images.shape[1], -1, -1)
        return images * (1 - mask) + pattern * mask

    def dilated(self, pixels: int) -> ImageTrigger:
        """The same pattern under the mask grown by ``pixels`` in every direction (8-connected)."""
        mask = self.mask
        if pixels > 0:
            mask = F.max_pool2d(mask[None, None], 2 * pixels + 1, stride=1, padding=pixels)[0, 0]
        return ImageTrigger(mask, self.pattern)

    def apply_dilated(self, images: Tensor, max_pixels: int, generator: torch.Generator | None = None) -> Tensor:
        """Stamps each image with the mask grown by a random 0..``max_pixels`` pixels (same pattern).

        A recovered mask can miss a rim of the real trigger; training on slightly grown stamps covers it.
        """
        if max_pixels <= 0:
            return self.apply(images)
        masks = torch.stack([self.dilated(d).mask for d in range(max_pixels + 1)]).to(images)
        choice = torch.randint(max_pixels + 1, (images.shape[0],), generator=generator)
        mask = masks[choice.to(masks.device)][:, None]
        pattern = self.pattern.to(images)
        if pattern.shape[0] != images.shape[1]:
            pattern = pattern.mean(0, keepdim=True).expand(images.shape[1], -1, -1)
        return images * (1 - mask) + pattern * mask

    def stamp(self, images: Tensor, grow: int = 0) -> Tensor:
        """The patch loop's ``x ⊕ t``: :meth:`apply_dilated` with up to ``grow`` pixels."""
        return self.apply_dilated(images, grow)

    def iou(self, other: ImageTrigger) -> float:
        """Intersection over union of the two masks."""
        a, b = self.mask > 0.5, other.mask > 0.5
        union = (a | b).sum().item()
        return float((a & b).sum().item() / union) if union else 1.0

    @classmethod
    def square(cls, image_shape: tuple[int, int, int], size: int, value: float = 1.0, margin: int = 1) -> ImageTrigger:
        """A ``size``x``size`` patch of ``value`` at the bottom-right corner, ``margin`` pixels from the edges."""
        channels, height, width = image_shape
        mask = torch.zeros(height, width)
        mask[height - margin - size : height - margin, width - margin - size : width - margin] = 1
        return cls(mask, torch.full((channels, height, width), float(value)))

    def save(self, path: str | Path, authors_format: bool = False) -> None:
        """Writes the npz (ours, or the authors' ``t``/``tm`` layout)."""
        with open(path, "wb") as stream:
            if authors_format:
                keep = 1 - self.mask.numpy()
                hwc = self.pattern.numpy().transpose(1, 2, 0)
                t = np.round(hwc * 255) * (1 - keep)[..., None]
                tm = np.repeat(keep[..., None], hwc.shape[-1], axis=-1)
                np.savez(stream, t=t.astype(np.float64), tm=tm.astype(np.float64))
            else:
                np.savez(stream, mask=self.mask.numpy().astype(np.uint8), pattern=self.pattern.numpy())

    @classmethod
    def load(cls, path: str | Path) -> ImageTrigger:
        """Reads our npz or the authors' ``t``/``tm`` npz."""
        path = Path(path)
        try:
            with np.load(path, allow_pickle=False) as archive:
                arrays = {key: archive[key] for key in archive.files if key != "info"}
        except (OSError, ValueError) as error:
            raise DataError(f"{path}: unreadable trigger file ({error}); pass an npz written by mudjacking") from error
        if {"mask", "pattern"} <= arrays.keys():
            return cls(
                torch.from_numpy(arrays["mask"].astype(np.float32)),
                torch.from_numpy(arrays["pattern"].astype(np.float32)),
            )
        if {"t", "tm"} <= arrays.keys():
            t, tm = arrays["t"], arrays["tm"]
            if t.ndim == 4:
                t, tm = t[0], tm[0]
            mask = torch.from_numpy((tm[..., 0] == 0).astype(np.float32))
            return cls(mask, torch.from_numpy(t.transpose(2, 0, 1).astype(np.float32) / 255.0))
        raise DataError(f"{path}: no trigger arrays (expected mask+pattern or t+tm); re-save the trigger")
