"""Attacks register themselves by name so the CLI and experiments can pick one without an if/elif chain.

An attack is how the backdoor is put in (``run``) and, optionally, the trigger it answers to: a setting offers its
own trigger (the image setting's white square, the text setting's rare word) and an attack that brings another
(a blended pattern, a tiny square, a phrase) replaces it.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from mudjacking.errors import ConfigError


@dataclass(frozen=True)
class TriggerRequest:
    """What an attack's trigger may be built from.

    Attributes:
        default: the setting's own trigger.
        input_shape: ``(C, H, W)`` of the setting's images; ``None`` for text.
        seed: the setting's seed.
    """

    default: Any
    input_shape: tuple[int, ...] | None
    seed: int


@dataclass(frozen=True)
class Attack:
    """Attributes:
    run: ``(encoder, shadow, references, trigger, config, show_progress) -> AttackResult``.
    trigger: ``TriggerRequest -> trigger``; ``None`` keeps the setting's own.
    modalities: what models it applies to.
    about: one line for tables and ``--help``.
    """

    run: Callable[..., Any]
    trigger: Callable[[TriggerRequest], Any] | None = None
    modalities: tuple[str, ...] = ("image", "text")
    about: str = ""

    def trigger_for(self, request: TriggerRequest) -> Any:
        return request.default if self.trigger is None else self.trigger(request)


_ATTACKS: dict[str, Attack] = {}


def register_attack(
    name: str,
    trigger: Callable[[TriggerRequest], Any] | None = None,
    modalities: tuple[str, ...] = ("image", "text"),
    about: str = "",
) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """Registers ``run`` under ``name`` (a decorator), with the trigger it brings, if any."""

    def decorate(run: Callable[..., Any]) -> Callable[..., Any]:
        _ATTACKS[name] = Attack(run, trigger, modalities, about)
        return run

    return decorate


def attack_named(name: str, modality: str | None = None) -> Attack:
    """The registered attack ``name``; refused in one line if unknown or not for ``modality`` models."""
    if name not in _ATTACKS:
        raise ConfigError(f"unknown attack {name!r}; known: {', '.join(sorted(_ATTACKS))}")
    attack = _ATTACKS[name]
    if modality is not None and modality not in attack.modalities:
        raise ConfigError(f"attack {name!r} applies to {' and '.join(attack.modalities)} models, not {modality}")
    return attack


def get_attack(name: str) -> Callable[..., Any]:
    """The registered attack's ``run``."""
    return attack_named(name).run


def registered_attacks(modality: str | None = None) -> list[str]:
    return sorted(name for name, attack in _ATTACKS.items() if modality is None or modality in attack.modalities)
