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
from estimators.exact import choose_sum_out, enumerate_states

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
    configurations (at most ``max_states``) for each example, in float64. So a CRBM with Gaussian
    visibles enumerates its hidden units and integrates v. The value is exact for these examples;
    ``stderr`` is the standard error of the mean over examples (its error as an estimate of the
    expected conditional log-likelihood).
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
    unclamped = [b for b in model.blocks if b not in given]
    sum_out = choose_sum_out(model, among=unclamped)
    enumerated = [b for b in unclamped if b not in sum_out]
    size = math.prod(model.units[b].num_states for b in enumerated)
    if size > max_states:
        raise ValueError(
            f"the unclamped blocks {enumerated} have {size:,.0f} joint states to enumerate after "
            f"summing out {sum_out}; the limit is max_states={max_states:,}"
        )
    model = copy.deepcopy(model).double()  # float64 throughout, the caller's model untouched
    state = {b: x.double() for b, x in state.items()}
    configs = enumerate_states(model, enumerated, 0, int(size))
    n = next(iter(state.values())).shape[0]
    values = []
    with torch.no_grad():
        f_data = model.free_energy({b: state[b] for b in model.visible})
        for i in range(n):
            rows = {b: state[b][i : i + 1].expand(int(size), *state[b].shape[1:]) for b in given}
            f_all = model.free_energy({**rows, **configs}, sum_out=sum_out)
            values.append(float(-f_data[i] - torch.logsumexp(-f_all, 0)))
    v = torch.tensor(values, dtype=torch.float64)
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
