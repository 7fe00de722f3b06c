"""Hand a declared discrete model to thrml (Extropic's JAX library for block Gibbs sampling).

``to_thrml(model)`` rewrites the energy of an ``EnergyModel`` over ``Bernoulli`` ({0, 1}) and
``Spin`` ({-1, +1}) blocks as a thrml spin EBM and builds thrml's block Gibbs program that updates
the blocks in the model's own colour schedule (``model.schedule``: one thrml superblock per colour
class, one thrml ``Block`` of ``SpinNode``s per block of ours). The returned :class:`ThrmlModel`
holds the thrml objects and helpers to start, run and read back many independent chains.

thrml knows only spins s in {-1, +1} (stored as booleans, True = +1) and energy terms of the form
-w s_1 ... s_m (``thrml.models.SpinEBMFactor``: one weight per term, one node per group and term).
Every unit of ours is written as x = a s + c with

    Bernoulli: x = (s + 1) / 2   (a = 1/2, c = 1/2),        Spin: x = s   (a = 1, c = 0),

and every supported factor is a multilinear form E_f(x) = -T[x_1, ..., x_K] in its K blocks with a
coefficient tensor T (shape (n_1, ..., n_K)):

    Bias(u):             T = bias                                   (E = -bias . x_u)
    Dense(a, b):         T = W                                      (E = -x_a^T W x_b)
    ThirdOrder(a, b, c): T = W                                      (E = -sum_ijk W_ijk a_i b_j c_k)
    Factored3Way(x,y,h): T_ijk = sum_f Wx_if Wy_jf Wh_kf            (E = -sum_f (x.Wx_f)(y.Wy_f)(h.Wh_f))

Substituting x_k = a_k s_k + c_k and expanding gives, for every subset S of the factor's blocks,

    E_f = -sum_S J_S[s_S] - const,   J_S = (prod_{k in S} a_k) * T contracted with c_k for k not in S,

so for instance a Bernoulli-Bernoulli ``Dense`` becomes the coupling J = W / 4 plus the spin
biases h_a = W 1 / 4 and h_b = W^T 1 / 4 (and the constant 1^T W 1 / 4), a ``Bias`` b on a
Bernoulli block the spin bias b / 2, a Bernoulli-Spin ``Dense`` the coupling W / 2 plus the spin
bias W^T 1 / 2 on the Spin block, and a Bernoulli ``Factored3Way`` the three-spin term T / 8 plus
pairwise terms (T summed over the third index) / 8 and biases (T summed over two indices) / 8.
Subsets that leave out a Spin block vanish (c = 0). Equal subsets from different factors are
summed, and each nonzero J_S becomes one ``SpinEBMFactor`` over all index combinations (dense: no
entry is dropped). Then

    E_ours(x) = E_thrml(s) + ``constant``   for every state,

so the exported model's Boltzmann distribution is exactly ours (the constant only shifts log Z).
The weights are cast to ``dtype`` (float32 by default, thrml's usual precision; float64 needs
``jax.config.update("jax_enable_x64", True)`` first).

thrml's factors are per-term and have no low-rank form, so a ``Factored3Way`` is expanded into its
full n_x n_y n_h tensor (``max_terms`` guards the size). Anything else (Gaussian, Gamma,
Categorical or Markov-chain units; StudentT, covariance, emission, ... factors; a factor touching
one block twice) is refused with a ValueError naming it. thrml and JAX are optional dependencies
(``pip install thrml``), imported only when exporting.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from ebm.model import EnergyModel

__all__ = ["ThrmlModel", "to_thrml"]

#: x = a s + c for each supported unit type
_AFFINE = {"Bernoulli": (0.5, 0.5), "Spin": (1.0, 0.0)}
_FACTORS = ("Bias", "Dense", "ThirdOrder", "Factored3Way")


@dataclass
class ThrmlModel:
    """A model exported to thrml (see the module docstring for the energy mapping).

    - ``ebm``: the ``thrml.models.FactorizedEBM`` of the spin factors (its ``energy(state,
      blocks)`` gives E_thrml of one configuration), ``factors`` its ``SpinEBMFactor`` list;
    - ``program``: the ``thrml.FactorSamplingProgram`` (block Gibbs, ``SpinGibbsConditional``),
      its free superblocks the colour classes of ``schedule`` in order;
    - ``nodes``: block name -> the thrml ``Block`` of its ``SpinNode``s (unit i is node i);
    - ``order``: the block names in the order of thrml's free blocks (the schedule flattened):
      a thrml state is a list parallel to it of boolean arrays (chains, n), True = spin +1;
    - ``constant``: E_ours(x) - E_thrml(s), the same for every state.

    ``init(key, num_chains)`` starts chains uniformly at random (as ``samplers.BlockGibbs``);
    ``run(key, state, num_sweeps)`` runs ``num_sweeps`` sweeps (every colour class once, in order)
    of every chain, independently (jit-compiled, one compilation per state shape and number of
    sweeps); ``to_ebm_state(state)`` gives our state dict {block: (chains, n)} of torch tensors in
    {0, 1} / {-1, +1} coding; ``from_ebm_state(state)`` goes the other way.
    """

    ebm: Any
    factors: list[Any]
    program: Any
    nodes: dict[str, Any]
    order: list[str]
    schedule: list[list[str]]
    units: dict[str, str]
    constant: float
    init: Callable = field(repr=False)
    run: Callable = field(repr=False)
    to_ebm_state: Callable = field(repr=False)
    from_ebm_state: Callable = field(repr=False)


def _thrml():
    try:
        import equinox as eqx
        import jax
        import jax.numpy as jnp
        import thrml
        from thrml import models as thrml_models
    except ImportError as err:  # pragma: no cover - thrml is an optional dependency
        raise ImportError("to_thrml needs thrml (and JAX): pip install thrml") from err
    return thrml, thrml_models, jax, jnp, eqx


def _kind(obj) -> str:
    """The class name, seen through torch's parametrisation wrapper class."""
    return next(c.__name__ for c in type(obj).__mro__ if "Parametrized" not in c.__name__)


