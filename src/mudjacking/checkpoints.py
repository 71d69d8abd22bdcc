"""Checkpoints of a running patch, so that an interrupted ``mudjacking patch`` continues with ``--resume``.

A checkpoint is a folder beside ``--out`` (``.OUT.checkpoint``), replaced whole after every epoch: the patched
weights, the optimiser's tensors and the random-number state as safetensors; the epoch, the history, the schedule and
the fingerprint of what was patched as JSON. No pickle. It is removed once ``--out`` is written. Resuming replays
the rest of the run as the uninterrupted run would have gone (same seed, same order, same weights)."""

from __future__ import annotations

import hashlib
import json
import shutil
from dataclasses import dataclass, fields, is_dataclass
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file, save_file
from torch import Tensor

from mudjacking.errors import ConfigError
from mudjacking.outputs import atomic_output_dir, atomic_write_text

STATE_FILE, WEIGHTS_FILE, TENSORS_FILE = "state.json", "weights.safetensors", "optimizer.safetensors"
CLOSEST_FILE = "closest.safetensors"  # the weights of an earlier pass that came closer to the goals than the last


def checkpoint_folder(out: str | Path) -> Path:
    """Where the checkpoints of a patch into ``out`` go: beside it, hidden, outside the folder written at the end."""
    out = Path(out)
    return out.with_name(f".{out.name}.checkpoint")


def fingerprint(*parts: Any) -> str:
    """SHA-256 of everything a patch depends on (tensors by their bytes, dataclasses field by field): a checkpoint
    resumes only the run that wrote it."""
    digest = hashlib.sha256()
    _feed(digest, parts)
    return digest.hexdigest()


def _feed(digest: Any, value: Any) -> None:
    if isinstance(value, Tensor):
        tensor = value.detach().cpu().contiguous().reshape(-1)
        digest.update(f"{value.dtype}{tuple(value.shape)}".encode())
        digest.update(tensor.view(torch.uint8).numpy().tobytes() if tensor.numel() else b"")
    elif isinstance(value, dict):
        for key in sorted(value, key=str):
            _feed(digest, (str(key), value[key]))
    elif isinstance(value, (list, tuple)):
        digest.update(f"[{len(value)}".encode())
        for item in value:
            _feed(digest, item)
    elif is_dataclass(value) and not isinstance(value, type):
        _feed(digest, (type(value).__name__, {f.name: getattr(value, f.name) for f in fields(value)}))
    else:
        digest.update(repr(value).encode())


def _read_state(folder: Path, expected: str, other: str) -> dict[str, Any]:
    """The checkpoint's JSON state; refused when it was written for something else (``other`` says what)."""
    state = json.loads((folder / STATE_FILE).read_text())
    if state.get("fingerprint") != expected:
        raise ConfigError(
            f"{folder}: this checkpoint is of {other}; give the same inputs and options to --resume, or delete "
            "the folder"
        )
    return state


