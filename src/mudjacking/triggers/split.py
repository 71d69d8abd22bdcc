"""Cutting attribution scores into trigger and the rest: k-means with k = 2 (scikit-learn), minority = trigger."""

from __future__ import annotations

import numpy as np
import torch
from sklearn.cluster import KMeans
from torch import Tensor


def split_scores(scores: Tensor, seed: int = 0) -> tuple[Tensor, float]:
    """k-means (k = 2) on the scores; returns (mask of the minority cluster, threshold between the centres).

    Flat scores (every value equal: an attribution that saw nothing) give an empty mask, which callers must treat
    as "nothing found", never as a trigger.
    """
    values = scores.reshape(-1, 1).double().numpy()
    if np.ptp(values) == 0:
        return torch.zeros_like(scores), float(values[0, 0])
    kmeans = _two_means(values, seed)
    counts = np.bincount(kmeans.labels_, minlength=2)
    minority = int(np.argmin(counts))
    mask = torch.from_numpy((kmeans.labels_ == minority).reshape(scores.shape).astype(np.float32))
    return mask, float(kmeans.cluster_centers_.mean())


def narrowed(scores: Tensor, mask: Tensor, max_pixels: int, seed: int = 0, rounds: int = 3) -> Tensor:
    """``mask`` cut again (k-means, k = 2, on the scores under it; the higher cluster kept) until it holds at most
    ``max_pixels``, for at most ``rounds`` cuts: a map whose first cut marks a wide region around its peak."""
    for _ in range(rounds):
        inside = mask.bool()
        if int(inside.sum()) <= max_pixels:
            break
        values = scores[inside].reshape(-1, 1).double().numpy()
        if np.ptp(values) == 0:
            break
        kmeans = _two_means(values, seed)
        higher = int(np.argmax(kmeans.cluster_centers_.ravel()))
        keep = torch.zeros_like(mask)
        keep[inside] = torch.from_numpy((kmeans.labels_ == higher).astype(np.float32))
        mask = keep
    return mask


def _two_means(values: np.ndarray, seed: int) -> KMeans:
    return KMeans(n_clusters=2, n_init=10, random_state=seed).fit(values)
