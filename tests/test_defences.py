"""Baselines and patch options that the experiments compare: contrastive fine-tuning, option validation."""

from __future__ import annotations

import pytest
import torch

from mudjacking.contrastive import ContrastiveConfig, contrastive_finetune, drop_words
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
    """For images, x_b ⊖ t replaces the trigger's pixels with its fill (D's mean image when the trigger has none),
    and the goal check measures x_b against the original model's embedding of that."""
    from mudjacking.geometry import similarity

    data = backdoored.patching_set[:64]
    config = PatchConfig(effectiveness_target="clean_bug", max_epochs=1, goal_effectiveness=-1.0)
    result = patch_encoder(backdoored.encoder, backdoored.bug, backdoored.trigger, data, config, False)
    cleaned = backdoored.bug.bug_input[None] * (1 - backdoored.trigger.mask) + data.mean(0) * backdoored.trigger.mask
    target = backdoored.encoder.embed(cleaned)
    expected = similarity(result.encoder.embed(backdoored.bug.bug_input[None]), target, result.geometry.centre)
    assert result.history[-1].bug_similarity == pytest.approx(float(expected), abs=1e-4)


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