@dataclass
class PatchCheckpoints:
    """The checkpoints of one patch: ``folder`` and the ``fingerprint`` of its inputs and settings."""

    folder: Path
    fingerprint: str

    def save(
        self,
        weights: dict[str, Tensor],
        optimizer: dict[str, Any],
        schedule: dict[str, Any],
        state: dict,
        closest: dict[str, Tensor] | None = None,
    ) -> None:
        """Writes one checkpoint into a fresh folder and swaps it in whole (an interruption keeps the last one);
        ``closest``: the weights of an earlier pass the run may hand back instead of its last."""
        tensors, plain = _split_optimizer(optimizer)
        tensors["rng.torch"] = torch.get_rng_state()
        if torch.cuda.is_available():
            tensors["rng.cuda"] = torch.cuda.get_rng_state()
        with atomic_output_dir(self.folder, overwrite=True) as staging:
            save_file({k: v.detach().cpu().contiguous() for k, v in weights.items()}, str(staging / WEIGHTS_FILE))
            save_file(tensors, str(staging / TENSORS_FILE))
            if closest is not None:
                save_file({k: v.detach().cpu().contiguous() for k, v in closest.items()}, str(staging / CLOSEST_FILE))
            payload = {"fingerprint": self.fingerprint, "optimizer": plain, "schedule": schedule, **state}
            (staging / STATE_FILE).write_text(json.dumps(payload))

    def load(self) -> tuple[dict[str, Tensor], dict[str, Any], dict[str, Any], dict[str, Any]] | None:
        """(weights, optimiser state, schedule state, the rest) of the last checkpoint, with the random-number state
        restored; ``None`` when there is none. The rest holds ``closest_weights`` when an earlier pass's were kept.
        A checkpoint of other inputs or settings is refused."""
        if not (self.folder / STATE_FILE).is_file():
            return None
        state = _read_state(self.folder, self.fingerprint, "another patch (other model, reports, data or options)")
        tensors = load_file(str(self.folder / TENSORS_FILE))
        torch.set_rng_state(tensors.pop("rng.torch"))
        cuda = tensors.pop("rng.cuda", None)
        if cuda is not None and torch.cuda.is_available():
            torch.cuda.set_rng_state(cuda)
        optimizer = _joined_optimizer(tensors, state.pop("optimizer"))
        if (self.folder / CLOSEST_FILE).is_file():
            state["closest_weights"] = load_file(str(self.folder / CLOSEST_FILE))
        return load_file(str(self.folder / WEIGHTS_FILE)), optimizer, state.pop("schedule"), state

    def remove(self) -> None:
        shutil.rmtree(self.folder, ignore_errors=True)


def _split_optimizer(state: dict[str, Any]) -> tuple[dict[str, Tensor], dict[str, Any]]:
    """An optimiser's ``state_dict`` as safetensors-ready tensors and JSON-ready rest."""
    tensors, plain = {}, {"param_groups": state["param_groups"], "state": {}}
    for index, values in state["state"].items():
        plain["state"][str(index)] = {}
        for name, value in values.items():
            if isinstance(value, Tensor):
                tensors[f"state.{index}.{name}"] = value.detach().cpu().contiguous()
            else:
                plain["state"][str(index)][name] = value
    return tensors, plain


def _joined_optimizer(tensors: dict[str, Tensor], plain: dict[str, Any]) -> dict[str, Any]:
    state: dict[int, dict[str, Any]] = {int(index): dict(values) for index, values in plain["state"].items()}
    for key, tensor in tensors.items():
        _, index, name = key.split(".", 2)
        state[int(index)][name] = tensor
    return {"state": state, "param_groups": plain["param_groups"]}


@dataclass
class UnitCheckpoints:
    """Finished units of a long run (an experiment's seeds): each unit's folder and its JSON record, kept in
    ``folder`` as they finish, so a resumed run takes them instead of running them again."""

    folder: Path
    fingerprint: str

    def load(self, unit: str, into: Path) -> dict[str, Any] | None:
        """The record of ``unit`` with its folder copied to ``into``; ``None`` when it did not finish."""
        record = self._record(unit)
        if not record.is_file():
            return None
        _read_state(self.folder, self.fingerprint, "another experiment file")
        shutil.copytree(self.folder / "folders" / unit, into, dirs_exist_ok=True)
        return json.loads(record.read_text())

    def keep(self, unit: str, folder: Path, record: dict[str, Any]) -> None:
        """Keeps a finished unit: its folder first, then its record (JSON-ready; a unit counts as finished once the
        record is there)."""
        (self.folder / "units").mkdir(parents=True, exist_ok=True)
        (self.folder / STATE_FILE).write_text(json.dumps({"fingerprint": self.fingerprint}))
        target = self.folder / "folders" / unit
        shutil.rmtree(target, ignore_errors=True)
        shutil.copytree(folder, target)
        atomic_write_text(self._record(unit), json.dumps(record))

    def _record(self, unit: str) -> Path:
        return self.folder / "units" / f"{unit.replace('/', '__')}.json"

    def remove(self) -> None:
        shutil.rmtree(self.folder, ignore_errors=True)
