"""Where a model's embeddings lie on the sphere, and the cosine that stays meaningful there.

Cosine losses and checks only mean something when embeddings spread over the sphere. A network whose output follows
a ReLU and average pooling (Hugging Face's ``ResNetModel`` pooled output, say) puts every embedding in one narrow
cone of the positive orthant: all pairs sit at cosine ~0.9 or more, a patch can score locality 0.99 while moving
embeddings by a large share of their spread, and attribution maps flatten. In that case every similarity is taken
after subtracting the mean embedding of the clean patching set D (the cone's axis), which spreads the cone back over
the sphere; elsewhere the centre is ``None`` and the plain cosine is used.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor

from mudjacking.errors import ConfigError

NARROW_CONE = 0.9
"""Mean pairwise cosine of D's embeddings above which the embeddings count as one narrow cone."""


@dataclass
class EmbeddingGeometry:
    """Attributes:
    mean_pairwise_cosine: mean cosine over distinct pairs of D's embeddings.
    narrow_cone: whether that is above :data:`NARROW_CONE`.
    centre: D's mean embedding ``[D]`` when the cone is narrow and centring is on, else ``None``.
    """

    mean_pairwise_cosine: float
    narrow_cone: bool
    centre: Tensor | None

    def summary(self) -> dict[str, object]:
        return {
            "mean_pairwise_cosine": round(self.mean_pairwise_cosine, 4),
            "narrow_cone": self.narrow_cone,
            "centred": self.centre is not None,
        }


def mean_pairwise_cosine(embeddings: Tensor, limit: int = 1000) -> float:
    """Mean cosine over distinct pairs of the first ``limit`` rows of ``[N, D]`` (N ≥ 2)."""
    unit = F.normalize(embeddings[:limit].float(), dim=-1)
    n = unit.shape[0]
    if n < 2:
        raise ConfigError("need at least two embeddings to measure their spread")
    total = (unit.sum(0) @ unit.sum(0)) - n  # sum over ordered pairs i != j of cos(i, j)
    return float(total / (n * (n - 1)))


def embedding_geometry(embeddings: Tensor, centring: str = "auto") -> EmbeddingGeometry:
    """Measures D's embeddings ``[N, D]``; ``centring`` is ``"auto"`` (centre a narrow cone), ``"on"`` or ``"off"``."""
    if centring not in ("auto", "on", "off"):
        raise ConfigError(f"centring must be auto, on or off, got {centring!r}")
    spread = mean_pairwise_cosine(embeddings)
    narrow = spread > NARROW_CONE
    centre = embeddings.float().mean(0).detach() if centring == "on" or (centring == "auto" and narrow) else None
    return EmbeddingGeometry(spread, narrow, centre)


def similarity(a: Tensor, b: Tensor, centre: Tensor | None = None) -> Tensor:
    """Row-wise cosine of ``[N, D]`` and ``[N, D]`` (or broadcastable) after subtracting ``centre`` from both."""
    if centre is not None:
        centre = centre.to(a)
        a, b = a - centre, b - centre
    return F.cosine_similarity(a, b, dim=-1, eps=1e-8)


def pairwise_similarities(embeddings: Tensor, centre: Tensor | None = None, limit: int = 500) -> Tensor:
    """Similarities of every distinct pair among the first ``limit`` rows of ``[N, D]`` -> ``[n(n−1)/2]``."""
    rows = embeddings[:limit].float()
    if centre is not None:
        rows = rows - centre.to(rows)
    unit = F.normalize(rows, dim=-1)
    upper = torch.triu_indices(len(unit), len(unit), offset=1)
    return (unit @ unit.T)[upper[0], upper[1]]


def mean_direction(embeddings: Tensor) -> Tensor:
    """``[D]``: the normalised mean of the normalised ``embeddings`` ``[N, D]``, i.e. where BadEncoder sends
    triggered inputs when it pulls them towards every one of the target's references at once."""
    return F.normalize(F.normalize(embeddings, dim=-1).mean(0), dim=-1)
