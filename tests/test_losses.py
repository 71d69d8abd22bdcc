import math

import pytest
import torch

from mudjacking.losses import (
    effectiveness_loss,
    generalizability_loss,
    locality_loss,
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


def test_the_patch_loop_assembles_the_three_terms_from_the_right_rows():
    """The loop's own assembly (one forward pass of [batch, batch ⊕ t, x_b, x_r]) against the formula computed by
    hand from separate passes: locality against the original model, L_g between each input and its stamped copy,
    L_e between x_b and x_r, and the weighted sum."""
    import copy

    from conftest import tiny_encoder

    from mudjacking.data import BugReport
    from mudjacking.patching import PatchConfig, _Case, _loss_terms, _plan
    from mudjacking.triggers import ImageTrigger

    torch.manual_seed(0)
    original = tiny_encoder()
    patched = copy.deepcopy(original)
    with torch.no_grad():
        for parameter in patched.parameters():
            parameter.add_(0.05 * torch.randn_like(parameter))
    images = torch.rand(12, 1, 16, 16)
    mask = torch.zeros(16, 16)
    mask[:4, :4] = 1
    trigger = ImageTrigger(mask, torch.ones(1, 16, 16))
    bug = BugReport(images[0], images[1], label=3)
    config = PatchConfig(lambda_gen=2.0, lambda_eff=0.5, holdout_fraction=0.0, augmented_copies=0,
                         whitened_locality=0.0, trigger_dilation=0, centring="off")  # fmt: skip
    plan = _plan(original, [_Case(bug, trigger)], images[2:], config, torch.device("cpu"))
    rows = torch.tensor([0, 3, 5, 10])  # 10: x_r, appended to D's training part
    terms = _loss_terms(patched, plan, rows, config)

    batch = plan.train[rows]
    with torch.no_grad():
        clean, before = patched.embed(batch), original.embed(batch)
        triggered = patched.embed(trigger.apply(batch))
        x_b, x_r = patched.embed(images[:1]), patched.embed(images[1:2])
    cos = torch.nn.functional.cosine_similarity
    expected = (-cos(clean, before).mean(), -cos(triggered, clean).mean(), -cos(x_b, x_r).mean())
    for term, value in zip(terms, expected, strict=True):
        assert term.item() == pytest.approx(float(value), abs=1e-5)
    assert -1 < float(expected[0]) < -0.5 and float(expected[1]) > -0.999  # the terms are not trivially -1
    total = weighted_total(*terms, config.lambda_gen, config.lambda_eff)
    assert total.item() == pytest.approx(float(expected[0] + 2.0 * expected[1] + 0.5 * expected[2]), abs=1e-5)


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
