"""Self-checks that can fail: a step refuses (one line, nothing written) rather than go on from a vacuous result.

A security tool that reports success where nothing was tested is worse than one that stops. Each check here
measures something that a genuine backdoor bug shows and a vacuous case does not, and raises :class:`CheckFailed`
with the figures when it is missing. Callers may override with ``force`` and must then record that they did.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from mudjacking.batches import single, take
from mudjacking.data.bug_report import BugReport
from mudjacking.encoders.base import Encoder
from mudjacking.errors import CheckFailed
from mudjacking.geometry import EmbeddingGeometry, embedding_geometry, similarity


@dataclass
class BugVisibility:
    """How far the model as loaded puts ``x_b`` from ``x_r``, against how close ``x_r``'s own neighbours in D sit.

    Attributes:
        bug_similarity: ``s(h(x_b), h(x_r))`` (centred when the geometry says so).
        neighbour_similarity: similarity of ``x_r`` to its ``k``-th nearest input of D: how close inputs the model
            treats as alike sit to ``x_r``.
        neighbours: ``k``.
        visible: ``bug_similarity`` is below ``neighbour_similarity``: ``x_b`` stands apart from ``x_r``.
    """

    bug_similarity: float
    neighbour_similarity: float
    neighbours: int
    visible: bool

    def summary(self) -> dict[str, object]:
        return {
            "bug_similarity": round(self.bug_similarity, 4),
            "reference_neighbour_similarity": round(self.neighbour_similarity, 4),
            "neighbours": self.neighbours,
            "visible": self.visible,
        }


def bug_visibility(
    bug_embedding: Tensor,
    reference_embedding: Tensor,
    clean_embeddings: Tensor,
    centre: Tensor | None = None,
    k: int = 1,
) -> BugVisibility:
    """Whether the bug shows in these embeddings: ``x_b`` must sit farther from ``x_r`` than ``x_r``'s ``k``-th
    nearest clean input does. A model that embeds ``x_b`` like a close neighbour of ``x_r`` does not misclassify it
    (e.g. a model loaded with the wrong preprocessing, under which the trigger does nothing).

    ``k`` is 1, the nearest: a text backdoor sends ``x_b`` to a hub of the embedding space, near many reviews, so on
    the text demo's MiniLM 3 of 6 real bugs sat closer to ``x_r`` (cosine 0.54-0.63) than ``x_r``'s 5th nearest
    patching sentence (0.52-0.63), while all 6 stayed below the nearest (0.33-0.70). Image bugs sit far apart
    (new-user ResNets: 0.62-0.73 against a nearest of 0.96-0.99).

    Args:
        bug_embedding: ``h(x_b)`` ``[1, D]``.
        reference_embedding: ``h(x_r)`` ``[1, D]``.
        clean_embeddings: ``h(x)`` for clean inputs of D ``[N, D]``, N > k.
        centre: subtracted before every cosine (see :mod:`mudjacking.geometry`).
    """
    k = min(k, len(clean_embeddings))
    bug = float(similarity(bug_embedding, reference_embedding, centre).reshape(-1)[0])
    around = similarity(clean_embeddings, reference_embedding, centre)
    neighbour = float(torch.topk(around, k).values[-1])
    return BugVisibility(bug, neighbour, k, bug < neighbour)


def require_visible(visibility: BugVisibility, where: str) -> None:
    """Raises :class:`CheckFailed` when the bug does not show."""
    if not visibility.visible:
        raise CheckFailed(
            f"{where}: the model as loaded does not show this bug: x_b and x_r embed at similarity "
            f"{visibility.bug_similarity:.3f}, closer than x_r's nearest patching input "
            f"({visibility.neighbour_similarity:.3f}); check the model's preprocessing (--image-mean/--image-std) and "
            "that the report came from this model, or pass --force"
        )


def inspect_bug(
    encoder: Encoder, bug: BugReport, inputs: Tensor | list[str], centring: str = "auto", limit: int = 256
) -> tuple[EmbeddingGeometry, BugVisibility]:
    """Embeds up to ``limit`` inputs of D, ``x_b`` and ``x_r`` with the model as loaded; returns D's geometry and
    whether the bug shows."""
    order = torch.randperm(len(inputs), generator=torch.Generator().manual_seed(0))[:limit]
    clean = encoder.embed(take(inputs, order, torch.device("cpu")))
    geometry = embedding_geometry(clean, centring)
    pair = (
        encoder.embed(single(bug.bug_input, encoder.device)),
        encoder.embed(single(bug.reference_input, encoder.device)),
    )
    return geometry, bug_visibility(pair[0], pair[1], clean, geometry.centre)


# A genuine backdoor bug's trigger sends nearly every clean input to h(x_b): on the image demo's model its 5 real
# bugs landed 91-93% of D's inputs at least 3/4 of the way there. Hostile reports whose recovered "trigger" still
# verified (a sticker on an ordinary input, a mismatched x_r, a natural misclassification: the region found is a
# piece of x_b's own object, which drags inputs part of the way) landed 0-28%.
MIN_LANDED = 0.5


def require_backdoor_signature(landed: float, pull: float, where: str) -> None:
    """Raises :class:`CheckFailed` when the recovered trigger lands fewer than ``MIN_LANDED`` of the clean inputs at
    ``h(x_b)``: the report does not show a backdoor, and patching it would teach the model whatever x_b carries."""
    if not landed >= MIN_LANDED:
        raise CheckFailed(
            f"{where}: not a backdoor's signature: stamped on clean inputs, the recovered trigger lands {landed:.0%} "
            f"of them at x_b's embedding (mean pull {pull:.2f}; a backdoor lands nearly all, needs "
            f"{MIN_LANDED:.0%}); the report may be a natural misclassification or a planted one (a sticker on an "
            "ordinary input), and patching it would teach the model what x_b carries; pass --force to patch anyway"
        )
