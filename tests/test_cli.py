"""The CLI parses and delegates; run in-process with typer's runner (no subprocess)."""

from __future__ import annotations

import json

import pytest
import torch
from typer.testing import CliRunner

from mudjacking.cli import app
from mudjacking.data import BugReport, save_bug_report
from mudjacking.data.images import save_image_png

runner = CliRunner()


def test_every_command_has_help():
    for command in ("demo", "patch", "reverse-trigger", "attack", "evaluate"):
        result = runner.invoke(app, [command, "--help"])
        assert result.exit_code == 0, result.output
        assert "--out" in result.output


def test_patch_requires_its_inputs():
    result = runner.invoke(app, ["patch", "--model", "m"])
    assert result.exit_code == 2
    assert "Missing option" in result.output


@pytest.fixture()
def saved_case(backdoored, tmp_path):
    model = tmp_path / "model"
    model.mkdir()
    backdoored.encoder.save(model)
    save_bug_report(backdoored.bug, tmp_path / "bug")
    data = tmp_path / "data"
    data.mkdir()
    for index, image in enumerate(backdoored.patching_set[:120]):
        save_image_png(image, data / f"{index:04d}.png")
    return tmp_path


def _patch(case, out, *extra: str):
    arguments = ["patch", "--model", str(case / "model"), "--bug", str(case / "bug"), "--data", str(case / "data")]
    return runner.invoke(app, [*arguments, "--out", str(out), *extra])


def test_patch_writes_model_delta_trigger_and_report(saved_case):
    out = saved_case / "out"
    before = (saved_case / "model" / "model.safetensors").read_bytes()
    result = _patch(saved_case, out, "--epochs", "2", "--seed", "3", "--whitened-locality", "0.1")
    assert result.exit_code in (0, 3), result.output  # 3: written, but 2 epochs may not reach the goals
    names = {p.name for p in out.iterdir()}
    assert {
        "model",
        "patch_delta.safetensors",
        "trigger.npz",
        "trigger_authors_format.npz",
        "trigger_heatmap.png",
        "report.json",
    } <= names
    report = json.loads((out / "report.json").read_text())
    assert report["patch"]["epochs"] <= 2 and report["patch"]["config"]["seed"] == 3
    assert report["patch"]["config"]["whitened_locality"] == 0.1  # the option given
    assert report["patch"]["config"]["augmented_copies"] == 3  # the image recipe's, not PatchConfig's bare default
    assert report["recipe"] == "image defaults + options"
    assert report["patching_set_size"] == 120
    assert (saved_case / "model" / "model.safetensors").read_bytes() == before, "input model modified"
    again = _patch(saved_case, out)
    assert again.exit_code == 2 and "--overwrite" in again.output


def test_bad_bug_report_fails_in_one_line_and_writes_nothing(saved_case):
    (saved_case / "bug" / "bug.json").write_text('{"bug_input": "x_b.png", "reference_input": "x_b.png", "label": 1}')
    out = saved_case / "out"
    result = _patch(saved_case, out)
    assert result.exit_code == 2
    message = result.output.strip()
    assert message.startswith("error:") and "bug.json" in message and "identical" in message
    assert len(message.splitlines()) == 1
    assert not out.exists()
    assert sorted(p.name for p in saved_case.iterdir()) == ["bug", "data", "model"]


def test_pickled_model_is_refused_without_opt_in(saved_case):
    torch.save(torch.nn.Flatten(), saved_case / "model.pt")
    result = runner.invoke(
        app,
        [
            "reverse-trigger",
            "--model",
            str(saved_case / "model.pt"),
            "--bug",
            str(saved_case / "bug"),
            "--data",
            str(saved_case / "data"),
            "--out",
            str(saved_case / "out"),
        ],
    )
    assert result.exit_code == 2 and "--allow-pickle" in result.output


