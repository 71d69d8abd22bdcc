"""Reverse-engineering the trigger from one bug report (Mudjacking, Liu et al., USENIX Security 2024, §4.2).

1. Score every pixel of ``x_b`` by occlusion (captum ``Occlusion``): how much covering it moves ``h(x_b)``
   towards ``h(x_r)``, i.e. the drop of ``1 − cos(h(x_b), h(x_r))``; scores are averaged over channels.
2. Cluster the per-pixel scores with k-means (k = 2, scikit-learn).
3. The minority cluster is the trigger mask; the pattern is ``x_b``'s pixels under it.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from captum.attr import Occlusion
from sklearn.cluster import KMeans
from torch import Tensor

from mudjacking.data.bug_report import BugReport
from mudjacking.encoders.base import Encoder
from mudjacking.triggers.trigger import ImageTrigger


@dataclass
class ReverseConfig:
    """Args:
    window: side of the square occlusion window in pixels (the paper's sliding window); 1 = single pixels.
    stride: step of the window.
    baseline: value written into the occluded window, in raw [0, 1] pixel units.
    batch_size: occluded copies of ``x_b`` embedded per forward pass.
    seed: k-means initialisation seed.
    """

    window: int = 3
    stride: int = 1
    baseline: float = 0.0
    batch_size: int = 256
    seed: int = 0

    def __post_init__(self) -> None:
        if self.window < 1 or self.stride < 1 or self.batch_size < 1:
            raise ValueError("window, stride and batch_size must be positive")
        if not 0.0 <= self.baseline <= 1.0:
            raise ValueError(f"baseline {self.baseline} must be a pixel value in [0, 1]")


@dataclass
class TriggerRecovery:
    """What reverse-engineering found.

    Attributes:
        trigger: the recovered trigger (mask = minority k-means cluster, pattern = ``x_b``).
        attribution: per-pixel occlusion scores ``[H, W]`` (higher = more responsible for the bug).
        threshold: the score that separates the two clusters (midpoint of their centres).
        bug_distance: ``1 − cos(h(x_b), h(x_r))`` before any occlusion.
    """

    trigger: ImageTrigger
    attribution: Tensor
    threshold: float
    bug_distance: float


def check_modalities(encoder: Encoder, bug: BugReport, supported: tuple[str, ...] = ("image", "text")) -> None:
    """Raises ``ValueError`` when the bug report and the encoder disagree, or the modality is not supported here."""
    if bug.modality != encoder.modality:
        raise ValueError(
            f"the bug report is {bug.modality} but the model encodes {encoder.modality}; "
            "report the bug against the model it came from"
        )
    if encoder.modality not in supported:
        raise ValueError(f"this step supports {' and '.join(supported)} encoders, not {encoder.modality}")


def occlusion_attribution(encoder: Encoder, bug: BugReport, config: ReverseConfig) -> tuple[Tensor, float]:
    """Per-pixel occlusion scores of ``1 − cos(h(x_b), h(x_r))``; returns (``[H, W]``, the unoccluded distance).

    ``x_b`` is padded by ``window − 1`` pixels before occlusion and cropped back inside the scored function, so
    every pixel, at the border too, is covered by the same number of windows; otherwise border pixels average
    fewer windows and a trigger in a corner bleeds into the image edge.
    """
    encoder.eval()
    device = encoder.device
    pad = config.window - 1
    height, width = bug.bug_input.shape[-2:]
    x_b = F.pad(bug.bug_input.unsqueeze(0).to(device), (pad, pad, pad, pad), value=config.baseline)
    with torch.no_grad():
        reference = F.normalize(encoder(bug.reference_input.unsqueeze(0).to(device)), dim=-1)

        def distance_to_reference(padded: Tensor) -> Tensor:
            images = padded[..., pad : pad + height, pad : pad + width]
            return 1 - (F.normalize(encoder(images), dim=-1) * reference).sum(-1)

        channels = x_b.shape[1]
        attribution = Occlusion(distance_to_reference).attribute(
            x_b,
            sliding_window_shapes=(channels, config.window, config.window),
            strides=(channels, config.stride, config.stride),
            baselines=config.baseline,
            perturbations_per_eval=config.batch_size,
        )
        distance = float(distance_to_reference(x_b).item())
    return attribution[0, :, pad : pad + height, pad : pad + width].mean(0).cpu(), distance


def split_scores(scores: Tensor, seed: int = 0) -> tuple[Tensor, float]:
    """k-means (k = 2) on the scores; returns (mask of the minority cluster, threshold between the centres)."""
    values = scores.reshape(-1, 1).double().numpy()
    if np.ptp(values) == 0:
        return torch.zeros_like(scores), float(values[0, 0])
    kmeans = KMeans(n_clusters=2, n_init=10, random_state=seed).fit(values)
    counts = np.bincount(kmeans.labels_, minlength=2)
    minority = int(np.argmin(counts))
    mask = torch.from_numpy((kmeans.labels_ == minority).reshape(scores.shape).astype(np.float32))
    return mask, float(kmeans.cluster_centers_.mean())


def reverse_engineer_trigger(encoder: Encoder, bug: BugReport, config: ReverseConfig | None = None) -> TriggerRecovery:
    """Recovers the trigger behind ``bug`` from the (backdoored) ``encoder``.

    Args:
        encoder: the model the bug was reported against.
        bug: ``x_b`` ``[C, H, W]`` and ``x_r`` of the same true class.
        config: occlusion window, baseline and k-means seed.

    Returns:
        the recovered trigger with its attribution map ``[H, W]``.
    """
    config = config or ReverseConfig()
    check_modalities(encoder, bug, supported=("image",))
    attribution, distance = occlusion_attribution(encoder, bug, config)
    mask, threshold = split_scores(attribution, config.seed)
    trigger = ImageTrigger(mask, bug.bug_input.clone())
    return TriggerRecovery(trigger, attribution, threshold, distance)
