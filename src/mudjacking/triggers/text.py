"""Recovering a text trigger (rare words, several words, or a phrase) from one bug report, verified on D.

Recovery (Mudjacking §4.2 for text, extended to phrases):
1. Score every word of ``x_b`` by ablation (captum ``FeatureAblation``, one feature per word): how much dropping it
   lowers ``1 − s(h(x_b), h(x_r))``; k-means (k = 2) on the scores gives the word-level candidate (its adjacent
   words joined into phrases). The trigger's score stands out by size; its sign depends on where the attacker's
   target sits relative to ``x_r``, so k-means sees the raw scores.
2. Score every contiguous span of 1 to ``max_span`` words the same way (removing the whole span): a phrase whose
   words each do little alone is found as one span. The two best spans of each length are candidates, and each
   candidate span is also grown word by word while removing it from ``x_b`` releases ``x_b`` more (part of a phrase
   pulls almost as hard as the phrase, but what is left of it in ``x_b`` keeps ``x_b`` at the backdoor point).
3. Verify each candidate on held-out sentences of D (:mod:`mudjacking.triggers.pull`): inserted (a phrase as one
   span), it must drag them toward ``h(x_b)`` far more than spans of the same lengths from other sentences of D drag
   them toward those sentences. Among the
   candidates that pull nearly as hard as the best, the one with the fewest words wins.
4. None pulls: :class:`TriggerNotFound` (the caller refuses, unless forced).
"""

from __future__ import annotations

import random
from collections.abc import Callable
from dataclasses import dataclass, field

import torch
from captum.attr import FeatureAblation
from torch import Tensor

from mudjacking.data.bug_report import BugReport, check_modality
from mudjacking.encoders.base import Encoder
from mudjacking.errors import ConfigError, TriggerNotFound
from mudjacking.geometry import EmbeddingGeometry, embedding_geometry, similarity
from mudjacking.triggers.pull import TriggerPull, donor_controls, measure_pull, release_of, smallest_sufficient
from mudjacking.triggers.split import split_scores
from mudjacking.triggers.text_trigger import TextTrigger


@dataclass
class TextReverseConfig:
    """Args:
    max_span: longest contiguous span of ``x_b`` scored as one candidate (phrase triggers).
    check_inputs: held-out sentences of D every candidate is verified on.
    controls: other sentences of D whose spans (as long as the candidate's) each candidate is compared with.
    min_strength: the pull a trigger must show beyond its controls (share of the way to ``h(x_b)``).
    min_release: how far ``x_b`` must leave its backdoored point once the candidate is removed from it, as a share
        of how far an ordinary clean sentence sits from that point (see :mod:`mudjacking.triggers.pull`).
    size_tolerance: candidates pulling at least this share of the best candidate's pull, and releasing ``x_b`` at
        least ``release_tolerance`` of the best release, compete on word count. Three words of the phrase "I
        watched this 3D movie" pulled 0.91 of the way but released ``x_b`` 0.50; four, 0.98 and 1.07.
    release_tolerance: see ``size_tolerance``.
    idle_pull: a verified part of the chosen candidate that pulls within this of it replaces it: the other words
        add no pull, only ``x_b``'s own content, which inflates the release (``cf`` and ``cf the film`` both pulled
        0.995 on an experiment seed, but released 0.57 and 0.97, so the superset won on release).
    centring: similarity after subtracting D's mean embedding: ``auto`` (for a narrow cone), ``on`` or ``off``.
    seed: seeds the held-out split, insertion positions, controls and k-means.
    """

    max_span: int = 5
    check_inputs: int = 48
    controls: int = 3
    min_strength: float = 0.25
    min_release: float = 0.4
    size_tolerance: float = 0.9
    release_tolerance: float = 0.8
    idle_pull: float = 0.005
    centring: str = "auto"
    seed: int = 0

    def __post_init__(self) -> None:
        if self.max_span < 1 or self.check_inputs < 2 or self.controls < 1:
            raise ConfigError("max_span >= 1, check_inputs >= 2 and controls >= 1 are required")
        if not 0 < self.size_tolerance <= 1:
            raise ConfigError("size_tolerance must be in (0, 1]")


@dataclass
class TextCandidate:
    """One candidate trigger (its units), where it came from, and how it verified."""

    words: list[str]
    source: str
    status: str = "weak"
    pull: TriggerPull | None = None

    def summary(self) -> dict[str, object]:
        row = {"words": self.words, "source": self.source, "status": self.status}
        return {**row, **(self.pull.summary() if self.pull else {})}


