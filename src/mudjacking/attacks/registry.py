"""Attacks register themselves by name so the CLI and experiments can pick one without an if/elif chain."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from mudjacking.errors import ConfigError

_ATTACKS: dict[str, Callable[..., Any]] = {}


def register_attack(name: str) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    def decorate(attack: Callable[..., Any]) -> Callable[..., Any]:
        _ATTACKS[name] = attack
        return attack

    return decorate


def get_attack(name: str) -> Callable[..., Any]:
    if name not in _ATTACKS:
        raise ConfigError(f"unknown attack {name!r}; known: {', '.join(sorted(_ATTACKS))}")
    return _ATTACKS[name]


def registered_attacks() -> list[str]:
    return sorted(_ATTACKS)
