"""Reverse annealed importance sampling (RAISE; Burda, Grosse & Salakhutdinov 2015) and the
sandwich of the test log-likelihood between RAISE and forward AIS."""

from __future__ import annotations

import math
import time

import torch
from tqdm.auto import tqdm

from ebm.base import FactorizedBase
from ebm.inference import mean_field
from ebm.model import EnergyModel
from estimators import schedules
from estimators.ais import ais
from estimators.distributed import run_shards, shard_seeds, split
from estimators.estimate import (
    Estimate,
    flag_degenerate,
    inherit_untrusted,
    judged_elsewhere,
    log_mean_exp,
)
from estimators.likelihood import log_likelihood
from estimators.path import GeometricPath

__all__ = ["reverse_ais", "reverse_log_weights", "sandwich"]


def reverse_log_weights(path: GeometricPath, x: dict, betas: list[float], generator=None):
    """Anneal chains backwards from x_K = ``x`` (at beta = 1) to beta_0 = 0 with the reversed
    transitions, returning sum_{j=1}^{K} [log f_{j-1}(x_j) - log f_j(x_j)] in float64.

    When x_K is an exact draw from p_K, E[exp(result)] = Z_0 / Z_K."""
    t = path.terms(x)
    log_w = torch.zeros(
        next(iter(x.values())).shape[0], dtype=torch.float64, device=path.model.device
    )
    for j in range(len(betas) - 1, 0, -1):
        log_w = log_w + path.log_f(betas[j - 1], t) - path.log_f(betas[j], t)
        if j > 1:
            x = path.transition(x, betas[j - 1], t, generator, reverse=True)
            t = path.terms(x)
    return log_w


def reverse_ais(
    model: EnergyModel,
    data,
    num_chains: int = 10,
    betas=None,
    base: FactorizedBase | None = None,
    generator: torch.Generator | None = None,
    batch_size: int = 1000,
    progress: bool = True,
    workers: int = 1,
    path=None,
) -> Estimate:
    """RAISE: a stochastic lower bound on the mean log p(v) over the examples of ``data``.

    The path's chains carry x = (v, h_K), the hidden blocks S summed out of its densities. For
    each example v, ``num_chains`` chains start at x_K = (v, h_K) and anneal backwards along the
    path with the reversed transitions x_{j-1} ~ T~_{j-1}(. | x_j), j = K .. 2. The importance
    weight

        log w = log f_K(x_K) - log Z_0 + sum_{j=1}^{K} [log f_{j-1}(x_j) - log f_j(x_j)]
                - log q(h_K | v)

    has E[w] = p_ann(v), the probability of v under the annealing model (the distribution of the
    final state of forward AIS along the same path), which tends to p(v) as the path gets finer.
    So log p-hat(v) = log mean w satisfies E[log p-hat(v)] <= log p_ann(v): a stochastic lower
    bound, conservative where forward AIS is optimistic.

    When the hidden blocks can be summed out together (an RBM), S is all of them, h_K is empty
    and q = 1: the chains start at v as if h were drawn exactly from p(h | v) (Burda et al.). When
    they cannot (a DBM), S is the summable set of hidden blocks that leaves the fewest states
    (``exact.choose_sum_out``; h1 for a DBM with a small top layer) and each chain draws the
    other hidden blocks h_K from the mean-field posterior q (``ebm.inference.mean_field``, fitted
    to v): E_q[p_ann(v, h_K) / q(h_K | v)] = p_ann(v), so the bound holds for any q, and a q far
    from p(h_K | v) shows as spread log-weights (a small ESS per example), not as a bias upward.

    The value is the mean over examples of log p-hat(v). ``stderr`` is the Monte Carlo error given
    these examples (per-example delta-method errors combined); the spread over examples, the
    error as an estimate of the expected log-likelihood, is in ``extras['stderr_examples']``.
    Needs the blocks the chains carry in one colour class once S is drawn (v and h2 in a DBM, v
    in an RBM), or S empty: where a carried block's units are coupled (a semi-restricted BM, an
    Ising model) nothing is summed out and the sweep of colour classes is reversed as a whole.
    ``workers > 1`` splits the examples over Ray
    tasks (see ``estimators.distributed``); the combination is the same as in one run.
    ``path``: another annealing path (e.g. ``estimators.moment_averaged_path``) instead of the
    geometric one from ``base``; it is the path's own ``base`` then.
    """
    start = time.perf_counter()
    if isinstance(num_chains, bool) or not isinstance(num_chains, int) or num_chains < 2:
        raise ValueError(f"num_chains must be an int >= 2 per example, got {num_chains!r}")
    betas = schedules.resolve(betas)
    if path is not None and workers > 1:
        raise ValueError("workers > 1 shards the geometric path only")
    if path is None:
        path = _raise_path(model, base)
    proposed = _proposed_blocks(model, path)
    state = model.validate_data(data)
    n = next(iter(state.values())).shape[0]
    if workers > 1:
        if len(state) != 1:
            raise ValueError("workers > 1 supports models with one visible block")
        (rows,) = state.values()
        counts = split(n, workers)
        starts = [sum(counts[:i]) for i in range(len(counts))]
        shards = [
            {
                "data": rows[a : a + c].cpu(),
                "num_chains": num_chains,
                "betas": betas,
                "batch_size": batch_size,
            }
            for a, c in zip(starts, counts, strict=True)
        ]
        parts = run_shards(_raise_shard, model, base, shards, shard_seeds(generator, len(counts)))
        values, ses, ess, spread = torch.cat(parts, 1)
        return _raise_estimate(
            values, ses, ess, spread, num_chains, len(betas), path, start, shards=len(counts)
        )
    beta_list = betas.tolist()
    num = len(beta_list)
    per_example, per_example_se, ess, spread = [], [], [], []
    bar = tqdm(total=n, desc="RAISE", unit="example", disable=not progress, leave=False)
    with torch.no_grad():
        for lo in range(0, n, batch_size):
            chunk = {b: v[lo : lo + batch_size] for b, v in state.items()}
            m = next(iter(chunk.values())).shape[0]
            x = {b: v.repeat_interleave(num_chains, 0) for b, v in chunk.items()}
            drawn, log_q = _posterior_draws(model, chunk, proposed, num_chains, generator)
            x.update(drawn)
            log_w = path.log_f(1.0, path.terms(x)) - path.log_z0 - log_q
            log_w = log_w + reverse_log_weights(path, x, beta_list, generator)
            for row in log_w.cpu().reshape(m, num_chains):
                value, se, e = log_mean_exp(row)
                per_example.append(value)
                per_example_se.append(se)
                ess.append(e)
                spread.append(float(row.std()))
            bar.update(m)
    bar.close()
    values = torch.tensor(per_example, dtype=torch.float64)
    return _raise_estimate(
        values,
        torch.tensor(per_example_se, dtype=torch.float64),
        torch.tensor(ess, dtype=torch.float64),
        torch.tensor(spread, dtype=torch.float64),
        num_chains,
        num,
        path,
        start,
    )


