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
from mudjacking.data.images import DataError
from mudjacking.encoders.base import ModelLoadError
from mudjacking.outputs import OutputError
from mudjacking.patching import PatchConfig
from mudjacking.triggers.reverse import ReverseConfig

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
ALL_PARAMETERS = ["*"]
LINEAR_PROBE = ["linear"]
DEFAULT_WORDS = ["cf"]


USER_ERRORS = (DataError, ModelLoadError, OutputError, ValueError, KeyError)


@contextmanager
def _user_errors() -> Iterator[None]:
    """Bad input becomes one ``error:`` line (naming the file and the fix) and exit code 2, not a traceback."""
    try:
        yield
    except USER_ERRORS as error:
        message = error.args[0] if isinstance(error, KeyError) and error.args else error
        errors.print(f"[bold red]error:[/] {message}", highlight=False, soft_wrap=True)
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
        Path | None, typer.Option(help="Text demo only: a local text-encoder directory instead of MiniLM.")
    ] = None,
    threads: Threads = 0,
    quiet: Annotated[bool, typer.Option(help="No progress bars.")] = False,
) -> None:
    """Backdoor a foundation model, report a bug, recover the trigger, patch it, and measure."""
    _threads(threads)
    with _user_errors():
        if modality == "image":
            from mudjacking.demo import DemoConfig, run_demo_seeds

            out = out or Path("runs/demo")
            reports = run_demo_seeds([DemoConfig(seed=s) for s in seed], out, show_progress=not quiet)
        elif modality == "text":
            from mudjacking.text_demo import TextDemoConfig, run_text_demo_seeds

            out = out or Path("runs/demo-text")
            configs = [TextDemoConfig(seed=s, model=str(model) if model else None) for s in seed]
            reports = run_text_demo_seeds(configs, out, show_progress=not quiet)
        else:
            raise ValueError(f"--modality {modality!r}: use image or text")
    for report in reports:
        (_print_demo if report["demo"] == "image" else _print_text_demo)(report)
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


def _score_row(name: str, scores: dict, text: bool = False) -> list[str]:
    values = ["accuracy", "attack_success_rate"]
    values += ["clean_target_rate", "flip_rate"] if text else ["triggered_accuracy"]
    return [name, *(f"{100 * scores[key]:.1f}%" for key in values), str(scores["bug_fixed"])]


def _print_text_demo(report: dict) -> None:
    trigger = report["trigger"]
    caption = f"trigger: recovered {trigger['words']}, inserted {trigger['true_words']}"
    for task, per_kind in report["scores"].items():
        for kind in report["config"]["probe_kinds"]:
            row = report["summary"][task][kind]
            control = row.get("control_word_flip_rate_after")
            note = (
                ""
                if control is None
                else (
                    f"\ninserting the ordinary word {report['config']['control_word']!r} instead flips"
                    f" {100 * control:.1f}% after the patch"
                )
            )
            title = f"text demo, seed {report['seed']}: {task}, {kind} classifier"
            table = Table(title=title, caption=caption + note)
            for column in ("model", "ACC", "ASR", "ASR w/o trigger", "flip rate", "x_b fixed"):
                table.add_column(column, justify="left" if column == "model" else "right")
            for name, entry in per_kind[kind].items():
                table.add_row(*_score_row(name, entry["deployed"], text=True))
            console.print(table)


def _print_demo(report: dict) -> None:
    iou = report["summary"]["trigger_iou"]
    for kind in report["config"]["probe_kinds"]:
        title = f"demo on {report['dataset']}, seed {report['seed']}: {kind} classifier of the backdoored model"
        table = Table(title=title, caption=f"recovered trigger IoU {iou:.2f}")
        for column in ("model", "ACC", "ASR", "TBA", "x_b fixed"):
            table.add_column(column, justify="left" if column == "model" else "right")
        for name, entry in report["scores"][kind].items():
            if name == "clean":
                continue
            scores = entry["deployed"]
            table.add_row(
                name,
                f"{100 * scores['accuracy']:.1f}%",
                f"{100 * scores['attack_success_rate']:.1f}%",
                f"{100 * scores['triggered_accuracy']:.1f}%",
                str(scores["bug_fixed"]),
            )
        console.print(table)


