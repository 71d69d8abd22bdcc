"""``mudjacking patch``: a user's model, bug report and patching set -> the patched model."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from mudjacking.cli.common import (
    EXIT_CODES,
    GOALS_NOT_MET,
    AllowPickle,
    Force,
    ImageMean,
    ImageStd,
    Overwrite,
    Seed,
    Threads,
    app,
    console,
    errors,
    floats_option,
    near_reference_note,
    reverse_settings,
    safe_text,
    set_threads,
    user_errors,
)
from mudjacking.recipes import RECIPES


def _defaults(field: str) -> str:
    """``(default: image X; text Y)`` for a ``PatchConfig`` field, from the recipes."""
    values = {modality: getattr(recipe.make(), field) for modality, recipe in RECIPES.items()}
    shown = {m: ", ".join(v) if isinstance(v, tuple) else f"{v:g}" if isinstance(v, float) else str(v)
             for m, v in values.items()}  # fmt: skip
    return f"(default: {'; '.join(f'{m} {v}' for m, v in shown.items())})"


def _recipe(help: str, field: str, more: str = "") -> typer.models.OptionInfo:
    """A ``patch`` option whose default comes from the modality's recipe; the help shows both defaults."""
    return typer.Option(help=f"{help} {_defaults(field)}{more}.")


@app.command(epilog=EXIT_CODES)
def patch(
    model: Annotated[Path, typer.Option(help="Backdoored model: save_pretrained or mudjacking directory.")],
    bug: Annotated[
        list[Path],
        typer.Option(
            help="Bug report: bug.json or its folder; repeat it to fix several bugs in one patch. Bugs an earlier "
            "patch of the model fixed (its fixed_bugs/ folder) are kept fixed."
        ),
    ],
    data: Annotated[
        Path, typer.Option(help="Patching set: folder of clean images (or npz with x); for text .txt or .jsonl.")
    ],
    out: Annotated[Path, typer.Option(help="Output folder for the patched model and report.")],
    trigger: Annotated[
        Path | None, typer.Option(help="Known trigger (npz, or JSON for text); skips reverse-engineering.")
    ] = None,
    lr: Annotated[
        float | None,
        _recipe(
            "Learning rate",
            "lr",
            "; a whole-model patch of a model over 100k parameters scales it by sqrt(100k / parameters)",
        ),
    ] = None,
    epochs: Annotated[int | None, _recipe("Maximum epochs over the patching set", "max_epochs")] = None,
    batch_size: Annotated[int | None, _recipe("Clean inputs per step", "batch_size")] = None,
    lambda_gen: Annotated[float | None, _recipe("Weight of generalizability", "lambda_gen")] = None,
    lambda_eff: Annotated[float | None, _recipe("Weight of effectiveness", "lambda_eff")] = None,
    optimizer: Annotated[str | None, _recipe("adam or sgd", "optimizer")] = None,
    train: Annotated[list[str] | None, _recipe("Parameter-name patterns to train (repeatable)", "trainable")] = None,
    early_stop: Annotated[bool | None, _recipe("Stop once the goals are met on held-out data", "early_stop")] = None,
    trigger_tokens_only: Annotated[
        bool | None,
        _recipe(
            "Text: train only the trigger words' embedding rows (other sentences embed as before); common "
            "trigger words switch it off",
            "trigger_tokens_only",
        ),
    ] = None,
    effectiveness_target: Annotated[
        str | None,
        _recipe(
            "L_e aims x_b at: reference (h'(x_r), the paper's), original_reference (h(x_r), held fixed), "
            "clean_bug (x_b without its trigger) or bug_and_reference (between the last two)",
            "effectiveness_target",
        ),
    ] = None,
    reference_weight: Annotated[
        float | None,
        _recipe("Weight of holding x_r where it was in L_l, on every step (0 = the paper's)", "reference_weight"),
    ] = None,
    augmented_copies: Annotated[
        int | None,
        _recipe("Images: augmented copies of each patching image, so locality holds around D", "augmented_copies"),
    ] = None,
    whitened_locality: Annotated[
        float | None, _recipe("Weight of locality measured in D's whitened embedding space", "whitened_locality")
    ] = None,
    lr_schedule: Annotated[
        str | None, _recipe("constant or cosine (decays to 0 over the epochs)", "lr_schedule")
    ] = None,
    centring: Annotated[
        str | None,
        _recipe("Similarities around D's mean embedding: auto (when D sits in a narrow cone), on or off", "centring"),
    ] = None,
    lora: Annotated[
        int | None,
        typer.Option(
            help="Train rank-N LoRA adapters (peft) instead of the weights; the delta file is the adapters "
            "(default: 0, a full patch; with --lora and no --lr, lr 2e-3)."
        ),
    ] = None,
    window: Annotated[
        list[int] | None,
        typer.Option(help="Images: occlusion window for trigger recovery (repeatable) (default: 3 5 7)."),
    ] = None,
    max_span: Annotated[
        int | None, typer.Option(help="Text: longest phrase scored as one trigger candidate (default: 5).")
    ] = None,
    image_mean: ImageMean = None,
    image_std: ImageStd = None,
    force: Force = False,
    seed: Seed = 0,
    device: Annotated[str, typer.Option(help="auto, cpu or cuda.")] = "auto",
    precision: Annotated[
        str | None,
        typer.Option(
            help="fp32, bf16 (the forward pass under bfloat16 autocast), or auto (bf16 where the GPU or CPU computes "
            "it natively). Default: the recipe's (fp32; auto when a text patch retrains the whole model)."
        ),
    ] = None,
    allow_pickle: AllowPickle = False,
    overwrite: Overwrite = False,
    resume: Annotated[
        bool,
        typer.Option(
            "--resume",
            help="Continue an interrupted patch into the same --out from its last checkpoint (.OUT.checkpoint beside "
            "it, written after every pass); the same inputs and options give the result of an uninterrupted run.",
        ),
    ] = False,
    threads: Threads = 0,
) -> None:
    """Patch a model from one or more bug reports; writes the patched model, weight delta, triggers and report.json.

    Defaults follow the model's modality (each option shows both); the report records the settings used.

    Several processes: accelerate launch --multi_gpu --num_processes N -m mudjacking patch ... (DDP replicas).

    With --use_fsdp in place of --multi_gpu the model is sharded across them. The launcher exits 1 for any status but 0.
    """
    from mudjacking.api import patch_files
    from mudjacking.devices import is_main_process

    set_threads(threads)
    given = {
        "lr": lr,
        "max_epochs": epochs,
        "batch_size": batch_size,
        "lambda_gen": lambda_gen,
        "lambda_eff": lambda_eff,
        "optimizer": optimizer,
        "trainable": tuple(train) if train else None,
        "early_stop": early_stop,
        "trigger_tokens_only": trigger_tokens_only,
        "effectiveness_target": effectiveness_target,
        "reference_weight": reference_weight,
        "augmented_copies": augmented_copies,
        "whitened_locality": whitened_locality,
        "centring": centring,
        "lr_schedule": lr_schedule,
        "lora_rank": lora,
    }
    options = {key: value for key, value in given.items() if value is not None}
    with user_errors():
        report = patch_files(
            model,
            bug,
            data,
            out,
            trigger,
            reverse_config=reverse_settings(window, max_span, seed),
            allow_pickle=allow_pickle,
            overwrite=overwrite,
            patch_options={**options, "seed": seed, "device": device} | ({"precision": precision} if precision else {}),
            force=force,
            image_mean=floats_option(image_mean, "--image-mean"),
            image_std=floats_option(image_std, "--image-std"),
            show_progress=is_main_process(),
            resume=resume,
        )
    if is_main_process():  # under `accelerate launch`, one process speaks
        _print_patch(report, out)
    if not report["patch"]["goals_met"]:
        raise typer.Exit(code=GOALS_NOT_MET)


