"""Settings by name: what ``setting = "..."`` in an experiment file and ``mudjacking demo --modality`` pick.

A setting is a dataclass of everything that fixes one attacked deployment (data, foundation model, attack,
customers, patch recipe) with ``prepare(show_progress) -> Scenario``. A new setting is one module that registers
its class here; the experiment files, the demo and the runner need no change.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Protocol

from mudjacking.errors import ConfigError
from mudjacking.patching import PatchConfig


class Setting(Protocol):
    """What the pipeline asks of a setting."""

    seed: int
    probe_kinds: tuple[str, ...]
    patch: PatchConfig
    reverse: Any

    def locality_only(self, epochs: int) -> PatchConfig: ...

    def prepare(self, show_progress: bool = True) -> Any: ...

    def control_trigger(self, trigger: Any = None) -> Any: ...


_SETTINGS: dict[str, type] = {}


def register_setting(name: str) -> Callable[[type], type]:
    """Registers a setting class under ``name``."""

    def decorate(kind: type) -> type:
        _SETTINGS[name] = kind
        return kind

    return decorate


def setting_class(name: str) -> type:
    """The setting registered as ``name`` (the built-in ones load on first use)."""
    import mudjacking.pipeline.settings  # noqa: F401  (registers the built-in settings)

    if name not in _SETTINGS:
        raise ConfigError(f"unknown setting {name!r}; registered: {', '.join(registered_settings())}")
    return _SETTINGS[name]


def registered_settings() -> list[str]:
    import mudjacking.pipeline.settings  # noqa: F401

    return list(_SETTINGS)
