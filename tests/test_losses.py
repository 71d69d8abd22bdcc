import math

import pytest
import torch

from mudjacking.losses import (
    effectiveness_loss,
    generalizability_loss,
    locality_loss,
    mudjacking_loss,
    weighted_total,
    whitened_locality_loss,
    whitening,
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


def _spread_along_first_axis(rows=2000):
    """Unit-norm embeddings that vary a lot along axis 1 and little along axis 2 (axis 0 carries the norm)."""
    generator = torch.Generator().manual_seed(0)
    noise = torch.randn(rows, 2, generator=generator) * torch.tensor([0.3, 0.01])
    return torch.nn.functional.normalize(torch.cat([torch.ones(rows, 1), noise], dim=1), dim=-1)


def test_whitening_without_ridge_makes_the_covariance_identity():
    embeddings = _spread_along_first_axis()
    whitened = embeddings @ whitening(embeddings, ridge=0.0)
    assert torch.allclose(torch.cov(whitened.T), torch.eye(3), atol=0.05)


def test_whitened_locality_charges_a_move_along_a_direction_d_hardly_spans_more():
    original = _spread_along_first_axis()
    whitener = whitening(original)
    step = 0.02
    along_wide = original + step * torch.tensor([0.0, 1.0, 0.0])
    along_narrow = original + step * torch.tensor([0.0, 0.0, 1.0])
    assert whitened_locality_loss(original, original, whitener).item() == pytest.approx(0.0, abs=1e-9)
    wide, narrow = (whitened_locality_loss(moved, original, whitener).item() for moved in (along_wide, along_narrow))
    # the cosine sees both moves alike; the whitened term charges the narrow one ~(0.3/0.01)^2 times more
    assert locality_loss(along_wide, original).item() == pytest.approx(
        locality_loss(along_narrow, original).item(), abs=1e-3
    )
    assert narrow > 100 * wide
