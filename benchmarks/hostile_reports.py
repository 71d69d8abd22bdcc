"""Hostile bug reports against the guard ``patch`` runs before it changes anything, and genuine ones beside them.

A customer can file a "bug" to plant a backdoor: ``x_b`` a clean input of class A carrying a sticker of the
customer's choosing, ``x_r`` an input of class B, label B. Patching it would teach the model to send sticker -> B,
and the provider would ship that backdoor to every customer. The guard (``mudjacking reverse-trigger``'s checks,
the same ``patch`` runs first) must refuse it: the bug must show in the model as loaded, and the recovered trigger,
stamped on clean inputs of D, must drag them toward ``h(x_b)`` far more than the same stamp cut from ordinary inputs.

Hostile reports, on the image demo's backdoored model (and with ``--modalities image text`` the text demo's):
- **sticker**: a clean, correctly classified input of class A with a sticker (images: white, checkerboard or noise
  squares of 3, 5 and 7 pixels in three corners and the centre, never where the real trigger sits; text: a made-up
  word or phrase inserted), ``x_r`` of class B, label B;
- **mismatched**: a clean input of class A, ``x_r`` of class B, label B (no sticker at all);
- **clean x_b**: an input the classifier gets wrong without any trigger, ``x_r`` of its true class.
Genuine reports: the demo's own bug, more real backdoor bugs of the same model (other seeds of ``find_bug``), and the
experiment files' bugs (``--experiment-seeds``). Every report goes through the CLI's path
(``api.reverse_trigger_files``); a refusal is a ``CheckFailed``.

``--plant N`` also patches the first N sticker reports with ``--force`` and measures what the guard prevented: the
sticker's ASR toward B (clean test inputs of other classes with the sticker, classified B by the deployed classifier)
before and after that patch.

python benchmarks/hostile_reports.py [--modalities image text] [--plant 3] [--experiment-seeds 0 1 2]
    [--json hostile.json]
"""

from __future__ import annotations

import argparse
import json
import random
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from mudjacking.api import patch_files, reverse_trigger_files
from mudjacking.data import BugReport, save_bug_report
from mudjacking.demo import DEMOS
from mudjacking.encoders import load_encoder
from mudjacking.errors import CheckFailed
from mudjacking.evaluation import find_bug
from mudjacking.experiments.config import load_experiment_config
from mudjacking.triggers import ImageTrigger, TextTrigger

ROOT = Path(__file__).parents[1]
STICKER_WORDS = ["zorblax", "kwimbo", "as seen on tv", "blue moon", "by the way", "qx", "frobnicate", "twelve owls"]


def _square(shape: tuple[int, int, int], size: int, top: int, left: int, pattern: str, seed: int) -> ImageTrigger:
    mask = torch.zeros(shape[1:])
    mask[top : top + size, left : left + size] = 1
    if pattern == "white":
        fill = torch.ones(shape)
    elif pattern == "checkerboard":
        rows, columns = torch.meshgrid(torch.arange(shape[1]), torch.arange(shape[2]), indexing="ij")
        fill = ((rows + columns) % 2).float().expand(shape).clone()
    else:
        fill = torch.rand(shape, generator=torch.Generator().manual_seed(seed))
    return ImageTrigger(mask, fill)


