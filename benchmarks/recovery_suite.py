"""Trigger recovery alone on every image attack and seed of the experiment configs: no patch, no scoring.

A change to recovery moves every figure of the image suites, which take about 50 minutes on 2 cores to run whole.
This builds each scenario (pre-training, attack, bug) and recovers its trigger only, so a recovery change is
checked on all of them at once: per attack and seed, the recovered mask's IoU with the attacker's trigger, its
pixels, whether it verified (or why recovery refused), the share of inputs it lands at h(x_b) (on D, what `patch`
checks next, refusing under 50%; and near x_r), and seconds. Prints a table; writes JSON to --out.

    python benchmarks/recovery_suite.py                                   # 45 scenarios, ~10 min on 2 cores
    python benchmarks/recovery_suite.py --config configs/image.toml --seeds 1
    python benchmarks/recovery_suite.py --config configs/attacks-image.toml --attacks badencoder drupe
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path
from typing import Any

import torch

from mudjacking.checks import MIN_LANDED
from mudjacking.errors import TriggerNotFound
from mudjacking.experiments.config import load_experiment_config
from mudjacking.outputs import write_json
from mudjacking.triggers import reverse_engineer_trigger

CONFIGS = ("configs/image.toml", "configs/attacks-image.toml", "configs/attacks-image-adaptive.toml")


def recover_one(config: Any, attack: str | None, seed: int) -> dict[str, Any]:
    """Builds one scenario and recovers its trigger; the row of the table."""
    setting = config.setting_config(seed, attack)
    scenario = setting.prepare(False)
    row: dict[str, Any] = {"attack": attack or setting.attack_kind, "seed": seed}
    if scenario.bug is None:
        return {**row, "outcome": f"no bug: {scenario.no_bug}"}
    started = time.perf_counter()
    try:
        recovery = reverse_engineer_trigger(scenario.backdoored, scenario.bug, scenario.patching_set, setting.reverse)
    except TriggerNotFound as error:
        return {**row, "outcome": f"refused: {error}", "seconds": round(time.perf_counter() - started, 1)}
    quality = recovery.quality(scenario.true_trigger)
    return {
        **row,
        "outcome": "verified" if recovery.verified else "unverified",
        "iou": round(float(quality["iou"]), 3),
        "pixels": int(quality["pixels"]),
        "release": round(recovery.pull.release, 3),
        "strength": round(recovery.pull.strength, 3),
        "near_reference": recovery.near_reference,
        "landed": round(recovery.pull.landed, 3),
        "near_landed": round(recovery.pull.near_landed, 3),
        # what `patch` does next: refuse a trigger that lands under MIN_LANDED of D's inputs (a backdoor's signature)
        "signature": "shows" if recovery.pull.landed >= MIN_LANDED else "refused by patch",
        "seconds": round(time.perf_counter() - started, 1),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", action="append", help=f"experiment configs (default: {', '.join(CONFIGS)})")
    parser.add_argument("--attacks", nargs="+", help="only these attacks of each config")
    parser.add_argument("--seeds", type=int, nargs="+", help="only these seeds of each config")
    parser.add_argument("--out", type=Path, default=Path("runs/recovery-suite.json"))
    parser.add_argument("--threads", type=int, default=0)
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    rows = []
    for path in args.config or CONFIGS:
        config = load_experiment_config(path)
        for attack in config.attacks or [None]:
            if args.attacks and attack not in args.attacks:
                continue
            for seed in args.seeds or config.seeds:
                row = {"config": path, **recover_one(config, attack, seed)}
                rows.append(row)
                figures = ""
                if "iou" in row:
                    figures = (
                        f"IoU {row['iou']:.2f}  {row['pixels']} px  landed {row['landed']:.2f} / near x_r "
                        f"{row['near_landed']:.2f} ({row['signature']})  "
                    )
                print(f"{Path(path).stem:26} {row['attack']:18} seed {seed}  {figures}{row['outcome'][:90]}")
    scored = [row["iou"] for row in rows if "iou" in row]
    if scored:
        print(f"{len(scored)} of {len(rows)} recovered; mean IoU {sum(scored) / len(scored):.2f}")
    write_json(args.out, {"rows": rows})
    print(f"written to {args.out}")


if __name__ == "__main__":
    main()