def _raise_path(model: EnergyModel, base: FactorizedBase | None) -> GeometricPath:
    """The geometric path RAISE anneals along: from ``base`` (default: every block at zero
    natural parameters, uniform for discrete units) with the hidden blocks summed out when they
    can go together, else the summable set of hidden blocks that leaves the fewest states."""
    if base is None:
        base = FactorizedBase(model, {})
    sum_out = GeometricPath.default_sum_out(model, base, model.hidden())
    path = GeometricPath(model, base, sum_out=sum_out)
    if len(path.groups) != 1 and path.sum_out and model.graph.coupled_blocks():
        # units coupled within a carried block: several colour classes once S is drawn, whose
        # reversal is the reversed sweep only when nothing is drawn first, so every block is
        # carried (the hidden ones proposed from the mean-field posterior)
        path = GeometricPath(model, base, sum_out=[])
    if len(path.groups) != 1 and path.sum_out:
        raise ValueError(
            "RAISE needs the blocks its chains carry in one colour class once the summed-out "
            f"blocks {path.sum_out} are drawn; they fall in {path.groups} (model schedule "
            f"{model.schedule})"
        )
    return path


def _proposed_blocks(model: EnergyModel, path: GeometricPath) -> list[str]:
    """The hidden blocks the chains carry (drawn from the mean-field posterior at the start);
    refuses a path that sums out a visible block."""
    hidden = model.hidden()
    summed_visible = [b for b in path.sum_out if b not in hidden]
    if summed_visible:
        raise ValueError(
            "RAISE starts its chains at the data, so the path must keep every visible block; "
            f"this path sums out {summed_visible}"
        )
    return [b for b in hidden if b not in path.sum_out]


def _posterior_draws(
    model: EnergyModel, chunk: dict, blocks: list[str], num_chains: int, generator
):
    """``num_chains`` draws per example of the hidden ``blocks`` from the mean-field posterior
    q(h | v) fitted to the examples of ``chunk``, and log q of each draw (float64); nothing and
    0 when ``blocks`` is empty."""
    if not blocks:
        return {}, 0.0
    q = mean_field(model, chunk)
    drawn, log_q = {}, 0.0
    for b in blocks:
        natural = q.natural[b].repeat_interleave(num_chains, 0)
        units = model.units[b]
        drawn[b] = units.sample(natural, generator)
        log_q = log_q + units.distribution(natural.double()).log_prob(drawn[b].double())
    return drawn, log_q


