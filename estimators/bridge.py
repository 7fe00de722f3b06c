"""Two-sided estimate of log Z: the Bennett acceptance ratio between forward and reverse AIS."""

from __future__ import annotations

import math
import time

import torch
from torch import Tensor

from ebm.base import FactorizedBase
from ebm.model import EnergyModel
from estimators import schedules
from estimators.ais import ais
from estimators.estimate import (
    Estimate,
    flag_degenerate,
    judged_elsewhere,
    log_mean_exp,
    log_weight_diagnostics,
)
from estimators.exact import exact_samples
from estimators.path import GeometricPath
from estimators.reverse import reverse_log_weights

__all__ = ["bridge", "bennett"]


def bennett(forward: Tensor, reverse: Tensor, tol: float = 1e-12) -> tuple[float, float]:
    """The Bennett acceptance ratio estimate of D = log(Z_1 / Z_0) and its asymptotic standard error.

    ``forward``: log-weights of chains from p_0 to p_1 (E[e^W_F] = Z_1/Z_0); ``reverse``: log-weights
    of chains from p_1 to p_0 (E[e^W_R] = Z_0/Z_1). With M = log(n_F / n_R) and the logistic
    f(x) = 1 / (1 + e^x), D solves

        sum_i f(M - W_F,i + D) = sum_j f(-M - W_R,j - D),

    the minimum-variance combination of the two directions (Bennett 1976; Shirts et al. 2003),
    found by bisection in float64. The variance is Shirts et al.'s
    (1/N) [<1 / (2 + 2 cosh(M - W + D))>^-1 - N/n_F - N/n_R] over all N = n_F + n_R work values
    (W = W_F for forward, W = -W_R for reverse chains).
    """
    wf, wr = forward.double().flatten(), reverse.double().flatten()
    nf, nr = wf.numel(), wr.numel()
    if nf < 2 or nr < 2:
        raise ValueError("the Bennett ratio needs at least two chains in each direction")
    m = math.log(nf / nr)

    def gap(d: float) -> float:
        return float(torch.sigmoid(-(m - wf + d)).sum() - torch.sigmoid(-(-m - wr - d)).sum())

    lo = float(torch.minimum(wf.min(), -wr.max())) - 50.0
    hi = float(torch.maximum(wf.max(), -wr.min())) + 50.0
    for _ in range(200):  # gap decreases in d
        mid = 0.5 * (lo + hi)
        if gap(mid) > 0:
            lo = mid
        else:
            hi = mid
        if hi - lo < tol:
            break
    d = 0.5 * (lo + hi)
    work = torch.cat([wf, -wr])
    n = nf + nr
    x = m - work + d
    inner = 1.0 / (2.0 + 2.0 * torch.cosh(x.clamp(-700, 700)))
    var = (1.0 / float(inner.mean()) - n / nf - n / nr) / n
    return d, math.sqrt(max(var, 0.0))


def bridge(
    model: EnergyModel,
    num_chains: int = 100,
    reverse_chains: int | None = None,
    betas=None,
    base: FactorizedBase | None = None,
    generator: torch.Generator | None = None,
    samples: dict | None = None,
    progress: bool = True,
) -> Estimate:
    """log Z from forward and reverse annealing combined by the Bennett acceptance ratio.

    Forward chains start from exact draws of the base and give log-weights with E[w] = Z / Z_0
    (``ais``); reverse chains start from draws of the model, anneal back along the same path and
    give log-weights with E[w] = Z_0 / Z. Their Bennett combination (``bennett``) has lower
    variance than either direction alone. The reverse direction needs draws from the model:
    ``samples`` (a state over the chain blocks, e.g. from long Gibbs runs: then the estimate is
    only as good as the samples) or, by default, exact draws for enumerable models
    (``exact_samples``). Each direction alone is reported in ``extras``: the forward log Z is a
    stochastic lower bound and the reverse one (log Z_0 - log mean w_R) a stochastic upper bound
    when the samples are exact. Each direction is marked untrusted when its weights are
    degenerate (``Estimate.untrusted``); the combination is marked, with a
    ``DegenerateWeightsWarning``, when both directions are.
    """
    start = time.perf_counter()
    betas = schedules.resolve(betas)
    reverse_chains = num_chains if reverse_chains is None else reverse_chains
    with judged_elsewhere():  # each direction is judged below, the combination last
        fwd = ais(
            model,
            num_chains=num_chains,
            betas=betas,
            base=base,
            generator=generator,
            progress=progress,
        )
    path = GeometricPath(model, base)
    if samples is None:
        samples = exact_samples(model, reverse_chains, generator)
        exact = True
    else:
        samples = model.validate_data(samples)
        exact = False
    x = {b: samples[b] for b in path.chain_blocks}
    with torch.no_grad():
        rev = reverse_log_weights(path, x, betas.tolist(), generator).cpu()
    d, se = bennett(fwd.log_weights, rev)
    rev_value, rev_se, rev_ess = log_mean_exp(rev)
    reverse_estimate = Estimate(
        value=path.log_z0 - rev_value,
        kind="upper_bound" if exact else "point",
        method="reverse AIS",
        stderr=rev_se,
        ess=rev_ess,
        log_weights=rev,
        num_chains=rev.numel(),
        num_betas=betas.numel(),
    )
    flag_degenerate(reverse_estimate, *log_weight_diagnostics(rev), warn=False)
    estimate = Estimate(
        value=path.log_z0 + d,
        kind="point",
        method="BAR",
        stderr=se,
        num_chains=num_chains + rev.numel(),
        num_betas=betas.numel(),
        seconds=time.perf_counter() - start,
        extras={
            "forward": fwd,
            "reverse": reverse_estimate,
            "exact_samples": exact,
            "log_z_base": path.log_z0,
        },
    )
    if not (fwd.trusted or reverse_estimate.trusted):  # no direction overlaps the other well
        worst = min((log_weight_diagnostics(w) for w in (fwd.log_weights, rev)), key=lambda d: d[0])
        flag_degenerate(estimate, *worst, stacklevel=3)
    return estimate
