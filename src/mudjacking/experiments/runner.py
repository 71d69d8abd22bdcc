"""``mudjacking experiment CONFIG``: for each seed, attack → bug → recover the trigger → every defence → score
every model on every downstream task with the customers' deployed classifiers; then one table over seeds.

Layout of the output folder (replaced atomically)::

    report.json  report.md  report.html   everything; the table; the same with pictures, self-contained
    seed-N/                               per seed: bug report, recovered trigger, its pictures, loss curves
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from mudjacking.data.bug_report import save_bug_report
from mudjacking.experiments.config import ExperimentConfig
from mudjacking.experiments.methods import run_methods
from mudjacking.experiments.scenario import Scenario, prepare_image_scenario, prepare_text_scenario
from mudjacking.experiments.summary import aggregate_seeds, seed_rows
from mudjacking.outputs import atomic_output_dir, environment_info, write_json
from mudjacking.report.experiment_report import write_html_report, write_markdown_report
from mudjacking.report.plots import plot_loss_curves, plot_score_histogram
from mudjacking.triggers import Trigger
from mudjacking.triggers.reverse import reverse_engineer_trigger
from mudjacking.triggers.text import reverse_engineer_text_trigger
from mudjacking.workflows import evaluate_models, write_text_trigger_outputs, write_trigger_outputs


def run_experiment(config: ExperimentConfig, out: str | Path, show_progress: bool = True) -> dict[str, Any]:
    """Runs every seed and writes ``report.json``, ``report.md`` and ``report.html`` into ``out``."""
    started = time.perf_counter()
    with atomic_output_dir(out, overwrite=True) as staging:
        seeds = [_run_seed(config, seed, staging / f"seed-{seed}", show_progress) for seed in config.seeds]
        report = {
            "experiment": config.name,
            "config": config.model_dump(),
            "seeds": seeds,
            "table": aggregate_seeds(seeds),
            "total_seconds": round(time.perf_counter() - started, 1),
            "environment": environment_info(),
        }
        write_json(staging / "report.json", report)
        write_markdown_report(report, staging / "report.md")
        write_html_report(report, staging, staging / "report.html")
    return report


def _prepare(config: ExperimentConfig, seed: int, show_progress: bool) -> tuple[Scenario, Any]:
    setting = config.setting_config(seed)
    if config.setting == "image":
        return prepare_image_scenario(setting, show_progress), setting
    return prepare_text_scenario(setting, show_progress), setting


def _recover(scenario: Scenario, setting: Any, directory: Path) -> tuple[Trigger, dict[str, Any]]:
    """Reverse-engineers the trigger from the bug and writes its pictures; returns it and its quality."""
    if scenario.modality == "image":
        recovery = reverse_engineer_trigger(scenario.backdoored, scenario.bug, scenario.patching_set, setting.reverse)
        summary = write_trigger_outputs(directory, recovery, scenario.bug, scenario.true_trigger)
        plot_score_histogram(recovery.attribution, recovery.threshold, directory / "score_histogram.png", "pixel")
        quality = {"iou": summary["iou_with_true_trigger"], "pixels": summary["pixels"]}
        pictures = {"trigger": "trigger_heatmap.png"}
    else:
        recovery = reverse_engineer_text_trigger(
            scenario.backdoored, scenario.bug, scenario.patching_set, setting.reverse
        )
        summary = write_text_trigger_outputs(directory, recovery, scenario.true_trigger)
        plot_score_histogram(recovery.scores, recovery.threshold, directory / "score_histogram.png", "word")
        quality = {
            "words": recovery.trigger.words,
            "exact_match": summary["exact_match"],
            "jaccard": recovery.trigger.overlap(scenario.true_trigger),
        }
        pictures = {"trigger": "word_scores.png"}
    pictures["histogram"] = "score_histogram.png"
    return recovery.trigger, {"quality": quality, "pictures": pictures, "details": summary}


def _run_seed(config: ExperimentConfig, seed: int, directory: Path, show_progress: bool) -> dict[str, Any]:
    directory.mkdir(parents=True)
    scenario, setting = _prepare(config, seed, show_progress)
    save_bug_report(scenario.bug, directory / "bug")
    started = time.perf_counter()
    recovered, trigger = _recover(scenario, setting, directory)
    recovery_seconds = time.perf_counter() - started
    results = run_methods(
        scenario,
        recovered,
        config.all_methods(),
        setting.patch,
        setting.locality_only,
        config.contrastive_config(),
        config.ablations,
        show_progress,
    )
    scenario.laps.lap("defences")
    plot_loss_curves(results["mudjacking"].step_losses, directory / "loss_curves.png", f"Mudjacking, seed {seed}")
    trigger["pictures"]["losses"] = "loss_curves.png"

    models = {"clean": scenario.clean} if config.include_clean_model else {}
    models |= {"backdoored": scenario.backdoored, **{name: result.encoder for name, result in results.items()}}
    first = next(iter(scenario.tasks))
    scores = {
        name: evaluate_models(
            models,
            task.train,
            task.test,
            scenario.true_trigger,
            task.targets,
            scenario.bug if name == first else None,
            tuple(task.probes),
            deployed_on="backdoored",
            seed=seed,
            retrain=tuple(config.retrained),
            deployed_probes=task.probes,
        )
        for name, task in scenario.tasks.items()
    }
    scenario.laps.lap("evaluate")
    return {
        "seed": seed,
        "bug": scenario.bug.summary(),
        "bug_task": first,
        "trigger": trigger,
        "trigger_recovery_seconds": round(recovery_seconds, 2),
        "attack": scenario.attack,
        "defences": {name: result.summary() for name, result in results.items()},
        "targets": {name: task.targets for name, task in scenario.tasks.items()},
        "rows": seed_rows(scores, {name: result.seconds for name, result in results.items()}),
        "timings_seconds": scenario.laps.with_total(),
    }