def _numpy(t) -> np.ndarray:
    return t.detach().cpu().double().numpy()


def _tensor(name: str, factor) -> np.ndarray:
    """The coefficient tensor T of a supported factor: E_f = -T[t(block 1), ..., t(block K)]."""
    kind = _kind(factor)
    if kind == "Bias":
        return _numpy(factor.bias).reshape(-1)
    if kind in ("Dense", "ThirdOrder"):
        return _numpy(factor.weight)
    if kind == "Factored3Way":
        wx, wy, wh = (_numpy(w) for w in factor.factors)
        return np.einsum("if,jf,kf->ijk", wx, wy, wh)
    raise ValueError(
        f"to_thrml does not support factor {name!r} ({kind}); supported: {', '.join(_FACTORS)} "
        f"over Bernoulli and Spin blocks"
    )


def _spin_terms(
    model: EnergyModel, max_terms: int
) -> tuple[dict[tuple[str, ...], np.ndarray], float]:
    """{blocks S (in model order): J_S} and the constant, as in the module docstring."""
    rank = {b: i for i, b in enumerate(model.blocks)}
    terms: dict[tuple[str, ...], np.ndarray] = {}
    constant = 0.0
    total = 0
    for name, factor in model.factors.items():
        kind = _kind(factor)
        if kind not in _FACTORS:
            _tensor(name, factor)  # raises, naming the factor
        blocks = tuple(factor.blocks)
        if len(set(blocks)) != len(blocks):
            raise ValueError(
                f"to_thrml does not support factor {name!r} ({kind}): it touches block "
                f"{next(b for b in blocks if blocks.count(b) > 1)!r} twice"
            )
        size = math.prod(model.units[b].n for b in blocks)
        total += size
        if total > max_terms:
            raise ValueError(
                f"to_thrml: factor {name!r} ({kind}) brings the number of thrml terms to {total} "
                f"> max_terms={max_terms} (thrml stores one weight per term; a Factored3Way is "
                f"expanded into its full tensor)"
            )
        t = _tensor(name, factor).reshape([model.units[b].n for b in blocks])
        a = [_AFFINE[type(model.units[b]).__name__][0] for b in blocks]
        c = [_AFFINE[type(model.units[b]).__name__][1] for b in blocks]
        for r in range(len(blocks) + 1):
            for subset in itertools.combinations(range(len(blocks)), r):
                rest = [k for k in range(len(blocks)) if k not in subset]
                if any(c[k] == 0.0 for k in rest):
                    continue  # a Spin block left out: x = s has no constant part
                j = t
                for k in reversed(rest):  # contract the highest axes first: indices stay valid
                    j = np.tensordot(j, np.full(j.shape[k], c[k]), axes=([k], [0]))
                j = j * math.prod(a[k] for k in subset)
                if not subset:
                    constant -= float(j)
                    continue
                names = [blocks[k] for k in subset]
                perm = sorted(range(len(names)), key=lambda i: rank[names[i]])
                key = tuple(names[i] for i in perm)
                j = np.transpose(j, perm)
                terms[key] = terms[key] + j if key in terms else j
    return terms, constant


