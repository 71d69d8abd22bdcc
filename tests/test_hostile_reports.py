"""A report filed to plant a backdoor is refused before anything is patched: a sticker on an ordinary input, x_r of
another class, the label of that class. A genuine backdoor's trigger lands nearly every clean input at h(x_b); a
sticker's region (a piece of x_b's own object) drags each only part of the way."""

from __future__ import annotations

import json

import pytest
import torch
from conftest import TARGET
from typer.testing import CliRunner

from mudjacking.checks import require_backdoor_signature
from mudjacking.cli import app
from mudjacking.data import BugReport, save_bug_report
from mudjacking.data.images import save_image_png
from mudjacking.errors import CheckFailed
from mudjacking.triggers import ImageTrigger, measure_pull

runner = CliRunner()


def _sticker() -> ImageTrigger:
    mask = torch.zeros(16, 16)
    mask[1:5, 1:5] = 1
    return ImageTrigger(mask, torch.rand(1, 16, 16, generator=torch.Generator().manual_seed(0)))


def _landed(case, trigger, target_input):
    check = case.patching_set[:200]
    target = case.encoder.embed(target_input[None])
    return measure_pull(case.encoder, trigger, check, case.encoder.embed(check), target)


def test_the_backdoor_lands_nearly_every_input_and_a_sticker_lands_few(backdoored):
    genuine = _landed(backdoored, backdoored.trigger, backdoored.bug.bug_input)
    stickered = _sticker().apply(backdoored.data.test_images[:1])[0]
    hostile = _landed(backdoored, _sticker(), stickered)
    # the whole noise sticker is a strong feature of this tiny 16x16 model (it lands 0.62 of the inputs, the trigger
    # 0.89); the region recovered from a sticker report lands fewer (0.41, refused below); on the demo's model 0-0.28
    assert genuine.landed > 0.8 > hostile.landed + 0.15
    assert 0 <= hostile.landed <= 1 and genuine.summary()["landed"] == round(genuine.landed, 4)


def test_the_signature_check_refuses_in_one_line_with_its_figures():
    require_backdoor_signature(0.9, 0.85, "bug.json")
    with pytest.raises(CheckFailed, match=r"bug.json: not a backdoor's signature.* lands 12% .*--force") as error:
        require_backdoor_signature(0.12, 0.41, "bug.json")
    assert "\n" not in str(error.value)
    with pytest.raises(CheckFailed):
        require_backdoor_signature(float("nan"), float("nan"), "bug.json")


@pytest.fixture()
def hostile_case(backdoored, tmp_path):
    """The tiny backdoored model, its patching set, and a sticker report: a clean test digit of one class with a
    noise sticker, x_r a digit of another class (not the attacker's), labelled as that class."""
    images, labels = backdoored.data.test_images, backdoored.data.test_labels
    predicted = backdoored.probe.predict(backdoored.encoder.embed(images))
    right = (predicted == labels) & (labels != TARGET)
    a = int(torch.nonzero(right & (labels == 3))[0])
    r = int(torch.nonzero(right & (labels == 5))[0])
    x_b = _sticker().apply(images[a : a + 1])[0]
    claimed = int(backdoored.probe.predict(backdoored.encoder.embed(x_b[None]))[0])
    assert claimed != 5
    save_bug_report(BugReport(x_b, images[r], label=5, predicted_label=claimed), tmp_path / "bug")
    (tmp_path / "model").mkdir()
    backdoored.encoder.save(tmp_path / "model")
    (tmp_path / "data").mkdir()
    for index, image in enumerate(backdoored.patching_set[:600]):
        save_image_png(image, tmp_path / "data" / f"{index:04d}.png")
    return tmp_path


def _patch(case, *extra):
    arguments = ["patch", "--model", str(case / "model"), "--bug", str(case / "bug"), "--data", str(case / "data")]
    return runner.invoke(app, [*arguments, "--out", str(case / "out"), "--epochs", "2", *extra])


def test_a_sticker_report_is_refused_and_nothing_is_written(hostile_case):
    result = _patch(hostile_case)
    assert result.exit_code == 4, result.output  # refused by a self-check
    assert "not a backdoor's signature" in result.output and "--force" in result.output
    assert not (hostile_case / "out").exists()


def test_force_patches_the_sticker_report_and_the_report_records_it(hostile_case):
    result = _patch(hostile_case, "--force")
    assert result.exit_code in (0, 3), result.output
    report = json.loads((hostile_case / "out" / "report.json").read_text())
    assert report["forced"] is True
