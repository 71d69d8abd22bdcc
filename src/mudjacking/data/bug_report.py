"""Bug reports: the misclassified input ``x_b``, a correctly classified reference ``x_r`` of the same true class,
and that class.

On disk a bug report is a JSON file (or a folder holding ``bug.json``)::

    {
      "format": "mudjacking-bug-report/1",
      "modality": "image",
      "bug_input": "x_b.png",          # path relative to the JSON file (PNG/JPEG/NPY/NPZ)
      "reference_input": "x_r.png",
      "label": 7,                      # true class of both inputs
      "predicted_label": 9,            # optional: what the deployed classifier said for x_b
      "label_name": "monkey",          # optional
      "classes": ["airplane", ...]     # optional: the deployed classifier's classes, in index order
    }

When ``classes`` is given, the labels are checked against it: each must index it, and ``label_name`` must be the
class ``label`` names (a report whose label is not a class of the customer's task is no bug of that task).

The original authors' npz files (key ``img``) can be named directly as ``bug_input``/``reference_input``; when
``label`` is missing it is read from their file name (``..._label_7_...``).

For text (``"modality": "text"``) ``bug_input`` and ``reference_input`` hold the sentences themselves.
"""

from __future__ import annotations

import difflib
import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from mudjacking.data.images import DataError, load_image, save_image_png
from mudjacking.errors import ConfigError

FORMAT = "mudjacking-bug-report/1"
MODALITIES = ("image", "text")
MAX_TEXT_CHARACTERS = 5000
MAX_REPORT_BYTES = 2**20
MAX_CLASSES = 100_000
"""A label at or above this is no class index of any classifier we know (a report said 10^9)."""
KEYS = ("format", "modality", "bug_input", "reference_input", "label", "predicted_label", "label_name", "classes")
BUG_FILE_NAMES = ("bug.json", "bug_report.json")


class BugReportError(DataError):
    """A bug report that cannot be used; the message names the file and the fix."""


@dataclass
class BugReport:
    """One reported misclassification.

    Attributes:
        bug_input: ``x_b``: an image ``[C, H, W]`` in [0, 1], or a sentence.
        reference_input: ``x_r``: the same kind (and for images the same shape) as ``x_b``.
        label: the true class of ``x_b`` and ``x_r``.
        predicted_label: what the deployed classifier predicted for ``x_b``, if known.
        label_name: human-readable class name, if known.
        modality: ``"image"`` or ``"text"``.
        classes: the deployed classifier's class names in index order, if the customer gives them: the labels
            must index them and ``label_name`` must match.
    """

    bug_input: Tensor | str
    reference_input: Tensor | str
    label: int
    predicted_label: int | None = None
    label_name: str | None = None
    modality: str = "image"
    classes: tuple[str, ...] | None = None

    def __post_init__(self) -> None:
        problem = bug_report_problem(self)
        if problem:
            raise BugReportError(problem)

    def summary(self) -> dict[str, Any]:
        return {
            "modality": self.modality,
            "label": self.label,
            "predicted_label": self.predicted_label,
            "label_name": self.label_name,
            **({} if self.classes is None else {"classes": len(self.classes)}),
            **(
                {
                    "characters": len(self.bug_input),
                    "bug_input": self.bug_input,
                    "reference_input": self.reference_input,
                }
                if isinstance(self.bug_input, str)
                else {"input_shape": list(self.bug_input.shape)}
            ),
        }


def bug_report_problem(report: BugReport) -> str | None:
    """Why ``x_b``/``x_r``/label cannot be patched from (with the fix), or ``None`` when they can."""
    if report.modality not in MODALITIES:
        return f"modality {report.modality!r} is not supported; use one of {', '.join(MODALITIES)}"
    for name, value in (("label", report.label), ("predicted_label", report.predicted_label)):
        if value is None and name == "predicted_label":
            continue
        if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value < MAX_CLASSES:
            return f"{name} {value!r} must be an integer class index from 0 to {MAX_CLASSES - 1}"
    if report.predicted_label == report.label:
        return (
            f"predicted_label equals label ({report.label}): the classifier got x_b right, so there is no bug to "
            "patch; give the class it wrongly predicted"
        )
    if report.label_name is not None and not isinstance(report.label_name, str):
        return f"label_name {report.label_name!r} must be a string"
    if report.classes is not None:
        problem = _classes_problem(report)
        if problem:
            return problem
    if report.modality == "text":
        return _text_problem(report.bug_input, report.reference_input)
    if not isinstance(report.bug_input, Tensor) or not isinstance(report.reference_input, Tensor):
        return 'image bug reports need image tensors; for sentences set "modality": "text"'
    if report.bug_input.shape != report.reference_input.shape:
        return (
            f"bug input {tuple(report.bug_input.shape)} and reference {tuple(report.reference_input.shape)} "
            "differ in shape; give both at the same size"
        )
    if torch.equal(report.bug_input, report.reference_input):
        return "bug input and reference input are identical; x_r must be another, correctly classified input"
    return None


