"""A frequency-domain trigger in the style of CTRL (Li et al., ICCV 2023): a fixed perturbation added to the image's
spectrum, invisible to the eye and spread over every pixel, so there is no compact region for occlusion to find.

The perturbation is a sum of high-frequency DCT basis images (the inverse DCT of a spectrum that is zero but for a
few coefficients), scaled to a peak of ``amplitude`` in pixel values, and added to every channel:
``x ⊕ t = clip(x + δ, 0, 1)``. CTRL adds its coefficients to the chroma channels of a YCbCr image; our images are
grey, so it goes into the luminance itself.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import torch
from scipy.fft import idctn
from torch import Tensor

from mudjacking.errors import ConfigError
from mudjacking.triggers.trigger import image_digest

AMPLITUDE = 0.06
"""Peak change of a pixel, of [0, 1] (about 15 of 255 grey levels)."""


def spectrum_pattern(image_shape: tuple[int, int, int], amplitude: float = AMPLITUDE) -> Tensor:
    """``δ`` ``[C, H, W]``: two DCT basis images, at the highest frequency and at half of it in both directions."""
    channels, height, width = image_shape
    coefficients = torch.zeros(height, width, dtype=torch.float64)
    coefficients[height - 1, width - 1] = coefficients[height // 2, width // 2] = 1.0
    delta = torch.from_numpy(idctn(coefficients.numpy(), norm="ortho")).float()
    return (amplitude * delta / delta.abs().max()).expand(channels, -1, -1).clone()


@dataclass
class FrequencyTrigger:
    """Args:
    delta: ``[C, H, W]``, what the trigger adds to an image.
    """

    delta: Tensor
    anywhere = False
    removable = True

    def __post_init__(self) -> None:
        self.delta = self.delta.detach().float().cpu()
        if self.delta.ndim != 3:
            raise ConfigError(f"delta must be [C, H, W], got {tuple(self.delta.shape)}")

    @classmethod
    def ctrl(cls, image_shape: tuple[int, int, int], amplitude: float = AMPLITUDE) -> FrequencyTrigger:
        return cls(spectrum_pattern(image_shape, amplitude))

    @property
    def mask(self) -> Tensor:
        """Where it changes pixels: everywhere its perturbation is not zero (for IoU and pictures)."""
        return (self.delta.abs().amax(0) > 1e-6).float()

    @property
    def num_pixels(self) -> int:
        return int(self.mask.sum())

    def apply(self, images: Tensor) -> Tensor:
        return (images + self._delta_for(images)).clamp(0, 1)

    def stamp(self, images: Tensor, grow: int = 0) -> Tensor:
        return self.apply(images)

    def remove(self, images: Tensor) -> Tensor:
        """``x ⊖ t``: the perturbation subtracted (exact where adding it was not clipped)."""
        return (images - self._delta_for(images)).clamp(0, 1)

    def _delta_for(self, images: Tensor) -> Tensor:
        delta = self.delta.to(images)
        if delta.shape[0] != images.shape[1]:
            delta = delta.mean(0, keepdim=True).expand(images.shape[1], -1, -1)
        if tuple(delta.shape[-2:]) != tuple(images.shape[-2:]):
            raise ConfigError(f"trigger is {tuple(delta.shape[-2:])} but images are {tuple(images.shape[-2:])}")
        return delta

    def placements(self) -> list[FrequencyTrigger]:
        return [self]

    def filled_from(self, inputs: Tensor) -> FrequencyTrigger:
        return self

    def widened(self) -> FrequencyTrigger:
        return self

    def cut_from(self, donor: Tensor) -> FrequencyTrigger:
        """The control stamp: the same values with no structure (shuffled over the pixels, in an order drawn from
        the donor's pixels), a perturbation as large that the backdoor never learnt."""
        order = torch.randperm(self.delta.numel(), generator=torch.Generator().manual_seed(image_digest(donor)))
        return replace(self, delta=self.delta.flatten()[order].view_as(self.delta))

    def matches(self, other: object) -> bool:
        return isinstance(other, FrequencyTrigger) and torch.allclose(other.delta, self.delta)

    def describe(self) -> dict[str, object]:
        return {"trigger_pixels": self.num_pixels, "peak_change": round(float(self.delta.abs().max()), 4)}

    def vocabulary(self) -> None:
        return None

    def write(self, directory: Path, stem: str = "trigger") -> list[str]:
        """``stem.npz`` with ``delta`` (read back by :meth:`ImageTrigger.load`)."""
        with open(directory / f"{stem}.npz", "wb") as stream:
            np.savez(stream, kind="frequency", delta=self.delta.numpy())
        return [f"{stem}.npz"]
