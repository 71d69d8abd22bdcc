"""The image pipeline end to end at toy size, as the image demo runs it: the real setting's data, a SimCLR CNN
pre-trained for a few steps, BadEncoder, two customers, trigger recovery, Mudjacking and both baselines."""

from __future__ import annotations

import json
from dataclasses import replace

import pytest

from mudjacking.attacks import BadEncoderConfig
from mudjacking.demo import run_demo
from mudjacking.pipeline.settings import ImageSetting
from mudjacking.pretraining import PretrainConfig
from mudjacking.recipes import image_recipe

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def toy_run(tmp_path_factory):
    setting = ImageSetting(
        pretrain=PretrainConfig(steps=150, batch_size=128),
        attack=BadEncoderConfig(epochs=4),
        shadow_size=1500,
        patching_size=400,
        downstream_train_size=1000,
        test_size=1000,
        probe_kinds=("linear",),
        patch=replace(image_recipe(), max_epochs=3, augmented_copies=1),
    )
    out = tmp_path_factory.mktemp("image-pipeline") / "out"
    return run_demo("image", out=out, show_progress=False, setting=setting), out


def test_toy_image_pipeline_attacks_finds_a_bug_recovers_the_square_and_patches(toy_run):
    report, out = toy_run
    tasks = report["summary"]["tasks"]
    assert len(tasks) == 2  # the Fashion-MNIST customer and the digits one
    first, second = tasks.values()
    assert first["linear"]["asr_before"] > 0.3  # the attack took (0.50 here), so there is something to patch
    assert first["linear"]["asr_after"] < first["linear"]["asr_before"] / 5  # 0.001 here
    assert report["summary"]["trigger"]["iou"] > 0.4  # the recovered mask covers the attacker's square (0.76 here)
    assert isinstance(first["linear"]["bug_fixed"], bool) and second["linear"]["bug_fixed"] is None
    assert isinstance(first["linear"]["reference_kept"], bool) and second["linear"]["reference_kept"] is None
    assert set(first["linear"]["baseline_asr"]) == {"locality-only", "no-L_gen"}
    assert all(b["epochs"] == report["patch"]["epochs"] for b in report["baselines"].values())


def test_toy_image_pipeline_writes_what_the_report_names(toy_run):
    report, out = toy_run
    written = {path.name for path in out.iterdir()}
    assert {
        "report.json",
        "bug",
        "model",
        "backdoored_model",
        "clean_model",
        "trigger.npz",
        "true_trigger.npz",
    } <= written
    assert {"trigger_heatmap.png", "score_histogram.png", "loss_curves.png"} <= written
    assert {"before_after_task1_linear.png", "before_after_task2_linear.png"} <= written
    assert json.loads((out / "report.json").read_text())["bug"] == report["bug"]
