"""Several bugs in one patch, and patch after patch: a tiny CNN with two backdoors (a white square sending inputs
to class 0, a checkerboard in the opposite corner sending them to class 7), one bug report per backdoor."""

from __future__ import annotations

import pytest

from mudjacking.attacks import BadEncoderConfig, badencoder_many
from mudjacking.evaluation import find_bug, score_encoder, train_probe
from mudjacking.patching import PatchConfig, patch_encoder
from mudjacking.triggers import ImageTrigger

TARGETS = (0, 7)
PATCH = PatchConfig(max_epochs=12, min_epochs=2, augmented_copies=0)


def _opposite_checkerboard() -> ImageTrigger:
    corner = ImageTrigger.checkerboard((1, 16, 16), 4)
    return ImageTrigger(corner.mask.flip(0, 1), corner.pattern.flip(-2, -1))


@pytest.fixture(scope="module")
def two_backdoors(_backdoored):
    digits = _backdoored.data
    triggers = [ImageTrigger.square((1, 16, 16), size=4), _opposite_checkerboard()]
    backdoors = [(t, digits.train_images[digits.train_labels == c][:5]) for t, c in zip(triggers, TARGETS, strict=True)]
    attack = badencoder_many(
        _backdoored.clean, digits.train_images[:800], backdoors, BadEncoderConfig(epochs=12, batch_size=64),
        show_progress=False,
    )  # fmt: skip
    probe = train_probe(attack.encoder, digits.train_images, digits.train_labels)
    bugs = [
        find_bug(attack.encoder, probe, digits.test_images, digits.test_labels, t, c, seed=1, caused_by_trigger=True)
        for t, c in zip(triggers, TARGETS, strict=True)
    ]
    return digits, attack.encoder, probe, triggers, bugs


def _asr(case, encoder, which):
    digits, _, probe, triggers, bugs = case
    scores = score_encoder(
        encoder, probe, digits.test_images, digits.test_labels, triggers[which], TARGETS[which], bugs[which]
    )
    return scores.attack_success_rate, scores.bug_fixed


def test_both_backdoors_are_planted_and_each_bug_shows_its_own(two_backdoors):
    _, encoder, *_ = two_backdoors
    for which in (0, 1):
        asr, fixed = _asr(two_backdoors, encoder, which)
        assert asr > 0.8 and not fixed
    assert two_backdoors[4][0].label != TARGETS[0] and two_backdoors[4][1].label != TARGETS[1]


def test_one_patch_fixes_two_bugs_of_two_triggers_and_checks_each(two_backdoors):
    digits, encoder, _, triggers, bugs = two_backdoors
    result = patch_encoder(encoder, bugs, triggers, digits.train_images, PATCH, show_progress=False)
    for which in (0, 1):
        asr, fixed = _asr(two_backdoors, result.encoder, which)
        assert asr < 0.2 and fixed, f"trigger {which}: ASR {asr:.2f}, bug fixed {fixed}"
    last = result.history[-1]
    assert len(last.bugs) == 2 and all(bug["pull"] == bug["pull"] for bug in last.bugs)  # measured for each
    assert len(result.pulls_before) == 2 and min(result.pulls_before) > 0.3  # both triggers pulled before
    assert last.bug_similarity == min(bug["bug_similarity"] for bug in last.bugs)


def test_one_trigger_alone_leaves_the_other_backdoor(two_backdoors):
    """The control for the test above: patching the square alone must not be what removed the checkerboard."""
    digits, encoder, _, triggers, bugs = two_backdoors
    result = patch_encoder(encoder, bugs[0], triggers[0], digits.train_images, PATCH, show_progress=False)
    assert _asr(two_backdoors, result.encoder, 0)[0] < 0.2
    assert _asr(two_backdoors, result.encoder, 1)[0] > 0.5


def test_a_second_patch_keeps_the_first_bug_fixed_as_a_regression_case(two_backdoors):
    digits, encoder, _, triggers, bugs = two_backdoors
    first = patch_encoder(encoder, bugs[0], triggers[0], digits.train_images, PATCH, show_progress=False)
    second = patch_encoder(
        first.encoder, bugs[1], triggers[1], digits.train_images, PATCH, show_progress=False,
        earlier=[(bugs[0], triggers[0])],
    )  # fmt: skip
    for which in (0, 1):
        asr, fixed = _asr(two_backdoors, second.encoder, which)
        assert asr < 0.2 and fixed, f"trigger {which}: ASR {asr:.2f}, bug fixed {fixed}"
    earlier = second.history[-1].bugs[1]
    assert earlier["earlier"] and earlier["pull"] != earlier["pull"]  # no backdoor point left to be pulled to
    assert second.pulls_before[1] is None and second.pulls_before[0] > 0.3


def test_one_trigger_per_bug_is_required(two_backdoors):
    digits, encoder, _, triggers, bugs = two_backdoors
    with pytest.raises(ValueError, match="one trigger per bug"):
        patch_encoder(encoder, bugs, triggers[:1], digits.train_images, PATCH, show_progress=False)
