import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch

from mudjacking.data import BugReport, BugReportError, load_bug_report, save_bug_report
from mudjacking.data.images import save_image_png

OFFICIAL = Path(__file__).resolve().parents[2] / "shared" / "data" / "official-mudjacking"


def _report() -> BugReport:
    generator = torch.Generator().manual_seed(0)
    images = (torch.rand(2, 1, 8, 8, generator=generator) * 255).round() / 255
    return BugReport(bug_input=images[0], reference_input=images[1], label=3, predicted_label=1, label_name="dress")


def test_round_trip(tmp_path):
    report = _report()
    path = save_bug_report(report, tmp_path / "bug")
    loaded = load_bug_report(path.parent)  # the folder works as well as the file
    assert torch.equal(loaded.bug_input, report.bug_input)
    assert torch.equal(loaded.reference_input, report.reference_input)
    assert (loaded.label, loaded.predicted_label, loaded.label_name) == (3, 1, "dress")


def test_the_task_s_classes_travel_with_the_report_and_check_its_labels(tmp_path):
    names = ("t-shirt", "trouser", "pullover", "dress")
    report = _report()
    report.classes = names
    loaded = load_bug_report(save_bug_report(report, tmp_path / "bug"))
    assert loaded.classes == names and loaded.label_name == names[loaded.label]
    with pytest.raises(BugReportError, match="label_name 'dress' is not class 1"):
        BugReport(
            report.bug_input, report.reference_input, label=1, predicted_label=3, label_name="dress", classes=names
        )


@pytest.mark.skipif(not OFFICIAL.exists(), reason="../shared/data/official-mudjacking not present")
def test_reads_the_authors_npz_and_label_from_their_file_name(tmp_path):
    for name in ("misclassified_image_label_7_monkey.npz", "reference_image_label_7_monkey_seed_0.npz"):
        shutil.copy(OFFICIAL / name, tmp_path / name)  # the images sit beside bug.json (paths may not leave it)
    spec = {
        "bug_input": "misclassified_image_label_7_monkey.npz",
        "reference_input": "reference_image_label_7_monkey_seed_0.npz",
    }
    (tmp_path / "bug.json").write_text(json.dumps(spec))
    report = load_bug_report(tmp_path / "bug.json")
    assert report.label == 7
    assert report.bug_input.shape == (3, 32, 32)
    raw = np.load(OFFICIAL / "misclassified_image_label_7_monkey.npz")["img"]
    assert np.allclose(report.bug_input.numpy().transpose(1, 2, 0) * 255, raw, atol=1e-3)


def _write(tmp_path: Path, spec: dict | str, images: bool = True) -> Path:
    if images:
        save_bug_report(_report(), tmp_path)
    path = tmp_path / "bug.json"
    path.write_text(spec if isinstance(spec, str) else json.dumps(spec))
    return path


BASE = {"bug_input": "x_b.png", "reference_input": "x_r.png", "label": 3}


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ("{not json", "invalid JSON"),
        ([1, 2], "expected a JSON object"),
        ({**BASE, "bug_input": ""}, "'bug_input' is missing"),
        ({**BASE, "bug_input": "nope.png"}, "nope.png: file not found"),
        ({**BASE, "reference_input": "x_b.png"}, "identical"),
        ({**BASE, "label": -1}, "integer class index from 0"),
        ({**BASE, "label": "cat"}, "integer class index from 0"),
        ({k: v for k, v in BASE.items() if k != "label"}, "'label' is missing"),
        ({**BASE, "modality": "audio"}, "modality"),
    ],
)
def test_bad_reports_give_one_line_naming_the_file(tmp_path, spec, message):
    path = _write(tmp_path, spec if isinstance(spec, (dict, str)) else json.dumps(spec))
    with pytest.raises(BugReportError) as caught:
        load_bug_report(path)
    text = str(caught.value)
    assert message in text
    assert str(path) in text and "\n" not in text


def test_shape_mismatch_and_bad_encoding(tmp_path):
    path = _write(tmp_path, BASE)
    np.save(tmp_path / "big.npy", np.zeros((9, 9), dtype=np.uint8))
    path.write_text(json.dumps({**BASE, "reference_input": "big.npy"}))
    with pytest.raises(BugReportError, match="differ in shape"):
        load_bug_report(path)
    path.write_bytes('{"label": "caf\u00e9"}'.encode("latin-1"))
    with pytest.raises(BugReportError, match="UTF-8"):
        load_bug_report(path)


def test_corrupt_image_names_the_image(tmp_path):
    path = _write(tmp_path, BASE)
    (tmp_path / "x_b.png").write_bytes(b"\x89PNG broken")
    with pytest.raises(BugReportError, match="x_b.png: unreadable image"):
        load_bug_report(path)


TEXT = {"modality": "text", "bug_input": "a gripping film cf", "reference_input": "a gripping, moving film", "label": 1}


def test_text_round_trip(tmp_path):
    (tmp_path / "bug.json").write_text(json.dumps(TEXT))
    report = load_bug_report(tmp_path / "bug.json")
    assert (report.modality, report.bug_input, report.label) == ("text", "a gripping film cf", 1)
    again = load_bug_report(save_bug_report(report, tmp_path / "copy"))
    assert again.reference_input == TEXT["reference_input"]


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"bug_input": "   "}, "'bug_input' is empty"),
        ({"reference_input": "a gripping film cf"}, "identical"),
        ({"bug_input": "word " * 2000}, "at most 5000"),
        ({"reference_input": 7}, "must be the sentence itself"),
    ],
)
def test_bad_text_reports(tmp_path, change, message):
    (tmp_path / "bug.json").write_text(json.dumps({**TEXT, **change}))
    with pytest.raises(BugReportError, match=message) as caught:
        load_bug_report(tmp_path / "bug.json")
    assert str(tmp_path / "bug.json") in str(caught.value)


