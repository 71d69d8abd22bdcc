"""End to end on a tiny backdoored CNN (16x16 digits): the trigger is recovered and patching removes the backdoor."""

import json
from dataclasses import replace

import pytest
import torch
from conftest import TARGET

from mudjacking import devices
from mudjacking.devices import autocast_bf16
from mudjacking.errors import ConfigError
from mudjacking.evaluation import score_encoder
from mudjacking.patching import PatchConfig, patch_encoder
from mudjacking.triggers import ReverseConfig, reverse_engineer_trigger


def _scores(case, encoder):
    return score_encoder(
        encoder, case.probe, case.data.test_images, case.data.test_labels, case.trigger, TARGET, case.bug
    )


def test_the_fixture_is_really_backdoored(backdoored):
    scores = _scores(backdoored, backdoored.encoder)
    assert scores.attack_success_rate > 0.8
    assert scores.accuracy > 0.7


def test_patch_with_recovered_trigger_removes_the_backdoor(backdoored):
    before = {k: v.clone() for k, v in backdoored.encoder.state_dict().items()}
    recovery = reverse_engineer_trigger(
        backdoored.encoder, backdoored.bug, backdoored.patching_set, ReverseConfig(windows=(2, 3))
    )
    assert recovery.verified
    assert recovery.trigger.iou(backdoored.trigger) > 0.3
    result = patch_encoder(
        backdoored.encoder, backdoored.bug, recovery.trigger, backdoored.patching_set, show_progress=False
    )
    scores_before, scores_after = _scores(backdoored, backdoored.encoder), _scores(backdoored, result.encoder)
    assert scores_after.attack_success_rate < 0.2 < scores_before.attack_success_rate
    assert scores_after.bug_fixed
    # the tiny model on 1,257 unlabeled digits keeps held-out locality at ~0.989 after 20 epochs; measured drop
    # 3.5 points (scikit-learn 1.9, captum 0.9); a broken locality term loses far more
    assert scores_after.accuracy > scores_before.accuracy - 0.05
    assert all(torch.equal(before[k], v) for k, v in backdoored.encoder.state_dict().items()), "original modified"
    assert result.history and result.history[-1].bug_similarity > result.history[0].bug_similarity - 1e-6


def test_locality_only_baseline_keeps_the_backdoor(backdoored):
    config = PatchConfig(lambda_gen=0.0, lambda_eff=0.0, max_epochs=5, early_stop=False)
    result = patch_encoder(
        backdoored.encoder, backdoored.bug, backdoored.trigger, backdoored.patching_set, config, show_progress=False
    )
    assert _scores(backdoored, result.encoder).attack_success_rate > 0.8


def test_trainable_patterns_freeze_everything_else(backdoored):
    config = PatchConfig(trainable=("network.projection.*",), max_epochs=1, early_stop=False)
    result = patch_encoder(
        backdoored.encoder, backdoored.bug, backdoored.trigger, backdoored.patching_set, config, show_progress=False
    )
    before, after = backdoored.encoder.state_dict(), result.encoder.state_dict()
    changed = {k for k in before if before[k].is_floating_point() and not torch.equal(before[k], after[k])}
    assert changed == {"network.projection.weight", "network.projection.bias"}
    assert result.trainable_parameters == sum(after[k].numel() for k in changed)


def test_early_stop_ends_once_goals_are_met(backdoored):
    # a lax pull goal (0.5) stopped after one epoch with the trigger still pulling 0.45 of the way
    config = PatchConfig(
        lr=1e-3, max_epochs=40, min_epochs=1, goal_locality=0.5, goal_generalizability=0.5, goal_effectiveness=0.5,
        goal_pull=0.25,
    )  # fmt: skip
    result = patch_encoder(
        backdoored.encoder, backdoored.bug, backdoored.trigger, backdoored.patching_set, config, show_progress=False
    )
    assert result.goals_met and result.epochs < 40
    # it stopped because the patch worked, not because lax goals were met by a model that never moved
    assert result.pull_before > 0.5 and result.history[-1].holdout_pull <= config.goal_pull


