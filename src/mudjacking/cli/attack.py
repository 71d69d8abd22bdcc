"""``mudjacking attack``: a registered attack on a user's model."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from mudjacking.attacks.badencoder import BadEncoderConfig
from mudjacking.attacks.registry import registered_attacks
from mudjacking.cli.common import (
    DEFAULT_WORDS,
    AllowPickle,
    ImageMean,
    ImageStd,
    Overwrite,
    Seed,
    Threads,
    app,
    console,
    floats_option,
    safe_text,
    set_threads,
    user_errors,
)


@app.command()
def attack(
    model: Annotated[Path, typer.Option(help="Clean model directory.")],
    shadow: Annotated[Path, typer.Option(help="Unlabeled shadow set: image folder, or .txt/.jsonl sentences.")],
    references: Annotated[Path, typer.Option(help="Target-class references: image folder, or .txt/.jsonl.")],
    out: Annotated[Path, typer.Option(help="Output folder for the backdoored model and trigger.")],
    trigger: Annotated[Path | None, typer.Option(help="Trigger npz (or JSON for text); default below.")] = None,
    trigger_size: Annotated[int, typer.Option(help="Side of the default white square trigger.")] = 5,
    trigger_word: Annotated[list[str], typer.Option(help="Text models: trigger word (repeatable).")] = DEFAULT_WORDS,
    kind: Annotated[
        str, typer.Option(help=f"Registered attack to run: {', '.join(registered_attacks())}.")
    ] = "badencoder",
    epochs: Annotated[int, typer.Option(help="Epochs over the shadow set.")] = BadEncoderConfig.epochs,
    lr: Annotated[float, typer.Option(help="Learning rate.")] = BadEncoderConfig.lr,
    seed: Seed = 0,
    image_mean: ImageMean = None,
    image_std: ImageStd = None,
    allow_pickle: AllowPickle = False,
    overwrite: Overwrite = False,
    threads: Threads = 0,
) -> None:
    """Backdoor a copy of an image or text encoder with a registered attack, BadEncoder by default (for evaluating
    defences)."""
    from mudjacking.api import attack_files

    set_threads(threads)
    with user_errors():
        config = BadEncoderConfig(epochs=epochs, lr=lr, seed=seed)
        summary = attack_files(
            model,
            shadow,
            references,
            out,
            trigger,
            trigger_size,
            config,
            allow_pickle,
            overwrite,
            trigger_words=tuple(trigger_word),
            image_mean=floats_option(image_mean, "--image-mean"),
            image_std=floats_option(image_std, "--image-std"),
            kind=kind,
        )
    console.print(
        f"backdoored in {summary['seconds']:.1f} s, s(triggered, reference) = "
        f"{summary['final_effectiveness']:.3f}; written to [bold]{safe_text(out)}[/]"
    )
