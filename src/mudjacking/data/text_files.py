"""Reading a user's sentences from files: the text counterpart of ``images.load_image_folder`` and
``images.load_labeled_images``.

Unlabeled sets (patching set, shadow set, references): ``.txt`` with one sentence per line, or ``.jsonl`` with one
``{"text": ...}`` object per line. Labeled sets (downstream train/test): ``.jsonl`` with ``{"text": ..., "label": N}``
per line, or ``.tsv`` with ``label<TAB>text`` per line. Files must be UTF-8; blank lines are skipped.
"""

from __future__ import annotations

import json
from pathlib import Path

import torch
from torch import Tensor

from mudjacking.data.images import DataError

UNLABELED_SUFFIXES = (".txt", ".jsonl")
LABELED_SUFFIXES = (".jsonl", ".tsv")


def _lines(path: Path, suffixes: tuple[str, ...]) -> list[tuple[int, str]]:
    if not path.is_file():
        raise DataError(f"{path}: file not found; pass a {' or '.join(suffixes)} file")
    if path.suffix.lower() not in suffixes:
        raise DataError(f"{path}: unsupported file type; use {' or '.join(suffixes)} (see the README's formats)")
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError as error:
        raise DataError(f"{path}: not UTF-8 (byte {error.start}); re-save the file as UTF-8") from error
    return [(number, line) for number, line in enumerate(text.splitlines(), start=1) if line.strip()]


def _json_line(path: Path, number: int, line: str) -> dict:
    try:
        record = json.loads(line)
    except json.JSONDecodeError as error:
        raise DataError(f"{path}: line {number} is not JSON ({error.msg}); write one object per line") from error
    if not isinstance(record, dict) or not isinstance(record.get("text"), str) or not record["text"].strip():
        raise DataError(f'{path}: line {number} needs a non-empty "text" string')
    return record


def load_sentences(path: str | Path, limit: int | None = None) -> list[str]:
    """Unlabeled sentences from a ``.txt`` (one per line) or ``.jsonl`` (``{"text": ...}``) file."""
    path = Path(path)
    lines = _lines(path, UNLABELED_SUFFIXES)
    if path.suffix.lower() == ".jsonl":
        sentences = [_json_line(path, number, line)["text"].strip() for number, line in lines]
    else:
        sentences = [line.strip() for _, line in lines]
    if not sentences:
        raise DataError(f"{path}: holds no sentences; write one per line")
    return sentences[:limit]


def load_labeled_texts(path: str | Path, limit: int | None = None) -> tuple[list[str], Tensor, list[str]]:
    """A labeled text set from ``.jsonl`` (``{"text", "label"}``) or ``.tsv`` (``label<TAB>text``).

    Returns:
        sentences, labels ``[N]`` (int64), class names (index = label, as strings).
    """
    path = Path(path)
    texts, labels = [], []
    for number, line in _lines(path, LABELED_SUFFIXES):
        if path.suffix.lower() == ".jsonl":
            record = _json_line(path, number, line)
            text, label = record["text"], record.get("label")
        else:
            label, _, text = line.partition("\t")
        try:
            label = int(label)
        except (TypeError, ValueError):
            raise DataError(f"{path}: line {number} has no integer label; labels are class indices 0..C-1") from None
        if label < 0 or not text.strip():
            raise DataError(f"{path}: line {number} needs a label >= 0 and non-empty text")
        texts.append(text.strip())
        labels.append(label)
    if not texts:
        raise DataError(f"{path}: holds no labeled sentences")
    tensor = torch.tensor(labels[:limit])
    return texts[:limit], tensor, [str(i) for i in range(int(tensor.max()) + 1)]
