"""Exact log Z: sum out what can be summed analytically, enumerate the rest in chunks (float64)."""

from __future__ import annotations

import copy
import itertools
import math
import time

import torch
from tqdm.auto import tqdm

from ebm.model import EnergyModel
from estimators.estimate import Estimate

__all__ = [
    "exact_log_z",
    "exact_samples",
    "exact_free_energy",
    "free_energy_plan",
    "choose_sum_out",
    "enumerate_states",
]


def _valid(model: EnergyModel, blocks) -> bool:
    try:
        model.summable(blocks)
    except ValueError:
        return False
    return True


def choose_sum_out(model: EnergyModel, among=None) -> list[str]:
    """The set S of blocks to sum out analytically that leaves the fewest states to enumerate.

    S must be summable together (no factor couples two of its blocks) and must hold every
    continuous block. Exhaustive over subsets for up to 16 blocks, greedy (largest first) above.
    ``among``: the blocks to choose from and cover (default: all; the others are held fixed, as
    when a conditional model's given blocks are clamped).
    """
    among = model.blocks if among is None else [b for b in model.blocks if b in set(among)]
    continuous = [b for b in among if not model.units[b].discrete]
    discrete = [b for b in among if model.units[b].discrete]
    if not _valid(model, continuous):
        raise ValueError(
            f"continuous blocks {continuous} cannot be summed out together and cannot "
            f"be enumerated: exact log Z is not available for this model"
        )

    def log_size(s):
        return sum(math.log(model.units[b].num_states) for b in discrete if b not in s)

    if len(discrete) <= 16:
        best = None
        for r in range(len(discrete), -1, -1):
            for extra in itertools.combinations(discrete, r):
                s = continuous + list(extra)
                if _valid(model, s) and (best is None or log_size(s) < log_size(best) - 1e-12):
                    best = s
        return best
    chosen = list(continuous)
    for b in sorted(discrete, key=lambda b: -model.units[b].num_states):
        if _valid(model, chosen + [b]):
            chosen.append(b)
    return chosen


