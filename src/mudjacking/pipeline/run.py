"""The pipeline every demo and experiment runs: a setting's scenario -> the bug report -> the trigger recovered from
it -> the defences, on one budget -> every model scored on every customer's task with the classifiers they deployed.

``run_pipeline`` writes the bug report, the recovered trigger and its pictures and the loss curves into the given
folder, and returns typed results; what else is kept (models, tables, report files) is the caller's choice.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from mudjacking.data.bug_report import save_bug_report
from mudjacking.defences.contrastive import ContrastiveConfig
from mudjacking.defences.registry import run_defences
from mudjacking.encoders.base import Encoder
from mudjacking.evaluation.compare import control_flip_rates, evaluate_models
from mudjacking.evaluation.downstream import EmbeddingCache, NoBugFound
from mudjacking.patching import PatchResult, patch_encoder
from mudjacking.pipeline.scenario import Scenario
from mudjacking.pipeline.settings.registry import Setting
from mudjacking.recipes import adapt_recipe
from mudjacking.report.artifacts import write_recovery
from mudjacking.report.plots import plot_loss_curves
from mudjacking.triggers import Trigger, TriggerNotFound
from mudjacking.triggers.recover import recover_trigger

ORACLE = "oracle-trigger"


@dataclass(frozen=True)
class Scoring:
    """Which rows are scored besides every model under the customers' deployed classifiers.

    Args:
        include_clean: score the clean model too (a reference row; defences never see it).
        retrained: models also scored with a classifier retrained on their own embeddings (what a customer who
            retrains gets); each costs one embedding of every task's training set.
        control: also measure the flip rate of the setting's control stamp (an ordinary word for text) on every
            model scored, on each customer's data once (the first task on it): the floor a removed trigger's flip
            rate can reach on that very model (a setting without one, images, measures nothing).
    """

    include_clean: bool = True
    retrained: tuple[str, ...] = ("clean", "mudjacking")
    control: bool = False


@dataclass
class RecoveredTrigger:
    """The trigger reverse-engineered from the bug, how close it is to the attacker's, and the files written."""

    trigger: Trigger
    quality: dict[str, Any]
    pictures: dict[str, str]
    details: dict[str, Any]
    seconds: float


@dataclass
class PipelineRun:
    """Everything one run produced.

    Attributes:
        scores: task -> classifier kind -> model -> ``{"deployed": ..., "retrained": ...}`` (see ``evaluate_models``).
        control: model -> task -> classifier kind -> the control stamp's flip rate (``None`` unless asked).
        control_stamp: the control stamp's units (words or phrases), where one was scored.
    """

    scenario: Scenario
    recovered: RecoveredTrigger | None
    results: dict[str, PatchResult]
    scores: dict[str, dict[str, dict[str, Any]]]
    control: dict[str, dict[str, dict[str, float]]] | None = None
    refused: str | None = None  # why no defence ran (trigger recovery refused), with ``keep_going``
    recipe_note: str | None = None  # how the patch recipe was fitted to the trigger found, as `mudjacking patch` does
    control_stamp: list[str] | None = None


def recover(scenario: Scenario, reverse: Any, directory: Path) -> RecoveredTrigger:
    """Reverse-engineers the trigger from the bug and writes it with its pictures into ``directory``."""
    started = time.perf_counter()
    recovery = recover_trigger(scenario.backdoored, scenario.bug, scenario.patching_set, reverse)
    seconds = time.perf_counter() - started
    details = write_recovery(directory, recovery, scenario.bug, scenario.true_trigger, histogram=True)
    pictures = [name for name in details["files"] if name.endswith(".png")]
    return RecoveredTrigger(
        recovery.trigger,
        recovery.quality(scenario.true_trigger),
        {"trigger": pictures[0], "histogram": pictures[-1]},
        details,
        seconds,
    )


