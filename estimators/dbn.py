"""The log-likelihood of a deep belief net: the variational lower bound of Salakhutdinov & Murray
(2008), with the top RBM's log Z from AIS (or exact on small models)."""

from __future__ import annotations

import math
import time

import torch

from ebm.dbn import DBN
from estimators.estimate import inherit_untrusted, log_z_parts
from estimators.likelihood import mean_of_examples

__all__ = ["dbn_log_likelihood"]


def dbn_log_likelihood(
    dbn: DBN,
    data,
    log_z,
    samples: int = 100,
    labels=None,
    generator: torch.Generator | None = None,
    batch_size: int = 1_000,
):
    """Mean over the examples of a Monte Carlo estimate of the variational bound

        log p(v) >= B(v) = E_q[log p*_top(h_{L-1}) - log Z_top + sum_l log p(h_{l-1} | h_l)
                              - sum_l log q(h_l | h_{l-1})],

    q the recognition model (``DBN.up``), p*_top(x) = exp(-F(x)) the top RBM's unnormalised
    marginal of h_{L-1} (h_L summed out in closed form, the labels summed over; with ``labels``
    the label block is clamped and the bound is on log p(v, y)), and log Z_top = ``log_z``
    (an ``Estimate`` from AIS on ``dbn.top``, or a number taken as exact). Each example's B(v)
    is the mean of log w over ``samples`` draws from q: an unbiased estimate of B(v), which is
    below log p(v) by KL(q || p(h | v)); with log Z from AIS (low in expectation) it can
    overshoot by AIS's error, which the standard error includes (the spread over examples, which
    holds the Monte Carlo noise of q's draws, and log Z's error, in quadrature).

    ``extras['importance_weighted']``: the mean over examples of log (1/S) sum_s w_s, the
    importance-sampling estimate of log p(v) with q as proposal, low in expectation and at least
    B(v) in expectation: a tighter stochastic lower bound, tending to log p(v) as S grows.
    ``extras['per_example']`` holds B(v) per example (float64)."""
    start = time.perf_counter()
    if isinstance(samples, bool) or not isinstance(samples, int) or samples < 1:
        raise ValueError(f"samples must be an int >= 1, got {samples!r}")
    lz, lz_se, lz_source = log_z_parts(log_z)
    v = dbn.check_data(data)
    y = None if labels is None else dbn.label_block(labels, v.shape[0])
    bounds, weighted = [], []
    rows = max(1, batch_size // samples)
    with torch.no_grad():
        for lo in range(0, v.shape[0], rows):
            chunk = v[lo : lo + rows].repeat_interleave(samples, 0)
            given = None if y is None else y[lo : lo + rows].repeat_interleave(samples, 0)
            log_w = (_log_weights(dbn, chunk, given, generator) - lz).reshape(-1, samples)
            bounds.append(log_w.mean(1))
            weighted.append(torch.logsumexp(log_w, 1) - math.log(samples))
    per_example = torch.cat(bounds)
    importance = torch.cat(weighted)
    quantity = "bound on log p(v, y)" if y is not None else "bound on log p(v)"
    estimate = mean_of_examples(
        per_example,
        lz,
        lz_se,
        "lower_bound",
        f"variational bound, {samples} draws of q an example; log Z: {lz_source}",
        start,
        importance_weighted=float(importance.mean()),
        importance_weighted_per_example=importance,
        samples=samples,
        bound=quantity,
    )
    return inherit_untrusted(estimate, log_z)


def _log_weights(dbn: DBN, v: torch.Tensor, y, generator) -> torch.Tensor:
    """log p*(v, h) - log q(h | v) (float64) for one draw h ~ q(. | v) per row."""
    layers = dbn.up(v, generator)
    top = -dbn.top_free_energy(layers[-1], y)
    return (top + dbn.log_p_directed(layers) - dbn.log_q(layers)).double()
