import pytest
import torch

from mudjacking.evaluation import accuracy, attack_success_rate, triggered_accuracy
from mudjacking.evaluation.metrics import flip_rate


def test_accuracy():
    assert accuracy(torch.tensor([0, 1, 2, 2]), torch.tensor([0, 1, 1, 2])) == pytest.approx(0.75)


def test_asr_counts_only_non_target_inputs():
    labels = torch.tensor([0, 0, 1, 2, 3])  # target 0: the first two do not count
    predictions = torch.tensor([0, 0, 0, 2, 0])
    assert attack_success_rate(predictions, labels, target_label=0) == pytest.approx(2 / 3)


def test_tba_is_accuracy_on_non_target_triggered_inputs():
    labels = torch.tensor([0, 1, 2, 3])
    predictions = torch.tensor([1, 1, 0, 3])
    assert triggered_accuracy(predictions, labels, target_label=0) == pytest.approx(2 / 3)


def test_flip_rate_ignores_inputs_already_wrong_when_clean():
    labels = torch.tensor([0, 0, 0, 0, 1])  # target 1: the last does not count
    clean = torch.tensor([0, 0, 0, 1, 1])  # the fourth is already wrong: it does not count either
    triggered = torch.tensor([1, 0, 0, 1, 1])
    assert flip_rate(clean, triggered, labels, target_label=1) == pytest.approx(1 / 3)
    assert attack_success_rate(triggered, labels, target_label=1) == pytest.approx(2 / 4)
