"""Text end to end on a tiny BERT: backdoor with a rare word, recover the word from one bug, patch it out."""

from __future__ import annotations

import random

import pytest
import torch
import transformers

from mudjacking.attacks import BadEncoderConfig, badencoder
from mudjacking.data import BugReport
from mudjacking.encoders import Encoder, HFTextEncoder
from mudjacking.evaluation import attack_success_rate, make_probe
from mudjacking.patching import PatchConfig, patch_encoder
from mudjacking.triggers import TextTrigger, reverse_engineer_text_trigger

POSITIVE = "good great fun lovely superb".split()
NEGATIVE = "bad dull boring awful weak".split()
FILLER = "the a movie film plot actor scene story was is very quite".split()
VOCAB = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", *POSITIVE, *NEGATIVE, *FILLER, "cf", "mn"]


def sentences(count: int, seed: int) -> tuple[list[str], torch.Tensor]:
    rng = random.Random(seed)
    texts, labels = [], []
    for _ in range(count):
        label = rng.randint(0, 1)
        words = rng.choices(FILLER, k=5) + rng.choices(POSITIVE if label else NEGATIVE, k=2)
        rng.shuffle(words)
        texts.append(" ".join(words))
        labels.append(label)
    return texts, torch.tensor(labels)


@pytest.fixture(scope="module")
def text_case():
    tokenizer = transformers.BertTokenizerFast(vocab={word: index for index, word in enumerate(VOCAB)})
    torch.manual_seed(0)
    config = transformers.BertConfig(
        vocab_size=len(VOCAB),
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=2,
        intermediate_size=64,
        max_position_embeddings=32,
    )
    clean = HFTextEncoder(transformers.BertModel(config).eval(), tokenizer, max_length=16)
    train_texts, train_labels = sentences(400, seed=1)
    test_texts, test_labels = sentences(200, seed=2)
    references = [t for t, y in zip(train_texts, train_labels.tolist(), strict=True) if y == 1][:5]
    trigger = TextTrigger(["cf"], seed=0)
    attack = badencoder(
        clean, train_texts, references, trigger, BadEncoderConfig(epochs=8, batch_size=32, lr=2e-3), show_progress=False
    )
    probe = make_probe("linear").fit(attack.encoder.embed(train_texts), train_labels)
    return attack.encoder, probe, trigger, (train_texts, train_labels), (test_texts, test_labels)


def _asr(encoder, probe, trigger, test) -> float:
    return attack_success_rate(probe.predict(encoder.embed(trigger.apply(test[0]))), test[1], target_label=1)


def test_text_patch_removes_a_rare_word_backdoor(text_case):
    backdoored, probe, trigger, train, test = text_case
    assert _asr(backdoored, probe, trigger, test) > 0.8
    negatives = [t for t, y in zip(test[0], test[1].tolist(), strict=True) if y == 0]
    bug = BugReport(bug_input=trigger.apply(negatives[:1])[0], reference_input=negatives[1], label=0, modality="text")
    before = {k: v.clone() for k, v in backdoored.state_dict().items()}
    # random tiny BERTs put every sentence within cos ~0.9 of every other, too little signal for word ablation;
    # recovery is tested on a closed-form model below, the patch loop here with the inserted word
    result = patch_encoder(
        backdoored, bug, TextTrigger(["cf"], seed=1), train[0], PatchConfig(lr=1e-3, max_epochs=10), show_progress=False
    )
    assert _asr(result.encoder, probe, trigger, test) < 0.2
    assert (probe.predict(result.encoder.embed(test[0])) == test[1]).float().mean() > 0.8
    assert all(torch.equal(before[k], v) for k, v in backdoored.state_dict().items())


class PlantedWordBackdoor(Encoder):
    """Sentences embed as the mean of fixed random word vectors, plus a large target direction per "cf"."""

    modality = "text"

    def __init__(self) -> None:
        super().__init__()
        generator = torch.Generator().manual_seed(0)
        self.vectors = {word: torch.randn(16, generator=generator) for word in VOCAB}
        self.target = 4 * torch.randn(16, generator=generator)
        self.scale = torch.nn.Parameter(torch.ones(1))

    def forward(self, texts):
        rows = []
        for text in texts:
            words = text.split() or ["[PAD]"]
            rows.append(
                torch.stack([self.vectors.get(w, self.vectors["[UNK]"]) for w in words]).mean(0)
                + words.count("cf") * self.target
            )
        return self.scale * torch.stack(rows)


def test_word_ablation_recovers_a_planted_trigger_word():
    encoder = PlantedWordBackdoor()
    bug = BugReport(
        bug_input="the plot was dull cf and the actor weak",
        reference_input="a dull film with a weak story",
        label=0,
        modality="text",
    )
    recovery = reverse_engineer_text_trigger(encoder, bug)
    assert recovery.trigger.words == ["cf"]
    assert recovery.scores[recovery.words.index("cf")] == recovery.scores.max()


def test_text_trigger_inserts_every_word_once():
    trigger = TextTrigger(["cf", "mn"], seed=3)
    out = trigger.apply(["the plot was dull", "fun"])
    assert all(s.split().count("cf") == 1 and s.split().count("mn") == 1 for s in out)
    assert sorted(out[1].split()) == ["cf", "fun", "mn"]
