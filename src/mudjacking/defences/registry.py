"""The defences a run compares, registered by name, all starting from the same backdoored model and clean patching
set.

- ``mudjacking``: the full loss with the trigger recovered from the bug; it sets the budget (its epoch count).
- ``locality-only``: fine-tuning that only keeps embeddings where they were (what a cautious defender does).
- ``contrastive``: NT-Xent fine-tuning on two views of each clean input (CleanCLIP-type, no bug needed).
- ``no-L_gen``: Mudjacking without generalizability, i.e. plain model editing of the one bug.
- ``oracle-trigger``: Mudjacking given the attacker's true trigger (an upper bound on trigger recovery).
- any ablation named in the config: Mudjacking with some settings changed (a loss term off, another λ).

Every other method gets Mudjacking's budget: its number of epochs and its wall-clock time, whichever ends first
(early stopping off), at its precision, and ends with its last pass; the oracle, being Mudjacking, gets its epochs
without the clock and hands back its closest pass as Mudjacking does (on the blended attack's seed 2 its last pass
cost 28 points of accuracy). Contrastive fine-tuning makes its own views of D, so when Mudjacking's epochs run over
D enlarged with augmented copies, it gets as many passes over D as Mudjacking made over its copies. A whole-model
baseline beside a patch of a few embedding rows thus gets the same seconds.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import Any

from torch import Tensor

from mudjacking.data.bug_report import BugReport
from mudjacking.defences.contrastive import ContrastiveConfig, contrastive_finetune
from mudjacking.encoders.base import Encoder
from mudjacking.errors import ConfigError
from mudjacking.patching import PatchConfig, PatchResult, patch_encoder
from mudjacking.triggers import Trigger


@dataclass(frozen=True)
class DefenceInputs:
    """What a defence may use: the backdoored model, the bug report, the clean patching set D, the trigger
    recovered from the bug, and the attacker's true trigger (for the oracle bound only)."""

    backdoored: Encoder
    bug: BugReport
    patching_set: Tensor | list[str]
    recovered: Trigger
    true_trigger: Trigger


@dataclass(frozen=True)
class Budget:
    """What every defence after Mudjacking is given: Mudjacking's epochs and seconds, and the setting's recipes."""

    epochs: int
    seconds: float
    patch: PatchConfig  # Mudjacking's config with its epochs and seconds as limits, early stopping and closest pass off
    mudjacking: PatchConfig  # Mudjacking's config as it ran
    locality_only: Callable[[int], PatchConfig]
    contrastive: ContrastiveConfig


Defence = Callable[[DefenceInputs, Budget, bool], PatchResult]
"""``(inputs, budget, show_progress) -> result``: one registered defence."""

_DEFENCES: dict[str, Defence] = {}


def register_defence(name: str) -> Callable[[Defence], Defence]:
    """Registers a defence under ``name`` for ``methods = [...]`` in experiment files and the demos."""

    def decorate(defence: Defence) -> Defence:
        _DEFENCES[name] = defence
        return defence

    return decorate


def registered_defences() -> list[str]:
    """``mudjacking`` first, then the others in the order they registered."""
    return ["mudjacking", *[name for name in _DEFENCES if name != "mudjacking"]]


@register_defence("mudjacking")
def _mudjacking(inputs: DefenceInputs, budget: Budget, show_progress: bool) -> PatchResult:
    return _patch(inputs, inputs.recovered, budget.mudjacking, show_progress)


@register_defence("locality-only")
def _locality_only(inputs: DefenceInputs, budget: Budget, show_progress: bool) -> PatchResult:
    config = replace(budget.locality_only(budget.epochs), max_seconds=budget.seconds,
                     precision=budget.mudjacking.precision)  # fmt: skip
    return _patch(inputs, inputs.recovered, config, show_progress)


@register_defence("contrastive")
def _contrastive(inputs: DefenceInputs, budget: Budget, show_progress: bool) -> PatchResult:
    passes = budget.epochs * (1 + budget.mudjacking.augmented_copies)
    settings = replace(budget.contrastive, epochs=passes, max_seconds=budget.seconds, seed=budget.mudjacking.seed,
                       device=budget.mudjacking.device, precision=budget.mudjacking.precision)  # fmt: skip
    return contrastive_finetune(inputs.backdoored, inputs.patching_set, settings, show_progress)


@register_defence("no-L_gen")
def _no_generalizability(inputs: DefenceInputs, budget: Budget, show_progress: bool) -> PatchResult:
    return _patch(inputs, inputs.recovered, replace(budget.patch, lambda_gen=0.0), show_progress)


@register_defence("oracle-trigger")
def _oracle_trigger(inputs: DefenceInputs, budget: Budget, show_progress: bool) -> PatchResult:
    """Mudjacking's passes, not its seconds: the same recipe with another trigger takes as long per pass, so a clock
    would only cut it short by timing noise (common-word seed 0 stopped 3 steps short and kept pass 6, 4.4% flipped,
    where Mudjacking with the same trigger kept pass 8, 1.5%)."""
    config = replace(budget.patch, keep_closest=True, max_seconds=budget.mudjacking.max_seconds)
    return _patch(inputs, inputs.true_trigger, config, show_progress)


BUILTIN_METHODS = tuple(registered_defences())


def run_defences(
    inputs: DefenceInputs,
    methods: list[str],
    patch: PatchConfig,
    locality_only: Callable[[int], PatchConfig],
    contrastive: ContrastiveConfig,
    ablations: dict[str, dict[str, Any]] | None = None,
    show_progress: bool = True,
    on_done: Callable[[str, PatchResult], None] | None = None,
) -> dict[str, PatchResult]:
    """Runs Mudjacking first (it fixes the budget), then every other method named, in order: a registered defence
    or an ablation (Mudjacking with some settings changed, on the budget). ``locality_only(epochs)`` gives the
    setting's locality-only fine-tuning (the whole model, at its usual lr)."""
    ablations = ablations or {}
    check_methods(methods, ablations)
    first = Budget(0, 0.0, patch, patch, locality_only, contrastive)
    results = {"mudjacking": _DEFENCES["mudjacking"](inputs, first, show_progress)}
    if on_done:
        on_done("mudjacking", results["mudjacking"])
    epochs, seconds = results["mudjacking"].epochs, results["mudjacking"].seconds
    limits = replace(patch, max_epochs=epochs, early_stop=False, keep_closest=False, max_seconds=seconds)
    budget = Budget(epochs, seconds, limits, patch, locality_only, contrastive)
    for name in methods:
        if name == "mudjacking":
            continue
        if name in _DEFENCES:
            result = _DEFENCES[name](inputs, budget, show_progress)
        else:
            result = _patch(inputs, inputs.recovered, replace(limits, **ablations[name]), show_progress)
        results[name] = result
        if on_done:
            on_done(name, result)
    return {name: results[name] for name in ["mudjacking", *[m for m in methods if m != "mudjacking"]]}


def check_methods(methods: list[str], ablations: dict[str, Any]) -> None:
    """Every method must be a registered defence or a named ablation (``ConfigError`` before any work starts)."""
    unknown = [name for name in methods if name not in _DEFENCES and name not in ablations]
    if unknown:
        raise ConfigError(f"unknown methods {unknown}: use {registered_defences()} or an [ablations] name")


def _patch(inputs: DefenceInputs, trigger: Trigger, config: PatchConfig, show_progress: bool) -> PatchResult:
    return patch_encoder(inputs.backdoored, inputs.bug, trigger, inputs.patching_set, config, show_progress)
