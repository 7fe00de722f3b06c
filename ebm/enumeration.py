"""Exact enumeration of discrete blocks: which blocks to sum out analytically, the configurations
of the rest, exact free energies and exact marginal distributions (float64).

These are deterministic computations on a model (no sampling, no estimate), shared by the exact
estimators (``estimators.exact``) and by the samplers' comparisons against the exact distribution
(``samplers.compare``), so they live below both.
"""

from __future__ import annotations

import copy
import itertools
import math

import torch
from torch import Tensor

from ebm.model import EnergyModel

__all__ = [
    "choose_sum_out",
    "enumerate_states",
    "free_energy_plan",
    "exact_free_energy",
    "state_index",
    "exact_log_marginal",
]


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
    try:
        model.summable(continuous)
    except ValueError as err:
        raise ValueError(
            f"the continuous blocks {continuous} must be summed out (they cannot be enumerated) "
            f"and cannot be: {err}; exact log Z is not available for this model"
        ) from err

    def log_size(s):
        return sum(model.units[b].log2_num_states for b in discrete if b not in s)

    if len(discrete) <= 16:
        best = None
        for r in range(len(discrete), -1, -1):
            for extra in itertools.combinations(discrete, r):
                s = continuous + list(extra)
                if model.can_sum_out(s) and (best is None or log_size(s) < log_size(best) - 1e-12):
                    best = s
        return best
    chosen = list(continuous)
    for b in sorted(discrete, key=lambda b: -model.units[b].log2_num_states):
        if model.can_sum_out(chosen + [b]):
            chosen.append(b)
    return chosen


def describe_count(log2_count: float) -> str:
    """A number of states given by its log2: exact with thousands separators up to 2^50, else as
    a power of two (never formatting a huge integer)."""
    if log2_count < 50:
        return f"{round(2.0**log2_count):,} states (2^{log2_count:.1f})"
    return f"2^{log2_count:.1f} states"


def joint_size(model: EnergyModel, blocks, max_states: int, what: str) -> int:
    """The number of joint configurations of the discrete ``blocks``, an exact int, or ValueError
    naming ``what`` would be enumerated when it exceeds ``max_states``. Decided on log2 counts, so
    blocks of any size are refused without computing their count."""
    if isinstance(max_states, bool) or not isinstance(max_states, int) or max_states < 1:
        raise ValueError(f"max_states must be an int >= 1, got {max_states!r}")
    log2_size = sum(model.units[b].log2_num_states for b in blocks)
    if log2_size > math.log2(max_states) + 1e-9:
        raise ValueError(
            f"{what} would enumerate {describe_count(log2_size)}: the joint states of blocks "
            f"{list(blocks)}; the limit is max_states={max_states:,}"
        )
    return math.prod(int(model.units[b].num_states) for b in blocks)


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
    size = joint_size(
        model, rest, max_states, f"the free energy, per example, after summing out {sum_out},"
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


def state_index(model: EnergyModel, blocks: list[str], state: dict) -> Tensor:
    """The configuration number of ``state`` over ``blocks`` (int64, shape (batch,)): the inverse of
    ``enumerate_states`` (mixed radix, the first block varying fastest)."""
    index, stride = None, 1
    for b in blocks:
        units = model.units[b]
        part = units.index(state[b]) * stride
        index = part if index is None else index + part
        stride *= int(units.num_states)
    return index


def exact_log_marginal(
    model: EnergyModel, blocks=None, max_states: int = 2**20, chunk_size: int = 2**16
) -> Tensor:
    """log p(x_B) for every configuration x_B of the discrete ``blocks`` B (default: the visible
    blocks), in the order of ``enumerate_states``: shape (|B|,), float64.

    p(x_B) = exp(-F(x_B)) / Z with F the free energy of B (the other blocks summed out where they
    can be and enumerated where not, as ``exact_free_energy`` does) and log Z = logsumexp_x_B -F.
    Refuses (ValueError) when B has more than ``max_states`` configurations or holds a continuous
    block."""
    blocks = list(model.visible if blocks is None else blocks)
    unknown = [b for b in blocks if b not in model.units]
    if unknown or not blocks:
        raise ValueError(f"blocks must be a non-empty list of model blocks {model.blocks}")
    for b in blocks:
        if not model.units[b].discrete:
            raise ValueError(f"block {b!r} is continuous: its distribution cannot be enumerated")
    size = joint_size(model, blocks, max_states, "the marginal")
    configs = enumerate_states(model, blocks, 0, size, torch.float64)
    neg_f = -exact_free_energy(model, configs, chunk_size=chunk_size)
    return neg_f - torch.logsumexp(neg_f, 0)
