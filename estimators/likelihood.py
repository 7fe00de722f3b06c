"""Log-likelihood of data under a model, given an estimate of log Z."""

from __future__ import annotations

import math
import time

import torch

from ebm.model import EnergyModel
from estimators.estimate import Estimate
from estimators.exact import exact_free_energy

__all__ = ["log_likelihood"]


def log_likelihood(model: EnergyModel, data, log_z, batch_size: int = 10_000) -> Estimate:
    """Mean log p(v) = -mean F(v) - log Z over the examples of ``data``, with F the free energy
    summing out the hidden blocks (analytically where they can be summed out together; otherwise
    by ``exact_free_energy``, enumerating some of them per example: small DBMs).

    The standard error combines, in quadrature, the standard error of the mean over examples (the
    test set as a sample of the data distribution) and the standard error of ``log_z`` (an
    ``Estimate`` or a float taken as exact). When log Z comes from AIS, which underestimates it in
    expectation, the log-likelihood is overestimated in expectation. Data are validated like the
    units validate them. Per-example values are in ``extras['per_example']`` (float64).
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
    values = []
    try:
        model.summable([b for b in model.blocks if b not in state])
        closed_form = True
    except ValueError:
        closed_form = False
    with torch.no_grad():
        for lo in range(0, n, batch_size):
            chunk = {b: x[lo : lo + batch_size] for b, x in state.items()}
            if closed_form:
                values.append(-model.free_energy(chunk).double().cpu())
            else:
                values.append(-exact_free_energy(model, chunk).cpu())
    per_example = torch.cat(values) - lz
    mean = float(per_example.mean())
    se_mean = float(per_example.std(unbiased=True) / math.sqrt(n)) if n > 1 else 0.0
    stderr = math.sqrt(se_mean**2 + lz_se**2)
    return Estimate(
        value=mean,
        kind="point",
        method=f"log Z: {lz_source}",
        quantity="mean log p(v)",
        stderr=stderr,
        seconds=time.perf_counter() - start,
        extras={
            "examples": n,
            "stderr_examples": se_mean,
            "stderr_log_z": lz_se,
            "log_z": lz,
            "per_example": per_example,
        },
    )
