"""Generated bug reports from strangers, run through ``mudjacking reverse-trigger`` in-process.

Every case must end in a correct run (exit 0, the output folder complete) or in one ``error:`` line (exit 2, for
every report the generator made malformed) or ``refused:`` line (a self-check's refusal), with no output folder and
no staging folder left; never a traceback, never a changed input, and never exit 0 for a malformed report
(a silent acceptance)."""

from __future__ import annotations

import hashlib
import io
import json
import shutil
import tempfile
import tomllib
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from PIL import Image
from typer.testing import CliRunner

from mudjacking.cli import app
from mudjacking.data.bug_report import FORMAT, KEYS
from mudjacking.data.images import save_image_png

runner = CliRunner()
CASES = 300
EXPERIMENT = Path(__file__).parents[1] / "configs" / "image.toml"


@dataclass
class Report:
    """A bug-report folder to write: ``bug.json`` (an object, or raw bytes) and the files beside it."""

    spec: dict | bytes
    files: dict[str, bytes] = field(default_factory=dict)
    outside: bytes | None = None  # a file written beside the report's folder (for paths that leave it)
    link: str | None = None  # a name in the folder made a symbolic link to that outside file
    malformed: str = ""  # why the report must be refused ("" = a well-formed report: run or refuse, cleanly)


def _png(array: np.ndarray) -> bytes:
    stream = io.BytesIO()
    Image.fromarray(array).save(stream, format="PNG")
    return stream.getvalue()


def _npy(array: np.ndarray) -> bytes:
    stream = io.BytesIO()
    np.save(stream, array, allow_pickle=False)
    return stream.getvalue()


def _as_png(image) -> bytes:
    return _png((image[0].numpy() * 255).round().astype(np.uint8))


# image files that cannot be a bug's input, each with the reason
BAD_IMAGES = {
    "complex pixels": _npy(np.ones((16, 16), np.complex64)),
    "boolean pixels": _npy(np.ones((16, 16), bool)),
    "NaN pixels": _npy(np.full((16, 16), np.nan, np.float32)),
    "negative pixels": _npy(np.full((16, 16), -0.5, np.float32)),
    "pixels over 255": _npy(np.full((16, 16), 300.0, np.float32)),
    "five dimensions": _npy(np.zeros((1, 1, 1, 16, 16), np.float32)),
    "empty array": _npy(np.zeros((0, 16), np.float32)),
    "not an image": b"GIF89a this is no picture",
    "empty file": b"",
}
# image files a report may hold: read as they are, resized or refused with the sizes named, but never a traceback
ODD_IMAGES = {
    "rgb png": _png(np.zeros((16, 16, 3), np.uint8) + 40),
    "rgba png": _png(np.zeros((16, 16, 4), np.uint8) + 90),
    "1x1 png": _png(np.zeros((1, 1), np.uint8)),
    "17x16 png": _png(np.zeros((17, 16), np.uint8) + 7),
    "64x64 png": _png(np.zeros((64, 64), np.uint8) + 200),
    "16-bit png": _png(np.full((16, 16), 40000, np.uint16)),
    "uint16 npy": _npy(np.full((16, 16), 20000, np.uint16)),
    "float64 npy": _npy(np.full((16, 16), 0.25)),
    "int64 0-255 npy": _npy(np.full((1, 16, 16), 128, np.int64)),
    "channels-last npy": _npy(np.full((16, 16, 3), 0.5, np.float32)),
}


