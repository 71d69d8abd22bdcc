"""``mudjacking apply``: a shipped weight delta on the base model it was made from."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from mudjacking.cli.common import EXIT_CODES, AllowPickle, Overwrite, app, console, safe_text, user_errors


@app.command("apply", epilog=EXIT_CODES)
def apply(
    model: Annotated[Path, typer.Option(help="The base model the delta was made from.")],
    delta: Annotated[Path, typer.Option(help="patch_delta.safetensors written by `mudjacking patch`.")],
    out: Annotated[Path, typer.Option(help="Output folder for the patched model.")],
    allow_pickle: AllowPickle = False,
    overwrite: Overwrite = False,
) -> None:
    """Add a patch's weight delta to its base model; refuses any other base (the delta records both hashes)."""
    from mudjacking.api import apply_delta_files

    with user_errors():
        summary = apply_delta_files(model, delta, out, allow_pickle=allow_pickle, overwrite=overwrite)
    console.print(f"patched model written to {safe_text(out)}; weights sha256 {summary['result_sha256']}")
