"""MCMC diagnostics of a scalar statistic traced over several chains: effective sample sizes,
split R-hat, Monte Carlo standard errors (arviz) and the integrated autocorrelation time.

Every function takes an array of shape (chains, draws) (a torch tensor or anything numpy accepts).
They use only the arviz calls common to arviz 0.23 and 1.x (``az.ess``, ``az.rhat``, ``az.mcse``
on a (chains, draws) array, ``prob=`` given for the tail ESS).
"""

from __future__ import annotations

import math
import warnings
from dataclasses import asdict, dataclass

import numpy as np


def _arviz():
    """arviz, imported on first use (it takes seconds to import and most runs never need it)."""
    import arviz

    return arviz


__all__ = [
    "ChainSummary",
    "summarize",
    "ess_bulk",
    "ess_tail",
    "split_rhat",
    "mcse",
    "autocorrelation",
    "integrated_autocorrelation_time",
]

TAIL = (0.05, 0.95)


def _array(x) -> np.ndarray:
    if hasattr(x, "detach"):
        x = x.detach().cpu().double().numpy()
    a = np.asarray(x, dtype=np.float64)
    if a.ndim != 2 or a.shape[0] < 1 or a.shape[1] < 4:
        raise ValueError(f"expected draws of shape (chains, draws >= 4), got {a.shape}")
    if not np.isfinite(a).all():
        raise ValueError("the draws hold a non-finite value")
    return a


def _quiet(fn, *args, **kwargs) -> float:
    with warnings.catch_warnings(), np.errstate(all="ignore"):
        warnings.simplefilter("ignore", RuntimeWarning)
        value = np.asarray(fn(*args, **kwargs), dtype=np.float64)
    if value.size != 1:
        raise ValueError(f"expected one value from arviz, got shape {value.shape}")
    return float(value.reshape(-1)[0])


def ess_bulk(x) -> float:
    """Bulk effective sample size (arviz: rank-normalised, split chains; Vehtari et al. 2021): the
    number of independent draws that would estimate the centre of the distribution as well."""
    return _quiet(_arviz().ess, _array(x), method="bulk")


def ess_tail(x, prob: tuple[float, float] = TAIL) -> float:
    """Tail effective sample size (arviz): the smaller of the ESS of the indicators of the
    ``prob`` quantiles (the 5% and 95% ones by default)."""
    return _quiet(_arviz().ess, _array(x), method="tail", prob=prob)


def split_rhat(x) -> float:
    """Rank-normalised split R-hat (arviz): near 1 when the chains agree with each other and with
    their own halves; above about 1.01 means they have not converged to one distribution. NaN when
    no chain varies."""
    return _quiet(_arviz().rhat, _array(x))


def mcse(x) -> float:
    """Monte Carlo standard error of the mean of the draws (arviz): sd / sqrt(ESS_mean)."""
    return _quiet(_arviz().mcse, _array(x))


def autocorrelation(x, max_lag: int | None = None) -> np.ndarray:
    """rho(k) for k = 0..max_lag, each chain's autocorrelation (arviz, by FFT) averaged over the
    chains that vary (a constant chain has none)."""
    a = _array(x)
    max_lag = a.shape[1] - 1 if max_lag is None else min(int(max_lag), a.shape[1] - 1)
    varying = a.std(1) > 0
    if not varying.any():
        return np.full(max_lag + 1, np.nan)
    with np.errstate(all="ignore"):
        rho = np.stack([_arviz().autocorr(row) for row in a[varying]])
    return rho.mean(0)[: max_lag + 1]


def integrated_autocorrelation_time(x) -> float:
    """tau = 1 + 2 sum_{k>=1} rho(k): the number of draws that carry the information of one
    independent draw, estimated as (chains x draws) / ESS, with ESS arviz's estimate of the
    effective size for the mean (Geyer's initial monotone sequence over the chains' combined
    autocorrelations). For an AR(1) series x_t = phi x_{t-1} + e_t, tau = (1 + phi) / (1 - phi).
    Its relative standard error is about sqrt(2 (2M + 1) / N) for a summation window of M lags
    and N draws (Sokal 1997). Infinite when no chain varies."""
    a = _array(x)
    if not (a.std(1) > 0).any():
        return math.inf
    ess = _quiet(_arviz().ess, a, method="mean")
    return a.size / ess if ess > 0 else math.inf


@dataclass
class ChainSummary:
    """The diagnostics of one statistic: mean, its MCSE, bulk and tail ESS, split R-hat and the
    integrated autocorrelation time, from ``draws`` draws in each of ``chains`` chains.
    ``varying_chains`` counts the chains in which the statistic changed at all."""

    mean: float
    sd: float
    mcse: float
    ess_bulk: float
    ess_tail: float
    rhat: float
    tau: float
    chains: int
    draws: int
    varying_chains: int

    def to_dict(self) -> dict:
        return {
            k: (None if isinstance(v, float) and not math.isfinite(v) else v)
            for k, v in asdict(self).items()
        }


def summarize(x) -> ChainSummary:
    """All the diagnostics of a (chains, draws) trace. When no chain varies, the ESS are 0 and
    R-hat, tau and the MCSE are not finite: nothing can be learned from such a trace."""
    a = _array(x)
    varying = int((a.std(1) > 0).sum())
    if varying == 0:
        nan = math.nan
        return ChainSummary(
            float(a.mean()), float(a.std()), nan, 0.0, 0.0, nan, math.inf, *a.shape, 0
        )
    return ChainSummary(
        mean=float(a.mean()),
        sd=float(a.std()),
        mcse=mcse(a),
        ess_bulk=ess_bulk(a),
        ess_tail=ess_tail(a),
        rhat=split_rhat(a),
        tau=integrated_autocorrelation_time(a),
        chains=a.shape[0],
        draws=a.shape[1],
        varying_chains=varying,
    )