def _classes_problem(report: BugReport) -> str | None:
    """The labels checked against the task's classes, when the report names them."""
    classes = report.classes
    if not isinstance(classes, tuple) or len(classes) < 2 or not all(isinstance(c, str) and c for c in classes):
        return "classes must be a list of at least two class names (strings), in the classifier's index order"
    if len(set(classes)) != len(classes) or len(classes) > MAX_CLASSES:
        return f"classes must name each class once, at most {MAX_CLASSES:,} of them"
    for name, value in (("label", report.label), ("predicted_label", report.predicted_label)):
        if value is not None and value >= len(classes):
            return f"{name} {value} is not a class of this task: classes names {len(classes)} (0 to {len(classes) - 1})"
    if report.label_name is not None and report.label_name != classes[report.label]:
        return (
            f"label_name {report.label_name!r} is not class {report.label} of the report's classes "
            f"({classes[report.label]!r}); give the label and its name from the same list"
        )
    return None


def _text_problem(bug_input: object, reference_input: object) -> str | None:
    for name, text in (("bug_input", bug_input), ("reference_input", reference_input)):
        if not isinstance(text, str):
            return f"'{name}' must be the sentence itself (a JSON string) for a text bug report"
        if not text.strip():
            return f"'{name}' is empty; give the sentence the classifier got wrong (or its correct reference)"
        if len(text) > MAX_TEXT_CHARACTERS:
            return (
                f"'{name}' has {len(text)} characters (at most {MAX_TEXT_CHARACTERS}); report one sentence or passage"
            )
    if bug_input.strip() == reference_input.strip():
        return "bug input and reference input are identical; x_r must be another, correctly classified input"
    return None


def load_bug_report(path: str | Path) -> BugReport:
    """Reads and validates a bug report JSON file, or a folder that holds ``bug.json``."""
    path = Path(path)
    if path.is_dir():
        candidates = [path / name for name in BUG_FILE_NAMES if (path / name).exists()]
        if not candidates:
            raise BugReportError(f"{path}: no bug.json in this folder; write one as described in the README")
        path = candidates[0]
    if not path.is_file():
        raise BugReportError(f"{path}: bug report not found; pass the bug.json file or its folder")
    if path.stat().st_size > MAX_REPORT_BYTES:  # a 60 MB report was echoed into a 58 MB report.json
        raise BugReportError(
            f"{path}: {path.stat().st_size:,} bytes; a bug report is at most {MAX_REPORT_BYTES:,} (its images are "
            "files beside it, its sentences at most 5,000 characters)"
        )
    try:
        spec = json.loads(path.read_text(encoding="utf-8"))
    except UnicodeDecodeError as error:
        raise BugReportError(f"{path}: not UTF-8 text; save the bug report as UTF-8 JSON") from error
    except json.JSONDecodeError as error:
        raise BugReportError(f"{path}: invalid JSON at line {error.lineno} ({error.msg}); fix the syntax") from error
    except RecursionError as error:
        raise BugReportError(f"{path}: JSON nested too deep to read; a bug report is one flat object") from error
    if not isinstance(spec, dict):
        raise BugReportError(f"{path}: expected a JSON object with bug_input, reference_input and label")
    unknown = sorted(set(spec) - set(KEYS))
    if unknown:
        close = {key: difflib.get_close_matches(key, KEYS, n=1) for key in unknown}
        guesses = "; ".join(f"{key!r}: did you mean {match[0]!r}?" for key, match in close.items() if match)
        raise BugReportError(
            f"{path}: unknown keys {unknown}{f' ({guesses})' if guesses else ''}; the keys are {', '.join(KEYS)}"
        )
    if spec.get("format", FORMAT) != FORMAT:
        raise BugReportError(f"{path}: format {spec['format']!r} is not {FORMAT!r}; write the current format")
    modality = spec.get("modality", "image")
    if modality == "text":
        return _text_report(path, spec)
    for key in ("bug_input", "reference_input"):
        if not isinstance(spec.get(key), str) or not spec[key].strip():
            raise BugReportError(f"{path}: '{key}' is missing; give the path of the image file")
    bug_file, reference_file = (_inside(path, spec[key]) for key in ("bug_input", "reference_input"))
    try:
        bug_input, reference_input = load_image(bug_file), load_image(reference_file)
    except DataError as error:
        raise BugReportError(f"{path}: {error}") from error
    label = spec.get("label", _label_from_authors_name(bug_file.name))
    if label is None:
        raise BugReportError(f"{path}: 'label' is missing; give the true class index of x_b and x_r")
    try:
        return BugReport(
            bug_input=bug_input,
            reference_input=reference_input,
            label=label,
            predicted_label=spec.get("predicted_label"),
            label_name=spec.get("label_name"),
            modality=modality,
            classes=_classes(spec),
        )
    except BugReportError as error:
        raise BugReportError(f"{path}: {error}") from None


