"""log Z_D for every document length D at once, by annealing over the length itself.

For a model with a count block of data length (a document: the Replicated Softmax, the
over-replicated softmax), let f_D(x) be the unnormalised density of the other blocks x at length D
with the document block's colour class S summed out, so that Z_D = sum_x f_D(x). The path

    f_1 (reached from a uniform base by the temperature path at D = 1), f_2, f_3, ..., f_Dmax

is an annealing path whose every intermediate normaliser is a quantity we need: one AIS run
carries its chains from length to length, and after reaching length D the chains' weights give
log Z_D. Between two lengths the path goes through the geometric mixtures f_D^(1 - a) f_(D+1)^a,
a = 1/m, ..., (m - 1)/m (``substeps`` = m), at which a chain moves by Metropolis-Hastings with
the length-D block Gibbs sweep as its proposal (reversible for f_D when the chain's blocks form
one colour class, so the acceptance is min(1, (f_(D+1)(y) f_D(x) / (f_D(y) f_(D+1)(x)))^a)); at
a = 1 it takes an exact Gibbs sweep at length D + 1.

The chains run in independent groups, each a sequential Monte Carlo sampler that resamples its
chains by weight when their ESS falls below half (``estimators.resampling``): over hundreds of
lengths plain AIS weights collapse onto a few chains, while each group's running estimate stays
unbiased in Z_D / Z_0 and the groups' spread gives an honest error bar.

The increment of log w from one length to the next is log f_(D+1)(x) - log f_D(x), which for
the Replicated Softmax is c.h + log sum_k exp(b_k + W_k h), of order one, where the temperature
path's increments grow with D: the cost of every length up to Dmax is about Dmax m sweeps of
``num_chains`` chains, against one temperature run per length.
"""

from __future__ import annotations

import math
import time

import torch
from torch import Tensor
from tqdm.auto import tqdm

from ebm.base import FactorizedBase
from ebm.counts import Multinomial
from ebm.documents import at_length
from ebm.graph import member_block
from ebm.model import EnergyModel
from estimators import schedules
from estimators.estimate import Estimate, flag_degenerate, log_mean_exp, log_weight_diagnostics
from estimators.path import GeometricPath
from estimators.resampling import check_groups, resample_degenerate_groups

__all__ = ["anneal_lengths"]


def anneal_lengths(
    model: EnergyModel,
    block: str,
    lengths: list[int],
    num_chains: int = 1000,
    betas=1000,
    substeps: int | None = None,
    generator: torch.Generator | None = None,
    progress: bool = True,
    groups: int | None = 10,
) -> dict[int, Estimate]:
    """{D: log Z_D estimate} for every D in ``lengths`` (ints >= 1), from one AIS run over the
    lengths 1, 2, ..., max(lengths) of the count block ``block`` (see the module's docstring).

    The run starts with ``num_chains`` chains drawn from a uniform base over the blocks outside
    the document block's colour class S and anneals them to f_1 along the temperature path, with
    every count block of S at one word; the other count blocks of S (the over-replicated layer)
    then grow one word at a time to their lengths, and then the document block does
    (``betas``: an int or a schedule, ``estimators.schedules.resolve``), then goes up the lengths
    with ``substeps`` intermediate distributions between two lengths. log Z_D-hat = log Z_0 +
    log mean w_D, with w_D the chains' weights on reaching D: E[w_D] = Z_D / Z_0, so each
    estimate is, like any AIS estimate, below log Z_D in expectation (a stochastic lower bound);
    its standard error is the delta-method one of its weights, its ESS reported beside it, and
    degenerate weights mark that length untrusted (``Estimate.untrusted``). The estimates of
    different lengths come from the same chains and are correlated.

    ``substeps > 1`` needs the blocks outside S to form one colour class (then the Gibbs sweep,
    S given x and x given S, is reversible for f_D); the default (None) is 4 where they do and 1
    where they do not.

    ``groups`` (default 10): the chains run as that many independent sequential Monte Carlo
    samplers; after length 1 and after every length a group whose ESS fell below half its
    chains is resampled by weight (``estimators.resampling``), so the weights cannot collapse
    over hundreds of lengths. Each group's exp(log Z-hat_g) is unbiased in Z_D / Z_0, the
    estimate is log of their mean (again low in expectation), and the standard error, ESS and
    degeneracy flags are those of the groups' estimates (``log_weights`` holds them). ``None``:
    plain AIS, no resampling, each chain's weight its own.
    """
    start = time.perf_counter()
    if isinstance(num_chains, bool) or not isinstance(num_chains, int) or num_chains < 2:
        raise ValueError(f"num_chains must be an int >= 2, got {num_chains!r}")
    wanted = sorted({int(d) for d in lengths})
    if not wanted or wanted[0] < 1:
        raise ValueError(f"lengths must be ints >= 1, got {lengths!r}")
    paths = _LengthPaths(model, block)
    steps = paths.steps(wanted[-1])
    first = paths[steps[0]]
    if substeps is None:
        substeps = 4 if len(first.groups) == 1 else 1
    if isinstance(substeps, bool) or not isinstance(substeps, int) or substeps < 1:
        raise ValueError(f"substeps must be an int >= 1, got {substeps!r}")
    if substeps > 1 and len(first.groups) != 1:
        raise ValueError(
            f"substeps > 1 needs the blocks outside {first.sum_out} to form one colour class "
            f"(a reversible sweep); this model sweeps {len(first.groups)} classes: pass substeps=1"
        )
    if groups is not None:
        check_groups(groups, num_chains, "num_chains")
    betas = schedules.resolve(betas)
    settings = {"num_chains": num_chains, "betas": betas, "substeps": substeps, "groups": groups}
    with torch.no_grad():
        return _run(paths, steps, first, block, wanted, settings, generator, progress, start)