def test_reverse_trigger_reports_iou_against_a_known_trigger(saved_case, backdoored):
    backdoored.trigger.save(saved_case / "true.npz")
    out = saved_case / "rev"
    result = runner.invoke(
        app,
        [
            "reverse-trigger",
            "--model",
            str(saved_case / "model"),
            "--bug",
            str(saved_case / "bug"),
            "--data",
            str(saved_case / "data"),
            "--out",
            str(out),
            "--window",
            "2",
            "--window",
            "3",
            "--true-trigger",
            str(saved_case / "true.npz"),
        ],
    )
    assert result.exit_code == 0, result.output
    summary = json.loads((out / "recovery.json").read_text())
    assert summary["config"]["windows"] == [2, 3] and summary["iou_with_true_trigger"] > 0.3
    assert summary["verified"] and summary["verification"]["strength"] > 0.25 and summary["bug_visibility"]["visible"]
    assert "moves clean inputs" in result.output


def test_evaluate_rejects_model_without_name(saved_case):
    result = runner.invoke(
        app,
        [
            "evaluate",
            "--model",
            str(saved_case / "model"),
            "--train",
            "a.npz",
            "--test",
            "b.npz",
            "--trigger",
            "t.npz",
            "--target",
            "0",
            "--out",
            str(saved_case / "e"),
        ],
    )
    assert result.exit_code == 2 and "NAME=DIR" in result.output


def test_evaluate_scores_models_from_npz_sets(saved_case, backdoored):
    data = backdoored.data
    import numpy as np

    np.savez(saved_case / "train.npz", x=data.train_images[:300].numpy(), y=data.train_labels[:300].numpy())
    np.savez(saved_case / "test.npz", x=data.test_images[:200].numpy(), y=data.test_labels[:200].numpy())
    backdoored.trigger.save(saved_case / "t.npz")
    out = saved_case / "eval"
    result = runner.invoke(
        app,
        [
            "evaluate",
            "--model",
            f"backdoored={saved_case / 'model'}",
            "--train",
            str(saved_case / "train.npz"),
            "--test",
            str(saved_case / "test.npz"),
            "--trigger",
            str(saved_case / "t.npz"),
            "--target",
            "0",
            "--bug",
            str(saved_case / "bug"),
            "--out",
            str(out),
        ],
    )
    assert result.exit_code == 0, result.output
    scores = json.loads((out / "evaluation.json").read_text())["scores"]["linear"]["backdoored"]["deployed"]
    assert scores["attack_success_rate"] > 0.8 and scores["bug_fixed"] is False
    assert (out / "scores_linear.png").exists()


def test_attack_writes_a_backdoored_model_and_trigger(tmp_path, digits):
    from conftest import tiny_encoder

    (tmp_path / "clean").mkdir()
    tiny_encoder().save(tmp_path / "clean")
    for name, images in (
        ("shadow", digits.train_images[:64]),
        ("refs", digits.train_images[digits.train_labels == 0][:3]),
    ):
        (tmp_path / name).mkdir()
        for index, image in enumerate(images):
            save_image_png(image, tmp_path / name / f"{index}.png")
    out = tmp_path / "out"
    result = runner.invoke(
        app,
        [
            "attack",
            "--model",
            str(tmp_path / "clean"),
            "--shadow",
            str(tmp_path / "shadow"),
            "--references",
            str(tmp_path / "refs"),
            "--out",
            str(out),
            "--epochs",
            "1",
            "--trigger-size",
            "3",
        ],
    )
    assert result.exit_code == 0, result.output
    assert {"model", "trigger.npz", "trigger_authors_format.npz", "attack.json"} <= {p.name for p in out.iterdir()}
    assert json.loads((out / "attack.json").read_text())["trigger_pixels"] == 9
    assert json.loads((out / "attack.json").read_text())["kind"] == "badencoder"


