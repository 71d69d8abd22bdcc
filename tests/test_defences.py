"""Baselines and patch options that the experiments compare: contrastive fine-tuning, option validation."""

from __future__ import annotations

import pytest
import torch

from mudjacking.defences.contrastive import ContrastiveConfig, contrastive_finetune, drop_words
from mudjacking.patching import PatchConfig, patch_encoder


def test_contrastive_finetuning_changes_a_copy_of_an_image_model(backdoored):
    before = {k: v.clone() for k, v in backdoored.encoder.state_dict().items()}
    images = backdoored.patching_set[:256]
    result = contrastive_finetune(backdoored.encoder, images, ContrastiveConfig(epochs=1, lr=1e-3), show_progress=False)
    assert result.epochs == 1 and result.steps == 4
    assert not torch.allclose(result.encoder.embed(images[:8]), backdoored.encoder.embed(images[:8]))
    assert all(torch.equal(before[k], v) for k, v in backdoored.encoder.state_dict().items())


def test_contrastive_finetuning_on_sentences(text_case):
    encoder, _, _, train, _ = text_case
    result = contrastive_finetune(encoder, train[0][:64], ContrastiveConfig(epochs=1, batch_size=32), False)
    assert result.steps == 2
    assert not torch.allclose(result.encoder.embed(train[0][:4]), encoder.embed(train[0][:4]))


def test_word_dropout_never_empties_a_sentence():
    import random

    views = drop_words(["one", "a b c d e f g h"], 0.99, random.Random(0))
    assert views[0] == "one" and len(views[1].split()) >= 1


def test_clean_bug_target_on_images_is_x_b_with_the_trigger_filled_in(backdoored):
    """For images, x_b ⊖ t replaces the trigger's pixels, its mask grown by 1 px (a recovered mask misses rim
    pixels), with its fill (D's mean image when the trigger has none), and the goal check measures x_b against the
    original model's embedding of that."""
    from mudjacking.geometry import similarity

    data = backdoored.patching_set[:64]
    config = PatchConfig(effectiveness_target="clean_bug", max_epochs=1, goal_effectiveness=-1.0)
    result = patch_encoder(backdoored.encoder, backdoored.bug, backdoored.trigger, data, config, False)
    mask = backdoored.trigger.dilated(1).mask
    assert mask.sum() > backdoored.trigger.mask.sum()
    cleaned = backdoored.bug.bug_input[None] * (1 - mask) + data.mean(0) * mask
    target = backdoored.encoder.embed(cleaned)
    expected = similarity(result.encoder.embed(backdoored.bug.bug_input[None]), target, result.geometry.centre)
    assert result.history[-1].bug_similarity == pytest.approx(float(expected), abs=1e-4)


def test_bug_and_reference_target_aims_x_b_between_its_clean_self_and_the_reference(backdoored):
    """The sum of h(x_b ⊖ t) and h(x_r), each of unit length around D's mean: the goal check measures x_b against that
    direction, which is neither end's (when they differ)."""
    from mudjacking.losses import cosine

    bug, data = backdoored.bug, backdoored.patching_set[:64]
    config = PatchConfig(effectiveness_target="bug_and_reference", max_epochs=1, goal_effectiveness=-1.0)
    result = patch_encoder(backdoored.encoder, bug, backdoored.trigger, data, config, False)
    centre = 0 if result.geometry.centre is None else result.geometry.centre
    mask = backdoored.trigger.dilated(1).mask
    cleaned = bug.bug_input[None] * (1 - mask) + data.mean(0) * mask
    ends = [backdoored.encoder.embed(x) - centre for x in (cleaned, bug.reference_input[None])]
    aim = sum(torch.nn.functional.normalize(end, dim=-1) for end in ends)
    moved = result.encoder.embed(bug.bug_input[None]) - centre
    assert result.history[-1].bug_similarity == pytest.approx(float(cosine(moved, aim)), abs=1e-4)
    assert all(float(cosine(aim, end)) < 0.999 for end in ends)