def enumerate_states(model: EnergyModel, blocks: list[str], start: int, stop: int, dtype=None):
    """Joint configurations number ``start`` .. ``stop - 1`` of ``blocks`` (mixed radix, the first
    block varying fastest), as a state dict."""
    index = torch.arange(start, stop, dtype=torch.int64, device=model.device)
    state, stride = {}, 1
    for b in blocks:
        n = int(model.units[b].num_states)
        state[b] = model.units[b].states(
            (index // stride) % n, device=model.device, dtype=dtype or model.dtype
        )
        stride *= n
    return state


def _plan(model: EnergyModel, max_states: int, sum_out=None) -> tuple[list[str], list[str], int]:
    """(S summed out, the blocks to enumerate, their number of joint states), or ValueError."""
    sum_out = choose_sum_out(model) if sum_out is None else list(sum_out)
    model.summable(sum_out)
    rest = [b for b in model.blocks if b not in sum_out]
    for b in rest:
        if not model.units[b].discrete:
            raise ValueError(f"block {b!r} is continuous: it must be summed out, not enumerated")
    log_size = sum(math.log2(model.units[b].num_states) for b in rest)
    if log_size > math.log2(max_states) + 1e-9:
        size = 2.0**log_size
        raise ValueError(
            f"exact log Z would enumerate {size:,.0f} states (2^{log_size:.1f}) of blocks "
            f"{rest} after summing out {sum_out}; the limit is max_states={max_states:,}"
        )
    return sum_out, rest, math.prod(int(model.units[b].num_states) for b in rest)


def exact_samples(
    model: EnergyModel,
    num_samples: int,
    generator: torch.Generator | None = None,
    max_states: int = 2**24,
    chunk_size: int = 2**16,
) -> dict:
    """Independent exact draws from p(x) for a model that ``exact_log_z`` can enumerate.

    The enumerated blocks R are drawn from their marginal p(x_R) = exp(-F(x_R)) / Z (computed in
    float64 in chunks, then a categorical draw), and the summed-out blocks S from their exact
    conditional p(x_S | x_R). Returns a full state of ``num_samples`` rows in the model's dtype.
    """
    sum_out, rest, total = _plan(model, max_states)
    m = copy.deepcopy(model).to(torch.float64)
    with torch.no_grad():
        logits = torch.cat(
            [
                -m.free_energy(
                    enumerate_states(m, rest, lo, min(lo + chunk_size, total), torch.float64),
                    sum_out=sum_out,
                )
                for lo in range(0, total, chunk_size)
            ]
        )
        probs = torch.softmax(logits, 0)
        index = torch.multinomial(
            probs.to(model.device), num_samples, replacement=True, generator=generator
        )
        state = {}
        stride = 1
        for b in rest:
            n = int(model.units[b].num_states)
            state[b] = model.units[b].states(
                (index // stride) % n, device=model.device, dtype=model.dtype
            )
            stride *= n
        filled = model.with_placeholders(state, sum_out)
        for b in sum_out:  # summable together: conditionally independent given the rest
            state[b] = model.sample_block(b, filled, generator)
    return {b: state[b] for b in model.blocks}


def exact_log_z(
    model: EnergyModel,
    max_states: int = 2**24,
    sum_out=None,
    chunk_size: int = 2**16,
    progress: bool = False,
) -> Estimate:
    """log Z = log sum_x exp(-E(x)), exactly.

    The blocks S (``sum_out``; default ``choose_sum_out``) are summed analytically through their
    log-partition functions, and the remaining discrete blocks are enumerated in chunks of
    ``chunk_size`` configurations: log Z = logsumexp over x_-S of -F(x_-S). Everything is computed in
    float64 on a copy of the model. Refuses (ValueError, giving the size) when more than
    ``max_states`` configurations would have to be enumerated.
    """
    start = time.perf_counter()
    sum_out, rest, total = _plan(model, max_states, sum_out)
    m = copy.deepcopy(model).to(torch.float64)
    acc = torch.tensor(-math.inf, dtype=torch.float64, device=m.device)
    chunks = range(0, total, chunk_size)
    with torch.no_grad():
        for lo in tqdm(chunks, desc="enumerate", unit="chunk", disable=not progress, leave=False):
            state = enumerate_states(m, rest, lo, min(lo + chunk_size, total), torch.float64)
            f = m.free_energy(state, sum_out=sum_out)
            acc = torch.logaddexp(acc, torch.logsumexp(-f, 0))
    value = float(acc)
    return Estimate(
        value=value,
        kind="exact",
        method="exact",
        stderr=0.0,
        ci=(value, value),
        seconds=time.perf_counter() - start,
        extras={"states": total, "summed_out": sum_out, "enumerated": rest},
    )


def free_energy_plan(
    model: EnergyModel, kept, max_states: int = 2**16
) -> tuple[list[str], list[str], int]:
    """(S, R, |R|) for a free energy of the ``kept`` blocks: S the summable set among the other
    blocks that leaves the fewest states (every continuous one included; ``choose_sum_out``), R the
    rest of them, enumerated per example, and their number of joint states. Refuses (ValueError)
    above ``max_states``."""
    others = [b for b in model.blocks if b not in set(kept)]
    sum_out = choose_sum_out(model, among=others)
    rest = [b for b in others if b not in sum_out]
    size = math.prod(int(model.units[b].num_states) for b in rest)
    if size > max_states:
        raise ValueError(
            f"the free energy would enumerate {size:,} joint states of blocks {rest} per example "
            f"after summing out {sum_out}; the limit is max_states={max_states:,}"
        )
    return sum_out, rest, size


def exact_free_energy(
    model: EnergyModel, data, max_states: int = 2**16, chunk_size: int = 2**16
) -> torch.Tensor:
    """F(x) = -log sum exp(-E) over the blocks missing from ``data``, per example (float64), also
    where they cannot be summed out together (a DBM's hidden layers, a conditional model's free
    blocks): the set S of ``free_energy_plan`` is summed analytically and the others R enumerated
    (for a 2-layer DBM, h1 summed and h2 enumerated or the other way round, whichever leaves fewer
    states). Refuses when R has more than ``max_states`` joint states. Computed on a float64 copy
    of the model, ``chunk_size`` joint configurations at a time."""
    state = model.validate_data(data)
    sum_out, rest, size = free_energy_plan(model, list(state), max_states)
    m = copy.deepcopy(model).to(torch.float64)
    configs = enumerate_states(m, rest, 0, size, torch.float64)
    n = next(iter(state.values())).shape[0]
    per_chunk = max(1, chunk_size // size)
    out = []
    with torch.no_grad():
        for lo in range(0, n, per_chunk):
            rows = {b: x[lo : lo + per_chunk].double() for b, x in state.items()}
            k = next(iter(rows.values())).shape[0]
            joint = {b: x.repeat_interleave(size, 0) for b, x in rows.items()}
            joint.update({b: c.repeat(k, *([1] * (c.dim() - 1))) for b, c in configs.items()})
            f = m.free_energy(joint, sum_out=sum_out).reshape(k, size)
            out.append(-torch.logsumexp(-f, 1))
    return torch.cat(out)