def _print_patch(report: dict, out: Path) -> None:
    for entry in report["bugs"]:
        trigger = entry["trigger"]
        if trigger["source"] != "reverse-engineered":
            continue
        check = trigger["verification"]
        what = f"words {safe_text(trigger['words'])}" if "words" in trigger else f"{trigger['pixels']} pixels"
        whose = f"{safe_text(entry['report'])}: " if len(report["bugs"]) > 1 else ""
        console.print(
            f"{whose}trigger: {what}; stamped on held-out clean inputs it moves them {check['pull']:.2f} of the way "
            f"to x_b's embedding (the same cut from other inputs: {check['control_pull']:.2f})"
            + near_reference_note(trigger)
            + ("" if trigger["verified"] else " [bold red]NOT VERIFIED (--force)[/]")
        )
    if len(report["bugs"]) > 1 or report["earlier_bugs"]:
        for entry in [*report["bugs"], *report["earlier_bugs"]]:
            kind = "earlier bug" if entry["earlier"] else "bug"
            verdict = "fixed" if entry["fixed"] else "[bold red]NOT fixed[/]"
            console.print(
                f"{kind} {safe_text(entry['report'])}: {verdict} (bug similarity {entry['bug_similarity']:.3f}, "
                f"trigger neutralised {entry['generalizability']:.3f})"
            )
    if "recipe_note" in report:
        console.print(f"[yellow]note:[/] {safe_text(report['recipe_note'])}")
    pulls = report["trigger_pull"]
    patch = report["patch"]
    kept = next((r for r in patch["history"] if r["epoch"] == patch.get("kept_pass")), patch["history"][-1])
    closer = f", kept pass {kept['epoch']}, the closest to the goals" if kept is not patch["history"][-1] else ""
    console.print(
        f"patched in {patch['epochs']} epochs{closer} ({patch['seconds']:.1f} s): trigger pull on held-out inputs "
        f"{_shown(pulls['before'])} before, {_shown(pulls['after'])} after; held-out locality "
        f"{kept['holdout_locality']:.3f}; bug similarity {kept['bug_similarity']:.3f}"
    )
    if patch["goals_met"]:
        console.print(f"goals met; written to [bold]{safe_text(out)}[/]")
        console.print(
            "these goals are read on embeddings, without labels: a borderline x_b can meet them and stay "
            f"misclassified; ask your classifier with `mudjacking evaluate --model patched={safe_text(out)}/model "
            "--bug ...`",
            highlight=False,
            soft_wrap=True,
        )
    else:
        errors.print(
            f"[bold red]goals NOT met[/] (see {safe_text(out)}/report.json: patch.history); the model is written to "
            f"{safe_text(out)} but "
            "is not known to be fixed",
            highlight=False,
            soft_wrap=True,
        )


def _shown(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.2f}"
