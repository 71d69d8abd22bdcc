"""Attacks that researchers evaluate Mudjacking against; each registers itself by name."""

from mudjacking.attacks import (  # noqa: F401  (registers them)
    drupe,
    redundant,
    several_words,
    source_specific,
    ssl_poisoning,
    trigger_variants,
    two_backdoors,
)
from mudjacking.attacks.badencoder import AttackResult, BadEncoderConfig, badencoder, badencoder_many
from mudjacking.attacks.registry import (
    Attack,
    TriggerRequest,
    attack_named,
    get_attack,
    register_attack,
    registered_attacks,
)

__all__ = [
    "Attack",
    "AttackResult",
    "BadEncoderConfig",
    "TriggerRequest",
    "attack_named",
    "badencoder",
    "badencoder_many",
    "get_attack",
    "register_attack",
    "registered_attacks",
]