def test_attack_kind_picks_a_registered_attack_and_an_unknown_one_is_one_line(tmp_path, monkeypatch):
    """A new attack is one function and its registration: ``mudjacking attack --kind NAME`` runs it."""
    from conftest import tiny_encoder

    from mudjacking.attacks import registry
    from mudjacking.attacks.badencoder import AttackResult

    (tmp_path / "clean").mkdir()
    tiny_encoder().save(tmp_path / "clean")
    for name in ("shadow", "refs"):
        (tmp_path / name).mkdir()
        for index in range(3):
            save_image_png(torch.rand(1, 16, 16), tmp_path / name / f"{index}.png")
    called = []

    def toy(encoder, shadow, references, trigger, config, show_progress):
        called.append(len(shadow))
        return AttackResult(encoder, trigger, config, 0.0, 1.0)

    monkeypatch.setitem(registry._ATTACKS, "toy", registry.Attack(toy))
    base = ["attack", "--model", str(tmp_path / "clean"), "--shadow", str(tmp_path / "shadow"), "--references",
            str(tmp_path / "refs"), "--trigger-size", "2"]  # fmt: skip
    result = runner.invoke(app, [*base, "--out", str(tmp_path / "toy"), "--kind", "toy"])
    assert result.exit_code == 0, result.output
    assert called == [3] and json.loads((tmp_path / "toy" / "attack.json").read_text())["kind"] == "toy"
    result = runner.invoke(app, [*base, "--out", str(tmp_path / "none"), "--kind", "nope"])
    assert result.exit_code == 2 and "unknown attack 'nope'; known: any-word, badencoder, blended," in result.output
    assert "tiny-trigger, toy" in result.output
    assert len(result.output.strip().splitlines()) == 1 and not (tmp_path / "none").exists()


def test_patch_keeps_the_hugging_face_format(tmp_path, backdoored):
    import transformers

    config = transformers.ViTConfig(
        hidden_size=32,
        num_hidden_layers=1,
        num_attention_heads=2,
        intermediate_size=37,
        image_size=16,
        patch_size=4,
        num_channels=1,
    )
    transformers.ViTModel(config).save_pretrained(tmp_path / "vit")
    save_bug_report(backdoored.bug, tmp_path / "bug")
    np_images = backdoored.patching_set[:40].numpy()
    import numpy as np

    np.savez(tmp_path / "d.npz", x=np_images)
    backdoored.trigger.save(tmp_path / "t.npz")
    out = tmp_path / "out"
    result = runner.invoke(
        app,
        [
            "patch",
            "--model",
            str(tmp_path / "vit"),
            "--bug",
            str(tmp_path / "bug"),
            "--data",
            str(tmp_path / "d.npz"),
            "--out",
            str(out),
            "--epochs",
            "1",
            "--trigger",
            str(tmp_path / "t.npz"),
            "--image-mean",
            "0.5",
            "--image-std",
            "0.5",
            "--force",  # a random ViT shows no bug: this test is about the format
        ],
    )
    assert result.exit_code in (0, 3), result.output
    assert json.loads((out / "report.json").read_text())["forced"] is True
    assert {"config.json", "model.safetensors"} <= {p.name for p in (out / "model").iterdir()}
    reloaded = transformers.ViTModel.from_pretrained(out / "model")
    assert isinstance(reloaded, transformers.ViTModel)


def _tiny_resnet(directory):
    import transformers

    config = transformers.ResNetConfig(
        num_channels=1, embedding_size=8, hidden_sizes=[8, 16], depths=[1, 1], layer_type="basic"
    )
    transformers.ResNetModel(config).save_pretrained(directory)


def test_a_vision_model_that_does_not_say_its_normalisation_is_refused(saved_case):
    """No guessed preprocessing: without preprocessor_config.json the user must say how pixels were normalised."""
    _tiny_resnet(saved_case / "resnet")
    out = saved_case / "out"
    base = ["reverse-trigger", "--model", str(saved_case / "resnet"), "--bug", str(saved_case / "bug")]
    base += ["--data", str(saved_case / "data"), "--out", str(out)]
    result = runner.invoke(app, base)
    assert result.exit_code == 2 and not out.exists()
    line = result.output.strip()
    assert len(line.splitlines()) == 1 and "preprocessor_config.json" in line and "--image-mean" in line
    # told, it loads and goes on to the next check: a random ResNet shows no backdoor bug, which is refused too
    result = runner.invoke(app, [*base, "--image-mean", "0", "--image-std", "1"])
    assert result.exit_code == 4 and "refused:" in result.output.splitlines()[-1] and not out.exists()


