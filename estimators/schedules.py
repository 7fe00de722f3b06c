"""Inverse-temperature schedules 0 = beta_0 < ... < beta_K = 1 for annealing (float64)."""

from __future__ import annotations

import torch
from torch import Tensor

__all__ = [
    "resolve",
    "linear",
    "sigmoid",
    "salakhutdinov_murray",
    "salakhutdinov_murray_scaled",
    "adaptive",
    "step_stds",
    "check",
]


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


def salakhutdinov_murray_scaled(num_betas: int) -> Tensor:
    """The Salakhutdinov & Murray shape (500 : 4,000 : 10,000 betas in [0, .5), [.5, .9), [.9, 1])
    with ``num_betas`` betas in all (the published schedule when num_betas = 14,500)."""
    if num_betas < 3:
        raise ValueError(f"the three-segment schedule needs at least 3 betas, got {num_betas}")
    a = max(1, round(num_betas * 500 / 14500))
    b = max(1, round(num_betas * 4000 / 14500))
    return salakhutdinov_murray((a, b, max(1, num_betas - a - b)))


def sigmoid(num_betas: int, delta: float = 4.0) -> Tensor:
    """The sigmoid schedule of Grosse, Maddison & Salakhutdinov (2013): b_t = sigma(delta (2t/T - 1))
    rescaled to run from 0 to 1, denser at both ends (``delta`` sets how much)."""
    if num_betas < 2:
        raise ValueError(f"a schedule needs at least 2 betas, got {num_betas}")
    if delta <= 0:
        raise ValueError(f"delta must be positive, got {delta}")
    t = torch.linspace(-1.0, 1.0, num_betas, dtype=torch.float64)
    b = torch.sigmoid(delta * t)
    out = (b - b[0]) / (b[-1] - b[0])
    out[0], out[-1] = 0.0, 1.0
    return out


def step_stds(
    path, betas, num_chains: int = 50, generator: torch.Generator | None = None
) -> Tensor:
    """Standard deviation across chains of each AIS log-weight increment
    log f_k(x_k) - log f_{k-1}(x_k) along ``betas`` (``path``: an annealing path such as
    ``estimators.path.GeometricPath``):
    shape (len(betas) - 1,), float64. A schedule is balanced when these are equal."""
    betas = check(betas).tolist()
    out = []
    with torch.no_grad():
        x = path.init(num_chains, generator)
        for k in range(1, len(betas)):
            t = path.terms(x)
            out.append(float((path.log_f(betas[k], t) - path.log_f(betas[k - 1], t)).std()))
            if k < len(betas) - 1:
                x = path.transition(x, betas[k], t, generator)
    return torch.tensor(out, dtype=torch.float64)


def adaptive(
    model,
    num_betas: int,
    base=None,
    pilot_betas: int = 1000,
    pilot_chains: int = 50,
    generator: torch.Generator | None = None,
    path=None,
) -> Tensor:
    """A schedule whose every step contributes the same log-weight variance, from a pilot run.

    A pilot AIS run on ``pilot_betas`` linear betas measures the spread s_k of each increment. A
    step of size d at beta has variance about d^2 g(beta) with s_k = sqrt(g) (pilot step), so
    equal variance per step means equal steps of the cumulative length L(beta) = sum_{k: beta_k <=
    beta} s_k (the thermodynamic length). The ``num_betas`` betas are placed at equal spacing of L
    (linear interpolation; zero-spread pilot steps are floored at 1e-3 of the largest so that the
    schedule stays strictly increasing). The pilot runs on ``path`` (default: the geometric path
    from ``base``; e.g. ``estimators.moment_averaged_path``), the path the schedule is for.
    """
    from estimators.path import GeometricPath

    if num_betas < 2:
        raise ValueError(f"a schedule needs at least 2 betas, got {num_betas}")
    grid = linear(pilot_betas)
    path = GeometricPath(model, base) if path is None else path
    s = step_stds(path, grid, pilot_chains, generator)
    s = s.clamp_min(1e-3 * float(s.max()) if float(s.max()) > 0 else 1.0)
    length = torch.cat([torch.zeros(1, dtype=torch.float64), s.cumsum(0)])
    length = length / length[-1]
    targets = torch.linspace(0.0, 1.0, num_betas, dtype=torch.float64)
    idx = torch.searchsorted(length, targets).clamp(1, len(length) - 1)
    lo, hi = length[idx - 1], length[idx]
    frac = (targets - lo) / (hi - lo)
    out = grid[idx - 1] + frac * (grid[idx] - grid[idx - 1])
    out[0], out[-1] = 0.0, 1.0
    return out


def resolve(betas) -> Tensor:
    """The schedule an estimator's ``betas=`` argument names: None is the default
    (``salakhutdinov_murray()``, 14,500 betas), an int n >= 3 is the default's shape with n betas
    in all (``salakhutdinov_murray_scaled(n)``), anything else is taken as the betas themselves and
    validated (``check``)."""
    if betas is None:
        return check(salakhutdinov_murray())
    if isinstance(betas, bool):
        raise ValueError(f"betas must be a number of betas or a schedule, got {betas!r}")
    if isinstance(betas, int):
        if betas < 3:
            raise ValueError(
                f"betas={betas}: an int is the number of betas of the default schedule's shape "
                f"and must be >= 3; pass a sequence such as [0.0, 1.0] for fewer"
            )
        return check(salakhutdinov_murray_scaled(betas))
    return check(betas)


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
