"""Annealed importance sampling (Neal 2001; Salakhutdinov & Murray 2008) on the geometric path."""

from __future__ import annotations

import time

import torch
from tqdm.auto import tqdm

from ebm.base import FactorizedBase
from ebm.model import EnergyModel
from estimators import schedules
from estimators.estimate import Estimate, log_mean_exp

__all__ = ["ais", "default_sum_out"]


def default_sum_out(model: EnergyModel, base: FactorizedBase) -> list[str]:
    """The hidden blocks (those the base does not cover) when they can be summed out together,
    else none (then the log-weights use the energy of the full state)."""
    hidden = [b for b in model.blocks if b not in base.blocks]
    try:
        model.summable(hidden)
    except ValueError:
        return []
    return hidden


def ais(
    model: EnergyModel,
    num_chains: int = 100,
    betas=None,
    base: FactorizedBase | None = None,
    generator: torch.Generator | None = None,
    sum_out=None,
    progress: bool = True,
) -> Estimate:
    """Estimate log Z by annealed importance sampling along the geometric path

        p_k*(x) = p_A*(x_A)^(1 - beta_k) p*(x)^beta_k,   i.e.  E_k(x) = (1 - beta_k) E_A(x_A) + beta_k E(x),

    from a factorised base A over the visible blocks (default: uniform; ``ebm.base_rate`` gives the
    base-rate model) to the model at beta = 1. Blocks not covered by the base start uniform. The
    blocks S (``sum_out``, default: the hidden blocks when summable together) are summed out of the
    weights: log p_k*(x_-S) = -(1-beta_k) E_A - beta_k E_rest + sum_{u in S} A_u(beta_k eta_u), which
    for an RBM is the standard path of Salakhutdinov & Murray. Each chain starts from an exact draw
    of p_0, and at every intermediate beta_k takes one block Gibbs sweep that leaves p_k invariant
    (S drawn first, then the other colour classes), accumulating in float64

        log w = sum_k [log p_k*(x_k) - log p_{k-1}*(x_k)].

    log Z-hat = log Z_0 + log mean w. E[w] = Z / Z_0, so E[log Z-hat] <= log Z (a stochastic lower
    bound; the bias shrinks with more betas and chains). The standard error is the delta-method
    one, sd(w) / (sqrt(n) mean(w)), and the 95% interval is value +- 1.96 stderr; the ESS of the
    weights is reported next to it: a small ESS means the error bar itself is unreliable.

    Requires units without a base energy (discrete units) in every block.
    """
    start = time.perf_counter()
    if isinstance(num_chains, bool) or not isinstance(num_chains, int) or num_chains < 2:
        raise ValueError(
            f"num_chains must be an int >= 2 (a standard error needs two), got {num_chains!r}"
        )
    betas = schedules.check(schedules.salakhutdinov_murray() if betas is None else betas)
    for b, u in model.units.items():
        if u.has_base_energy:
            raise ValueError(
                f"AIS on the geometric path here needs discrete units; block {b!r} is "
                f"{type(u).__name__}"
            )
    base = FactorizedBase.uniform(model) if base is None else base
    if not isinstance(base, FactorizedBase):
        raise TypeError("base must be an ebm.FactorizedBase (e.g. ebm.base_rate(model, data))")
    sum_out = default_sum_out(model, base) if sum_out is None else list(sum_out)
    overlap = set(sum_out) & set(base.blocks)
    if overlap:
        raise ValueError(
            f"blocks {sorted(overlap)} are covered by the base and cannot be summed out"
        )
    model.summable(sum_out)

    device, dtype = model.device, model.dtype
    base_nat = {b: n.to(device=device, dtype=dtype) for b, n in base.natural.items()}
    units = model.units
    # log Z_0: the base over its blocks, every other block uniform (zero natural parameters)
    log_z0 = base.log_z() + sum(
        float(units[b].log_partition(torch.zeros((1, *units[b].shape), dtype=torch.float64)))
        for b in model.blocks
        if b not in base.blocks
    )
    schedule = [[b for b in group if b not in sum_out] for group in model.schedule]
    schedule = [g for g in schedule if g]

    def log_p_star(beta: float, e_rest, eta, e_base):
        out = -(1.0 - beta) * e_base - beta * e_rest
        for u, n in eta.items():
            out = out + units[u].log_partition(beta * n)
        return out

    with torch.no_grad():
        x = base.sample(num_chains, generator, device=device, dtype=dtype)
        for b in model.blocks:
            if b not in x:
                x[b] = units[b].random(num_chains, generator, device=device, dtype=dtype)
        log_w = torch.zeros(num_chains, dtype=torch.float64, device=device)
        num = betas.numel()
        bar = tqdm(
            total=num - 1,
            desc="AIS",
            unit="beta",
            disable=not progress,
            leave=False,
            mininterval=0.5,
        )
        beta_list = betas.tolist()
        for k in range(1, num):
            b_prev, b_now = beta_list[k - 1], beta_list[k]
            e_rest, eta = model.split_energy(
                {b: x[b] for b in x if b not in sum_out}, sum_out, check=False
            )
            e_rest = e_rest.double()
            eta64 = {u: n.double() for u, n in eta.items()}
            e_base = base.energy(x).double() if base.blocks else 0.0
            log_w += log_p_star(b_now, e_rest, eta64, e_base) - log_p_star(
                b_prev, e_rest, eta64, e_base
            )
            if k == num - 1:
                break
            # one sweep at beta_k: the summed-out blocks first (fresh), then the others
            for u in sum_out:
                x[u] = units[u].sample(b_now * eta[u], generator)
            for group in schedule:
                stats = model.statistics(x)
                new = {}
                for b in group:
                    nat = b_now * model.natural(b, x, stats)
                    if b in base_nat:
                        nat = nat + (1.0 - b_now) * base_nat[b]
                    new[b] = units[b].sample(nat, generator)
                x.update(new)
            if progress and k % 200 == 0:
                bar.update(200)
                bar.set_postfix(log_z_at_beta=f"{log_z0 + log_mean_exp(log_w)[0]:.4f}")
        bar.close()
    log_w = log_w.cpu()
    lme, stderr, ess = log_mean_exp(log_w)
    return Estimate(
        value=log_z0 + lme,
        kind="point",
        method="AIS",
        stderr=stderr,
        ess=ess,
        log_weights=log_w,
        num_chains=num_chains,
        num_betas=num,
        seconds=time.perf_counter() - start,
        extras={
            "log_z_base": log_z0,
            "summed_out": sum_out,
            "note": "E[log Z-hat] <= log Z: a stochastic lower bound",
        },
    )