def test_a_bug_the_model_does_not_show_is_refused_and_nothing_is_written(saved_case, backdoored):
    image = backdoored.data.test_images[0]
    twin = (image + 0.01 * torch.rand(image.shape, generator=torch.Generator().manual_seed(0))).clamp(0, 1)
    save_bug_report(BugReport(bug_input=image, reference_input=twin, label=1), saved_case / "twin")
    out = saved_case / "out"
    arguments = ["patch", "--model", str(saved_case / "model"), "--bug", str(saved_case / "twin")]
    arguments += ["--data", str(saved_case / "data"), "--out", str(out)]
    result = runner.invoke(app, arguments)
    assert result.exit_code == 4, result.output
    line = result.output.strip()
    assert len(line.splitlines()) == 1 and "does not show this bug" in line and "--force" in line
    assert not out.exists() and sorted(p.name for p in saved_case.iterdir()) == ["bug", "data", "model", "twin"]


def test_a_patch_that_misses_its_goals_is_written_but_exits_3(saved_case):
    out = saved_case / "out"
    result = _patch(saved_case, out, "--epochs", "1", "--augmented-copies", "0")
    assert result.exit_code == 3, result.output
    assert "goals NOT met" in result.output
    report = json.loads((out / "report.json").read_text())
    assert report["patch"]["goals_met"] is False and (out / "model").is_dir()
    # the trigger's strength before is shown beside what is left of it after (one epoch need not lower it)
    pulls = report["trigger_pull"]
    assert isinstance(pulls["before"], float) and isinstance(pulls["after"], float)
    assert f"trigger pull on held-out inputs {pulls['before']:.2f} before, {pulls['after']:.2f} after" in " ".join(
        result.output.split()
    )


def test_help_shows_each_default_per_modality():
    result = runner.invoke(app, ["patch", "--help"])
    text = " ".join(result.output.replace("│", " ").split())  # rich wraps help text inside a box
    assert "(default: image 0.0005; text 0.03)" in text and "Exit status: 0 done; 2 bad input; 3 patched" in text


def test_apply_rebuilds_the_patched_model_bit_for_bit_and_refuses_another_base(saved_case, backdoored):
    from mudjacking.encoders import load_encoder
    from mudjacking.outputs import weights_sha256

    backdoored.trigger.save(saved_case / "trigger.npz")
    patched = _patch(saved_case, saved_case / "out", "--epochs", "2", "--trigger", str(saved_case / "trigger.npz"))
    assert patched.exit_code in (0, 3), patched.output
    delta = saved_case / "out" / "patch_delta.safetensors"
    applied = runner.invoke(app, ["apply", "--model", str(saved_case / "model"), "--delta", str(delta),
                                  "--out", str(saved_case / "applied")])  # fmt: skip
    assert applied.exit_code == 0, applied.output
    shipped, rebuilt = load_encoder(saved_case / "out" / "model"), load_encoder(saved_case / "applied")
    assert all(
        torch.equal(a, b) for a, b in zip(shipped.state_dict().values(), rebuilt.state_dict().values(), strict=True)
    )
    record = json.loads((saved_case / "applied" / "mudjacking_apply.json").read_text())
    assert record["result_sha256"] == weights_sha256(shipped) != record["base_sha256"]

    other = load_encoder(saved_case / "model")
    with torch.no_grad():
        next(other.parameters()).view(-1)[0] += 1e-3  # one weight off: another model
    (saved_case / "other").mkdir()
    other.save(saved_case / "other")
    refused = runner.invoke(app, ["apply", "--model", str(saved_case / "other"), "--delta", str(delta),
                                  "--out", str(saved_case / "wrong")])  # fmt: skip
    assert refused.exit_code == 4, refused.output
    assert record["base_sha256"] in refused.output.replace("\n", "") and weights_sha256(
        other
    ) in refused.output.replace("\n", "")
    assert not (saved_case / "wrong").exists()


