"""The application object and what every command shares: option types, exit codes, one-line errors."""

from __future__ import annotations

import signal
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Annotated

import torch
import typer
from rich.console import Console
from rich.markup import escape

from mudjacking.errors import CheckFailed, ConfigError, MudjackingError

app = typer.Typer(
    help="Patch backdoors out of foundation models from a single bug report.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
)
console = Console()
errors = Console(stderr=True)


@app.callback()
def _quiet_libraries() -> None:
    """Our own progress bars and one-line errors only: no per-file bars from transformers' loaders. SIGTERM ends a
    command as Ctrl-C does, so the half-written output folder is removed (it was left behind)."""
    from transformers.utils import logging as transformers_logging

    transformers_logging.disable_progress_bar()
    if threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGTERM, _terminated)


def _terminated(signum: int, frame: object) -> None:
    raise SystemExit(128 + signum)


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
def user_errors() -> Iterator[None]:
    """Bad input becomes one ``error:`` line (naming the file and the fix) and exit code 2, not a traceback; a
    failed self-check one ``refused:`` line and exit code 4. Nothing is written in either case."""
    try:
        yield
    except CheckFailed as error:
        errors.print(f"[bold red]refused:[/] {safe_text(error)}", highlight=False, soft_wrap=True)
        raise typer.Exit(code=REFUSED) from None
    except MudjackingError as error:  # anything else is a bug of ours and keeps its traceback
        errors.print(f"[bold red]error:[/] {safe_text(error)}", highlight=False, soft_wrap=True)
        raise typer.Exit(code=2) from None


def safe_text(value: object) -> str:
    """Text from the user's files (paths, words, messages quoting them) as the console may print it: rich markup
    escaped (a sentence holding ``[/]`` crashed the printing) and control characters spelled out (a file name's
    terminal escape sequences were echoed raw)."""
    text = "".join(c if c.isprintable() or c in "\n\t" else ascii(c)[1:-1] for c in str(value))
    return escape(text)


def set_threads(count: int) -> None:
    if count > 0:
        torch.set_num_threads(count)


DEMO_FIGURES = ("accuracy", "attack_success_rate", "clean_target_rate", "flip_rate")


def score_row(name: str, scores: dict, figures: tuple[str, ...]) -> list[str]:
    kept = scores.get("reference_kept")
    return [name, *(f"{100 * scores[key]:.1f}%" for key in figures), str(scores["bug_fixed"]), str(kept)]


def near_reference_note(trigger: dict) -> str:
    """The clause ``patch`` and ``reverse-trigger`` add for a trigger that verified only on the inputs nearest
    ``x_r`` (from a recovery summary): what it pulled there, and what such a backdoor may be."""
    if not trigger.get("verified_near_reference"):
        return ""
    beyond = trigger["verification"]["near_strength"]
    return (
        f"; only inputs like x_r answer it ({beyond:.2f} beyond the cut on those nearest it:"
        " a source-specific backdoor?)"
    )


def floats_option(text: str | None, option: str) -> list[float] | None:
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


def reverse_settings(window: list[int] | None, max_span: int | None, seed: int) -> dict:
    return {"windows": tuple(window) if window else None, "max_span": max_span, "seed": seed}
