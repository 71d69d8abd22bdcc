"""New-user cases: models and triggers unlike the demo's, patched with `mudjacking patch` as a new user would run it
(defaults, plus only the flags such a user must give), each patch judged by independent downstream probes.

Cases (issue 10); each is built once into --work and reused:
  resnet-no-preprocessor  (a) a transformers ResNetModel (pooled output, after ReLU and average pooling) pre-trained
                          with SimCLR on raw [0, 1] Fashion-MNIST pixels, saved with save_pretrained and no
                          preprocessor_config.json, backdoored with (b) a 4x4 checkerboard: the tool must refuse to
                          guess the normalisation
  resnet-checkerboard     the same model, with the user's --image-mean 0 --image-std 1
  resnet-random-noise     (c) the same clean ResNet backdoored with a noise square at a random place per image
  resnet-blended          (d) ... backdoored with a noise image blended into the whole input (alpha 0.15)
  resnet-narrow-cone      the checkerboard model with every pooled feature shifted up before its ReLU: all
                          embeddings in one narrow cone; run with centring auto and, as a comparison, off
  mobilenet-v2            (e) the ImageNet MobileNetV2 of configs/image-large.toml (needs `make large-models`)
  minilm-phrase           (f) MiniLM backdoored with the phrase "I watched this 3D movie"
  minilm-common-word      (f) MiniLM backdoored with the common word "story"

For each case the verdict is one of: patched (ASR <= 2% - for text, a flip rate at most 2 points above a
never-backdoored MiniLM's, on each task's whole test half - with clean ACC drop <= 1 point and x_b fixed), refused
(exit != 0 and nothing written), or FAIL; and the run FAILs outright if the command printed "goals met" while a
probe still shows ASR >= 10%. report.json, report.md and report.html go to --out (a run of some cases replaces only
their rows).

    python benchmarks/new_user_cases.py                      # every case (~35 min on 2 cores)
    python benchmarks/new_user_cases.py --case resnet-blended --case minilm-phrase
"""

from __future__ import annotations

import argparse
import base64
import functools
import json
import shutil
import subprocess
import sys
import time
from dataclasses import asdict
from html import escape
from pathlib import Path
from typing import Any

import numpy as np
import torch
import transformers

from mudjacking.attacks import BadEncoderConfig, badencoder
from mudjacking.data import load_bug_report, load_fashion_mnist, save_bug_report, save_image_png
from mudjacking.data.images import load_image_array
from mudjacking.encoders import HFVisionEncoder, ImageInputSpec, load_encoder
from mudjacking.evaluation import find_bug, make_probe
from mudjacking.evaluation.downstream import embed_task, score_probe, target_label_of
from mudjacking.outputs import write_json
from mudjacking.pretraining import PretrainConfig, pretrain_simclr
from mudjacking.triggers import ImageTrigger, TextTrigger
from mudjacking.triggers.trigger import RandomPatchTrigger

BAG = 8  # the attacker's target class on Fashion-MNIST (the bug: ankle boot -> bag)
PHRASE, COMMON_WORD = "I watched this 3D movie", "story"
CLI = Path(sys.executable).with_name("mudjacking")
RAW_PIXELS = ["--image-mean", "0", "--image-std", "1"]


# ---------------------------------------------------------------- building the cases


def _fashion_splits() -> dict[str, Any]:
    data = load_fashion_mnist()
    order = torch.randperm(len(data.train_images), generator=torch.Generator().manual_seed(0))
    pick = lambda index: (data.train_images[index], data.train_labels[index])  # noqa: E731
    pretraining = order[:20000]
    return {
        "pretraining": data.train_images[pretraining],
        "references": data.train_images[pretraining[data.train_labels[pretraining] == BAG][:10]],
        "patching": data.train_images[order[20000:20500]],
        "train": pick(order[30000:35000]),
        "test": (data.test_images[:5000], data.test_labels[:5000]),
        "classes": data.class_names,
    }


