"""Every CLI command on a text model: sentence files in, the same outputs as for images out."""

from __future__ import annotations

import json

import pytest
from typer.testing import CliRunner

from mudjacking.cli import app
from mudjacking.data import BugReport, save_bug_report
from mudjacking.data.images import DataError
from mudjacking.data.text_files import load_labeled_texts, load_sentences
from mudjacking.encoders import load_encoder
from mudjacking.recipes import CONTEXT_LR_BASE, scaled_lr
from mudjacking.triggers import ImageTrigger

runner = CliRunner()


@pytest.fixture()
def text_files(text_case, tmp_path):
    backdoored, _, trigger, train, test = text_case
    (tmp_path / "model").mkdir()
    backdoored.save(tmp_path / "model")
    negatives = [t for t, y in zip(test[0], test[1].tolist(), strict=True) if y == 0]
    bug = BugReport(bug_input=trigger.apply(negatives[:1])[0], reference_input=negatives[1], label=0, modality="text")
    save_bug_report(bug, tmp_path / "bug")
    (tmp_path / "patching.txt").write_text("\n".join(train[0]) + "\n", encoding="utf-8")
    for name, (texts, labels) in (("train", train), ("test", test)):
        rows = [json.dumps({"text": t, "label": int(y)}) for t, y in zip(texts, labels.tolist(), strict=True)]
        (tmp_path / f"{name}.jsonl").write_text("\n".join(rows), encoding="utf-8")
    trigger.save(tmp_path / "true_trigger.json")
    return tmp_path


def test_reverse_trigger_on_text_writes_words_and_their_scores(text_files):
    out = text_files / "recovered"
    arguments = ["--model", str(text_files / "model"), "--bug", str(text_files / "bug"), "--out", str(out)]
    arguments += ["--data", str(text_files / "patching.txt"), "--force"]  # a random tiny BERT: nothing verifies
    result = runner.invoke(
        app, ["reverse-trigger", *arguments, "--true-trigger", str(text_files / "true_trigger.json")]
    )
    assert result.exit_code == 0, result.output
    assert {"trigger.json", "word_scores.png", "recovery.json"} <= {p.name for p in out.iterdir()}
    summary = json.loads((out / "recovery.json").read_text())
    bug_words = json.loads((text_files / "bug" / "bug.json").read_text())["bug_input"].split()
    assert [pair[0] for pair in summary["word_scores"]] == bug_words
    assert {word for unit in summary["words"] for word in unit.split()} <= set(bug_words)
    assert summary["exact_match"] == (summary["words"] == ["cf"])
    assert {c["source"] for c in summary["candidates"]} >= {"word ablation + k-means", "span of 2, rank 1"}


def test_patch_on_text_with_a_known_trigger_lowers_attack_success(text_files, text_case):
    _, probe, trigger, _, test = text_case
    out = text_files / "patched"
    arguments = ["patch", "--model", str(text_files / "model"), "--bug", str(text_files / "bug")]
    arguments += ["--data", str(text_files / "patching.txt"), "--out", str(out)]
    arguments += [
        "--trigger",
        str(text_files / "true_trigger.json"),
        "--lr",
        "1e-3",
        "--epochs",
        "10",
        "--batch-size",
        "32",
        "--no-trigger-tokens-only",  # a random tiny BERT reads every word alike: one row cannot carry the fix
    ]
    result = runner.invoke(app, arguments)
    assert result.exit_code in (0, 3), result.output
    report = json.loads((out / "report.json").read_text())
    assert report["trigger"]["source"].endswith("true_trigger.json")
    assert report["patch"]["config"]["effectiveness_target"] == "clean_bug"  # the rest is the text recipe
    patched = load_encoder(out / "model")
    assert patched.modality == "text"
    triggered = probe.predict(patched.embed(trigger.apply(test[0])))
    negatives = test[1] == 0
    assert float((triggered[negatives] == 1).float().mean()) < 0.3


def test_image_trigger_for_a_text_model_is_one_line_error(text_files):
    saved_trigger_npz = text_files / "square.npz"
    ImageTrigger.square((1, 8, 8), 2).save(saved_trigger_npz)
    out = text_files / "never"
    arguments = ["patch", "--model", str(text_files / "model"), "--bug", str(text_files / "bug")]
    arguments += ["--data", str(text_files / "patching.txt"), "--out", str(out), "--trigger", str(saved_trigger_npz)]
    result = runner.invoke(app, arguments)
    assert result.exit_code == 2
    assert "text trigger JSON" in result.output and len(result.output.strip().splitlines()) == 1
    assert not out.exists()


