"""Mudjacking's three loss terms (and an attack's distribution distance) as pure functions of embeddings (no model
calls, no I/O).

``s`` is the cosine similarity of normalised embeddings. With ``h`` the original and ``h'`` the patched model:

- effectiveness    ``L_e = −s(h'(x_b), h'(x_r))``                      — the reported bug is fixed;
- locality         ``L_l = −mean_x s(h'(x), h(x))``, x ∈ D ∪ {x_r}      — nothing else changes;
- generalizability ``L_g = −mean_x s(h'(x ⊕ t), h'(x))``, x ∈ D ∪ {x_r} — every input with the trigger is fixed;
- total            ``L = L_l + λ_g·L_g + λ_e·L_e``.

Optionally ``L_l`` also carries ``w · mean_x ‖(ĥ'(x) − ĥ(x))·W‖² / d`` (``ĥ`` the normalised embedding, ``W`` the
whitening of D's original normalised embeddings, ``d`` their dimension): the same change measured per direction
against how much D itself varies there, so a move along a direction D hardly spans is not free.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor


def cosine(a: Tensor, b: Tensor) -> Tensor:
    """Row-wise cosine similarity of ``[N, D]`` and ``[N, D]`` (or broadcastable) -> ``[N]``."""
    return F.cosine_similarity(a, b, dim=-1, eps=1e-8)


def effectiveness_loss(bug_embedding: Tensor, reference_embedding: Tensor) -> Tensor:
    """``−s(h'(x_b), h'(x_r))``; inputs ``[D]`` or ``[N, D]`` (averaged over N) -> scalar."""
    return -cosine(bug_embedding, reference_embedding).mean()


def locality_loss(patched: Tensor, original: Tensor) -> Tensor:
    """``−mean s(h'(x), h(x))`` over the rows of ``[N, D]``; ``original`` should carry no gradient."""
    return -cosine(patched, original).mean()


def whitening(original: Tensor, ridge: float = 1e-4) -> Tensor:
    """``[d, d]`` ``W`` with ``cov(ĥ(D))·W`` whitened: ``ĥ(D)·W`` has (nearly) identity covariance. ``ridge`` is
    added to every eigenvalue, so directions D never spans are weighted by ``1/sqrt(ridge)``, not infinity."""
    normalised = F.normalize(original.detach().float(), dim=-1)
    covariance = torch.cov(normalised.T) + ridge * torch.eye(normalised.shape[1], device=normalised.device)
    eigenvalues, eigenvectors = torch.linalg.eigh(covariance)
    return eigenvectors / eigenvalues.clamp_min(ridge).sqrt()


def whitened_locality_loss(patched: Tensor, original: Tensor, whitener: Tensor) -> Tensor:
    """``mean ‖(ĥ'(x) − ĥ(x))·W‖² / d`` over the rows of ``[N, d]`` (0 when nothing moved)."""
    change = F.normalize(patched, dim=-1) - F.normalize(original, dim=-1)
    return (change @ whitener).pow(2).sum(-1).mean() / whitener.shape[1]


def generalizability_loss(patched_triggered: Tensor, patched_clean: Tensor) -> Tensor:
    """``−mean s(h'(x ⊕ t), h'(x))`` over the rows of ``[N, D]``."""
    return -cosine(patched_triggered, patched_clean).mean()


def weighted_total(
    locality: Tensor,
    generalizability: Tensor,
    effectiveness: Tensor,
    lambda_gen: float = 1.0,
    lambda_eff: float = 1.0,
    use_locality: bool = True,
) -> Tensor:
    """``L = L_l + λ_g·L_g + λ_e·L_e``; a term of weight 0 is left out, so it may be NaN (not computed)."""
    weighted = [(float(use_locality), locality), (lambda_gen, generalizability), (lambda_eff, effectiveness)]
    return sum(weight * term for weight, term in weighted if weight)


def random_directions(dimension: int, count: int, seed: int = 0) -> Tensor:
    """``count`` random unit vectors ``[dimension, count]``, the projections of :func:`sliced_wasserstein`."""
    directions = torch.randn(dimension, count, generator=torch.Generator().manual_seed(seed))
    return directions / directions.norm(dim=0, keepdim=True)


def sliced_wasserstein(a: Tensor, b: Tensor, directions: Tensor) -> Tensor:
    """Squared sliced Wasserstein-2 distance between the point clouds ``a`` and ``b`` (``[N, D]`` each, same N):
    along each direction the sorted projections are matched one to one."""
    projected_a = torch.sort(a @ directions, dim=0).values
    projected_b = torch.sort(b @ directions, dim=0).values
    return (projected_a - projected_b).pow(2).mean()
