"""Annealed importance sampling (Neal 2001; Salakhutdinov & Murray 2008) on the geometric path."""

from __future__ import annotations

import time
from pathlib import Path

import torch

from ebm.backend.buffers import swap_buffer
from ebm.base import FactorizedBase
from ebm.checkpoint import fingerprint
from ebm.model import EnergyModel
from ebm.precision import full_precision
from estimators import schedules
from estimators.distributed import run_shards, shard_seeds, split
from estimators.estimate import (
    Estimate,
    flag_degenerate,
    judged_elsewhere,
    log_mean_exp,
    log_weight_diagnostics,
)
from estimators.path import GeometricPath
from estimators.runtime import AnnealingCheckpoint, anneal

__all__ = ["ais", "default_sum_out"]

default_sum_out = GeometricPath.default_sum_out


def ais(
    model: EnergyModel,
    num_chains: int = 100,
    betas=None,
    base: FactorizedBase | None = None,
    generator: torch.Generator | None = None,
    sum_out=None,
    progress: bool = True,
    checkpoint: str | Path | None = None,
    checkpoint_every: float = 60.0,
    workers: int = 1,
    path=None,
) -> Estimate:
    """Estimate log Z by annealed importance sampling along the geometric path

        p_k*(x) = p_A*(x_A)^(1 - beta_k) p*(x)^beta_k,   i.e.  E_k(x) = (1 - beta_k) E_A + beta_k E(x),

    from a factorised base A over the visible blocks (default: uniform; ``ebm.base_rate`` gives the
    base-rate model) to the model at beta = 1 (see ``GeometricPath``). The blocks S (``sum_out``,
    default: the hidden blocks when summable together) are summed out of the weights, which for an
    RBM is the standard path of Salakhutdinov & Murray; for a trained DBM give
    ``base=ebm.mean_field_base(model, data)`` and ``sum_out=["h1"]`` (see ``GeometricPath``).
    Each chain starts from an exact draw of p_0, and at every intermediate beta_k takes one block
    Gibbs sweep that leaves p_k invariant, accumulating in float64

        log w = sum_k [log f_k(x_k) - log f_{k-1}(x_k)].

    log Z-hat = log Z_0 + log mean w. E[w] = Z / Z_0, so E[log Z-hat] <= log Z (a stochastic lower
    bound; the bias shrinks with more betas and chains). The standard error is the delta-method
    one, sd(w) / (sqrt(n) mean(w)), and the 95% interval is value +- 1.96 stderr; the ESS of the
    weights is reported next to it: a small ESS means the error bar itself is unreliable.

    Degenerate weights are reported, not hidden: when ESS / chains < 10% or sd(log w) > 1.5 nats
    (``estimators.estimate.weight_degeneracy``) the call warns (``DegenerateWeightsWarning``),
    ``Estimate.trusted`` is False, ``Estimate.untrusted`` says why and the printed line says that
    the interval is not to be trusted. Then the estimate is typically below log Z by more than its
    error: use more betas (the bias shrinks with the path's length), an adaptive schedule
    (``schedules.adaptive``), more chains, a base closer to the model (``ebm.base_rate``,
    ``ebm.mean_field_base``) or another path (``moment_averaged_path``).

    Inside ``ebm.reduced_precision()`` the transitions and the intermediate log f_k see weights
    rounded to bf16 / TF32: they define the intermediate distributions, which AIS may choose
    freely, while the last increment, at beta = 1, is evaluated at full precision. On discrete
    blocks (exact in bf16) the estimate is then of the full-precision model's log Z, with the same
    guarantees; only its variance depends on the rounding.

    On the geometric path the loop keeps its tensors from beta to beta (``GeometricPath`` with
    ``work=``): nothing of a block's size is allocated after the first betas, and the weights
    are those of the plain loop, bit for bit.

    ``betas``: the schedule, a 1-D sequence from 0 to 1, non-decreasing; or an int n, the default
    Salakhutdinov-Murray shape with n betas in all; default the published 14,500
    (``schedules.resolve``).

    ``checkpoint``: a file that the run saves to every ``checkpoint_every`` seconds and when
    interrupted (Ctrl-C); calling ``ais`` again with the same file resumes where it stopped, with
    the generator's state, so the result is the one an uninterrupted run gives (the loop runs in
    ``estimators.runtime.anneal``).

    ``path``: another annealing path with the same interface as ``GeometricPath`` (``init``,
    ``terms``, ``log_f``, ``transition``, ``log_z0``), e.g. ``estimators.moment_averaged_path``;
    ``base`` and ``sum_out`` are then the path's.

    Chains whose base differs from chain to chain (a count block with one length per chain,
    summed out: ``ebm.documents.at_length`` with a tensor of lengths) start their log-weights at
    their own part of log Z_0 (``GeometricPath.log_z0_per_chain``), so a group of chains of one
    length estimates that length's log Z by itself (``estimators.log_z_by_length``); the pooled
    estimate is then log of the mean of the groups' Z, rarely what is wanted.

    ``workers > 1`` splits the chains over that many Ray tasks (one GPU each where there are
    GPUs; a local Ray instance is started if none runs) and concatenates their log-weights: the
    same estimator as one run, with one seed per shard drawn from ``generator``.
    """
    start = time.perf_counter()
    if isinstance(num_chains, bool) or not isinstance(num_chains, int) or num_chains < 2:
        raise ValueError(
            f"num_chains must be an int >= 2 (a standard error needs two), got {num_chains!r}"
        )
    betas = schedules.resolve(betas)
    path = GeometricPath(model, base, sum_out) if path is None else path
    if workers > 1:
        if not isinstance(path, GeometricPath):
            raise ValueError("workers > 1 shards the geometric path only")
        if checkpoint is not None:
            raise ValueError(
                "checkpoint is for single-process runs; with workers > 1 each shard is short"
            )
        if path.log_z0_per_chain is not None:
            raise ValueError("chains with their own log Z_0 run in one process (workers=1)")
        counts = split(num_chains, min(workers, num_chains // 2))
        shards = [{"num_chains": c, "betas": betas, "sum_out": path.sum_out} for c in counts]
        log_w = torch.cat(
            run_shards(_ais_shard, model, base, shards, shard_seeds(generator, len(counts)))
        )
        return _estimate(log_w, path, betas.numel(), start, resumed=False, shards=len(counts))
    if checkpoint is not None and generator is None:
        generator = torch.Generator(device=model.device).manual_seed(
            int(torch.randint(2**62, (1,)))
        )
    num = betas.numel()
    saves = None
    if checkpoint is not None:
        key = fingerprint(model, betas, *path.fingerprint_tensors())
        saves = AnnealingCheckpoint(checkpoint, "ais", key, checkpoint_every)
    resumed = saves is not None and saves.exists()
    beta_list = betas.tolist()
    # the geometric path's steps write into tensors kept here: no allocation per beta
    work = {} if isinstance(path, GeometricPath) else None
    kept = {} if work is None else {"work": work}

    def step(state: dict, k: int) -> dict:
        x, log_w = _chains(state), state["log_w"]
        t = path.terms(x, **kept)
        t_k = t
        if k == num - 1:  # the model itself: never through rounded products
            with full_precision():
                t_k = path.terms(x)
        if work is None:
            log_w = log_w + path.log_f(beta_list[k], t_k) - path.log_f(beta_list[k - 1], t)
        else:  # the same sums into kept tensors; the state's log_w stays intact
            up = path.log_f(beta_list[k], t_k, work, key="up")
            down = path.log_f(beta_list[k - 1], t, work, key="down")
            new = swap_buffer(work, "ais.log_w", log_w.shape, log_w, log_w)
            log_w = torch.add(log_w, up, out=new).sub_(down)
        if k < num - 1:
            x = path.transition(x, beta_list[k], t, generator, **kept)
        return {**{f"x.{b}": v for b, v in x.items()}, "log_w": log_w}

    def postfix(state: dict) -> dict:
        return {"log_z_at_beta": f"{path.log_z0 + log_mean_exp(state['log_w'])[0]:.4f}"}

    with torch.no_grad():
        if resumed:
            state, first = _resume(saves, num_chains, path, generator)
        else:
            x = path.init(num_chains, generator)
            log_w = torch.zeros(num_chains, dtype=torch.float64, device=model.device)
            per_chain = getattr(path, "log_z0_per_chain", None)
            if per_chain is not None:  # each chain's own part of log Z_0 starts its weight
                log_w = log_w + per_chain.to(log_w.device)
            state, first = {**{f"x.{b}": v for b, v in x.items()}, "log_w": log_w}, 1
        state = anneal(step, state, num, generator, first, saves, progress, "AIS", postfix)
    return _estimate(state["log_w"].cpu(), path, num, start, resumed=resumed, shards=1)


def _chains(state: dict) -> dict:
    return {name[2:]: v for name, v in state.items() if name.startswith("x.")}


def _estimate(log_w, path: GeometricPath, num_betas: int, start: float, **extras) -> Estimate:
    """The AIS record from float64 log-weights: log Z_0 + log mean w, delta-method error, ESS."""
    lme, stderr, ess = log_mean_exp(log_w)
    estimate = Estimate(
        value=path.log_z0 + lme,
        kind="point",
        method="AIS",
        stderr=stderr,
        ess=ess,
        log_weights=log_w,
        num_chains=log_w.numel(),
        num_betas=num_betas,
        seconds=time.perf_counter() - start,
        extras={
            "log_z_base": path.log_z0,
            "summed_out": path.sum_out,
            **extras,
            "note": "E[log Z-hat] <= log Z: a stochastic lower bound",
        },
    )
    return flag_degenerate(estimate, *log_weight_diagnostics(log_w), stacklevel=4)


def _resume(saves: AnnealingCheckpoint, num_chains: int, path, generator) -> tuple[dict, int]:
    """The saved state on the model's device, and the next beta; ValueError for a file of
    another run, another number of chains or an older format."""
    saved, first = saves.load(generator)
    if "log_w" not in saved:
        raise ValueError(f"{saves.path}: an AIS checkpoint of an older format; delete it")
    if saved["log_w"].numel() != num_chains:
        raise ValueError(
            f"{saves.path} holds an AIS run of another model, base, schedule or number of "
            f"chains; delete it or pass another checkpoint file"
        )
    m = path.model
    state = {
        f"x.{b}": saved[f"x.{b}"].to(device=m.device, dtype=m.dtype) for b in path.chain_blocks
    }
    state["log_w"] = saved["log_w"].to(m.device)
    return state, first


def _ais_shard(model, base, generator, **kwargs) -> torch.Tensor:
    """One shard of a sharded run: its float64 log-weights (judged with the other shards')."""
    with judged_elsewhere():
        est = ais(model, base=base, generator=generator, progress=False, **kwargs)
    return est.log_weights
