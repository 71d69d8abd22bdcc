"""A user's input files, read the way their model's modality reads them: one loader per modality, registered here,
so code above the data layer names a modality and never branches on it."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from torch import Tensor

from mudjacking.data.images import load_image_folder, load_labeled_images
from mudjacking.data.text_files import load_labeled_texts, load_sentences
from mudjacking.errors import DataError

Inputs = Tensor | list[str]

UNLABELED: dict[str, Callable[[str | Path], Inputs]] = {"image": load_image_folder, "text": load_sentences}
LABELED: dict[str, Callable[[str | Path], tuple[Inputs, Tensor, list[str]]]] = {
    "image": load_labeled_images,
    "text": load_labeled_texts,
}


def _loader(registry: dict[str, Callable], modality: str, path: str | Path) -> Callable:
    if modality not in registry:
        raise DataError(f"{path}: no loader for {modality!r} inputs; known: {', '.join(sorted(registry))}")
    return registry[modality]


def load_inputs(path: str | Path, modality: str) -> Inputs:
    """A user's unlabeled set: a folder (or npz) of images, or a file of sentences, as the model reads."""
    return _loader(UNLABELED, modality, path)(path)


def load_labeled(path: str | Path, modality: str) -> tuple[Inputs, Tensor]:
    """A user's labeled set: images (class folders or npz x, y) or sentences (jsonl or tsv)."""
    inputs, labels, _ = _loader(LABELED, modality, path)(path)
    return inputs, labels
