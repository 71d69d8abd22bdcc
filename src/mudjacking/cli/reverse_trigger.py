"""``mudjacking reverse-trigger``: the trigger behind one bug report."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from mudjacking.cli.common import (
    EXIT_CODES,
    AllowPickle,
    Force,
    ImageMean,
    ImageStd,
    Overwrite,
    Seed,
    app,
    console,
    floats_option,
    near_reference_note,
    reverse_settings,
    safe_text,
    user_errors,
)


@app.command("reverse-trigger", epilog=EXIT_CODES)
def reverse_trigger(
    model: Annotated[Path, typer.Option(help="Model the bug was reported against.")],
    bug: Annotated[Path, typer.Option(help="Bug report: bug.json or its folder.")],
    data: Annotated[
        Path, typer.Option(help="Clean inputs to verify candidates on: image folder or npz; for text .txt or .jsonl.")
    ],
    out: Annotated[Path, typer.Option(help="Output folder for the trigger and heat map.")],
    window: Annotated[
        list[int] | None, typer.Option(help="Images: occlusion window side (repeatable) (default: 3 5 7).")
    ] = None,
    max_span: Annotated[
        int | None, typer.Option(help="Text: longest phrase scored as one trigger candidate (default: 5).")
    ] = None,
    true_trigger: Annotated[
        Path | None, typer.Option(help="The attacker's trigger (npz, or JSON for text), to score the recovery.")
    ] = None,
    image_mean: ImageMean = None,
    image_std: ImageStd = None,
    force: Force = False,
    seed: Seed = 0,
    allow_pickle: AllowPickle = False,
    overwrite: Overwrite = False,
) -> None:
    """Recover the trigger behind a bug report (occlusion or word/span ablation, k-means, verified on clean data)."""
    from mudjacking.api import reverse_trigger_files

    with user_errors():
        summary = reverse_trigger_files(
            model,
            bug,
            data,
            out,
            reverse_settings(window, max_span, seed),
            true_trigger,
            allow_pickle,
            overwrite,
            force,
            floats_option(image_mean, "--image-mean"),
            floats_option(image_std, "--image-std"),
        )
    check = summary["verification"]
    strength = (
        f"; moves clean inputs {check['pull']:.2f} of the way to x_b (the same cut from other inputs: "
        f"{check['control_pull']:.2f})"
    ) + near_reference_note(summary)
    if "words" in summary:
        match = f", exact match with the true trigger: {summary['exact_match']}" if "exact_match" in summary else ""
        console.print(
            f"trigger words: {safe_text(summary['words'])}{match}{strength}; written to [bold]{safe_text(out)}[/]"
        )
        return
    iou = (
        f", IoU with the true trigger {summary['iou_with_true_trigger']:.2f}"
        if "iou_with_true_trigger" in summary
        else ""
    )
    console.print(f"trigger: {summary['pixels']} pixels{iou}{strength}; written to [bold]{safe_text(out)}[/]")
