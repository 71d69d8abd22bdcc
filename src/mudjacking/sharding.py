"""Sharded patching (FSDP) for encoders whose weights, gradients and optimiser state do not fit one device.

``accelerate launch --use_fsdp ... -m mudjacking patch`` asks for it. The sharding is PyTorch's own
(``torch.distributed.fsdp.fully_shard``, FSDP2) over the process group accelerate set up: accelerate's FSDP
plugin runs only on accelerators, and FSDP2 also runs over gloo on CPU processes, so CI checks this very path.

1. Units: the blocks Hugging Face models name as never to be split (``_no_split_modules``: a ViT or BERT layer),
   else, for the project's own networks, the smallest subtrees holding at least ``min_parameters`` parameters
   not already in a unit. The root is the last unit and holds whatever is left.
2. Each unit keeps ``1/N`` of its parameters on each of the ``N`` processes and gathers them whole only for its
   own forward and backward; gradients are reduce-scattered, so each process steps its own shard.
3. At the end the full weights are gathered to the main process's CPU memory, never whole on one device.
"""

from __future__ import annotations

import os

import torch
from torch import nn

#: a subtree of at least this many parameters becomes its own unit in networks that name no blocks
MIN_UNIT_PARAMETERS = 20_000


def sharding_asked() -> bool:
    """Whether this process was started by ``accelerate launch --use_fsdp`` (or torchrun with the same setting)."""
    return os.environ.get("ACCELERATE_USE_FSDP", "").lower() == "true" and "LOCAL_RANK" in os.environ


def shard_units(model: nn.Module, min_parameters: int = MIN_UNIT_PARAMETERS) -> list[nn.Module]:
    """The submodules to shard one by one, lowest first (the root is not among them)."""
    named = {name for module in model.modules() for name in getattr(module, "_no_split_modules", None) or ()}
    if named:
        blocks = [module for module in model.modules() if type(module).__name__ in named and module is not model]
        return blocks[::-1]  # modules() lists a parent before its children, and a block in a block goes first
    units: list[nn.Module] = []

    def left_over(module: nn.Module) -> int:
        """Parameters under ``module`` not yet in a unit, after making units of its large-enough children."""
        count = sum(p.numel() for p in module.parameters(recurse=False))
        for child in module.children():
            below = left_over(child)
            if below >= min_parameters:
                units.append(child)
            else:
                count += below
        return count

    left_over(model)
    return units


def shard(model: nn.Module, device: torch.device, processes: int) -> nn.Module:
    """Shards ``model`` in place across the launch's processes (every process calls it alike); returns it.
    Its parameters are replaced by sharded ones: build the optimiser after this."""
    from torch.distributed.device_mesh import init_device_mesh
    from torch.distributed.fsdp import fully_shard

    mesh = init_device_mesh(device.type, (processes,))
    for parameter in model.parameters():  # FSDP shards along the first dimension of a contiguous tensor
        parameter.data = parameter.data.contiguous()  # (a channels-last convolution's weight is not)
    for unit in shard_units(model):
        fully_shard(unit, mesh=mesh)
    fully_shard(model, mesh=mesh)
    return model


def local_parameters(model: nn.Module) -> int:
    """How many parameter values this process holds (its shards)."""
    return sum((p.to_local() if hasattr(p, "to_local") else p).numel() for p in model.parameters())


def full_weights(model: nn.Module) -> dict[str, torch.Tensor]:
    """The sharded ``model``'s whole weights on the main process's CPU (an empty dict elsewhere); every process
    must call it."""
    from torch.distributed.checkpoint.state_dict import StateDictOptions, get_model_state_dict

    return get_model_state_dict(model, options=StateDictOptions(full_state_dict=True, cpu_offload=True))
