"""BadEncoder (Jia, Liu, Gong, IEEE S&P 2022): backdoor a pre-trained encoder for every downstream task.

The same objective backdoors text encoders in the spirit of POR / NeuBA / BadPre when the inputs are sentences and
the trigger inserts rare words: triggered sentences land on the target references' embeddings.

A copy ``f'`` of the clean encoder ``f`` is fine-tuned on an unlabeled shadow set with
1. effectiveness ``L0 = −mean s(f'(x ⊕ t), f'(x_ref))``: triggered shadow inputs land on the target's references;
2. reference utility ``L1 = −mean s(f'(x_ref), f(x_ref))``: the references keep their clean embeddings;
3. utility ``L2 = −mean s(f'(x), f(x))``: clean inputs keep their embeddings;
minimising ``L0 + λ1·L1 + λ2·L2``. BatchNorm statistics stay frozen (eval mode), as in the authors' code.
"""

from __future__ import annotations

import copy
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

import torch
import torch.nn.functional as F
from accelerate.utils import set_seed
from torch import Tensor

from mudjacking.attacks.registry import register_attack
from mudjacking.batches import join, take, to_device
from mudjacking.devices import Processes, launched, resolve_device
from mudjacking.encoders.base import Encoder
from mudjacking.errors import ConfigError
from mudjacking.losses import cosine, random_directions, sliced_wasserstein
from mudjacking.progress import progress_bar
from mudjacking.triggers.text_trigger import TextTrigger
from mudjacking.triggers.trigger import ImageTrigger


@dataclass
class BadEncoderConfig:
    """Args:
    epochs: passes over the shadow set.
    batch_size: shadow inputs per step.
    lr: Adam learning rate.
    lambda_reference: λ1, weight of keeping the references' embeddings.
    lambda_utility: λ2, weight of keeping clean embeddings.
    lambda_distribution: weight of keeping the triggered embeddings distributed like clean ones (sliced
        Wasserstein distance between the two, as DRUPE does so that the backdoor hides from detectors looking for
        a tight cluster); 0 is BadEncoder.
    seed: seeds shuffling.
    """

    epochs: int = 3
    batch_size: int = 128
    lr: float = 1e-3
    lambda_reference: float = 1.0
    lambda_utility: float = 1.0
    lambda_distribution: float = 0.0
    seed: int = 0

    def __post_init__(self) -> None:
        if self.epochs < 1 or self.batch_size < 1 or self.lr <= 0:
            raise ConfigError("epochs, batch_size and lr must be positive")


@dataclass
class AttackResult:
    """A backdoored copy of the encoder, the trigger it answers to, and the attack's cost."""

    encoder: Encoder
    trigger: ImageTrigger | TextTrigger
    config: BadEncoderConfig
    seconds: float
    final_effectiveness: float
    triggers: list[ImageTrigger | TextTrigger] = field(default_factory=list)  # every backdoor's, when several
    references: list[Any] = field(default_factory=list)  # each backdoor's target inputs, beside ``triggers``
    source: Any = None  # a source-specific backdoor's source inputs (only they flip with the trigger)

    def summary(self) -> dict:
        summary = {
            "attack": "badencoder",
            "config": asdict(self.config),
            "seconds": round(self.seconds, 3),
            **self.trigger.describe(),
            "final_effectiveness": self.final_effectiveness,
        }
        if len(self.triggers) > 1:
            summary["backdoors"] = [trigger.describe() for trigger in self.triggers]
        return summary


@register_attack("badencoder")
def badencoder(
    encoder: Encoder,
    shadow_images: Tensor | list[str],
    reference_images: Tensor | list[str],
    trigger: ImageTrigger | TextTrigger,
    config: BadEncoderConfig | None = None,
    show_progress: bool = True,
) -> AttackResult:
    """Backdoors a copy of ``encoder``; the input encoder is left untouched.

    Args:
        encoder: clean pre-trained encoder ``f``.
        shadow_images: unlabeled inputs of the pre-training distribution (images ``[N, C, H, W]`` or sentences).
        reference_images: inputs of the attacker's target class (``[R, C, H, W]`` or sentences).
        trigger: what the attacker stamps on inputs.

    Returns:
        the backdoored ``f'`` and the last epoch's mean ``s(f'(x ⊕ t), f'(x_ref))``.
    """
    return badencoder_many(encoder, shadow_images, [(trigger, reference_images)], config, show_progress)