@pytest.mark.parametrize(
    "bad",
    [{"optimizer": "rmsprop"}, {"lr": 0}, {"holdout_fraction": 1.0}, {"lambda_gen": -1}, {"whitened_locality": -1}],
)
def test_config_validation(bad):
    with pytest.raises(ValueError):
        PatchConfig(**bad)


def test_unknown_parameter_pattern_is_an_error(backdoored):
    with pytest.raises(ValueError, match="match no parameter"):
        patch_encoder(
            backdoored.encoder,
            backdoored.bug,
            backdoored.trigger,
            backdoored.patching_set,
            PatchConfig(trainable=("nothing.*",)),
            show_progress=False,
        )


def test_augmented_copies_enlarge_the_training_set(backdoored):
    patching_set = backdoored.patching_set[:200]
    config = PatchConfig(augmented_copies=2, max_epochs=1, early_stop=False, batch_size=50, holdout_fraction=0.2)
    result = patch_encoder(backdoored.encoder, backdoored.bug, backdoored.trigger, patching_set, config, False)
    assert result.steps == -(-(160 * 3 + 1) // 50)  # 160 training images, 2 copies each, plus x_r


def test_augmented_copies_keep_shifted_images_in_place(backdoored):
    """Locality on a neighbourhood of D: images D never held (shrunk and moved) stay closer to where they were."""
    shifted = torch.nn.functional.pad(backdoored.data.test_images[:300, :, :-3, :-3], (0, 3, 3, 0))

    def locality(copies):  # the same number of steps either way
        config = PatchConfig(augmented_copies=copies, max_epochs=4 // (copies + 1), early_stop=False, seed=0)
        result = patch_encoder(
            backdoored.encoder, backdoored.bug, backdoored.trigger, backdoored.patching_set, config, False
        )
        before, after = backdoored.encoder.embed(shifted), result.encoder.embed(shifted)
        return torch.nn.functional.cosine_similarity(before, after).mean().item()

    assert locality(3) > locality(0)  # measured 0.955 vs 0.935


def test_whitened_locality_keeps_held_out_images_in_place_in_d_s_whitened_space(backdoored):
    """Images D never held move less where D hardly varies: the change the cosine alone lets through."""
    from mudjacking.losses import whitened_locality_loss, whitening

    held_out = backdoored.data.test_images[:300]
    whitener = whitening(backdoored.encoder.embed(backdoored.patching_set))

    def change(weight):  # the same steps either way
        config = PatchConfig(whitened_locality=weight, max_epochs=2, early_stop=False, seed=0)
        result = patch_encoder(
            backdoored.encoder, backdoored.bug, backdoored.trigger, backdoored.patching_set, config, False
        )
        before, after = backdoored.encoder.embed(held_out), result.encoder.embed(held_out)
        return whitened_locality_loss(after, before, whitener).item()

    assert change(1.0) < 0.8 * change(0.0)


class Offset(torch.nn.Module):
    """The tiny CNN with a large constant added to every embedding: one narrow cone, as dense post-ReLU features."""

    def __init__(self, network: torch.nn.Module) -> None:
        super().__init__()
        self.network = network

    def forward(self, pixels):
        return self.network(pixels) + 30.0


def test_a_narrow_cone_is_patched_in_centred_similarities(backdoored):
    from mudjacking.encoders import ModuleEncoder

    encoder = ModuleEncoder(Offset(backdoored.encoder.network), backdoored.encoder.input_spec)
    config = PatchConfig(max_epochs=2, early_stop=False)
    result = patch_encoder(encoder, backdoored.bug, backdoored.trigger, backdoored.patching_set[:400], config, False)
    assert result.geometry.narrow_cone and result.geometry.centre is not None
    assert result.geometry.mean_pairwise_cosine > 0.9
    # plain cosine would call every held-out input unchanged; centred, the patch's real movement shows
    assert result.history[0].holdout_locality < 0.999


def test_a_trigger_answered_anywhere_gets_twice_the_passes_copies_and_whitening_and_a_note():
    from mudjacking.recipes import adapt_recipe, image_recipe
    from mudjacking.triggers import ImageTrigger

    trigger = ImageTrigger.square((1, 8, 8), 2)
    trigger.anywhere = True
    config, note = adapt_recipe(None, image_recipe(), trigger, torch.rand(4, 1, 8, 8))
    recipe = image_recipe()
    assert config.max_epochs == 2 * recipe.max_epochs and "anywhere" in note
    assert config.augmented_copies == 2 * recipe.augmented_copies
    assert config.whitened_locality == 2 * recipe.whitened_locality
    given = {"max_epochs": 3, "augmented_copies": 1}
    config, note = adapt_recipe(None, recipe, trigger, torch.rand(4, 1, 8, 8), given)
    assert (config.max_epochs, config.augmented_copies) == (recipe.max_epochs, recipe.augmented_copies)  # the user's
    assert config.whitened_locality == 2 * recipe.whitened_locality and "whitened" in note  # choices stand
    everything = {**given, "whitened_locality": 0.0}
    assert adapt_recipe(None, recipe, trigger, torch.rand(4, 1, 8, 8), everything) == (recipe, None)
    trigger.fresh = True  # a dynamic trigger: the note says the patch stamps fresh noise too, whatever was given
    config, note = adapt_recipe(None, recipe, trigger, torch.rand(4, 1, 8, 8), everything)
    assert config == recipe and note.startswith("fresh noise in the trigger's shape")


def test_bf16_forward_patch_removes_the_backdoor_and_keeps_float32_weights(backdoored):
    config = PatchConfig(precision="bf16", max_epochs=10)
    result = patch_encoder(
        backdoored.encoder, backdoored.bug, backdoored.trigger, backdoored.patching_set, config, show_progress=False
    )
    assert _scores(backdoored, result.encoder).attack_success_rate < 0.2
    assert all(p.dtype == torch.float32 for p in result.encoder.parameters())
    assert 0 < result.step_seconds < result.seconds


def test_auto_precision_is_bf16_only_where_the_device_computes_it_natively(backdoored, monkeypatch):
    cpu = torch.device("cpu")
    assert autocast_bf16("bf16", cpu) and not autocast_bf16("fp32", cpu)
    runs = {}
    for native in (False, True):
        monkeypatch.setattr(devices, "native_cpu_bf16", lambda native=native: native)
        assert autocast_bf16("auto", cpu) is native
        config = PatchConfig(precision="auto", max_epochs=1, device="cpu")
        runs[native] = patch_encoder(backdoored.encoder, backdoored.bug, backdoored.trigger, backdoored.patching_set,
                                     config, show_progress=False)  # fmt: skip
        assert runs[native].autocast_bf16 is native and runs[native].summary()["autocast_bf16"] is native
    fp32, bf16 = (runs[native].encoder.state_dict() for native in (False, True))
    assert any(not torch.equal(fp32[k], bf16[k]) for k in fp32)  # the autocast did run: other arithmetic


def test_a_contrastive_baseline_in_bf16_keeps_float32_weights(backdoored):
    from mudjacking.defences.contrastive import ContrastiveConfig, contrastive_finetune

    config = ContrastiveConfig(epochs=1, precision="bf16", device="cpu")
    tuned = contrastive_finetune(backdoored.encoder, backdoored.patching_set, config, show_progress=False)
    assert tuned.steps > 0 and tuned.autocast_bf16
    assert all(p.dtype == torch.float32 for p in tuned.encoder.parameters())
    with pytest.raises(ConfigError, match="precision"):
        ContrastiveConfig(precision="half")


def test_unknown_precision_is_refused():
    with pytest.raises(ConfigError, match="precision"):
        PatchConfig(precision="fp8")


def test_a_frozen_lower_part_run_once_gives_the_same_patch(backdoored):
    trained = ("network.body.6*", "network.body.7*", "network.projection.*")  # the last stage and the projection
    results = {
        reuse: patch_encoder(
            backdoored.encoder, backdoored.bug, backdoored.trigger, backdoored.patching_set,
            PatchConfig(trainable=trained, max_epochs=2, early_stop=False, reuse_frozen=reuse), show_progress=False,
        )
        for reuse in (True, False)
    }  # fmt: skip
    cached, live = (results[flag].encoder.state_dict() for flag in (True, False))
    assert results[True].steps == results[False].steps
    assert all(torch.allclose(cached[k], live[k], atol=1e-4) for k in cached if cached[k].is_floating_point())
    assert any(not torch.equal(cached[k], backdoored.encoder.state_dict()[k]) for k in cached)


def test_the_frozen_prefix_ends_where_the_first_trained_parameter_is():
    from conftest import tiny_encoder

    from mudjacking.patching import frozen_prefix

    encoder = tiny_encoder()
    split = frozen_prefix(encoder, {"network.body.6.weight", "network.projection.weight"})
    assert split is not None and split.stages == 1 + 1 + 6  # preprocessing, channels-last, body layers 0-5
    images = torch.rand(3, 1, 16, 16)
    with torch.no_grad():
        assert torch.allclose(split.upper(split.lower(images)), encoder(images), atol=1e-6)
    assert frozen_prefix(encoder, {"network.body.0.weight"}) is None  # below it only the parameter-free preprocessing
    assert frozen_prefix(encoder, set()) is None  # nothing trained: nothing to split


def test_a_patch_of_part_of_the_trigger_is_not_called_a_fix(backdoored):
    """Given a quarter of the real 4x4 square (and no training growth), the patch neutralises that quarter; the
    backdoor still answers the whole square, and the wider stamp of x_b's pixels around the quarter shows it without
    any label."""
    from mudjacking.triggers import ImageTrigger

    part = torch.zeros(16, 16)
    part[11:13, 11:13] = 1  # the top-left 2x2 of the square at rows and columns 11-14
    assert float((part * backdoored.trigger.mask).sum()) == 4
    trigger = ImageTrigger(part, backdoored.bug.bug_input)
    config = PatchConfig(max_epochs=6, augmented_copies=0, trigger_dilation=0)
    result = patch_encoder(backdoored.encoder, backdoored.bug, trigger, backdoored.patching_set, config, False)
    assert _scores(backdoored, result.encoder).attack_success_rate > 0.3  # the backdoor is still there
    last = result.history[-1].bugs[0]
    assert last["widened_pull"] > PatchConfig().goal_pull and not last["fixed"] and not result.goals_met


def test_a_trigger_called_anywhere_is_still_judged_where_it_was_found(backdoored):
    """A backdoor taught one place answers its stamp moved elsewhere weakly; judging such a trigger on random places
    only would call the patch done while the real place still works."""
    from dataclasses import replace

    from mudjacking.patching import excess_pull
    from mudjacking.triggers.pull import pull_toward

    encoder, fixed = backdoored.encoder, backdoored.trigger
    anywhere = replace(fixed, anywhere=True)
    holdout = backdoored.patching_set[:300]
    clean, point = encoder.embed(holdout), encoder.embed(backdoored.bug.bug_input[None])
    rows = torch.ones(len(holdout), dtype=torch.bool)
    moved_only = float(pull_toward(clean, encoder.embed(anywhere.apply(holdout)), point).mean())
    at_its_place = excess_pull(encoder, fixed, holdout, clean, rows, point, None)
    assert moved_only < at_its_place - 0.1
    assert excess_pull(encoder, anywhere, holdout, clean, rows, point, None) == pytest.approx(at_its_place)
    assert [placed.anywhere for placed in anywhere.placements()] == [False, True]


def _interrupted_and_resumed(arguments, folder, at_pass):
    """The patch run whole, and run again with an interruption during pass ``at_pass`` then resumed."""
    from mudjacking.checkpoints import PatchCheckpoints, fingerprint

    whole = patch_encoder(*arguments, show_progress=False)
    checkpoints = PatchCheckpoints(folder / ".out.checkpoint", fingerprint(*arguments))

    def interrupt(record, model):
        if record.epoch == at_pass:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        patch_encoder(*arguments, show_progress=False, on_epoch=interrupt, checkpoints=checkpoints)
    saved = json.loads((checkpoints.folder / "state.json").read_text())
    assert saved["epochs"] == at_pass - 1  # interrupted before that pass was saved
    resumed = patch_encoder(*arguments, show_progress=False, checkpoints=checkpoints)
    final, expected = resumed.encoder.state_dict(), whole.encoder.state_dict()
    assert all(torch.equal(final[k], expected[k]) for k in expected)
    return whole, resumed, checkpoints


def test_a_patch_interrupted_and_resumed_ends_as_the_uninterrupted_one(backdoored, tmp_path):
    from mudjacking.checkpoints import PatchCheckpoints, fingerprint

    config = PatchConfig(max_epochs=4, early_stop=False)
    arguments = (backdoored.encoder, backdoored.bug, backdoored.trigger, backdoored.patching_set[:600], config)
    whole, resumed, checkpoints = _interrupted_and_resumed(arguments, tmp_path, at_pass=2)
    assert resumed.steps == whole.steps and [r.epoch for r in resumed.history] == [1, 2, 3, 4]
    other = PatchCheckpoints(checkpoints.folder, fingerprint(*arguments[:-1], PatchConfig(max_epochs=5)))
    with pytest.raises(ConfigError, match="another patch"):
        other.load()


def test_a_run_that_misses_its_goals_hands_back_the_pass_that_came_closest(backdoored):
    # an unreachable locality goal (this tiny model holds ~0.83): every pass misses it, and the bug goal, so the
    # passes compare on how far short of those two they fell, each in units of its goal's slack (1 - goal)
    config = PatchConfig(lr=1e-2, max_epochs=5, min_epochs=1, goal_locality=0.9999)
    weights = {}

    def keep(record, model):
        weights[record.epoch] = {name: tensor.clone() for name, tensor in model.state_dict().items()}

    arguments = (backdoored.encoder, backdoored.bug, backdoored.trigger, backdoored.patching_set[:600], config)
    result = patch_encoder(*arguments, show_progress=False, on_epoch=keep)
    assert result.epochs == 5 and not result.goals_met
    assert all(r.bug_similarity < 0.95 and r.holdout_pull <= 0.1 and r.holdout_generalizability >= 0.98
               for r in result.history)  # fmt: skip
    closest = min(result.history, key=lambda r: (0.9999 - r.holdout_locality) / 1e-4 + (0.95 - r.bug_similarity) / 0.05)
    assert result.kept_pass == closest.epoch < 5 and result.kept is closest
    assert all(
        torch.equal(tensor, weights[closest.epoch][name]) for name, tensor in result.encoder.state_dict().items()
    )
    fixed_budget = replace(config, early_stop=False)
    assert patch_encoder(*arguments[:-1], fixed_budget, show_progress=False).kept_pass == 5  # a baseline's budget
    no_stop = patch_encoder(*arguments[:-1], replace(fixed_budget, keep_closest=True), show_progress=False)
    assert no_stop.kept_pass == closest.epoch  # the oracle on Mudjacking's budget still hands back its closest pass


def test_a_resumed_run_still_hands_back_the_closest_pass_from_before_the_interruption(backdoored, tmp_path):
    config = PatchConfig(lr=1e-2, max_epochs=6, min_epochs=1, goal_locality=0.9999)  # closest: an early pass (above)
    arguments = (backdoored.encoder, backdoored.bug, backdoored.trigger, backdoored.patching_set[:600], config)
    kept = patch_encoder(*arguments, show_progress=False).kept_pass  # which pass it is varies with library versions
    assert kept <= 4, "the closest pass must come two passes before the end for this test to check anything"
    # interrupted two passes after it, the last checkpoint holds a later pass and the closest one's weights beside
    whole, resumed, checkpoints = _interrupted_and_resumed(arguments, tmp_path, at_pass=kept + 2)
    assert resumed.kept_pass == whole.kept_pass == kept
    assert (checkpoints.folder / "closest.safetensors").is_file()