def test_verify_fails_the_unpatched_model_and_reads_the_patched_one_better(saved_case, backdoored):
    backdoored.trigger.save(saved_case / "trigger.npz")
    patched = _patch(saved_case, saved_case / "out", "--epochs", "6", "--trigger", str(saved_case / "trigger.npz"))
    assert patched.exit_code in (0, 3), patched.output
    common = ["--base", str(saved_case / "model"), "--bug", str(saved_case / "bug"), "--data", str(saved_case / "data"),
              "--trigger", str(saved_case / "trigger.npz")]  # fmt: skip
    unpatched = runner.invoke(app, ["verify", "--model", str(saved_case / "model"), *common])
    assert unpatched.exit_code == 3 and "FAILED" in unpatched.output, unpatched.output
    checked = runner.invoke(app, ["verify", "--model", str(saved_case / "out" / "model"), *common,
                                  "--out", str(saved_case / "verified")])  # fmt: skip
    assert checked.exit_code in (0, 3), checked.output
    report = json.loads((saved_case / "verified" / "verify.json").read_text())["bugs"][0]
    assert report["trigger_neutralised"] > 0.95 and report["bug_similarity"] > 0.9
    assert report["passed"] == (checked.exit_code == 0)


def test_a_file_name_with_markup_and_escape_sequences_is_printed_inert(saved_case):
    folder = saved_case / "bug[/]\x1b[31mred"  # two folders: "bug[" and "]<ESC>[31mred"
    folder.mkdir(parents=True)
    (folder / "bug.json").write_text("{not json")
    result = _patch(saved_case, saved_case / "out", "--bug", str(folder))
    assert result.exit_code == 2, result.output
    line = " ".join(result.output.split())
    assert "bug[/]\\x1b[31mred" in line and "\x1b[31m" not in result.output  # spelled out, not sent to the terminal
    assert "invalid JSON" in line


@pytest.mark.parametrize("where", ["model", ".", "model/inside"])
def test_an_output_over_an_input_is_refused_even_with_overwrite(saved_case, where):
    before = (saved_case / "model" / "model.safetensors").read_bytes()
    out = saved_case if where == "." else saved_case / where
    result = _patch(saved_case, out, "--overwrite", "--epochs", "1")
    assert result.exit_code == 2 and "would replace or sit inside the input" in " ".join(result.output.split())
    assert (saved_case / "model" / "model.safetensors").read_bytes() == before
    assert not (saved_case / "model" / "inside").exists()


def test_sigterm_during_the_patch_leaves_no_half_written_output(saved_case):
    import signal
    import subprocess
    import sys
    import time

    out = saved_case / "out"
    command = [sys.executable, "-m", "mudjacking", "patch", "--model", str(saved_case / "model"), "--bug",
               str(saved_case / "bug"), "--data", str(saved_case / "data"), "--out", str(out), "--epochs", "200",
               "--no-early-stop"]  # fmt: skip
    process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 120
    while not list(saved_case.glob(".out.*")) and time.monotonic() < deadline and process.poll() is None:
        time.sleep(0.2)  # until the staging folder exists: the patch is under way
    assert list(saved_case.glob(".out.*")), process.communicate()[1]
    time.sleep(2)  # past the trigger's pictures, into the patch loop
    process.send_signal(signal.SIGTERM)
    code = process.wait(timeout=60)
    assert code == 128 + signal.SIGTERM, process.stderr.read()[-2000:]
    left = [path.name for path in saved_case.glob(".out.*")]
    assert left in ([], [".out.checkpoint"]) and not out.exists(), left  # the checkpoint stays, for --resume


def test_a_bug_image_of_another_size_than_the_patching_set_is_one_line(saved_case, backdoored):
    from mudjacking.data import BugReport

    bug = BugReport(torch.rand(3, 20, 20), torch.rand(3, 20, 20), 1, predicted_label=0)
    save_bug_report(bug, saved_case / "other-bug")
    result = _patch(saved_case, saved_case / "out", "--bug", str(saved_case / "other-bug"))
    line = " ".join(result.output.split())
    assert result.exit_code == 2 and "x_b and x_r are 3x20x20" in line and "are 1x16x16" in line, result.output
    assert str(saved_case / "other-bug") in line and not (saved_case / "out").exists()


