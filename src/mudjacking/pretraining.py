"""Contrastive (SimCLR, Chen et al. 2020) pre-training of a small image foundation model, for the demo.

1. Two random augmentations of each image (resized crop, flip, brightness/contrast, noise), batched in torch.
2. Embed both views, project with a small MLP head, NT-Xent loss with temperature τ.
3. The head is thrown away; the encoder's embedding is what downstream classifiers use.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from accelerate.utils import set_seed
from torch import Tensor, nn

from mudjacking.encoders.base import ImageEncoder
from mudjacking.errors import ConfigError
from mudjacking.progress import progress_bar


@dataclass
class PretrainConfig:
    """Args:
    steps: optimisation steps.
    batch_size: images per step (2 views each).
    lr: Adam learning rate (cosine-decayed to 0).
    temperature: NT-Xent temperature τ.
    crop_scale: smallest area fraction kept by the random resized crop.
    seed: seeds augmentations, sampling and initialisation.
    """

    steps: int = 300
    batch_size: int = 256
    lr: float = 2e-3
    temperature: float = 0.2
    crop_scale: float = 0.4
    seed: int = 0

    def __post_init__(self) -> None:
        if self.steps < 1 or self.batch_size < 2 or self.lr <= 0 or self.temperature <= 0:
            raise ConfigError("steps >= 1, batch_size >= 2, lr > 0 and temperature > 0 are required")
        if not 0 < self.crop_scale <= 1:
            raise ConfigError(f"crop_scale must be in (0, 1], got {self.crop_scale}")


def augment(images: Tensor, crop_scale: float, generator: torch.Generator) -> Tensor:
    """Random resized crop + horizontal flip + brightness/contrast jitter + noise on ``[B, C, H, W]``."""
    batch = images.shape[0]

    def uniform(low: float, high: float) -> Tensor:
        return low + (high - low) * torch.rand(batch, generator=generator)

    scale = uniform(crop_scale, 1.0).sqrt()
    flip = torch.where(torch.rand(batch, generator=generator) < 0.5, -1.0, 1.0)
    shift_x, shift_y = (1 - scale) * uniform(-1, 1), (1 - scale) * uniform(-1, 1)
    theta = torch.zeros(batch, 2, 3)
    theta[:, 0, 0], theta[:, 1, 1] = scale * flip, scale
    theta[:, 0, 2], theta[:, 1, 2] = shift_x, shift_y
    grid = F.affine_grid(theta, list(images.shape), align_corners=False)
    views = F.grid_sample(images, grid, align_corners=False, padding_mode="zeros")
    brightness = uniform(-0.2, 0.2).view(-1, 1, 1, 1)
    contrast = uniform(0.7, 1.3).view(-1, 1, 1, 1)
    mean = views.mean(dim=(1, 2, 3), keepdim=True)
    views = (views - mean) * contrast + mean + brightness
    views = views + 0.03 * torch.randn(views.shape, generator=generator)
    return views.clamp(0, 1)


def nt_xent(z1: Tensor, z2: Tensor, temperature: float) -> Tensor:
    """SimCLR's normalised-temperature cross entropy for positives ``(z1[i], z2[i])``; ``[B, D]`` each -> scalar."""
    z = F.normalize(torch.cat([z1, z2]), dim=-1)
    logits = z @ z.T / temperature
    logits.fill_diagonal_(float("-inf"))
    batch = z1.shape[0]
    targets = torch.cat([torch.arange(batch, 2 * batch), torch.arange(batch)])
    return F.cross_entropy(logits, targets)


def pretrain_simclr(
    encoder: ImageEncoder, images: Tensor, config: PretrainConfig | None = None, show_progress: bool = True
) -> ImageEncoder:
    """Trains ``encoder`` in place with SimCLR on unlabeled ``images`` ``[N, C, H, W]``; returns it."""
    config = config or PretrainConfig()
    set_seed(config.seed)
    generator = torch.Generator().manual_seed(config.seed)
    dim = encoder(images[:2]).shape[-1]
    head = nn.Sequential(nn.Linear(dim, dim), nn.ReLU(), nn.Linear(dim, dim))
    parameters = list(encoder.parameters()) + list(head.parameters())
    optimizer = torch.optim.Adam(parameters, lr=config.lr)
    schedule = torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda step: 0.5 * (1 + math.cos(math.pi * step / config.steps))
    )
    encoder.train()
    with progress_bar(config.steps, "pre-training (SimCLR)", enabled=show_progress) as advance:
        for _ in range(config.steps):
            batch = images[torch.randint(len(images), (config.batch_size,), generator=generator)]
            views = torch.cat(
                [augment(batch, config.crop_scale, generator), augment(batch, config.crop_scale, generator)]
            )
            projections = head(encoder(views))
            loss = nt_xent(projections[: config.batch_size], projections[config.batch_size :], config.temperature)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            schedule.step()
            advance(info=f"loss {loss.item():.3f}")
    return encoder.eval()
