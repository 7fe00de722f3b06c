"""Compare samplers on one model: effective sample sizes per second, convergence diagnostics,
total variation to the exact distribution where it can be enumerated, and findings in plain words.

    result = samplers.compare(model, [samplers.BlockGibbs, samplers.ParallelTempering,
                                      samplers.Metropolis], num_chains=8, sweeps=20_000)
    print(result)                      # a table and the findings
    result.to_json("compare.json"); result.report("compare.html")
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from torch import Tensor

from ebm.enumeration import exact_log_marginal, state_index
from ebm.model import EnergyModel
from samplers.diagnostics import ChainSummary, summarize
from samplers.kernel import Kernel, check_num_chains
from samplers.report import write_report
from samplers.runner import run_chain

__all__ = ["compare", "Comparison", "SamplerResult", "default_statistics", "noise_floor"]

State = dict[str, Tensor]
Statistic = Callable[[State], Tensor]

COLUMNS = (
    "sampler",
    "sweeps",
    "seconds",
    "min bulk ESS/s",
    "min tail ESS/s",
    "max R-hat",
    "max tau",
    "accept",
    "TV (floors n / ESS)",
    "verdict",
)

# thresholds of the findings
RHAT_LIMIT = 1.01  # Vehtari et al. (2021)
MIN_ESS = 400  # 100 per chain for 4 chains (Vehtari et al. 2021)
DRAWS_PER_TAU = 50  # chains shorter than 50 tau give unreliable tau and ESS (Sokal 1997)
MIN_ACCEPT = 0.05
MIN_SWAP = 0.2


def default_statistics(model: EnergyModel) -> dict[str, Statistic]:
    """The energy E(x) and, for every block b (visible and hidden), ``mean b``: its units'
    ``summary`` (``ebm.units.Units.summary``), the mean of their statistic, or for one-hot
    Categorical blocks the mean category index (their statistic's mean is 1/k in every state)."""
    stats: dict[str, Statistic] = {"energy": lambda s: model.energy(s)}
    for b in model.blocks:
        stats[f"mean {b}"] = lambda s, b=b: model.units[b].summary(s[b])
    return stats


def noise_floor(p: np.ndarray, n: int, replicates: int = 200, seed: int = 0) -> float:
    """The 95th percentile of the total variation between p and the histogram of n exact
    independent draws from p (``replicates`` sets of n): what a perfect sampler's n draws show."""
    n = max(1, int(n))
    rng = np.random.default_rng(seed)
    p = np.asarray(p, dtype=np.float64)
    p = p / p.sum()
    counts = rng.multinomial(n, p, size=replicates)
    tv = 0.5 * np.abs(counts / n - p).sum(1)
    return float(np.quantile(tv, 0.95))


@dataclass
class SamplerResult:
    """What one sampler did: its budget (``steps``, model ``sweeps`` = steps x cost, ``seconds``
    of sampling including the burn-in, observation excluded), the diagnostics of each statistic
    over the kept draws, its acceptance (or swap) rate, on enumerable models the total variation
    to the exact distribution of ``tv_blocks`` next to the noise floors of exact draws, and the
    findings in plain words (empty when nothing is wrong)."""

    name: str
    chains: int
    steps: int
    burn_in_steps: int
    sweeps: int
    seconds: float
    statistics: dict[str, ChainSummary]
    acceptance: float | None = None
    swap_rates: list[float] | None = None
    betas: list[float] | None = None
    round_trips: int | None = None
    tv: float | None = None
    tv_draws: int | None = None
    noise_floor: float | None = None
    effective_draws: float | None = None
    noise_floor_effective: float | None = None
    unmoved: dict[str, int] = field(default_factory=dict)
    findings: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    traces: dict[str, np.ndarray] = field(default_factory=dict, repr=False)

    @property
    def trusted(self) -> bool:
        """No finding: nothing measured here says the draws should not be trusted."""
        return not self.findings

    def informative(self) -> dict[str, ChainSummary]:
        """The statistics that changed in every chain (all of them when none did): those whose
        ESS, R-hat and autocorrelation time say something about mixing."""
        moving = {k: s for k, s in self.statistics.items() if s.varying_chains == s.chains}
        return moving or self.statistics

    def ess_per_second(self, kind: str = "bulk") -> dict[str, float]:
        """ESS (``"bulk"`` or ``"tail"``) per second of sampling, per statistic."""
        attr = "ess_bulk" if kind == "bulk" else "ess_tail"
        return {
            k: getattr(s, attr) / self.seconds if self.seconds > 0 else math.nan
            for k, s in self.statistics.items()
        }

    def to_dict(self) -> dict:
        out = {
            k: v
            for k, v in self.__dict__.items()
            if k not in ("statistics", "traces") and not k.startswith("_")
        }
        out["trusted"] = self.trusted
        out["statistics"] = {
            k: {
                **s.to_dict(),
                "ess_bulk_per_second": self.ess_per_second("bulk")[k],
                "ess_tail_per_second": self.ess_per_second("tail")[k],
            }
            for k, s in self.statistics.items()
        }
        return _finite(out)


def _finite(x):
    """JSON-safe: non-finite floats become None."""
    if isinstance(x, dict):
        return {k: _finite(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [_finite(v) for v in x]
    if isinstance(x, (float, np.floating)):
        return float(x) if math.isfinite(x) else None
    if isinstance(x, np.integer):
        return int(x)
    return x


@dataclass
class Comparison:
    """The result of ``compare``: one ``SamplerResult`` per sampler, in the order given."""

    results: list[SamplerResult]
    model: str
    settings: dict
    exact_note: str
    columns = COLUMNS  #: the headings of the summary table (``row`` gives a sampler's cells)

    def __getitem__(self, name: str) -> SamplerResult:
        for r in self.results:
            if r.name == name:
                return r
        raise KeyError(f"no sampler named {name!r}; have {[r.name for r in self.results]}")

    def table(self):
        """A rich Table, one row per sampler."""
        from rich.table import Table

        table = Table(title=f"samplers on {self.model}")
        for col in COLUMNS:
            table.add_column(col, justify="left" if col in ("sampler", "verdict") else "right")
        for r in self.results:
            table.add_row(*self.row(r))
        return table

    @staticmethod
    def row(r: SamplerResult) -> list[str]:
        """The cells of ``r``'s line in the summary table (``COLUMNS``)."""
        used = r.informative()
        s = list(used.values())
        bulk = min(v for k, v in r.ess_per_second("bulk").items() if k in used)
        tail = min(v for k, v in r.ess_per_second("tail").items() if k in used)
        rhat = max((x.rhat for x in s), key=lambda v: v if math.isfinite(v) else math.inf)
        tau = max(x.tau for x in s)
        tv = (
            "-"
            if r.tv is None
            else f"{r.tv:.3f} ({r.noise_floor:.3f} / {r.noise_floor_effective:.3f})"
        )
        accept = "-" if r.acceptance is None else f"{r.acceptance:.0%}"
        return [
            r.name,
            f"{r.sweeps:,}",
            f"{r.seconds:.2f}",
            f"{bulk:.1f}",
            f"{tail:.1f}",
            f"{rhat:.3f}",
            f"{tau:.1f}",
            accept,
            tv,
            "ok" if r.trusted else f"{len(r.findings)} finding(s)",
        ]

    def print(self, console=None) -> None:
        """Print the table, then each sampler's findings ("no problem found" when none), on a
        rich ``console`` (default: a new one)."""
        from rich.console import Console

        console = console or Console()
        console.print(self.table())
        for r in self.results:
            console.print(f"[bold]{r.name}[/]:")
            for line in r.findings or ["no problem found"]:
                console.print(f"  - {line}", markup=False)
            for line in r.notes:
                console.print(f"  - note: {line}", markup=False)
        console.print(self.exact_note, markup=False)

    def __str__(self) -> str:
        from rich.console import Console

        console = Console(width=140, force_terminal=False)
        with console.capture() as capture:
            self.print(console)
        return capture.get()

    def to_dict(self) -> dict:
        return _finite(
            {
                "model": self.model,
                "settings": self.settings,
                "exact": self.exact_note,
                "samplers": [r.to_dict() for r in self.results],
            }
        )

    def to_json(self, path: str | Path) -> Path:
        path = Path(path)
        path.write_text(json.dumps(self.to_dict(), indent=2))
        return path

    def report(self, path: str | Path) -> Path:
        """A self-contained HTML report: the table, the findings, and trace and autocorrelation
        plots of every statistic (``samplers.report``)."""
        return write_report(self, path)


def _build(sampler, model: EnergyModel) -> Kernel:
    """A kernel bound to ``model``: instances are checked, classes and callables called."""
    if isinstance(sampler, Kernel):
        if sampler.model is not model:
            raise ValueError(f"{sampler!r} was built for another model")
        return sampler
    if callable(sampler):
        built = sampler(model)
        if isinstance(built, Kernel):
            return built
    raise TypeError(
        f"{sampler!r} is not a sampler: give a samplers.Kernel (init(num_chains, generator) -> "
        f"state, step(state) -> (state, StepInfo)), or a class or function that builds one from "
        f"the model"
    )


def _names(built, names) -> list[str]:
    if names is not None:
        names = list(names)
        if len(names) != len(built) or len(set(names)) != len(names):
            raise ValueError("names must be distinct, one per sampler")
        return names
    out = []
    for s in built:
        base = type(s).__name__
        name, i = base, 2
        while name in out:
            name, i = f"{base} {i}", i + 1
        out.append(name)
    return out


def compare(
    model: EnergyModel,
    samplers: Iterable,
    num_chains: int = 4,
    sweeps: int | None = None,
    seconds: float | None = None,
    statistics: Mapping[str, Statistic] | Iterable[str] | None = None,
    burn_in: float = 0.2,
    tv_blocks: Iterable[str] | None = None,
    max_states: int = 2**16,
    names: Iterable[str] | None = None,
    seed: int = 0,
    progress: bool = True,
) -> Comparison:
    """Run each sampler on ``model`` with the same budget and diagnose its draws.

    ``samplers``: instances (built on ``model``), or classes / functions taking the model (e.g.
    ``samplers.BlockGibbs`` or ``lambda m: samplers.ParallelTempering(m, 12)``), each a
    ``samplers.Kernel``: ``init``, ``step`` with its info record (acceptance and swap rates are
    read from there), ``target`` (the chains to diagnose, e.g. tempering's beta = 1 replicas),
    ``warmup`` (used for the burn-in) and ``cost`` (model sweeps per step). The steps run in
    ``samplers.runner.run_chain``.

    Budget, the same for every sampler: ``sweeps`` model sweeps per chain (a step of a sampler
    with cost c counts c, so tempering over R temperatures takes R times fewer steps), or
    ``seconds`` of wall time (converted into steps after timing a few). The first ``burn_in``
    fraction of the steps is burn-in (``warmup`` when the sampler has it: tempering tunes its
    ladder there); the rest are kept as draws, one per step per chain. Every sampler starts from
    its own ``init`` with the same seed.

    Per sampler and statistic (``statistics``: name -> function of a state giving one value per
    chain, or block names; default ``default_statistics``: the energy and each block's mean):
    bulk and tail ESS and their rates per second of sampling, split R-hat, the integrated
    autocorrelation time, the MCSE of the mean (``samplers.diagnostics``). On models whose
    ``tv_blocks`` (default: the visible blocks) have at most ``max_states`` configurations, the
    total variation between the kept draws' histogram and the exact p(x_B)
    (``ebm.enumeration.exact_log_marginal``), next to the noise floor of as many exact draws and of
    as many as the smallest bulk ESS (correlated draws deserve the wider floor).

    Findings flag: a statistic that never changes in some chain, R-hat above 1.01 (not
    converged), ESS below 400 (too few samples), chains shorter than 50 autocorrelation times
    (undermixed), total variation above the noise floor of the effective draws (that of as many
    exact draws as were kept is shown beside it), acceptance below 5%, tempering swaps below 20%
    between two temperatures or no round trip.
    """
    if (sweeps is None) == (seconds is None):
        raise ValueError("give exactly one budget: sweeps= or seconds=")
    if sweeps is not None and (isinstance(sweeps, bool) or int(sweeps) < 5):
        raise ValueError(f"sweeps must be an int >= 5, got {sweeps!r}")
    if seconds is not None and not float(seconds) > 0:
        raise ValueError(f"seconds must be positive, got {seconds!r}")
    if not 0.0 <= float(burn_in) < 1.0:
        raise ValueError(f"burn_in is a fraction in [0, 1), got {burn_in!r}")
    check_num_chains(num_chains)
    built = [_build(s, model) for s in samplers]
    if not built:
        raise ValueError("no sampler to compare")
    labels = _names(built, names)
    stats = _statistics(model, statistics)

    p_exact, exact_note, tv_list = _exact(model, tv_blocks, max_states)
    results = []
    for name, sampler in zip(labels, built, strict=True):
        results.append(
            _run_one(
                model,
                sampler,
                name,
                num_chains,
                sweeps,
                seconds,
                stats,
                burn_in,
                p_exact,
                tv_list,
                seed,
                progress,
            )
        )
    settings = {
        "num_chains": num_chains,
        "sweeps": sweeps,
        "seconds": seconds,
        "burn_in": burn_in,
        "seed": seed,
        "statistics": list(stats),
        "tv_blocks": tv_list,
        "device": str(model.device),
    }
    return Comparison(results, _describe(model), settings, exact_note)


def _describe(model: EnergyModel) -> str:
    blocks = ", ".join(
        f"{b}: {type(model.units[b]).__name__}({model.units[b].extra_repr()})" for b in model.blocks
    )
    return f"EnergyModel({blocks})"


def _statistics(model, statistics) -> dict[str, Statistic]:
    if statistics is None:
        return default_statistics(model)
    if isinstance(statistics, Mapping):
        out = dict(statistics)
    else:
        out = {}
        defaults = default_statistics(model)
        for b in statistics:
            key = f"mean {b}" if f"mean {b}" in defaults else b
            if key not in defaults:
                raise ValueError(
                    f"unknown statistic {b!r}: give 'energy', a block name "
                    f"({', '.join(model.blocks)}) or a dict of functions"
                )
            out[key] = defaults[key]
    if not out:
        raise ValueError("no statistic to diagnose")
    return out


def _exact(model, tv_blocks, max_states):
    blocks = list(model.visible if tv_blocks is None else tv_blocks)
    try:
        log_p = exact_log_marginal(model, blocks, max_states=max_states)
    except ValueError as err:
        return None, f"no total variation: {err}", blocks
    note = (
        f"total variation over the {len(log_p):,} configurations of {blocks}, against p(x) "
        f"computed exactly; the floors in brackets: 95% of sets of exact draws show less, for as "
        f"many draws as were kept (n) and for as many as the smallest bulk ESS"
    )
    return log_p.exp().cpu().numpy(), note, blocks


def _run_one(
    model,
    sampler: Kernel,
    name,
    chains,
    sweeps,
    seconds,
    stats,
    burn_in,
    p_exact,
    tv_blocks,
    seed,
    progress,
) -> SamplerResult:
    gen = torch.Generator(device=model.device).manual_seed(seed)
    elapsed = 0.0
    start = time.perf_counter()
    with torch.no_grad():
        state = sampler.init(chains, gen)
    elapsed += time.perf_counter() - start
    calibration = 0
    if seconds is not None:  # time a few steps to turn seconds into steps, doubling them
        spent, batch = 0.0, 3
        while spent < 0.02 * seconds or not calibration:
            run = run_chain(sampler, state, batch, timed=True)
            state, spent, calibration = run.state, spent + run.seconds, calibration + batch
            batch = calibration
        elapsed += spent
        total = max(5, int(seconds / (spent / calibration)))
    else:
        total = max(5, int(sweeps) // sampler.cost)
    warm = int(burn_in * total)
    start = time.perf_counter()
    with torch.no_grad():
        state = sampler.warmup(state, warm)
    elapsed += time.perf_counter() - start

    keep = total - warm
    traces = {k: np.empty((chains, keep)) for k in stats}
    counts = None if p_exact is None else torch.zeros(len(p_exact), dtype=torch.int64)
    moves = _Moves()

    def record(x: dict, i: int) -> None:
        moves.observe(x)
        for k, fn in stats.items():
            traces[k][:, i] = fn(x).detach().double().cpu().numpy()
        if counts is not None:
            idx = state_index(model, tv_blocks, x).cpu()
            counts.add_(torch.bincount(idx, minlength=len(counts)))

    run = run_chain(sampler, state, keep, [record], progress, desc=name, timed=True)
    elapsed += run.seconds
    summaries = {k: summarize(v) for k, v in traces.items()}
    result = SamplerResult(
        name=name,
        chains=chains,
        steps=total + calibration,
        burn_in_steps=warm,
        sweeps=(total + calibration) * sampler.cost,
        seconds=elapsed,
        statistics=summaries,
        acceptance=run.acceptance,
        unmoved=moves.unmoved(),
        traces=traces,
    )
    if run.swap_rates is not None:
        result.swap_rates = [float(r) for r in run.swap_rates]
        result.betas = [float(b) for b in run.betas]
        result.round_trips = run.round_trips
    if counts is not None:
        n = int(counts.sum())
        q = counts.double().numpy() / n
        result.tv = float(0.5 * np.abs(q - p_exact).sum())
        result.tv_draws = n
        result.noise_floor = noise_floor(p_exact, n, seed=seed)
        ess = [s.ess_bulk for s in summaries.values() if s.varying_chains > 0]
        result.effective_draws = float(max(1.0, min(ess))) if ess else 1.0
        result.noise_floor_effective = noise_floor(
            p_exact, round(result.effective_draws), seed=seed
        )
    result.findings = findings(result)
    result.notes = _constant_statistics(result)
    return result


class _Moves:
    """Per block, which chains' states changed at least once over the kept draws; stops comparing
    once every chain of every block has moved."""

    def __init__(self):
        self.previous: dict | None = None
        self.moved: dict[str, torch.Tensor] = {}

    def observe(self, x: dict) -> None:
        if self.moved and all(bool(m.all()) for m in self.moved.values()):
            return
        if self.previous is not None:
            for b, v in x.items():
                changed = (v != self.previous[b]).flatten(1).any(1)
                self.moved[b] = changed | self.moved[b] if b in self.moved else changed
        self.previous = {b: v.clone() for b, v in x.items()}

    def unmoved(self) -> dict[str, int]:
        """Block -> the number of chains in which it never changed (empty before two draws)."""
        return {b: int((~m.cpu()).sum()) for b, m in self.moved.items()}


def _reads_a_still_block(r: SamplerResult, key: str) -> bool:
    """Whether statistic ``key`` reads a block that did not move in some chain: block b for
    ``mean b``, any block otherwise; True when the movement of the blocks was not recorded."""
    if not r.unmoved:
        return True
    block = key[len("mean ") :] if key.startswith("mean ") else None
    blocks = [block] if block in r.unmoved else list(r.unmoved)
    return any(r.unmoved[b] for b in blocks)


def _constant_statistics(r: SamplerResult) -> list[str]:
    """Notes on statistics constant in some chain although the blocks they read moved in every
    chain: they say nothing about mixing and are left out of the findings and the table."""
    return [
        f"'{k}' stayed constant in {s.chains - s.varying_chains} of {s.chains} chains while the "
        f"states it reads moved in every chain: it cannot show mixing (uninformative), so it is "
        f"left out of the verdict; choose other statistics (statistics=...)."
        for k, s in r.statistics.items()
        if s.varying_chains < s.chains and not _reads_a_still_block(r, k)
    ]


def findings(r: SamplerResult) -> list[str]:
    """Plain-words reasons not to trust a sampler's draws (empty when none is found). A block
    whose state never changed in some chain is a finding (never updated, or stuck); a statistic
    constant in some chain is one only when the blocks it reads did not all move (otherwise it
    is uninformative: a note, not a finding)."""
    out = []
    for b, n in r.unmoved.items():
        if n:
            where = "any chain" if n == r.chains else f"{n} of {r.chains} chains"
            out.append(
                f"block '{b}' never changed in {where}: a block that is never updated, or chains "
                f"stuck in one state."
            )
    for k, s in r.statistics.items():
        if s.varying_chains < s.chains:
            if not _reads_a_still_block(r, k):
                continue
            where = (
                "any chain"
                if s.varying_chains == 0
                else (f"{s.chains - s.varying_chains} of {s.chains} chains")
            )
            out.append(
                f"'{k}' never changed in {where}: a block that is never updated, or chains stuck "
                f"in one state."
            )
            continue
        if not math.isfinite(s.rhat) or s.rhat > RHAT_LIMIT:
            out.append(
                f"not converged: split R-hat of '{k}' is {s.rhat:.3f} (above {RHAT_LIMIT}); the "
                f"chains disagree with each other or with their own halves."
            )
        if min(s.ess_bulk, s.ess_tail) < MIN_ESS:
            out.append(
                f"too few samples: '{k}' has bulk ESS {s.ess_bulk:.0f} and tail ESS "
                f"{s.ess_tail:.0f} (below {MIN_ESS}); run longer or with more chains."
            )
        if s.draws < DRAWS_PER_TAU * s.tau:
            out.append(
                f"undermixed: the autocorrelation time of '{k}' is {s.tau:.1f} steps, more than "
                f"1/{DRAWS_PER_TAU} of the {s.draws} draws per chain, so its ESS and MCSE are "
                f"unreliable."
            )
    out.extend(_tv_findings(r))
    if r.acceptance is not None and r.swap_rates is None and r.acceptance < MIN_ACCEPT:
        out.append(f"rarely moves: mean acceptance rate {r.acceptance:.1%}.")
    if r.swap_rates is not None:
        rates = np.asarray(r.swap_rates)
        if rates.size and np.nanmin(rates) < MIN_SWAP:
            k = int(np.nanargmin(rates))
            out.append(
                f"tempering ladder has a gap: swaps between beta {r.betas[k]:.3f} and "
                f"{r.betas[k + 1]:.3f} are accepted {rates[k]:.0%} of the time; use more "
                f"temperatures."
            )
        if r.round_trips == 0:
            out.append(
                "no replica went from beta = 0 to beta = 1 and back: the tempering has not "
                "carried any state across the ladder."
            )
    return out


def _tv_findings(r: SamplerResult) -> list[str]:
    """Total variation against the noise floor of as many exact draws as the smallest ESS: above
    it, the draws do not follow p(x) even allowing for their correlation. The floor of as many
    exact draws as were kept is lower; a sound sampler whose draws are correlated lands above it
    as a rule, so it is shown next to the other (in the table and the finding) but flags nothing
    on its own."""
    if r.tv is None or r.noise_floor_effective is None or r.tv <= r.noise_floor_effective:
        return []
    line = (
        f"above the noise floor: total variation to the exact distribution is {r.tv:.3f}; 95% "
        f"of sets of {r.effective_draws:,.0f} exact draws (the smallest ESS) show less than "
        f"{r.noise_floor_effective:.3f}"
    )
    if r.noise_floor is not None and round(r.effective_draws) != r.tv_draws:
        line += f", and of {r.tv_draws:,} (as many as were kept) less than {r.noise_floor:.3f}"
    return [line + ". Even allowing for their correlation, the draws do not follow p(x)."]