def run_pipeline(
    setting: Setting,
    directory: Path,
    methods: list[str],
    ablations: dict[str, dict[str, Any]] | None = None,
    contrastive: ContrastiveConfig | None = None,
    scoring: Scoring = Scoring(),
    show_progress: bool = True,
    keep_going: bool = False,
    patch_options: Mapping[str, Any] | None = None,
) -> PipelineRun:
    """Prepares the setting's scenario, recovers the trigger, runs ``methods`` (Mudjacking first; it sets every
    other method's budget) and scores every model; writes the bug, trigger and loss-curve files into ``directory``.

    When the attack planted no bug to report (``NoBugFound``) or trigger recovery refuses (``TriggerNotFound``),
    ``keep_going`` scores the clean and backdoored models (and, after a refused recovery, the oracle-trigger patch,
    when asked for, with the setting's patch settings) and returns why in ``refused`` (an attack suite records it
    as that attack's result); otherwise the error propagates. ``patch_options`` are the patch settings the user
    named (an experiment file's ``[options.patch]``): fitting the recipe to the recovered trigger keeps them, as
    ``mudjacking patch`` keeps its flags."""
    scenario = setting.prepare(show_progress)
    if scenario.bug is None:
        if not keep_going:
            raise NoBugFound(scenario.no_bug)
        return _undefended(scenario, scoring, setting.seed, f"the attack planted no backdoor: {scenario.no_bug}")
    save_bug_report(scenario.bug, directory / "bug")
    try:
        recovered = recover(scenario, setting.reverse, directory)
    except TriggerNotFound as error:
        if not keep_going:
            raise
        oracle = {}
        if ORACLE in methods:  # still shows whether the patch itself could remove this backdoor
            oracle[ORACLE] = patch_encoder(scenario.backdoored, scenario.bug, scenario.true_trigger,
                                           scenario.patching_set, setting.patch, show_progress)  # fmt: skip
            scenario.laps.lap(ORACLE)
        return _undefended(scenario, scoring, setting.seed, str(error), oracle)
    scenario.laps.lap("reverse_trigger")
    patch, note = adapt_recipe(scenario.backdoored, setting.patch, recovered.trigger, scenario.patching_set,
                               patch_options, scenario.bug.bug_input)  # fmt: skip
    results = run_defences(
        scenario.defence_inputs(recovered.trigger),
        methods,
        patch,
        setting.locality_only,
        contrastive or ContrastiveConfig(),
        ablations,
        show_progress,
        on_done=lambda name, _: scenario.laps.lap(name),
    )
    title = f"Mudjacking, seed {setting.seed}"
    plot_loss_curves(results["mudjacking"].step_losses, directory / "loss_curves.png", title)
    recovered.pictures["losses"] = "loss_curves.png"

    cache = EmbeddingCache()  # each model embeds each customer's clean test set once, for its scores and the control
    models = _models(scenario, scoring, results)
    scores = _scores(scenario, models, scoring, setting.seed, cache)
    control = None
    stamp = setting.control_trigger(scenario.true_trigger) if scoring.control else None
    if stamp is not None:
        first = first_task_per_data(scenario.tasks)
        per_task = {
            name: control_flip_rates(models, task.test, stamp, task.probes, task.targets, cache)
            for name, task in scenario.tasks.items()
            if name in first
        }
        control = {model: {task: per_task[task][model] for task in per_task} for model in models}
    scenario.laps.lap("evaluate")
    stamped = None if stamp is None else list(stamp.words)
    return PipelineRun(scenario, recovered, results, scores, control, recipe_note=note, control_stamp=stamped)


def first_task_per_data(tasks: Mapping[str, Any]) -> set[str]:
    """The first task on each customer's test data: a further backdoor's task on the same data would stamp the
    same inputs with the control stamp again (three times the cost on a three-word attack) for the same floor."""
    return set({id(task.test[0]): name for name, task in reversed(tasks.items())}.values())


def _undefended(
    scenario: Scenario, scoring: Scoring, seed: int, why: str, results: dict[str, PatchResult] | None = None
) -> PipelineRun:
    """A run in which no defence ran (``why``) but those in ``results`` (the oracle): the clean and backdoored
    models scored beside them."""
    results = results or {}
    scores = _scores(scenario, _models(scenario, scoring, results), scoring, seed)
    scenario.laps.lap("evaluate")
    return PipelineRun(scenario, None, results, scores, refused=why)


def _models(scenario: Scenario, scoring: Scoring, results: dict[str, PatchResult]) -> dict[str, Encoder]:
    """What is scored: the clean model (if asked), the backdoored one, and every defence's result, in that order."""
    models = {"clean": scenario.clean} if scoring.include_clean else {}
    return models | {"backdoored": scenario.backdoored, **{name: result.encoder for name, result in results.items()}}


def _scores(
    scenario: Scenario, models: dict[str, Encoder], scoring: Scoring, seed: int, cache: EmbeddingCache | None = None
) -> dict[str, dict[str, dict[str, Any]]]:
    """Every model on every task, through the customers' deployed classifiers (and retrained ones where asked);
    tasks on one customer's data (each backdoor of an attack) share each model's embeddings of it."""
    first, cache = next(iter(scenario.tasks)), cache or EmbeddingCache()
    return {
        name: evaluate_models(
            models,
            task.train,
            task.test,
            task.trigger or scenario.true_trigger,
            task.targets,
            scenario.bug if name == first else None,
            tuple(task.probes),
            deployed_on="backdoored",
            seed=seed,
            retrain=tuple(model for model in scoring.retrained if model in models),
            deployed_probes=task.probes,
            cache=cache,
        )
        for name, task in scenario.tasks.items()
    }
