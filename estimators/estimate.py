"""The one record every estimator returns."""

from __future__ import annotations

import math
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import Tensor

__all__ = [
    "Estimate",
    "KINDS",
    "DegenerateWeightsWarning",
    "MIN_ESS_FRACTION",
    "MAX_LOG_WEIGHT_SD",
    "weight_degeneracy",
    "flag_degenerate",
    "judged_elsewhere",
    "inherit_untrusted",
    "log_weight_diagnostics",
    "log_mean_exp",
    "log_z_parts",
]

#: below this ESS / chains the importance weights are too concentrated to trust the interval
MIN_ESS_FRACTION = 0.1
#: above this standard deviation of the log-weights (nats), likewise: for log-normal weights
#: ESS / n -> exp(-sd^2), so 1.5 is the same bar as 0.1, and unlike the ESS it does not
#: saturate at 1 / n when there are few chains
MAX_LOG_WEIGHT_SD = 1.5


class DegenerateWeightsWarning(UserWarning):
    """The importance weights of an AIS, RAISE or bridge estimate are too concentrated for its
    delta-method standard error, and so its interval, to mean anything."""


#: what an estimate is: an exact value, a point estimate with a standard error, a (stochastic)
#: bound, or a bracket
KINDS = ("exact", "point", "lower_bound", "upper_bound", "bracket")


@dataclass
class Estimate:
    """value, kind, standard error, confidence interval, ESS of the weights, the raw log-weights
    (float64) where there are any, chains, temperatures and wall-clock seconds.

    ``str(estimate)`` is one readable line, e.g.
    ``log Z = 21.4307 ± 0.0123 (AIS, 100 chains x 14,500 betas, ESS 61.2, 95% CI [21.41, 21.45], 3.2 s)``.
    """

    value: float
    kind: str
    method: str
    quantity: str = "log Z"
    stderr: float = 0.0
    ci: tuple[float, float] | None = None
    ess: float | None = None
    log_weights: Tensor | None = None
    num_chains: int | None = None
    num_betas: int | None = None
    seconds: float = 0.0
    confidence: float = 0.95
    extras: dict[str, Any] = field(default_factory=dict)
    #: why the interval is not to be trusted (degenerate weights), or None
    untrusted: str | None = None

    @property
    def trusted(self) -> bool:
        """False when the estimator found its interval not to be trusted (see ``untrusted``)."""
        return self.untrusted is None

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise ValueError(f"kind must be one of {KINDS}, got {self.kind!r}")
        if self.ci is None:
            z = _normal_quantile(0.5 + self.confidence / 2)
            self.ci = (self.value - z * self.stderr, self.value + z * self.stderr)

    def __float__(self) -> float:
        return float(self.value)

    def __str__(self) -> str:
        parts = [self.method]
        if self.num_chains is not None:
            run = f"{self.num_chains:,} chains"
            if self.num_betas is not None:
                run += f" x {self.num_betas:,} betas"
            parts.append(run)
        if "states" in self.extras:
            parts.append(f"{self.extras['states']:,} states enumerated")
        if "examples" in self.extras:
            parts.append(f"{self.extras['examples']:,} examples")
        if self.ess is not None:
            parts.append(f"ESS {self.ess:.1f}")
        if self.kind != "exact":
            lo, hi = self.ci
            parts.append(f"{self.confidence:.0%} CI [{lo:.4f}, {hi:.4f}]")
        parts.append(f"{self.seconds:.1f} s")
        if self.kind in ("lower_bound", "upper_bound", "bracket"):
            parts.insert(1, self.kind.replace("_", " "))
        if self.kind == "bracket" and "lower" in self.extras and "upper" in self.extras:
            lo, hi = self.extras["lower"], self.extras["upper"]
            return (
                f"{self.quantity} in [{lo.value:.4f} ± {lo.stderr:.4f}, {hi.value:.4f} ± "
                f"{hi.stderr:.4f}] ({', '.join(parts)})"
            )
        error = "" if self.kind == "exact" else f" ± {self.stderr:.4f}"
        line = f"{self.quantity} = {self.value:.4f}{error} ({', '.join(parts)})"
        return line + self.untrusted_note()

    def untrusted_note(self) -> str:
        """'' or, when the interval is not to be trusted, a note saying so and why."""
        return "" if self.trusted else f" [interval NOT to be trusted: {self.untrusted}]"


