"""The files a run leaves behind for a recovered trigger and a patched model, in one place for the CLI, the demos
and the experiments."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from mudjacking.data.bug_report import BugReport
from mudjacking.encoders.base import Encoder
from mudjacking.outputs import save_lora_delta, save_weight_delta
from mudjacking.patching import PatchResult
from mudjacking.report.plots import plot_score_histogram, plot_trigger_heatmap, plot_word_scores
from mudjacking.triggers import Trigger
from mudjacking.triggers.reverse import TriggerRecovery
from mudjacking.triggers.text import TextTriggerRecovery
from mudjacking.triggers.text_trigger import TextTrigger
from mudjacking.triggers.trigger import ImageTrigger

MODEL_DIR = "model"
HISTOGRAM = "score_histogram.png"


def write_recovery(
    directory: Path,
    recovery: TriggerRecovery | TextTriggerRecovery,
    bug: BugReport,
    true_trigger: Trigger | None = None,
    histogram: bool = False,
) -> dict[str, Any]:
    """Writes the recovered trigger's files and picture (and, if asked, the histogram of its attribution scores
    with the k-means cut) into ``directory``; returns its summary."""
    summary = RECOVERY_WRITERS[type(recovery)](directory, recovery, bug, true_trigger)
    if histogram:
        plot_score_histogram(recovery.unit_scores(), recovery.threshold, directory / HISTOGRAM, recovery.unit)
        summary["files"].append(HISTOGRAM)
    return summary


def write_text_trigger_outputs(
    directory: Path, recovery: TextTriggerRecovery, true_trigger: TextTrigger | None = None
) -> dict[str, Any]:
    """Writes the recovered trigger words (``trigger.json``) and the per-word score chart; returns their summary."""
    files = recovery.trigger.write(directory)
    plot_word_scores(
        recovery.words,
        recovery.scores,
        recovery.threshold,
        directory / "word_scores.png",
        None if true_trigger is None else true_trigger.tokens,
    )
    summary: dict[str, Any] = {
        **recovery.summary(),
        "word_scores": [[word, score] for word, score in zip(recovery.words, recovery.scores.tolist(), strict=True)],
        "files": [*files, "word_scores.png"],
    }
    if true_trigger is not None:
        summary["true_words"] = true_trigger.words
        summary["exact_match"] = set(recovery.trigger.words) == set(true_trigger.words)
    return summary


def write_trigger_outputs(
    directory: Path, recovery: TriggerRecovery, bug: BugReport, true_trigger: ImageTrigger | None = None
) -> dict[str, Any]:
    """Writes the recovered trigger (ours and the authors' npz) and its heat map; returns its summary."""
    files = recovery.trigger.write(directory)
    plot_trigger_heatmap(
        bug.bug_input,
        recovery.attribution,
        recovery.trigger.mask,
        directory / "trigger_heatmap.png",
        true_mask=None if true_trigger is None else true_trigger.mask,
        reference_input=bug.reference_input,
    )
    summary = {**recovery.summary(), "files": [*files, "trigger_heatmap.png"]}
    if true_trigger is not None:
        summary["iou_with_true_trigger"] = recovery.trigger.iou(true_trigger)
        summary["true_pixels"] = true_trigger.num_pixels
    return summary


def _write_text_recovery(
    directory: Path, recovery: TextTriggerRecovery, _: BugReport, true_trigger: TextTrigger | None
) -> dict[str, Any]:
    return write_text_trigger_outputs(directory, recovery, true_trigger)


# how each modality's recovery is written: (directory, recovery, bug, true trigger) -> summary
RECOVERY_WRITERS: dict[type, Callable[..., dict[str, Any]]] = {
    TriggerRecovery: write_trigger_outputs,
    TextTriggerRecovery: _write_text_recovery,
}


def save_patched(original: Encoder, result: PatchResult, directory: Path) -> dict[str, Any]:
    """Saves the patched model (``model/``) and ``patch_delta.safetensors`` (a LoRA patch: its adapters); returns
    their summary."""
    (directory / MODEL_DIR).mkdir()
    result.encoder.save(directory / MODEL_DIR)
    if result.adapter is not None:  # a LoRA patch ships its adapters
        changed = save_lora_delta(original, result.encoder, result.adapter, result.lora_targets,
                                  result.config.lora_rank, directory / "patch_delta.safetensors")  # fmt: skip
    else:
        changed = save_weight_delta(original, result.encoder, directory / "patch_delta.safetensors")
    return {"patch": result.summary(), "patched_model": MODEL_DIR, "delta_tensors": changed}
