"""Interrupt ``mudjacking patch`` (or ``mudjacking experiment``) at random moments, then ``--resume`` it: the output
must be absent or complete after every interruption, no staging folder may be left, and every resumed run must end
as an uninterrupted run (same seed), its checkpoint removed.

Patch (default): the image demo's case (``make demo`` first): its backdoored model and bug report, and the demo
setting's patching set; "the same" is the same weights (``result_sha256`` of the delta).
Experiment (``--experiment``): the text setting on the shipped MiniLM at toy sizes (about a minute a seed), two
seeds, Mudjacking only; "the same" is the same table (every figure but the times).
One uninterrupted run gives the reference and the run's length; then each of ``--kills`` runs gets SIGINT or
SIGTERM (alternately) at a random moment of that length, and is resumed. Prints one row per interruption.

python benchmarks/interruptions.py [--experiment] [--kills 10] [--seed 0] [--json interruptions.json]
"""

from __future__ import annotations

import argparse
import functools
import hashlib
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


EXPERIMENT = """
name = "interruptions"
setting = "text"
seeds = [0, 1]
methods = ["mudjacking"]
[options]
shadow_size = [150, 100]
patching_size = [60, 40]
train_size = [120, 120]
test_size = [80, 80]
probe_kinds = ["linear"]
[options.attack]
epochs = 2
[options.patch]
max_epochs = 2
"""


def _experiment_command(config: Path, out: Path, *extra: str) -> list[str]:
    return [sys.executable, "-m", "mudjacking", "experiment", str(config), "--out", str(out), "--quiet", *extra]


def _table(out: Path) -> str | None:
    """The experiment's table without its times, as text to compare."""
    if not (out / "report.json").is_file():
        return None
    table = json.loads((out / "report.json").read_text())["table"]
    return json.dumps([{k: v for k, v in row.items() if "second" not in k} for row in table], sort_keys=True)


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


def _state(out: Path, experiment: bool) -> str:
    if not out.exists():
        return "absent"
    complete = (out / "report.html").is_file() if experiment else (out / "model").is_dir()
    return "complete" if (out / "report.json").is_file() and complete else "PARTIAL"


def _kept(folder: Path) -> str:
    """What a checkpoint folder holds: a patch's passes, or an experiment's finished seeds."""
    if (folder / "units").is_dir():
        return f"{len(list((folder / 'units').glob('*.json')))} seeds"
    if (folder / "state.json").is_file():
        return f"{json.loads((folder / 'state.json').read_text())['epochs']} passes"
    return "nothing"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--experiment", action="store_true", help="interrupt an experiment instead of a patch")
    parser.add_argument("--kills", type=int, default=10)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    if not args.experiment and not (DEMO / "backdoored_model").is_dir():
        sys.exit(f"error: {DEMO}/backdoored_model not found; run `make demo` first")
    rng = random.Random(args.seed)
    rows = []
    with tempfile.TemporaryDirectory(prefix="interruptions-") as scratch:
        root = Path(scratch)
        if args.experiment:
            config = root / "interruptions.toml"
            config.write_text(EXPERIMENT)
            command, outcome = functools.partial(_experiment_command, config), _table
        else:
            splits = image_splits(load_demo_images(), DEMOS["image"].setting(0, None))
            data = root / "patching.npz"
            np.savez(data, x=splits["patching"].numpy())
            command, outcome = functools.partial(_command, data), _weights
        started = time.perf_counter()
        subprocess.run(command(root / "whole"), check=True, capture_output=True)
        length = time.perf_counter() - started
        reference = outcome(root / "whole")
        print(f"uninterrupted: {length:.1f} s, {'table' if args.experiment else 'weights'} "
              f"{hashlib.sha256(str(reference).encode()).hexdigest()[:12]}")  # fmt: skip
        for index in range(args.kills):
            out = root / f"run{index}"
            name = "SIGINT" if index % 2 == 0 else "SIGTERM"
            moment = rng.uniform(0.05, 0.95) * length
            process = subprocess.Popen(command(out), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
            time.sleep(moment)
            process.send_signal(signal.SIGINT if name == "SIGINT" else signal.SIGTERM)
            code = process.wait()
            state = _state(out, args.experiment)
            # the output's staging folder, and the checkpoint's own (".{.out.checkpoint}.XXXX")
            staging = sorted(p.name for p in root.iterdir() if p.name.startswith((f".{out.name}.", f"..{out.name}."))
                             and p.name != f".{out.name}.checkpoint")  # fmt: skip
            passes = _kept(root / f".{out.name}.checkpoint")
            again = [*command(out), "--resume"] + ([] if args.experiment else ["--overwrite"])
            resumed = subprocess.run(again, capture_output=True, text=True)
            same = outcome(out) == reference and not (root / f".{out.name}.checkpoint").exists()
            row = {"signal": name, "at_seconds": round(moment, 1), "exit": code, "out": state, "staging_left": staging,
                   "checkpoint_holds": passes, "resumed_exit": resumed.returncode, "same_result": same}  # fmt: skip
            rows.append(row)
            print(
                f"{name:<7} at {moment:5.1f} s: exit {code}, out {state}, staging {staging or 'none'}, "
                f"checkpoint holds {passes}; resumed exit {resumed.returncode}, "
                f"result {'SAME' if same else 'DIFFERENT'} as uninterrupted"
            )
    bad = [r for r in rows if r["out"] == "PARTIAL" or r["staging_left"] or not r["same_result"]]
    print(f"{len(rows) - len(bad)} of {len(rows)} interruptions clean and resumed to the uninterrupted result")
    if args.json:
        args.json.write_text(json.dumps({"uninterrupted_seconds": length, "runs": rows}, indent=2))


if __name__ == "__main__":
    main()
