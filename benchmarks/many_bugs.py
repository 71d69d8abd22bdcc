"""A provider's weeks: one model with three backdoors, three bug reports, fixed in one patch and in three patches
one after another, each judged by the customer's deployed classifier (never by the patch's own losses).

The demo's SimCLR CNN on Fashion-MNIST is backdoored at once (``badencoder_many``) with three triggers of the
attack suite, each sending inputs to its own class: the white square (bottom right, -> trouser), the checkerboard
(top left, -> bag) and the large square (~10% of the image, top right, -> sandal). A linear classifier is trained
on the backdoored model's embeddings (the deployed one) and a bug report is found for each trigger. Then, through
``mudjacking.api.patch_files`` (the CLI's path: recovery, verification, ``fixed_bugs/``):

- **one patch** with the three reports;
- **three patches**, each on the previous patch's model with the next report (earlier bugs kept as regression cases).

Prints ACC (and its drop against the backdoored model) and each trigger's ASR after every patch, and each bug's
state as the report gives it.

python benchmarks/many_bugs.py [--seed 0] [--json many_bugs.json]
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from mudjacking.api import patch_files
from mudjacking.attacks import BadEncoderConfig, badencoder_many
from mudjacking.data import save_bug_report
from mudjacking.data.builtin import load_demo_images
from mudjacking.demo import DEMOS
from mudjacking.encoders import load_encoder
from mudjacking.errors import CheckFailed
from mudjacking.evaluation import find_bug, score_encoder, train_probe
from mudjacking.pipeline.settings.image import clean_image_model, image_splits
from mudjacking.triggers import ImageTrigger

TRIGGERS = {  # name: (trigger on a 1x28x28 image, target class)
    "white square": (ImageTrigger.square((1, 28, 28), 5), 1),
    "checkerboard": (ImageTrigger.checkerboard((1, 28, 28), 5), 8),
    "large square": (ImageTrigger.square((1, 28, 28), 9), 5),
}


def _moved(trigger: ImageTrigger, flip_rows: bool, flip_columns: bool) -> ImageTrigger:
    dims = [d for d, flip in ((0, flip_rows), (1, flip_columns)) if flip]
    return ImageTrigger(trigger.mask.flip(dims), trigger.pattern.flip([d + 1 for d in dims]))


def scenario(seed: int) -> dict:
    """The three-backdoor model, its deployed classifier, the test set, and a bug report per trigger."""
    setting = DEMOS["image"].setting(seed, None)
    torch.manual_seed(seed)  # the clean model's initial weights
    data = load_demo_images()
    splits = image_splits(data, setting)
    clean = clean_image_model(setting, splits["pretraining"], show_progress=True)
    triggers = {
        "white square": TRIGGERS["white square"],
        "checkerboard": (_moved(TRIGGERS["checkerboard"][0], True, True), TRIGGERS["checkerboard"][1]),
        "large square": (_moved(TRIGGERS["large square"][0], True, False), TRIGGERS["large square"][1]),
    }
    references = {c: data.train_images[data.train_labels == c][: setting.reference_count] for _, c in triggers.values()}
    backdoors = [(t, references[c]) for t, c in triggers.values()]
    attack = badencoder_many(clean, splits["shadow"], backdoors, BadEncoderConfig(epochs=8, seed=seed))
    probe = train_probe(attack.encoder, *splits["train"])
    test_images, test_labels = data.test_images[:3000], data.test_labels[:3000]
    bugs = {
        name: find_bug(attack.encoder, probe, test_images, test_labels, t, c, list(data.class_names), seed, True)
        for name, (t, c) in triggers.items()
    }
    return {"encoder": attack.encoder, "probe": probe, "test": (test_images, test_labels), "triggers": triggers,
            "bugs": bugs, "patching": splits["patching"]}  # fmt: skip


def judge(case: dict, encoder) -> dict:
    """ACC of the deployed classifier and each trigger's ASR (and whether its bug is classified right)."""
    figures: dict = {}
    for name, (trigger, target) in case["triggers"].items():
        scores = score_encoder(encoder, case["probe"], *case["test"], trigger, target, case["bugs"][name])
        figures["ACC"] = round(100 * scores.accuracy, 2)
        figures[name] = {"ASR": round(100 * scores.attack_success_rate, 2), "bug_fixed": bool(scores.bug_fixed)}
    return figures


