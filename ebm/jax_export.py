"""A JAX version of a model's free energy, for NumPyro's samplers (and anything else in JAX).

``to_jax(model)`` copies the current parameters into JAX arrays and returns a pure function
F(params, state) that equals ``model.free_energy`` on the same state: the unit types' statistics,
base energies and log-partitions and the factors' energies are written again in ``jax.numpy``;
the summed-out blocks use the same split as in torch (each factor linear in them: the offset is the
energy at t_u = 0 and eta_u = -dE/dt_u, here by ``jax.grad``). Supported: Bernoulli, Gaussian
(without precision terms) and Gamma units; Bias, Dense, StudentT and ProjectedStudentT factors.
Anything else raises a clear error. JAX is an optional dependency (``boltzkit[jax]``); arrays are
float64 (``jax_enable_x64`` is switched on).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from ebm.model import EnergyModel

__all__ = ["JaxEnergy", "to_jax"]


@dataclass
class JaxEnergy:
    """``free_energy(params, state)`` (state: block -> array of shape (batch, *block shape),
    returns (batch,)), the ``params`` it was exported with, and the ``sum_out`` blocks."""

    free_energy: Callable
    params: dict[str, Any]
    blocks: list[str]
    sum_out: list[str]


def _jax():
    try:
        import jax
        import jax.numpy as jnp
    except ImportError as err:  # pragma: no cover - jax is an optional extra
        raise ImportError("to_jax needs JAX: pip install 'boltzkit[jax]'") from err
    jax.config.update("jax_enable_x64", True)
    return jax, jnp


def _array(t) -> Any:
    _, jnp = _jax()
    return jnp.asarray(t.detach().cpu().double().numpy())


def _unit_functions(units) -> tuple[dict, Callable, Callable, Callable]:
    """(params, statistic(p, x), base_energy(p, x), log_partition(p, eta)) of a unit type."""
    jax, jnp = _jax()
    kind = type(units).__name__
    if kind == "Bernoulli":
        return (
            {},
            lambda p, x: x,
            lambda p, x: jnp.zeros(x.shape[0]),
            lambda p, eta: jax.nn.softplus(eta).sum(-1),
        )
    if kind == "Gaussian":
        params = {"loc": _array(units.loc), "log_scale": _array(units.log_scale)}

        def log_partition(p, eta):
            s = jnp.exp(p["log_scale"])
            per = p["loc"] * eta / s + 0.5 * eta**2 + p["log_scale"] + 0.5 * jnp.log(2 * jnp.pi)
            return per.sum(-1)

        return (
            params,
            lambda p, x: x / jnp.exp(p["log_scale"]),
            lambda p, x: (0.5 * ((x - p["loc"]) / jnp.exp(p["log_scale"])) ** 2).sum(-1),
            log_partition,
        )
    if kind == "Gamma":
        params = {"log_shape": _array(units.log_shape)}

        def log_partition(p, eta):
            alpha = jnp.exp(p["log_shape"])
            return (jax.scipy.special.gammaln(alpha) - alpha * jnp.log(1 - eta)).sum(-1)

        return (
            params,
            lambda p, x: x,
            lambda p, x: (x - (jnp.exp(p["log_shape"]) - 1) * jnp.log(x)).sum(-1),
            log_partition,
        )
    raise ValueError(f"to_jax does not support {kind} units yet")


def _factor_function(factor) -> tuple[dict, Callable]:
    """(params, energy(p, stats)) of a factor, stats flattened to (batch, size) per block."""
    jax, jnp = _jax()
    # the class name, seen through torch's parametrisation wrapper class
    kind = next(c.__name__ for c in type(factor).__mro__ if "Parametrized" not in c.__name__)
    blocks = factor.blocks
    if kind == "Bias":
        return {"bias": _array(factor.bias).reshape(-1)}, lambda p, t: -(t[blocks[0]] @ p["bias"])
    if kind == "Dense":
        a, b = blocks
        return {
            "weight": _array(factor.weight)
        }, lambda p, t: -((t[a] @ p["weight"]) * t[b]).sum(-1)
    if kind == "StudentT":
        x, u = blocks
        return {
            "weight": _array(factor.weight)
        }, lambda p, t: 0.5 * (t[u] * (t[x] @ p["weight"]) ** 2).sum(-1)
    if kind == "ProjectedStudentT":
        params = {
            "projection": _array(factor.projection),
            "log_df": _array(factor.log_df),
            "log_scale": _array(factor.log_scale),
        }

        def energy(p, t):
            y = t[blocks[0]] @ p["projection"].T
            log_p = jax.scipy.stats.t.logpdf(y, jnp.exp(p["log_df"]), 0.0, jnp.exp(p["log_scale"]))
            return (-log_p - 0.5 * y**2).sum(-1)

        return params, energy
    raise ValueError(f"to_jax does not support {kind} factors yet")


def to_jax(model: EnergyModel, blocks=None) -> JaxEnergy:
    """Export F(blocks) (default: the visible blocks, the others summed out, which must be
    possible) as a JAX function of (params, state); see the module docstring."""
    jax, jnp = _jax()
    blocks = list(model.visible if blocks is None else blocks)
    sum_out = [b for b in model.blocks if b not in blocks]
    model.summable(sum_out)
    for b in sum_out:
        if model.quadratic_factors(b):
            raise ValueError(f"to_jax cannot sum out block {b!r}: it has precision terms")
    units = {b: _unit_functions(model.units[b]) for b in model.blocks}
    factors = {name: _factor_function(f) for name, f in model.factors.items()}
    shapes = {b: model.units[b].shape for b in model.blocks}
    params = {
        "units": {b: u[0] for b, u in units.items()},
        "factors": {name: f[0] for name, f in factors.items()},
    }

    def free_energy(p, state):
        batch = next(iter(state.values())).shape[0]
        stats = {b: units[b][1](p["units"][b], state[b]).reshape(batch, -1) for b in blocks}
        total = sum(units[b][2](p["units"][b], state[b]) for b in blocks)
        zeros = {u: jnp.zeros((batch, math.prod(shapes[u]))) for u in sum_out}
        eta = {u: jnp.zeros_like(zeros[u]) for u in sum_out}
        for name, f in model.factors.items():
            energy = factors[name][1]
            touched = [u for u in sum_out if u in f.blocks]
            local = {**stats, **zeros}
            if not touched:
                total = total + energy(p["factors"][name], local)
                continue
            u = touched[0]
            total = total + energy(p["factors"][name], local)  # the offset: t_u = 0
            grad = jax.grad(
                lambda tu, f=energy, q=p["factors"][name], rest=local, u=u: f(
                    q, {**rest, u: tu}
                ).sum()
            )
            eta[u] = eta[u] - grad(zeros[u])
        for u in sum_out:
            total = total - units[u][3](p["units"][u], eta[u].reshape(batch, *shapes[u]))
        return total

    return JaxEnergy(free_energy=free_energy, params=params, blocks=blocks, sum_out=sum_out)