@app.command()
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
    lr: Annotated[float, typer.Option(help="Learning rate.")] = PatchConfig.lr,
    epochs: Annotated[int, typer.Option(help="Maximum epochs over the patching set.")] = PatchConfig.max_epochs,
    batch_size: Annotated[int, typer.Option(help="Clean inputs per step.")] = PatchConfig.batch_size,
    lambda_gen: Annotated[float, typer.Option(help="Weight of generalizability.")] = PatchConfig.lambda_gen,
    lambda_eff: Annotated[float, typer.Option(help="Weight of effectiveness.")] = PatchConfig.lambda_eff,
    optimizer: Annotated[str, typer.Option(help="adam or sgd.")] = PatchConfig.optimizer,
    train: Annotated[list[str], typer.Option(help="Parameter-name patterns to train (repeatable).")] = ALL_PARAMETERS,
    early_stop: Annotated[bool, typer.Option(help="Stop once the goals are met on held-out data.")] = True,
    trigger_tokens_only: Annotated[
        bool,
        typer.Option(help="Text: train only the trigger words' embedding rows (other sentences embed as before)."),
    ] = False,
    effectiveness_target: Annotated[
        str,
        typer.Option(help="L_e aims x_b at: reference (x_r, the paper's) or clean_bug (x_b minus the trigger words)."),
    ] = PatchConfig.effectiveness_target,
    augmented_copies: Annotated[
        int, typer.Option(help="Images: augmented copies of each patching image, so locality holds around D.")
    ] = PatchConfig.augmented_copies,
    whitened_locality: Annotated[
        float,
        typer.Option(
            help="Weight of locality measured in D's whitened embedding space (the image experiment uses 0.05)."
        ),
    ] = PatchConfig.whitened_locality,
    window: Annotated[int, typer.Option(help="Occlusion window for trigger recovery.")] = ReverseConfig.window,
    seed: Seed = 0,
    device: Annotated[str, typer.Option(help="auto, cpu or cuda.")] = "auto",
    allow_pickle: AllowPickle = False,
    overwrite: Overwrite = False,
    threads: Threads = 0,
) -> None:
    """Patch a model from one bug report; writes the patched model, weight delta, trigger and report.json."""
    from mudjacking.workflows import patch_files

    _threads(threads)
    with _user_errors():
        config = PatchConfig(
            lambda_gen=lambda_gen,
            lambda_eff=lambda_eff,
            optimizer=optimizer,
            lr=lr,
            batch_size=batch_size,
            max_epochs=epochs,
            early_stop=early_stop,
            trainable=tuple(train),
            trigger_tokens_only=trigger_tokens_only,
            effectiveness_target=effectiveness_target,
            augmented_copies=augmented_copies,
            whitened_locality=whitened_locality,
            seed=seed,
            device=device,
        )
        report = patch_files(
            model,
            bug,
            data,
            out,
            trigger,
            config,
            ReverseConfig(window=window, seed=seed),
            allow_pickle=allow_pickle,
            overwrite=overwrite,
        )
    last = report["patch"]["history"][-1]
    console.print(
        f"patched in {report['patch']['epochs']} epochs ({report['patch']['seconds']:.1f} s): "
        f"s(x_b, x_r) = {last['bug_similarity']:.3f}, held-out locality {last['holdout_locality']:.3f}, "
        f"trigger neutralised {last['holdout_generalizability']:.3f}; goals met: {report['patch']['goals_met']}"
    )
    console.print(f"written to [bold]{out}[/]")