@st.composite
def reports(draw, bug) -> Report:
    """A genuine report of ``bug`` with one change drawn from what strangers send."""
    spec = {"format": FORMAT, "bug_input": "x_b.png", "reference_input": "x_r.png", "label": int(bug.label),
            "predicted_label": int(bug.predicted_label) if bug.predicted_label is not None else 0}  # fmt: skip
    report = Report(spec, {"x_b.png": _as_png(bug.bug_input), "x_r.png": _as_png(bug.reference_input)})
    change = draw(
        st.sampled_from(
            ["none", "unknown key", "missing key", "format", "label", "predicted label", "label name", "classes",
             "path", "bad image", "odd image", "raw json", "text", "same inputs"]
        )
    )  # fmt: skip
    if change == "unknown key":
        key = draw(st.text(min_size=1, max_size=12).filter(lambda k: k not in KEYS))
        spec[key] = draw(st.one_of(st.integers(), st.text(max_size=5), st.none()))
        report.malformed = "unknown key"
    elif change == "missing key":
        del spec[draw(st.sampled_from(["bug_input", "reference_input", "label"]))]
        report.malformed = "missing key"
    elif change == "format":
        spec["format"] = draw(st.one_of(st.text(max_size=30), st.integers(), st.none()).filter(lambda f: f != FORMAT))
        report.malformed = "wrong format"
    elif change in ("label", "predicted label"):
        key = "label" if change == "label" else "predicted_label"
        spec[key] = draw(
            st.one_of(st.integers(max_value=-1), st.integers(min_value=100_000), st.booleans(), st.floats(),
                      st.text(max_size=4), st.lists(st.integers(0, 9), max_size=2))
        )  # fmt: skip
        report.malformed = f"bad {key}"
    elif change == "label name":
        spec["label_name"] = draw(st.one_of(st.integers(), st.lists(st.text(max_size=3), max_size=2)))
        report.malformed = "label_name not a string"
    elif change == "classes":  # the task's classes: too few for the labels, or not a list of names
        labels = max(spec["label"], spec["predicted_label"])
        spec["classes"] = draw(
            st.one_of(st.lists(st.text(min_size=1, max_size=4), min_size=2, max_size=labels, unique=True),
                      st.text(max_size=4), st.lists(st.integers(), min_size=2, max_size=3))
        )  # fmt: skip
        report.malformed = "classes"
    elif change == "path":
        kind = draw(st.sampled_from(["parent", "absolute", "missing", "link out", "folder"]))
        key = draw(st.sampled_from(["bug_input", "reference_input"]))
        report.outside = report.files[spec[key]]
        spec[key] = {"parent": "../outside.png", "absolute": "/etc/hostname", "missing": "nowhere.png",
                     "link out": "linked.png", "folder": "."}[kind]  # fmt: skip
        report.link = "linked.png" if kind == "link out" else None
        report.malformed = f"path: {kind}"
    elif change == "bad image":
        name, content = draw(st.sampled_from(sorted(BAD_IMAGES.items())))
        key = draw(st.sampled_from(["bug_input", "reference_input"]))
        spec[key] = "broken.png" if name == "not an image" or name == "empty file" else "broken.npy"
        report.files[spec[key]] = content
        report.malformed = name
    elif change == "odd image":
        _, content = draw(st.sampled_from(sorted(ODD_IMAGES.items())))
        key = draw(st.sampled_from(["bug_input", "reference_input"]))
        spec[key] = "odd.npy" if content.startswith(b"\x93NUMPY") else "odd.png"
        report.files[spec[key]] = content
    elif change == "raw json":
        report.spec = draw(
            st.sampled_from([b"[1, 2, 3]", b"{not json", "{}".encode("utf-16"), b"[" * 100_000 + b"]" * 100_000,
                             b'"a string"', b"null", b"\xff\xfe\x00"])
        )  # fmt: skip
        report.malformed = "not a JSON object"
    elif change == "text":  # a text report against an image model, holding markup and terminal control sequences
        sentence = draw(st.sampled_from(["[/]", "[bold red]x[/]", "\x1b[31mred\x1b[0m", "tab\there"]))
        report.spec = {"format": FORMAT, "modality": "text", "bug_input": sentence + " cf", "reference_input": sentence,
                       "label": 1, "predicted_label": 0}  # fmt: skip
        report.malformed = "text report for an image model"
    elif change == "same inputs":
        spec["reference_input"] = "x_b.png"
        report.malformed = "x_b and x_r identical"
    return report


def _write(report: Report, root: Path) -> Path:
    folder = root / "bug"
    folder.mkdir()
    if report.outside is not None:
        (root / "outside.png").write_bytes(report.outside)
    for name, content in report.files.items():
        (folder / name).write_bytes(content)
    if report.link:
        (folder / report.link).symlink_to(root / "outside.png")
    raw = report.spec if isinstance(report.spec, bytes) else json.dumps(report.spec).encode()
    (folder / "bug.json").write_bytes(raw)
    return folder


