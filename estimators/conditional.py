"""Exact conditional log-likelihood log p(free visible blocks | given blocks), for conditional
models (gated RBM given x, CRBM given the past) whose unclamped blocks can be enumerated once the
summable ones are summed out."""

from __future__ import annotations

import copy
import math
import time

import torch

from ebm.model import EnergyModel
from estimators.estimate import Estimate
from estimators.exact import exact_free_energy, free_energy_plan

__all__ = ["exact_conditional_log_likelihood"]


def exact_conditional_log_likelihood(
    model: EnergyModel, data, given, max_states: int = 2**16
) -> Estimate:
    """Mean over the examples of

        log p(u | g) = -F(g, u) - log Z(g),   Z(g) = sum over (u', h) of exp(-E(g, u', h)),

    where g are the ``given`` (clamped) blocks, u the other visible blocks, h the hidden blocks and
    F the free energy with h summed out (they must be summable together). Z(g) sums the unclamped
    blocks: a summable set S of them (every continuous block among them, chosen to leave the
    fewest states, as ``exact_log_z`` does) analytically, the rest by enumerating their joint
    configurations (at most ``max_states``) for each example, in float64 (``exact_free_energy``).
    So a CRBM with Gaussian visibles enumerates its hidden units and integrates v. The value is
    exact for these examples; ``stderr`` is the standard error of the mean over examples (its error
    as an estimate of the expected conditional log-likelihood).
    """
    start = time.perf_counter()
    given = [given] if isinstance(given, str) else list(given)
    unknown = [b for b in given if b not in model.visible]
    if unknown:
        raise ValueError(f"given blocks {unknown} are not visible blocks of the model")
    state = model.validate_data(data)
    free = [b for b in model.visible if b not in given]
    if not free:
        raise ValueError("every visible block is given: nothing to predict")
    model.summable(model.hidden())
    sum_out, enumerated, _ = free_energy_plan(model, given, max_states)
    n = next(iter(state.values())).shape[0]
    with torch.no_grad():
        f_data = (
            copy.deepcopy(model).double().free_energy({b: state[b].double() for b in model.visible})
        )
        log_z_given = -exact_free_energy(model, {b: state[b] for b in given}, max_states)
    v = (-f_data - log_z_given).cpu()
    return Estimate(
        value=float(v.mean()),
        kind="point",
        method="exact: unclamped blocks enumerated or summed out",
        quantity=f"mean log p({', '.join(free)} | {', '.join(given)})",
        stderr=float(v.std() / math.sqrt(n)) if n > 1 else 0.0,
        seconds=time.perf_counter() - start,
        extras={
            "examples": n,
            "per_example": v,
            "given": given,
            "free": free,
            "summed_out": sum_out,
            "enumerated": enumerated,
        },
    )