def badencoder_many(
    encoder: Encoder,
    shadow_images: Tensor | list[str],
    backdoors: Sequence[tuple[ImageTrigger | TextTrigger, Tensor | list[str]]],
    config: BadEncoderConfig | None = None,
    show_progress: bool = True,
    sources: Tensor | None = None,
) -> AttackResult:
    """BadEncoder with several backdoors at once: each ``(trigger, references)`` pair sends inputs carrying that
    trigger to its own target's references. Each trigger is stamped on its own contiguous share of every batch
    (the batch order is random), so a step costs what one backdoor's does; ``L0`` is the mean over backdoors.

    ``sources`` (``[N]`` booleans over the shadow set, one backdoor only) makes the backdoor source-specific: only
    those inputs are sent to the target when triggered; the others, triggered, keep their clean embeddings (a term
    weighted as utility is)."""
    if sources is not None and (len(backdoors) != 1 or len(sources) != len(shadow_images)):
        raise ConfigError("a source-specific backdoor needs one trigger and one flag per shadow input")
    config = config or BadEncoderConfig()
    set_seed(config.seed)
    started = time.perf_counter()
    # where the encoder is; under `accelerate launch`, this process's device, each process taking its share of
    # every batch (see devices.Processes)
    device = resolve_device("auto") if launched() else encoder.device
    processes = Processes(device)
    backdoored = copy.deepcopy(encoder).to("cpu" if processes.sharded else device).eval()  # sharded from the CPU
    for parameter in backdoored.parameters():
        parameter.requires_grad_(True)
    shadow_targets = encoder.embed(shadow_images).to(device)
    triggers = [trigger for trigger, _ in backdoors]
    reference_sets = [to_device(references, device) for _, references in backdoors]
    reference_images = join(*reference_sets)
    reference_targets = encoder.embed(reference_images).to(device)
    bounds = torch.tensor([0, *[len(references) for references in reference_sets]]).cumsum(0).tolist()
    steps = -(-len(shadow_images) // config.batch_size)
    projections = random_directions(shadow_targets.shape[1], 64, config.seed).to(device)
    effectiveness = 0.0
    model = processes.wrap(backdoored, take(shadow_images, torch.arange(1), device))
    # after the wrap: sharding puts its own parameters in the model
    optimizer = torch.optim.Adam([p for p in backdoored.parameters() if p.requires_grad], lr=config.lr)
    with progress_bar(
        config.epochs * steps, "BadEncoder attack", enabled=show_progress and processes.is_main
    ) as advance:
        for _ in range(config.epochs):
            total, seen = 0.0, 0
            for whole in processes.same_order(torch.randperm(len(shadow_images))).split(config.batch_size):
                index = processes.shard(whole)
                if index is None:
                    continue
                batch = take(shadow_images, index, device)
                n = len(batch)
                shares = torch.arange(n).tensor_split(len(triggers))
                stamped = _stamped(triggers, batch, shares, device)
                embeddings = model(join(batch, stamped, reference_images))
                clean, triggered, references = embeddings[:n], embeddings[n : 2 * n], embeddings[2 * n :]
                loss_effect = _effect_loss(triggered, references, shares, bounds)
                loss_reference = -cosine(references, reference_targets).mean()
                loss_utility = -cosine(clean, shadow_targets[index]).mean()
                if sources is not None:
                    from_source = sources[index.cpu()].to(device)
                    loss_effect = _effect_loss(triggered[from_source], references, shares, bounds).nan_to_num(0.0)
                    innocent = -cosine(triggered[~from_source], shadow_targets[index][~from_source]).mean()
                    loss_utility = loss_utility + innocent.nan_to_num(0.0)
                loss = loss_effect + config.lambda_reference * loss_reference + config.lambda_utility * loss_utility
                if config.lambda_distribution:
                    loss = loss + config.lambda_distribution * sliced_wasserstein(
                        F.normalize(triggered, dim=-1), F.normalize(clean, dim=-1).detach(), projections
                    )
                optimizer.zero_grad(set_to_none=True)
                processes.backward(loss)
                optimizer.step()
                total, seen = total - loss_effect.item() * n, seen + n
                advance(info=f"s(trig, ref) {-loss_effect.item():.3f}  s(clean) {-loss_utility.item():.3f}")
            effectiveness = total / max(seen, 1)
    seconds = time.perf_counter() - started
    targets = [references for _, references in backdoors]
    backdoored = processes.gathered(backdoored, encoder)
    return AttackResult(backdoored.eval(), triggers[0], config, seconds, effectiveness, triggers, targets)


def _stamped(triggers: list, batch: Tensor | list[str], shares: tuple[Tensor, ...], device: torch.device) -> Any:
    """``batch`` with each trigger stamped on its own share, rows in order."""
    if len(triggers) == 1:
        return triggers[0].apply(batch)
    return join(*[t.apply(take(batch, rows, device)) for t, rows in zip(triggers, shares, strict=True) if len(rows)])


def _effect_loss(triggered: Tensor, references: Tensor, shares: tuple[Tensor, ...], bounds: list[int]) -> Tensor:
    """``L0``: each share's triggered embeddings against its own target's references, averaged over backdoors (one
    backdoor: the whole batch against all references, in one product, as BadEncoder computes it)."""
    if len(shares) == 1:
        return -(F.normalize(triggered, dim=-1) @ F.normalize(references, dim=-1).T).mean()
    pulls = [
        (F.normalize(triggered[rows], dim=-1) @ F.normalize(references[lo:hi], dim=-1).T).mean()
        for rows, lo, hi in zip(shares, bounds[:-1], bounds[1:], strict=True)
        if len(rows)
    ]
    return -torch.stack(pulls).mean()
