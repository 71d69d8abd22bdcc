"""Contrastive fine-tuning on the clean patching set: the defence CleanCLIP-type methods use, as a baseline.

Without a bug report or a trigger, a defender can only fine-tune the backdoored model on clean data with a
self-supervised loss, hoping it overwrites the backdoor. Here that loss is SimCLR's NT-Xent between two views of
each clean input: image augmentations (crop, flip, jitter, noise) or, for text, random word deletion.
The model stays in eval mode (BatchNorm statistics frozen), as in the patch loop.
"""

from __future__ import annotations

import copy
import random
import time
from dataclasses import dataclass

import torch
from accelerate.utils import set_seed
from torch import Tensor

from mudjacking.batches import take
from mudjacking.devices import Processes, autocast_bf16, check_precision, resolve_device
from mudjacking.encoders.base import Encoder
from mudjacking.errors import ConfigError
from mudjacking.patching import PatchResult
from mudjacking.pretraining import augment, nt_xent
from mudjacking.progress import progress_bar


@dataclass
class ContrastiveConfig:
    """Args:
    epochs: passes over the patching set (the experiments give it Mudjacking's epoch count).
    max_seconds: wall-clock budget (0 = none); no step starts after it is spent (experiments: Mudjacking's time).
    batch_size: inputs per step (two views each).
    lr: Adam learning rate.
    temperature: NT-Xent temperature.
    crop_scale: smallest area fraction kept by the image crop.
    word_dropout: probability of deleting each word of a sentence view (at least one word is kept).
    seed: seeds the views and the order.
    device: ``"auto"``, ``"cpu"`` or ``"cuda"``.
    precision: ``"fp32"``, ``"bf16"`` or ``"auto"``, as the patch's (experiments: Mudjacking's, so that its seconds
        buy this baseline as many steps as the same arithmetic would).
    """

    epochs: int = 3
    max_seconds: float = 0.0
    batch_size: int = 64
    lr: float = 1e-4
    temperature: float = 0.2
    crop_scale: float = 0.4
    word_dropout: float = 0.15
    seed: int = 0
    device: str = "auto"
    precision: str = "fp32"

    def __post_init__(self) -> None:
        if self.epochs < 1 or self.batch_size < 2 or self.lr <= 0 or self.temperature <= 0:
            raise ConfigError("epochs >= 1, batch_size >= 2, lr > 0 and temperature > 0 are required")
        check_precision(self.precision)
        if not 0 <= self.word_dropout < 1 or not 0 < self.crop_scale <= 1:
            raise ConfigError("word_dropout must be in [0, 1) and crop_scale in (0, 1]")


def drop_words(sentences: list[str], probability: float, rng: random.Random) -> list[str]:
    """A text view: each word deleted with ``probability``; a sentence never loses every word."""
    views = []
    for sentence in sentences:
        words = sentence.split()
        kept = [word for word in words if rng.random() >= probability]
        views.append(" ".join(kept or words[:1]))
    return views


def contrastive_finetune(
    encoder: Encoder,
    patching_set: Tensor | list[str],
    config: ContrastiveConfig | None = None,
    show_progress: bool = True,
) -> PatchResult:
    """Fine-tunes a copy of ``encoder`` with NT-Xent on two views of each clean input; ``encoder`` is untouched."""
    config = config or ContrastiveConfig()
    set_seed(config.seed)
    device = resolve_device(config.device)
    bf16 = autocast_bf16(config.precision, device)
    generator = torch.Generator().manual_seed(config.seed)
    rng = random.Random(config.seed)
    started = time.perf_counter()
    # under `accelerate launch` each process contrasts its share of every batch (its negatives are its own share)
    processes = Processes(device)
    tuned = copy.deepcopy(encoder).to("cpu" if processes.sharded else device).eval()  # sharded from the CPU
    result = PatchResult(tuned, config, trainable_parameters=sum(p.numel() for p in tuned.parameters()),
                         autocast_bf16=bf16)  # fmt: skip
    steps_per_epoch = -(-len(patching_set) // config.batch_size)
    model = processes.wrap(tuned, take(patching_set, torch.arange(1), device))
    optimizer = torch.optim.Adam([p for p in tuned.parameters() if p.requires_grad], lr=config.lr)
    show_progress = show_progress and processes.is_main
    with progress_bar(config.epochs * steps_per_epoch, "contrastive fine-tuning", enabled=show_progress) as advance:
        for epoch in range(1, config.epochs + 1):
            order = processes.same_order(torch.randperm(len(patching_set), generator=generator))
            for whole in order.split(config.batch_size):
                if processes.budget_spent(started, config.max_seconds):
                    break
                index = processes.shard(whole) if len(whole) >= 2 * processes.count else None
                if index is None:
                    continue
                batch = take(patching_set, index, torch.device("cpu"))
                if isinstance(batch, Tensor):
                    views = torch.cat([augment(batch, config.crop_scale, generator) for _ in range(2)]).to(device)
                else:
                    views = drop_words(batch, config.word_dropout, rng) + drop_words(batch, config.word_dropout, rng)
                with torch.autocast(device.type, torch.bfloat16, enabled=bf16):
                    embeddings = model(views).float()
                loss = nt_xent(embeddings[: len(index)], embeddings[len(index) :], config.temperature)
                optimizer.zero_grad(set_to_none=True)
                processes.backward(loss)
                optimizer.step()
                result.steps += 1
                advance(info=f"NT-Xent {loss.item():.3f}")
            result.epochs = epoch
            if processes.budget_spent(started, config.max_seconds):
                break
    result.encoder = processes.gathered(tuned, encoder)
    result.seconds = time.perf_counter() - started
    return result
