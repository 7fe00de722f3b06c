"""Exact log Z: sum out what can be summed analytically, enumerate the rest in chunks (float64).

The enumeration itself (``choose_sum_out``, ``enumerate_states``, ``exact_free_energy``, ...) lives
in ``ebm.enumeration`` and is re-exported here."""

from __future__ import annotations

import copy
import math
import time

import torch
from tqdm.auto import tqdm

from ebm.enumeration import (
    choose_sum_out,
    enumerate_states,
    exact_free_energy,
    exact_log_marginal,
    free_energy_plan,
    joint_size,
)
from ebm.model import EnergyModel
from estimators.estimate import Estimate

__all__ = [
    "exact_log_z",
    "exact_samples",
    "exact_free_energy",
    "free_energy_plan",
    "choose_sum_out",
    "enumerate_states",
    "exact_log_marginal",
]


def _plan(model: EnergyModel, max_states: int, sum_out=None) -> tuple[list[str], list[str], int]:
    """(S summed out, the blocks to enumerate, their number of joint states), or ValueError."""
    sum_out = choose_sum_out(model) if sum_out is None else list(sum_out)
    model.summable(sum_out)
    rest = [b for b in model.blocks if b not in sum_out]
    for b in rest:
        if not model.units[b].discrete:
            raise ValueError(f"block {b!r} is continuous: it must be summed out, not enumerated")
    size = joint_size(model, rest, max_states, f"exact log Z, after summing out {sum_out},")
    return sum_out, rest, size


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
