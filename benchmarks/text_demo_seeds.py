"""Runs the text demo (real all-MiniLM-L6-v2) for several seeds and prints the headline figures per task.

python benchmarks/text_demo_seeds.py --seeds 0 1 2 [--out runs/demo-text-seeds] [--threads 2]
"""

from __future__ import annotations

import argparse

import torch
import transformers

from mudjacking.text_demo import TextDemoConfig, aggregate_text_seeds, run_text_demo_seeds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--out", default="runs/demo-text-seeds")
    parser.add_argument("--threads", type=int, default=0)
    args = parser.parse_args()
    transformers.utils.logging.disable_progress_bar()  # our own progress only
    if args.threads:
        torch.set_num_threads(args.threads)
    reports = run_text_demo_seeds([TextDemoConfig(seed=seed) for seed in args.seeds], args.out, show_progress=False)
    for report in reports:
        print(
            f"seed {report['seed']}: trigger {report['trigger']['words']} "
            f"(exact {report['trigger']['exact_match']}), {report['timings_seconds']['total']:.0f} s"
        )
        for task, per_kind in report["summary"].items():
            if not isinstance(per_kind, dict):
                continue
            for kind, s in per_kind.items():
                print(
                    f"  {task:24s} {kind:6s} ACC {100 * s['acc_before']:.1f}->{100 * s['acc_after']:.1f}  "
                    f"ASR {100 * s['asr_before']:.1f}->{100 * s['asr_after']:.1f} (without trigger "
                    f"{100 * s['asr_without_trigger_after']:.1f}, clean model "
                    f"{100 * s['asr_clean_model']:.1f}, locality-only {100 * s['baseline_asr']:.1f})  "
                    f"flip {100 * s['flip_rate_before']:.1f}->{100 * s['flip_rate_after']:.1f} "
                    f"(control word {100 * (s['control_word_flip_rate_after'] or 0):.1f})  fixed={s['bug_fixed']}"
                )
    if len(reports) > 1:
        aggregate = aggregate_text_seeds(reports)
        for task, per_kind in aggregate.items():
            if not isinstance(per_kind, dict) or "mean" in per_kind:
                continue
            for kind, row in per_kind.items():
                for key in (
                    "asr_after",
                    "flip_rate_after",
                    "control_word_flip_rate_after",
                    "acc_drop_points",
                    "baseline_asr",
                ):
                    stats = row[key]
                    print(
                        f"{task:24s} {kind:6s} {key:16s} mean {stats['mean']:.4f} "
                        f"[{stats['min']:.4f}, {stats['max']:.4f}]"
                    )


if __name__ == "__main__":
    main()
