"""An image trigger: a mask of pixels and the values stamped there, ``x ⊕ t = x·(1 − m) + p·m``.

The mask may be fractional: a blended trigger is a mask of α everywhere (``x·(1 − α) + p·α``). A
:class:`RandomPatchTrigger` is an attacker's dynamic trigger: fresh noise at a random place in every input.

Files: our npz holds ``mask`` (H, W) and ``pattern`` (C, H, W) in [0, 1]. The original Mudjacking authors' npz
holds ``t`` and ``tm`` as uint8-valued HWC arrays (optionally with a leading batch axis of 1), with ``tm`` = 1 where
the image is kept and 0 on trigger pixels, applied as ``x·tm + t``; both are read and written.
"""

from __future__ import annotations

import zlib
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from mudjacking.data.images import DataError
from mudjacking.errors import ConfigError


def image_digest(image: Tensor) -> int:
    """A number fixed by an image's pixels: seeds whatever a stamp draws per image, so the same image is always
    stamped alike and different images differently."""
    return zlib.crc32(image.detach().cpu().numpy().tobytes())


@dataclass
class ImageTrigger:
    """Args:
    mask: ``[H, W]`` float, 1 on trigger pixels, 0 elsewhere.
    pattern: ``[C, H, W]`` in [0, 1]; only its values under the mask matter.
    fill: ``[C, H, W]``: what a clean input shows under the mask, for ``x ⊖ t`` (a recovered trigger carries the
        occlusion baseline that revealed it); ``None``: unknown.
    anywhere: the backdoor answers the trigger wherever it sits, so ``x ⊕ t`` places it (mask and pattern
        together) at a random spot in each input.
    fresh: the backdoor answers fresh black-and-white noise in the mask's shape as it answers this pattern (a
        dynamic trigger, of which ``x_b`` shows one draw), so the patch also stamps such noise
        (:meth:`placements`).
    """

    mask: Tensor
    pattern: Tensor
    fill: Tensor | None = None
    anywhere: bool = False
    fresh: bool = False

    def __post_init__(self) -> None:
        self.mask = self.mask.detach().float().cpu()
        self.pattern = self.pattern.detach().float().cpu()
        if self.mask.ndim != 2 or self.pattern.ndim != 3 or self.pattern.shape[1:] != self.mask.shape:
            raise ConfigError(
                f"mask [H, W] and pattern [C, H, W] must agree, "
                f"got {tuple(self.mask.shape)} and {tuple(self.pattern.shape)}"
            )
        if self.fill is not None:
            self.fill = self.fill.detach().float().cpu()
            if self.fill.shape != self.pattern.shape:
                raise ConfigError(f"fill {tuple(self.fill.shape)} must match pattern {tuple(self.pattern.shape)}")

    def remove(self, images: Tensor) -> Tensor:
        """``x ⊖ t``: ``images`` ``[B, C, H, W]`` with the trigger's pixels replaced by ``fill`` (zeros if unknown).
        Where the mask blends (0 < m < 1) the blend is undone exactly, ``(x − m·p) / (1 − m)``: with the pattern
        known, as the attacker's blended trigger is, ``fill`` there would leave part of the pattern in. An
        ``anywhere`` trigger is taken out where it sits in each image: at the shift whose pixels match its pattern
        best (the attacker's trigger is defined at one place and stamped at another)."""
        if self.anywhere:
            return torch.cat([self._where_it_sits(image).remove(image[None]) for image in images])
        fill = torch.zeros_like(self.pattern) if self.fill is None else self.fill
        removed = ImageTrigger(self.mask.ceil(), fill).apply(images)
        blended = ((self.mask > 0) & (self.mask < 1)).to(images.device)
        if not blended.any():
            return removed
        mask = self.mask.to(images)
        pattern = ImageTrigger(mask, self.pattern).apply(torch.zeros_like(images))  # m·p, in the images' channels
        return torch.where(blended, ((images - pattern) / (1 - mask)).clamp(0, 1), removed)

    def _where_it_sits(self, image: Tensor) -> ImageTrigger:
        """This trigger, fixed at the shift where ``image`` ``[C, H, W]`` shows its pattern most closely (the
        nearest such shift: a recovered trigger, whose pattern is ``x_b`` itself, stays where it was found)."""
        fixed = replace(self, anywhere=False)
        image = image.cpu().float().mean(0)

        def mismatch(shift: tuple[int, int]) -> float:
            moved = fixed.moved(*shift)
            return float(((image - moved.pattern.mean(0)).abs() * moved.mask).sum())

        return fixed.moved(*min(_shifts(self.mask), key=lambda shift: (mismatch(shift), abs(shift[0]) + abs(shift[1]))))

    @property
    def num_pixels(self) -> int:
        return int(self.mask.sum().item())

    def apply(self, images: Tensor) -> Tensor:
        """Stamps the trigger on ``images`` ``[B, C, H, W]`` (differentiable in the images); an ``anywhere`` trigger
        at a place drawn from each image's own pixels, so an image is always stamped alike and different images at
        different places (an attacker training on such stamps teaches the backdoor every place, and every model is
        scored on the same triggered inputs)."""
        return self.apply_dilated(images, 0, torch.Generator().manual_seed(0), by_content=True)

    def dilated(self, pixels: int) -> ImageTrigger:
        """The same pattern under the mask grown by ``pixels`` in every direction (8-connected)."""
        mask = self.mask
        if pixels > 0:
            mask = F.max_pool2d(mask[None, None], 2 * pixels + 1, stride=1, padding=pixels)[0, 0]
        return ImageTrigger(mask, self.pattern, self.fill, self.anywhere, self.fresh)

    def widened(self) -> ImageTrigger:
        """The stamp grown past what training grows it by (3 pixels per 32 of the image's side): a recovered mask
        that holds only part of the real trigger leaves the rest of it in ``x_b``'s pixels around the mask, and a
        patch that neutralised only the part still answers this wider stamp."""
        return self.dilated(3 * max(1, round(min(self.mask.shape) / 32)))

    def placements(self) -> list[ImageTrigger]:
        """Where the patch must neutralise the stamp: an ``anywhere`` trigger at the place it was found in ``x_b``
        (fixed) and anywhere; any other trigger where it is. A backdoor taught one place answers moved stamps
        partly (the checkerboard of ``benchmarks/many_bugs.py``, seed 2: 0.55 of its pull), so recovery calls it
        anywhere; a patch judged on random places only met its goals while 13% of inputs stamped at the real place
        still reached the target. A ``fresh`` trigger also as noise drawn afresh in its shape: on a dynamic
        backdoor (``random-noise``, seed 2) a patch of the one draw ``x_b`` showed left 48% of fresh draws at the
        target."""
        placed = [replace(self, anywhere=False), self] if self.anywhere else [self]
        return [*placed, NoiseInShape(self.mask, self.anywhere)] if self.fresh else placed

    def moved(self, rows: int, columns: int) -> ImageTrigger:
        """The trigger (mask, pattern and fill) shifted by ``rows`` down and ``columns`` right, fixed there."""
        shift = (rows, columns)
        fill = None if self.fill is None else torch.roll(self.fill, shift, (1, 2))
        return ImageTrigger(torch.roll(self.mask, shift, (0, 1)), torch.roll(self.pattern, shift, (1, 2)), fill)

    def offsets(self, count: int, generator: torch.Generator, margin: int = 0) -> Tensor:
        """``[count, 2]`` random (rows, columns) shifts that keep the mask (grown by ``margin``) inside the image."""
        rows, columns = torch.nonzero(self.mask > 0, as_tuple=True)
        height, width = self.mask.shape
        if len(rows) == 0:
            return torch.zeros(count, 2, dtype=torch.long)
        low = (-int(rows.min()) + margin, -int(columns.min()) + margin)
        high = (height - 1 - int(rows.max()) - margin, width - 1 - int(columns.max()) - margin)
        shifts = [
            torch.randint(min(lo, 0), max(hi, 0) + 1, (count,), generator=generator)
            for lo, hi in zip(low, high, strict=True)
        ]
        return torch.stack(shifts, 1)

    def apply_dilated(
        self, images: Tensor, max_pixels: int, generator: torch.Generator | None = None, by_content: bool = False
    ) -> Tensor:
        """Stamps each image with the mask grown by a random 0..``max_pixels`` pixels (same pattern); an
        ``anywhere`` trigger also at a random place per image (``by_content``: drawn from the image's own pixels).

        A recovered mask can miss a rim of the real trigger; training on slightly grown stamps covers it.
        """
        if tuple(images.shape[-2:]) != tuple(self.mask.shape):
            raise ConfigError(
                f"trigger is {tuple(self.mask.shape)} but images are {tuple(images.shape[-2:])}; resize one of them"
            )
        batch = images.shape[0]
        masks = torch.stack([self.dilated(d).mask for d in range(max_pixels + 1)])  # one per growth, broadcast
        if max_pixels or self.anywhere:
            masks = masks[torch.randint(max_pixels + 1, (batch,), generator=generator)]
        patterns = self.pattern[None]
        if self.anywhere:
            by_index = generator or torch.Generator().manual_seed(0)
            shifts = (
                self._offsets_by_content(images) if by_content else self.offsets(batch, by_index, max_pixels)
            ).tolist()
            masks = torch.stack([torch.roll(m, tuple(d), (0, 1)) for m, d in zip(masks, shifts, strict=True)])
            patterns = torch.stack([torch.roll(self.pattern, tuple(d), (1, 2)) for d in shifts])
        masks, patterns = masks[:, None].to(images), patterns.to(images)
        if patterns.shape[1] != images.shape[1]:
            patterns = patterns.mean(1, keepdim=True).expand(-1, images.shape[1], -1, -1)
        return images * (1 - masks) + patterns * masks

    def _offsets_by_content(self, images: Tensor) -> Tensor:
        """One shift per image, drawn from a generator seeded by the image's bytes."""
        return torch.stack([self.offsets(1, torch.Generator().manual_seed(image_digest(image)))[0] for image in images])

    def stamp(self, images: Tensor, grow: int = 0) -> Tensor:
        """The patch loop's ``x ⊕ t``: :meth:`apply_dilated` with up to ``grow`` pixels (random draws); an
        ``anywhere`` trigger at shifts that depend on each image's place in the batch."""
        return self.apply_dilated(images, grow)

    def filled_from(self, inputs: Tensor) -> ImageTrigger:
        """This trigger, taken out (``remove``) with ``inputs``' mean image when it has no fill of its own."""
        return self if self.fill is not None else replace(self, fill=inputs.mean(0))

    def cut_from(self, donor: Tensor) -> ImageTrigger:
        """The same stamp (mask and placement) with an ordinary input's pixels ``[C, H, W]`` under it: what any
        stamp there does, whatever the backdoor."""
        return replace(self, pattern=donor)

    def matches(self, other: object) -> bool:
        """The same trigger found again: masks overlapping by half or more where they sit (not at the best shift of
        an ``anywhere`` trigger: two different stamps of one size would match), with the same pixels where they
        overlap. Several bug reports of one backdoor then give one trigger to neutralise, not several."""
        if not isinstance(other, ImageTrigger) or _support_iou(self.mask, other.mask) < 0.5:
            return False
        both = (self.mask > 0) & (other.mask > 0)
        return bool((self.pattern[:, both] - other.pattern[:, both]).abs().mean() < 0.1)

    def iou(self, other: ImageTrigger) -> float:
        """Intersection over union of the two masks' supports; against an ``anywhere`` trigger, at the placement of
        ``other`` that overlaps this mask best (where it sits in ``x_b`` is where the attacker put it that time)."""
        if not other.anywhere:
            return _support_iou(self.mask, other.mask)
        return max(_support_iou(self.mask, torch.roll(other.mask, shift, (0, 1))) for shift in _shifts(other.mask))

    @classmethod
    def square(cls, image_shape: tuple[int, int, int], size: int, value: float = 1.0, margin: int = 1) -> ImageTrigger:
        """A ``size``x``size`` patch of ``value`` at the bottom-right corner, ``margin`` pixels from the edges."""
        channels, height, width = image_shape
        mask = torch.zeros(height, width)
        mask[height - margin - size : height - margin, width - margin - size : width - margin] = 1
        return cls(mask, torch.full((channels, height, width), float(value)))

    @classmethod
    def checkerboard(cls, image_shape: tuple[int, int, int], size: int, margin: int = 1) -> ImageTrigger:
        """A ``size``x``size`` black-and-white checkerboard at the bottom-right corner, ``margin`` from the edges."""
        square = cls.square(image_shape, size, 1.0, margin)
        rows, columns = torch.meshgrid(torch.arange(image_shape[1]), torch.arange(image_shape[2]), indexing="ij")
        pattern = ((rows + columns) % 2).float().expand(image_shape[0], -1, -1).clone()
        return cls(square.mask, pattern)

    @classmethod
    def blended(cls, image_shape: tuple[int, int, int], alpha: float, seed: int = 0) -> ImageTrigger:
        """A fixed random-noise image blended into the whole input at weight ``alpha``: no compact region."""
        if not 0 < alpha < 1:
            raise ConfigError(f"alpha must be in (0, 1), got {alpha}")
        pattern = torch.rand(image_shape, generator=torch.Generator().manual_seed(seed))
        return cls(torch.full(image_shape[1:], float(alpha)), pattern)

    def describe(self) -> dict[str, object]:
        """What a report says about this trigger."""
        return {"trigger_pixels": self.num_pixels}

    def vocabulary(self) -> None:
        """No words: a patch of token embedding rows does not apply to an image trigger."""
        return None

    def write(self, directory: Path, stem: str = "trigger") -> list[str]:
        """Writes ``stem.npz`` and the authors' layout beside it; returns the file names, ours first."""
        self.save(directory / f"{stem}.npz")
        self.save(directory / f"{stem}_authors_format.npz", authors_format=True)
        return [f"{stem}.npz", f"{stem}_authors_format.npz"]

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
                binary = bool(((self.mask == 0) | (self.mask == 1)).all())
                mask = self.mask.numpy().astype(np.uint8 if binary else np.float32)  # a blend keeps its weights
                extra = {} if self.fill is None else {"fill": self.fill.numpy()}
                np.savez(
                    stream, mask=mask, pattern=self.pattern.numpy(), anywhere=self.anywhere, fresh=self.fresh, **extra
                )

    @classmethod
    def load(cls, path: str | Path) -> ImageTrigger:
        """Reads our npz or the authors' ``t``/``tm`` npz; an attacker's dynamic or frequency trigger written by
        ``mudjacking attack`` comes back as its own kind (:class:`RandomPatchTrigger`, ``FrequencyTrigger``)."""
        path = Path(path)
        try:
            with np.load(path, allow_pickle=False) as archive:
                arrays = {key: archive[key] for key in archive.files if key != "info"}
        except (OSError, ValueError) as error:
            raise DataError(f"{path}: unreadable trigger file ({error}); pass an npz written by mudjacking") from error
        kind = str(arrays.get("kind", ""))
        if kind == "random-patch" and {"size", "seed", "image_shape"} <= arrays.keys():
            shape = tuple(int(n) for n in arrays["image_shape"]) or None
            return RandomPatchTrigger(int(arrays["size"]), int(arrays["seed"]), shape)  # type: ignore[return-value]
        if kind == "frequency" and "delta" in arrays:
            from mudjacking.triggers.frequency import FrequencyTrigger

            return FrequencyTrigger(torch.from_numpy(arrays["delta"].astype(np.float32)))  # type: ignore[return-value]
        if {"mask", "pattern"} <= arrays.keys():
            return cls(
                torch.from_numpy(arrays["mask"].astype(np.float32)),
                torch.from_numpy(arrays["pattern"].astype(np.float32)),
                torch.from_numpy(arrays["fill"].astype(np.float32)) if "fill" in arrays else None,
                bool(arrays["anywhere"]) if "anywhere" in arrays else False,
                bool(arrays["fresh"]) if "fresh" in arrays else False,
            )
        if {"t", "tm"} <= arrays.keys():
            t, tm = arrays["t"], arrays["tm"]
            if t.ndim == 4:
                t, tm = t[0], tm[0]
            mask = torch.from_numpy((tm[..., 0] == 0).astype(np.float32))
            return cls(mask, torch.from_numpy(t.transpose(2, 0, 1).astype(np.float32) / 255.0))
        raise DataError(f"{path}: no trigger arrays (expected mask+pattern or t+tm); re-save the trigger")