def test_original_reference_target_moves_x_b_and_leaves_x_r_where_it_was(backdoored):
    """L_e onto h(x_r) held fixed: with nothing else trained, x_b reaches the reference's original embedding, and x_r
    is not dragged toward x_b (under the paper's h'(x_r) both ends move)."""
    from mudjacking.losses import cosine

    bug, data = backdoored.bug, backdoored.patching_set[:64]
    x_b, x_r = bug.bug_input[None], bug.reference_input[None]
    before = backdoored.encoder.embed(x_r)

    def patched(target: str) -> tuple[float, float]:
        config = PatchConfig(effectiveness_target=target, use_locality=False, lambda_gen=0.0, max_epochs=6,
                             early_stop=False, lr=1e-3)  # fmt: skip
        encoder = patch_encoder(backdoored.encoder, bug, backdoored.trigger, data, config, False).encoder
        return float(cosine(encoder.embed(x_b), before)), float(cosine(encoder.embed(x_r), before))

    fixed_bug, fixed_reference = patched("original_reference")
    _, dragged_reference = patched("reference")
    assert fixed_bug > 0.9 > 0.7 > float(cosine(backdoored.encoder.embed(x_b), before))  # measured 0.95 from 0.64
    assert fixed_reference > dragged_reference + 0.1  # measured 0.75 and 0.44


def test_a_held_reference_stays_where_it_was_and_its_goal_says_so(backdoored):
    """``reference_weight``: x_r, which the customer saw classified right, is held at h(x_r) on every step, and the
    bug's goal asks it to stay there. Under the paper's L_e (onto h'(x_r)) an unheld x_r is dragged toward x_b."""
    from mudjacking.losses import cosine

    bug, data = backdoored.bug, backdoored.patching_set[:64]
    before = backdoored.encoder.embed(bug.reference_input[None])

    def patched(weight: float):
        config = PatchConfig(effectiveness_target="reference", lambda_gen=0.0, max_epochs=6, early_stop=False,
                             lr=1e-3, reference_weight=weight)  # fmt: skip
        result = patch_encoder(backdoored.encoder, bug, backdoored.trigger, data, config, False)
        return result, float(cosine(result.encoder.embed(bug.reference_input[None]), before))

    (free, dragged), (held, kept) = patched(0.0), patched(10.0)
    assert kept > 0.98 and kept > dragged + 0.1  # measured 0.985 and 0.82
    assert held.history[-1].bugs[0]["reference_similarity"] == pytest.approx(kept, abs=1e-3)
    assert free.history[-1].bugs[0]["reference_similarity"] == pytest.approx(dragged, abs=1e-3)


def test_trigger_tokens_only_needs_a_text_model(backdoored):
    config = PatchConfig(trigger_tokens_only=True, max_epochs=1)
    with pytest.raises(ValueError, match="needs a text encoder"):
        patch_encoder(
            backdoored.encoder, backdoored.bug, backdoored.trigger, backdoored.patching_set[:64], config, False
        )


@pytest.mark.parametrize(
    "options",
    [
        {"effectiveness_target": "nearest"},
        {"reference_weight": -1.0},
        {"lr_schedule": "linear"},
        {"trigger_tokens_only": True, "weight_decay": 0.01},
    ],
)
def test_bad_patch_options_are_refused(options):
    with pytest.raises(ValueError):
        PatchConfig(**options)


def test_a_spent_time_budget_stops_the_patch(backdoored):
    config = PatchConfig(max_epochs=5, max_seconds=1e-9)
    result = patch_encoder(backdoored.encoder, backdoored.bug, backdoored.trigger, backdoored.patching_set[:64], config)
    assert result.steps == 0 and result.epochs == 1
    tuned = contrastive_finetune(backdoored.encoder, backdoored.patching_set[:64], ContrastiveConfig(max_seconds=1e-9))
    assert tuned.steps == 0
