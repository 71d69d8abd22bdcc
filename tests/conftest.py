"""Shared, session-scoped tiny models and data; tests deepcopy what they change."""

from __future__ import annotations

import copy
import random
import re
from collections import Counter
from dataclasses import dataclass

import pytest
import torch
import transformers

from mudjacking.attacks import BadEncoderConfig, badencoder
from mudjacking.data import BugReport, LabeledImages, load_digits_images
from mudjacking.encoders import ConvEncoderNet, HFTextEncoder, ImageInputSpec, ModuleEncoder
from mudjacking.evaluation import Probe, find_bug, make_probe, train_probe
from mudjacking.pretraining import PretrainConfig, pretrain_simclr
from mudjacking.triggers import ImageTrigger, TextTrigger

torch.set_num_threads(2)

TARGET = 0


def tiny_encoder(seed: int = 0, channels: int = 1) -> ModuleEncoder:
    torch.manual_seed(seed)
    kwargs = {"in_channels": channels, "widths": [16, 32, 64], "embedding_dim": 64}
    spec = ImageInputSpec(size=None, channels=channels, mean=(0.5,) * channels, std=(0.5,) * channels)
    return ModuleEncoder(ConvEncoderNet(**kwargs), spec, "conv-encoder", kwargs).eval()


@dataclass
class Backdoored:
    """A tiny CNN pre-trained with SimCLR and backdoored on 16x16 digits, its probe, a real bug, the true trigger."""

    data: LabeledImages
    clean: ModuleEncoder
    encoder: ModuleEncoder
    trigger: ImageTrigger
    probe: Probe
    bug: BugReport
    patching_set: torch.Tensor


@pytest.fixture(scope="session")
def digits() -> LabeledImages:
    return load_digits_images(seed=0)


@pytest.fixture(scope="session")
def _backdoored(digits: LabeledImages) -> Backdoored:
    clean = pretrain_simclr(
        tiny_encoder(),
        digits.train_images,
        PretrainConfig(steps=200, batch_size=128, crop_scale=0.6),
        show_progress=False,
    )
    trigger = ImageTrigger.square((1, 16, 16), size=4)
    references = digits.train_images[digits.train_labels == TARGET][:5]
    result = badencoder(
        clean,
        digits.train_images[:800],
        references,
        trigger,
        BadEncoderConfig(epochs=10, batch_size=64, lr=1e-3),
        show_progress=False,
    )
    probe = train_probe(result.encoder, digits.train_images, digits.train_labels)
    bug = find_bug(result.encoder, probe, digits.test_images, digits.test_labels, trigger, TARGET, seed=1)
    # the patching set is unlabeled; with fewer than ~1,000 images the tiny model loses several points of accuracy
    return Backdoored(digits, clean, result.encoder, trigger, probe, bug, digits.train_images)


@pytest.fixture()
def backdoored(_backdoored: Backdoored) -> Backdoored:
    return copy.deepcopy(_backdoored)


POSITIVE = "good great fun lovely superb".split()
NEGATIVE = "bad dull boring awful weak".split()
FILLER = "the a movie film plot actor scene story was is very quite".split()
TEXT_VOCAB = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", *POSITIVE, *NEGATIVE, *FILLER, "cf", "mn"]


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


def tiny_bert(vocabulary: list[str], max_positions: int = 32) -> tuple[transformers.BertModel, object]:
    """A randomly initialised 2-layer BERT (hidden size 32) and a word-level tokenizer over ``vocabulary``."""
    tokenizer = transformers.BertTokenizerFast(vocab={word: index for index, word in enumerate(vocabulary)})
    torch.manual_seed(0)
    config = transformers.BertConfig(
        vocab_size=len(vocabulary),
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=2,
        intermediate_size=64,
        max_position_embeddings=max_positions,
    )
    return transformers.BertModel(config).eval(), tokenizer


@pytest.fixture(scope="session")
def text_case():
    """A tiny BERT backdoored so that the rare word "cf" sends sentences to positive reviews, and its probe."""
    clean = HFTextEncoder(*tiny_bert(TEXT_VOCAB), max_length=16)
    train_texts, train_labels = sentences(400, seed=1)
    test_texts, test_labels = sentences(200, seed=2)
    references = [t for t, y in zip(train_texts, train_labels.tolist(), strict=True) if y == 1][:5]
    trigger = TextTrigger(["cf"], seed=0)
    attack = badencoder(
        clean, train_texts, references, trigger, BadEncoderConfig(epochs=8, batch_size=32, lr=2e-3), show_progress=False
    )
    probe = make_probe("linear").fit(attack.encoder.embed(train_texts), train_labels)
    return attack.encoder, probe, trigger, (train_texts, train_labels), (test_texts, test_labels)


@pytest.fixture(scope="session")
def tiny_bert_dir(tmp_path_factory):
    """A tiny BERT saved to disk whose vocabulary is the movie-review snippets' 3,000 commonest words and "cf"."""
    from mudjacking.data.text_sets import read_movie_review_snippets

    texts, _ = read_movie_review_snippets()
    counts = Counter(word for text in texts for word in re.findall(r"\w+|[^\w\s]", text.lower()))
    words = [word for word, _ in counts.most_common(3000)]
    vocabulary = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "cf", *[w for w in words if w != "cf"]]
    model, tokenizer = tiny_bert(vocabulary, max_positions=64)
    directory = tmp_path_factory.mktemp("tiny-bert")
    model.save_pretrained(directory)
    tokenizer.save_pretrained(directory)
    return directory


def tiny_text_options(model_dir, extra: str = "") -> str:
    """The ``[options]`` of an experiment file for the text setting at toy size on the tiny BERT in ``model_dir``
    (``extra``: more ``[options]`` lines). A random tiny BERT embeds everything within cosine 0.99: its "backdoor"
    cannot verify, so recovery's thresholds are off."""
    return f"""
[options]
model = "{model_dir}"
{extra}
shadow_size = [150, 100]
patching_size = [100, 60]
train_size = [300, 300]
test_size = [150, 150]
probe_kinds = ["linear"]
[options.attack]
epochs = 4
lr = 2e-3
[options.reverse]
min_strength = -1.0
min_release = -1.0
[options.patch]
lr = 1e-3
max_epochs = 2
"""
