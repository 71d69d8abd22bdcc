import math

import pytest
import torch

from mudjacking.losses import (
    effectiveness_loss,
    generalizability_loss,
    locality_loss,
    mudjacking_loss,
    weighted_total,
)


def test_effectiveness_is_minus_cosine_of_bug_and_reference():
    bug, reference = torch.tensor([1.0, 0.0]), torch.tensor([1.0, 1.0])
    assert effectiveness_loss(bug, reference).item() == pytest.approx(-1 / math.sqrt(2))


def test_locality_averages_rowwise_cosines_and_ignores_scale():
    patched = torch.tensor([[2.0, 0.0], [0.0, 3.0]])
    original = torch.tensor([[1.0, 0.0], [1.0, 0.0]])
    # cos = 1 for the first row, 0 for the second
    assert locality_loss(patched, original).item() == pytest.approx(-0.5)


def test_generalizability_of_opposite_embeddings_is_plus_one():
    triggered = torch.tensor([[1.0, 2.0, 3.0]])
    assert generalizability_loss(triggered, -triggered).item() == pytest.approx(1.0)


def test_total_weights_the_terms():
    clean = torch.tensor([[1.0, 0.0], [0.0, 1.0]])
    original = torch.tensor([[1.0, 0.0], [1.0, 1.0]])  # cos 1 and 1/sqrt2
    triggered = torch.tensor([[0.0, 1.0], [0.0, 1.0]])  # cos 0 and 1
    terms = mudjacking_loss(
        clean, original, triggered, torch.tensor([3.0, 4.0]), torch.tensor([4.0, 3.0]), lambda_gen=2.0, lambda_eff=0.5
    )
    locality = -(1 + 1 / math.sqrt(2)) / 2
    generalizability = -0.5
    effectiveness = -24 / 25
    assert terms.locality.item() == pytest.approx(locality)
    assert terms.generalizability.item() == pytest.approx(generalizability)
    assert terms.effectiveness.item() == pytest.approx(effectiveness)
    assert terms.total.item() == pytest.approx(locality + 2.0 * generalizability + 0.5 * effectiveness)


def test_gradients_reach_both_sides_of_generalizability():
    triggered = torch.tensor([[1.0, 0.0]], requires_grad=True)
    clean = torch.tensor([[1.0, 1.0]], requires_grad=True)
    generalizability_loss(triggered, clean).backward()
    assert triggered.grad.abs().sum() > 0 and clean.grad.abs().sum() > 0


def test_weighted_total_leaves_out_terms_of_weight_zero():
    nan = torch.tensor(float("nan"))
    total = weighted_total(torch.tensor(-0.9), nan, torch.tensor(-0.5), lambda_gen=0.0, lambda_eff=2.0)
    assert float(total) == pytest.approx(-1.9)
    assert float(weighted_total(nan, torch.tensor(-1.0), nan, lambda_eff=0.0, use_locality=False)) == -1.0
