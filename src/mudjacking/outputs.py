"""Writing results so that nothing is lost: atomic output folders, JSON with provenance, weight deltas."""

from __future__ import annotations

import dataclasses
import json
import math
import os
import platform
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from importlib import metadata
from pathlib import Path
from typing import Any

import numpy as np
import torch
from safetensors.torch import save_file

from mudjacking.devices import is_main_process
from mudjacking.encoders.base import Encoder
from mudjacking.errors import OutputError


@contextmanager
def atomic_output_dir(target: str | Path, overwrite: bool = False) -> Iterator[Path]:
    """Yields a fresh temporary folder beside ``target``; renames it to ``target`` only if the block succeeds.

    An error or Ctrl-C inside the block leaves ``target`` as it was and removes the temporary folder.
    """
    target = Path(target)
    _check_target(target, overwrite)
    target.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{target.name}.", dir=target.parent))
    try:
        yield staging
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    if target.exists():
        retired = target.with_name(f".{target.name}.old-{os.getpid()}")
        os.replace(target, retired)
        os.replace(staging, target)
        shutil.rmtree(retired, ignore_errors=True)
    else:
        os.replace(staging, target)


def _check_target(target: Path, overwrite: bool) -> None:
    if target.exists() and (not target.is_dir() or any(target.iterdir())) and not overwrite:
        raise OutputError(f"{target}: already exists and is not empty; choose another --out or pass --overwrite")


@contextmanager
def main_process_output_dir(target: str | Path, overwrite: bool = False) -> Iterator[Path]:
    """:func:`atomic_output_dir` in the main process; in the others of an ``accelerate launch``, which compute the
    same results, a scratch folder that is thrown away, so ``target`` is written once. Every process checks
    ``target`` first, so all refuse alike and none waits for a process that has stopped."""
    if is_main_process():
        with atomic_output_dir(target, overwrite) as staging:
            yield staging
        return
    _check_target(Path(target), overwrite)
    with tempfile.TemporaryDirectory(prefix="mudjacking-rank-") as scratch:
        yield Path(scratch)


def to_jsonable(value: Any) -> Any:
    """Dataclasses, tensors, numpy values and paths -> plain JSON types (NaN -> null)."""
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {f.name: to_jsonable(getattr(value, f.name)) for f in dataclasses.fields(value)}
    if isinstance(value, dict):
        return {str(k): to_jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [to_jsonable(v) for v in value]
    if isinstance(value, torch.Tensor):
        return to_jsonable(value.tolist())
    if isinstance(value, np.generic):
        return to_jsonable(value.item())
    if isinstance(value, Path):
        return str(value)
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def atomic_write_text(path: str | Path, text: str) -> None:
    """Writes ``text`` (UTF-8) via a temporary file and a rename, so a reader never sees half a file."""
    path = Path(path)
    staging = path.with_name(f".{path.name}.tmp")
    staging.write_text(text, encoding="utf-8")
    os.replace(staging, path)


def write_json(path: str | Path, payload: Any) -> None:
    """Writes ``payload`` as indented JSON, atomically."""
    atomic_write_text(path, json.dumps(to_jsonable(payload), indent=2))


def environment_info() -> dict[str, Any]:
    """Package versions and machine facts saved into every result."""
    packages = {}
    for name in ("mudjacking", "torch", "transformers", "captum", "scikit-learn", "numpy", "safetensors"):
        try:
            packages[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            packages[name] = None
    return {
        "packages": packages,
        "python": platform.python_version(),
        "platform": platform.platform(),
        "cpu_threads": torch.get_num_threads(),
        "cuda": torch.cuda.is_available(),
    }


def save_weight_delta(original: Encoder, patched: Encoder, path: str | Path) -> int:
    """Writes ``patched − original`` for every changed tensor as safetensors; returns the number of tensors.

    Adding the delta to the original's weights gives the patched model: a small file to ship as the fix.
    """
    before = original.state_dict()
    delta = {}
    for name, value in patched.state_dict().items():
        if name in before and value.is_floating_point() and not torch.equal(value, before[name]):
            delta[name] = (value - before[name].to(value)).detach().cpu().contiguous()
    save_file(delta, str(path), metadata={"format": "mudjacking-weight-delta/1"})
    return len(delta)
