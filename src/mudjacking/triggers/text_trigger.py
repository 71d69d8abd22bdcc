"""A text trigger: rare words or phrases inserted into sentences.

Each entry of ``words`` is one unit: a word (``cf``) or a phrase (``I watched this 3D movie``). ``x ⊕ t`` inserts
every unit, as one contiguous span, at a random word boundary; ``x ⊖ t`` removes every occurrence of every unit.
File: JSON ``{"format": "mudjacking-text-trigger/1", "words": ["cf"]}``; an entry holding spaces is a phrase.
"""

from __future__ import annotations

import json
import random
import string
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from mudjacking.data.images import DataError
from mudjacking.errors import ConfigError


@dataclass
class TextTrigger:
    """Args:
    words: the trigger's units (words or phrases), each inserted as one span at a random position.
    seed: seeds the insertion positions.
    context: the words just before and just after a one-unit trigger where it was found (in ``x_b``), so that
        training stamps can grow it by a word or two at either end (see :meth:`stamp`).
    """

    words: list[str]
    seed: int = 0
    context: tuple[list[str], list[str]] = ((), ())  # type: ignore[assignment]
    _rng: random.Random = field(init=False, repr=False)

    def __post_init__(self) -> None:
        self.words = [" ".join(w.split()) for w in self.words if w.strip()]
        if not self.words:
            raise ConfigError("a text trigger needs at least one non-empty word")
        self._rng = random.Random(self.seed)

    @property
    def tokens(self) -> list[str]:
        """Every word of every unit, in order (a phrase contributes each of its words)."""
        return [token for unit in self.words for token in unit.split()]

    def apply(self, sentences: Sequence[str]) -> list[str]:
        """``x ⊕ t``: each sentence with every unit inserted at a random word boundary. The positions are a
        function of the seed and the sentence, so every model is scored on the same triggered sentences."""
        return [self._insert(sentence, random.Random(f"{self.seed}\x00{sentence}")) for sentence in sentences]

    def stamp(self, sentences: Sequence[str], grow: int = 0) -> list[str]:
        """The patch loop's ``x ⊕ t``: fresh random positions on every call, so training sees the trigger anywhere;
        a one-unit trigger with ``context`` is grown by 0..``grow`` of its neighbouring words at each end, so a
        recovered phrase that misses a word of the real one still teaches the model to ignore all of it (as image
        triggers grow by a few pixels)."""
        return [self._insert(sentence, self._rng, grow) for sentence in sentences]

    def _insert(self, sentence: str, rng: random.Random, grow: int = 0) -> str:
        tokens = sentence.split()
        left, right = self.context
        for unit in self.words:
            words = unit.split()
            if grow and len(self.words) == 1:
                before, after = rng.randint(0, min(grow, len(left))), rng.randint(0, min(grow, len(right)))
                words = [*list(left)[len(left) - before :], *words, *list(right)[:after]]
            position = rng.randint(0, len(tokens))
            tokens[position:position] = words
        return " ".join(tokens)

    def remove(self, sentences: Sequence[str]) -> list[str]:
        """``x ⊖ t``: each sentence with every occurrence of every unit (as a contiguous span) taken out."""
        units = sorted((unit.split() for unit in self.words), key=len, reverse=True)
        cleaned = []
        for sentence in sentences:
            tokens, kept, index = sentence.split(), [], 0
            while index < len(tokens):
                match = next((u for u in units if tokens[index : index + len(u)] == u), None)
                if match is None:
                    kept.append(tokens[index])
                    index += 1
                else:
                    index += len(match)
            cleaned.append(" ".join(kept))
        return cleaned

    def filled_from(self, inputs: Sequence[str]) -> TextTrigger:
        """Removing words needs no fill: this trigger as it is."""
        return self

    def cut_from(self, donor: str, index: int = 0) -> TextTrigger | None:
        """Spans of an ordinary sentence as long as this trigger's units, drawn by its seed and ``index``: what
        inserting any such words does, whatever the backdoor; ``None`` when ``donor`` is shorter than a unit."""
        words = donor.split()
        lengths = [len(unit.split()) for unit in self.words]
        if len(words) < max(lengths):
            return None
        rng = random.Random(f"{self.seed}\x00{index}")
        units = []
        for length in lengths:
            start = rng.randint(0, len(words) - length)
            units.append(" ".join(words[start : start + length]))
        return TextTrigger(units, seed=self.seed)

    def widened(self) -> TextTrigger:
        """Words shaped like the trigger's and unlike any real one (:data:`SIBLINGS` per unit, each word's letters
        and digits redrawn at random): a backdoor taught on a rare word answers other rare words too, and a patch
        that taught the model to ignore only the trigger found leaves it answering them. On BadEncoder-taught MiniLM
        with trigger ``cf``, inserting ``qz`` flipped 26% of the sentiment classifier's reviews after a patch of
        ``cf``'s embedding row that met every other goal (``benchmarks/text_flip_floor.py``)."""
        rng = random.Random(f"{self.seed}\x00siblings\x00{'|'.join(self.words)}")
        units = [unit for _ in range(SIBLINGS) for unit in self.words]
        siblings = [" ".join(_redrawn(word, rng) for word in unit.split()) for unit in units]
        return TextTrigger(siblings, seed=self.seed)

    def placements(self) -> list[TextTrigger]:
        """Itself: its insertion is already random."""
        return [self]

    def matches(self, other: object) -> bool:
        """The same trigger found again (half or more of the words shared): one trigger to neutralise."""
        return isinstance(other, TextTrigger) and self.overlap(other) >= 0.5

    def overlap(self, other: TextTrigger) -> float:
        """Jaccard overlap of the two triggers' word sets (a phrase counts each of its words)."""
        a, b = set(self.tokens), set(other.tokens)
        return len(a & b) / len(a | b)

    def describe(self) -> dict[str, object]:
        """What a report says about this trigger."""
        return {"trigger_words": self.words}

    def vocabulary(self) -> list[str]:
        """The words whose token embedding rows a trigger-rows patch retrains."""
        return self.words

    def write(self, directory: Path, stem: str = "trigger") -> list[str]:
        """Writes ``stem.json``; returns its name."""
        self.save(directory / f"{stem}.json")
        return [f"{stem}.json"]

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


SIBLINGS = 3
"""Sibling units per trigger unit in :meth:`TextTrigger.widened` (inserted together: one sibling the backdoor happens
not to answer does not hide the others)."""


def _redrawn(word: str, rng: random.Random) -> str:
    """``word`` with each lower-case letter, upper-case letter and digit replaced by a random one of its kind (never
    the word itself)."""
    pools = {str.islower: string.ascii_lowercase, str.isupper: string.ascii_uppercase, str.isdigit: string.digits}
    while True:
        drawn = "".join(next((rng.choice(pool) for test, pool in pools.items() if test(c)), c) for c in word)
        if drawn != word or not any(c.isalnum() for c in word):
            return drawn
