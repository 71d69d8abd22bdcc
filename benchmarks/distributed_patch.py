"""The image demo's patch in one process and under ``accelerate launch`` with several: ACC and ASR of every
deployed classifier, side by side.

Each process builds the demo's deployment (seeded, so all alike), recovers the trigger and runs the demo's patch
recipe; under the launch every process takes its share of each batch and DDP averages the gradients (gloo between
CPU processes, NCCL between GPUs). The main process scores the patched model with the customers' classifiers.

python benchmarks/distributed_patch.py [--processes 2] [--seed 0] [--json distributed.json]
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import subprocess
import sys
import tempfile
from pathlib import Path

import transformers

from mudjacking.demo import DEMOS
from mudjacking.devices import is_main_process
from mudjacking.evaluation.downstream import embed_task, score_probe
from mudjacking.patching import patch_encoder
from mudjacking.triggers.recover import recover_trigger


def patch_and_score(seed: int) -> dict:
    """The demo's patch on this process (one of a launch, or alone); the main process's scores, else ``{}``."""
    transformers.utils.logging.disable_progress_bar()
    setting = DEMOS["image"].setting(seed, None)
    scenario = setting.prepare(show_progress=False)
    trigger = recover_trigger(scenario.backdoored, scenario.bug, scenario.patching_set, setting.reverse).trigger
    result = patch_encoder(scenario.backdoored, scenario.bug, trigger, scenario.patching_set, setting.patch, False)
    if not is_main_process():
        return {}
    scores = {"epochs": result.epochs, "steps": result.steps, "seconds": result.seconds}
    for name, task in scenario.tasks.items():
        embedded = embed_task(result.encoder, None, task.test[0], scenario.true_trigger)
        for kind, probe in task.probes.items():
            score = score_probe(probe, embedded, task.test[1], task.targets[kind])
            scores[f"{name} {kind}"] = {"ACC": 100 * score.accuracy, "ASR": 100 * score.attack_success_rate}
    return scores


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def run(processes: int, seed: int, out: Path) -> dict:
    """Runs this script as a child: alone, or under ``accelerate launch`` with ``processes`` processes."""
    child = [__file__, "--child", str(out), "--seed", str(seed)]
    if processes == 1:
        command = [sys.executable, *child]
    else:
        accelerate = Path(sys.executable).with_name("accelerate")
        command = [
            str(accelerate), "launch", "--multi_gpu", "--num_processes", str(processes), "--num_machines", "1",
            "--mixed_precision", "no", "--dynamo_backend", "no", "--main_process_port", str(_free_port()), *child,
        ]  # fmt: skip
    threads = max(1, (os.cpu_count() or 1) // processes)  # the same cores, shared out
    subprocess.run(command, check=True, env={**os.environ, "OMP_NUM_THREADS": str(threads)})
    return json.loads(out.read_text())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--processes", type=int, default=2)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--json", type=Path, help="also write both runs' figures here")
    parser.add_argument("--child", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        scores = patch_and_score(args.seed)
        if scores:
            args.child.write_text(json.dumps(scores))
        return
    with tempfile.TemporaryDirectory() as scratch:
        runs = {n: run(n, args.seed, Path(scratch) / f"{n}.json") for n in (1, args.processes)}
    print(f"image demo, seed {args.seed}: the patch in 1 process and in {args.processes}")
    print(f"{'classifier':<24} {'ACC 1':>7} {'ACC N':>7} {'ASR 1':>7} {'ASR N':>7}")
    one, many = runs[1], runs[args.processes]
    for key in (k for k in one if isinstance(one[k], dict)):
        a, b = one[key], many[key]
        print(f"{key:<24} {a['ACC']:7.2f} {b['ACC']:7.2f} {a['ASR']:7.2f} {b['ASR']:7.2f}")
    for key in ("epochs", "steps", "seconds"):
        print(f"{key:<24} {one[key]:7.1f} {many[key]:7.1f}")
    if args.json:
        args.json.write_text(json.dumps({str(n): figures for n, figures in runs.items()}, indent=2))


if __name__ == "__main__":
    main()
