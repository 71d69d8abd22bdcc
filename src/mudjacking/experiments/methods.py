"""The defences an experiment compares, all starting from the same backdoored model and clean patching set.

- ``mudjacking``: the full loss with the trigger recovered from the bug; it sets the budget (its epoch count).
- ``locality-only``: fine-tuning that only keeps embeddings where they were (what a cautious defender does).
- ``contrastive``: NT-Xent fine-tuning on two views of each clean input (CleanCLIP-type, no bug needed).
- ``no-L_gen``: Mudjacking without generalizability, i.e. plain model editing of the one bug.
- ``oracle-trigger``: Mudjacking given the attacker's true trigger (an upper bound on trigger recovery).
- any ablation named in the config: Mudjacking with some settings changed (a loss term off, another λ).

Every other method gets Mudjacking's budget: its number of epochs and its wall-clock time, whichever ends first
(early stopping off). Contrastive fine-tuning makes its own views of D, so when Mudjacking's epochs run over D
enlarged with augmented copies, it gets as many passes over D as Mudjacking made over its copies. A whole-model
baseline beside a patch of a few embedding rows thus gets the same seconds.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace
from typing import Any

from mudjacking.contrastive import ContrastiveConfig, contrastive_finetune
from mudjacking.errors import ConfigError
from mudjacking.experiments.scenario import Scenario
from mudjacking.patching import PatchConfig, PatchResult, patch_encoder
from mudjacking.triggers import Trigger

BUILTIN_METHODS = ("mudjacking", "locality-only", "contrastive", "no-L_gen", "oracle-trigger")


def run_methods(
    scenario: Scenario,
    recovered: Trigger,
    methods: list[str],
    patch: PatchConfig,
    locality_only: Callable[[int], PatchConfig],
    contrastive: ContrastiveConfig,
    ablations: dict[str, dict[str, Any]] | None = None,
    show_progress: bool = True,
    on_done: Callable[[str, PatchResult], None] | None = None,
) -> dict[str, PatchResult]:
    """Runs Mudjacking first (it fixes the epoch budget), then every other method named, in order.
    ``locality_only(epochs)`` gives the setting's locality-only fine-tuning (the whole model, at its usual lr)."""
    ablations = ablations or {}
    unknown = [name for name in methods if name not in BUILTIN_METHODS and name not in ablations]
    if unknown:
        raise ConfigError(f"unknown methods {unknown}; built in: {list(BUILTIN_METHODS)}, ablations: {list(ablations)}")
    results = {"mudjacking": _patch(scenario, recovered, patch, show_progress)}
    if on_done:
        on_done("mudjacking", results["mudjacking"])
    epochs, seconds = results["mudjacking"].epochs, results["mudjacking"].seconds
    budget = replace(patch, max_epochs=epochs, early_stop=False, max_seconds=seconds)
    for name in methods:
        if name == "mudjacking":
            continue
        if name == "locality-only":
            result = _patch(scenario, recovered, replace(locality_only(epochs), max_seconds=seconds), show_progress)
        elif name == "no-L_gen":
            result = _patch(scenario, recovered, replace(budget, lambda_gen=0.0), show_progress)
        elif name == "oracle-trigger":
            result = _patch(scenario, scenario.true_trigger, budget, show_progress)
        elif name == "contrastive":
            passes = epochs * (1 + patch.augmented_copies)
            settings = replace(contrastive, epochs=passes, max_seconds=seconds, seed=patch.seed, device=patch.device)
            result = contrastive_finetune(scenario.backdoored, scenario.patching_set, settings, show_progress)
        else:
            result = _patch(scenario, recovered, replace(budget, **ablations[name]), show_progress)
        results[name] = result
        if on_done:
            on_done(name, result)
    return {name: results[name] for name in ["mudjacking", *[m for m in methods if m != "mudjacking"]]}


def _patch(scenario: Scenario, trigger: Trigger, config: PatchConfig, show_progress: bool) -> PatchResult:
    return patch_encoder(scenario.backdoored, scenario.bug, trigger, scenario.patching_set, config, show_progress)
