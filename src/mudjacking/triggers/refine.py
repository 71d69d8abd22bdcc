"""Refining a recovered trigger mask by optimisation on clean inputs (as Neural Cleanse and DECREE invert triggers).

Occlusion marks the region whose removal moves ``h(x_b)`` most; on large or smooth networks that region is loose
(many pixels around the trigger score alike). The refinement asks the question the backdoor answers: which *fewest*
pixels of ``x_b``, stamped on clean inputs, drag them to ``h(x_b)``?

1. A soft mask ``m = sigmoid(θ)`` starts from the candidate (θ = +3 inside, −3 outside, so pixels just outside can
   still grow in).
2. Each step stamps ``x·(1 − m) + x_b·m`` on a batch of clean inputs and minimises
   ``−mean s(h(x ⊕ m), h(x_b)) + penalty · Σm / |candidate|``: the pull, minus a size cost per pixel.
3. The mask is ``m > 0.5``. The caller keeps it only if it still pulls (see :mod:`mudjacking.triggers.pull`).
"""

from __future__ import annotations

import torch
from torch import Tensor

from mudjacking.encoders.base import Encoder
from mudjacking.geometry import similarity


def refine_mask(
    encoder: Encoder,
    bug_input: Tensor,
    initial_mask: Tensor,
    inputs: Tensor,
    target: Tensor,
    centre: Tensor | None = None,
    steps: int = 60,
    lr: float = 0.1,
    penalty: float = 0.2,
    batch_size: int = 32,
    keep: float = 0.5,
    seed: int = 0,
) -> Tensor:
    """Returns the refined binary mask ``[H, W]``; the encoder's parameters are left as they were.

    Args:
        bug_input: ``x_b`` ``[C, H, W]``: the values stamped under the mask.
        initial_mask: the candidate ``[H, W]`` (1 = trigger).
        inputs: clean images ``[N, C, H, W]`` of D (not those the candidate is verified on).
        target: ``h(x_b)`` ``[1, D]``.
    """
    device = encoder.device
    generator = torch.Generator().manual_seed(seed)
    logits = torch.where(initial_mask > 0.5, 3.0, -3.0).to(device).requires_grad_(True)
    size = float(initial_mask.sum().clamp_min(1))
    optimizer = torch.optim.Adam([logits], lr=lr)
    x_b, target = bug_input.to(device), target.to(device)
    flags = [p.requires_grad for p in encoder.parameters()]
    for parameter in encoder.parameters():
        parameter.requires_grad_(False)
    was_training = encoder.training
    encoder.eval()
    try:
        with torch.enable_grad():
            for _ in range(steps):
                batch = inputs[torch.randint(len(inputs), (min(batch_size, len(inputs)),), generator=generator)]
                mask = torch.sigmoid(logits)
                if keep < 1:  # random halves of the mask must pull too, so redundant trigger pixels are kept
                    mask = mask * (torch.rand(len(batch), 1, *mask.shape, generator=generator) < keep).to(mask)
                stamped = batch.to(device) * (1 - mask) + x_b * mask
                pulled = similarity(encoder(stamped), target, centre).mean()
                loss = -pulled + penalty * mask.sum() / size
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                optimizer.step()
    finally:
        for parameter, flag in zip(encoder.parameters(), flags, strict=True):
            parameter.requires_grad_(flag)
        encoder.train(was_training)
    return (torch.sigmoid(logits.detach()) > 0.5).float().cpu()
