"""Runs the image demo for several seeds and prints the headline figures with mean and range.

python benchmarks/demo_seeds.py --seeds 0 1 2 [--out runs/demo-seeds] [--threads 2]
"""

from __future__ import annotations

import argparse

import torch

from mudjacking.demo import DemoConfig, aggregate_seeds, run_demo_seeds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--out", default="runs/demo-seeds")
    parser.add_argument("--threads", type=int, default=0)
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    reports = run_demo_seeds([DemoConfig(seed=seed) for seed in args.seeds], args.out, show_progress=False)
    for report in reports:
        s = report["summary"]
        line = "  ".join(
            f"{kind}: ACC {100 * s[kind]['acc_before']:.1f}->{100 * s[kind]['acc_after']:.1f} "
            f"ASR {100 * s[kind]['asr_before']:.1f}->{100 * s[kind]['asr_after']:.1f} fixed={s[kind]['bug_fixed']}"
            for kind in report["config"]["probe_kinds"]
        )
        print(
            f"seed {report['seed']}: IoU {s['trigger_iou']:.2f}  {line}  ({report['timings_seconds']['total']:.0f} s)"
        )
    aggregate = aggregate_seeds(reports)

    def show(stats: dict, scale: float = 100.0) -> str:
        return f"{scale * stats['mean']:.2f} [{scale * stats['min']:.2f}, {scale * stats['max']:.2f}]"

    print(f"trigger IoU           {show(aggregate['trigger_iou'], 1.0)}")
    print(f"seconds per demo      {show(aggregate['total_seconds'], 1.0)}")
    for kind in reports[0]["config"]["probe_kinds"]:
        row = aggregate[kind]
        print(f"{kind:6s} ASR before     {show(row['asr_before'])} %")
        print(f"{kind:6s} ASR after      {show(row['asr_after'])} %")
        print(f"{kind:6s} ACC drop       {show(row['acc_drop_points'], 1.0)} points")
        print(f"{kind:6s} x_b fixed      {show(row['bug_fixed'], 1.0)}")
        for name, stats in row["baseline_asr"].items():
            print(f"{kind:6s} ASR {name:28s} {show(stats)} %")


if __name__ == "__main__":
    main()