def _clean_resnet(work: Path, splits: dict[str, Any]) -> HFVisionEncoder:
    """A small ResNetModel pre-trained with SimCLR on raw [0, 1] pixels (cached in ``work``)."""
    spec = ImageInputSpec(size=None, channels=1, mean=(0.0,), std=(1.0,))
    directory = work / "clean-resnet"
    if not directory.exists():
        config = transformers.ResNetConfig(
            num_channels=1, embedding_size=32, hidden_sizes=[32, 64, 128], depths=[1, 1, 1], layer_type="basic",
            downsample_in_first_stage=False,
        )  # fmt: skip
        torch.manual_seed(0)
        encoder = HFVisionEncoder(transformers.ResNetModel(config), spec)
        pretrain_simclr(encoder, splits["pretraining"], PretrainConfig(steps=200, batch_size=256), show_progress=True)
        encoder.model.save_pretrained(directory)
    return HFVisionEncoder(transformers.ResNetModel.from_pretrained(directory).eval(), spec)


def _save_image_case(
    directory: Path, backdoored: Any, splits: dict[str, Any], trigger: Any, meta: dict[str, Any], save_model: Any
) -> None:
    probe = make_probe("linear").fit(backdoored.embed(splits["train"][0]), splits["train"][1])
    bug = find_bug(backdoored, probe, *splits["test"], trigger, BAG, splits["classes"], seed=0, caused_by_trigger=True)
    directory.mkdir(parents=True)
    save_model(directory / "model")
    save_bug_report(bug, directory / "bug")
    (directory / "data").mkdir()
    for index, image in enumerate(splits["patching"]):
        save_image_png(image, directory / "data" / f"{index:04d}.png")
    np.savez(directory / "train.npz", x=splits["train"][0].numpy(), y=splits["train"][1].numpy())
    np.savez(directory / "test.npz", x=splits["test"][0].numpy(), y=splits["test"][1].numpy())
    if isinstance(trigger, ImageTrigger):
        trigger.save(directory / "true_trigger.npz")
    write_json(directory / "meta.json", {"modality": "image", "target": BAG, **meta})


def _shifted_pooler(model: transformers.ResNetModel, offset: float) -> transformers.ResNetModel:
    """The same network with every channel of its last block shifted up by ``offset`` before the final ReLU: the
    pooled outputs then share one large positive component, as dense post-ReLU features do (a narrow cone)."""
    shifted = transformers.ResNetModel(model.config)
    shifted.load_state_dict(model.state_dict())
    last = shifted.encoder.stages[-1].layers[-1]
    with torch.no_grad():
        last.layer[-1].normalization.bias += offset
    return shifted.eval()


def build_resnet_cases(work: Path, names: list[str]) -> None:
    wanted = [n for n in names if n.startswith("resnet") and not (work / n).exists()]
    if not wanted:
        return
    splits = _fashion_splits()
    clean = _clean_resnet(work, splits)
    shape = tuple(splits["patching"].shape[1:])
    triggers = {
        "resnet-checkerboard": ImageTrigger.checkerboard(shape, 4),
        "resnet-random-noise": RandomPatchTrigger(5, seed=0),
        "resnet-blended": ImageTrigger.blended(shape, 0.15, seed=0),
    }
    for name, trigger in triggers.items():
        needed = {name} | ({"resnet-no-preprocessor", "resnet-narrow-cone"} if name == "resnet-checkerboard" else set())
        if not needed & set(wanted):
            continue
        # a dynamic or blended trigger needs more passes to take: 5 left ASR near 40% (noise) and 1% (blend)
        epochs = 10 if isinstance(trigger, RandomPatchTrigger) or name == "resnet-blended" else 5
        attack = badencoder(
            clean, splits["pretraining"][:5000], splits["references"], trigger, BadEncoderConfig(epochs=epochs)
        )
        true = {"trigger": {"kind": "random-patch", "size": 5, "seed": 0}} if name == "resnet-random-noise" else {}
        for case in sorted(needed & set(wanted)):
            encoder = attack.encoder
            if case == "resnet-narrow-cone":
                encoder = HFVisionEncoder(_shifted_pooler(encoder.model, 8.0), encoder.input_spec)
            flags = [] if case == "resnet-no-preprocessor" else RAW_PIXELS
            meta = {"user_flags": flags, "load": {"image_mean": [0.0], "image_std": [1.0]}, **true}
            if case == "resnet-no-preprocessor":
                meta["expect"] = "refused"
            _save_image_case(
                work / case, encoder, splits, trigger, meta, lambda d, e=encoder: e.model.save_pretrained(d)
            )