@dataclass
class TextTriggerRecovery:
    """Recovered trigger, the per-word scores of ``x_b``, the k-means threshold, and every candidate's check."""

    trigger: TextTrigger
    words: list[str]
    scores: Tensor
    threshold: float
    bug_distance: float
    pull: TriggerPull | None = None
    candidates: list[TextCandidate] = field(default_factory=list)
    verified: bool = True
    geometry: EmbeddingGeometry | None = None

    unit = "word"  # what one attribution score is of (histograms name it)

    def unit_scores(self) -> Tensor:
        """One score per word of ``x_b``, the values k-means split."""
        return self.scores

    def quality(self, true_trigger: TextTrigger) -> dict[str, object]:
        """Whether the recovered words are the attacker's (when a test knows them)."""
        return {
            "words": self.trigger.words,
            "exact_match": set(self.trigger.words) == set(true_trigger.words),
            "jaccard": self.trigger.overlap(true_trigger),
        }

    def summary(self) -> dict[str, object]:
        return {
            "words": self.trigger.words,
            "context": [list(side) for side in self.trigger.context],
            "threshold": self.threshold,
            "bug_distance_before": self.bug_distance,
            "verification": None if self.pull is None else self.pull.summary(),
            "verified": self.verified,
            "candidates": [c.summary() for c in self.candidates],
            "geometry": None if self.geometry is None else self.geometry.summary(),
        }


def word_ablation_scores(
    encoder: Encoder, bug: BugReport, centre: Tensor | None = None, batch_size: int = 64
) -> tuple[list[str], Tensor, float]:
    """Per-word scores of ``x_b``: ``d(x_b) − d(x_b without the word)`` with ``d = 1 − s(h(·), h(x_r))``."""
    words = str(bug.bug_input).split()
    with torch.no_grad():
        reference = encoder([str(bug.reference_input)])

        def distance(presence: Tensor) -> Tensor:
            sentences = [
                " ".join(w for w, keep in zip(words, row.tolist(), strict=True) if keep > 0.5) for row in presence
            ]
            return 1 - similarity(encoder(sentences), reference, centre)

        present = torch.ones(1, len(words))
        scores = FeatureAblation(distance).attribute(present, baselines=0.0, perturbations_per_eval=batch_size)
        base = float(distance(present).item())
    return words, scores[0], base


def span_scores(
    encoder: Encoder, bug: BugReport, max_span: int, centre: Tensor | None = None
) -> dict[tuple[int, int], float]:
    """``(start, end) -> d(x_b) − d(x_b without words[start:end])`` for every span of 1..``max_span`` words."""
    words = str(bug.bug_input).split()
    spans = [(s, s + n) for n in range(1, max_span + 1) for s in range(len(words) - n + 1)]
    ablated = [" ".join(words[:s] + words[e:]) for s, e in spans]
    reference = encoder.embed([str(bug.reference_input)])
    full = 1 - similarity(encoder.embed([str(bug.bug_input)]), reference, centre)
    distances = 1 - similarity(encoder.embed(ablated), reference, centre)
    return {span: float(full[0] - d) for span, d in zip(spans, distances, strict=True)}


def _runs(chosen: list[bool]) -> list[tuple[int, int]]:
    """``(start, end)`` of every run of adjacent chosen words."""
    runs, start = [], None
    for index, keep in enumerate([*chosen, False]):
        if keep and start is None:
            start = index
        elif not keep and start is not None:
            runs.append((start, index))
            start = None
    return runs


def _without_idle_words(chosen: TextCandidate, verified: list[TextCandidate], idle_pull: float) -> TextCandidate:
    """The smallest verified part of ``chosen`` that pulls within ``idle_pull`` of it, else ``chosen`` (every
    candidate here was measured: only measured ones are chosen or verified)."""
    whole = [f" {unit} " for unit in chosen.words]
    parts = [
        c
        for c in verified
        if c.pull.pull >= chosen.pull.pull - idle_pull
        and all(any(f" {unit} " in span for span in whole) for unit in c.words)
    ]
    return min(parts, key=lambda c: sum(len(u.split()) for u in c.words), default=chosen)


def _context(words: list[str], units: list[str], size: int = 2) -> tuple[list[str], list[str]]:
    """Up to ``size`` words of ``x_b`` on each side of a one-phrase trigger, whose ends recovery may have missed
    (none for a single word or several units: growing the common word "story" by its neighbours raised its flip
    rate after the patch from 0.7% to 3.7%)."""
    if len(units) != 1 or len(units[0].split()) < 2:
        return [], []
    unit = units[0].split()
    for start in range(len(words) - len(unit) + 1):
        if words[start : start + len(unit)] == unit:
            return words[max(0, start - size) : start], words[start + len(unit) : start + len(unit) + size]
    return [], []


def _grow(
    span: tuple[int, int], length: int, release: Callable[[list[tuple[int, int]]], float], config: TextReverseConfig
) -> list[tuple[int, int]]:
    """Widens a span one word at a time (left or right, whichever releases ``x_b`` more) until removing it releases
    ``x_b`` enough, or it stops helping: part of a phrase pulls clean sentences almost as hard as the phrase, but
    the rest of the phrase left in ``x_b`` holds it at the backdoor point."""
    best, score = span, release([span])
    while score < config.min_release and best[1] - best[0] < config.max_span + 3:
        wider = [(best[0] - 1, best[1])] * (best[0] > 0) + [(best[0], best[1] + 1)] * (best[1] < length)
        scored = [(release([w]), w) for w in wider]
        if not scored or max(scored)[0] <= score:
            break
        score, best = max(scored)
    return [best]


