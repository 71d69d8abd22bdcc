"""LoRA patches: adapters trained beside the frozen weights remove the backdoor, ship as a small file, and
``mudjacking apply`` merges them into the base bit for bit."""

from __future__ import annotations

import json
from dataclasses import replace

import pytest
import torch
from conftest import TARGET
from safetensors import safe_open
from typer.testing import CliRunner

from mudjacking.cli import app
from mudjacking.data import save_bug_report
from mudjacking.data.images import save_image_png
from mudjacking.encoders import load_encoder
from mudjacking.errors import ConfigError
from mudjacking.evaluation import score_encoder
from mudjacking.lora import LORA_FORMAT, lora_targets
from mudjacking.outputs import weights_sha256
from mudjacking.patching import PatchConfig, patch_encoder

runner = CliRunner()
CONFIG = PatchConfig(max_epochs=12, augmented_copies=0, lora_rank=4, lr=2e-3)


def test_a_lora_patch_removes_the_backdoor_and_leaves_a_plain_model(backdoored):
    before = {name: value.clone() for name, value in backdoored.encoder.state_dict().items()}
    result = patch_encoder(backdoored.encoder, backdoored.bug, backdoored.trigger, backdoored.patching_set, CONFIG,
                           show_progress=False)  # fmt: skip
    scores = score_encoder(result.encoder, backdoored.probe, backdoored.data.test_images, backdoored.data.test_labels,
                           backdoored.trigger, TARGET, backdoored.bug)  # fmt: skip
    # on this tiny model rank 4 removes the backdoor (ASR 0.0) at the full patch's cost (ACC 0.87 from 0.92, full
    # patch 0.87) but leaves x_b at cosine 0.94 to its target: the bug is not fixed on this model
    assert scores.attack_success_rate < 0.2 and scores.accuracy > 0.82
    assert list(result.encoder.state_dict()) == list(before)  # merged: no adapter layers left in the model
    assert all(torch.equal(before[k], v) for k, v in backdoored.encoder.state_dict().items()), "original modified"
    total = sum(p.numel() for p in backdoored.encoder.parameters())
    assert result.trainable_parameters == sum(v.numel() for v in result.adapter.values()) < 0.2 * total
    assert all("lora_" in name for name in result.adapter) and result.lora_targets


def test_lora_targets_follow_the_trainable_patterns_and_skip_what_lora_cannot_adapt(backdoored):
    everything = lora_targets(backdoored.encoder, ("*",))
    assert everything and all(not name.endswith(".weight") for name in everything)
    head = [name for name in everything if "head" in name or "projection" in name]
    if head:
        assert set(lora_targets(backdoored.encoder, (f"{head[0]}.*",))) == {head[0]}
    with pytest.raises(ConfigError, match="LoRA"):
        lora_targets(backdoored.encoder, ("no.such.layer*",))
    with pytest.raises(ConfigError, match="lora_rank"):
        replace(CONFIG, trigger_tokens_only=True)


@pytest.fixture()
def lora_case(backdoored, tmp_path):
    (tmp_path / "model").mkdir()
    backdoored.encoder.save(tmp_path / "model")
    save_bug_report(backdoored.bug, tmp_path / "bug")
    backdoored.trigger.save(tmp_path / "trigger.npz")
    (tmp_path / "data").mkdir()
    for index, image in enumerate(backdoored.patching_set[:400]):
        save_image_png(image, tmp_path / "data" / f"{index:04d}.png")
    return tmp_path


def test_the_cli_ships_a_lora_patch_as_adapters_that_apply_rebuilds_bit_for_bit(lora_case):
    arguments = ["patch", "--model", str(lora_case / "model"), "--bug", str(lora_case / "bug"), "--data",
                 str(lora_case / "data"), "--trigger", str(lora_case / "trigger.npz"), "--out", str(lora_case / "out"),
                 "--lora", "2", "--epochs", "3"]  # fmt: skip
    result = runner.invoke(app, arguments)
    assert result.exit_code in (0, 3), result.output
    report = json.loads((lora_case / "out" / "report.json").read_text())
    assert report["patch"]["config"]["lora_rank"] == 2 and report["patch"]["config"]["lr"] == 2e-3
    delta = lora_case / "out" / "patch_delta.safetensors"
    with safe_open(str(delta), framework="pt") as handle:
        assert handle.metadata()["format"] == LORA_FORMAT
    assert delta.stat().st_size < 0.15 * (lora_case / "model" / "model.safetensors").stat().st_size
    applied = runner.invoke(app, ["apply", "--model", str(lora_case / "model"), "--delta", str(delta),
                                  "--out", str(lora_case / "applied")])  # fmt: skip
    assert applied.exit_code == 0, applied.output
    assert weights_sha256(load_encoder(lora_case / "applied")) == weights_sha256(load_encoder(lora_case / "out/model"))
    shipped = load_encoder(lora_case / "out" / "model")  # another base: refused, nothing written
    wrong = runner.invoke(app, ["apply", "--model", str(lora_case / "out" / "model"), "--delta", str(delta),
                                "--out", str(lora_case / "wrong")])  # fmt: skip
    assert wrong.exit_code == 4 and weights_sha256(shipped) in wrong.output.replace("\n", "")
    assert not (lora_case / "wrong").exists()