def test_evaluate_and_attack_take_sentence_files(text_files):
    out = text_files / "evaluation"
    arguments = [
        "evaluate",
        "--model",
        f"backdoored={text_files / 'model'}",
        "--train",
        str(text_files / "train.jsonl"),
    ]
    arguments += ["--test", str(text_files / "test.jsonl"), "--trigger", str(text_files / "true_trigger.json")]
    arguments += ["--target", "1", "--out", str(out), "--bug", str(text_files / "bug")]
    result = runner.invoke(app, arguments)
    assert result.exit_code == 0, result.output
    scores = json.loads((out / "evaluation.json").read_text())["scores"]["linear"]["backdoored"]["deployed"]
    assert scores["attack_success_rate"] > 0.8 and scores["bug_fixed"] is False

    (text_files / "references.txt").write_text("good great fun\nlovely superb film\n", encoding="utf-8")
    attacked = text_files / "attacked"
    arguments = ["attack", "--model", str(text_files / "model"), "--shadow", str(text_files / "patching.txt")]
    arguments += ["--references", str(text_files / "references.txt"), "--out", str(attacked)]
    result = runner.invoke(app, [*arguments, "--trigger-word", "mn", "--epochs", "1"])
    assert result.exit_code == 0, result.output
    assert json.loads((attacked / "trigger.json").read_text())["words"] == ["mn"]
    assert load_encoder(attacked / "model").modality == "text"


def test_sentence_files_are_validated(tmp_path):
    good = tmp_path / "d.jsonl"
    good.write_text('{"text": "a film", "label": 1}\n\n{"text": "dull", "label": 0}\n', encoding="utf-8")
    texts, labels, names = load_labeled_texts(good)
    assert texts == ["a film", "dull"] and labels.tolist() == [1, 0] and names == ["0", "1"]
    tsv = tmp_path / "d.tsv"
    tsv.write_text("2\tthe news\n", encoding="utf-8")
    assert load_labeled_texts(tsv)[1].tolist() == [2]
    latin = tmp_path / "l.txt"
    latin.write_bytes("caf\xe9 cr\xe8me".encode("latin-1"))
    bad_cases = {
        latin: "not UTF-8",
        tmp_path / "missing.txt": "file not found",
        tmp_path / "e.txt": "no sentences",
    }
    (tmp_path / "e.txt").write_text("\n \n", encoding="utf-8")
    for path, message in bad_cases.items():
        with pytest.raises(DataError, match=message) as error:
            load_sentences(path)
        assert str(path) in str(error.value)
    unlabeled = tmp_path / "u.jsonl"
    unlabeled.write_text('{"text": "no label"}\n', encoding="utf-8")
    with pytest.raises(DataError, match="line 1 has no integer label"):
        load_labeled_texts(unlabeled)


@pytest.mark.parametrize(
    "spec",
    [
        {"bug_input": "", "reference_input": "dull film"},
        {"bug_input": "dull film", "reference_input": "dull film"},
        {"bug_input": "dull " * 1200, "reference_input": "dull film"},
        None,  # not UTF-8
    ],
)
def test_bad_text_bug_report_is_one_line_and_writes_nothing(text_files, spec):
    bad = text_files / "bad_bug.json"
    if spec is None:
        bad.write_bytes(
            '{"modality": "text", "bug_input": "caf\xe9 cf", "reference_input": "x", "label": 0}'.encode("latin-1")
        )
    else:
        bad.write_text(json.dumps({"modality": "text", "label": 0, **spec}), encoding="utf-8")
    out = text_files / "never"
    arguments = ["patch", "--model", str(text_files / "model"), "--bug", str(bad)]
    result = runner.invoke(app, [*arguments, "--data", str(text_files / "patching.txt"), "--out", str(out)])
    assert result.exit_code == 2
    lines = result.output.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error:") and str(bad) in lines[0]
    assert not out.exists()


def test_text_defaults_follow_the_modality_and_a_common_trigger_word_is_not_retrained(text_files):
    """The text recipe by default (trigger rows, anchored L_gen, clean-bug target); a trigger word common in the
    patching sentences switches to patching the whole model, and the report says so."""
    common = text_files / "the.json"
    common.write_text('{"words": ["the"]}', encoding="utf-8")
    arguments = ["patch", "--model", str(text_files / "model"), "--bug", str(text_files / "bug")]
    arguments += ["--data", str(text_files / "patching.txt"), "--epochs", "1"]
    rare = runner.invoke(
        app, [*arguments, "--out", str(text_files / "rare"), "--trigger", str(text_files / "true_trigger.json")]
    )
    assert rare.exit_code in (0, 3), rare.output
    config = json.loads((text_files / "rare" / "report.json").read_text())["patch"]["config"]
    assert config["trigger_tokens_only"] and config["lr"] == 0.03 and config["anchor_clean"]
    result = runner.invoke(app, [*arguments, "--out", str(text_files / "common"), "--trigger", str(common)])
    assert result.exit_code in (0, 3), result.output
    report = json.loads((text_files / "common" / "report.json").read_text())
    assert not report["patch"]["config"]["trigger_tokens_only"]
    whole_model_lr = scaled_lr(report["patch"]["trainable_parameters"], base=CONTEXT_LR_BASE)
    assert whole_model_lr < 0.03 and report["patch"]["config"]["lr"] == pytest.approx(whole_model_lr)
    assert "'the' in" in report["recipe_note"] and "whole model" in " ".join(result.output.split())
