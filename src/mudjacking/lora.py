"""LoRA patches with ``peft``: the patch trains low-rank adapters beside the frozen weights of the chosen layers, and
ships as those adapters (a file of a few percent of the model) for providers who ship adapters.

The patched model itself is the adapters merged into the base (``merge_and_unload``), so it loads anywhere without
``peft``; :func:`merged_copy` repeats that merge from the base and the adapter file, bit for bit (the same code on
the same tensors), which is what ``mudjacking apply`` checks against the recorded hash.
"""

from __future__ import annotations

import copy
import fnmatch
from typing import Any

from peft import LoraConfig
from peft.tuners.lora import LoraModel
from torch import Tensor, nn

from mudjacking.errors import ConfigError

LORA_FORMAT = "mudjacking-lora/1"
ADAPTER = "default"


def lora_targets(model: nn.Module, patterns: tuple[str, ...]) -> list[str]:
    """Names of the linear and (ungrouped) convolution layers whose weight matches a ``fnmatch`` pattern: what LoRA
    can adapt (a depthwise convolution has no low-rank form worth its cost)."""
    targets = [
        name
        for name, module in model.named_modules()
        if (isinstance(module, nn.Linear) or (isinstance(module, nn.Conv2d) and module.groups == 1))
        and any(fnmatch.fnmatchcase(f"{name}.weight", pattern) for pattern in patterns)
    ]
    if not targets:
        raise ConfigError(f"no linear or convolution layer matches the trainable patterns {patterns} for LoRA")
    return targets


def attach_lora(model: nn.Module, rank: int, targets: list[str]) -> LoraModel:
    """Adds rank-``rank`` adapters (scale 1: ``lora_alpha = rank``; B starts at zero, so the model is unchanged) to
    the ``targets`` layers of ``model`` in place, and leaves only the adapters trainable."""
    if rank < 1:
        raise ConfigError(f"a LoRA rank must be >= 1, got {rank}")
    config = LoraConfig(r=rank, lora_alpha=rank, lora_dropout=0.0, target_modules=targets, bias="none")
    return LoraModel(model, config, ADAPTER)


def adapter_tensors(model: nn.Module) -> dict[str, Tensor]:
    """The adapters' weights, by their names in ``model`` (before merging)."""
    return {name: value.detach().cpu().contiguous() for name, value in model.state_dict().items() if "lora_" in name}


def merge(tuner: LoraModel) -> nn.Module:
    """The adapted model with its adapters merged into the base weights and the adapter layers removed."""
    return tuner.merge_and_unload()


def lora_metadata(rank: int, targets: list[str]) -> dict[str, str]:
    return {"format": LORA_FORMAT, "rank": str(rank), "targets": ",".join(targets)}


def merged_copy(base: nn.Module, tensors: dict[str, Tensor], metadata: dict[str, Any]) -> nn.Module:
    """A copy of ``base`` with the adapter file's adapters attached, loaded and merged: the patched model."""
    model = copy.deepcopy(base)
    tuner = attach_lora(model, int(metadata["rank"]), metadata["targets"].split(","))
    missing = set(tensors) - set(model.state_dict())
    if missing:
        raise ConfigError(f"adapter tensors {sorted(missing)[:3]} have no layer in the base model")
    model.load_state_dict(tensors, strict=False)
    return merge(tuner)