def _run(paths, steps, first, block, wanted, settings, generator, progress, start) -> dict:
    """The annealing itself (no autograd graph: the weights are not differentiated)."""
    betas, substeps = settings["betas"], settings["substeps"]
    x, log_w = _anneal_first_length(first, settings["num_chains"], betas.tolist(), generator)
    weights = _GroupWeights(log_w, settings["groups"])
    x = weights.resample(x, generator)
    out = {}
    full = paths.full_lengths
    for here, there in tqdm(
        list(zip(steps[:-1], steps[1:], strict=True)),
        desc="lengths",
        unit="length",
        disable=not progress,
        leave=False,
    ):
        if _reached(here, full, block, wanted, out):
            out[here[block]] = _estimate(first, weights, here[block], settings, start)
        x = _next_length(paths[here], paths[there], x, log_w, substeps, generator)
        x = weights.resample(x, generator)
        paths.forget(here)
    last = steps[-1]
    if _reached(last, full, block, wanted, out):
        out[last[block]] = _estimate(first, weights, last[block], settings, start)
    return out


class _GroupWeights:
    """The chains' log-weights since their group last resampled (``log_w``, updated in place by
    the annealing) and each group's running log Z-hat; with ``groups`` None, plain AIS."""

    def __init__(self, log_w: Tensor, groups: int | None):
        self.log_w, self.groups = log_w, groups
        count = 1 if groups is None else groups
        self.log_z = torch.zeros(count, dtype=torch.float64, device=log_w.device)
        self.resamplings = 0

    def resample(self, x: dict, generator) -> dict:
        """x with the chains of degenerate groups resampled (the weights reset in place)."""
        if self.groups is None:
            return x
        index = resample_degenerate_groups(self.log_w.view(self.groups, -1), self.log_z, generator)
        if index is None:
            return x
        self.resamplings += 1
        return {b: v.index_select(0, index) for b, v in x.items()}

    def final(self) -> Tensor:
        """The log-weights the estimate averages: each chain's (plain AIS) or each group's
        log Z-hat_g = its running log Z-hat + log mean w of its chains."""
        if self.groups is None:
            return self.log_w.detach().clone().cpu()
        per_group = self.log_w.view(self.groups, -1)
        size = per_group.shape[1]
        return (self.log_z + torch.logsumexp(per_group, -1) - math.log(size)).cpu()


def _reached(lengths: dict, full: dict, block: str, wanted: list[int], out: dict) -> bool:
    """Whether the chains are at a wanted length of ``block`` with the other count blocks full."""
    at_full = all(lengths[b] == n for b, n in full.items())
    return at_full and lengths[block] in wanted and lengths[block] not in out


