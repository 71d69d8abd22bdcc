"""The bugs a patched model was fixed for, kept inside its model folder (``fixed_bugs/``), so that the next patch of
that model keeps them fixed: each is a bug report and the trigger the patch neutralised, and a later patch adds them
to its loss as regression cases and reports their state after it."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from mudjacking.data.bug_report import BugReport, load_bug_report, save_bug_report
from mudjacking.errors import DataError
from mudjacking.triggers import Trigger
from mudjacking.triggers.recover import recoverer

FIXED_BUGS = "fixed_bugs"


def write_fixed_bugs(model_dir: Path, fixed: Sequence[tuple[BugReport, Trigger]]) -> list[str]:
    """Writes each bug report and its trigger into ``model_dir/fixed_bugs/NN/``; returns the folders' names."""
    names = []
    for number, (bug, trigger) in enumerate(fixed, 1):
        folder = model_dir / FIXED_BUGS / f"{number:02d}"
        save_bug_report(bug, folder)
        trigger.write(folder)
        names.append(f"{FIXED_BUGS}/{folder.name}")
    return names


def read_fixed_bugs(model: str | Path, modality: str) -> list[tuple[BugReport, Trigger, str]]:
    """The bugs ``model`` (a folder) was patched for, with their triggers and folders; none for a model file or a
    folder an earlier patch did not write. A folder that lacks its trigger is refused (the fix would be unchecked)."""
    root = Path(model) / FIXED_BUGS
    if not root.is_dir():
        return []
    kept = []
    expected = recoverer(modality)
    for folder in sorted(path for path in root.iterdir() if path.is_dir()):
        trigger_file = folder / f"trigger{expected.trigger_suffix}"
        if not trigger_file.is_file():
            raise DataError(
                f"{folder}: an earlier fixed bug without its {expected.trigger_file} ({trigger_file.name}); restore "
                f"it from the patch's output, or remove the folder to stop keeping that bug fixed"
            )
        kept.append((load_bug_report(folder), expected.load(trigger_file), str(folder)))
    return kept
