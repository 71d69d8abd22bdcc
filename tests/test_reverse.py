"""Trigger recovery on a closed-form backdoored encoder whose trigger is known exactly."""

import torch
from torch import Tensor, nn

from mudjacking.data import BugReport
from mudjacking.encoders import ImageInputSpec, ModuleEncoder
from mudjacking.triggers import ImageTrigger, ReverseConfig, reverse_engineer_trigger
from mudjacking.triggers.reverse import split_scores


class PlantedBackdoor(nn.Module):
    """A random linear embedding of the pixels outside the trigger region, plus a fixed target direction that
    grows once the trigger region is brighter than 0.5: every trigger pixel matters equally, and only through
    the backdoor."""

    def __init__(self, trigger_mask: Tensor, dim: int = 16) -> None:
        super().__init__()
        generator = torch.Generator().manual_seed(0)
        pixels = trigger_mask.numel()
        outside = (1 - trigger_mask.flatten())[:, None]
        self.projection = nn.Parameter(outside * torch.randn(pixels, dim, generator=generator) / pixels**0.5)
        self.register_buffer("mask", trigger_mask.flatten())
        self.register_buffer("target", torch.randn(dim, generator=generator))

    def forward(self, x: Tensor) -> Tensor:
        flat = x.flatten(1)
        brightness = (flat * self.mask).sum(1) / self.mask.sum()
        return flat @ self.projection + torch.relu(2 * brightness - 1)[:, None] * self.target


def test_recovers_a_planted_trigger():
    trigger = ImageTrigger.square((1, 12, 12), size=3, margin=1)
    encoder = ModuleEncoder(PlantedBackdoor(trigger.mask), ImageInputSpec(channels=1, mean=(0.0,), std=(1.0,)))
    generator = torch.Generator().manual_seed(1)
    base = torch.rand(1, 1, 12, 12, generator=generator) * 0.3  # x_b and x_r: two inputs of one class
    clean = base + 0.02 * torch.rand(2, 1, 12, 12, generator=generator)
    bug = BugReport(bug_input=trigger.apply(clean[:1])[0], reference_input=clean[1], label=3)
    recovery = reverse_engineer_trigger(encoder, bug, ReverseConfig(window=1))
    assert recovery.trigger.iou(trigger) == 1.0
    assert recovery.attribution[trigger.mask.bool()].min() > recovery.attribution[~trigger.mask.bool()].max()
    assert torch.equal(
        recovery.trigger.apply(clean)[:, :, trigger.mask.bool()], bug.bug_input[:, trigger.mask.bool()].expand(2, 1, -1)
    )


def test_window_larger_than_one_still_covers_the_trigger():
    trigger = ImageTrigger.square((1, 12, 12), size=4, margin=0)
    encoder = ModuleEncoder(PlantedBackdoor(trigger.mask), ImageInputSpec(channels=1, mean=(0.0,), std=(1.0,)))
    clean = torch.full((2, 1, 12, 12), 0.2)
    clean[1, 0, 2:6, 2:6] = 0.3
    bug = BugReport(bug_input=trigger.apply(clean[:1])[0], reference_input=clean[1], label=0)
    recovery = reverse_engineer_trigger(encoder, bug, ReverseConfig(window=2))
    assert recovery.trigger.iou(trigger) >= 0.6


def test_minority_cluster_is_the_mask():
    scores = torch.zeros(6, 6)
    scores[0, :3] = 10.0
    mask, threshold = split_scores(scores)
    assert mask.sum() == 3 and mask[0, :3].all()
    assert 0 < threshold < 10
