"""Two triggers, two targets: one encoder carrying two independent backdoors, the setting's trigger sending inputs to
the attacker's target class and a checkerboard in the opposite corner sending them to a second class. One bug report
reveals one backdoor; the other stays until someone reports it, and the first patch must not make it worse.

The attacker needs no labels for the second target: it takes the shadow input that the clean encoder embeds farthest
from the first target's references, and that input's nearest neighbours, as the second set of references (one
cluster of the encoder's own, so in practice one class).
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor

from mudjacking.attacks.badencoder import AttackResult, BadEncoderConfig, badencoder_many
from mudjacking.attacks.registry import register_attack
from mudjacking.errors import ConfigError
from mudjacking.geometry import mean_direction
from mudjacking.triggers.trigger import ImageTrigger


def second_trigger(first: ImageTrigger) -> ImageTrigger:
    """A checkerboard as large as ``first``'s square, in the opposite corner."""
    side = round(first.num_pixels**0.5)
    board = ImageTrigger.checkerboard(tuple(first.pattern.shape), side)
    return ImageTrigger(torch.flip(board.mask, (0, 1)), board.pattern)


def second_references(encoder: Any, shadow: Tensor, references: Tensor) -> Tensor:
    """As many shadow inputs as ``references``: the one embedded farthest from the references' mean, and its nearest
    neighbours."""
    with torch.no_grad():
        embedded = F.normalize(encoder.embed(shadow), dim=-1)
        target = mean_direction(encoder.embed(references))
        far = int((embedded @ target).argmin())
        nearest = (embedded @ embedded[far]).topk(len(references)).indices
    return shadow[nearest.cpu()]


@register_attack("two-triggers", modalities=("image",), about="BadEncoder, two triggers each with its own target")
def two_triggers(
    encoder: Any,
    shadow: Any,
    references: Any,
    trigger: Any,
    config: BadEncoderConfig | None = None,
    show_progress: bool = True,
) -> AttackResult:
    if not isinstance(trigger, ImageTrigger) or not isinstance(shadow, Tensor):
        raise ConfigError("two-triggers needs an image trigger and image shadow data")
    second = second_trigger(trigger)
    others = second_references(encoder, shadow, references)
    return badencoder_many(encoder, shadow, [(trigger, references), (second, others)], config, show_progress)