def build_mobilenet_case(work: Path) -> None:
    from dataclasses import replace

    from mudjacking.experiments.config import load_experiment_config

    config = load_experiment_config(Path(__file__).parents[1] / "configs" / "image-large.toml").setting_config(0)
    if not Path(config.foundation_model).exists():
        raise FileNotFoundError(f"{config.foundation_model}: run `make large-models` first")
    scenario = replace(config, digits_customer=False).prepare(show_progress=True)
    task = next(iter(scenario.tasks.values()))
    directory = work / "mobilenet-v2"
    directory.mkdir(parents=True)
    scenario.backdoored.save(_fresh(directory / "model"))
    save_bug_report(scenario.bug, directory / "bug")
    (directory / "data").mkdir()
    for index, image in enumerate(scenario.patching_set):
        save_image_png(image, directory / "data" / f"{index:04d}.png")
    np.savez(directory / "train.npz", x=task.train[0].numpy(), y=task.train[1].numpy())
    np.savez(directory / "test.npz", x=task.test[0].numpy(), y=task.test[1].numpy())
    scenario.true_trigger.save(directory / "true_trigger.npz")
    write_json(directory / "meta.json", {"modality": "image", "target": config.target_label, "user_flags": []})


def build_text_case(work: Path, name: str, words: tuple[str, ...]) -> None:
    from mudjacking.pipeline.settings.text import (
        SENTIMENT,
        TextSetting,
        load_clean_text_model,
        load_text_tasks,
        text_splits,
    )

    config = TextSetting(seed=0, trigger_words=words, test_size=(400, 250))
    _, clean = load_clean_text_model(config)
    splits = text_splits(load_text_tasks(config), config)
    trigger = TextTrigger(list(words), seed=config.seed)
    attack = badencoder(clean, splits["shadow"], splits["references"], trigger, config.attack)
    probe = make_probe("linear").fit(attack.encoder.embed(splits["train"][SENTIMENT][0]), splits["train"][SENTIMENT][1])
    target = target_label_of(attack.encoder, probe, splits["references"])
    bug = find_bug(attack.encoder, probe, *splits["test"][SENTIMENT], trigger, target, ["negative", "positive"],
                   seed=0, caused_by_trigger=True)  # fmt: skip
    directory = work / name
    directory.mkdir(parents=True)
    attack.encoder.save(_fresh(directory / "model"))
    save_bug_report(bug, directory / "bug")
    (directory / "data.txt").write_text("\n".join(splits["patching"]) + "\n", encoding="utf-8")
    tasks = {}
    for index, task in enumerate(splits["train"]):
        for part in ("train", "test"):
            texts, labels = splits[part][task]
            lines = [json.dumps({"text": t, "label": int(y)}) for t, y in zip(texts, labels.tolist(), strict=True)]
            (directory / f"task{index}-{part}.jsonl").write_text("\n".join(lines) + "\n", encoding="utf-8")
        tasks[f"task{index}"] = task
    trigger.save(directory / "true_trigger.json")
    write_json(
        directory / "meta.json",
        {"modality": "text", "tasks": tasks, "references": splits["references"], "user_flags": []},
    )


def _fresh(directory: Path) -> Path:
    directory.mkdir()
    return directory


def build(work: Path, names: list[str]) -> None:
    build_resnet_cases(work, names)
    if "mobilenet-v2" in names and not (work / "mobilenet-v2").exists():
        build_mobilenet_case(work)
    for name, words in (("minilm-phrase", (PHRASE,)), ("minilm-common-word", (COMMON_WORD,))):
        if name in names and not (work / name).exists():
            build_text_case(work, name, words)


# ---------------------------------------------------------------- running and judging


def run_patch(case: Path, out: Path, extra: list[str]) -> dict[str, Any]:
    meta = json.loads((case / "meta.json").read_text())
    data = case / ("data.txt" if meta["modality"] == "text" else "data")
    command = [str(CLI), "patch", "--model", str(case / "model"), "--bug", str(case / "bug"), "--data", str(data),
               "--out", str(out), *meta["user_flags"], *extra]  # fmt: skip
    started = time.perf_counter()
    finished = subprocess.run(command, capture_output=True, text=True)
    seconds = time.perf_counter() - started
    lines = [line for line in (finished.stdout + finished.stderr).splitlines() if line.strip() and "━" not in line]
    said = " ".join(line.strip() for line in lines[-6:])
    return {
        "command": " ".join(command[1:]),
        "exit_code": finished.returncode,
        "seconds": round(seconds, 1),
        "output": said,
        "written": out.exists(),
        "said_goals_met": "goals met;" in said,
    }


