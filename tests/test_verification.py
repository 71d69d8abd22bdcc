"""The measures the self-checks rest on, against values worked out by hand: embedding geometry, the trigger's pull
and release, backdoor carriers, and whether a bug shows at all."""

import math

import pytest
import torch
import torch.nn.functional as F

from mudjacking.checks import CheckFailed, bug_visibility, require_visible
from mudjacking.geometry import embedding_geometry, mean_pairwise_cosine, pairwise_similarities, similarity
from mudjacking.triggers import ImageTrigger, TextTrigger
from mudjacking.triggers.pull import backdoor_carriers, donor_controls, pull_toward, release_of


def test_mean_pairwise_cosine_matches_the_pairs():
    embeddings = torch.randn(7, 5, generator=torch.Generator().manual_seed(0))
    unit = F.normalize(embeddings, dim=-1)
    pairs = [float(unit[i] @ unit[j]) for i in range(7) for j in range(7) if i != j]
    assert mean_pairwise_cosine(embeddings) == pytest.approx(sum(pairs) / len(pairs), abs=1e-6)
    assert pairwise_similarities(embeddings).mean() == pytest.approx(sum(pairs) / len(pairs), abs=1e-6)


def test_a_narrow_cone_is_centred_and_the_centred_cosine_sees_its_spread():
    spread = torch.randn(50, 8, generator=torch.Generator().manual_seed(1))
    cone = spread + 20  # one large shared component: every pair at cosine ~0.99, as post-ReLU pooled outputs sit
    geometry = embedding_geometry(cone)
    assert geometry.narrow_cone and geometry.centre is not None and geometry.mean_pairwise_cosine > 0.99
    plain = similarity(cone[:1], cone[1:2])
    centred = similarity(cone[:1], cone[1:2], geometry.centre)
    assert plain > 0.99 and abs(centred) < 0.9  # the same pair, its real difference visible only centred
    assert embedding_geometry(spread).centre is None  # spread embeddings keep the plain cosine
    assert embedding_geometry(spread, "on").centre is not None
    with pytest.raises(ValueError, match="centring"):
        embedding_geometry(spread, "sometimes")


def test_pull_is_the_share_of_the_way_to_the_target():
    target = torch.tensor([[1.0, 0.0]])
    clean = torch.tensor([[0.0, 1.0], [0.0, 1.0]])  # s(clean, target) = 0
    stamped = torch.tensor([[1.0, 0.0], [1.0, 1.0]])  # lands on the target; half-way in cosine (1/√2)
    assert pull_toward(clean, stamped, target).tolist() == pytest.approx([1.0, 1 / math.sqrt(2)])
    assert pull_toward(clean, clean, target).tolist() == pytest.approx([0.0, 0.0])


def test_release_measures_how_far_removing_the_trigger_moves_x_b_against_ordinary_inputs():
    bug = torch.tensor([[1.0, 0.0]])
    ordinary = torch.tensor([[0.0, 1.0], [0.0, -1.0], [1.0, 1.0]])  # median cosine to h(x_b): 0
    assert release_of(bug, torch.tensor([[0.0, 1.0]]), ordinary) == pytest.approx(1.0)  # an ordinary input again
    assert release_of(bug, bug, ordinary) == pytest.approx(0.0)  # x_b ⊖ t stays at the backdoor point
    assert release_of(bug, torch.tensor([[1.0, 1.0]]), ordinary) == pytest.approx(1 - 1 / math.sqrt(2))


def test_release_is_measured_against_x_r_where_x_b_s_class_sits_near_the_backdoor_point():
    bug = torch.tensor([[1.0, 0.0]])
    ordinary = torch.tensor([[0.0, 1.0], [0.0, -1.0], [1.0, 1.0]])  # median distance to h(x_b): 1
    cleaned = torch.tensor([[math.cos(0.5), math.sin(0.5)]])  # x_b ⊖ t moved 1 − cos 0.5 ≈ 0.12
    near = torch.tensor([[math.cos(0.6), math.sin(0.6)]])  # x_r at 1 − cos 0.6 ≈ 0.175
    moved = 1 - math.cos(0.5)
    assert release_of(bug, cleaned, ordinary) == pytest.approx(moved)
    assert release_of(bug, cleaned, ordinary, reference=near) == pytest.approx(moved / 0.5)  # floor: half the median
    far = torch.tensor([[-1.0, 0.0]])  # an x_r farther than the median input changes nothing
    assert release_of(bug, cleaned, ordinary, reference=far) == pytest.approx(moved)
    middle = torch.tensor([[math.cos(1.2), math.sin(1.2)]])  # 1 − cos 1.2 ≈ 0.64: between the floor and the median
    assert release_of(bug, cleaned, ordinary, reference=middle) == pytest.approx(moved / (1 - math.cos(1.2)))


def test_carriers_are_inputs_already_past_half_way_to_the_backdoor_point():
    point = torch.tensor([[1.0, 0.0]])
    angles = torch.tensor([0.05, 1.2, 1.4, 1.5, 1.55])  # one input almost at the point, the rest far from it
    embeddings = torch.stack([angles.cos(), angles.sin()], 1)
    carriers, threshold = backdoor_carriers(embeddings, point)
    assert carriers.tolist() == [True, False, False, False, False]
    assert threshold == pytest.approx(float(angles[2].cos()) + 0.5 * (1 - float(angles[2].cos())))


def test_donor_controls_cut_the_same_stamp_from_other_inputs():
    trigger = ImageTrigger.square((1, 6, 6), 2)
    donors = torch.rand(3, 1, 6, 6)
    controls = donor_controls(trigger, donors, torch.randn(3, 4))
    assert len(controls) == 3
    assert all(torch.equal(stamp.mask, trigger.mask) and torch.equal(stamp.pattern, d) for (stamp, _), d in
               zip(controls, donors, strict=True))  # fmt: skip
    phrase = TextTrigger(["watched this movie"])
    spans = donor_controls(phrase, ["a b c d e", "too short"], torch.randn(2, 4))
    assert len(spans) == 1 and len(spans[0][0].words[0].split()) == 3 and set(spans[0][0].tokens) <= set("abcde")


def test_a_bug_shows_only_when_x_b_sits_apart_from_x_r_s_neighbourhood():
    reference = torch.tensor([[1.0, 0.0, 0.0]])
    neighbours = F.normalize(reference + 0.1 * torch.randn(20, 3, generator=torch.Generator().manual_seed(2)), dim=-1)
    far, near = torch.tensor([[0.0, 1.0, 0.0]]), F.normalize(reference + 0.01, dim=-1)
    assert bug_visibility(far, reference, neighbours).visible
    hidden = bug_visibility(near, reference, neighbours)
    assert not hidden.visible and hidden.bug_similarity > hidden.neighbour_similarity
    with pytest.raises(CheckFailed, match="does not show this bug.*--image-mean.*--force"):
        require_visible(hidden, "bug.json")
