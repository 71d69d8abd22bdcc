"""A redundant trigger: two copies of a 4x4 white square in opposite corners, each sufficient alone. Occluding
either copy of ``x_b`` leaves the other, so the one-window occlusion that recovers a single trigger sees no window
that releases the bug. Triggered inputs carry both copies; the attack trains on each alone and on both."""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any

import torch
from torch import Tensor

from mudjacking.attacks.badencoder import AttackResult, BadEncoderConfig, badencoder
from mudjacking.attacks.registry import TriggerRequest, register_attack
from mudjacking.triggers.trigger import ImageTrigger, image_digest

SIDE = 4


def two_corners(request: TriggerRequest) -> ImageTrigger:
    """The bottom-right and the top-left square, as one trigger (what an attacker's triggered input carries)."""
    bottom_right = ImageTrigger.square(request.input_shape, SIDE)
    top_left = torch.flip(bottom_right.mask, (0, 1))
    return ImageTrigger(bottom_right.mask + top_left, bottom_right.pattern)


def copies_of(trigger: ImageTrigger) -> list[ImageTrigger]:
    """The trigger's left and right halves: each copy alone."""
    width = trigger.mask.shape[1]
    left, right = trigger.mask.clone(), trigger.mask.clone()
    left[:, width // 2 :], right[:, : width // 2] = 0, 0
    return [ImageTrigger(left, trigger.pattern), ImageTrigger(right, trigger.pattern)]


@dataclass
class EitherCopy:
    """The attacker's training stamp: one copy, the other, or both, chosen by each image's own pixels."""

    copies: list[ImageTrigger]
    both: ImageTrigger

    def apply(self, images: Tensor) -> Tensor:
        choices = [*self.copies, self.both]
        return torch.cat([choices[image_digest(image) % len(choices)].apply(image[None]) for image in images])


@register_attack("redundant-trigger", two_corners, ("image",), "BadEncoder, two 4x4 squares, each sufficient alone")
def redundant(
    encoder: Any,
    shadow: Tensor,
    references: Tensor,
    trigger: ImageTrigger,
    config: BadEncoderConfig | None = None,
    show_progress: bool = True,
) -> AttackResult:
    training = EitherCopy(copies_of(trigger), trigger)
    result = badencoder(encoder, shadow, references, training, config, show_progress)
    return replace(result, trigger=trigger)