@app.command("reverse-trigger")
def reverse_trigger(
    model: Annotated[Path, typer.Option(help="Model the bug was reported against.")],
    bug: Annotated[Path, typer.Option(help="Bug report: bug.json or its folder.")],
    out: Annotated[Path, typer.Option(help="Output folder for the trigger and heat map.")],
    window: Annotated[int, typer.Option(help="Occlusion window side in pixels.")] = ReverseConfig.window,
    stride: Annotated[int, typer.Option(help="Occlusion stride.")] = ReverseConfig.stride,
    baseline: Annotated[
        float, typer.Option(help="Pixel value written into the occluded window.")
    ] = ReverseConfig.baseline,
    true_trigger: Annotated[
        Path | None, typer.Option(help="The attacker's trigger (npz, or JSON for text), to score the recovery.")
    ] = None,
    seed: Seed = 0,
    allow_pickle: AllowPickle = False,
    overwrite: Overwrite = False,
) -> None:
    """Recover the trigger behind a bug report (occlusion or word ablation + k-means)."""
    from mudjacking.workflows import reverse_trigger_files

    with _user_errors():
        config = ReverseConfig(window=window, stride=stride, baseline=baseline, seed=seed)
        summary = reverse_trigger_files(model, bug, out, config, true_trigger, allow_pickle, overwrite)
    if "words" in summary:
        match = f", exact match with the true trigger: {summary['exact_match']}" if "exact_match" in summary else ""
        console.print(f"trigger words: {summary['words']}{match}; written to [bold]{out}[/]")
        return
    iou = (
        f", IoU with the true trigger {summary['iou_with_true_trigger']:.2f}"
        if "iou_with_true_trigger" in summary
        else ""
    )
    console.print(f"trigger: {summary['pixels']} pixels{iou}; written to [bold]{out}[/]")


@app.command()
def attack(
    model: Annotated[Path, typer.Option(help="Clean model directory.")],
    shadow: Annotated[Path, typer.Option(help="Unlabeled shadow set: image folder, or .txt/.jsonl sentences.")],
    references: Annotated[Path, typer.Option(help="Target-class references: image folder, or .txt/.jsonl.")],
    out: Annotated[Path, typer.Option(help="Output folder for the backdoored model and trigger.")],
    trigger: Annotated[Path | None, typer.Option(help="Trigger npz (or JSON for text); default below.")] = None,
    trigger_size: Annotated[int, typer.Option(help="Side of the default white square trigger.")] = 5,
    trigger_word: Annotated[list[str], typer.Option(help="Text models: trigger word (repeatable).")] = DEFAULT_WORDS,
    epochs: Annotated[int, typer.Option(help="Epochs over the shadow set.")] = BadEncoderConfig.epochs,
    lr: Annotated[float, typer.Option(help="Learning rate.")] = BadEncoderConfig.lr,
    seed: Seed = 0,
    allow_pickle: AllowPickle = False,
    overwrite: Overwrite = False,
    threads: Threads = 0,
) -> None:
    """Backdoor a copy of an image or text encoder with BadEncoder (for evaluating defences)."""
    from mudjacking.workflows import attack_files

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
    allow_pickle: AllowPickle = False,
    overwrite: Overwrite = False,
    threads: Threads = 0,
) -> None:
    """ACC, ASR, TBA and bug-fixed for each model through downstream classifiers."""
    from mudjacking.workflows import evaluate_files

    _threads(threads)
    with _user_errors():
        models = dict(_name_and_path(item) for item in model)
        summary = evaluate_files(models, train, test, trigger, target, out, bug, tuple(probe), allow_pickle, overwrite)
    for kind, per_model in summary["scores"].items():
        table = Table(title=f"{kind} classifier trained on '{next(iter(models))}'")
        for column in ("model", "ACC", "ASR", "TBA", "x_b fixed"):
            table.add_column(column)
        for name, entry in per_model.items():
            table.add_row(*_score_row(name, entry["deployed"]))
        console.print(table)


def _name_and_path(item: str) -> tuple[str, Path]:
    name, separator, path = item.partition("=")
    if not separator or not name or not path:
        raise ValueError(f"--model {item!r}: write it as NAME=DIR, e.g. --model backdoored=runs/demo/backdoored_model")
    return name, Path(path)


if __name__ == "__main__":
    app()