def _digest(*paths: Path) -> str:
    hasher = hashlib.sha256()
    for path in paths:
        for file in (
            sorted(p for p in path.rglob("*") if p.is_file() and not p.is_symlink()) if path.is_dir() else [path]
        ):
            hasher.update(str(file).encode() + file.read_bytes())
    return hasher.hexdigest()


@pytest.fixture(scope="module")
def shared_inputs(_backdoored, tmp_path_factory):
    root = tmp_path_factory.mktemp("fuzz-inputs")
    (root / "model").mkdir()
    _backdoored.encoder.save(root / "model")
    (root / "data").mkdir()
    for index, image in enumerate(_backdoored.patching_set[:160]):
        save_image_png(image, root / "data" / f"{index:04d}.png")
    return root, _backdoored.bug


def test_every_generated_report_ends_in_a_run_or_one_error_line(shared_inputs):
    inputs, bug = shared_inputs
    outcomes: dict[str, int] = {}

    @given(reports(bug))
    @settings(max_examples=CASES, deadline=None, database=None, suppress_health_check=list(HealthCheck))
    def check(report: Report) -> None:
        root = Path(tempfile.mkdtemp(prefix="fuzz-"))
        try:
            folder = _write(report, root)
            before = _digest(inputs / "model", inputs / "data", folder)
            out = root / "out"
            arguments = ["--model", inputs / "model", "--bug", folder, "--data", inputs / "data", "--out", out]
            result = runner.invoke(app, ["reverse-trigger", *map(str, arguments), "--window", "3"])
            text = result.output
            assert result.exception is None or isinstance(result.exception, SystemExit), text
            assert "Traceback" not in text and "\x1b" not in text, text
            assert _digest(inputs / "model", inputs / "data", folder) == before, "an input changed"
            assert not [p.name for p in root.iterdir() if p.name.startswith(".out.")], "staging folder left behind"
            if result.exit_code == 0:
                assert not report.malformed, f"silent acceptance of a report with {report.malformed}: {text}"
                assert (out / "trigger.npz").is_file() and (out / "recovery.json").is_file()
                outcomes["run"] = outcomes.get("run", 0) + 1
                return
            errors = [line for line in text.splitlines() if line.startswith(("error:", "refused:"))]
            assert len(errors) == 1, text
            assert not out.exists(), "a refused run left its output folder"
            if report.malformed:
                assert errors[0].startswith("error:") and result.exit_code == 2, text
                assert "bug" in errors[0] or ".png" in errors[0] or ".npy" in errors[0], errors[0]  # names the file
            kind = "error" if report.malformed else "refused"
            outcomes[kind] = outcomes.get(kind, 0) + 1
        finally:
            shutil.rmtree(root, ignore_errors=True)

    check()
    assert outcomes.get("run") and outcomes.get("error"), outcomes  # the generator reached both ends
    assert sum(outcomes.values()) >= CASES, outcomes


@dataclass
class Inputs:
    """A model folder's files and a patching set to write (``data``: file name -> bytes, or a folder of files)."""

    model: dict[str, bytes]
    data: dict[str, bytes]
    data_name: str = "data"
    malformed: str = ""


def _config_json(value: object) -> bytes:
    return json.dumps(value).encode()


