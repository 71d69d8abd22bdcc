"""``mudjacking demo``: a demo preset end to end, and its tables."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from mudjacking.cli.common import (
    DEMO_FIGURES,
    SEEDS,
    Threads,
    app,
    console,
    safe_text,
    score_row,
    set_threads,
    user_errors,
)


@app.command()
def demo(
    out: Annotated[Path | None, typer.Option(help="Output folder (replaced atomically).")] = None,
    modality: Annotated[str, typer.Option(help="image (a small CNN) or text (the real all-MiniLM-L6-v2).")] = "image",
    seed: Annotated[list[int], typer.Option(help="Seed; repeat for several runs (mean and range).")] = SEEDS,
    model: Annotated[
        Path | None,
        typer.Option(
            help="The foundation model to attack instead of the demo's: image, a saved encoder directory or a Keras"
            " MobileNetV2 .h5; text, a local sentence-encoder directory."
        ),
    ] = None,
    threads: Threads = 0,
    quiet: Annotated[bool, typer.Option(help="No progress bars.")] = False,
) -> None:
    """Backdoor a foundation model, report a bug, recover the trigger, patch it, and measure."""
    set_threads(threads)
    with user_errors():
        from mudjacking.demo import demo as preset
        from mudjacking.demo import run_demo_seeds

        out = out or Path(preset(modality).out)
        reports = run_demo_seeds(modality, list(seed), out, str(model) if model else None, show_progress=not quiet)
    for report in reports:
        _print_demo(report)
    console.print(f"Report, models and pictures written to [bold]{safe_text(out)}[/]")


def _print_demo(report: dict) -> None:
    quality = report["summary"]["trigger"]
    caption = "recovered trigger: " + ", ".join(f"{key} {_figure(value)}" for key, value in quality.items())
    for task, per_kind in report["scores"].items():
        for kind, rows in per_kind.items():
            row = report["summary"]["tasks"][task][kind]
            note = ""
            if row.get("control_word_flip_rate_after") is not None:
                note = (
                    f"\ninserting the ordinary word {report['config']['control_word']!r} instead flips"
                    f" {100 * row['control_word_flip_rate_after']:.1f}% after the patch"
                )
            table = Table(title=f"{report['demo']} demo, seed {report['seed']}: {task}, {kind} classifier",
                          caption=caption + note)  # fmt: skip
            for column in ("model", "ACC", "ASR", "ASR w/o trigger", "flip rate", "x_b fixed", "x_r kept"):
                table.add_column(column, justify="left" if column == "model" else "right")
            for name, entry in rows.items():
                table.add_row(*score_row(name, entry["deployed"], DEMO_FIGURES))
            console.print(table)


def _figure(value: object) -> str:
    return f"{value:.2f}" if isinstance(value, float) else str(value)
