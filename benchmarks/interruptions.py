"""Interrupt ``mudjacking patch`` at random moments, then ``--resume`` it: the output must be absent or complete
after every interruption, no staging folder may be left, and every resumed run must end with the weights of an
uninterrupted run (same seed), its checkpoint removed.

The case is the image demo's (``make demo`` first): its backdoored model and bug report, and the demo setting's
patching set. One uninterrupted patch gives the reference weights (``result_sha256`` of its delta) and the run's
length; then each of ``--kills`` runs gets SIGINT or SIGTERM (alternately) at a random moment of that length, and is
resumed. Prints one row per interruption: the signal, when, what the output folder held, whether a checkpoint was
there to resume from, and whether the resumed weights equal the reference.

python benchmarks/interruptions.py [--kills 10] [--seed 0] [--json interruptions.json]
"""

from __future__ import annotations

import argparse
import json
import random
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from mudjacking.data.builtin import load_demo_images
from mudjacking.demo import DEMOS
from mudjacking.pipeline.settings.image import image_splits

DEMO = Path("runs/demo")


def _command(data: Path, out: Path, *extra: str) -> list[str]:
    return [sys.executable, "-m", "mudjacking", "patch", "--model", str(DEMO / "backdoored_model"),
            "--bug", str(DEMO / "bug"), "--data", str(data), "--out", str(out), *extra]  # fmt: skip


def _weights(out: Path) -> str | None:
    """The patched weights' SHA-256, as the delta file records it."""
    from safetensors import safe_open

    if not (out / "report.json").is_file():
        return None
    with safe_open(str(out / "patch_delta.safetensors"), "pt") as delta:
        return (delta.metadata() or {}).get("result_sha256")


def _state(out: Path) -> str:
    if not out.exists():
        return "absent"
    return "complete" if (out / "report.json").is_file() and (out / "model").is_dir() else "PARTIAL"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--kills", type=int, default=10)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    if not (DEMO / "backdoored_model").is_dir():
        sys.exit(f"error: {DEMO}/backdoored_model not found; run `make demo` first")
    rng = random.Random(args.seed)
    rows = []
    with tempfile.TemporaryDirectory(prefix="interruptions-") as scratch:
        root = Path(scratch)
        splits = image_splits(load_demo_images(), DEMOS["image"].setting(0, None))
        data = root / "patching.npz"
        np.savez(data, x=splits["patching"].numpy())
        started = time.perf_counter()
        subprocess.run(_command(data, root / "whole"), check=True, capture_output=True)
        length = time.perf_counter() - started
        reference = _weights(root / "whole")
        print(f"uninterrupted: {length:.1f} s, weights {reference[:12] if reference else None}")
        for index in range(args.kills):
            out = root / f"run{index}"
            name = "SIGINT" if index % 2 == 0 else "SIGTERM"
            moment = rng.uniform(0.05, 0.95) * length
            process = subprocess.Popen(_command(data, out), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
            time.sleep(moment)
            process.send_signal(signal.SIGINT if name == "SIGINT" else signal.SIGTERM)
            code = process.wait()
            state = _state(out)
            staging = sorted(p.name for p in root.iterdir() if p.name.startswith(f".{out.name}.") and
                             not p.name.endswith(".checkpoint"))  # fmt: skip
            checkpoint = (root / f".{out.name}.checkpoint" / "state.json").is_file()
            passes = (
                json.loads((root / f".{out.name}.checkpoint" / "state.json").read_text())["epochs"] if checkpoint else 0
            )
            resumed = subprocess.run(_command(data, out, "--resume", "--overwrite"), capture_output=True, text=True)
            same = _weights(out) == reference and not (root / f".{out.name}.checkpoint").exists()
            row = {"signal": name, "at_seconds": round(moment, 1), "exit": code, "out": state, "staging_left": staging,
                   "checkpoint_passes": passes, "resumed_exit": resumed.returncode, "same_weights": same}  # fmt: skip
            rows.append(row)
            print(
                f"{name:<7} at {moment:5.1f} s: exit {code}, out {state}, staging {staging or 'none'}, "
                f"checkpoint after pass {passes}; resumed exit {resumed.returncode}, "
                f"weights {'SAME' if same else 'DIFFERENT'} as uninterrupted"
            )
    bad = [r for r in rows if r["out"] == "PARTIAL" or r["staging_left"] or not r["same_weights"]]
    print(f"{len(rows) - len(bad)} of {len(rows)} interruptions clean and resumed to the same weights")
    if args.json:
        args.json.write_text(json.dumps({"uninterrupted_seconds": length, "runs": rows}, indent=2))


if __name__ == "__main__":
    main()
