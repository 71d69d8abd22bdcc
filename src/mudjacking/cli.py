"""The ``mudjacking`` command line: each command parses its options and calls one public function."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Annotated

import torch
import typer
from rich.console import Console
from rich.table import Table

from mudjacking.attacks.badencoder import BadEncoderConfig
from mudjacking.attacks.registry import registered_attacks
from mudjacking.errors import CheckFailed, ConfigError, MudjackingError
from mudjacking.recipes import RECIPES

app = typer.Typer(
    help="Patch backdoors out of foundation models from a single bug report.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
)
console = Console()
errors = Console(stderr=True)


@app.callback()
def _quiet_libraries() -> None:
    """Our own progress bars and one-line errors only: no per-file bars from transformers' loaders."""
    from transformers.utils import logging as transformers_logging

    transformers_logging.disable_progress_bar()


AllowPickle = Annotated[
    bool, typer.Option("--allow-pickle", help="Allow loading pickled .pt/.pth weights (runs code).")
]
Overwrite = Annotated[bool, typer.Option("--overwrite", help="Replace --out if it already holds files.")]
Seed = Annotated[int, typer.Option(help="Random seed.")]
Threads = Annotated[int, typer.Option(help="CPU threads for torch (0 = torch's default).")]
# defaults of repeatable options (typer builds a new list per call; these are never mutated)
SEEDS = [0]
LINEAR_PROBE = ["linear"]
DEFAULT_WORDS = ["cf"]


@contextmanager
def _user_errors() -> Iterator[None]:
    """Bad input becomes one ``error:`` line (naming the file and the fix) and exit code 2, not a traceback; a
    failed self-check one ``refused:`` line and exit code 4. Nothing is written in either case."""
    try:
        yield
    except CheckFailed as error:
        errors.print(f"[bold red]refused:[/] {error}", highlight=False, soft_wrap=True)
        raise typer.Exit(code=REFUSED) from None
    except MudjackingError as error:  # anything else is a bug of ours and keeps its traceback
        errors.print(f"[bold red]error:[/] {error}", highlight=False, soft_wrap=True)
        raise typer.Exit(code=2) from None


def _threads(count: int) -> None:
    if count > 0:
        torch.set_num_threads(count)


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
    _threads(threads)
    with _user_errors():
        from mudjacking.demo import demo as preset
        from mudjacking.demo import run_demo_seeds

        out = out or Path(preset(modality).out)
        reports = run_demo_seeds(modality, list(seed), out, str(model) if model else None, show_progress=not quiet)
    for report in reports:
        _print_demo(report)
    console.print(f"Report, models and pictures written to [bold]{out}[/]")


@app.command()
def experiment(
    config: Annotated[Path, typer.Argument(help="Experiment file (.toml or .yaml); see configs/.")],
    out: Annotated[
        Path | None, typer.Option(help="Output folder (replaced atomically); default runs/<file name>.")
    ] = None,
    seed: Annotated[list[int] | None, typer.Option(help="Seeds to run instead of the file's; repeatable.")] = None,
    threads: Threads = 0,
    quiet: Annotated[bool, typer.Option(help="No progress bars.")] = False,
) -> None:
    """Attack, report a bug, recover the trigger and run every defence over several seeds; one table and report."""
    _threads(threads)
    with _user_errors():
        from mudjacking.experiments.config import load_experiment_config
        from mudjacking.experiments.runner import run_experiment

        settings = load_experiment_config(config)
        if seed:
            settings = settings.model_copy(update={"seeds": list(seed)})
        out = out or Path("runs") / config.stem
        report = run_experiment(settings, out, show_progress=not quiet)
    from mudjacking.report.experiment_report import table_lines

    lines = table_lines(report)
    table = Table(title=f"experiment {report['experiment']}: mean ± std over seeds {settings.seeds}")
    for index, column in enumerate(lines[0]):
        table.add_column(column, justify="left" if index < 3 else "right")
    for row in lines[1:]:
        table.add_row(*row)
    console.print(table)
    console.print(f"report.json, report.md and report.html written to [bold]{out}[/] ({report['total_seconds']:.0f} s)")


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
            for column in ("model", "ACC", "ASR", "ASR w/o trigger", "flip rate", "x_b fixed"):
                table.add_column(column, justify="left" if column == "model" else "right")
            for name, entry in rows.items():
                table.add_row(*_score_row(name, entry["deployed"], DEMO_FIGURES))
            console.print(table)


