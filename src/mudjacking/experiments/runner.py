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

from mudjacking.experiments.config import ExperimentConfig
from mudjacking.experiments.summary import aggregate_seeds, seed_rows
from mudjacking.outputs import atomic_output_dir, environment_info, write_json
from mudjacking.pipeline.run import Scoring, run_pipeline
from mudjacking.report.experiment_report import write_html_report, write_markdown_report


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


def _run_seed(config: ExperimentConfig, seed: int, directory: Path, show_progress: bool) -> dict[str, Any]:
    directory.mkdir(parents=True)
    scoring = Scoring(include_clean=config.include_clean_model, retrained=tuple(config.retrained))
    run = run_pipeline(
        config.setting_config(seed),
        directory,
        config.all_methods(),
        config.ablations,
        config.contrastive_config(),
        scoring,
        show_progress,
    )
    recovered = run.recovered
    return {
        "seed": seed,
        "bug": run.scenario.bug.summary(),
        "bug_task": next(iter(run.scenario.tasks)),
        "trigger": {"quality": recovered.quality, "pictures": recovered.pictures, "details": recovered.details},
        "trigger_recovery_seconds": round(recovered.seconds, 2),
        "attack": run.scenario.attack,
        "defences": {name: result.summary() for name, result in run.results.items()},
        "targets": {name: task.targets for name, task in run.scenario.tasks.items()},
        "rows": seed_rows(run.scores, {name: result.seconds for name, result in run.results.items()}),
        "timings_seconds": run.scenario.laps.with_total(),
    }
