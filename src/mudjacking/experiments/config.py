"""Experiment files (TOML or YAML) validated into typed settings, with one-line errors naming the file and key.

A file names a built-in setting and overrides any of its fields::

    name = "image"
    setting = "image"                 # a registered setting: "image" (SimCLR CNN, Fashion-MNIST + digits), "text"
    seeds = [0, 1, 2]
    methods = ["mudjacking", "locality-only", "contrastive", "no-L_gen", "oracle-trigger"]

    attacks = ["badencoder", "blended"]   # registered attacks, each over every seed (default: the setting's own)

    [options]                         # fields of ImageSetting / TextSetting (nested tables for attack, patch ...)
    test_size = 5000

    control = true                    # also score an ordinary stamp on every model (text: the floor of a flip rate)

    [contrastive]                     # ContrastiveConfig fields
    lr = 1e-4

    [ablations."lambda_g=0.1"]        # an extra method: Mudjacking with these PatchConfig fields changed
    lambda_gen = 0.1

Pydantic validates the settings' own dataclasses, so a wrong type or an unknown key fails before any work starts.
"""

from __future__ import annotations

import tomllib
import typing
from dataclasses import fields, is_dataclass
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ConfigDict, Field, TypeAdapter, ValidationError, field_validator

from mudjacking.defences.contrastive import ContrastiveConfig
from mudjacking.defences.registry import BUILTIN_METHODS, check_methods
from mudjacking.errors import ConfigError, DataError
from mudjacking.patching import PatchConfig
from mudjacking.pipeline.settings.registry import Setting, setting_class


class ExperimentConfig(BaseModel):
    """An experiment: one setting, several seeds, several defences, the same budget for all."""

    model_config = ConfigDict(extra="forbid")

    name: str = "experiment"
    setting: str
    seeds: list[int] = Field(default_factory=lambda: [0], min_length=1)
    methods: list[str] = Field(default_factory=lambda: list(BUILTIN_METHODS), min_length=1)
    # registered attacks to run one after another (each over every seed and method); empty: the setting's own
    attacks: list[str] = Field(default_factory=list)
    options: dict[str, Any] = Field(default_factory=dict)
    contrastive: dict[str, Any] = Field(default_factory=dict)
    ablations: dict[str, dict[str, Any]] = Field(default_factory=dict)
    include_clean_model: bool = True
    # Models also scored with a classifier retrained on their own embeddings (what a customer who retrains gets);
    # each costs one embedding of every task's training set per seed.
    retrained: list[str] = Field(default_factory=lambda: ["clean", "mudjacking"])
    # Also score the setting's control stamp on every model (text: an ordinary word inserted like the trigger): how
    # often stamping anything flips a prediction, the floor a removed trigger's flip rate can reach.
    control: bool = False

    @field_validator("setting")
    @classmethod
    def _registered_setting(cls, name: str) -> str:
        setting_class(name)
        return name

    @field_validator("seeds")
    @classmethod
    def _distinct_seeds(cls, seeds: list[int]) -> list[int]:
        if len(set(seeds)) != len(seeds):
            raise ConfigError(f"seeds repeat: {seeds}")
        return seeds

    def model_post_init(self, _: Any) -> None:
        check_methods(self.methods, self.ablations)
        patch_fields = {f.name for f in fields(PatchConfig)}
        for name, changes in self.ablations.items():
            wrong = sorted(set(changes) - patch_fields)
            if wrong:
                raise ConfigError(f"ablation {name!r} sets unknown PatchConfig fields {wrong}")
        scored = {"backdoored", *self.all_methods()} | ({"clean"} if self.include_clean_model else set())
        wrong = [m for m in self.retrained if m not in scored]
        if wrong:
            raise ConfigError(f"retrained names models not in this experiment {wrong}: use {sorted(scored)}")
        for attack in self.attacks or [None]:
            self.setting_config(self.seeds[0], attack)
        self.contrastive_config()

    def all_methods(self) -> list[str]:
        """The methods listed, then every ablation not already listed."""
        return [*self.methods, *[name for name in self.ablations if name not in self.methods]]

    def setting_config(self, seed: int, attack: str | None = None) -> Setting:
        """The setting's dataclass with the file's options, for one seed (and ``attack`` as its ``attack_kind``).
        A nested section such as ``[options.patch]`` changes only the fields it names; the rest keep the
        setting's own recipe."""
        kind = setting_class(self.setting)
        values = {**_over_defaults(kind(), self.options), "seed": seed} | ({"attack_kind": attack} if attack else {})
        return _validated(kind, values, "attacks" if attack else "options")

    def contrastive_config(self) -> ContrastiveConfig:
        return _validated(ContrastiveConfig, self.contrastive, "contrastive")


