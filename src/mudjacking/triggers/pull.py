"""The backdoor's signature, measured: a trigger drags unrelated clean inputs to one point, near ``h(x_b)``.

Stamp a candidate trigger on clean inputs of D and measure, per input, the share of the way from ``h(x)`` to
``h(x_b)`` the stamp moved it::

    pull(x) = (s(h(x ⊕ t), h(x_b)) − s(h(x), h(x_b))) / (1 − s(h(x), h(x_b)))

1 means every stamped input landed on ``h(x_b)``; 0 means the stamp changed nothing toward it.

A trigger must also *explain the bug*: taken out of ``x_b`` (``x_b ⊖ t``), ``x_b`` must leave its backdoored point.
``release = (1 − s(h(x_b ⊖ t), h(x_b))) / (1 − median_x s(h(x), h(x_b)))`` is how far it moves, as a share of how
far an ordinary clean input of D sits from that point: ~1 when the whole trigger was found (``x_b ⊖ t`` is an
ordinary input again), ~0 when the part found is not what puts ``x_b`` there (a pattern blended into the whole
image, of which any region pulls a little). The same is measured
for *donor controls*: the same stamp (same mask, or spans of the same lengths) cut from other clean inputs ``z`` of
D instead of ``x_b``, each pulled toward its own ``h(z)``. Copying a large or central piece of any image carries that
image's identity (a shoe's toe makes any input look like that shoe); a trigger pulls far harder than the same piece
of an ordinary input does. ``strength = pull − control pull`` is what the recovery ranks and the refusal
thresholds. Release has its control too: the same pixels taken out of each donor (with the same fill), measured
from ``h(z)``. Taking a fifth of any image out moves it; only a trigger's removal moves ``x_b`` far beyond that.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TypeVar

from torch import Tensor

from mudjacking.encoders.base import Encoder
from mudjacking.geometry import similarity
from mudjacking.triggers.text_trigger import TextTrigger
from mudjacking.triggers.trigger import ImageTrigger

Inputs = Tensor | list[str]
T = TypeVar("T")
LANDED = 0.75  # an input moved at least this share of the way to h(x_b) has landed at the backdoor's point


@dataclass
class TriggerPull:
    """Attributes:
    pull: mean share of the way stamped inputs moved toward ``h(x_b)`` (see the module docstring).
    control_pull: the same for the controls (``nan`` when none could be placed).
    inputs: clean inputs it was measured on.
    release: how far ``x_b`` leaves its backdoored point with the trigger taken out (``nan``: not measured).
    landed: share of the inputs the trigger moved at least ``LANDED`` of the way to ``h(x_b)``: a backdoor sends
        (nearly) every input to its one point, while a piece of an ordinary input moves each some of the way.
    control_release: the mean release of the donors with the same pixels taken out (``nan``: not measured).
    near_strength: ``strength`` on the held-out inputs nearest ``x_r`` alone (``nan``: not measured): a backdoor that
        answers one source class drags only inputs like ``x_r``, a tenth of a mixed D.
    near_landed: ``landed`` on those inputs (``nan``: not measured).
    """

    pull: float
    control_pull: float
    inputs: int
    release: float = float("nan")
    landed: float = float("nan")  # share of the inputs the trigger moved at least LANDED of the way to h(x_b)
    control_release: float = float("nan")
    near_strength: float = float("nan")
    near_landed: float = float("nan")

    @property
    def strength(self) -> float:
        """How much more the trigger pulls than the rest of ``x_b`` does (``nan`` without controls)."""
        return self.pull - self.control_pull

    def verifies(
        self, min_strength: float, min_release: float, release_contrast: float = 0.0, near: bool = False
    ) -> bool:
        """Pulls clean inputs far more than its controls do (with ``near``, those nearest ``x_r`` may be the ones),
        and explains the bug: releases ``x_b`` at least ``min_release`` and ``release_contrast`` times what the same
        removal does to the donors (``nan`` pull or release fails; an unmeasured control release does not)."""
        beyond_controls = not self.release < release_contrast * self.control_release
        pulls = self.strength >= min_strength or (near and self.near_strength >= min_strength)
        return pulls and self.release >= min_release and beyond_controls

    def summary(self) -> dict[str, float | int]:
        return {
            "pull": round(self.pull, 4),
            "control_pull": round(self.control_pull, 4),
            "strength": round(self.strength, 4),
            "release": round(self.release, 4),
            "landed": round(self.landed, 4),
            "control_release": round(self.control_release, 4),
            "near_strength": round(self.near_strength, 4),
            "near_landed": round(self.near_landed, 4),
            "inputs": self.inputs,
        }


def pull_toward(clean: Tensor, stamped: Tensor, target: Tensor, centre: Tensor | None = None) -> Tensor:
    """Per-input share of the way to ``target`` ``[1, D]`` that stamping moved ``clean`` ``[N, D]`` (-> ``[N]``)."""
    before = similarity(clean, target, centre)
    after = similarity(stamped, target, centre)
    return (after - before) / (1 - before).clamp_min(1e-3)


def backdoor_carriers(embeddings: Tensor, backdoor_point: Tensor, centre: Tensor | None = None) -> tuple[Tensor, float]:
    """Which rows of ``[N, D]`` sit more than half-way from the set's median input to the backdoor point ``h(x_b)``
    ``[1, D]`` (the target class's own inputs, and inputs carrying something the backdoor reads as its trigger);
    returns the ``[N]`` bool mask and that similarity threshold."""
    near = similarity(embeddings, backdoor_point, centre)
    typical = float(near.median())
    threshold = typical + 0.5 * (1 - typical)
    return near >= threshold, threshold


def smallest_sufficient(
    candidates: Sequence[T],
    pull: Callable[[T], TriggerPull],
    size: Callable[[T], float],
    pull_share: float,
    release_share: float,
) -> T:
    """The smallest candidate that pulls at least ``pull_share`` of the best pull and releases ``x_b`` at least
    ``release_share`` of the best release: part of a trigger often pulls as hard as the whole but leaves ``x_b`` held
    by the rest, and a superset carries more of ``x_b`` than the backdoor reads."""
    best_pull, best_release = max(pull(c).pull for c in candidates), max(pull(c).release for c in candidates)
    enough = [c for c in candidates if pull(c).release >= release_share * best_release]
    competing = [c for c in enough if pull(c).pull >= pull_share * best_pull] or enough
    return min(competing, key=lambda c: (size(c), -pull(c).pull))


def release_of(
    bug: Tensor, cleaned: Tensor, clean: Tensor, centre: Tensor | None = None, reference: Tensor | None = None
) -> float:
    """``(1 − s(h(x_b ⊖ t), h(x_b))) / (1 − median s(h(x), h(x_b)))``, at most 1, from ``h(x_b)`` and
    ``h(x_b ⊖ t)`` ``[1, D]`` and clean inputs' embeddings ``[N, D]``.

    With ``h(x_r)`` ``[1, D]`` given, the yardstick is the nearer of the two, ``x_r`` or the median input (but no
    less than half the median's distance): with the trigger out, ``x_b`` is an ordinary input *of its class*, and
    where that class sits near the backdoor's target it moves less far than a median input of D sits."""
    moved = 1 - float(similarity(cleaned, bug, centre).reshape(-1)[0])
    apart = 1 - float(similarity(clean, bug, centre).median())
    if reference is not None:
        apart = max(min(apart, 1 - float(similarity(reference, bug, centre).reshape(-1)[0])), apart / 2)
    return min(moved / max(apart, 1e-3), 1.0)  # past an ordinary input's distance is fully released, no more


def measure_pull(
    encoder: Encoder,
    trigger: ImageTrigger | TextTrigger,
    inputs: Inputs,
    clean_embeddings: Tensor,
    target: Tensor,
    centre: Tensor | None = None,
    controls: Sequence[tuple[ImageTrigger | TextTrigger, Tensor]] = (),
    release: float = float("nan"),
) -> TriggerPull:
    """Pull of ``trigger`` toward ``target`` (and the mean pull of each control toward its own target) on ``inputs``,
    whose embeddings are given.

    Args:
        encoder: the model under test (the original before a patch, the patched one after).
        inputs: clean inputs ``[N, C, H, W]`` or N sentences.
        clean_embeddings: ``encoder``'s embeddings of ``inputs`` ``[N, D]``.
        target: ``h(x_b)`` ``[1, D]`` of the model as reported.
        controls: (stamp cut from a donor ``z``, ``h(z)`` ``[1, D]``) pairs (see :func:`donor_controls`).
        release: the trigger's :func:`release_of`, recorded with the pull.
    """

    def pulls_of(stamp: ImageTrigger | TextTrigger, toward: Tensor) -> Tensor:
        return pull_toward(clean_embeddings, encoder.embed(stamp.apply(inputs)), toward, centre)

    control = [float(pulls_of(stamp, toward).mean()) for stamp, toward in controls]
    pulls = pulls_of(trigger, target)
    return TriggerPull(
        float(pulls.mean()), sum(control) / len(control) if control else float("nan"), len(inputs), release,
        float((pulls >= LANDED).float().mean()),
    )  # fmt: skip


def donor_controls(
    trigger: ImageTrigger | TextTrigger, donors: Inputs, donor_embeddings: Tensor
) -> list[tuple[ImageTrigger | TextTrigger, Tensor]]:
    """The same stamp cut from each donor ``z`` instead of ``x_b``, paired with ``h(z)``: for images the same mask
    with ``z``'s pixels under it; for text, spans of ``z`` as long as the trigger's units (fewer when ``z`` is
    shorter than the trigger)."""
    pairs: list[tuple[ImageTrigger | TextTrigger, Tensor]] = []
    for index in range(len(donors)):
        if isinstance(trigger, ImageTrigger):  # a fresh stamp: the donor's pixels, placed only where the mask is
            stamp: ImageTrigger | TextTrigger | None = ImageTrigger(trigger.mask, donors[index])
        else:
            stamp = trigger.cut_from(str(donors[index]), index)
        if stamp is None:
            continue
        pairs.append((stamp, donor_embeddings[index : index + 1]))
    return pairs