def _raise_estimate(
    values, ses, ess, spread, num_chains, num_betas, path, start, shards: int = 1
) -> Estimate:
    """The RAISE record from per-example log p-hat(v), their standard errors, ESS and spread of
    the log-weights; marked untrusted (with a warning) when the typical example's weights are
    degenerate: mean ESS / chains or the median sd(log w) past the bars of
    ``estimators.estimate.weight_degeneracy``."""
    n = values.numel()
    mc_se = float(ses.pow(2).sum().sqrt()) / n
    se_examples = float(values.std() / math.sqrt(n)) if n > 1 else 0.0
    estimate = Estimate(
        value=float(values.mean()),
        kind="lower_bound",
        method="RAISE",
        quantity="mean log p(v)",
        stderr=mc_se,
        ess=float(ess.mean()),
        num_chains=num_chains,
        num_betas=num_betas,
        seconds=time.perf_counter() - start,
        extras={
            "examples": n,
            "per_example": values,
            "per_example_stderr": ses,
            "per_example_ess": ess,
            "per_example_log_weight_sd": spread,
            "stderr_examples": se_examples,
            "log_z_base": path.log_z0,
            "shards": shards,
            "note": "E[log p-hat(v)] <= log p_ann(v); ESS is per example (chains per example)",
        },
    )
    fraction = float(ess.mean()) / num_chains
    return flag_degenerate(estimate, fraction, float(spread.median()), stacklevel=4)


def sandwich(
    model: EnergyModel,
    data,
    num_chains: int = 100,
    reverse_chains: int = 10,
    betas=None,
    base: FactorizedBase | None = None,
    generator: torch.Generator | None = None,
    num_examples: int | None = None,
    progress: bool = True,
    workers: int = 1,
    path=None,
    log_z: Estimate | None = None,
) -> Estimate:
    """Bracket the mean log p(v) of ``data`` between two stochastic bounds:

    - upper: mean(-F(v)) - log Z-hat with log Z-hat from forward AIS (``num_chains`` chains), since
      E[log Z-hat] <= log Z;
    - lower: RAISE (``reverse_chains`` chains per example), since E[log p-hat(v)] <= log p_ann(v).

    Both use the same path (``betas``, ``base``) and the same examples (the first
    ``num_examples`` of ``data`` when given, to bound the cost of RAISE). Each bound's ``stderr``
    is its Monte Carlo error given the examples; the interval ``ci`` runs from lower - 1.96
    stderr to upper + 1.96 stderr. A wide bracket says the annealing is too coarse: add betas.
    ``workers > 1`` shards both directions over Ray tasks. ``path`` (e.g.
    ``estimators.moment_averaged_path``) replaces the geometric path in both directions.
    ``log_z``: a forward AIS estimate of log Z already made for this model (a point estimate
    with its stderr) to use for the upper end instead of running forward AIS again.

    The upper end needs the free energy F(v) exactly: in closed form when the hidden blocks can
    be summed out together, else by enumerating some of them per example
    (``exact.exact_free_energy``: a DBM with a small layer); a DBM with no layer small enough is
    refused before any annealing runs. The bracket is marked untrusted when either end is.
    """
    start = time.perf_counter()
    state = model.validate_data(data)
    if num_examples is not None:
        state = {b: v[:num_examples] for b, v in state.items()}
    anneal = {
        "betas": betas,
        "base": base,
        "generator": generator,
        "progress": progress,
        "workers": workers,
        "path": path,
    }
    if log_z is not None and (log_z.kind != "point" or log_z.quantity != "log Z"):
        raise ValueError(
            f"log_z must be a point estimate of log Z (forward AIS), got {log_z.kind} "
            f"{log_z.quantity!r} from {log_z.method}"
        )
    minus_f = log_likelihood(model, state, 0.0)  # mean -F(v), before the long runs
    if log_z is None:
        log_z = ais(model, num_chains=num_chains, **anneal)
    upper = Estimate(
        value=minus_f.value - log_z.value,
        kind="upper_bound",
        method="AIS",
        quantity="mean log p(v)",
        stderr=log_z.stderr,
        ess=log_z.ess,
        num_chains=log_z.num_chains,
        num_betas=log_z.num_betas,
        seconds=log_z.seconds,
        extras={
            "examples": minus_f.extras["examples"],
            "log_z": log_z,
            "stderr_examples": minus_f.extras["stderr_examples"],
        },
    )
    inherit_untrusted(upper, log_z)
    lower = reverse_ais(model, state, num_chains=reverse_chains, **anneal)
    lo = lower.value - 1.96 * lower.stderr
    hi = upper.value + 1.96 * upper.stderr
    bracket = Estimate(
        value=(lower.value + upper.value) / 2,
        kind="bracket",
        method="sandwich (RAISE, AIS)",
        quantity="mean log p(v)",
        stderr=(upper.value - lower.value) / 2,
        ci=(lo, hi),
        num_betas=log_z.num_betas,
        seconds=time.perf_counter() - start,
        extras={"lower": lower, "upper": upper, "examples": lower.extras["examples"]},
    )
    untrusted = [f"{e.kind}: {e.untrusted}" for e in (lower, upper) if not e.trusted]
    bracket.untrusted = "; ".join(untrusted) or None
    return bracket


def _raise_shard(model, base, generator, data, **kwargs) -> torch.Tensor:
    """One shard of a sharded RAISE run: the rows (per-example log p-hat, their standard
    errors, their ESS, the spread of their log-weights), judged with the other shards'."""
    with judged_elsewhere():
        est = reverse_ais(
            model, data.to(model.device), base=base, generator=generator, progress=False, **kwargs
        )
    extras = est.extras
    keys = ("per_example", "per_example_stderr", "per_example_ess", "per_example_log_weight_sd")
    return torch.stack([extras[k] for k in keys])
