"""File-to-file workflows behind the CLI: load inputs, call the library, write every output atomically.

Each function takes paths and typed configs and returns the report it wrote, so the CLI stays a thin parser and
the same runs can be scripted from Python.
"""

from __future__ import annotations

import time
from dataclasses import asdict
from pathlib import Path
from typing import Any

from torch import Tensor

from mudjacking.attacks.badencoder import BadEncoderConfig, badencoder
from mudjacking.data.bug_report import BugReport, load_bug_report
from mudjacking.data.images import load_image_folder, load_labeled_images
from mudjacking.encoders.base import Encoder, load_encoder
from mudjacking.evaluation.downstream import embed_task, score_probe
from mudjacking.evaluation.probes import make_probe
from mudjacking.outputs import atomic_output_dir, environment_info, save_weight_delta, write_json
from mudjacking.patching import PatchConfig, PatchResult, patch_encoder
from mudjacking.report.plots import plot_before_after, plot_trigger_heatmap
from mudjacking.triggers.reverse import ReverseConfig, TriggerRecovery, reverse_engineer_trigger
from mudjacking.triggers.trigger import ImageTrigger

MODEL_DIR = "model"


def write_trigger_outputs(
    directory: Path, recovery: TriggerRecovery, bug: BugReport, true_trigger: ImageTrigger | None = None
) -> dict[str, Any]:
    """Writes the recovered trigger (ours and the authors' npz) and its heat map; returns its summary."""
    recovery.trigger.save(directory / "trigger.npz")
    recovery.trigger.save(directory / "trigger_authors_format.npz", authors_format=True)
    plot_trigger_heatmap(
        bug.bug_input,
        recovery.attribution,
        recovery.trigger.mask,
        directory / "trigger_heatmap.png",
        true_mask=None if true_trigger is None else true_trigger.mask,
        reference_input=bug.reference_input,
    )
    summary = {
        "pixels": recovery.trigger.num_pixels,
        "threshold": recovery.threshold,
        "bug_distance_before": recovery.bug_distance,
        "files": ["trigger.npz", "trigger_authors_format.npz", "trigger_heatmap.png"],
    }
    if true_trigger is not None:
        summary["iou_with_true_trigger"] = recovery.trigger.iou(true_trigger)
        summary["true_pixels"] = true_trigger.num_pixels
    return summary


def reverse_trigger_files(
    model: str | Path,
    bug: str | Path,
    out: str | Path,
    config: ReverseConfig | None = None,
    true_trigger: str | Path | None = None,
    allow_pickle: bool = False,
    overwrite: bool = False,
) -> dict[str, Any]:
    """``mudjacking reverse-trigger``: model + bug report -> trigger files, heat map and ``trigger.json``."""
    config = config or ReverseConfig()
    encoder = load_encoder(model, allow_pickle=allow_pickle)
    report_bug = load_bug_report(bug)
    truth = ImageTrigger.load(true_trigger) if true_trigger else None
    with atomic_output_dir(out, overwrite) as staging:
        recovery = reverse_engineer_trigger(encoder, report_bug, config)
        summary = {"config": asdict(config), **write_trigger_outputs(staging, recovery, report_bug, truth)}
        write_json(staging / "trigger.json", summary)
    return summary


def patch_files(
    model: str | Path,
    bug: str | Path,
    data: str | Path,
    out: str | Path,
    trigger: str | Path | None = None,
    patch_config: PatchConfig | None = None,
    reverse_config: ReverseConfig | None = None,
    allow_pickle: bool = False,
    overwrite: bool = False,
    show_progress: bool = True,
) -> dict[str, Any]:
    """``mudjacking patch``: a user's model directory, bug report and patching-set folder -> ``out`` with the
    patched model (same format, safetensors), the weight delta, the trigger, pictures and ``report.json``.

    The input model is only read. ``trigger`` skips reverse-engineering and uses a known trigger file.
    """
    patch_config = patch_config or PatchConfig()
    reverse_config = reverse_config or ReverseConfig(seed=patch_config.seed)
    encoder = load_encoder(model, allow_pickle=allow_pickle)
    report_bug = load_bug_report(bug)
    patching_set = load_image_folder(data)
    with atomic_output_dir(out, overwrite) as staging:
        report: dict[str, Any] = {"inputs": {"model": str(model), "bug": str(bug), "data": str(data)}}
        report["bug"] = report_bug.summary()
        report["patching_set_size"] = len(patching_set)
        if trigger is None:
            recovery = reverse_engineer_trigger(encoder, report_bug, reverse_config)
            used_trigger = recovery.trigger
            report["trigger"] = {
                "source": "reverse-engineered",
                "config": asdict(reverse_config),
                **write_trigger_outputs(staging, recovery, report_bug),
            }
        else:
            used_trigger = ImageTrigger.load(trigger)
            report["trigger"] = {"source": str(trigger), "pixels": used_trigger.num_pixels}
        result = patch_encoder(encoder, report_bug, used_trigger, patching_set, patch_config, show_progress)
        report.update(save_patched(encoder, result, staging))
        report["environment"] = environment_info()
        write_json(staging / "report.json", report)
    return report


