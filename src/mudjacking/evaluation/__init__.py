"""Downstream classifiers on frozen embeddings and the metrics the paper reports (ACC, ASR, TBA, bug fixed)."""

from mudjacking.evaluation.downstream import (
    DownstreamScores,
    EmbeddedTask,
    embed_task,
    find_bug,
    score_encoder,
    score_probe,
    train_probe,
)
from mudjacking.evaluation.metrics import accuracy, attack_success_rate, flip_rate, triggered_accuracy
from mudjacking.evaluation.probes import LinearProbe, MLPProbe, Probe, make_probe, register_probe

__all__ = [
    "DownstreamScores",
    "EmbeddedTask",
    "embed_task",
    "score_probe",
    "LinearProbe",
    "MLPProbe",
    "Probe",
    "accuracy",
    "attack_success_rate",
    "find_bug",
    "flip_rate",
    "make_probe",
    "register_probe",
    "score_encoder",
    "train_probe",
    "triggered_accuracy",
]