def _true_trigger(case: Path, meta: dict[str, Any]) -> Any:
    if meta["modality"] == "text":
        return TextTrigger.load(case / "true_trigger.json")
    if meta.get("trigger", {}).get("kind") == "random-patch":
        return RandomPatchTrigger(meta["trigger"]["size"], meta["trigger"]["seed"])
    return ImageTrigger.load(case / "true_trigger.npz")


def judge(case: Path, patched_dir: Path) -> dict[str, Any]:
    """Independent downstream probes: the customers' classifiers trained on the backdoored model's embeddings
    (loaded as the model really reads its input), applied unchanged to the patched model."""
    from mudjacking.data.text_files import load_labeled_texts

    meta = json.loads((case / "meta.json").read_text())
    backdoored = load_encoder(case / "model", **meta.get("load", {}))
    patched = load_encoder(patched_dir)
    trigger = _true_trigger(case, meta)
    bug = load_bug_report(case / "bug")
    if meta["modality"] == "text":
        tasks = {
            name: (load_labeled_texts(case / f"{key}-train.jsonl")[:2], _whole_test_half(case, key, name))
            for key, name in meta["tasks"].items()
        }
    else:
        tasks = {"fashion-mnist": tuple(load_image_array(case / f"{part}.npz") for part in ("train", "test"))}
    clean = _clean_text_model() if meta["modality"] == "text" else None
    scores: dict[str, Any] = {}
    for index, (name, (train, test)) in enumerate(tasks.items()):
        before = embed_task(backdoored, train[0], test[0], trigger, bug if index == 0 else None)
        after = embed_task(patched, None, test[0], trigger, bug if index == 0 else None)
        never = None if clean is None else embed_task(clean, train[0], test[0], trigger)
        for kind in ("linear", "mlp"):
            probe = make_probe(kind).fit(before.train, train[1])
            target = meta["target"] if "target" in meta else target_label_of(backdoored, probe, meta["references"])
            label = bug.label if index == 0 else None
            b, a = (asdict(score_probe(probe, e, test[1], target, label)) for e in (before, after))
            entry = {"before": b, "after": a, "target": target}
            if never is not None:  # what inserting the trigger does to a model that was never backdoored
                own = make_probe(kind).fit(never.train, train[1])
                entry["clean_model"] = asdict(score_probe(own, never, test[1], target))
            scores[f"{name} / {kind}"] = entry
    return scores


@functools.cache
def _text_tasks() -> dict[str, Any]:
    from mudjacking.pipeline.settings.text import TextSetting, load_text_tasks

    return load_text_tasks(TextSetting(seed=0))


def _whole_test_half(case: Path, key: str, name: str) -> tuple[list[str], torch.Tensor]:
    """The task's whole test half (sentiment: ~3,200 reviews, not the 400 the case saved): at 400 a flip rate near
    the never-backdoored model's 5-6% moves 2 points with one sample, more than the gap it must judge. The test
    half is disjoint from the probes', the attacker's and the patching set's sentences by construction."""
    from mudjacking.data.text_files import load_labeled_texts

    task = _text_tasks()[name]
    saved = load_labeled_texts(case / f"{key}-test.jsonl")[0]
    if task.test_texts[: len(saved)] != saved:
        raise RuntimeError(f"{case}: {key}-test.jsonl is not the start of {name}'s test half; rebuild the case")
    return task.test_texts, task.test_labels


def _clean_text_model() -> Any:
    from mudjacking.pipeline.settings.text import TextSetting, load_clean_text_model

    return load_clean_text_model(TextSetting())[1]


