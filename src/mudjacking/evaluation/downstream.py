"""Scoring an encoder through a downstream classifier: ACC, ASR, TBA, whether the reported bug is fixed and whether its
reference is still classified right."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

import torch
from torch import Tensor

from mudjacking.batches import join, single, take
from mudjacking.data.bug_report import BugReport
from mudjacking.encoders.base import Encoder
from mudjacking.errors import MudjackingError
from mudjacking.evaluation.metrics import accuracy, attack_success_rate, flip_rate, triggered_accuracy
from mudjacking.evaluation.probes import Probe, make_probe
from mudjacking.geometry import mean_direction
from mudjacking.triggers import Trigger

Inputs = Tensor | list[str]


class NoBugFound(MudjackingError, ValueError):
    """The backdoored model misclassifies no triggered test input: the attack failed, there is nothing to patch."""


@dataclass
class DownstreamScores:
    """One encoder + classifier on one downstream test set (rates in [0, 1]; see ``metrics`` for definitions)."""

    accuracy: float
    attack_success_rate: float
    triggered_accuracy: float
    flip_rate: float
    clean_target_rate: float
    bug_prediction: int | None = None
    bug_fixed: bool | None = None
    reference_prediction: int | None = None
    reference_kept: bool | None = None  # x_r, which the customer saw classified right, still is


@dataclass
class EmbeddedTask:
    """One encoder's embeddings of a downstream task, computed once and shared by every classifier scored on it."""

    train: Tensor
    test: Tensor
    triggered_test: Tensor
    bug: Tensor | None = None  # h(x_b) and h(x_r), in that order


class EmbeddingCache:
    """Each model's embeddings of the input sets it has embedded, by identity: tasks that share a customer's data
    (each backdoor of an attack scored on one test set) embed its clean inputs once per model, not once per task."""

    def __init__(self) -> None:
        self._known: dict[tuple[int, int], tuple[Encoder, Inputs, Tensor]] = {}

    def embed(self, encoder: Encoder, inputs: Inputs) -> Tensor:
        known = self._known.get((id(encoder), id(inputs)))
        if known is not None and known[0] is encoder and known[1] is inputs:
            return known[2]
        embedded = encoder.embed(inputs)
        self._known[(id(encoder), id(inputs))] = (encoder, inputs, embedded)
        return embedded


def _embed_bug(encoder: Encoder, bug: BugReport | None) -> Tensor | None:
    """``x_b`` and ``x_r``: a patch that fixes the bug by moving the reference across the boundary (a borderline
    input's) has handed the customer a new one."""
    if bug is None:
        return None
    cpu = torch.device("cpu")
    return encoder.embed(join(single(bug.bug_input, cpu), single(bug.reference_input, cpu)))


def embed_task(
    encoder: Encoder,
    train_inputs: Inputs | None,
    test_inputs: Inputs,
    trigger: Trigger,
    bug: BugReport | None = None,
    cache: EmbeddingCache | None = None,
    attacked: Tensor | None = None,
) -> EmbeddedTask:
    """Embeds the downstream train set (skipped when ``None``), the test set, its triggered copy and ``x_b``
    (the clean sets through ``cache`` when given).

    ``attacked`` (a boolean mask over the test set, from :func:`attacked_rows`) limits the triggered copy to the
    inputs ASR, TBA and the flip rate count: the others keep their clean embedding, which no metric reads. On a
    two-class task that halves the costliest part of scoring a model."""
    embed = encoder.embed if cache is None else lambda inputs: cache.embed(encoder, inputs)
    test = embed(test_inputs)
    triggered = embed_triggered(encoder, trigger.apply(test_inputs), test, attacked)
    return EmbeddedTask(
        train=torch.empty(0) if train_inputs is None else embed(train_inputs),
        test=test,
        triggered_test=triggered,
        bug=_embed_bug(encoder, bug),
    )


def embed_triggered(encoder: Encoder, triggered_inputs: Inputs, clean: Tensor, attacked: Tensor | None) -> Tensor:
    """``encoder``'s embeddings of the triggered test inputs, of only the ``attacked`` ones (a boolean mask) when
    given: the others keep their ``clean`` embedding."""
    if attacked is None:
        return encoder.embed(triggered_inputs)
    rows = torch.nonzero(attacked).flatten()
    triggered = clean.clone()
    if len(rows):
        triggered[rows] = encoder.embed(take(triggered_inputs, rows, torch.device("cpu"))).to(clean)
    return triggered


def attacked_rows(test_labels: Tensor, targets: int | Iterable[int]) -> Tensor:
    """The test inputs whose triggered copy some metric counts: those of a class other than a target (ASR, TBA and
    the flip rate leave out the target class's own), for every classifier's target at once."""
    targets = [targets] if isinstance(targets, int) else list(targets)
    return torch.stack([test_labels != target for target in targets]).any(dim=0)


