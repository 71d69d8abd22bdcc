"""``mudjacking experiment``: an experiment file over seeds and defences, and its table."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from mudjacking.cli.common import (
    Threads,
    app,
    console,
    safe_text,
    set_threads,
    user_errors,
)


@app.command()
def experiment(
    config: Annotated[Path, typer.Argument(help="Experiment file (.toml or .yaml); see configs/.")],
    out: Annotated[
        Path | None, typer.Option(help="Output folder (replaced atomically); default runs/<file name>.")
    ] = None,
    seed: Annotated[list[int] | None, typer.Option(help="Seeds to run instead of the file's; repeatable.")] = None,
    threads: Threads = 0,
    quiet: Annotated[bool, typer.Option(help="No progress bars.")] = False,
    resume: Annotated[
        bool,
        typer.Option(
            "--resume",
            help="Take the seeds an interrupted run of the same file into the same --out finished (kept in "
            ".OUT.checkpoint beside it) instead of running them again.",
        ),
    ] = False,
) -> None:
    """Attack, report a bug, recover the trigger and run every defence over several seeds; one table and report."""
    set_threads(threads)
    with user_errors():
        from mudjacking.experiments.config import load_experiment_config
        from mudjacking.experiments.runner import run_experiment

        settings = load_experiment_config(config)
        if seed:
            settings = settings.model_copy(update={"seeds": list(seed)})
        out = out or Path("runs") / config.stem
        report = run_experiment(settings, out, show_progress=not quiet, resume=resume)
    from mudjacking.report.experiment_report import table_lines

    lines = table_lines(report)
    table = Table(title=f"experiment {report['experiment']}: mean ± std over seeds {settings.seeds}")
    for column in lines[0]:
        table.add_column(column, justify="left" if column in ("attack", "task", "classifier", "model") else "right")
    for row in lines[1:]:
        table.add_row(*row)
    console.print(table)
    console.print(
        f"report.json, report.md and report.html written to [bold]{safe_text(out)}[/] ({report['total_seconds']:.0f} s)"
    )