DEMO_FIGURES = ("accuracy", "attack_success_rate", "clean_target_rate", "flip_rate")


def _score_row(name: str, scores: dict, figures: tuple[str, ...]) -> list[str]:
    return [name, *(f"{100 * scores[key]:.1f}%" for key in figures), str(scores["bug_fixed"])]


def _figure(value: object) -> str:
    return f"{value:.2f}" if isinstance(value, float) else str(value)


def _defaults(field: str) -> str:
    """``(default: image X; text Y)`` for a ``PatchConfig`` field, from the recipes."""
    values = {modality: getattr(recipe.make(), field) for modality, recipe in RECIPES.items()}
    shown = {m: ", ".join(v) if isinstance(v, tuple) else f"{v:g}" if isinstance(v, float) else str(v)
             for m, v in values.items()}  # fmt: skip
    return f"(default: {'; '.join(f'{m} {v}' for m, v in shown.items())})"


def _recipe(help: str, field: str, more: str = "") -> typer.models.OptionInfo:
    """A ``patch`` option whose default comes from the modality's recipe; the help shows both defaults."""
    return typer.Option(help=f"{help} {_defaults(field)}{more}.")


def _floats(text: str | None, option: str) -> list[float] | None:
    if text is None:
        return None
    try:
        return [float(part) for part in text.split(",")]
    except ValueError:
        raise ConfigError(
            f"{option} {text!r}: give numbers separated by commas, e.g. {option} 0.485,0.456,0.406"
        ) from None


ImageMean = Annotated[
    str | None,
    typer.Option(help="Image models: per-channel mean the pixels are normalised with (comma-separated, or one value "
                 "for all), when the model directory does not say (no preprocessor_config.json)."),
]  # fmt: skip
ImageStd = Annotated[str | None, typer.Option(help="Image models: the matching per-channel std.")]
Force = Annotated[
    bool,
    typer.Option("--force", help="Go on past a failed self-check (a bug the model does not show, a trigger that "
                 "does not verify); the report records it."),
]  # fmt: skip
EXIT_CODES = "Exit status: 0 done; 2 bad input; 3 patched but the goals were not met; 4 refused by a self-check."
GOALS_NOT_MET, REFUSED = 3, 4


@app.command(epilog=EXIT_CODES)
def patch(
    model: Annotated[Path, typer.Option(help="Backdoored model: save_pretrained or mudjacking directory.")],
    bug: Annotated[Path, typer.Option(help="Bug report: bug.json or its folder.")],
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
            "L_e aims x_b at: reference (h'(x_r), the paper's), original_reference (h(x_r), held fixed) or "
            "clean_bug (x_b without its trigger)",
            "effectiveness_target",
        ),
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
    allow_pickle: AllowPickle = False,
    overwrite: Overwrite = False,
    threads: Threads = 0,
) -> None:
    """Patch a model from one bug report; writes the patched model, weight delta, trigger and report.json.

    Defaults follow the model's modality (each option shows both); the report records the settings used.
    """
    from mudjacking.api import patch_files

    _threads(threads)
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
        "augmented_copies": augmented_copies,
        "whitened_locality": whitened_locality,
        "centring": centring,
        "lr_schedule": lr_schedule,
    }
    options = {key: value for key, value in given.items() if value is not None}
    with _user_errors():
        report = patch_files(
            model,
            bug,
            data,
            out,
            trigger,
            reverse_config=_reverse_config(window, max_span, seed),
            allow_pickle=allow_pickle,
            overwrite=overwrite,
            patch_options={**options, "seed": seed, "device": device},
            force=force,
            image_mean=_floats(image_mean, "--image-mean"),
            image_std=_floats(image_std, "--image-std"),
        )
    _print_patch(report, out)
    if not report["patch"]["goals_met"]:
        raise typer.Exit(code=GOALS_NOT_MET)


def _reverse_config(window: list[int] | None, max_span: int | None, seed: int) -> dict:
    return {"windows": tuple(window) if window else None, "max_span": max_span, "seed": seed}