def _normal_quantile(p: float) -> float:
    return float(torch.distributions.Normal(0.0, 1.0).icdf(torch.tensor(p, dtype=torch.float64)))


def log_mean_exp(log_w: Tensor) -> tuple[float, float, float]:
    """For log-weights log w_i (float64): log mean w, its delta-method standard error, and the ESS.

    With r_i = w_i / mean(w), var(log mean w) ~= var(r) / n (delta method), and
    ESS = (sum w)^2 / sum w^2 = n / mean(r^2). All in log-space; nothing overflows.
    """
    log_w = log_w.double()
    n = log_w.numel()
    if n == 0:
        raise ValueError("no log-weights")
    lme = torch.logsumexp(log_w, 0) - math.log(n)
    r = torch.exp(log_w - lme)
    stderr = float(r.std(unbiased=True) / math.sqrt(n)) if n > 1 else math.inf
    ess = float(n / (r**2).mean())
    return float(lme), stderr, ess


def weight_degeneracy(ess_fraction: float, log_weight_sd: float) -> str | None:
    """Why importance weights are too concentrated to trust a delta-method interval, or None.

    Degenerate when ESS / chains < ``MIN_ESS_FRACTION`` or sd(log w) > ``MAX_LOG_WEIGHT_SD``: the
    mean of the weights is then carried by a few chains, its sample variance underestimates the
    true one, and log Z-hat sits below log Z by more than its standard error says (by about
    sd(log w)^2 / 2 for log-normal weights).
    """
    reasons = []
    if ess_fraction < MIN_ESS_FRACTION:
        reasons.append(f"ESS is {ess_fraction:.1%} of the chains (below {MIN_ESS_FRACTION:.0%})")
    if log_weight_sd > MAX_LOG_WEIGHT_SD:
        reasons.append(
            f"the log-weights spread over sd {log_weight_sd:.2f} nats (above {MAX_LOG_WEIGHT_SD})"
        )
    return "; ".join(reasons) or None


@contextmanager
def judged_elsewhere() -> Iterator[None]:
    """Silence ``DegenerateWeightsWarning`` inside: for a run whose weights are judged by its
    caller (pooled groups, shards, one direction of a bridge), not as a whole."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DegenerateWeightsWarning)
        yield


def flag_degenerate(
    estimate: Estimate,
    ess_fraction: float,
    log_weight_sd: float,
    stacklevel: int = 3,
    warn: bool = True,
) -> Estimate:
    """Mark ``estimate`` untrusted and warn (``DegenerateWeightsWarning``, unless ``warn`` is
    false) when its weights are degenerate (``weight_degeneracy``); returns it."""
    reason = weight_degeneracy(ess_fraction, log_weight_sd)
    if reason is not None:
        estimate.untrusted = (
            f"{reason}; use more betas, an adaptive schedule (estimators.schedules.adaptive), "
            f"more chains or a better base"
        )
    if reason is not None and warn:
        warnings.warn(
            f"{estimate.method}: degenerate importance weights, {reason}: the estimate "
            f"{estimate.value:.4f} ± {estimate.stderr:.4f} and its interval are not to be trusted",
            DegenerateWeightsWarning,
            stacklevel=stacklevel,
        )
    return estimate


def log_weight_diagnostics(log_w: Tensor) -> tuple[float, float]:
    """(ESS / n, sd of the log-weights) of float64 log-weights (sd 0 for a single weight)."""
    _, _, ess = log_mean_exp(log_w)
    n = log_w.numel()
    sd = float(log_w.double().std()) if n > 1 else 0.0
    return ess / n, sd


def inherit_untrusted(estimate: Estimate, log_z: Estimate | float) -> Estimate:
    """Mark ``estimate`` untrusted when the ``log_z`` it was computed from is; returns it."""
    if isinstance(log_z, Estimate) and not log_z.trusted:
        estimate.untrusted = f"log Z's interval is not to be trusted: {log_z.untrusted}"
    return estimate


def log_z_parts(log_z: Estimate | float) -> tuple[float, float, str]:
    """(value, standard error, source) of a log Z given as an ``Estimate`` or a number (taken as
    exact); refuses a value that is not finite. Shared by the log-likelihood estimators."""
    if isinstance(log_z, Estimate):
        value, stderr, source = log_z.value, log_z.stderr, log_z.method
    else:
        value, stderr, source = float(log_z), 0.0, "given"
    if not math.isfinite(value):
        raise ValueError(f"log Z must be finite, got {value}")
    return value, stderr, source
