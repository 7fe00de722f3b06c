"""Per-example log p(v) by annealed importance sampling of the clamped model, for models whose
hidden blocks cannot be summed out given v (deep Boltzmann machines)."""

from __future__ import annotations

import math
import statistics
import time

import torch

from ebm.model import EnergyModel
from estimators import schedules
from estimators.ais import ais
from estimators.estimate import (
    Estimate,
    flag_degenerate,
    inherit_untrusted,
    judged_elsewhere,
    log_mean_exp,
    log_z_parts,
)
from estimators.likelihood import mean_of_examples
from estimators.path import GeometricPath

__all__ = ["ais_log_likelihood"]


def ais_log_likelihood(
    model: EnergyModel,
    data,
    log_z,
    chains_per_example: int = 100,
    betas=None,
    examples_per_run: int = 100,
    generator: torch.Generator | None = None,
    progress: bool = True,
    base=None,
    sum_out=None,
) -> Estimate:
    """Mean over the examples of log p(v) = log Z(v) - log Z, where

        Z(v) = sum over the hidden blocks h of exp(-E(v, h))

    is estimated for each example by AIS on the model with v clamped (``GeometricPath(clamp=)``:
    a uniform base over the hidden blocks that cannot be summed out together, the summable set
    that leaves the fewest states summed out; for a 2-layer DBM the larger hidden layer is summed
    out and the other annealed), ``chains_per_example`` chains each,
    ``examples_per_run`` examples at a time in one vectorised run. AIS underestimates each log Z(v)
    in expectation (so this errs low) while an AIS log Z errs low too (so this errs high): with an
    exact log Z it is a stochastic lower bound. Unlike the mean-field bound it has no variational
    gap. The standard error combines the spread of the per-example estimates over the examples
    (which includes their AIS noise) and log Z's standard error, in quadrature.
    ``extras['per_example']`` holds each log p(v) and ``extras['per_example_stderr']`` its AIS
    standard error (delta method); ``extras['min_ess']`` is the smallest ESS of any example's
    weights. ``base`` (a ``FactorizedBase`` over hidden blocks) and ``sum_out`` choose another
    path: for a DBM, ``base=ebm.mean_field_base(model, data, ...)`` restricted to h2 with
    ``sum_out=["h1"]`` anneals h2 from the data's mean-field rates with h1 summed out.
    """
    start = time.perf_counter()
    lz, lz_se, lz_source = log_z_parts(log_z)
    if isinstance(chains_per_example, bool) or chains_per_example < 2:
        raise ValueError(f"chains_per_example must be an int >= 2, got {chains_per_example!r}")
    betas = schedules.resolve(betas)
    state = model.validate_data(data)
    n = next(iter(state.values())).shape[0]
    if n == 0:
        raise ValueError("no examples")
    values, errors, min_ess = [], [], math.inf
    fractions, spreads = [], []
    for lo in range(0, n, examples_per_run):
        rows = {b: x[lo : lo + examples_per_run] for b, x in state.items()}
        m = next(iter(rows.values())).shape[0]
        clamp = {b: x.repeat_interleave(chains_per_example, 0) for b, x in rows.items()}
        path = GeometricPath(model, base, sum_out=sum_out, clamp=clamp)
        with judged_elsewhere():  # the pooled weights mix examples: judged per example
            run = ais(
                model,
                num_chains=m * chains_per_example,
                betas=betas,
                generator=generator,
                progress=progress,
                path=path,
            )
        for w in run.log_weights.reshape(m, chains_per_example):
            lme, se, ess = log_mean_exp(w)
            values.append(path.log_z0 + lme - lz)
            errors.append(se)
            min_ess = min(min_ess, ess)
            fractions.append(ess / chains_per_example)
            spreads.append(float(w.std()))
    estimate = mean_of_examples(
        torch.tensor(values, dtype=torch.float64),
        lz,
        lz_se,
        "point",
        f"AIS per example, {chains_per_example} chains each; log Z: {lz_source}",
        start,
        per_example_stderr=torch.tensor(errors, dtype=torch.float64),
        min_ess=min_ess,
    )
    estimate.num_betas = betas.numel()
    inherit_untrusted(estimate, log_z)
    fraction = sum(fractions) / len(fractions)
    return flag_degenerate(estimate, fraction, statistics.median(spreads), stacklevel=2)
