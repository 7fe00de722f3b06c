"""Resampling for sequential Monte Carlo in independent groups: each group of particles is its
own sampler, so each group's running log Z-hat is unbiased in Z and the groups' spread gives
the error bar (the particles of one group are correlated once resampled)."""

from __future__ import annotations

import math

import torch
from torch import Tensor

__all__ = ["check_groups", "resample_degenerate_groups"]


def check_groups(groups, particles: int, name: str) -> int:
    """``groups`` if it is an int >= 2 splitting ``particles`` (the argument ``name``) into equal
    groups of at least 2, else ValueError naming both."""
    if (
        isinstance(groups, bool)
        or not isinstance(groups, int)
        or groups < 2
        or particles % groups
        or particles // groups < 2
    ):
        raise ValueError(
            f"groups must be an int >= 2 and {name} ({particles}) a multiple of groups with at "
            f"least 2 a group, got groups={groups!r}"
        )
    return groups


def resample_degenerate_groups(
    log_w: Tensor, log_z: Tensor, generator: torch.Generator | None = None, below: float = 0.5
) -> Tensor | None:
    """Multinomial resampling of the groups whose ESS fell below ``below`` x their size.

    ``log_w``: (..., groups, size) float64 log-weights of the particles since their group last
    resampled; ``log_z``: (..., groups) each group's running log Z-hat. In place, a resampled
    group's log_z takes log mean w (so exp(log_z + log mean w) stays an unbiased estimate of the
    ratio of normalisers) and its weights reset to 0. Returns the index (..., groups * size) of
    the particle each position now holds (itself where its group was not resampled), or None
    when no group was."""
    *lead, groups, size = log_w.shape
    norm = torch.logsumexp(log_w, -1, keepdim=True)
    ess = torch.exp(2 * norm[..., 0] - torch.logsumexp(2 * log_w, -1))
    low = ess < below * size
    if not bool(low.any()):
        return None
    log_z += torch.where(low, norm[..., 0] - math.log(size), 0.0)
    cdf = torch.exp(log_w - norm).cumsum(-1)
    u = torch.rand(log_w.shape, generator=generator, dtype=cdf.dtype, device=cdf.device)
    picks = torch.searchsorted(cdf, u * cdf[..., -1:], right=True).clamp_(max=size - 1)
    keep = torch.arange(size, device=cdf.device).expand(log_w.shape)
    picks = torch.where(low[..., None], picks, keep)
    offsets = size * torch.arange(groups, device=cdf.device)[:, None]
    log_w.masked_fill_(low[..., None], 0.0)
    return (picks + offsets).reshape(*lead, groups * size)
