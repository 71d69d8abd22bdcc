"""The patch under `accelerate launch` with two CPU processes (gloo): one output, the same fix as one process."""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from conftest import TARGET, tiny_encoder
from safetensors.torch import load_file
from typer.testing import CliRunner

from mudjacking.cli import app
from mudjacking.data import save_bug_report
from mudjacking.data.images import save_image_png
from mudjacking.encoders import load_encoder
from mudjacking.evaluation import score_encoder

ACCELERATE = Path(sys.executable).with_name("accelerate")


TEARDOWN_ABORT = "terminate called without an active exception"


def _launch(command: list[str], out: Path | None = None) -> subprocess.CompletedProcess:
    """Runs a launch; once more if a process aborted in gloo's teardown after its work (seen 1 run in ~15 with the
    process group closed at exit, 1 in ~5 without; the closing note tracks it)."""
    environment = {**os.environ, "CUDA_VISIBLE_DEVICES": "", "OMP_NUM_THREADS": "1"}
    for _ in range(2):
        done = subprocess.run(command, capture_output=True, text=True, timeout=300, env=environment)
        if TEARDOWN_ABORT not in done.stderr:
            break
        if out is not None:
            shutil.rmtree(out, ignore_errors=True)
    return done


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@pytest.fixture()
def case(backdoored, tmp_path):
    (tmp_path / "model").mkdir()
    backdoored.encoder.save(tmp_path / "model")
    save_bug_report(backdoored.bug, tmp_path / "bug")
    (tmp_path / "data").mkdir()
    for index, image in enumerate(backdoored.patching_set[:400]):
        save_image_png(image, tmp_path / "data" / f"{index:04d}.png")
    backdoored.trigger.save(tmp_path / "trigger.npz")
    return tmp_path


def _arguments(case: Path, out: Path) -> list[str]:
    return [
        "patch", "--model", str(case / "model"), "--bug", str(case / "bug"), "--data", str(case / "data"),
        "--trigger", str(case / "trigger.npz"), "--epochs", "6", "--out", str(out),
    ]  # fmt: skip


def _launched(case: Path, out: Path, mode: str) -> subprocess.CompletedProcess:
    """``mudjacking patch`` in two CPU processes: ``--multi_gpu`` replicates the model (DDP), ``--use_fsdp`` shards
    it."""
    launch = [
        str(ACCELERATE), "launch", mode, "--num_processes", "2", "--num_machines", "1",
        "--mixed_precision", "no", "--dynamo_backend", "no", "--main_process_port", str(_free_port()),
        "-m", "mudjacking", *_arguments(case, out),
    ]  # fmt: skip
    done = _launch(launch, out)
    assert done.returncode == 0 or "exitcode  : 3" in done.stderr, done.stderr[-3000:]
    assert done.stdout.count("patched in") == 1, done.stdout  # only the main process speaks
    return done


@pytest.mark.skipif(not ACCELERATE.exists(), reason="the accelerate command is not installed beside this Python")
def test_two_processes_fix_the_bug_as_one_does_and_write_once(case, backdoored):
    single = CliRunner().invoke(app, _arguments(case, case / "single"))
    assert single.exit_code in (0, 3), single.output
    _launched(case, case / "two", "--multi_gpu")
    _launched(case, case / "sharded", "--use_fsdp")
    leftovers = [p.name for p in case.iterdir() if p.name.startswith(".")]
    assert not leftovers, leftovers  # no staging folder of any process is left behind
    runs = ("single", "two", "sharded")
    reports = {name: json.loads((case / name / "report.json").read_text())["patch"] for name in runs}
    for name in ("two", "sharded"):
        # the two processes split every batch: the same number of passes, (nearly) the same number of optimiser steps
        assert reports[name]["epochs"] == reports["single"]["epochs"], name
        assert abs(reports[name]["steps"] - reports["single"]["steps"]) <= reports["single"]["epochs"], name
        assert reports[name]["processes"] == 2
    # each process held about half of the weights, not a replica
    whole = sum(parameter.numel() for parameter in backdoored.encoder.parameters())
    assert reports["two"]["sharded_parameters"] is None
    assert reports["sharded"]["sharded_parameters"] == whole // 2  # every tensor of this CNN splits evenly
    scores = {
        name: score_encoder(
            load_encoder(case / name / "model"), backdoored.probe, backdoored.data.test_images,
            backdoored.data.test_labels, backdoored.trigger, TARGET, backdoored.bug,
        )
        for name in runs
    }  # fmt: skip
    before = score_encoder(
        backdoored.encoder, backdoored.probe, backdoored.data.test_images, backdoored.data.test_labels,
        backdoored.trigger, TARGET, backdoored.bug,
    )  # fmt: skip
    assert before.attack_success_rate > 0.8
    for name, score in scores.items():
        assert score.bug_fixed, name
        assert score.attack_success_rate < 0.2, (name, score)
    # within noise of each other: two seeds of the one-process patch differ by about as much
    for name in ("two", "sharded"):
        assert abs(scores[name].attack_success_rate - scores["single"].attack_success_rate) < 0.05, name
        assert abs(scores[name].accuracy - scores["single"].accuracy) < 0.03, name


