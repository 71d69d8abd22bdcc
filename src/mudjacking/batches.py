"""Batches are image tensors ``[N, C, H, W]`` or lists of sentences; these helpers treat both alike."""

from __future__ import annotations

import torch
from torch import Tensor


def single(example: Tensor | str, device: torch.device) -> Tensor | list[str]:
    """One input as a batch of one: ``[1, C, H, W]`` or ``[sentence]``."""
    return example.unsqueeze(0).to(device) if isinstance(example, Tensor) else [example]


def to_device(data: Tensor | list[str] | str, device: torch.device) -> Tensor | list[str] | str:
    """Images (or one image) moved to ``device``; sentences as they are."""
    return data.to(device) if isinstance(data, Tensor) else data


def input_shape(data: Tensor | list[str]) -> tuple[int, ...] | None:
    """``(C, H, W)`` of a batch of images; ``None`` for sentences."""
    return tuple(data.shape[1:]) if isinstance(data, Tensor) else None


def take(data: Tensor | list[str], index: Tensor, device: torch.device) -> Tensor | list[str]:
    """Rows ``index`` of images ``[N, ...]`` (moved to ``device``) or of a list of sentences."""
    return data[index].to(device) if isinstance(data, Tensor) else [data[i] for i in index.tolist()]


def join(*parts: Tensor | list[str]) -> Tensor | list[str]:
    """Concatenates batches of images (``torch.cat``) or of sentences (list concatenation)."""
    return torch.cat(parts) if isinstance(parts[0], Tensor) else [item for part in parts for item in part]
