"""Reverse-engineering an image trigger from one bug report (Mudjacking, Liu et al., USENIX Security 2024, §4.2),
made to adapt to models nobody tuned it for.

1. Occlusion attribution (captum ``Occlusion``) of ``1 − s(h(x_b), h(x_r))`` per pixel, at several window sizes and
   with several baselines written into the window (0, 1, D's mean image, a blur of ``x_b``): a model reads
   "nothing here" differently, and a window smaller than the trigger may change nothing at all (post-ReLU
   embeddings with disjoint supports sit at cosine 0 whatever one 3×3 window hides).
2. Each map is cut by k-means (k = 2): the minority cluster is a candidate mask. Flat maps and masks covering more
   than ``max_fraction`` of the image are not candidates.
3. Verification on D (:mod:`mudjacking.triggers.pull`): each candidate, stamped with ``x_b``'s pixels on held-out
   clean inputs, must drag them toward ``h(x_b)`` far more than the same mask cut from other clean inputs drags
   them toward those inputs; and taken out of ``x_b``, release it far more than taking the same pixels out of those
   inputs moves them (a region of a pattern blended into the whole image does neither by much more).
   Among the candidates that pull nearly as hard as the best, the smallest wins. When none pulls D's inputs as a
   whole hard enough, the pull on the held-out inputs nearest ``x_r`` may verify instead: a backdoor that answers
   one source class drags only inputs like ``x_r`` (``x_b``'s true class), a tenth of a mixed D.
   When none verifies but one pulls and leaves ``x_b`` held once taken out (a trigger with a second copy, or a
   large one of which only a part was marked), that part is taken out of ``x_b`` and the maps are made again of
   what is left; each new mask (cut again while too large to join the part), joined to it, is verified the same way.
4. Refinement (:mod:`mudjacking.triggers.refine`): the winner's mask is shrunk by optimisation on other inputs of D
   to the fewest pixels that still pull; kept only if it verifies as well.
5. No candidate pulls: :class:`TriggerNotFound` (the caller refuses, unless forced).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, replace
from typing import Any

import torch
import torch.nn.functional as F
from captum.attr import Occlusion
from torch import Tensor

from mudjacking.data.bug_report import BugReport, check_modality
from mudjacking.data.images import DataError
from mudjacking.encoders.base import Encoder
from mudjacking.errors import ConfigError, TriggerNotFound
from mudjacking.geometry import EmbeddingGeometry, embedding_geometry, similarity
from mudjacking.triggers.pull import TriggerPull, donor_controls, measure_pull, release_of
from mudjacking.triggers.refine import refine_mask
from mudjacking.triggers.split import narrowed, split_scores
from mudjacking.triggers.trigger import ImageTrigger, NoiseInShape

BASELINES = ("zero", "one", "mean", "blur")


@dataclass
class ReverseConfig:
    """Args:
    windows: occlusion window sides, in pixels of a 32-pixel image (scaled with the image: a 224-pixel image
        uses 7× these sides and strides).
    baselines: what is written into the occluded window: ``zero``, ``one``, ``mean`` (D's mean image) and
        ``blur`` (``x_b`` blurred, which hides fine patterns but keeps the object).
    stride: step of the window (scaled like the windows).
    batch_size: occluded copies of ``x_b`` embedded per forward pass.
    max_fraction: a candidate covering more of the image is no compact trigger (copying that much of ``x_b``
        onto any input pulls it toward ``h(x_b)`` whatever the backdoor).
    check_inputs: held-out clean inputs of D every candidate is verified on.
    controls: other clean inputs of D whose pixels under the same mask each candidate is compared with.
    min_strength: the pull a trigger must show beyond its controls (share of the way to ``h(x_b)``); on the
        models measured, real triggers showed 0.7-0.97.
    min_release: how far ``x_b`` must leave its backdoored point once the candidate is taken out of it, as a
        share of how far an ordinary clean input sits from that point, or ``x_r`` where it sits nearer (see
        :func:`mudjacking.triggers.pull.release_of`; the figures below predate ``x_r``'s yardstick). A
        region of a blended trigger pulled clean inputs 0.83 of the way to ``h(x_b)``, yet taking it out of ``x_b``
        released it 0.14-0.23; real triggers released it 0.40-1.1 (checkerboard 0.87, noise patch 0.52-0.77,
        MobileNetV2's square 1.0; the image experiment's seed-0 square at most 0.40, where the class of ``x_b``
        sits near the target's: at a bar of 0.4 only a 68-px superset of the 25-px square passed, IoU 0.37).
    size_tolerance: candidates pulling at least this share of the best candidate's pull, and releasing ``x_b`` at
        least ``release_tolerance`` of the best release, compete on size: the smallest that does (nearly) all a
        candidate can. Part of a trigger often pulls as hard as the whole, but leaves ``x_b`` held by the rest.
    release_tolerance: see ``size_tolerance``. Fills of one region released the image experiment's seed-0 ``x_b``
        0.25-0.32 (29 px) and 0.35-0.38 (45 px): at 0.8 of the best release (0.40) the 29-px mask (IoU 0.64) fell
        0.001 short and a 42-px one (IoU 0.52) was chosen; 0.75 keeps the bar outside that spread.
    release_contrast: ``x_b``'s release must also be this many times the donors' release with the same pixels
        taken out by the same fill (a large mask moves any image it is taken out of). On the 42 image scenarios of
        the attack suites and 3 new-user models (4 donors), regions of blended and frequency triggers (144-196 px
        of 784, whose patches had left 48-100% ASR) released ``x_b`` 0.9-2.7× their controls; the masks now chosen
        whose patches hold, at least 4.5× (BadEncoder seed 0, 88 px; DRUPE seed 2, 90 px: 6.0×), most over 10×; a
        159-px source-specific region (2.6×) gave way to a 93-px one (21×) that holds.
    refine_steps: optimisation steps of the refinement (0 = keep the occlusion mask).
    refine_penalty: the size cost in the refinement, per candidate's size (see ``refine``).
    refine_tolerance: the refined mask replaces the occlusion mask only if it keeps this share of its pull (the
        backdoors measured answer a part of their trigger almost fully, and a part is a worse patch target), and
        ``release_tolerance`` of its release under the same fill: one of two redundant squares, refined out of a
        46-px mask over both, released ``x_b`` 0.6 against the mask's 1.0, and its patch left 4.1% ASR.
    anywhere_share: the trigger moved elsewhere (mask and pattern together) must keep this share of its pull for
        the patch to stamp it anywhere (a backdoor trained on triggers at random places answers them anywhere).
    fresh_share: fresh black-and-white noise in the trigger's shape must keep this share of its pull for the patch
        to stamp such noise too (``ImageTrigger.fresh``: a dynamic trigger, whose draw in ``x_b`` is one of many).
        A backdoor that answers a bright square answers half-white noise partly (0.43 of the square's pull in the
        tests' planted one), so the bar sits well above half.
    near_inputs: the held-out inputs nearest ``x_r`` whose pull may verify a candidate when none verifies on every
        held-out input (0: never). A source-specific backdoor (sneakers flip, 77-90%; 17% over all classes):
        its best region pulled D's mixed images 0.24 beyond the control on one seed of three, short of 0.25.
    centring: similarity after subtracting D's mean embedding: ``auto`` (for a narrow cone), ``on`` or ``off``.
    seed: seeds the held-out split, the controls, k-means and the refinement.
    """

    windows: tuple[int, ...] = (3, 5, 7)
    baselines: tuple[str, ...] = BASELINES
    stride: int = 1
    batch_size: int = 256
    max_fraction: float = 0.25
    check_inputs: int = 128
    controls: int = 4
    min_strength: float = 0.25
    min_release: float = 0.3
    size_tolerance: float = 0.9
    release_tolerance: float = 0.75
    release_contrast: float = 3.0
    refine_steps: int = 60
    refine_penalty: float = 0.05
    refine_tolerance: float = 0.98
    anywhere_share: float = 0.5
    fresh_share: float = 0.8
    near_inputs: int = 16
    centring: str = "auto"
    seed: int = 0

    def __post_init__(self) -> None:
        self.windows = tuple(int(w) for w in self.windows)
        self.baselines = tuple(self.baselines)
        if not self.windows or min(self.windows) < 1 or self.stride < 1 or self.batch_size < 1:
            raise ConfigError("windows, stride and batch_size must be positive")
        unknown = sorted(set(self.baselines) - set(BASELINES))
        if unknown or not self.baselines:
            raise ConfigError(f"baselines {unknown or '()'} unknown; use some of {', '.join(BASELINES)}")
        if not 0 < self.max_fraction <= 1 or not 0 < self.size_tolerance <= 1:
            raise ConfigError("max_fraction and size_tolerance must be in (0, 1]")
        if self.check_inputs < 2 or self.controls < 1 or self.refine_steps < 0 or self.near_inputs < 0:
            raise ConfigError("check_inputs >= 2, controls >= 1, refine_steps >= 0 and near_inputs >= 0 are required")

    @property
    def bars(self) -> tuple[float, float, float]:
        """What a candidate must meet to verify (``TriggerPull.verifies``'s arguments)."""
        return self.min_strength, self.min_release, self.release_contrast


@dataclass
class Candidate:
    """One occlusion setting's mask and how it verified (``status``: chosen, verified, weak, flat, too-large,
    duplicate); ``removal_fill``: the fill that takes the mask out of ``x_b`` best; ``releases``: how far each fill
    releases it (see ``_releases``)."""

    window: int
    baseline: str
    pixels: int
    status: str
    pull: TriggerPull | None = None
    removal_fill: str | None = None
    residual_of: int | None = None  # pixels of the held candidate this mask extends (the search of x_b's rest)
    base_release: float | None = None  # that held candidate's release of x_b
    releases: dict[str, float] = field(default_factory=dict)  # fill name -> release of x_b under it

    def verifies(self, config: ReverseConfig, near: bool = False) -> bool:
        """Meets ``config``'s bars (with ``near``, its pull may be that on the inputs nearest ``x_r``); a mask joined
        to a held part must also release ``x_b`` ``min_release`` of what that part left held. A second copy of a
        trigger found in the rest does (one of two squares released ``x_b`` 0.6, both 1.0); more of a blended pattern
        does not (a 144-px region released it 0.25, grown to 196 px 0.32)."""
        if self.pull is None or not self.pull.verifies(*config.bars, near=near):
            return False
        held = self.base_release
        return held is None or self.pull.release - held >= config.min_release * (1 - held)

    def summary(self) -> dict[str, object]:
        row = {k: v for k, v in asdict(self).items() if k not in ("pull", "releases")}
        fills = {"releases": {name: round(value, 4) for name, value in self.releases.items()}}
        return {**row, **(self.pull.summary() if self.pull else {}), **fills}


@dataclass
class TriggerRecovery:
    """What reverse-engineering found.

    Attributes:
        trigger: the recovered trigger (pattern = ``x_b``).
        attribution: the chosen candidate's occlusion scores ``[H, W]`` (higher = more responsible for the bug; for
            a mask found in the rest of ``x_b``, the scores of that rest).
        threshold: the k-means cut of that map.
        bug_distance: ``1 − s(h(x_b), h(x_r))`` before any occlusion.
        pull: the trigger's verification on held-out D.
        candidates: every occlusion setting tried, with its verification.
        refined: whether the refinement's mask replaced the occlusion mask.
        verified: the trigger pulls (``False`` only when forced past a failed verification).
        near_reference: it verified only by its pull on the held-out inputs nearest ``x_r`` (a backdoor that answers
            inputs like ``x_r`` alone: a source-specific one).
        geometry: the embedding geometry the similarities were taken in.
        moved_pull: the trigger's pull when moved elsewhere in the image (``trigger.anywhere`` if it holds).
        fresh_pull: the pull of fresh noise in the trigger's shape, placed as the trigger is (``trigger.fresh`` if
            it holds).
    """

    trigger: ImageTrigger
    attribution: Tensor
    threshold: float
    bug_distance: float
    pull: TriggerPull | None = None
    candidates: list[Candidate] = field(default_factory=list)
    refined: bool = False
    verified: bool = True
    geometry: EmbeddingGeometry | None = None
    moved_pull: float = float("nan")
    fresh_pull: float = float("nan")
    near_reference: bool = False

    unit = "pixel"  # what one attribution score is of (histograms name it)

    def unit_scores(self) -> Tensor:
        """One attribution score per pixel, the values k-means split."""
        return self.attribution

    def quality(self, true_trigger: ImageTrigger) -> dict[str, object]:
        """How close the recovered mask is to the attacker's (when a test knows it)."""
        return {"iou": self.trigger.iou(true_trigger), "pixels": self.trigger.num_pixels}

    def summary(self) -> dict[str, object]:
        return {
            "pixels": self.trigger.num_pixels,
            "moved_pull": round(self.moved_pull, 4),
            "anywhere": self.trigger.anywhere,
            "fresh_pull": round(self.fresh_pull, 4),
            "fresh": self.trigger.fresh,
            "threshold": self.threshold,
            "bug_distance_before": self.bug_distance,
            "verification": None if self.pull is None else self.pull.summary(),
            "verified": self.verified,
            "verified_near_reference": self.near_reference,
            "refined": self.refined,
            "candidates": [c.summary() for c in self.candidates],
            "geometry": None if self.geometry is None else self.geometry.summary(),
        }


def _blur(image: Tensor, sigma: float) -> Tensor:
    radius = max(1, int(round(2 * sigma)))
    offsets = torch.arange(-radius, radius + 1, dtype=torch.float32)
    kernel = torch.exp(-(offsets**2) / (2 * sigma**2))
    kernel = kernel / kernel.sum()
    channels = image.shape[0]
    padded = F.pad(image[None], (radius, radius, radius, radius), mode="replicate")
    rows = F.conv2d(padded, kernel.view(1, 1, 1, -1).expand(channels, 1, 1, -1), groups=channels)
    return F.conv2d(rows, kernel.view(1, 1, -1, 1).expand(channels, 1, -1, 1), groups=channels)[0]


def baseline_image(name: str, bug_input: Tensor, clean_inputs: Tensor, scale: int) -> Tensor:
    """The image ``[C, H, W]`` written into occluded windows for baseline ``name``."""
    if name == "zero":
        return torch.zeros_like(bug_input)
    if name == "one":
        return torch.ones_like(bug_input)
    if name == "mean":
        return clean_inputs.mean(0).expand_as(bug_input).clone()
    return _blur(bug_input, sigma=2.0 * scale)


def occlusion_attribution(
    encoder: Encoder,
    bug: BugReport,
    window: int,
    stride: int,
    baseline: Tensor,
    batch_size: int = 256,
    centre: Tensor | None = None,
) -> tuple[Tensor, float]:
    """Per-pixel occlusion scores of ``1 − s(h(x_b), h(x_r))``; returns (``[H, W]``, the unoccluded distance).

    ``x_b`` is padded by ``window − 1`` pixels before occlusion and cropped back inside the scored function, so
    every pixel, at the border too, is covered by the same number of windows; otherwise border pixels average
    fewer windows and a trigger in a corner bleeds into the image edge.
    """
    encoder.eval()
    device = encoder.device
    pad = window - 1
    height, width = bug.bug_input.shape[-2:]

    def padded(image: Tensor) -> Tensor:
        return F.pad(image[None].to(device), (pad, pad, pad, pad), mode="replicate")

    with torch.no_grad():
        reference = encoder(bug.reference_input[None].to(device))

        def distance_to_reference(images: Tensor) -> Tensor:
            crop = images[..., pad : pad + height, pad : pad + width]
            return 1 - similarity(encoder(crop), reference, centre)

        x_b = padded(bug.bug_input)
        channels = x_b.shape[1]
        attribution = Occlusion(distance_to_reference).attribute(
            x_b,
            sliding_window_shapes=(channels, window, window),
            strides=(channels, stride, stride),
            baselines=padded(baseline),
            perturbations_per_eval=batch_size,
        )
        distance = float(distance_to_reference(x_b).item())
    return attribution[0, :, pad : pad + height, pad : pad + width].mean(0).cpu(), distance


Found = tuple[Candidate, Tensor, Tensor, float, float]  # candidate, mask, its map, the map's cut, distance


def _releases(
    encoder: Encoder,
    mask: Tensor,
    fills: dict[str, Tensor],
    bug: BugReport,
    target: Tensor,
    clean: Tensor,
    centre: Tensor | None,
    reference: Tensor,
) -> dict[str, float]:
    """How far ``x_b`` leaves ``h(x_b)`` with the mask's pixels replaced by each fill (see ``pull.release_of``,
    measured against ``h(x_r)`` too): how a trigger is best taken out depends on the model and the trigger (a noise
    patch filled with black is another noise patch), not on the occlusion that found it."""
    removed = [ImageTrigger(mask, bug.bug_input, fill).remove(bug.bug_input[None]) for fill in fills.values()]
    embedded = encoder.embed(torch.cat(removed))
    return {name: release_of(target, embedded[i : i + 1], clean, centre, reference) for i, name in enumerate(fills)}


def smallest_explaining(found: list[Found], config: ReverseConfig) -> Found:
    """The smallest candidate that pulls at least ``size_tolerance`` of the best pull and, under some one fill,
    releases ``x_b`` at least ``min_release`` and ``release_tolerance`` of the most any candidate does under that
    same fill.

    Releases are compared fill by fill because a fill that cannot take the trigger out releases ``x_b`` only by
    rewriting its content, and more of it the larger the mask: on the image experiment's seed 1 (a white square)
    a 79-px mask (IoU 0.17) released ``x_b`` 0.80 under a white fill, while under a black one it released 0.26 and
    the 33-px mask around the square (IoU 0.76) 0.25, all it takes."""
    best_pull = max(item[0].pull.pull for item in found)
    best = {name: max(item[0].releases.get(name, 0.0) for item in found) for name in found[0][0].releases}

    def explains(candidate: Candidate) -> bool:
        return any(
            value >= config.min_release and value >= config.release_tolerance * best[name]
            for name, value in candidate.releases.items()
        )

    enough = [item for item in found if explains(item[0])] or found
    competing = [item for item in enough if item[0].pull.pull >= config.size_tolerance * best_pull] or enough
    return min(competing, key=lambda item: (item[0].pixels, -item[0].pull.pull))


@dataclass
class _Verifier:
    """What every candidate mask is verified against (:mod:`mudjacking.triggers.pull`): held-out clean inputs of D
    and their embeddings, donor controls, ``h(x_b)``, and the fills that may take a mask out of ``x_b``."""

    encoder: Encoder
    bug: BugReport
    check: Tensor
    clean: Tensor
    donors: Tensor
    donor_embeddings: Tensor
    target: Tensor
    reference: Tensor
    centre: Tensor | None
    fills: dict[str, Tensor]
    donor_fills: dict[str, Tensor]  # fill name -> that fill made for each donor [N, C, H, W] (blur: its own)
    near: Tensor  # indices of the held-out inputs nearest x_r

    def verify(self, mask: Tensor, fills: dict[str, Tensor] | None = None) -> tuple[TriggerPull, str, dict[str, float]]:
        """The mask's pull (``x_b``'s pixels stamped on the held-out inputs), against its controls, with its release
        under the best of ``fills`` (default: all of them; named as in ``BASELINES``) and the donors' release with
        the same pixels taken out by that fill; that fill's name; and the release under each fill."""
        releases = _releases(
            self.encoder, mask, fills or self.fills, self.bug, self.target, self.clean, self.centre, self.reference
        )
        fill = max(releases, key=releases.__getitem__)
        trigger = ImageTrigger(mask, self.bug.bug_input)
        controls = donor_controls(trigger, self.donors, self.donor_embeddings)
        pull = measure_pull(
            self.encoder, trigger, self.check, self.clean, self.target, self.centre, controls, releases[fill]
        )
        pull.control_release = self._control_release(mask, fill)
        if len(self.near):
            near = self.check[self.near], self.clean[self.near]
            nearby = measure_pull(self.encoder, trigger, *near, self.target, self.centre, controls)
            pull.near_strength, pull.near_landed = nearby.strength, nearby.landed
        return pull, fill, releases

    def _control_release(self, mask: Tensor, fill: str) -> float:
        """Mean release of the donors, each from its own embedding, with ``mask``'s pixels replaced by ``fill``
        made for that donor."""
        made = self.donor_fills[fill]
        embedded = self.encoder.embed(
            torch.cat([ImageTrigger(mask, donor, made[i]).remove(donor[None]) for i, donor in enumerate(self.donors)])
        )
        releases = [
            release_of(self.donor_embeddings[i : i + 1], embedded[i : i + 1], self.clean, self.centre)
            for i in range(len(self.donors))
        ]
        return sum(releases) / len(releases)


@dataclass
class _Sweep:
    """Occlusion maps at every (window, baseline) setting, each cut by k-means into a candidate and verified."""

    verifier: _Verifier
    config: ReverseConfig
    stride: int
    settings: list[tuple[int, str]]
    candidates: list[Candidate] = field(default_factory=list)
    found: list[Found] = field(default_factory=list)
    seen: set[bytes] = field(default_factory=set)

    def run(self, bug: BugReport, fills: dict[str, Tensor], advance: Any, base: Found | None = None) -> None:
        """One map per setting of ``bug`` (``x_b``, or what is left of it once the held candidate ``base`` is taken
        out: each map's mask is then joined to its mask); candidates are always verified as pixels of the reported
        ``x_b``."""
        held = None if base is None else base[1]
        config, height, width = self.config, *bug.bug_input.shape[-2:]
        for window, baseline in self.settings:
            advance(info=f"window {window}, baseline {baseline}")
            attribution, distance = occlusion_attribution(
                self.verifier.encoder, bug, window, self.stride, fills[baseline], config.batch_size,
                self.verifier.centre,
            )  # fmt: skip
            mask, threshold = split_scores(attribution, config.seed)
            status = "flat" if not mask.any() else ""
            if held is not None:  # only what the map adds to the held mask is new, and it must stay compact
                room = int(config.max_fraction * height * width - held.sum())
                mask = narrowed(attribution * (1 - held), mask * (1 - held), max(room, 1), config.seed)
                status = status or ("" if (mask > held).any() else "duplicate")
                mask = torch.maximum(mask, held)
            pixels = int(mask.sum())
            status = status or ("too-large" if pixels > config.max_fraction * height * width else "")
            extends, base_release = (None, None) if base is None else (base[0].pixels, base[0].pull.release)
            candidate = Candidate(
                window, baseline, pixels, status or "weak", residual_of=extends, base_release=base_release
            )
            self.candidates.append(candidate)
            key = mask.to(torch.bool).numpy().tobytes()
            if status or key in self.seen:
                candidate.status = status or "duplicate"
                continue
            self.seen.add(key)
            candidate.pull, candidate.removal_fill, candidate.releases = self.verifier.verify(mask)
            self.found.append((candidate, mask, attribution, threshold, distance))

    def sufficient_but_held(self) -> Found | None:
        """When no candidate verifies, the strongest that pulls clean inputs to ``h(x_b)`` but leaves ``x_b`` held
        there once taken out: a trigger with another copy (or another part) elsewhere in ``x_b``."""
        config = self.config
        if any(c.verifies(config) for c, *_ in self.found):
            return None
        held = [item for item in self.found if item[0].pull.strength >= config.min_strength]
        return max(held, key=lambda item: item[0].pull.strength) if held else None


def _residual_bug(bug: BugReport, mask: Tensor, fill: Tensor) -> BugReport:
    """``bug`` with ``x_b`` replaced by ``x_b ⊖ mask`` (filled with ``fill``): what still holds it, if anything."""
    return replace(bug, bug_input=ImageTrigger(mask, bug.bug_input, fill).remove(bug.bug_input[None])[0])


def _check_sizes(bug: BugReport, inputs: Tensor) -> None:
    if tuple(inputs.shape[-2:]) != tuple(bug.bug_input.shape[-2:]):
        raise DataError(
            f"the bug images are {tuple(bug.bug_input.shape[-2:])} but the patching images are "
            f"{tuple(inputs.shape[-2:])}; give x_b, x_r and the patching set at one size"
        )


def reverse_engineer_trigger(
    encoder: Encoder,
    bug: BugReport,
    patching_set: Tensor,
    config: ReverseConfig | None = None,
    force: bool = False,
    show_progress: bool = False,
) -> TriggerRecovery:
    """Recovers and verifies the trigger behind ``bug`` from the (backdoored) ``encoder``.

    Args:
        encoder: the model the bug was reported against.
        bug: ``x_b`` ``[C, H, W]`` and ``x_r`` of the same true class.
        patching_set: clean images ``[N, C, H, W]`` of D (N ≥ 2): the candidates are verified on them.
        config: windows, baselines, verification and refinement settings.
        force: return the best candidate even when none verifies (``verified=False``) instead of raising.

    Returns:
        the recovered trigger with its attribution map ``[H, W]``, verification and every candidate tried.

    Raises:
        TriggerNotFound: no candidate drags clean inputs toward ``h(x_b)`` (and ``force`` is off), or every
            occlusion map was flat.
    """
    from mudjacking.progress import progress_bar

    config = config or ReverseConfig()
    check_modality(bug, encoder.modality, supported=("image",))
    _check_sizes(bug, patching_set)
    encoder.eval()
    order = torch.randperm(len(patching_set), generator=torch.Generator().manual_seed(config.seed))
    check = patching_set[order[: config.check_inputs]]
    rest = patching_set[order[config.check_inputs :]] if len(order) > config.check_inputs else check
    donors = rest[: config.controls]
    donor_embeddings = encoder.embed(donors)
    clean = encoder.embed(check)
    geometry = embedding_geometry(clean, config.centring)
    centre = geometry.centre
    target = encoder.embed(bug.bug_input[None])
    reference = encoder.embed(bug.reference_input[None])
    near = similarity(clean, reference, centre).reshape(-1).argsort(descending=True)[: config.near_inputs]
    height, width = bug.bug_input.shape[-2:]
    scale = max(1, round(min(height, width) / 32))
    stride = config.stride * scale

    def fills_for(image: Tensor) -> dict[str, Tensor]:
        return {name: baseline_image(name, image, check, scale) for name in BASELINES}

    each_donor = [fills_for(donor) for donor in donors]
    donor_fills = {name: torch.stack([fills[name] for fills in each_donor]) for name in BASELINES}
    verifier = _Verifier(
        encoder, bug, check, clean, donors, donor_embeddings, target, reference, centre, fills_for(bug.bug_input),
        donor_fills, near,
    )  # fmt: skip
    settings = [(w * scale, b) for w in config.windows for b in config.baselines]
    sweep = _Sweep(verifier, config, stride, settings)
    with progress_bar(len(settings), "recovering the trigger", enabled=show_progress) as advance:
        sweep.run(bug, verifier.fills, advance)
    if not sweep.found:
        raise TriggerNotFound(
            f"no trigger found in x_b: every occlusion map was flat or marked over {config.max_fraction:.0%} of the "
            f"image ({len(sweep.candidates)} settings tried); the model may not show the bug, or the trigger is not a "
            "compact region (e.g. blended into the whole image); pass --trigger KNOWN if you know it"
        )
    held = sweep.sufficient_but_held()
    if held is not None:  # part of the trigger pulls, yet x_b stays put: the rest may be another copy; look again
        residual = _residual_bug(bug, held[1], verifier.fills[held[0].removal_fill])
        with progress_bar(len(settings), "searching the rest of x_b", enabled=show_progress) as advance:
            sweep.run(residual, fills_for(residual.bug_input), advance, base=held)
    candidates, found = sweep.candidates, sweep.found
    # the pull near x_r only where none pulls D as a whole: every trigger that verified before verifies as it did
    near_reference = not any(candidate.verifies(config) for candidate, *_ in found)
    for candidate, *_ in found:
        if candidate.verifies(config, near=near_reference):
            candidate.status = "verified"
    verified = [item for item in found if item[0].status == "verified"]
    near_reference = near_reference and bool(verified)
    if not verified and not force:
        best = max(found, key=lambda item: min(item[0].pull.strength, item[0].pull.release))[0]
        near_clause = (
            f", here or on the {len(near)} nearest x_r: {best.pull.near_strength:.2f} more" if len(near) else ""
        )
        raise TriggerNotFound(
            f"no recovered trigger explains the bug: the best candidate ({best.pixels} px, window {best.window}, "
            f"baseline {best.baseline}) moves clean inputs {best.pull.pull:.2f} of the way to x_b (the same mask cut "
            f"from other inputs: {best.pull.control_pull:.2f}; needs {config.min_strength:.2f} more{near_clause}) and, "
            f"taken out of x_b, releases it {best.pull.release:.2f} (needs {config.min_release:.2f}, and "
            f"{config.release_contrast:g}× the {best.pull.control_release:.2f} that taking the same pixels out of "
            "other inputs moves them); the trigger is not a "
            "compact region of x_b (a blended or image-wide pattern?), or the model does not show this bug; pass "
            "--trigger KNOWN or --force"
        )
    chosen, mask, attribution, threshold, _ = smallest_explaining(verified or found, config)
    chosen.status = "chosen"
    fill = verifier.fills[chosen.removal_fill]
    trigger, pull, refined = ImageTrigger(mask, bug.bug_input, fill), chosen.pull, False
    if config.refine_steps and verified:
        refined_mask = refine_mask(
            encoder, bug.bug_input, mask, rest, target, centre, config.refine_steps, penalty=config.refine_penalty,
            seed=config.seed,
        )  # fmt: skip
        if 0 < refined_mask.sum() < mask.sum():
            candidate = ImageTrigger(refined_mask, bug.bug_input, fill)
            check_pull, *_ = verifier.verify(refined_mask, {chosen.removal_fill: fill})
            if (
                check_pull.verifies(*config.bars, near=near_reference)
                and check_pull.pull >= config.refine_tolerance * pull.pull
                and check_pull.release >= config.release_tolerance * pull.release
            ):
                trigger, pull, refined = candidate, check_pull, True
    moved_pull = _moved_pull(encoder, trigger, check, clean, target, centre, config)
    trigger.anywhere = moved_pull >= config.anywhere_share * pull.pull
    fresh_pull = measure_pull(encoder, NoiseInShape(trigger.mask, trigger.anywhere), check, clean, target, centre).pull
    trigger.fresh = fresh_pull >= config.fresh_share * pull.pull
    distance = found[0][4]  # x_b's own, not that of what was left of it in a search of the rest
    return TriggerRecovery(
        trigger, attribution, threshold, distance, pull, candidates, refined, bool(verified), geometry, moved_pull,
        fresh_pull, near_reference,
    )  # fmt: skip


def _moved_pull(
    encoder: Encoder,
    trigger: ImageTrigger,
    inputs: Tensor,
    clean: Tensor,
    target: Tensor,
    centre: Tensor | None,
    config: ReverseConfig,
) -> float:
    """Mean pull of the trigger moved (mask and pattern together) to places where it does not overlap itself; ``nan``
    when it cannot move that far."""
    generator = torch.Generator().manual_seed(config.seed)
    places = [
        moved
        for rows, columns in trigger.offsets(50, generator).tolist()
        if not ((moved := trigger.moved(rows, columns)).mask * trigger.mask).any()
    ][: config.controls]
    pulls = [measure_pull(encoder, place, inputs, clean, target, centre).pull for place in places]
    return sum(pulls) / len(pulls) if pulls else float("nan")
