"""Patch quality against patch time: our early-stopped recipe beside the paper's, on the same bug, trigger and D.

The paper's recipe (Liu, Reiter, Gong 2024): SGD at lr 1e-3, momentum 0.9, weight decay 5e-4, 200 epochs, no early
stop, BatchNorm frozen (the patch loop keeps the model in eval mode for both), ``L_e`` onto ``h'(x_r)``, plain cosine
locality, D's own images (no photo crops, no augmented copies), the trigger stamped as recovered (no dilation),
no centring; its batch size is ours. For one attacked deployment (the image experiment's setting;
``--setting text`` for MiniLM, where the paper's text recipe is its image one), both recipes patch the same
backdoored model from the same recovered trigger, and after every epoch the first customer's deployed classifier
scores the model so far. Prints one line per scored epoch (optimiser steps, seconds without the scoring, ACC, ASR,
held-out locality, goals met), then each recipe's steps and seconds until the quality bar: ASR <= 2% with ACC
within 0.5 point of the backdoored model's ("never" if not within its epochs).

python benchmarks/patch_curves.py [--setting image|text] [--seed 0] [--long-epochs 200] [--every 1]
    [--json curves.json]
"""

from __future__ import annotations

import argparse
import json
import time
from dataclasses import replace
from pathlib import Path

import torch
import transformers

from mudjacking.evaluation.downstream import embed_task, score_probe
from mudjacking.patching import PatchConfig, patch_encoder
from mudjacking.pipeline.settings import ImageSetting, TextSetting
from mudjacking.triggers.recover import recover_trigger

BAR_ASR, BAR_ACC_DROP = 0.02, 0.005


def paper_recipe(ours: PatchConfig, epochs: int) -> PatchConfig:
    """The paper's optimiser, schedule and losses, everything else as ``ours`` (the goals are only reported)."""
    return replace(
        ours, optimizer="sgd", lr=1e-3, momentum=0.9, weight_decay=5e-4, lr_schedule="constant", max_epochs=epochs,
        early_stop=False, augmented_copies=0, whitened_locality=0.0, effectiveness_target="reference",
        trigger_dilation=0, centring="off", anchor_clean=False, trigger_tokens_only=False,
    )  # fmt: skip


def steps_per_epoch(config: PatchConfig, patching_size: int) -> int:
    """Optimiser steps in one pass: D less its held-out part, with augmented copies, plus ``x_r``."""
    trained = patching_size - int(round(config.holdout_fraction * patching_size))
    return -(-(trained * (1 + config.augmented_copies) + 1) // config.batch_size)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--setting", choices=["image", "text"], default="image")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--long-epochs", type=int, default=200, help="epochs of the paper's recipe (the paper: 200)")
    parser.add_argument("--every", type=int, default=1, help="score the paper's recipe every N epochs")
    parser.add_argument("--threads", type=int, default=0)
    parser.add_argument("--json", type=Path, help="also write every scored epoch here")
    args = parser.parse_args()
    transformers.utils.logging.disable_progress_bar()  # our own progress only
    if args.threads:
        torch.set_num_threads(args.threads)
    settings = {"image": ImageSetting(seed=args.seed), "text": TextSetting(seed=args.seed, probe_kinds=("linear",))}
    setting = settings[args.setting]
    scenario = setting.prepare(show_progress=False)
    recovered = recover_trigger(scenario.backdoored, scenario.bug, scenario.patching_set, setting.reverse).trigger
    name, task = next(iter(scenario.tasks.items()))
    kind = next(iter(task.probes))

    def score(encoder) -> tuple[float, float]:
        embedded = embed_task(encoder, None, task.test[0], scenario.true_trigger)
        scores = score_probe(task.probes[kind], embedded, task.test[1], task.targets[kind])
        return scores.accuracy, scores.attack_success_rate

    acc0, asr0 = score(scenario.backdoored)
    print(f"{args.setting} setting, seed {args.seed}, task {name}, deployed {kind} classifier")
    print(f"backdoored: ACC {100 * acc0:.2f}  ASR {100 * asr0:.2f}")
    own = setting.patching_size if isinstance(setting, ImageSetting) else len(scenario.patching_set)
    recipes = {
        "ours (early-stopped)": (setting.patch, 1, scenario.patching_set),
        f"paper (SGD, {args.long_epochs} epochs)": (
            paper_recipe(setting.patch, args.long_epochs), args.every, scenario.patching_set[:own]
        ),
    }  # fmt: skip
    curves: dict[str, list[dict]] = {}
    for recipe, (config, every, patching_set) in recipes.items():
        print(f"\n{recipe}:")
        print(f"{'epoch':>5} {'steps':>6} {'seconds':>8} {'ACC':>6} {'ASR':>6} {'locality':>8} goals")
        per_epoch = steps_per_epoch(config, len(patching_set))
        curve = curves.setdefault(recipe, [])
        scoring, started = [0.0], time.perf_counter()

        def trace(record, model, every=every, config=config, per_epoch=per_epoch, curve=curve, scoring=scoring,
                  started=started) -> None:  # fmt: skip
            if record.epoch % every and record.epoch != config.max_epochs and not record.goals_met:
                return
            scoring_started = time.perf_counter()
            acc, asr = score(model)
            scoring[0] += time.perf_counter() - scoring_started
            point = {
                "epoch": record.epoch, "steps": record.epoch * per_epoch,
                "seconds": time.perf_counter() - started - scoring[0], "ACC": acc, "ASR": asr,
                "locality": record.holdout_locality, "goals_met": record.goals_met,
            }  # fmt: skip
            curve.append(point)
            print(
                f"{point['epoch']:5d} {point['steps']:6d} {point['seconds']:8.1f} {100 * acc:6.2f} {100 * asr:6.2f} "
                f"{record.holdout_locality:8.4f} {record.goals_met}",
                flush=True,
            )

        result = patch_encoder(scenario.backdoored, scenario.bug, recovered, patching_set, config, False, trace)
        print(
            f"{recipe}: {result.epochs} epochs, {result.steps} steps, {result.seconds - scoring[0]:.1f} s of patching"
        )
    print(f"\nquality bar: ASR <= {100 * BAR_ASR:g}% and ACC >= {100 * (acc0 - BAR_ACC_DROP):.2f} (backdoored - 0.5)")
    reached = {}
    for recipe, curve in curves.items():
        first = next((p for p in curve if p["ASR"] <= BAR_ASR and p["ACC"] >= acc0 - BAR_ACC_DROP), None)
        reached[recipe] = first
        shown = (
            "never" if first is None else f"{first['steps']} steps, {first['seconds']:.1f} s (epoch {first['epoch']})"
        )
        print(f"{recipe:<28} {shown}")
    ours, paper = reached.values()
    if ours and paper:
        print(f"the paper's recipe takes {paper['steps'] / ours['steps']:.1f}x the steps, "
              f"{paper['seconds'] / ours['seconds']:.1f}x the seconds")  # fmt: skip
    elif ours:
        last = curves[list(curves)[1]][-1]
        print(f"the paper's recipe takes more than {last['steps'] / ours['steps']:.1f}x the steps "
              f"({last['steps']} without reaching the bar)")  # fmt: skip
    if args.json:
        args.json.write_text(json.dumps({"backdoored": {"ACC": acc0, "ASR": asr0}, "curves": curves}, indent=2))


if __name__ == "__main__":
    main()
