"""The mean-field (variational) lower bound on log p(v), for models whose hidden blocks cannot be
summed out together (deep Boltzmann machines)."""

from __future__ import annotations

import math
import time

import torch

from ebm.inference import mean_field
from ebm.model import EnergyModel
from estimators.estimate import Estimate

__all__ = ["mean_field_bound"]


def mean_field_bound(
    model: EnergyModel,
    data,
    log_z,
    max_sweeps: int = 100,
    tol: float = 1e-6,
    batch_size: int = 10_000,
) -> Estimate:
    """Mean over the examples of the variational lower bound

        log p(v) >= B(v) = -E(v, mu) + H(q) - log Z,

    where q(h) = prod_b q_b(h_b) is the mean-field posterior (``ebm.inference.mean_field``), mu its
    means (E_q[E(v, h)] = E(v, mu) because the energy is linear in each hidden block) and H(q) its
    entropy. The gap log p(v) - B(v) is KL(q || p(h | v)) >= 0. With an exact log Z this is a true
    lower bound for every example; with log Z from AIS (which underestimates log Z in expectation)
    it can overshoot by AIS's error, which the standard error includes: the standard error of the
    mean over examples and log Z's standard error, combined in quadrature. Per-example bounds are in
    ``extras['per_example']`` (float64); ``extras['converged']`` says whether every batch's mean
    field converged within ``max_sweeps``.
    """
    start = time.perf_counter()
    if isinstance(log_z, Estimate):
        lz, lz_se, lz_source = log_z.value, log_z.stderr, log_z.method
    else:
        lz, lz_se, lz_source = float(log_z), 0.0, "given"
    if not math.isfinite(lz):
        raise ValueError(f"log Z must be finite, got {lz}")
    state = model.validate_data(data)
    n = next(iter(state.values())).shape[0]
    if n == 0:
        raise ValueError("no examples")
    values, converged, sweeps = [], True, 0
    with torch.no_grad():
        for lo in range(0, n, batch_size):
            chunk = {b: x[lo : lo + batch_size] for b, x in state.items()}
            q = mean_field(model, chunk, max_sweeps=max_sweeps, tol=tol)
            converged &= q.converged
            sweeps = max(sweeps, q.sweeps)
            bound = -model.energy({**chunk, **q.means}) + q.entropy(model)
            values.append(bound.double().cpu())
    per_example = torch.cat(values) - lz
    se_mean = float(per_example.std(unbiased=True) / math.sqrt(n)) if n > 1 else 0.0
    return Estimate(
        value=float(per_example.mean()),
        kind="lower_bound",
        method=f"mean field; log Z: {lz_source}",
        quantity="mean log p(v)",
        stderr=math.sqrt(se_mean**2 + lz_se**2),
        seconds=time.perf_counter() - start,
        extras={
            "examples": n,
            "stderr_examples": se_mean,
            "stderr_log_z": lz_se,
            "log_z": lz,
            "per_example": per_example,
            "converged": converged,
            "sweeps": sweeps,
        },
    )