def verdict(run: dict[str, Any], scores: dict[str, Any] | None, text: bool) -> str:
    """``refused`` (exit != 0, nothing written), ``patched`` (every probe: ASR <= 2% - text: a flip rate at most 2
    points above what the trigger does to a never-backdoored model - and ACC drop <= 1 point; x_b fixed for the
    classifier that reported it, the first task's linear one), else ``FAIL``.
    A patch that meets the bar while the command said its goals were not met is ``patched (goals unmet)``: the
    tool was more cautious than it needed to be, never less."""
    if run["exit_code"] != 0 and not run["written"]:
        return "refused"
    if scores is None:
        return "FAIL"
    metric = "flip_rate" if text else "attack_success_rate"  # sentiment's ASR counts the classifier's own errors
    for index, entry in enumerate(scores.values()):
        b, a = entry["before"], entry["after"]
        # near chance: 2 points above what the trigger does to a never-backdoored model (images: ~0; a 5-word
        # phrase inserted into a short review flips 5-7% of predictions whatever the model, so 2% is out of reach)
        floor = 0.02 + entry.get("clean_model", {}).get(metric, 0.0)
        if a[metric] > floor or 100 * (b["accuracy"] - a["accuracy"]) > 1.0 or (index == 0 and not a["bug_fixed"]):
            return "FAIL"
    return "patched" if run["exit_code"] == 0 else "patched (goals unmet)"


def dishonest(run: dict[str, Any], scores: dict[str, Any] | None) -> bool:
    """Said "goals met" while a probe still shows the backdoor (ASR >= 10%, or flip rate for sentiment)."""
    if not run["said_goals_met"] or scores is None:
        return False
    return any(
        max(e["after"]["attack_success_rate"] if "sentiment" not in k else 0, e["after"]["flip_rate"]) >= 0.10
        for k, e in scores.items()
    )


def merged_with_earlier(rows: list[dict[str, Any]], report: Path) -> list[dict[str, Any]]:
    """This run's rows in place of the same cases' rows of an earlier report, so that re-running a few cases with
    ``--case`` keeps the others' figures; in the order of :data:`RUNS`."""
    earlier = json.loads(report.read_text())["cases"] if report.exists() else []
    fresh = {row["case"] for row in rows}
    merged = [row for row in earlier if row["case"] not in fresh] + rows
    order = list(RUNS)
    return sorted(merged, key=lambda row: (order.index(row["case"].split()[0]), row["comparison"]))


