"""A LoRA patch against the full patch on the image demo: quality (the customers' deployed classifiers), time, and
the size of what a provider ships (``patch_delta.safetensors`` against the model's own file).

Each row runs ``mudjacking.api.patch_files`` (the CLI's path) on the demo's backdoored model and bug, with the
trigger recovered once and given to every row, so the rows differ only by the patch.

python benchmarks/lora_patch.py [--ranks 2 4 8] [--seed 0] [--json lora.json]
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
from mudjacking.data import save_bug_report
from mudjacking.demo import DEMOS
from mudjacking.encoders import load_encoder
from mudjacking.evaluation.downstream import embed_task, score_probe
from mudjacking.triggers.recover import recover_trigger


def scores(scenario, encoder) -> dict:
    """ACC and ASR of every deployed classifier on the patched embeddings."""
    figures = {}
    for task in scenario.tasks.values():
        embedded = embed_task(encoder, None, task.test[0], scenario.true_trigger)
        for kind, probe in task.probes.items():
            score = score_probe(probe, embedded, task.test[1], task.targets[kind])
            figures[kind] = {"ACC": round(100 * score.accuracy, 2), "ASR": round(100 * score.attack_success_rate, 2)}
    return figures


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--ranks", type=int, nargs="+", default=[2, 4, 8])
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    torch.set_num_threads(2)
    setting = DEMOS["image"].setting(args.seed, None)
    scenario = setting.prepare(show_progress=True)
    rows = {"backdoored": {"scores": scores(scenario, scenario.backdoored)}}
    with tempfile.TemporaryDirectory(prefix="lora-") as scratch:
        root = Path(scratch)
        (root / "model").mkdir()
        scenario.backdoored.save(root / "model")
        save_bug_report(scenario.bug, root / "bug")
        np.savez(root / "patching.npz", x=scenario.patching_set.numpy())
        recover_trigger(scenario.backdoored, scenario.bug, scenario.patching_set, setting.reverse).trigger.write(root)
        model_bytes = (root / "model" / "model.safetensors").stat().st_size
        for rank in [0, *args.ranks]:
            out = root / f"rank{rank}"
            started = time.perf_counter()
            report = patch_files(root / "model", root / "bug", root / "patching.npz", out, root / "trigger.npz",
                                 patch_options={"lora_rank": rank, "seed": args.seed}, show_progress=False)  # fmt: skip
            delta = (out / "patch_delta.safetensors").stat().st_size
            rows["full patch" if rank == 0 else f"LoRA rank {rank}"] = {
                "scores": scores(scenario, load_encoder(out / "model")),
                "seconds": round(time.perf_counter() - started, 1),
                "patch_seconds": round(report["patch"]["seconds"], 1),
                "epochs": report["patch"]["epochs"],
                "goals_met": report["patch"]["goals_met"],
                "trained_parameters": report["patch"]["trainable_parameters"],
                "delta_bytes": delta,
                "delta_share_of_model": round(delta / model_bytes, 4),
                "lr": report["patch"]["config"]["lr"],
            }
    for name, row in rows.items():
        figures = "  ".join(f"{kind} ACC {s['ACC']:.2f} ASR {s['ASR']:5.2f}%" for kind, s in row["scores"].items())
        extra = "" if "seconds" not in row else (
            f"  {row['patch_seconds']:5.1f} s ({row['epochs']} epochs, goals {row['goals_met']})  trained "
            f"{row['trained_parameters']:,}  delta {row['delta_bytes'] / 1024:.0f} KiB = "
            f"{100 * row['delta_share_of_model']:.1f}% of the model"
        )  # fmt: skip
        print(f"{name:<12} {figures}{extra}")
    if args.json:
        args.json.write_text(json.dumps(rows, indent=2))


if __name__ == "__main__":
    main()
