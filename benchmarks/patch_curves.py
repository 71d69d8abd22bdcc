"""Patch quality against patch time, and the paper's fixed long recipe against the early-stopped one, side by side.

The fixed recipe is the paper's: passes over D's own images (no photo crops, no augmented copies), plain cosine
locality, no early stop.
For one attacked deployment (the image experiment's setting; ``--setting text`` for MiniLM), each recipe patches
the same backdoored model from the same recovered trigger, and after every epoch the customers' deployed
classifiers score the model so far. Prints one line per epoch: seconds, ACC, ASR, held-out locality, and whether
the early-stopping goals are met.

python benchmarks/patch_curves.py [--setting image|text] [--seed 0] [--long-epochs 200] [--every 10]
"""

from __future__ import annotations

import argparse
import time
from dataclasses import replace

import torch
import transformers

from mudjacking.evaluation.downstream import embed_task, score_probe
from mudjacking.patching import patch_encoder
from mudjacking.pipeline.settings import ImageSetting, TextSetting
from mudjacking.triggers.recover import recover_trigger


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--setting", choices=["image", "text"], default="image")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--long-epochs", type=int, default=200, help="epochs of the fixed recipe (the paper: 200)")
    parser.add_argument("--every", type=int, default=10, help="score the fixed recipe every N epochs")
    parser.add_argument("--threads", type=int, default=0)
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
    # the paper's recipe: D's own images only (no photo crops, no augmented copies), plain cosine locality
    own = setting.patching_size if isinstance(setting, ImageSetting) else len(scenario.patching_set)
    own_images = scenario.patching_set[:own]
    paper = replace(
        setting.patch, max_epochs=args.long_epochs, early_stop=False, augmented_copies=0, whitened_locality=0.0
    )
    recipes = {
        "early-stopped": (setting.patch, 1, scenario.patching_set),
        f"fixed {args.long_epochs} epochs": (paper, args.every, own_images),
    }
    for recipe, (config, every, patching_set) in recipes.items():
        print(f"\n{recipe}:")
        print(f"{'epoch':>5} {'seconds':>8} {'ACC':>6} {'ASR':>6} {'locality':>8} goals")
        scoring, first_met = [0.0], [True]
        started = time.perf_counter()

        def trace(record, model, every=every, config=config, scoring=scoring, started=started, first=first_met) -> None:
            newly_met = record.goals_met and first[0]
            first[0] = first[0] and not record.goals_met
            if record.epoch % every and record.epoch != config.max_epochs and not newly_met:
                return
            scoring_started = time.perf_counter()
            acc, asr = score(model)
            scoring[0] += time.perf_counter() - scoring_started
            seconds = time.perf_counter() - started - scoring[0]
            print(
                f"{record.epoch:5d} {seconds:8.1f} {100 * acc:6.2f} {100 * asr:6.2f} "
                f"{record.holdout_locality:8.4f} {record.goals_met}",
                flush=True,
            )

        result = patch_encoder(scenario.backdoored, scenario.bug, recovered, patching_set, config, False, trace)
        print(f"{recipe}: {result.epochs} epochs, {result.seconds - scoring[0]:.1f} s of patching")


if __name__ == "__main__":
    main()