def _validated(kind: type, values: dict[str, Any], section: str) -> Any:
    """``kind(**values)`` with types checked; errors say which key of which section is wrong."""
    try:
        _check_keys(kind, values, section)
        return TypeAdapter(kind).validate_python(values)
    except ValidationError as error:
        first = error.errors()[0]
        where = ".".join(str(part) for part in (section, *first["loc"]))
        raise ConfigError(f"{where}: {first['msg'].removeprefix('Value error, ')}") from None


def _over_defaults(defaults: Any, values: dict[str, Any]) -> dict[str, Any]:
    """``values`` with every nested dataclass section filled in from ``defaults``' own value of that section
    (unknown keys pass through unchanged, for ``_check_keys`` to name)."""
    merged = dict(values)
    for key, value in values.items():
        default = getattr(defaults, key, None)
        if is_dataclass(default) and isinstance(value, dict):
            own = {f.name: getattr(default, f.name) for f in fields(default) if f.init}
            merged[key] = {**own, **_over_defaults(default, value)}
    return merged


def _check_keys(kind: type, values: dict[str, Any], where: str) -> None:
    """Unknown keys are errors (pydantic ignores them on plain dataclasses), at every nesting level."""
    hints = typing.get_type_hints(kind)
    for key, value in values.items():
        if key not in {f.name for f in fields(kind) if f.init}:
            names = ", ".join(f.name for f in fields(kind) if f.init)
            raise ConfigError(f"{where}.{key}: unknown setting; {where} takes {names}")
        if is_dataclass(hints[key]) and isinstance(value, dict):
            _check_keys(hints[key], value, f"{where}.{key}")


def _read(path: Path) -> dict[str, Any]:
    text = path.read_text(encoding="utf-8")
    if path.suffix == ".toml":
        return tomllib.loads(text)
    if path.suffix in (".yaml", ".yml"):
        data = yaml.safe_load(text)
        if not isinstance(data, dict):
            raise ConfigError("the top level must be a mapping")
        return data
    raise ConfigError("unknown format; use a .toml or .yaml file")


def load_experiment_config(path: str | Path) -> ExperimentConfig:
    """Reads and validates an experiment file; any problem is a ``DataError`` naming the file and the key."""
    path = Path(path)
    try:
        return ExperimentConfig.model_validate(_read(path))
    except FileNotFoundError as error:
        raise DataError(f"{path}: no such experiment file; see configs/ for examples") from error
    except ValidationError as error:
        first = error.errors()[0]
        where = "".join(f"{part}: " for part in [".".join(str(p) for p in first["loc"])] if part)
        message = first["msg"].removeprefix("Value error, ")
        raise DataError(f"{path}: {where}{message} (see configs/ for a valid file)") from error
    except RecursionError as error:  # a YAML file nested thousands deep
        raise DataError(f"{path}: nested too deep to read; an experiment file is a few flat tables") from error
    except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError, yaml.YAMLError, ValueError, TypeError) as error:
        message = str(error).splitlines()[0] if str(error) else type(error).__name__
        raise DataError(f"{path}: {message} (see configs/ for a valid file)") from error