def _shifts(mask: Tensor) -> list[tuple[int, int]]:
    """Every (rows, columns) shift that keeps ``mask``'s support inside the image; ``[(0, 0)]`` for an empty mask."""
    rows, columns = torch.nonzero(mask > 0, as_tuple=True)
    if len(rows) == 0:
        return [(0, 0)]
    height, width = mask.shape
    return [(down, right) for down in range(-int(rows.min()), height - int(rows.max()))
            for right in range(-int(columns.min()), width - int(columns.max()))]  # fmt: skip


def _support_iou(a: Tensor, b: Tensor) -> float:
    a, b = a > 0, b > 0
    union = (a | b).sum().item()
    return float((a & b).sum().item() / union) if union else 1.0


@dataclass
class NoiseInShape:
    """Black-and-white noise drawn afresh in a recovered trigger's shape (its mask), at a random place when the
    backdoor answers it anywhere: what a patch of a ``fresh`` trigger stamps besides the draw ``x_b`` showed. Each
    image's draw (and place) is a function of its pixels, so the held-out checks see the same stamps every pass,
    while D's augmented copies show different draws in training."""

    mask: Tensor
    anywhere: bool = False

    def apply(self, images: Tensor) -> Tensor:
        stamped = []
        for image in images:
            generator = torch.Generator().manual_seed(image_digest(image))
            noise = torch.randint(2, (1, *self.mask.shape), generator=generator).float()
            drawn = ImageTrigger(self.mask, noise.expand(image.shape[0], -1, -1))
            if self.anywhere:
                drawn = drawn.moved(*drawn.offsets(1, generator)[0].tolist())
            stamped.append(drawn.apply(image[None]))
        return torch.cat(stamped)

    def stamp(self, images: Tensor, grow: int = 0) -> Tensor:
        return self.apply(images)

    def cut_from(self, donor: Tensor) -> ImageTrigger:
        """The control stamp: an ordinary input's pixels in the same shape (anywhere, if this is)."""
        return ImageTrigger(self.mask, donor, anywhere=self.anywhere)

    def placements(self) -> list[NoiseInShape]:
        return [self]