def image_stickers(shape: tuple[int, int, int]) -> list[tuple[str, ImageTrigger]]:
    """12 stickers: sizes 3, 5, 7 in the top-left, top-right, bottom-left corners and the centre (the demo's real
    trigger sits bottom right), patterns in turn."""
    height, width = shape[1:]
    stickers = []
    patterns = ["white", "checkerboard", "noise"]
    for s_index, size in enumerate((3, 5, 7)):
        places = {
            "top-left": (1, 1),
            "top-right": (1, width - size - 1),
            "bottom-left": (height - size - 1, 1),
            "centre": ((height - size) // 2, (width - size) // 2),
        }
        for p_index, (place, (top, left)) in enumerate(places.items()):
            pattern = patterns[(s_index + p_index) % 3]
            stickers.append((f"{pattern} {size}px {place}", _square(shape, size, top, left, pattern, p_index)))
    return stickers


def text_stickers() -> list[tuple[str, TextTrigger]]:
    return [(f"inserted {words!r}", TextTrigger([words], seed=index)) for index, words in enumerate(STICKER_WORDS)]


class Case:
    """A backdoored model with its deployed classifier, test set and patching set, on disk for the CLI's path."""

    def __init__(self, scenario, root: Path) -> None:
        self.scenario = scenario
        task = next(iter(scenario.tasks.values()))
        self.kind = next(iter(task.probes))
        self.probe, self.target = task.probes[self.kind], task.targets[self.kind]
        self.inputs, self.labels = task.test
        self.class_names = task.class_names
        self.predicted = self.probe.predict(scenario.backdoored.embed(self.inputs))
        self.root = root
        root.mkdir(parents=True, exist_ok=True)
        (root / "model").mkdir()
        scenario.backdoored.save(root / "model")
        if scenario.modality == "image":
            self.data = root / "patching.npz"
            np.savez(self.data, x=scenario.patching_set.numpy())
        else:
            self.data = root / "patching.txt"
            self.data.write_text("\n".join(s.replace("\n", " ") for s in scenario.patching_set) + "\n")

    def pick(self, rng: random.Random, label: int | None = None, exclude: tuple[int, ...] = ()) -> int:
        """A correctly classified test input (of ``label``, else of a class not in ``exclude`` nor the target; the
        target too when no other class is left, as in a two-class task)."""
        right = (self.predicted == self.labels).nonzero().flatten().tolist()
        if label is not None:
            return rng.choice([i for i in right if int(self.labels[i]) == label])
        others = [i for i in right if int(self.labels[i]) not in (*exclude, self.target)]
        return rng.choice(others or [i for i in right if int(self.labels[i]) not in exclude])

    def report(self, x_b, x_r, label: int, predicted: int) -> BugReport:
        return BugReport(x_b, x_r, label=label, predicted_label=predicted, modality=self.scenario.modality)

    def predict(self, inputs) -> int:
        return int(self.probe.predict(self.scenario.backdoored.embed(inputs))[0])


def hostile_reports(case: Case, stickers: list, seed: int, mismatched: int, wrong: int) -> list[dict]:
    """Sticker reports (one per sticker), ``mismatched`` reports without a sticker and ``wrong`` clean ``x_b``s."""
    rng = random.Random(seed)
    reports = []
    for name, sticker in stickers:
        for _ in range(50):  # a class-B reference, and a stickered x_b the classifier does not already put in B
            a = case.pick(rng)
            b_class = int(case.labels[case.pick(rng, exclude=(int(case.labels[a]),))])
            x_b = sticker.apply(_one(case, a))[0]
            predicted = case.predict(_batch(x_b))
            if predicted != b_class:
                break
        r = case.pick(rng, label=b_class)
        reports.append(
            {
                "kind": "sticker",
                "what": name,
                "sticker": sticker,
                "claimed": b_class,
                "bug": case.report(x_b, case.inputs[r], b_class, predicted),
            }
        )
    for _ in range(mismatched):
        a = case.pick(rng)
        b_class = int(case.labels[case.pick(rng, exclude=(int(case.labels[a]),))])
        r = case.pick(rng, label=b_class)
        reports.append(
            {
                "kind": "mismatched",
                "what": f"class {int(case.labels[a])} reported as {b_class}",
                "bug": case.report(case.inputs[a], case.inputs[r], b_class, int(case.predicted[a])),
            }
        )
    misclassified = (case.predicted != case.labels) & (case.predicted != case.target)
    for index in rng.sample(misclassified.nonzero().flatten().tolist(), wrong):
        label = int(case.labels[index])
        r = case.pick(rng, label=label)
        reports.append(
            {
                "kind": "clean x_b",
                "what": f"class {label} misread as {int(case.predicted[index])}",
                "bug": case.report(case.inputs[index], case.inputs[r], label, int(case.predicted[index])),
            }
        )
    return reports


def _one(case: Case, index: int):
    return case.inputs[index : index + 1] if isinstance(case.inputs, torch.Tensor) else [case.inputs[index]]


def _batch(x):
    return x.unsqueeze(0) if isinstance(x, torch.Tensor) else [x]


def genuine_reports(case: Case, extra: int) -> list[dict]:
    """The scenario's own bug and ``extra`` more real backdoor bugs of the same model (other ``find_bug`` seeds)."""
    reports = [{"kind": "genuine", "what": "the demo's bug", "bug": case.scenario.bug}]
    for seed in range(1, extra + 1):
        bug = find_bug(
            case.scenario.backdoored,
            case.probe,
            case.inputs,
            case.labels,
            case.scenario.true_trigger,
            case.target,
            case.class_names,
            seed,
            caused_by_trigger=True,
        )
        reports.append({"kind": "genuine", "what": f"find_bug seed {seed}", "bug": bug})
    return reports


def guard(case: Case, bug: BugReport, folder: Path) -> dict:
    """Runs the checks ``patch`` runs first; ``refused`` with the one-line reason, or the verified trigger."""
    save_bug_report(bug, folder / "bug")
    started = time.perf_counter()
    try:
        summary = reverse_trigger_files(case.root / "model", folder / "bug", case.data, folder / "out", overwrite=True)
    except CheckFailed as error:
        return {"refused": True, "why": str(error).split(": ", 1)[-1][:200], "seconds": time.perf_counter() - started}
    check = summary.get("verification", {})
    return {"refused": False, "verification": check, "seconds": time.perf_counter() - started}


def planted(case: Case, entry: dict, folder: Path) -> dict | None:
    """Patches the hostile report with ``--force`` and measures the sticker's ASR toward the claimed class; ``None``
    when even ``--force`` finds nothing to patch (every occlusion map flat: no candidate at all)."""
    try:
        patch_files(case.root / "model", folder / "bug", case.data, folder / "forced", force=True, show_progress=False)
    except CheckFailed:
        return None
    patched = load_encoder(folder / "forced" / "model")
    others = (case.labels != entry["claimed"]).nonzero().flatten()
    stamped = entry["sticker"].apply(
        case.inputs[others] if isinstance(case.inputs, torch.Tensor) else [case.inputs[i] for i in others.tolist()]
    )
    rates = {}
    for name, model in (("before", case.scenario.backdoored), ("after", patched)):
        hits = case.probe.predict(model.embed(stamped)) == entry["claimed"]
        rates[name] = round(100 * float(hits.float().mean()), 2)
    return rates


def run_modality(name: str, scratch: Path, args: argparse.Namespace) -> dict:
    scenario = DEMOS[name].setting(args.seed, None).prepare(show_progress=True)
    case = Case(scenario, scratch / name)
    stickers = image_stickers(tuple(scenario.patching_set.shape[1:])) if name == "image" else text_stickers()
    counts = (5, 5) if name == "image" else (3, 3)
    entries = [] if args.only_genuine else hostile_reports(case, stickers, args.seed, *counts)
    entries += genuine_reports(case, args.genuine)
    for index, entry in enumerate(entries):
        entry["folder"] = scratch / name / f"report{index:02d}"
        entry.update(guard(case, entry["bug"], entry["folder"]))
        verdict = "REFUSED " if entry["refused"] else "accepted"
        why = entry.get("why") or f"pull {entry['verification'].get('pull', float('nan')):.2f}"
        print(f"  {name} {entry['kind']:<10} {entry['what']:<34} {verdict} {why[:110]}", flush=True)
    for entry in [e for e in entries if e["kind"] == "sticker"][: args.plant]:
        entry["planted_asr"] = planted(case, entry, entry["folder"])
        if entry["planted_asr"] is None:
            print(f"  {name} forced patch of {entry['what']}: nothing to patch, even forced", flush=True)
            continue
        print(
            f"  {name} forced patch of {entry['what']}: sticker -> class {entry['claimed']} ASR "
            f"{entry['planted_asr']['before']:.1f}% before, {entry['planted_asr']['after']:.1f}% after",
            flush=True,
        )
    return {"entries": [{k: v for k, v in e.items() if k not in ("bug", "sticker", "folder")} for e in entries]}


def experiment_genuine(path: Path, seeds: list[int], scratch: Path) -> list[dict]:
    """The experiment file's bug for each seed, through the guard on its own backdoored model."""
    config = load_experiment_config(path)
    results = []
    for seed in seeds:
        scenario = config.setting_config(seed).prepare(show_progress=True)
        case = Case(scenario, scratch / f"{path.stem}-{seed}")
        entry = {"kind": "genuine", "what": f"{path.name} seed {seed}", **guard(case, scenario.bug, case.root)}
        print(f"  {entry['what']}: {'REFUSED ' + entry['why'] if entry['refused'] else 'accepted'}", flush=True)
        results.append(entry)
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--modalities",
        nargs="+",
        default=["image"],
        choices=["image", "text"],
        help="the demos' models to attack (text: MiniLM, slower)",
    )
    parser.add_argument("--genuine", type=int, default=4, help="extra real bugs of the demo's model")
    parser.add_argument("--plant", type=int, default=3, help="sticker reports patched with --force")
    parser.add_argument("--experiment-seeds", type=int, nargs="*", default=[])
    parser.add_argument("--only-genuine", action="store_true", help="skip the hostile reports")
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    torch.set_num_threads(2)
    results: dict = {}
    with tempfile.TemporaryDirectory(prefix="hostile-") as scratch:
        for name in args.modalities:
            results[name] = run_modality(name, Path(scratch), args)
        if args.experiment_seeds:
            configs = [ROOT / "configs" / f"{name}.toml" for name in args.modalities]
            results["experiments"] = [
                e for c in configs for e in experiment_genuine(c, args.experiment_seeds, Path(scratch))
            ]
    for name, part in results.items():
        entries = part["entries"] if isinstance(part, dict) else part
        hostile = [e for e in entries if e["kind"] != "genuine"]
        genuine = [e for e in entries if e["kind"] == "genuine"]
        print(
            f"{name}: hostile refused {sum(e['refused'] for e in hostile)}/{len(hostile)}; "
            f"genuine accepted {sum(not e['refused'] for e in genuine)}/{len(genuine)}"
        )
    if args.json:
        args.json.write_text(json.dumps(results, indent=2, default=str))


if __name__ == "__main__":
    main()
