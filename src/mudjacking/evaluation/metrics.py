"""Downstream metrics as pure functions of predictions and labels.

Which samples count is explicit: ASR and TBA are computed over triggered test inputs whose true class is not the
attacker's target (a target-class input classified as the target is no attack success).

ASR has a floor: a triggered input the classifier already got wrong when clean may land on the target without any
backdoor (on a binary task with 75% accuracy a clean model "scores" ~16% ASR). ``flip_rate`` removes that floor by
counting only inputs the classifier gets right when clean, as many NLP backdoor papers report it. The floor itself is
reported as ``clean_target_rate``: ``attack_success_rate`` applied to the predictions without the trigger.
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


def flip_rate(clean_predictions: Tensor, triggered_predictions: Tensor, labels: Tensor, target_label: int) -> float:
    """Of the non-target inputs classified correctly when clean, the share the trigger sends to ``target_label``."""
    keep = (labels != target_label) & (clean_predictions == labels)
    return accuracy(triggered_predictions[keep], labels.new_full((int(keep.sum()),), target_label))
