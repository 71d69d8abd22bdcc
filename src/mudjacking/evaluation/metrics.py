"""Downstream metrics as pure functions of predictions and labels.

Which samples count is explicit: ASR and TBA are computed over triggered test inputs whose true class is not the
attacker's target (a target-class input classified as the target is no attack success).
"""

from __future__ import annotations

from torch import Tensor


def accuracy(predictions: Tensor, labels: Tensor) -> float:
    """Share of ``predictions`` ``[N]`` equal to ``labels`` ``[N]``."""
    if len(labels) == 0:
        return float("nan")
    return float((predictions == labels).float().mean().item())


def attack_success_rate(triggered_predictions: Tensor, labels: Tensor, target_label: int) -> float:
    """Share of triggered inputs of a non-target true class that are predicted as ``target_label``."""
    keep = labels != target_label
    return accuracy(triggered_predictions[keep], labels.new_full((int(keep.sum()),), target_label))


def triggered_accuracy(triggered_predictions: Tensor, labels: Tensor, target_label: int) -> float:
    """TBA: accuracy on triggered inputs of a non-target true class, against their true labels."""
    keep = labels != target_label
    return accuracy(triggered_predictions[keep], labels[keep])