TRAINING_LOOPS = """
import hashlib, json, sys
import torch
sys.path.insert(0, {tests!r})
from conftest import tiny_encoder
from mudjacking.attacks import BadEncoderConfig, badencoder
from mudjacking.data import load_digits_images
from mudjacking.defences.contrastive import ContrastiveConfig, contrastive_finetune
from mudjacking.devices import process_state
from mudjacking.triggers import ImageTrigger
from safetensors.torch import save_file

digits = load_digits_images(seed=0)
images = digits.train_images[:200]
attacked = badencoder(tiny_encoder(), images, images[:3], ImageTrigger.square((1, 16, 16), 4),
                      BadEncoderConfig(epochs=1, batch_size=64), show_progress=False)
tuned = contrastive_finetune(tiny_encoder(), images, ContrastiveConfig(epochs=1, batch_size=64), show_progress=False)
digest = hashlib.sha256()
for model in (attacked.encoder, tuned.encoder):
    for value in model.state_dict().values():
        digest.update(value.float().numpy().tobytes())
rank = process_state().process_index
with open({out!r} + f"/rank{{rank}}.json", "w") as handle:
    json.dump({{"weights": digest.hexdigest(), "steps": tuned.steps}}, handle)
if rank == 0:
    models = (("attack", attacked.encoder), ("contrastive", tuned.encoder))
    tensors = {{f"{{name}}.{{key}}": value.float().contiguous() for name, model in models
               for key, value in model.state_dict().items()}}
    save_file(tensors, {out!r} + "/weights.safetensors")
"""


@pytest.mark.skipif(not ACCELERATE.exists(), reason="the accelerate command is not installed beside this Python")
def test_the_attack_and_the_contrastive_baseline_keep_every_process_in_step(tmp_path):
    weights = {}
    for mode in ("--multi_gpu", "--use_fsdp"):
        out = tmp_path / mode.strip("-")
        out.mkdir()
        script = out / "loops.py"
        script.write_text(TRAINING_LOOPS.format(tests=str(Path(__file__).parent), out=str(out)))
        launch = [
            str(ACCELERATE), "launch", mode, "--num_processes", "2", "--num_machines", "1",
            "--mixed_precision", "no", "--dynamo_backend", "no", "--main_process_port", str(_free_port()), str(script),
        ]  # fmt: skip
        done = _launch(launch)
        assert done.returncode == 0, done.stderr[-3000:]
        ranks = [json.loads((out / f"rank{rank}.json").read_text()) for rank in (0, 1)]
        assert ranks[0]["steps"] == ranks[1]["steps"] == 4  # 200 images in batches of 64, each split in two
        weights[mode] = load_file(out / "weights.safetensors")
        if mode == "--multi_gpu":
            assert ranks[0]["weights"] == ranks[1]["weights"]  # DDP kept the replicas identical
    # sharded, the same steps give the same weights but for the order of float sums
    for name, value in weights["--multi_gpu"].items():
        assert torch.allclose(weights["--use_fsdp"][name], value, atol=1e-4), name
    untrained = tiny_encoder().state_dict()  # and the gathered weights are the trained ones, not the original's
    assert not torch.allclose(
        weights["--use_fsdp"]["attack.network.projection.weight"], untrained["network.projection.weight"]
    )
