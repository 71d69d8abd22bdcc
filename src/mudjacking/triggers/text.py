"""Text triggers: rare words (``cf``, ``mn``, ``bb``…) inserted into sentences, and their recovery from one bug.

Recovery (Mudjacking §4.2 for text):
1. Score every word of ``x_b`` by ablation (captum ``FeatureAblation``, one feature per word): how much dropping it
   changes ``1 − cos(h(x_b), h(x_r))``. The trigger word stands out by size; its sign depends on where the
   attacker's target sits relative to ``x_r``, so k-means sees the raw scores.
2. Cluster the word scores with k-means (k = 2).
3. The minority cluster's words are the trigger; ``x ⊕ t`` inserts them at random positions of clean sentences.
"""

from __future__ import annotations

import json
import random
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import torch
import torch.nn.functional as F
from captum.attr import FeatureAblation
from torch import Tensor

from mudjacking.data.bug_report import BugReport
from mudjacking.data.images import DataError
from mudjacking.encoders.base import Encoder
from mudjacking.triggers.reverse import split_scores


@dataclass
class TextTrigger:
    """Args:
    words: the trigger words, inserted in this order-independent set at random positions.
    seed: seeds the insertion positions.
    """

    words: list[str]
    seed: int = 0
    _rng: random.Random = field(init=False, repr=False)

    def __post_init__(self) -> None:
        self.words = [w for w in self.words if w.strip()]
        if not self.words:
            raise ValueError("a text trigger needs at least one non-empty word")
        self._rng = random.Random(self.seed)

    def apply(self, sentences: Sequence[str]) -> list[str]:
        """``x ⊕ t``: each sentence with every trigger word inserted at a random word boundary. The positions are
        a function of the seed and the sentence, so every model is scored on the same triggered sentences."""
        return [self._insert(sentence, random.Random(f"{self.seed}\x00{sentence}")) for sentence in sentences]

    def stamp(self, sentences: Sequence[str], grow: int = 0) -> list[str]:
        """The patch loop's ``x ⊕ t``: fresh random positions on every call, so training sees the trigger
        anywhere (``grow`` is an image-only option)."""
        return [self._insert(sentence, self._rng) for sentence in sentences]

    def _insert(self, sentence: str, rng: random.Random) -> str:
        tokens = sentence.split()
        for word in self.words:
            tokens.insert(rng.randint(0, len(tokens)), word)
        return " ".join(tokens)

    def remove(self, sentences: Sequence[str]) -> list[str]:
        """``x ⊖ t``: each sentence with every occurrence of the trigger words taken out."""
        words = set(self.words)
        return [" ".join(token for token in sentence.split() if token not in words) for sentence in sentences]

    def overlap(self, other: TextTrigger) -> float:
        """Jaccard overlap of the two word sets."""
        a, b = set(self.words), set(other.words)
        return len(a & b) / len(a | b)

    def save(self, path: str | Path) -> None:
        Path(path).write_text(json.dumps({"format": "mudjacking-text-trigger/1", "words": self.words}, indent=2))

    @classmethod
    def load(cls, path: str | Path) -> TextTrigger:
        path = Path(path)
        try:
            spec = json.loads(path.read_text(encoding="utf-8"))
            return cls(list(spec["words"]))
        except (OSError, UnicodeDecodeError, json.JSONDecodeError, KeyError, TypeError, ValueError) as error:
            raise DataError(f"{path}: not a text trigger ({error}); expected JSON with a 'words' list") from error


@dataclass
class TextTriggerRecovery:
    """Recovered trigger words, the per-word scores of ``x_b`` and the threshold between the clusters."""

    trigger: TextTrigger
    words: list[str]
    scores: Tensor
    threshold: float
    bug_distance: float


def word_ablation_scores(encoder: Encoder, bug: BugReport, batch_size: int = 64) -> tuple[list[str], Tensor, float]:
    """Per-word scores of ``x_b``: ``d(x_b) − d(x_b without the word)`` with ``d = 1 − cos(h(·), h(x_r))``."""
    words = str(bug.bug_input).split()
    with torch.no_grad():
        reference = F.normalize(encoder([str(bug.reference_input)]), dim=-1)

        def distance(presence: Tensor) -> Tensor:
            sentences = [
                " ".join(w for w, keep in zip(words, row.tolist(), strict=True) if keep > 0.5) for row in presence
            ]
            return 1 - (F.normalize(encoder(sentences), dim=-1) * reference).sum(-1)

        present = torch.ones(1, len(words))
        scores = FeatureAblation(distance).attribute(present, baselines=0.0, perturbations_per_eval=batch_size)
        base = float(distance(present).item())
    return words, scores[0], base


def reverse_engineer_text_trigger(encoder: Encoder, bug: BugReport, seed: int = 0) -> TextTriggerRecovery:
    """Recovers the trigger words behind a text ``bug`` from the (backdoored) text ``encoder``."""
    encoder.eval()
    words, scores, distance = word_ablation_scores(encoder, bug)
    if len(words) < 2:
        raise ValueError("x_b has fewer than two words; there is nothing to separate the trigger from")
    mask, threshold = split_scores(scores, seed)
    chosen = [word for word, keep in zip(words, mask.tolist(), strict=True) if keep > 0.5]
    return TextTriggerRecovery(TextTrigger(list(dict.fromkeys(chosen)), seed), words, scores, threshold, distance)