@st.composite
def model_and_data(draw, model_files: dict[str, bytes], data_files: dict[str, bytes]) -> Inputs:
    """The genuine model folder and patching set with one change drawn from what strangers send."""
    inputs = Inputs(dict(model_files), dict(data_files))
    config = json.loads(model_files["mudjacking_encoder.json"])
    change = draw(
        st.sampled_from(
            ["none", "config", "weights", "other weights", "hf config", "pickle", "data folder", "data npz",
             "data text"]
        )
    )  # fmt: skip
    if change == "config":
        kind = draw(st.sampled_from(["architecture", "kwargs", "list", "deep", "not json", "std 0", "size"]))
        word = draw(st.text(alphabet="abcdefghij_", min_size=1, max_size=10))
        std = draw(st.one_of(st.floats(max_value=0.0), st.just(float("nan"))))
        side = draw(st.integers(-10_000, 0))
        broken = {
            "architecture": {**config, "architecture": f"no-such-net-{word}"},
            "kwargs": {**config, "architecture_kwargs": {**config["architecture_kwargs"], f"{word}_typo": side}},
            "list": [config] * draw(st.integers(1, 3)),
            "std 0": {**config, "input_spec": {**config["input_spec"], "std": [std]}},
            "size": {**config, "input_spec": {**config["input_spec"], "size": [side, 16]}},
        }
        raw = {"deep": b"[" * 100_000 + b"]" * 100_000, "not json": b"{architecture:"}.get(kind)
        inputs.model["mudjacking_encoder.json"] = raw if raw is not None else _config_json(broken[kind])
        inputs.malformed = f"model config: {kind}"
    elif change == "weights":
        weights = model_files["model.safetensors"]
        inputs.model["model.safetensors"] = weights[: draw(st.integers(0, len(weights) - 1))]
        inputs.malformed = "damaged weights"
    elif change == "other weights":  # the weights of a wider network under this config
        kwargs = {**config["architecture_kwargs"], "embedding_dim": draw(st.integers(1, 63))}
        inputs.model["mudjacking_encoder.json"] = _config_json({**config, "architecture_kwargs": kwargs})
        inputs.malformed = "weights of another network"
    elif change == "hf config":  # a transformers folder whose config names a model the weights are not
        del inputs.model["mudjacking_encoder.json"]
        inputs.model["config.json"] = _config_json({"model_type": draw(st.sampled_from(["bert", "resnet", "vit"]))})
        inputs.malformed = "transformers config over foreign weights"
    elif change == "pickle":  # a pickled module instead of safetensors: never loaded without --allow-pickle
        inputs.model = {"model.bin": b"\x80\x04\x95 not run"}
        inputs.malformed = "pickle without --allow-pickle"
    elif change == "data folder":
        kind = draw(st.sampled_from(["empty", "mixed sizes", "not images"]))
        if kind == "empty":
            inputs.data = {}
        elif kind == "mixed sizes":
            side = draw(st.integers(1, 40).filter(lambda n: n != 16))
            inputs.data["9999.png"] = _png(np.zeros((side, draw(st.integers(1, 40))), np.uint8))
        else:
            inputs.data = {f"{i}.png": draw(st.binary(max_size=64)) for i in range(draw(st.integers(1, 4)))}
        inputs.malformed = f"patching set: {kind}"
    elif change == "data npz":
        inputs.data_name = "data.npz"
        array = draw(st.sampled_from(["wrong key", "complex", "5 dims", "nan"]))
        count = draw(st.integers(1, 12))
        arrays = {
            "wrong key": {draw(st.sampled_from(["pictures", "images", "X"])): np.zeros((count, 1, 16, 16), np.float32)},
            "complex": {"x": np.zeros((count, 1, 16, 16), np.complex64)},
            "5 dims": {"x": np.zeros((count, 16, 16, 2, 2), np.float32)},
            "nan": {"x": np.full((count, 1, 16, 16), np.nan, np.float32)},
        }[array]
        stream = io.BytesIO()
        np.savez(stream, **arrays)
        inputs.data = {"": stream.getvalue()}
        inputs.malformed = f"patching npz: {array}"
    elif change == "data text":
        inputs.data_name = "data.txt"
        inputs.data = {"": b"a sentence\nanother one\n"}
        inputs.malformed = "sentences for an image model"
    return inputs


def _write_inputs(inputs: Inputs, root: Path) -> tuple[Path, Path]:
    model = root / "model"
    model.mkdir()
    for name, content in inputs.model.items():
        (model / name).write_bytes(content)
    data = root / inputs.data_name
    if "" in inputs.data:
        data.write_bytes(inputs.data[""])
    else:
        data.mkdir()
        for name, content in inputs.data.items():
            (data / name).write_bytes(content)
    return model, data


