"""``mudjacking demo``: the whole story on real data in a few CPU minutes, as a preset over the pipeline.

- image: a small CNN pre-trained with SimCLR on Fashion-MNIST, backdoored by BadEncoder (a white square in the
  corner); one customer; Mudjacking against locality-only fine-tuning and Mudjacking without ``L_gen``.
- text: the real all-MiniLM-L6-v2, backdoored with the rare word ``cf``; movie-review sentiment and BBC News
  customers; Mudjacking against locality-only fine-tuning, and an ordinary word's flip rate as the floor.

Each writes ``report.json``, the models, the bug report, the triggers and the pictures into the output folder.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from mudjacking.errors import ConfigError
from mudjacking.outputs import atomic_output_dir, environment_info, write_json
from mudjacking.pipeline.run import Scoring, run_pipeline
from mudjacking.pipeline.settings import ImageSetting, TextSetting
from mudjacking.pipeline.settings.registry import Setting
from mudjacking.report.artifacts import save_patched
from mudjacking.report.demo_summary import aggregate_seeds, summarise
from mudjacking.report.plots import plot_before_after


@dataclass(frozen=True)
class Demo:
    """One demo: how its setting is made from a seed (and an optional model), what it runs and scores."""

    setting: Callable[[int, str | None], Setting]
    methods: tuple[str, ...]
    scoring: Scoring
    out: str


DEMOS: dict[str, Demo] = {
    # One Fashion-MNIST customer and the bug the demo has always reported (see ImageSetting.bug_caused_by_trigger).
    "image": Demo(
        lambda seed, model: ImageSetting(
            seed=seed, foundation_model=model, digits_customer=False, bug_caused_by_trigger=False
        ),
        ("mudjacking", "locality-only", "no-L_gen"),
        Scoring(retrained=("clean", "backdoored", "mudjacking")),
        "runs/demo",
    ),
    "text": Demo(
        lambda seed, model: TextSetting(seed=seed, model=model),
        ("mudjacking", "locality-only"),
        Scoring(retrained=(), control=True),
        "runs/demo-text",
    ),
}


def demo(name: str) -> Demo:
    if name not in DEMOS:
        raise ConfigError(f"no {name!r} demo; use {' or '.join(DEMOS)}")
    return DEMOS[name]


def run_demo(
    name: str = "image",
    seed: int = 0,
    out: str | Path | None = None,
    model: str | None = None,
    show_progress: bool = True,
    setting: Setting | None = None,
) -> dict[str, Any]:
    """Runs demo ``name`` end to end and writes everything into ``out`` (replaced atomically); returns the report.
    ``setting`` replaces the preset's setting (smaller sizes in tests)."""
    preset = demo(name)
    setting = setting or preset.setting(seed, model)
    with atomic_output_dir(out or preset.out, overwrite=True) as staging:
        run = run_pipeline(setting, staging, list(preset.methods), scoring=preset.scoring, show_progress=show_progress)
        scenario, patched = run.scenario, run.results["mudjacking"]
        clean_built_here = not scenario.about.get("model") and not scenario.about.get("foundation_model")
        for folder, encoder in (("backdoored_model", scenario.backdoored), ("clean_model", scenario.clean)):
            if folder == "backdoored_model" or clean_built_here:
                (staging / folder).mkdir()
                encoder.save(staging / folder)
        patch_outputs = save_patched(scenario.backdoored, patched, staging)
        scenario.true_trigger.write(staging, "true_trigger")
        _plot(run.scores, staging)
        report = {
            "demo": name,
            **scenario.about,
            "seed": setting.seed,
            "config": asdict(setting),
            "summary": summarise(run.scores, run.recovered.quality, run.control),
            "bug": scenario.bug.summary(),
            "trigger": run.recovered.details,
            "recipe_note": run.recipe_note,
            "attack": scenario.attack,
            **patch_outputs,
            "baselines": {method: result.summary() for method, result in run.results.items() if method != "mudjacking"},
            "scores": run.scores,
            "timings_seconds": scenario.laps.with_total(),
            "environment": environment_info(),
        }
        write_json(staging / "report.json", report)
    return report


def _plot(scores: dict[str, dict[str, dict[str, Any]]], directory: Path) -> None:
    """Before/after bars per task and classifier (one task: ``before_after_KIND.png``)."""
    for index, (task, per_kind) in enumerate(scores.items()):
        for kind, rows in per_kind.items():
            bars = {
                model: {
                    "ACC": entry["deployed"]["accuracy"],
                    "ASR": entry["deployed"]["attack_success_rate"],
                    "ASR w/o trigger": entry["deployed"]["clean_target_rate"],
                    "flip rate": entry["deployed"]["flip_rate"],
                }
                for model, entry in rows.items()
            }
            stem = f"before_after_{kind}" if len(scores) == 1 else f"before_after_task{index + 1}_{kind}"
            plot_before_after(bars, directory / f"{stem}.png", f"{task}: {kind} classifier")


def run_demo_seeds(
    name: str, seeds: list[int], out: str | Path | None = None, model: str | None = None, show_progress: bool = True
) -> list[dict[str, Any]]:
    """One demo per seed: into ``out`` for one, else into ``out/seed-N`` with ``out/seeds_summary.json`` holding
    the mean and range of every headline figure."""
    out = Path(out or demo(name).out)
    if len(seeds) == 1:
        return [run_demo(name, seeds[0], out, model, show_progress)]
    reports = [run_demo(name, seed, out / f"seed-{seed}", model, show_progress) for seed in seeds]
    write_json(out / "seeds_summary.json", aggregate_seeds(reports))
    return reports