def save_patched(original: Encoder, result: PatchResult, directory: Path) -> dict[str, Any]:
    """Saves the patched model (``model/``) and ``patch_delta.safetensors``; returns their summary."""
    (directory / MODEL_DIR).mkdir()
    result.encoder.save(directory / MODEL_DIR)
    changed = save_weight_delta(original, result.encoder, directory / "patch_delta.safetensors")
    return {"patch": result.summary(), "patched_model": MODEL_DIR, "delta_tensors": changed}


def attack_files(
    model: str | Path,
    shadow: str | Path,
    references: str | Path,
    out: str | Path,
    trigger: str | Path | None = None,
    trigger_size: int = 5,
    config: BadEncoderConfig | None = None,
    allow_pickle: bool = False,
    overwrite: bool = False,
    show_progress: bool = True,
) -> dict[str, Any]:
    """``mudjacking attack``: BadEncoder on a user's model -> ``out`` with the backdoored model and its trigger."""
    encoder = load_encoder(model, allow_pickle=allow_pickle)
    shadow_images = load_image_folder(shadow)
    reference_images = load_image_folder(references)
    used = ImageTrigger.load(trigger) if trigger else ImageTrigger.square(tuple(shadow_images.shape[1:]), trigger_size)
    with atomic_output_dir(out, overwrite) as staging:
        result = badencoder(encoder, shadow_images, reference_images, used, config, show_progress)
        (staging / MODEL_DIR).mkdir()
        result.encoder.save(staging / MODEL_DIR)
        used.save(staging / "trigger.npz")
        used.save(staging / "trigger_authors_format.npz", authors_format=True)
        summary = {**result.summary(), "model": MODEL_DIR, "trigger": "trigger.npz", "environment": environment_info()}
        write_json(staging / "attack.json", summary)
    return summary


def evaluate_models(
    models: dict[str, Encoder],
    train: tuple[Tensor, Tensor],
    test: tuple[Tensor, Tensor],
    trigger: ImageTrigger,
    target_label: int,
    bug: BugReport | None = None,
    probe_kinds: tuple[str, ...] = ("linear",),
    deployed_on: str | None = None,
    seed: int = 0,
    retrain: tuple[str, ...] | None = None,
) -> dict[str, Any]:
    """Scores every model with downstream classifiers of each kind.

    ``retrained``: a classifier trained on that model's own embeddings. ``deployed``: the classifier trained on
    ``models[deployed_on]`` (the one customers already run) applied unchanged, which is what locality protects.
    ``retrain`` limits the retrained classifiers to the named models (``None``: all), since each costs a fit.
    """
    embedded = {name: embed_task(encoder, train[0], test[0], trigger, bug) for name, encoder in models.items()}
    bug_label = None if bug is None else bug.label
    results: dict[str, Any] = {}
    for kind in probe_kinds:
        deployed = make_probe(kind, seed).fit(embedded[deployed_on].train, train[1]) if deployed_on else None
        for name, task in embedded.items():
            entry = {}
            if retrain is None or name in retrain:
                retrained = make_probe(kind, seed).fit(task.train, train[1])
                entry["retrained"] = asdict(score_probe(retrained, task, test[1], target_label, bug_label))
            if deployed is not None:
                entry["deployed"] = asdict(score_probe(deployed, task, test[1], target_label, bug_label))
            results.setdefault(kind, {})[name] = entry
    return results


def evaluate_files(
    models: dict[str, str | Path],
    train: str | Path,
    test: str | Path,
    trigger: str | Path,
    target_label: int,
    out: str | Path,
    bug: str | Path | None = None,
    probe_kinds: tuple[str, ...] = ("linear",),
    allow_pickle: bool = False,
    overwrite: bool = False,
) -> dict[str, Any]:
    """``mudjacking evaluate``: ACC/ASR/TBA (and bug fixed) of each model -> ``out/evaluation.json`` + bars."""
    started = time.perf_counter()
    encoders = {name: load_encoder(path, allow_pickle=allow_pickle) for name, path in models.items()}
    train_images, train_labels, _ = load_labeled_images(train)
    test_images, test_labels, _ = load_labeled_images(test)
    report_bug = load_bug_report(bug) if bug else None
    first = next(iter(models))
    with atomic_output_dir(out, overwrite) as staging:
        scores = evaluate_models(
            encoders,
            (train_images, train_labels),
            (test_images, test_labels),
            ImageTrigger.load(trigger),
            target_label,
            report_bug,
            probe_kinds,
            deployed_on=first,
        )
        for kind, per_model in scores.items():
            rows = {name: _bar_values(entry["deployed"]) for name, entry in per_model.items()}
            plot_before_after(rows, staging / f"scores_{kind}.png", f"{kind} classifier trained on '{first}'")
        summary = {
            "models": {k: str(v) for k, v in models.items()},
            "target_label": target_label,
            "scores": scores,
            "seconds": round(time.perf_counter() - started, 2),
            "environment": environment_info(),
        }
        write_json(staging / "evaluation.json", summary)
    return summary


def _bar_values(scores: dict[str, Any]) -> dict[str, float]:
    return {"ACC": scores["accuracy"], "ASR": scores["attack_success_rate"], "TBA": scores["triggered_accuracy"]}


__all__ = [
    "attack_files",
    "evaluate_files",
    "evaluate_models",
    "patch_files",
    "reverse_trigger_files",
    "save_patched",
    "write_trigger_outputs",
]
