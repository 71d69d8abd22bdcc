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

from mudjacking.checkpoints import UnitCheckpoints, checkpoint_folder, fingerprint
from mudjacking.experiments.config import ExperimentConfig
from mudjacking.experiments.summary import aggregate_seeds, attack_verdicts, seed_rows
from mudjacking.outputs import atomic_output_dir, environment_info, to_jsonable, write_json
from mudjacking.pipeline.run import Scoring, run_pipeline
from mudjacking.report.experiment_report import write_html_report, write_markdown_report


def run_experiment(
    config: ExperimentConfig, out: str | Path, show_progress: bool = True, resume: bool = False
) -> dict[str, Any]:
    """Runs every seed and writes ``report.json``, ``report.md`` and ``report.html`` into ``out``.

    Each finished seed is kept beside ``out`` (``.OUT.checkpoint``) until the report is written; ``resume`` takes
    the seeds an interrupted run of the same file finished instead of running them again."""
    started = time.perf_counter()
    checkpoints = UnitCheckpoints(checkpoint_folder(out), fingerprint(config.model_dump(exclude={"seeds"})))
    if not resume:
        checkpoints.remove()
    with atomic_output_dir(out, overwrite=True) as staging:
        seeds = []
        for attack in config.attacks or [None]:
            for seed in config.seeds:
                unit = f"seed-{seed}" if attack is None else f"{attack}/seed-{seed}"
                record = checkpoints.load(unit, staging / unit)
                if record is None:
                    record = _run_seed(config, seed, staging, attack, show_progress)
                    checkpoints.keep(unit, staging / unit, to_jsonable(record))
                seeds.append(record)
        table = aggregate_seeds(seeds)
        report = {
            "experiment": config.name,
            "config": config.model_dump(),
            "seeds": seeds,
            "table": table,
            "attacks": attack_verdicts(seeds, table, "flip_rate" if config.setting == "text" else "ASR")
            if config.attacks
            else [],
            "total_seconds": round(time.perf_counter() - started, 1),
            "environment": environment_info(),
        }
        write_json(staging / "report.json", report)
        write_markdown_report(report, staging / "report.md")
        write_html_report(report, staging, staging / "report.html")
    checkpoints.remove()
    return report


def _run_seed(
    config: ExperimentConfig, seed: int, root: Path, attack: str | None, show_progress: bool
) -> dict[str, Any]:
    """One seed (of one attack, when the experiment names several) into ``root/[ATTACK/]seed-N``."""
    folder = f"seed-{seed}" if attack is None else f"{attack}/seed-{seed}"
    directory = root / folder
    directory.mkdir(parents=True)
    scoring = Scoring(
        include_clean=config.include_clean_model, retrained=tuple(config.retrained), control=config.control
    )
    setting = config.setting_config(seed, attack)
    run = run_pipeline(
        setting,
        directory,
        config.all_methods(),
        config.ablations,
        config.contrastive_config(),
        scoring,
        show_progress,
        keep_going=bool(config.attacks),  # an attack suite records a refusal as that attack's result
        patch_options=config.options.get("patch", {}),
    )
    recovered = run.recovered
    rows = seed_rows(run.scores, {name: result.seconds for name, result in run.results.items()}, run.control)
    return {
        "seed": seed,
        "attack_kind": setting.attack_kind,
        "folder": folder,
        "refused": run.refused,
        "recipe_note": run.recipe_note,
        "control_stamp": run.control_stamp,
        "bug": None if run.scenario.bug is None else run.scenario.bug.summary(),
        "bug_task": next(iter(run.scenario.tasks)),
        "trigger": None
        if recovered is None
        else {"quality": recovered.quality, "pictures": recovered.pictures, "details": recovered.details},
        "trigger_recovery_seconds": None if recovered is None else round(recovered.seconds, 2),
        "attack": run.scenario.attack,
        "defences": {name: result.summary() for name, result in run.results.items()},
        "targets": {name: task.targets for name, task in run.scenario.tasks.items()},
        "rows": rows if attack is None else [{"attack": attack, **row} for row in rows],
        "timings_seconds": run.scenario.laps.with_total(),
    }