def _print_patch(report: dict, out: Path) -> None:
    trigger = report["trigger"]
    if trigger["source"] == "reverse-engineered":
        check = trigger["verification"]
        what = f"words {trigger['words']}" if "words" in trigger else f"{trigger['pixels']} pixels"
        console.print(
            f"trigger: {what}; stamped on held-out clean inputs it moves them {check['pull']:.2f} of the way to "
            f"x_b's embedding (the same cut from other inputs: {check['control_pull']:.2f})"
            + ("" if trigger["verified"] else " [bold red]NOT VERIFIED (--force)[/]")
        )
    if "recipe_note" in report:
        console.print(f"[yellow]note:[/] {report['recipe_note']}")
    pulls = report["trigger_pull"]
    last = report["patch"]["history"][-1]
    console.print(
        f"patched in {report['patch']['epochs']} epochs ({report['patch']['seconds']:.1f} s): trigger pull on held-out "
        f"inputs {_shown(pulls['before'])} before, {_shown(pulls['after'])} after; held-out locality "
        f"{last['holdout_locality']:.3f}; bug similarity {last['bug_similarity']:.3f}"
    )
    if report["patch"]["goals_met"]:
        console.print(f"goals met; written to [bold]{out}[/]")
    else:
        errors.print(
            f"[bold red]goals NOT met[/] (see {out}/report.json: patch.history); the model is written to {out} but "
            "is not known to be fixed",
            highlight=False,
            soft_wrap=True,
        )


def _shown(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.2f}"


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

    with _user_errors():
        summary = reverse_trigger_files(
            model,
            bug,
            data,
            out,
            _reverse_config(window, max_span, seed),
            true_trigger,
            allow_pickle,
            overwrite,
            force,
            _floats(image_mean, "--image-mean"),
            _floats(image_std, "--image-std"),
        )
    check = summary["verification"]
    strength = (
        f"; moves clean inputs {check['pull']:.2f} of the way to x_b (the same cut from other inputs: "
        f"{check['control_pull']:.2f})"
    )
    if "words" in summary:
        match = f", exact match with the true trigger: {summary['exact_match']}" if "exact_match" in summary else ""
        console.print(f"trigger words: {summary['words']}{match}{strength}; written to [bold]{out}[/]")
        return
    iou = (
        f", IoU with the true trigger {summary['iou_with_true_trigger']:.2f}"
        if "iou_with_true_trigger" in summary
        else ""
    )
    console.print(f"trigger: {summary['pixels']} pixels{iou}{strength}; written to [bold]{out}[/]")


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

    _threads(threads)
    with _user_errors():
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
            image_mean=_floats(image_mean, "--image-mean"),
            image_std=_floats(image_std, "--image-std"),
            kind=kind,
        )
    console.print(
        f"backdoored in {summary['seconds']:.1f} s, s(triggered, reference) = "
        f"{summary['final_effectiveness']:.3f}; written to [bold]{out}[/]"
    )


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
    """ACC, ASR, TBA and bug-fixed for each model through downstream classifiers."""
    from mudjacking.api import evaluate_files

    _threads(threads)
    with _user_errors():
        models = dict(_name_and_path(item) for item in model)
        summary = evaluate_files(
            models, train, test, trigger, target, out, bug, tuple(probe), allow_pickle, overwrite,
            _floats(image_mean, "--image-mean"), _floats(image_std, "--image-std"),
        )  # fmt: skip
    for kind, per_model in summary["scores"].items():
        table = Table(title=f"{kind} classifier trained on '{next(iter(models))}'")
        for column in ("model", "ACC", "ASR", "TBA", "flip rate", "x_b fixed"):
            table.add_column(column)
        figures = ("accuracy", "attack_success_rate", "triggered_accuracy", "flip_rate")
        for name, entry in per_model.items():
            table.add_row(*_score_row(name, entry["deployed"], figures))
        console.print(table)


def _name_and_path(item: str) -> tuple[str, Path]:
    name, separator, path = item.partition("=")
    if not separator or not name or not path:
        raise ConfigError(f"--model {item!r}: write it as NAME=DIR, e.g. --model backdoored=runs/demo/backdoored_model")
    return name, Path(path)


if __name__ == "__main__":
    app()
