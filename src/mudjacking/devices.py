"""Where training loops run: one rule shared by the patch, the attack and the baselines."""

from __future__ import annotations

import torch


def resolve_device(name: str) -> torch.device:
    """``"auto"`` is CUDA when present, else the CPU; ``"cpu"`` and ``"cuda"`` are taken as given."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(name)