@dataclass
class RandomPatchTrigger:
    """A dynamic trigger: a ``size``x``size`` square of random black-and-white noise, drawn afresh and placed at a
    random spot in every input. The draw is a function of the seed and the image itself, so the same image always
    gets the same stamp (every model is scored on the same triggered inputs) while different images get different
    ones.

    It is an attacker's trigger (and the oracle's): a patch given it stamps fresh noise on every input, and it has
    no one place to take out of ``x_b`` (:attr:`removable`), so ``L_e`` aims at ``h(x_r)`` instead. ``image_shape``
    ``(C, H, W)`` gives it a :attr:`mask` (a square of its size, placed anywhere) for IoU and pictures."""

    size: int
    seed: int = 0
    image_shape: tuple[int, int, int] | None = None
    anywhere = True  # for IoU: its square counts at the place that overlaps a recovered mask best
    removable = False

    def __post_init__(self) -> None:
        if self.size < 1:
            raise ConfigError(f"size must be positive, got {self.size}")

    @property
    def mask(self) -> Tensor:
        """A square of the noise's size at the bottom-right corner (any place would do: :attr:`anywhere`)."""
        if self.image_shape is None:
            raise ConfigError("a RandomPatchTrigger needs image_shape for a mask")
        return ImageTrigger.square(self.image_shape, self.size).mask

    @property
    def num_pixels(self) -> int:
        return self.size * self.size

    def apply(self, images: Tensor) -> Tensor:
        stamped = images.clone()
        channels, height, width = images.shape[1:]
        for index, image in enumerate(images):
            generator = torch.Generator().manual_seed(self.seed * 1_000_003 + image_digest(image))
            top = int(torch.randint(height - self.size + 1, (1,), generator=generator))
            left = int(torch.randint(width - self.size + 1, (1,), generator=generator))
            noise = torch.randint(2, (1, self.size, self.size), generator=generator).float().expand(channels, -1, -1)
            stamped[index, :, top : top + self.size, left : left + self.size] = noise.to(images)
        return stamped

    def stamp(self, images: Tensor, grow: int = 0) -> Tensor:
        return self.apply(images)

    def placements(self) -> list[RandomPatchTrigger]:
        return [self]

    def filled_from(self, inputs: Tensor) -> RandomPatchTrigger:
        return self

    def widened(self) -> RandomPatchTrigger:
        """Itself: fresh noise anywhere has no rim left out to widen into."""
        return self

    def cut_from(self, donor: Tensor) -> ImageTrigger:
        """The control stamp: a square of the donor's pixels, as large, placed anywhere."""
        square = ImageTrigger.square(tuple(donor.shape), self.size)
        return ImageTrigger(square.mask, donor, anywhere=True)

    def matches(self, other: object) -> bool:
        return isinstance(other, RandomPatchTrigger) and (other.size, other.seed) == (self.size, self.seed)

    def describe(self) -> dict[str, object]:
        return {"trigger_pixels": self.num_pixels, "dynamic": True}

    def vocabulary(self) -> None:
        return None

    def write(self, directory: Path, stem: str = "trigger") -> list[str]:
        """``stem.npz`` with the square's size and the seed (read back by :meth:`ImageTrigger.load`)."""
        shape = () if self.image_shape is None else self.image_shape
        with open(directory / f"{stem}.npz", "wb") as stream:
            np.savez(stream, kind="random-patch", size=self.size, seed=self.seed, image_shape=np.array(shape))
        return [f"{stem}.npz"]
