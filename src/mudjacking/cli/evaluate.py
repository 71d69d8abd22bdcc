"""``mudjacking evaluate``: models side by side through downstream classifiers."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from mudjacking.cli.common import (
    LINEAR_PROBE,
    AllowPickle,
    ImageMean,
    ImageStd,
    Overwrite,
    Threads,
    app,
    console,
    floats_option,
    score_row,
    set_threads,
    user_errors,
)
from mudjacking.errors import ConfigError


@app.command()
def evaluate(
    model: Annotated[list[str], typer.Option(help="NAME=DIR, repeatable; the first is the deployed model.")],
    train: Annotated[
        Path, typer.Option(help="Labeled training set: class folders or npz x,y; for text .jsonl or .tsv.")
    ],
    test: Annotated[Path, typer.Option(help="Labeled downstream test set, same format.")],
    trigger: Annotated[Path, typer.Option(help="Trigger used for ASR/TBA: npz, or JSON for text.")],
    target: Annotated[int, typer.Option(help="The attacker's target class index.")],
    out: Annotated[Path, typer.Option(help="Output folder for evaluation.json and bars.")],
    bug: Annotated[Path | None, typer.Option(help="Bug report, to check whether x_b is fixed.")] = None,
    probe: Annotated[list[str], typer.Option(help="linear and/or mlp (repeatable).")] = LINEAR_PROBE,
    image_mean: ImageMean = None,
    image_std: ImageStd = None,
    allow_pickle: AllowPickle = False,
    overwrite: Overwrite = False,
    threads: Threads = 0,
) -> None:
    """ACC, ASR, TBA, bug fixed and reference kept for each model through downstream classifiers."""
    from mudjacking.api import evaluate_files

    set_threads(threads)
    with user_errors():
        models = dict(_name_and_path(item) for item in model)
        summary = evaluate_files(
            models, train, test, trigger, target, out, bug, tuple(probe), allow_pickle, overwrite,
            floats_option(image_mean, "--image-mean"), floats_option(image_std, "--image-std"),
        )  # fmt: skip
    for kind, per_model in summary["scores"].items():
        table = Table(title=f"{kind} classifier trained on '{next(iter(models))}'")
        for column in ("model", "ACC", "ASR", "TBA", "flip rate", "x_b fixed", "x_r kept"):
            table.add_column(column)
        figures = ("accuracy", "attack_success_rate", "triggered_accuracy", "flip_rate")
        for name, entry in per_model.items():
            table.add_row(*score_row(name, entry["deployed"], figures))
        console.print(table)


def _name_and_path(item: str) -> tuple[str, Path]:
    name, separator, path = item.partition("=")
    if not separator or not name or not path:
        raise ConfigError(f"--model {item!r}: write it as NAME=DIR, e.g. --model backdoored=runs/demo/backdoored_model")
    return name, Path(path)