def test_every_generated_model_folder_and_patching_set_ends_in_a_run_or_one_error_line(shared_inputs):
    inputs, bug = shared_inputs
    model_files = {p.name: p.read_bytes() for p in (inputs / "model").iterdir()}
    data_files = {p.name: p.read_bytes() for p in sorted((inputs / "data").iterdir())[:120]}
    outcomes: dict[str, int] = {}

    @given(model_and_data(model_files, data_files))
    @settings(max_examples=CASES // 2, deadline=None, database=None, suppress_health_check=list(HealthCheck))
    def check(case: Inputs) -> None:
        root = Path(tempfile.mkdtemp(prefix="fuzz-"))
        try:
            model, data = _write_inputs(case, root)
            folder = _write(Report({"format": FORMAT, "bug_input": "x_b.png", "reference_input": "x_r.png",
                                    "label": int(bug.label), "predicted_label": int(bug.predicted_label)},
                                   {"x_b.png": _as_png(bug.bug_input), "x_r.png": _as_png(bug.reference_input)}),
                            root)  # fmt: skip
            before = _digest(model, data, folder)
            out = root / "out"
            arguments = ["--model", model, "--bug", folder, "--data", data, "--out", out]
            result = runner.invoke(app, ["reverse-trigger", *map(str, arguments), "--window", "3"])
            text = result.output
            assert result.exception is None or isinstance(result.exception, SystemExit), text
            assert "Traceback" not in text, text
            assert _digest(model, data, folder) == before, "an input changed"
            assert not [p.name for p in root.iterdir() if p.name.startswith(".out.")], "staging folder left behind"
            if result.exit_code == 0:
                assert not case.malformed, f"silent acceptance of {case.malformed}: {text}"
                outcomes["run"] = outcomes.get("run", 0) + 1
                return
            errors = [line for line in text.splitlines() if line.startswith(("error:", "refused:"))]
            assert len(errors) == 1 and not out.exists(), text
            if case.malformed:
                assert errors[0].startswith("error:") and result.exit_code == 2, text
                assert str(root) in errors[0], errors[0]  # names the file
            outcomes[case.malformed or "run"] = outcomes.get(case.malformed or "run", 0) + 1
        finally:
            shutil.rmtree(root, ignore_errors=True)

    check()
    assert outcomes.get("run") and len(outcomes) > 5, outcomes
    assert sum(outcomes.values()) >= CASES // 2, outcomes


@st.composite
def broken_experiments(draw) -> tuple[str, bytes, str]:
    """(file name, content, what is wrong) of an experiment file built from configs/image.toml with one fault."""
    base = tomllib.loads(EXPERIMENT.read_text())
    kind = draw(
        st.sampled_from(["top key", "option key", "patch key", "type", "attack", "method", "setting", "seeds",
                         "not a mapping", "syntax", "binary", "empty", "deep", "suffix"])
    )  # fmt: skip
    word = draw(st.text(alphabet="abcdefghijklmnopqrstuvwxyz_", min_size=3, max_size=12))
    mutated = json.loads(json.dumps(base))
    if kind == "top key":
        mutated[word + "_x"] = 1
    elif kind == "option key":
        mutated["options"][word + "_x"] = draw(st.one_of(st.integers(), st.text(max_size=4)))
    elif kind == "patch key":
        mutated["options"]["patch"][word + "_x"] = 0.1
    elif kind == "type":
        section, key = draw(st.sampled_from([("options", "test_size"), ("options", "photo_crops"),
                                             ("patch", "whitened_locality"), ("contrastive", "lr")]))  # fmt: skip
        target = mutated["options"]["patch"] if section == "patch" else mutated[section]
        target[key] = draw(st.sampled_from(["many", [1, 2], {"a": 1}]))
    elif kind == "attack":
        mutated["attacks"] = ["no-such-attack-" + word]
    elif kind == "method":
        mutated["methods"] = ["no-such-method-" + word]
    elif kind == "setting":
        mutated["setting"] = "audio-" + word
    elif kind == "seeds":
        mutated["seeds"] = draw(st.sampled_from(["zero", [0.5], [[0]], {}]))
    raw = {
        "not a mapping": ("bad.yaml", b"- 1\n- 2\n"),
        "syntax": ("bad.toml", b"name = [unclosed\n"),
        "binary": ("bad.toml", bytes(range(256))),
        "empty": ("bad.yaml", b""),
        "deep": ("bad.yaml", b"a: " + b"[" * 5000 + b"]" * 5000),
        "suffix": ("bad.cfg", b"name = 'x'\n"),
    }.get(kind)
    if raw is not None:
        return (*raw, kind)
    return "bad.yaml", yaml.safe_dump(mutated).encode(), kind


def test_every_broken_experiment_file_is_one_error_line_before_any_work(tmp_path):
    import unittest.mock

    started = []

    def run_experiment(*args, **kwargs):  # reached only when the file was accepted
        started.append(args)
        raise SystemExit(99)

    @given(broken_experiments())
    @settings(max_examples=CASES // 3, deadline=None, database=None, suppress_health_check=list(HealthCheck))
    def check(case: tuple[str, bytes, str]) -> None:
        name, content, kind = case
        root = Path(tempfile.mkdtemp(prefix="fuzz-", dir=tmp_path))
        config = root / name
        config.write_bytes(content)
        result = runner.invoke(app, ["experiment", str(config), "--out", str(root / "out"), "--quiet"])
        assert result.exit_code == 2, f"{kind}: exit {result.exit_code}: {result.output}"
        errors = [line for line in result.output.splitlines() if line.startswith("error:")]
        assert len(errors) == 1 and str(config) in errors[0], f"{kind}: {result.output}"
        assert not (root / "out").exists() and config.read_bytes() == content
        refused.append(kind)

    refused: list[str] = []
    with unittest.mock.patch("mudjacking.experiments.runner.run_experiment", run_experiment):
        check()
    assert not started and len(refused) >= CASES // 3


SENTENCE_FILES = {  # name: (file name, content, what is wrong; "" for a file the tool may read)
    "not utf-8": ("d.txt", "caf\xe9 au lait\n".encode("latin-1") * 40, "not UTF-8"),
    "empty": ("d.txt", b"", "empty"),
    "blank lines": ("d.txt", b"\n  \n\t\n" * 30, "only blank lines"),
    "jsonl not json": ("d.jsonl", b'{"text": "fine"}\n{broken\n', "a line that is not JSON"),
    "jsonl no text": ("d.jsonl", b'{"txt": "a"}\n' * 20, "no text key"),
    "jsonl number": ("d.jsonl", b'{"text": 5}\n' * 20, "text not a string"),
    "jsonl list": ("d.jsonl", b'["a", "b"]\n' * 20, "a line that is no object"),
    "csv": ("d.csv", b"a,b\n" * 20, "an unknown suffix"),
    "nul bytes": ("d.txt", b"good words here\x00\x00\n" * 40, ""),
    "markup": ("d.txt", b"[bold]the film[/] was \x1b[31mred\x1b[0m here\n" * 40, ""),
    "long line": ("d.txt", b"word " * 200_000 + b"\n" + b"a short one\n" * 40, ""),
}


@pytest.mark.parametrize("case", sorted(SENTENCE_FILES))
def test_a_strangers_sentence_file_is_read_or_refused_in_one_line(case, tiny_bert_dir, tmp_path):
    name, content, wrong = SENTENCE_FILES[case]
    data = tmp_path / name
    data.write_bytes(content)
    bug = tmp_path / "bug"
    bug.mkdir()
    report = {"format": FORMAT, "modality": "text", "label": 0, "predicted_label": 1, "bug_input": "a dull film cf",
              "reference_input": "a dull film"}  # fmt: skip
    (bug / "bug.json").write_text(json.dumps(report))
    out = tmp_path / "out"
    arguments = ["--model", tiny_bert_dir, "--bug", bug, "--data", data, "--out", out]
    result = runner.invoke(app, ["reverse-trigger", *map(str, arguments)])
    assert result.exception is None or isinstance(result.exception, SystemExit), result.output
    assert "\x1b" not in result.output and data.read_bytes() == content
    lines = [line for line in result.output.splitlines() if line.startswith(("error:", "refused:"))]
    if wrong:
        assert result.exit_code == 2 and len(lines) == 1 and str(data) in lines[0], f"{wrong}: {result.output}"
    else:
        assert result.exit_code == 0 or len(lines) == 1, result.output
    assert (result.exit_code == 0) == out.exists()