class _LengthPaths:
    """The path at each setting of the lengths (the model fixed at them, the document block's
    colour class S summed out), built when first asked.

    Other count blocks of fixed length in S (the over-replicated layer's M words) start at one
    word too and grow to their length before the document block grows (``steps``): every step
    adds one word, so that no stage anneals a long count block in temperature."""

    def __init__(self, model: EnergyModel, block: str):
        self.model, self.block, self.cache = model, block, {}
        group = next(g for g in model.schedule if block in [member_block(m) for m in g])
        self.sum_out = list(dict.fromkeys(member_block(m) for m in group))
        rest = [b for b in model.blocks if b not in self.sum_out]
        if not rest:
            raise ValueError(
                f"annealing over lengths needs blocks outside {self.sum_out} (the document "
                f"block's colour class) to carry; the model has {model.blocks}"
            )
        #: the fixed lengths of the other count blocks in S (block -> its length)
        self.full_lengths = {
            b: int(model.units[b].length)
            for b in self.sum_out
            if b != block and isinstance(model.units[b], Multinomial) and model.units[b].length
        }

    def steps(self, top: int) -> list[dict[str, int]]:
        """Settings of the lengths from one word each to the others' full lengths, then the
        document block from 1 to ``top``."""
        lengths = {self.block: 1, **{b: 1 for b in self.full_lengths}}
        out = [dict(lengths)]
        for b, n in self.full_lengths.items():
            for m in range(2, n + 1):
                lengths[b] = m
                out.append(dict(lengths))
        for d in range(2, top + 1):
            lengths[self.block] = d
            out.append(dict(lengths))
        return out

    def __getitem__(self, lengths: dict[str, int]) -> GeometricPath:
        key = tuple(sorted(lengths.items()))
        if key not in self.cache:
            fixed = at_length(self.model, dict(lengths))
            if not fixed.can_sum_out(self.sum_out):
                raise ValueError(
                    f"annealing over lengths needs the blocks {self.sum_out} (the document "
                    "block's colour class) summed out together"
                )
            rest = [b for b in fixed.blocks if b not in self.sum_out]
            uniform = {b: torch.zeros(fixed.units[b].shape) for b in rest}
            path = GeometricPath(fixed, FactorizedBase(fixed, uniform), sum_out=self.sum_out)
            self.cache[key] = path
        return self.cache[key]

    def forget(self, lengths: dict[str, int]) -> None:
        self.cache.pop(tuple(sorted(lengths.items())), None)


def _anneal_first_length(path: GeometricPath, num_chains, betas, generator):
    """Chains from the uniform base annealed to the first setting (temperature path), with
    their log-weights."""
    x = path.init(num_chains, generator)
    log_w = torch.zeros(num_chains, dtype=torch.float64, device=path.model.device)
    terms = path.terms(x)
    for previous, beta in zip(betas[:-1], betas[1:], strict=True):
        log_w += path.log_f(beta, terms) - path.log_f(previous, terms)
        x = path.transition(x, beta, terms, generator)
        terms = path.terms(x)
    return x, log_w


def _log_ratio(here: GeometricPath, there: GeometricPath, x) -> Tensor:
    """log f_there(x) - log f_here(x), float64 (chains,)."""
    return there.log_f(1.0, there.terms(x)) - here.log_f(1.0, here.terms(x))


def _next_length(here, there, x, log_w: Tensor, substeps: int, generator):
    """Chains at f_D carried to f_(D+1); log_w updated in place."""
    ratio = _log_ratio(here, there, x)
    for i in range(1, substeps + 1):
        log_w += ratio / substeps
        if i == substeps:
            return there.transition(x, 1.0, there.terms(x), generator)
        proposal = here.transition(x, 1.0, here.terms(x), generator)
        proposed_ratio = _log_ratio(here, there, proposal)
        u = torch.rand(log_w.shape, generator=generator, device=log_w.device, dtype=torch.float64)
        accept = torch.log(u) < (i / substeps) * (proposed_ratio - ratio)
        x = {b: _where_rows(accept, proposal[b], v) for b, v in x.items()}
        ratio = torch.where(accept, proposed_ratio, ratio)
    return x


def _where_rows(mask: Tensor, a: Tensor, b: Tensor) -> Tensor:
    return torch.where(mask.view(-1, *([1] * (a.dim() - 1))), a, b)


def _estimate(
    first: GeometricPath, state: _GroupWeights, d: int, settings: dict, start
) -> Estimate:
    weights = state.final()
    lme, stderr, ess = log_mean_exp(weights)
    estimate = Estimate(
        value=first.log_z0 + lme,
        kind="point",
        method="AIS over lengths",
        stderr=stderr,
        ess=ess,
        log_weights=weights,
        num_chains=settings["num_chains"],
        num_betas=settings["betas"].numel(),
        seconds=time.perf_counter() - start,
        extras={
            "length": d,
            "substeps": settings["substeps"],
            "groups": settings["groups"],
            "resamplings": state.resamplings,
            "summed_out": first.sum_out,
            "note": "E[log Z-hat] <= log Z: a stochastic lower bound; lengths share chains"
            + ("" if settings["groups"] is None else "; ess and log_weights are the groups'"),
        },
    )
    return flag_degenerate(estimate, *log_weight_diagnostics(weights), stacklevel=4)
