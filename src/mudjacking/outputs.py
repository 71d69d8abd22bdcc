"""Writing results so that nothing is lost: atomic output folders, JSON with provenance, weight deltas."""

from __future__ import annotations

import copy
import dataclasses
import hashlib
import json
import math
import os
import platform
import shutil
import tempfile
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from importlib import metadata
from pathlib import Path
from typing import Any

import numpy as np
import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import save_file

from mudjacking.devices import is_main_process
from mudjacking.encoders.base import Encoder
from mudjacking.errors import CheckFailed, ConfigError, DataError, OutputError
from mudjacking.lora import LORA_FORMAT, lora_metadata, merged_copy


@contextmanager
def atomic_output_dir(
    target: str | Path, overwrite: bool = False, inputs: Iterable[str | Path | None] = ()
) -> Iterator[Path]:
    """Yields a fresh temporary folder beside ``target``; renames it to ``target`` only if the block succeeds.

    An error or Ctrl-C inside the block leaves ``target`` as it was and removes the temporary folder. ``inputs``
    (the files the block reads) may not be ``target``, lie inside it or hold it: ``--out`` naming the model with
    ``--overwrite`` replaced the input model.
    """
    target = Path(target)
    _check_target(target, overwrite, inputs)
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


def _check_target(target: Path, overwrite: bool, inputs: Iterable[str | Path | None] = ()) -> None:
    resolved = target.resolve()
    for given in (Path(path) for path in inputs if path is not None):
        source = given.resolve()
        if source == resolved or source.is_relative_to(resolved) or resolved.is_relative_to(source):
            raise OutputError(
                f"{target}: the output would replace or sit inside the input {given}; choose another --out"
            )
    if target.exists() and (not target.is_dir() or any(target.iterdir())) and not overwrite:
        raise OutputError(f"{target}: already exists and is not empty; choose another --out or pass --overwrite")


@contextmanager
def main_process_output_dir(
    target: str | Path, overwrite: bool = False, inputs: Iterable[str | Path | None] = ()
) -> Iterator[Path]:
    """:func:`atomic_output_dir` in the main process; in the others of an ``accelerate launch``, which compute the
    same results, a scratch folder that is thrown away, so ``target`` is written once. Every process checks
    ``target`` first, so all refuse alike and none waits for a process that has stopped."""
    if is_main_process():
        with atomic_output_dir(target, overwrite, inputs) as staging:
            yield staging
        return
    _check_target(Path(target), overwrite, inputs)
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
        "cpu": cpu_info(),
        "cuda": torch.cuda.is_available(),
    }


# Variables that cap the instruction set PyTorch, oneDNN and MKL use (README: Experiments, on the CPU's effect).
ISA_CAPS = ("ATEN_CPU_CAPABILITY", "ONEDNN_MAX_CPU_ISA", "DNNL_MAX_CPU_ISA", "MKL_ENABLE_INSTRUCTIONS")


def cpu_info() -> dict[str, Any]:
    """The CPU and the vector instructions PyTorch's kernels use on it: the same seeds give other figures on an
    AVX-512 CPU than on an AVX2 one (the tiny models' patches differ by several points), so a result names both,
    and any variable that capped them."""
    return {
        "model": _cpu_model(),
        "capability": torch.backends.cpu.get_cpu_capability(),
        "caps": {name: os.environ[name] for name in ISA_CAPS if name in os.environ},
    }


def _cpu_model() -> str:
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as lines:
            found = next((line.split(":", 1)[1].strip() for line in lines if line.startswith("model name")), "")
    except OSError:
        found = ""
    return found or platform.processor() or platform.machine()


DELTA_FORMAT = "mudjacking-weight-delta/2"
REPLACED = "replace:"  # key prefix of a tensor stored whole: base + difference would not round back to it


def weights_sha256(encoder: Encoder) -> str:
    """SHA-256 of the encoder's weights (every state-dict tensor: name, dtype, shape and bytes, in name order), so
    the same weights hash alike whatever file format holds them."""
    digest = hashlib.sha256()
    for name, value in sorted(encoder.state_dict().items()):
        tensor = value.detach().cpu().contiguous()
        digest.update(f"{name}|{tensor.dtype}|{tuple(tensor.shape)}|".encode())
        digest.update(tensor.reshape(-1).view(torch.uint8).numpy().tobytes())
    return digest.hexdigest()


