"""Attacks that researchers evaluate Mudjacking against; each registers itself by name."""

from mudjacking.attacks.badencoder import AttackResult, BadEncoderConfig, badencoder
from mudjacking.attacks.registry import get_attack, register_attack, registered_attacks

__all__ = ["AttackResult", "BadEncoderConfig", "badencoder", "get_attack", "register_attack", "registered_attacks"]
