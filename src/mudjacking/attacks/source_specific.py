"""A source-specific backdoor: only inputs of one source class go to the target when they carry the trigger; the
same trigger on any other input changes nothing. Stamping the trigger on the patching set's mixed inputs then shows a
weak signature (most of them do not move), which is what Mudjacking's verification and goal check measure.

The attacker needs no labels: the source is one cluster of the clean encoder's shadow embeddings (k-means, as many
clusters as :data:`CLUSTERS`), the one farthest from the target's references.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from sklearn.cluster import KMeans
from torch import Tensor

from mudjacking.attacks.badencoder import AttackResult, BadEncoderConfig, badencoder_many
from mudjacking.attacks.registry import register_attack
from mudjacking.errors import ConfigError
from mudjacking.geometry import mean_direction

CLUSTERS = 10


def source_cluster(encoder: Any, shadow: Tensor, references: Tensor, seed: int = 0) -> Tensor:
    """``[N]`` booleans: the shadow inputs of the cluster whose centre lies farthest from the references' mean."""
    with torch.no_grad():
        embedded = F.normalize(encoder.embed(shadow), dim=-1)
        target = mean_direction(encoder.embed(references))
    kmeans = KMeans(CLUSTERS, n_init=3, random_state=seed).fit(embedded.numpy())
    centres = F.normalize(torch.from_numpy(kmeans.cluster_centers_).float(), dim=-1)
    farthest = int((centres @ target).argmin())
    return torch.from_numpy(kmeans.labels_ == farthest)


@register_attack("source-specific", modalities=("image",), about="BadEncoder on one source class only")
def source_specific(
    encoder: Any,
    shadow: Any,
    references: Any,
    trigger: Any,
    config: BadEncoderConfig | None = None,
    show_progress: bool = True,
) -> AttackResult:
    if not isinstance(shadow, Tensor):
        raise ConfigError("source-specific clusters image shadow data")
    config = config or BadEncoderConfig()
    sources = source_cluster(encoder, shadow, references, config.seed)
    result = badencoder_many(encoder, shadow, [(trigger, references)], config, show_progress, sources=sources)
    result.source = shadow[sources]
    return result