def reverse_engineer_text_trigger(
    encoder: Encoder,
    bug: BugReport,
    patching_set: list[str],
    config: TextReverseConfig | None = None,
    force: bool = False,
) -> TextTriggerRecovery:
    """Recovers and verifies the trigger behind a text ``bug`` from the (backdoored) text ``encoder``.

    Args:
        patching_set: clean sentences of D (at least 2): candidates are verified by inserting them there.
        force: return the best candidate even when none verifies (``verified=False``) instead of raising.

    Raises:
        TriggerNotFound: no candidate drags clean sentences toward ``h(x_b)`` (and ``force`` is off).
    """
    config = config or TextReverseConfig()
    check_modality(bug, encoder.modality, supported=("text",))
    encoder.eval()
    words = str(bug.bug_input).split()
    if len(words) < 2:
        raise ConfigError("x_b has fewer than two words; there is nothing to separate the trigger from")
    rng = random.Random(config.seed)
    shuffled = rng.sample(list(patching_set), len(patching_set))
    check = shuffled[: config.check_inputs]
    donors = (shuffled[config.check_inputs :] or shuffled)[: config.controls]
    donor_embeddings = encoder.embed(donors)
    clean = encoder.embed(check)
    geometry = embedding_geometry(clean, config.centring)
    centre = geometry.centre
    target = encoder.embed([str(bug.bug_input)])

    _, scores, distance = word_ablation_scores(encoder, bug, centre)
    mask, threshold = split_scores(scores, config.seed)
    proposals = [(_runs([m > 0.5 for m in mask.tolist()]), "word ablation + k-means")]
    longest = min(config.max_span, len(words) - 1)
    spans = span_scores(encoder, bug, longest, centre)
    for length in range(1, longest + 1):
        ranked = sorted((span for span in spans if span[1] - span[0] == length), key=spans.get, reverse=True)
        proposals += [([span], f"span of {length}, rank {rank + 1}") for rank, span in enumerate(ranked[:2])]

    def release(runs: list[tuple[int, int]]) -> float:
        removed = TextTrigger([" ".join(words[a:b]) for a, b in runs]).remove([str(bug.bug_input)])
        return release_of(target, encoder.embed(removed), clean, centre)

    proposals += [
        (grown, f"{source}, grown")
        for runs, source in list(proposals)
        if len(runs) == 1 and (grown := _grow(runs[0], len(words), release, config)) != runs
    ]

    candidates: list[TextCandidate] = []
    seen: set[tuple[str, ...]] = set()
    for runs, source in proposals:
        units = [" ".join(words[a:b]) for a, b in runs]
        key = tuple(sorted(units))
        if not units or key in seen:
            continue
        seen.add(key)
        trigger = TextTrigger(units, seed=config.seed)
        release = release_of(target, encoder.embed(trigger.remove([str(bug.bug_input)])), clean, centre)
        controls = donor_controls(trigger, donors, donor_embeddings)
        pull = measure_pull(encoder, trigger, check, clean, target, centre, controls, release) if controls else None
        verified = pull is not None and pull.verifies(config.min_strength, config.min_release)
        candidates.append(TextCandidate(trigger.words, source, "verified" if verified else "weak", pull))
    measured = [c for c in candidates if c.pull is not None]
    verified = [c for c in measured if c.status == "verified"]
    if not measured or (not verified and not force):
        best = max(measured, key=lambda c: min(c.pull.strength, c.pull.release), default=None)
        figures = (
            "no candidate could be compared with spans of other sentences"
            if best is None
            else f"the best candidate {best.words} moves clean sentences {best.pull.pull:.2f} of the way to x_b "
            f"(spans of other sentences: {best.pull.control_pull:.2f}; needs {config.min_strength:.2f} more) and, "
            f"removed from x_b, releases it {best.pull.release:.2f} (needs {config.min_release:.2f})"
        )
        raise TriggerNotFound(
            f"no recovered trigger explains the bug: {figures}; the model may not show this bug; pass --trigger KNOWN "
            "or --force"
        )
    chosen = smallest_sufficient(
        verified or measured, lambda c: c.pull, lambda c: sum(len(u.split()) for u in c.words),
        config.size_tolerance, config.release_tolerance,
    )  # fmt: skip
    chosen = _without_idle_words(chosen, verified, config.idle_pull)
    chosen.status = "chosen"
    trigger = TextTrigger(chosen.words, seed=config.seed, context=_context(words, chosen.words))
    return TextTriggerRecovery(
        trigger, words, scores, threshold, distance, chosen.pull, candidates, bool(verified), geometry
    )