def _inside(report: Path, relative: str) -> Path:
    """``relative`` under the report's folder; a path that leaves it (``..``, an absolute path, a link pointing
    out) is refused: a report from a stranger must not make the tool read any file the user can read."""
    folder = report.parent.resolve()
    target = (report.parent / relative).resolve()
    if not target.is_relative_to(folder):
        raise BugReportError(
            f"{report}: {relative!r} leads outside the report's folder ({folder}); put the image beside bug.json"
        )
    return report.parent / relative


def _text_report(path: Path, spec: dict[str, Any]) -> BugReport:
    label = spec.get("label")
    if label is None:
        raise BugReportError(f"{path}: 'label' is missing; give the true class index of x_b and x_r")
    try:
        return BugReport(
            bug_input=spec.get("bug_input"),
            reference_input=spec.get("reference_input"),
            label=label,
            predicted_label=spec.get("predicted_label"),
            label_name=spec.get("label_name"),
            modality="text",
            classes=_classes(spec),
        )
    except BugReportError as error:
        raise BugReportError(f"{path}: {error}") from None


def _classes(spec: dict[str, Any]) -> Any:
    """The report's ``classes`` as a tuple when it is a JSON list (anything else is left for the check to name)."""
    classes = spec.get("classes")
    return tuple(classes) if isinstance(classes, list) else classes


def save_bug_report(report: BugReport, directory: str | Path) -> Path:
    """Writes ``bug.json``, ``x_b.png`` and ``x_r.png`` into ``directory``; returns the JSON path."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    inputs = {"bug_input": report.bug_input, "reference_input": report.reference_input}
    if report.modality == "image":
        save_image_png(report.bug_input, directory / "x_b.png")
        save_image_png(report.reference_input, directory / "x_r.png")
        inputs = {"bug_input": "x_b.png", "reference_input": "x_r.png"}
    spec = {
        "format": FORMAT,
        "modality": report.modality,
        **inputs,
        "label": report.label,
        "predicted_label": report.predicted_label,
        "label_name": report.label_name,
        **({} if report.classes is None else {"classes": list(report.classes)}),
    }
    target = directory / "bug.json"
    target.write_text(json.dumps(spec, indent=2, ensure_ascii=False), encoding="utf-8")
    return target


def _label_from_authors_name(name: str) -> int | None:
    match = re.search(r"_label_(\d+)", name)
    return int(match.group(1)) if match else None


def check_modality(
    bug: BugReport, modality: str, supported: tuple[str, ...] = ("image", "text"), source: str | Path | None = None
) -> None:
    """Raises ``DataError`` (naming ``source``, the bug report's path, when given) when the bug report and the
    model's ``modality`` disagree, and ``ConfigError`` when the step does not support that modality."""
    if bug.modality != modality:
        raise DataError(
            ("" if source is None else f"{source}: ")
            + f"the bug report is {bug.modality} but the model encodes {modality}; "
            "report the bug against the model it came from"
        )
    if modality not in supported:
        raise ConfigError(f"this step supports {' and '.join(supported)} encoders, not {modality}")


def check_same_size(bug: BugReport, inputs: object, source: str | Path, data: str | Path) -> None:
    """Refuses (naming both files) an image bug whose ``x_b``/``x_r`` differ in size or channels from the clean
    images it is checked and patched against: they are stamped and embedded in one batch."""
    if bug.modality != "image" or not isinstance(inputs, Tensor) or inputs.ndim != 4:
        return
    if tuple(bug.bug_input.shape) != tuple(inputs.shape[1:]):
        shape = "x".join(map(str, bug.bug_input.shape))
        expected = "x".join(map(str, inputs.shape[1:]))
        raise BugReportError(
            f"{source}: x_b and x_r are {shape} (channels x height x width) but the images of {data} are {expected}; "
            "give them at one size and with the same channels"
        )
