"""``mudjacking verify``: the patch's label-free checks, re-run by whoever received a patched model."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from mudjacking.cli.common import (
    EXIT_CODES,
    GOALS_NOT_MET,
    AllowPickle,
    Overwrite,
    Seed,
    app,
    console,
    safe_text,
    user_errors,
)


@app.command("verify", epilog=EXIT_CODES)
def verify(
    model: Annotated[Path, typer.Option(help="The patched model to check.")],
    base: Annotated[Path, typer.Option(help="The model before the patch (locality is measured against it).")],
    bug: Annotated[list[Path], typer.Option(help="Bug report the patch must have fixed (repeatable).")],
    data: Annotated[Path, typer.Option(help="Clean inputs to check on: image folder or npz; for text .txt/.jsonl.")],
    trigger: Annotated[
        Path | None, typer.Option(help="Known trigger (default: recovered from each bug on the base model).")
    ] = None,
    out: Annotated[Path | None, typer.Option(help="Also write verify.json into this folder.")] = None,
    allow_pickle: AllowPickle = False,
    overwrite: Overwrite = False,
    seed: Seed = 0,
) -> None:
    """Check a patched model: every bug fixed, its trigger neutralised, everything else where the base had it.

    Exits 0 when every check of every bug holds, 3 when any fails.
    """
    from mudjacking.api import verify_files

    with user_errors():
        report = verify_files(model, base, list(bug), data, trigger, out, allow_pickle, overwrite, seed)
    goals = report["goals"]
    for result in report["bugs"]:
        verdict = "[green]passed[/]" if result["passed"] else "[bold red]FAILED[/]"
        console.print(
            f"{verdict} {safe_text(result['bug'])}: bug similarity {result['bug_similarity']:.3f} "
            f"(goal {goals['bug_similarity']}), locality {result['locality']:.4f}, trigger neutralised "
            f"{result['trigger_neutralised']:.4f} (goal {goals['trigger_neutralised']}), trigger pull "
            f"{result['trigger_pull']:.3f} (at most {goals['trigger_pull']})",
            highlight=False,
        )
    if not report["passed"]:
        raise typer.Exit(code=GOALS_NOT_MET)