def _check_units(model: EnergyModel) -> None:
    for b in model.blocks:
        kind = type(model.units[b]).__name__
        if kind not in _AFFINE:
            raise ValueError(
                f"to_thrml does not support block {b!r} ({kind} units); supported: Bernoulli, Spin"
            )


def to_thrml(model: EnergyModel, dtype: str = "float32", max_terms: int = 50_000_000) -> ThrmlModel:
    """Export a discrete ``model`` (Bernoulli and Spin blocks; Bias, Dense, ThirdOrder and
    Factored3Way factors) to thrml, with block Gibbs in the model's colour schedule. The exported
    distribution equals the model's exactly (module docstring); ``dtype`` is that of thrml's
    weights. Raises ValueError naming any unsupported block or factor."""
    if not isinstance(model, EnergyModel):
        raise TypeError(f"to_thrml expects an EnergyModel, got {type(model).__name__}")
    _check_units(model)
    terms, constant = _spin_terms(model, max_terms)
    thrml, thrml_models, jax, jnp, eqx = _thrml()

    nodes = {
        b: thrml.Block([thrml.SpinNode() for _ in range(model.units[b].n)]) for b in model.blocks
    }
    factors = []
    for key, j in terms.items():
        if not np.any(j):
            continue  # e.g. a zero Spin bias: no term at all
        grid = np.indices(j.shape).reshape(len(key), -1)
        groups = [
            thrml.Block([nodes[b].nodes[i] for i in idx]) for b, idx in zip(key, grid, strict=True)
        ]
        factors.append(thrml_models.SpinEBMFactor(groups, jnp.asarray(j.reshape(-1), dtype=dtype)))
    ebm = thrml_models.FactorizedEBM(factors)

    schedule = [list(c) for c in model.schedule]
    order = [b for colour in schedule for b in colour]
    superblocks = [nodes[c[0]] if len(c) == 1 else tuple(nodes[b] for b in c) for c in schedule]
    spec = thrml.BlockGibbsSpec(superblocks, [], ebm.node_shape_dtypes)
    program = thrml.FactorSamplingProgram(
        spec, [thrml_models.SpinGibbsConditional() for _ in spec.free_blocks], factors, []
    )
    free = [nodes[b] for b in order]
    units = {b: type(model.units[b]).__name__ for b in model.blocks}

    @eqx.filter_jit
    def _sweeps(key, program, state, num_sweeps):
        schedule = thrml.SamplingSchedule(n_warmup=num_sweeps, n_samples=1, steps_per_sample=1)
        keys = jax.random.split(key, state[0].shape[0])

        def chain(k, s):
            out = thrml.sample_states(k, program, schedule, list(s), [], free)
            return [x[0] for x in out]  # the single observation, after num_sweeps sweeps

        return jax.vmap(chain)(keys, state)

    def init(key, num_chains: int) -> list:
        keys = jax.random.split(key, len(order))
        return [
            jax.random.bernoulli(k, 0.5, (int(num_chains), model.units[b].n))
            for k, b in zip(keys, order, strict=True)
        ]

    def run(key, state, num_sweeps: int) -> list:
        return _sweeps(key, program, list(state), int(num_sweeps))

    def to_ebm_state(state) -> dict[str, torch.Tensor]:
        out = {}
        for b, s in zip(order, state, strict=True):
            spins = torch.from_numpy(np.array(s, dtype=bool))
            low = 0.0 if units[b] == "Bernoulli" else -1.0
            out[b] = torch.where(spins, 1.0, low).to(model.dtype)
        return {b: out[b] for b in model.blocks}

    def from_ebm_state(state: dict[str, torch.Tensor]) -> list:
        threshold = {"Bernoulli": 0.5, "Spin": 0.0}
        return [jnp.asarray(_numpy(state[b]) > threshold[units[b]]) for b in order]

    return ThrmlModel(
        ebm=ebm,
        factors=factors,
        program=program,
        nodes=nodes,
        order=order,
        schedule=schedule,
        units=units,
        constant=constant,
        init=init,
        run=run,
        to_ebm_state=to_ebm_state,
        from_ebm_state=from_ebm_state,
    )
