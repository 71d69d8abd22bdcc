"""Runs a demo for several seeds and prints the headline figures per task and classifier, with mean and range.

python benchmarks/demo_seeds.py [--modality image|text] --seeds 0 1 2 [--out runs/demo-seeds] [--threads 2]
"""

from __future__ import annotations

import argparse

import torch
import transformers

from mudjacking.demo import run_demo_seeds
from mudjacking.report.demo_summary import aggregate_seeds


def _row(s: dict) -> str:
    baselines = "  ".join(f"{name} {100 * asr:.1f}" for name, asr in s["baseline_asr"].items())
    control = s.get("control_word_flip_rate_after")
    return (
        f"ACC {100 * s['acc_before']:.1f}->{100 * s['acc_after']:.1f}  "
        f"ASR {100 * s['asr_before']:.1f}->{100 * s['asr_after']:.1f} (baselines: {baselines})  "
        f"flip {100 * s['flip_rate_before']:.1f}->{100 * s['flip_rate_after']:.1f}"
        + ("" if control is None else f" (control word {100 * control:.1f})")
        + f"  fixed={s['bug_fixed']}"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--modality", choices=["image", "text"], default="image")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--out", default=None, help="default runs/demo-seeds (image), runs/demo-text-seeds (text)")
    parser.add_argument("--threads", type=int, default=0)
    args = parser.parse_args()
    transformers.utils.logging.disable_progress_bar()  # our own progress only
    if args.threads:
        torch.set_num_threads(args.threads)
    out = args.out or {"image": "runs/demo-seeds", "text": "runs/demo-text-seeds"}[args.modality]
    reports = run_demo_seeds(args.modality, args.seeds, out, show_progress=False)
    for report in reports:
        trigger = ", ".join(f"{key} {value}" for key, value in report["summary"]["trigger"].items())
        print(f"seed {report['seed']}: trigger {trigger} ({report['timings_seconds']['total']:.0f} s)")
        for task, per_kind in report["summary"]["tasks"].items():
            for kind, row in per_kind.items():
                print(f"  {task:24s} {kind:6s} {_row(row)}")
    if len(reports) < 2:
        return
    aggregate = aggregate_seeds(reports)

    def show(stats: dict, scale: float = 100.0) -> str:
        return f"{scale * stats['mean']:.2f} [{scale * stats['min']:.2f}, {scale * stats['max']:.2f}]"

    for key, stats in aggregate["trigger"].items():
        print(f"trigger {key:14s} {show(stats, 1.0)}")
    print(f"seconds per demo       {show(aggregate['total_seconds'], 1.0)}")
    for task, per_kind in aggregate["tasks"].items():
        for kind, row in per_kind.items():
            for key in ("asr_before", "asr_after", "flip_rate_after", "acc_drop_points", "bug_fixed"):
                if key in row:
                    scale = 1.0 if key in ("acc_drop_points", "bug_fixed") else 100.0
                    print(f"{task:24s} {kind:6s} {key:16s} {show(row[key], scale)}")
            for name, stats in row["baseline_asr"].items():
                print(f"{task:24s} {kind:6s} ASR {name:12s} {show(stats)} %")


if __name__ == "__main__":
    main()
