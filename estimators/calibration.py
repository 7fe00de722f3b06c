"""How often an estimator's confidence interval covers the truth, on models with a known log Z."""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from ebm.base import FactorizedBase
from ebm.model import EnergyModel
from estimators.ais import ais
from estimators.estimate import (
    judged_elsewhere,
    log_mean_exp,
    log_weight_diagnostics,
    weight_degeneracy,
)
from estimators.exact import exact_log_z

__all__ = ["Coverage", "ais_coverage"]


@dataclass
class Coverage:
    """Results of ``repeats`` independent estimates against the exact value: the fraction whose
    ``confidence`` interval covered it, the mean error, and the mean and spread of the z-scores
    (estimate - truth) / stderr (0 and 1 for a calibrated error bar), the root-mean-square
    error, the number of estimates whose weights were degenerate (``weight_degeneracy``: they
    would have been marked untrusted) and the smallest ESS fraction among them."""

    repeats: int
    covered: int
    confidence: float
    mean_error: float
    mean_z: float
    sd_z: float
    mean_stderr: float
    rmse: float
    degenerate: int = 0
    min_ess_fraction: float = 1.0

    @property
    def rate(self) -> float:
        return self.covered / self.repeats

    def __str__(self) -> str:
        return (
            f"{self.rate:.1%} of {self.repeats} {self.confidence:.0%} intervals cover the exact "
            f"log Z; mean error {self.mean_error:+.4f} (mean stderr {self.mean_stderr:.4f}), "
            f"z mean {self.mean_z:+.2f}, z sd {self.sd_z:.2f}"
        )


def ais_coverage(
    model: EnergyModel,
    repeats: int = 200,
    num_chains: int = 100,
    betas=None,
    base: FactorizedBase | None = None,
    generator: torch.Generator | None = None,
    confidence: float = 0.95,
    exact: float | None = None,
    progress: bool = False,
    path=None,
) -> Coverage:
    """Coverage of AIS's confidence interval for ``repeats`` independent runs of ``num_chains``
    chains. AIS chains are independent, so one run of repeats x num_chains chains, cut into
    ``repeats`` groups, gives ``repeats`` independent estimates at the cost of one vectorised run.
    ``exact`` defaults to ``exact_log_z(model)``; ``path`` is passed on to ``ais``."""
    truth = exact_log_z(model).value if exact is None else float(exact)
    with judged_elsewhere():  # the pooled run is one of many groups: judged per group
        run = ais(
            model,
            num_chains=repeats * num_chains,
            betas=betas,
            base=base,
            generator=generator,
            progress=progress,
            path=path,
        )
    z_crit = float(torch.distributions.Normal(0.0, 1.0).icdf(torch.tensor(0.5 + confidence / 2)))
    errors, zs, ses, fractions, degenerate = [], [], [], [], 0
    for group in run.log_weights.reshape(repeats, num_chains):
        value, se, _ = log_mean_exp(group)
        fraction, spread = log_weight_diagnostics(group)
        fractions.append(fraction)
        degenerate += weight_degeneracy(fraction, spread) is not None
        value += run.extras["log_z_base"]
        errors.append(value - truth)
        zs.append((value - truth) / se if se > 0 else math.inf)
        ses.append(se)
    z = torch.tensor(zs, dtype=torch.float64)
    return Coverage(
        repeats=repeats,
        covered=int((z.abs() <= z_crit).sum()),
        confidence=confidence,
        mean_error=sum(errors) / repeats,
        mean_z=float(z.mean()),
        sd_z=float(z.std()),
        mean_stderr=sum(ses) / repeats,
        rmse=math.sqrt(sum(e * e for e in errors) / repeats),
        degenerate=degenerate,
        min_ess_fraction=min(fractions),
    )