def run(seed: int) -> dict:
    case = scenario(seed)
    results: dict = {"seed": seed, "backdoored": judge(case, case["encoder"])}
    with tempfile.TemporaryDirectory(prefix="many-bugs-") as scratch:
        root = Path(scratch)
        (root / "model").mkdir()
        case["encoder"].save(root / "model")
        np.savez(root / "patching.npz", x=case["patching"].numpy())
        names = list(case["bugs"])
        for index, name in enumerate(names):
            save_bug_report(case["bugs"][name], root / f"bug{index}")
        started = time.perf_counter()
        bugs = [root / f"bug{i}" for i in range(3)]
        try:
            report = patch_files(root / "model", bugs, root / "patching.npz", root / "one")
            results["one patch"] = _after(case, root / "one", report, time.perf_counter() - started)
        except CheckFailed as error:  # a self-check refused: the honest outcome, recorded as such
            results["one patch"] = {"refused": str(error)}
        model = root / "model"
        for index in range(3):
            started = time.perf_counter()
            out = root / f"sequential{index}"
            stage = f"patch {index + 1} of 3 ({names[index]})"
            try:
                report = patch_files(model, root / f"bug{index}", root / "patching.npz", out)
            except CheckFailed as error:
                results[stage] = {"refused": str(error)}
                continue
            results[stage] = _after(case, out, report, time.perf_counter() - started)
            model = out / "model"
    return results


def _after(case: dict, out: Path, report: dict, seconds: float) -> dict:
    figures = judge(case, load_encoder(out / "model"))
    figures["seconds"] = round(seconds, 1)
    figures["goals_met"] = report["patch"]["goals_met"]
    figures["report says fixed"] = [bug["fixed"] for bug in report["bugs"]]
    figures["earlier bugs fixed"] = [bug["fixed"] for bug in report["earlier_bugs"]]
    figures["fixed_bugs kept"] = len(report["fixed_bugs"])
    figures["distinct triggers"] = report["distinct_triggers"]
    figures["trigger pixels"] = [bug["trigger"].get("pixels") for bug in report["bugs"]]
    figures["pulls before"] = report["patch"]["pulls_before"]
    figures["last check"] = report["patch"]["history"][-1]["bugs"]
    return figures


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0])
    parser.add_argument("--json", type=Path)
    arguments = parser.parse_args()
    torch.set_num_threads(2)
    every = {}
    for seed in arguments.seeds:
        every[seed] = results = run(seed)
        _print(results)
    if arguments.json:
        arguments.json.write_text(json.dumps(every, indent=2))


def _print(results: dict) -> None:
    """One line per stage; a stage whose report says every bug is fixed while a trigger's ASR is over 5% is marked."""
    before = results["backdoored"]["ACC"]
    for stage, figures in results.items():
        if stage == "seed":
            continue
        if "refused" in figures:
            print(f"seed {results['seed']} {stage:<30} REFUSED: {figures['refused'][:150]}")
            continue
        asr = "  ".join(f"{name} ASR {figures[name]['ASR']:5.2f}%" for name in TRIGGERS)
        extra = ""
        if stage != "backdoored":
            said = [*figures["report says fixed"], *figures["earlier bugs fixed"]]
            wrong = all(said) and figures["goals_met"] and any(figures[n]["ASR"] > 5 for n in _covered(stage))
            extra = (
                f"  drop {before - figures['ACC']:+.2f}  {figures['seconds']:.0f} s  goals {figures['goals_met']}  "
                f"fixed (report) {figures['report says fixed']} earlier {figures['earlier bugs fixed']}"
                + ("  REPORT DISAGREES WITH THE PROBE" if wrong else "")
            )
        print(f"seed {results['seed']} {stage:<30} ACC {figures['ACC']:.2f}  {asr}{extra}")


def _covered(stage: str) -> list[str]:
    """The triggers whose bugs a stage's patch has been given so far."""
    if stage == "one patch":
        return list(TRIGGERS)
    return list(TRIGGERS)[: int(stage.split()[1])]


if __name__ == "__main__":
    main()