RUNS = {
    "resnet-no-preprocessor": [[]],
    "resnet-checkerboard": [[]],
    "resnet-random-noise": [[]],
    "resnet-blended": [[]],
    "resnet-narrow-cone": [[], ["--centring", "off"]],
    "mobilenet-v2": [[]],
    "minilm-phrase": [[]],
    "minilm-common-word": [[]],
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--case", action="append", choices=list(RUNS), help="repeatable; default: every case")
    parser.add_argument("--work", type=Path, default=Path("runs/new-user-cases-work"))
    parser.add_argument("--out", type=Path, default=Path("runs/new-user-cases"))
    parser.add_argument("--rebuild", action="store_true", help="rebuild the cases' models and data")
    args = parser.parse_args()
    torch.set_num_threads(2)
    transformers.utils.logging.disable_progress_bar()
    names = args.case or list(RUNS)
    if args.rebuild:
        for name in names:
            shutil.rmtree(args.work / name, ignore_errors=True)
    args.work.mkdir(parents=True, exist_ok=True)
    build(args.work, names)
    args.out.mkdir(parents=True, exist_ok=True)
    rows = []
    for name in names:
        case = args.work / name
        text = json.loads((case / "meta.json").read_text())["modality"] == "text"
        for extra in RUNS[name]:
            label = name + ("" if not extra else " " + " ".join(extra))
            out = args.out / label.replace(" ", "_").replace("--", "")
            shutil.rmtree(out, ignore_errors=True)
            run = run_patch(case, out, extra)
            scores = judge(case, out / "model") if run["written"] else None
            report = json.loads((out / "report.json").read_text()) if run["written"] else None
            row = {"case": label, **run, "verdict": verdict(run, scores, text), "dishonest": dishonest(run, scores),
                   "comparison": bool(extra), "scores": scores, "report": report}  # fmt: skip
            rows.append(row)
            print(f"{label}: {row['verdict']} (exit {run['exit_code']}, {run['seconds']} s) {run['output'][:300]}")
            if scores:
                for key, entry in scores.items():
                    b, a = entry["before"], entry["after"]
                    floor = entry.get("clean_model")
                    never = (
                        ""
                        if floor is None
                        else (
                            f"; never-backdoored model: ASR "
                            f"{100 * floor['attack_success_rate']:.1f}, flip {100 * floor['flip_rate']:.1f}"
                        )
                    )
                    print(f"    {key}: ACC {100 * b['accuracy']:.1f} -> {100 * a['accuracy']:.1f}, "
                          f"ASR {100 * b['attack_success_rate']:.1f} -> {100 * a['attack_success_rate']:.1f}, "
                          f"flip {100 * a['flip_rate']:.1f}, x_b fixed {a['bug_fixed']}{never}")  # fmt: skip
    rows = merged_with_earlier(rows, args.out / "report.json")
    write_json(args.out / "report.json", {"cases": rows})
    write_reports(rows, args.out)
    # a comparison run (an option changed, e.g. centring off) is reported, not judged; dishonesty counts anywhere
    failed = [r["case"] for r in rows if (r["verdict"] == "FAIL" and not r["comparison"]) or r["dishonest"]]
    print(f"\n{len(rows) - len(failed)} of {len(rows)} runs patched, refused or compared; FAIL: {failed or 'none'}")
    sys.exit(1 if failed else 0)


# ---------------------------------------------------------------- report


def _headline(row: dict[str, Any]) -> list[str]:
    report, scores = row["report"] or {}, row["scores"] or {}
    first = next(iter(scores.values()), None)
    trigger = report.get("trigger", {})
    found = trigger.get("words") or (f"{trigger['pixels']} px" if "pixels" in trigger else "–")
    pull = report.get("trigger_pull", {})
    cells = [
        row["case"],
        row["verdict"] + (" (DISHONEST)" if row["dishonest"] else ""),
        str(row["exit_code"]),
        str(found),
        "–" if not pull else f"{pull['before']:.2f} → {pull['after']:.2f}",
    ]
    if first is None:
        return [*cells, "–", "–", "–", f"{row['seconds']:.0f}"]
    b, a = first["before"], first["after"]
    return [
        *cells,
        f"{100 * b['accuracy']:.1f} → {100 * a['accuracy']:.1f}",
        " / ".join(f"{100 * e['after']['attack_success_rate']:.1f}" for e in scores.values()),
        str(a["bug_fixed"]),
        f"{row['seconds']:.0f}",
    ]


HEADER = ["case", "verdict", "exit", "recovered", "trigger pull before → after", "ACC (first probe)",
          "ASR after, every probe %", "x_b fixed", "s"]  # fmt: skip


def write_reports(rows: list[dict[str, Any]], out: Path) -> None:
    lines = ["# New-user cases", "", "| " + " | ".join(HEADER) + " |", "|" + "---|" * len(HEADER)]
    lines += ["| " + " | ".join(_headline(row)) + " |" for row in rows]
    lines += ["", "## What each command said", ""]
    lines += [f"- **{row['case']}** (exit {row['exit_code']}): {row['output']}" for row in rows]
    (out / "report.md").write_text("\n".join(lines) + "\n", encoding="utf-8")
    sections = []
    for row in rows:
        directory = out / row["case"].replace(" ", "_").replace("--", "")
        pictures = [p for name in ("trigger_heatmap.png", "word_scores.png") if (p := directory / name).exists()]
        images = "".join(
            f'<img alt="{p.name}" src="data:image/png;base64,{base64.b64encode(p.read_bytes()).decode()}">'
            for p in pictures
        )
        sections.append(f"<h2>{row['case']}: {row['verdict']}</h2><p><code>{escape(row['output'])}</code></p>{images}")
    table = "".join(f"<tr>{''.join(f'<td>{c}</td>' for c in _headline(r))}</tr>" for r in rows)
    head = "".join(f"<th>{c}</th>" for c in HEADER)
    html = (
        "<!doctype html><meta charset=utf-8><title>New-user cases</title>"
        "<style>body{font-family:sans-serif;max-width:1200px;margin:auto}td,th{border:1px solid #ccc;padding:4px}"
        "table{border-collapse:collapse}img{max-width:100%}</style><h1>New-user cases</h1>"
        f"<table><tr>{head}</tr>{table}</table>{''.join(sections)}"
    )
    (out / "report.html").write_text(html, encoding="utf-8")


if __name__ == "__main__":
    main()