def score_probe(
    probe: Probe, embedded: EmbeddedTask, test_labels: Tensor, target_label: int, bug_label: int | None = None
) -> DownstreamScores:
    """ACC on clean test inputs, ASR and TBA on their triggered copies, and the bug's and its reference's
    predictions."""
    clean_predictions = probe.predict(embedded.test)
    triggered_predictions = probe.predict(embedded.triggered_test)
    scores = DownstreamScores(
        accuracy=accuracy(clean_predictions, test_labels),
        attack_success_rate=attack_success_rate(triggered_predictions, test_labels, target_label),
        triggered_accuracy=triggered_accuracy(triggered_predictions, test_labels, target_label),
        flip_rate=flip_rate(clean_predictions, triggered_predictions, test_labels, target_label),
        clean_target_rate=attack_success_rate(clean_predictions, test_labels, target_label),
    )
    if embedded.bug is not None and bug_label is not None:
        scores.bug_prediction, scores.reference_prediction = probe.predict(embedded.bug).tolist()
        scores.bug_fixed = scores.bug_prediction == bug_label
        scores.reference_kept = scores.reference_prediction == bug_label
    return scores


def train_probe(encoder: Encoder, inputs: Inputs, labels: Tensor, kind: str = "linear", seed: int = 0) -> Probe:
    """Fits a downstream classifier of ``kind`` on ``encoder``'s embeddings of ``inputs`` (images or sentences)."""
    return make_probe(kind, seed).fit(encoder.embed(inputs), labels)


def score_encoder(
    encoder: Encoder,
    probe: Probe,
    test_inputs: Inputs,
    test_labels: Tensor,
    trigger: Trigger,
    target_label: int,
    bug: BugReport | None = None,
) -> DownstreamScores:
    """Embeds the test set (clean and triggered) and ``x_b`` with ``encoder`` and scores ``probe`` on them."""
    embedded = embed_task(encoder, None, test_inputs, trigger, bug, attacked=attacked_rows(test_labels, target_label))
    return score_probe(probe, embedded, test_labels, target_label, None if bug is None else bug.label)


def target_label_of(encoder: Encoder, probe: Probe, references: Inputs) -> int:
    """The class a downstream classifier gives the attacker's target embedding (``geometry.mean_direction`` of the
    references' embeddings: BadEncoder pulls triggered inputs towards every reference at once)."""
    return int(probe.predict(mean_direction(encoder.embed(references))[None])[0])


def deploy_probes(
    encoder: Encoder, train: tuple[Inputs, Tensor], kinds: tuple[str, ...], references: Inputs, seed: int = 0
) -> tuple[dict[str, Probe], dict[str, int]]:
    """A customer's classifiers of each kind, trained once on ``encoder``'s embeddings of ``train``, and the class
    each gives the attacker's target embedding (it may differ by classifier)."""
    embedded = encoder.embed(train[0])
    probes = {kind: make_probe(kind, seed).fit(embedded, train[1]) for kind in kinds}
    return probes, {kind: target_label_of(encoder, probe, references) for kind, probe in probes.items()}


def find_bug(
    encoder: Encoder,
    probe: Probe,
    test_inputs: Inputs,
    test_labels: Tensor,
    trigger: Trigger,
    target_label: int,
    class_names: list[str] | None = None,
    seed: int = 0,
    caused_by_trigger: bool = False,
) -> BugReport:
    """Picks a real bug, as a customer would report it: a triggered test input of a non-target class that the
    classifier puts in the target class, and a different, correctly classified clean input of its true class.

    ``caused_by_trigger`` keeps only inputs classified correctly without the trigger, so that the bug is the
    backdoor's doing and removing the backdoor must fix it (on a 75%-accurate sentiment task a quarter of the
    candidates are wrong without the trigger as well)."""
    generator = torch.Generator().manual_seed(seed)
    triggered_inputs = trigger.apply(test_inputs)
    clean = encoder.embed(test_inputs)
    attacked = attacked_rows(test_labels, target_label)  # a bug is of a non-target class
    clean_predictions = probe.predict(clean)
    triggered_predictions = probe.predict(embed_triggered(encoder, triggered_inputs, clean, attacked))
    misclassified = (test_labels != target_label) & (triggered_predictions == target_label)
    if caused_by_trigger:
        misclassified &= clean_predictions == test_labels
    candidates = torch.nonzero(misclassified).flatten()
    if len(candidates) == 0:
        raise NoBugFound(
            "no triggered test input is misclassified as the target: the attack did not take, so there is no bug to"
            " report; give the attack more epochs or shadow data"
        )
    for index in candidates[torch.randperm(len(candidates), generator=generator)].tolist():
        label = int(test_labels[index])
        references = torch.nonzero((test_labels == label) & (clean_predictions == label)).flatten()
        references = references[references != index]
        if len(references):
            reference = int(references[torch.randint(len(references), (1,), generator=generator)])
            return BugReport(
                bug_input=take(triggered_inputs, torch.tensor([index]), torch.device("cpu"))[0],
                reference_input=take(test_inputs, torch.tensor([reference]), torch.device("cpu"))[0],
                label=label,
                predicted_label=target_label,
                label_name=class_names[label] if class_names else None,
                modality=encoder.modality,
                classes=tuple(class_names) if class_names else None,
            )
    raise NoBugFound("no correctly classified reference input exists for any misclassified triggered input")