def test_a_finished_patch_leaves_no_checkpoint_and_resume_refuses_another_patchs(saved_case):
    from mudjacking.checkpoints import PatchCheckpoints

    result = _patch(saved_case, saved_case / "out", "--epochs", "1")
    assert result.exit_code in (0, 3), result.output
    assert not (saved_case / ".out.checkpoint").exists()
    foreign = PatchCheckpoints(saved_case / ".again.checkpoint", "0" * 64)  # as if written for other inputs
    foreign.save({"w": torch.zeros(1)}, {"state": {}, "param_groups": []}, {}, {"epochs": 1})
    again = _patch(saved_case, saved_case / "again", "--epochs", "1", "--resume")
    assert again.exit_code == 2, again.output
    errors = [line for line in again.output.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and ".again.checkpoint" in errors[0] and "another patch" in errors[0], again.output
    assert not (saved_case / "again").exists()


def test_a_patching_set_too_large_for_the_free_memory_is_one_line_not_the_oom_killer(saved_case, monkeypatch):
    import mudjacking.memory

    # 120 16x16 grey images: 123 KB as float32, and 4 times that with the image recipe's 3 augmented copies
    monkeypatch.setattr(mudjacking.memory, "available_bytes", lambda: 400_000)
    result = _patch(saved_case, saved_case / "out")
    assert result.exit_code == 2, result.output
    errors = [line for line in result.output.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and str(saved_case / "data") in errors[0] and "--augmented-copies 0" in errors[0]
    assert not (saved_case / "out").exists()
    monkeypatch.setattr(mudjacking.memory, "available_bytes", lambda: 100_000)
    from mudjacking.data.images import load_image_folder
    from mudjacking.errors import DataError

    with pytest.raises(DataError, match="fewer images"):
        load_image_folder(saved_case / "data")


def test_goals_met_says_they_are_label_free_and_names_the_check_that_asks_the_classifier(tmp_path):
    from mudjacking.cli.common import console
    from mudjacking.cli.patch import _print_patch

    history = [{"epoch": 1, "holdout_locality": 0.99, "bug_similarity": 0.9}]
    patch = {"history": history, "epochs": 1, "seconds": 1.0}
    report = {"bugs": [], "earlier_bugs": [], "trigger_pull": {"before": 0.6, "after": 0.01}}
    with console.capture() as met:
        _print_patch({**report, "patch": {**patch, "goals_met": True}}, tmp_path / "out")
    said = met.get()
    assert "without labels" in said and f"mudjacking evaluate --model patched={tmp_path / 'out'}/model" in said
    with console.capture() as missed:
        _print_patch({**report, "patch": {**patch, "goals_met": False}}, tmp_path / "out")
    assert "without labels" not in missed.get()


def test_a_trigger_verified_only_near_x_r_is_named_a_possible_source_specific_backdoor(tmp_path):
    from mudjacking.cli.common import console
    from mudjacking.cli.patch import _print_patch

    check = {"pull": 0.1, "control_pull": 0.0, "near_strength": 0.62}
    trigger = {"source": "reverse-engineered", "pixels": 9, "verification": check, "verified": True}
    patch = {"history": [{"epoch": 1, "holdout_locality": 0.99, "bug_similarity": 0.9}], "epochs": 1, "seconds": 1.0}
    report = {"earlier_bugs": [], "trigger_pull": {"before": 0.6, "after": 0.01}, "patch": {**patch, "goals_met": True}}
    said = {}
    for near in (True, False):
        with console.capture() as printed:
            bug = {"trigger": {**trigger, "verified_near_reference": near}}
            _print_patch({**report, "bugs": [bug]}, tmp_path / "out")
        said[near] = " ".join(printed.get().split())
    assert "only inputs like x_r answer it (0.62 beyond" in said[True] and "source-specific" in said[True]
    assert "only inputs like x_r" not in said[False] and "9 pixels" in said[False]