def save_weight_delta(original: Encoder, patched: Encoder, path: str | Path) -> int:
    """Writes ``patched − original`` for every changed tensor as safetensors; returns the number of tensors.

    Adding the delta to the original's weights gives the patched model bit for bit: a tensor whose difference would
    not round back to it (float addition is not exact) is stored whole, under ``replace:NAME``. The metadata holds the
    SHA-256 of both models' weights (:func:`weights_sha256`), so ``mudjacking apply`` refuses any other base.
    """
    before = original.state_dict()
    delta = {}
    for name, value in patched.state_dict().items():
        value = value.detach().cpu()  # a patch run on CUDA against an original on the CPU
        if name in before and value.is_floating_point() and not torch.equal(value, base := before[name].cpu()):
            difference = (value - base.to(value)).contiguous()
            exact = torch.equal(base.to(value) + difference, value)
            delta[name if exact else REPLACED + name] = difference if exact else value.contiguous()
    metadata = {
        "format": DELTA_FORMAT,
        "base_sha256": weights_sha256(original),
        "result_sha256": weights_sha256(patched),
    }
    save_file(delta, str(path), metadata=metadata)
    return len(delta)


def save_lora_delta(
    original: Encoder,
    patched: Encoder,
    adapter: dict[str, torch.Tensor],
    targets: list[str],
    rank: int,
    path: str | Path,
) -> int:
    """Writes a LoRA patch's adapters as safetensors, with the rank, the adapted layers and both models' hashes in
    the metadata (``mudjacking apply`` merges them into the base and checks the result's hash); returns the number
    of tensors."""
    metadata = {**lora_metadata(rank, targets), "base_sha256": weights_sha256(original),
                "result_sha256": weights_sha256(patched)}  # fmt: skip
    save_file(adapter, str(path), metadata=metadata)
    return len(adapter)


def apply_weight_delta(base: Encoder, path: str | Path) -> Encoder:
    """A copy of ``base`` with the delta at ``path`` added; ``base`` is untouched.

    Raises ``CheckFailed`` when ``base``'s weights are not the ones the delta was made from (both hashes in one
    line), or when the result's hash differs from the one recorded; ``DataError`` when the file is no delta of ours.
    """
    path = Path(path)
    try:
        with safe_open(str(path), framework="pt") as handle:
            metadata = handle.metadata() or {}
            tensors = {key: handle.get_tensor(key) for key in handle.keys()}
    except (OSError, SafetensorError) as error:
        raise DataError(
            f"{path}: not a readable safetensors file ({error}); pass the patch's patch_delta.safetensors"
        ) from error
    if metadata.get("format") not in (DELTA_FORMAT, LORA_FORMAT):
        raise DataError(
            f"{path}: format {metadata.get('format')!r}, not {DELTA_FORMAT!r} or {LORA_FORMAT!r} (a delta without "
            "the base's hash); patch again with this version to get one"
        )
    found = weights_sha256(base)
    if found != metadata["base_sha256"]:
        raise CheckFailed(
            f"{path} was made from a model whose weights hash to {metadata['base_sha256']}, and this base hashes to "
            f"{found}; apply it to the model it was made from"
        )
    if metadata["format"] == LORA_FORMAT:
        try:
            patched = merged_copy(base, tensors, metadata)
        except (ConfigError, KeyError, ValueError, RuntimeError) as error:
            raise DataError(f"{path}: the adapters do not fit this model ({error}); is it another model's?") from error
        return _checked_result(patched, path, metadata)
    patched = copy.deepcopy(base)
    state = patched.state_dict()
    for key, value in tensors.items():
        name = key.removeprefix(REPLACED)
        if name not in state:
            raise DataError(f"{path}: tensor {name!r} is not in the base model; is it the delta of another model?")
        state[name] = value.to(state[name]) if key.startswith(REPLACED) else state[name] + value.to(state[name])
    patched.load_state_dict(state)
    return _checked_result(patched, path, metadata)


def _checked_result(patched: Encoder, path: Path, metadata: dict[str, str]) -> Encoder:
    result = weights_sha256(patched)
    if result != metadata["result_sha256"]:
        raise CheckFailed(f"{path}: the result hashes to {result}, not the recorded {metadata['result_sha256']}")
    return patched
