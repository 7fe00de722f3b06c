"""The mean-field (variational) lower bound on log p(v), for models whose hidden blocks cannot be
summed out together (deep Boltzmann machines)."""

from __future__ import annotations

import time

import torch

from ebm.inference import mean_field
from ebm.model import EnergyModel
from estimators.estimate import Estimate, inherit_untrusted, log_z_parts
from estimators.likelihood import mean_of_examples

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
    entropy (``MeanField.elbo``; a hidden count block's base energy enters through
    A(lambda) - lambda . mu). The gap log p(v) - B(v) is KL(q || p(h | v)) >= 0. With an exact
    log Z this is a true
    lower bound for every example; with log Z from AIS (which underestimates log Z in expectation)
    it can overshoot by AIS's error, which the standard error includes: the standard error of the
    mean over examples and log Z's standard error, combined in quadrature. Per-example bounds are in
    ``extras['per_example']`` (float64); ``extras['converged']`` says whether every batch's mean
    field converged within ``max_sweeps``.
    """
    start = time.perf_counter()
    lz, lz_se, lz_source = log_z_parts(log_z)
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
            bound = q.elbo(model, chunk)
            values.append(bound.double().cpu())
    per_example = torch.cat(values) - lz
    estimate = mean_of_examples(
        per_example,
        lz,
        lz_se,
        "lower_bound",
        f"mean field; log Z: {lz_source}",
        start,
        converged=converged,
        sweeps=sweeps,
    )
    return inherit_untrusted(estimate, log_z)
