"""A DRUPE-style distribution-preserving encoder backdoor (Tao et al., 2024): BadEncoder's objective plus a term
that keeps triggered embeddings distributed like clean ones (sliced Wasserstein distance), so the backdoor shows
no tight cluster for a detector, or for a patch that looks for one, to find."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

from mudjacking.attacks.badencoder import AttackResult, BadEncoderConfig, badencoder
from mudjacking.attacks.registry import register_attack

DISTRIBUTION_WEIGHT = 50.0
"""λ of the distribution term when the config gives none: the squared sliced distance between unit vectors in 128
dimensions is of the order 1e-2, against a cosine pull of order 1."""


@register_attack("drupe", about="BadEncoder plus a term keeping triggered embeddings distributed like clean ones")
def drupe(
    encoder: Any,
    shadow: Any,
    references: Any,
    trigger: Any,
    config: BadEncoderConfig | None = None,
    show_progress: bool = True,
) -> AttackResult:
    config = config or BadEncoderConfig()
    if not config.lambda_distribution:
        config = replace(config, lambda_distribution=DISTRIBUTION_WEIGHT)
    return badencoder(encoder, shadow, references, trigger, config, show_progress)
