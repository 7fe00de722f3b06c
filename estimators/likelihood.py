"""Log-likelihood of data under a model, given an estimate of log Z."""

from __future__ import annotations

import math
import time

import torch

from ebm.model import EnergyModel
from estimators.estimate import Estimate, inherit_untrusted, log_z_parts
from estimators.exact import exact_free_energy

__all__ = ["log_likelihood", "mean_of_examples"]


def log_likelihood(model: EnergyModel, data, log_z, batch_size: int = 10_000) -> Estimate:
    """Mean log p(v) = -mean F(v) - log Z over the examples of ``data``, with F the free energy
    summing out the hidden blocks (analytically where they can be summed out together; otherwise
    by ``exact_free_energy``, enumerating some of them per example: small DBMs).

    The standard error combines, in quadrature, the standard error of the mean over examples (the
    test set as a sample of the data distribution) and the standard error of ``log_z`` (an
    ``Estimate`` or a float taken as exact). When log Z comes from AIS, which underestimates it in
    expectation, the log-likelihood is overestimated in expectation. Data are validated like the
    units validate them. Per-example values are in ``extras['per_example']`` (float64). When
    ``log_z`` is an estimate whose interval is not to be trusted (degenerate AIS weights), neither
    is this one: ``trusted`` is False and the printed line says so.
    """
    start = time.perf_counter()
    lz, lz_se, lz_source = log_z_parts(log_z)
    state = model.validate_data(data)
    n = next(iter(state.values())).shape[0]
    if n == 0:
        raise ValueError("no examples")
    values = []
    closed_form = model.can_sum_out([b for b in model.blocks if b not in state])
    with torch.no_grad():
        for lo in range(0, n, batch_size):
            chunk = {b: x[lo : lo + batch_size] for b, x in state.items()}
            if closed_form:
                values.append(-model.free_energy(chunk).double().cpu())
            else:
                values.append(-exact_free_energy(model, chunk).cpu())
    per_example = torch.cat(values) - lz
    estimate = mean_of_examples(per_example, lz, lz_se, "point", f"log Z: {lz_source}", start)
    return inherit_untrusted(estimate, log_z)


def mean_of_examples(
    per_example: torch.Tensor,
    log_z: float,
    log_z_stderr: float,
    kind: str,
    method: str,
    start: float,
    **extras,
) -> Estimate:
    """The ``Estimate`` of a mean log p(v) over examples from per-example values (float64): the
    standard error of the mean over the examples and log Z's standard error, in quadrature."""
    n = per_example.numel()
    se_mean = float(per_example.std(unbiased=True) / math.sqrt(n)) if n > 1 else 0.0
    return Estimate(
        value=float(per_example.mean()),
        kind=kind,
        method=method,
        quantity="mean log p(v)",
        stderr=math.sqrt(se_mean**2 + log_z_stderr**2),
        seconds=time.perf_counter() - start,
        extras={
            "examples": n,
            "stderr_examples": se_mean,
            "stderr_log_z": log_z_stderr,
            "log_z": log_z,
            "per_example": per_example,
            **extras,
        },
    )
