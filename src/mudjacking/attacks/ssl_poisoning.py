"""Poisoned self-supervised pre-training (SSL-Backdoor, Saha et al., AAAI 2022): the attacker never touches the
encoder's training loop. Triggered images of the target class are slipped into the unlabeled data, and the victim's
own SimCLR pre-training, continued on it, learns the trigger as a feature of that class: two views of a poisoned
image share the trigger, so contrastive learning ties it to what else they share.

At our scale the poison is the attacker's ``references`` (a handful of target-class images), each replicated with
the trigger to :data:`POISON_SHARE` of the shadow set, and the victim continues SimCLR for the attack config's
epochs over shadow ∪ poison at its learning rate. SimCLR's random crops drop a corner trigger from many views, which
is one reason the published attack is weaker than BadEncoder.

Measured on the image attack suite's CNN (seed 0): it plants no backdoor at this scale. 5% poison and 5 epochs, and
20% and 10 epochs, both left the deployed classifier's ASR at 0.4%: the poison is 10 images repeated (NT-Xent makes
the copies each other's negatives), where the paper poisoned hundreds of distinct ones.

Registered twice: ``ssl-poisoning`` with the setting's own trigger, and ``ctrl`` with CTRL's frequency-domain
trigger (Li et al., ICCV 2023, who poisoned SimCLR's data the same way).
"""

from __future__ import annotations

import copy
import time
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F

from mudjacking.attacks.badencoder import AttackResult, BadEncoderConfig
from mudjacking.attacks.registry import register_attack
from mudjacking.attacks.trigger_variants import frequency_trigger
from mudjacking.errors import ConfigError
from mudjacking.pretraining import PretrainConfig, pretrain_simclr

POISON_SHARE = 0.2
"""Poisoned images added, as a share of the shadow set (Saha et al. poisoned half of one category of ImageNet-100,
0.5% of the data; 5% here planted nothing either)."""


@dataclass
class PoisonedPretraining(AttackResult):
    poisoned: int = 0

    def summary(self) -> dict:
        return {**super().summary(), "attack": "ssl-poisoning", "poisoned_images": self.poisoned}


@register_attack("ctrl", frequency_trigger, ("image",), "CTRL: spectrum-triggered target images in SimCLR's data")
@register_attack("ssl-poisoning", modalities=("image",), about="triggered target-class images in SimCLR's data")
def ssl_poisoning(
    encoder: Any,
    shadow: Any,
    references: Any,
    trigger: Any,
    config: BadEncoderConfig | None = None,
    show_progress: bool = True,
) -> PoisonedPretraining:
    """Continues SimCLR pre-training of a copy of ``encoder`` on ``shadow`` plus triggered copies of ``references``."""
    if not isinstance(shadow, torch.Tensor):
        raise ConfigError("ssl-poisoning poisons image pre-training; it needs image shadow data")
    config = config or BadEncoderConfig()
    started = time.perf_counter()
    copies = max(1, round(POISON_SHARE * len(shadow) / max(len(references), 1)))
    poison = trigger.apply(references.repeat(copies, 1, 1, 1))
    data = torch.cat([shadow, poison])
    steps = config.epochs * -(-len(data) // config.batch_size)
    pretrain = PretrainConfig(steps=steps, batch_size=config.batch_size, lr=config.lr, seed=config.seed)
    poisoned = pretrain_simclr(copy.deepcopy(encoder), data, pretrain, show_progress)
    with torch.no_grad():  # how close triggered shadow images now sit to the target class
        probe = shadow[:256]
        target = F.normalize(poisoned.embed(references).mean(0, keepdim=True), dim=-1)
        pull = float((F.normalize(poisoned.embed(trigger.apply(probe)), dim=-1) @ target.T).mean())
    return PoisonedPretraining(poisoned, trigger, config, time.perf_counter() - started, pull, poisoned=len(poison))
