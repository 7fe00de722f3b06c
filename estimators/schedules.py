"""Inverse-temperature schedules 0 = beta_0 < ... < beta_K = 1 for annealing (float64)."""

from __future__ import annotations

import torch
from torch import Tensor

__all__ = ["linear", "salakhutdinov_murray", "check"]


def linear(num_betas: int) -> Tensor:
    """``num_betas`` equally spaced inverse temperatures from 0 to 1 inclusive."""
    if num_betas < 2:
        raise ValueError(f"a schedule needs at least 2 betas, got {num_betas}")
    return torch.linspace(0.0, 1.0, num_betas, dtype=torch.float64)


def salakhutdinov_murray(counts: tuple[int, int, int] = (500, 4000, 10000)) -> Tensor:
    """The schedule of Salakhutdinov & Murray (2008): ``counts[0]`` betas uniform in [0, 0.5),
    ``counts[1]`` in [0.5, 0.9) and ``counts[2]`` in [0.9, 1] (ending at 1): 14,500 by default.
    Smaller counts keep its shape at lower cost."""
    a, b, c = counts
    if min(counts) < 1:
        raise ValueError(f"every segment needs at least one beta, got {counts}")
    f64 = torch.float64
    return torch.cat(
        [
            torch.linspace(0.0, 0.5, a + 1, dtype=f64)[:-1],
            torch.linspace(0.5, 0.9, b + 1, dtype=f64)[:-1],
            torch.linspace(0.9, 1.0, c, dtype=f64),
        ]
    )


def check(betas) -> Tensor:
    """Validate a schedule: 1-D, at least 2 values, starting at 0, ending at 1, non-decreasing."""
    betas = torch.as_tensor(betas, dtype=torch.float64).flatten()
    if betas.numel() < 2:
        raise ValueError("a schedule needs at least 2 betas")
    if not torch.isfinite(betas).all():
        raise ValueError("betas must be finite")
    if betas[0] != 0 or betas[-1] != 1:
        raise ValueError(
            f"betas must start at 0 and end at 1, got {betas[0]:.4g} ... {betas[-1]:.4g}"
        )
    if (betas.diff() < 0).any():
        raise ValueError("betas must be non-decreasing")
    return betas