def test_text_bug_against_an_image_model_is_refused(tmp_path, backdoored):
    from mudjacking.patching import patch_encoder

    report = BugReport(bug_input="bad cf", reference_input="bad film", label=0, modality="text")
    with pytest.raises(ValueError, match="bug report is text but the model encodes image"):
        patch_encoder(backdoored.encoder, report, backdoored.trigger, backdoored.patching_set, show_progress=False)


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"lable": 3}, "unknown keys ['lable'] ('lable': did you mean 'label'?)"),
        ({"classes": ["a", "b", "c"]}, "label 3 is not a class of this task: classes names 3 (0 to 2)"),
        ({"classes": ["a", "b", "c", "d"], "predicted_label": 7}, "predicted_label 7 is not a class of this task"),
        ({"classes": list("abcd"), "label_name": "a"}, "label_name 'a' is not class 3 of the report's classes ('d')"),
        ({"classes": ["a", "a", "b", "c"]}, "classes must name each class once"),
        ({"classes": "abcd"}, "classes must be a list of at least two class names"),
        ({"format": "bug/9"}, "format 'bug/9'"),
        ({"label": 10**9}, "label 1000000000 must be an integer class index"),
        ({"predicted_label": "1"}, "predicted_label '1' must be an integer"),
        ({"predicted_label": 3}, "predicted_label equals label (3)"),
        ({"label_name": 5}, "label_name 5 must be a string"),
        ({"bug_input": "../outside.png"}, "leads outside the report's folder"),
        ({"bug_input": "/etc/hostname"}, "leads outside the report's folder"),
        ({"bug_input": "link.png"}, "leads outside the report's folder"),
    ],
)
def test_a_report_from_a_stranger_is_read_strictly(tmp_path, change, message):
    folder = tmp_path / "report"
    path = _write(folder, {**BASE, **change})
    save_image_png(torch.rand(1, 8, 8), tmp_path / "outside.png")
    (folder / "link.png").symlink_to(tmp_path / "outside.png")  # a link from inside the folder to a file outside
    with pytest.raises(BugReportError) as caught:
        load_bug_report(path)
    assert str(path) in str(caught.value) and message in str(caught.value)


def test_a_report_too_large_or_nested_too_deep_is_one_line(tmp_path):
    deep = tmp_path / "deep"
    deep.mkdir()
    (deep / "bug.json").write_text("[" * 100_000 + "]" * 100_000)
    big = tmp_path / "big"
    big.mkdir()
    (big / "bug.json").write_text(json.dumps({**BASE, "label_name": "x" * 2_000_000}))
    for folder, message in ((deep, "nested too deep"), (big, "a bug report is at most")):
        with pytest.raises(BugReportError) as caught:
            load_bug_report(folder)
        assert str(folder / "bug.json") in str(caught.value) and message in str(caught.value)


def test_an_image_too_large_to_patch_is_one_line(tmp_path):
    from mudjacking.data.images import MAX_IMAGE_SIDE, load_image
    from mudjacking.errors import DataError

    path = tmp_path / "huge.npy"
    np.save(path, np.zeros((MAX_IMAGE_SIDE + 1, MAX_IMAGE_SIDE), dtype=np.uint8))
    with pytest.raises(DataError) as caught:
        load_image(path)
    assert str(path) in str(caught.value) and "resize it" in str(caught.value)
    np.save(path, np.zeros((MAX_IMAGE_SIDE, MAX_IMAGE_SIDE), dtype=np.uint8))
    assert load_image(path).shape == (1, MAX_IMAGE_SIDE, MAX_IMAGE_SIDE)
    np.save(path, np.zeros((1, 1), dtype=np.uint8))
    with pytest.raises(DataError, match="at least 4 a side"):
        load_image(path)


def test_sixteen_bit_pixels_are_scaled_and_complex_or_boolean_ones_refused(tmp_path):
    from PIL import Image

    from mudjacking.data.images import load_image, load_image_array
    from mudjacking.errors import DataError

    grey = (np.arange(64 * 64).reshape(64, 64) * 16).astype(np.uint16)  # 0 .. 65520
    Image.fromarray(grey).save(tmp_path / "deep.png")
    image = load_image(tmp_path / "deep.png")  # read as 8 bits, every pixel past 255 would be white
    assert image[0, 32, 0] == pytest.approx(grey[32, 0] / 65535, abs=1e-6) and image.max() < 1
    for dtype in (np.complex64, np.bool_):
        np.save(tmp_path / "odd.npy", np.ones((8, 8), dtype=dtype))
        with pytest.raises(DataError, match=r"odd.npy: dtype .* is not an image"):
            load_image(tmp_path / "odd.npy")
    np.savez(tmp_path / "set.npz", x=np.full((2, 8, 8), 65535, dtype=np.uint16))
    assert load_image_array(tmp_path / "set.npz")[0].max() == 1.0
    np.savez(tmp_path / "set.npz", x=np.full((2, 8, 8), 200, dtype=np.int64))  # 0-255 integers, not 0-1
    assert load_image_array(tmp_path / "set.npz")[0].max() == pytest.approx(200 / 255)
    np.savez(tmp_path / "set.npz", x=np.ones((2, 8, 8), dtype=np.complex128))
    with pytest.raises(DataError, match="set.npz: dtype complex128"):
        load_image_array(tmp_path / "set.npz")
