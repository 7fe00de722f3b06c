"""Exact log Z by variable elimination over blocks (sum-product in log space, float64).

For a model whose blocks are all discrete, the energy E(x) = sum_u E_0,u(x_u) + sum_f E_f(t(x))
makes the partition function a sum of products of local tables,

    Z = sum_{x_1} ... sum_{x_B} exp(-E(x)) = sum_x prod_u phi_u(x_u) prod_f phi_f(x_f),
    log phi_u = -E_0,u  (one axis: the states of block u),
    log phi_f = -E_f    (one axis per block that f touches: their joint states),

where x_u runs over the ``num_states`` configurations of block u. Blocks are summed out one at a
time in an elimination order: eliminating u adds the log tables that contain u, broadcast over the
union of their blocks (u and its neighbours in the current elimination graph), and replaces them
by one table over the neighbours, the logsumexp over the states of u:

    log m(x_N) = logsumexp_{x_u} sum_{tables g containing u} log phi_g(x_u, x_N).

Only differences from a maximum are exponentiated, so nothing overflows. When every block has been
eliminated what remains are constants, whose sum is log Z.

Cost: the intermediate table of u has prod_{b in {u} + N(u)} num_states_b entries. Over an order,
the largest is the product over the largest clique of the triangulated block graph (treewidth + 1
blocks): time and memory are exponential in that clique's number of states and linear in the
number of blocks, against enumeration's exponential in all of them (after summing out). The order
comes from networkx's treewidth heuristics (min fill-in or min degree) on the block graph, and the
largest table is computed, and refused above ``max_states``, before any work is done. The result
is exact: it equals enumeration (``exact_log_z``) up to float64 rounding.

A block whose units are coupled with each other (``Pairwise`` within a block, ``HigherOrder``)
is not one variable but n, one per unit: each coupling term becomes a table over its units
(log phi_r = w_r prod_{i in r} t_i), and each factor linear in the block splits as
E_f = offset_f(x_rest) - sum_i eta_f,i(x_rest) . t_i into a table over the other blocks and one
per unit. The elimination graph is then that of the units (a lattice's treewidth is its width).
"""

from __future__ import annotations

import copy
import math
import time
from collections import deque
from collections.abc import Callable

import networkx as nx
import torch
from networkx.algorithms.approximation import treewidth_min_degree, treewidth_min_fill_in
from torch import Tensor
from tqdm.auto import tqdm

from ebm.enumeration import describe_count
from ebm.model import EnergyModel
from estimators.estimate import Estimate

__all__ = ["elimination_log_z"]

_HEURISTICS = {"min_fill_in": treewidth_min_fill_in, "min_degree": treewidth_min_degree}

#: rows of joint block states evaluated per call of a factor's energy when building its table
_CHUNK = 2**16


def elimination_log_z(
    model: EnergyModel,
    max_states: int = 2**24,
    heuristic: str = "min_fill_in",
    progress: bool = False,
) -> Estimate:
    """log Z = log sum_x exp(-E(x)), exactly, by variable elimination over the model's blocks.

    Every block must be discrete. One log table per factor (-E_f over the joint states of the
    blocks it touches) and one per block (-E_0, its base energy) are built in float64 on a copy of
    the model; the blocks are then summed out one by one in the order that networkx's
    ``heuristic`` (``"min_fill_in"`` or ``"min_degree"``) gives on the block graph, each time by a
    logsumexp over the block's states of the sum of the tables that contain it (see the module
    docstring). Cost: exponential in the number of states of the largest clique (treewidth + 1
    blocks), linear in the number of blocks; the answer is the one enumeration gives, exactly.

    Refuses with ValueError, before doing any work, when a block is continuous (naming it) or when
    the order needs an intermediate table of more than ``max_states`` entries (giving its size, the
    treewidth and its blocks). ``extras``: ``treewidth`` (networkx's, in blocks), ``order`` (the
    elimination order) and ``largest_table`` (entries of the largest intermediate table).
    """
    start = time.perf_counter()
    if heuristic not in _HEURISTICS:
        raise ValueError(f"heuristic must be one of {sorted(_HEURISTICS)}, got {heuristic!r}")
    if isinstance(max_states, bool) or not isinstance(max_states, int) or max_states < 1:
        raise ValueError(f"max_states must be an int >= 1, got {max_states!r}")
    for b in model.blocks:
        units = model.units[b]
        if not units.discrete:
            raise ValueError(
                f"block {b!r} is continuous ({type(units).__name__}): variable elimination sums "
                f"over the states of discrete blocks only; exact_log_z can sum a continuous block "
                f"out analytically when no factor couples it to another summed-out block"
            )
    variables = _variables(model)
    pieces = _pieces(model, variables)
    width, order, cliques = _plan(variables, [scope for scope, _ in pieces], heuristic)
    largest = max(cliques, key=lambda c: c[1])
    if largest[1] > math.log2(max_states) + 1e-9:
        shown = largest[0] if len(largest[0]) <= 12 else [*largest[0][:12], "..."]
        raise ValueError(
            f"variable elimination needs a table of {describe_count(largest[1])} at "
            f"treewidth {width} (variables {shown}, {heuristic} order); "
            f"the limit is max_states={max_states:,}"
        )
    size = round(2 ** largest[1])

    m = copy.deepcopy(model).to(torch.float64)
    with torch.no_grad():
        tables = [(build(m), scope) for scope, build in pieces]
        names = list(variables)
        for v in tqdm(order, desc="eliminate", unit="variable", disable=not progress, leave=False):
            tables = _eliminate(names, tables, v)
        # every variable is gone: what is left are constants (one per connected component)
        log_z = sum((t for t, _ in tables), torch.zeros((), dtype=torch.float64, device=m.device))
    value = float(log_z)
    return Estimate(
        value=value,
        kind="exact",
        method="variable elimination",
        stderr=0.0,
        ci=(value, value),
        seconds=time.perf_counter() - start,
        extras={"treewidth": width, "order": order, "largest_table": size},
    )


def _plan(
    variables: dict[str, float], scopes: list[tuple[str, ...]], heuristic: str
) -> tuple[int, list[str], list[tuple[list[str], float]]]:
    """(networkx's treewidth, the elimination order, [(variables of each intermediate table, log2
    of its number of entries)] in that order), on the graph joining variables that share a table.

    The heuristic's tree decomposition is peeled leaf by leaf: a variable that lies in a leaf bag
    and not in the bag it hangs from appears in no other remaining bag, so eliminating it creates
    a table within that bag. The order is then played on the graph (with fill-in) to get the
    tables it really creates. Variables are relabelled 0..n-1 in model order first, so that
    networkx's set iteration, and with it the order, does not depend on string hashing.
    """
    names = list(variables)
    index = {v: i for i, v in enumerate(names)}
    log2_states = [variables[v] for v in names]
    g = nx.Graph()
    g.add_nodes_from(range(len(names)))
    for scope in scopes:
        ids = [index[v] for v in scope]
        g.add_edges_from((a, b) for k, a in enumerate(ids) for b in ids[k + 1 :])
    width, decomposition = _HEURISTICS[heuristic](g)
    order = _order_from_decomposition(decomposition, len(names))

    adjacency = {i: set(g[i]) - {i} for i in g}
    cliques = []
    for v in order:
        neighbours = adjacency.pop(v)
        clique = sorted(neighbours | {v})
        cliques.append(([names[i] for i in clique], sum(log2_states[i] for i in clique)))
        for a in neighbours:
            adjacency[a].discard(v)
            adjacency[a].update(neighbours - {a})
    return int(width), [names[i] for i in order], cliques


def _unit_name(block: str, i: int) -> str:
    return f"{block}[{i}]"


def _variables(model: EnergyModel) -> dict[str, float]:
    """The variables summed over, with log2 of their numbers of states: each block, or each unit
    of a block whose units are coupled (``EnergyModel.coupled_factors``)."""
    out = {}
    for b in model.blocks:
        units = model.units[b]
        if model.coupled_factors(b):
            per_unit = units.log2_num_states / units.shape[0]
            out.update({_unit_name(b, i): per_unit for i in range(units.shape[0])})
        else:
            out[b] = units.log2_num_states
    return out


def _pieces(model: EnergyModel, variables) -> list[tuple[tuple[str, ...], Callable]]:
    """The log tables of the sum, as (scope: the variables of its axes, a function of the float64
    model that builds it): one per uncoupled block (its base energy), one per unit of a coupled
    block (zero), per coupling term, and per factor (split per unit where it touches a coupled
    block)."""
    pieces = []
    for b in model.blocks:
        if model.coupled_factors(b):
            if model.units[b].has_base_energy:
                raise ValueError(f"block {b!r}: coupled units with a base energy are not summed")
            k = round(2 ** variables[_unit_name(b, 0)])
            for i in range(model.units[b].shape[0]):
                pieces.append(((_unit_name(b, i),), _zeros(k)))
        else:
            pieces.append(((b,), _bind(_block_table, b)))
    for name, f in model.factors.items():
        coupled = [b for b in dict.fromkeys(f.blocks) if model.coupled_factors(b)]
        if not coupled:
            pieces.append((tuple(f.blocks), _bind(_factor_table, name)))
        elif f.couples_units(coupled[0]):
            pieces += _term_pieces(model, name, f, coupled[0])
        else:
            pieces += _split_pieces(model, name, f, coupled)
    return pieces


def _bind(function, *args) -> Callable:
    return lambda m: function(m, *args)


def _zeros(k: int) -> Callable:
    return lambda m: torch.zeros(k, dtype=torch.float64, device=m.device)


def _unit_statistics(m: EnergyModel, b: str) -> Tensor:
    """t over the states of one unit of block b: shape (k, *trailing)."""
    units = m.units[b]
    single = type(units)(**{**units.config(), "n": 1})
    k = int(single.num_states)
    index = torch.arange(k, dtype=torch.int64, device=m.device)
    return single.statistic(single.states(index, device=m.device, dtype=torch.float64))[:, 0]


def _term_pieces(model: EnergyModel, name: str, f, b: str) -> list:
    """One table per coupling term r of a factor that gives its terms (``coupling_terms``: a
    ``Pairwise`` within b, a ``HigherOrder``): log phi_r = w_r prod_{i in r} t_i (dot products of
    vector statistics for pairs). The product table of an order and the weights are computed
    once per factor (``memo``), each term's table is its weight times that product."""
    orders = f.coupling_terms(b)
    if orders is None:
        raise ValueError(
            f"factor {name!r} ({type(f).__name__}) couples the units of block {b!r} without "
            f"giving its terms (coupling_terms): variable elimination over units cannot split it"
        )
    memo: dict = {}
    pieces = []
    for position, (terms, _) in enumerate(orders):
        for row, term in enumerate(terms.tolist()):
            scope = tuple(_unit_name(b, i) for i in term)
            pieces.append((scope, _bind(_term_table, name, b, position, row, memo)))
    return pieces


def _term_table(m: EnergyModel, name: str, b: str, position: int, row: int, memo) -> Tensor:
    """w_r times the product table of term ``row`` of the factor's order ``position``."""
    if position not in memo:
        terms, weights = m.factors[name].coupling_terms(b)[position]
        t = _unit_statistics(m, b)  # (k, *trailing)
        k = t.shape[0]
        if t.dim() == 1:
            product = t
            for _ in range(terms.shape[1] - 1):
                product = product.unsqueeze(-1) * t.reshape(*([1] * product.dim()), k)
        else:  # pairs of vector statistics: dot products
            product = t.reshape(k, -1) @ t.reshape(k, -1).T
        memo[position] = (weights.to(torch.float64), product)
    weights, product = memo[position]
    return weights[row] * product


def _split_pieces(model: EnergyModel, name: str, f, coupled: list[str]) -> list:
    """E_f = offset(x_rest) - sum_i eta_i(x_rest) . t_i for a factor linear in the coupled block
    b it touches: a table over its other blocks and one per unit of b."""
    b = coupled[0]
    if len(coupled) > 1 or not f.linear_in(b):
        raise ValueError(
            f"factor {name!r} touches block(s) {coupled} whose units are coupled, and is not linear "
            f"in one of them: variable elimination over units cannot split it"
        )
    rest = tuple(x for x in f.blocks if x != b)
    pieces = [(rest, _bind(_split_table, name, b, rest, None))]
    for i in range(model.units[b].shape[0]):
        pieces.append(((*rest, _unit_name(b, i)), _bind(_split_table, name, b, rest, i)))
    return pieces


def _split_table(m: EnergyModel, name: str, b: str, rest: tuple, unit: int | None) -> Tensor:
    """-offset over the joint states of ``rest`` (unit None), or eta_unit . t_unit over them and
    the unit's states (the unit's axis last)."""
    f = m.factors[name]
    sizes = [int(m.units[x].num_states) for x in rest]
    t_unit = _unit_statistics(m, b)
    k = t_unit.shape[0]
    width = 1 if unit is None else k
    out = torch.empty((math.prod(sizes), width), dtype=torch.float64, device=m.device)
    for rows, stats in _joint_statistics(m, list(rest)):
        count = rows.stop - rows.start
        stats[b] = torch.zeros((count, *m.units[b].shape), dtype=torch.float64, device=m.device)
        if unit is None:
            out[rows, 0] = -f.offset(b, stats).expand(count)
        else:
            eta = f.natural(b, stats)[:, unit].reshape(count, -1)
            out[rows] = eta @ t_unit.reshape(k, -1).T
    if unit is None:
        return out.reshape(sizes)
    return out.reshape(*sizes, k)


def _joint_statistics(m: EnergyModel, blocks: list[str]):
    """The joint states of ``blocks`` (the last varying fastest) in chunks of ``_CHUNK``: yields
    (their row numbers as a slice, {block: statistics}) per chunk."""
    sizes = [int(m.units[b].num_states) for b in blocks]
    strides = [math.prod(sizes[j + 1 :]) for j in range(len(sizes))]
    total = math.prod(sizes)
    for lo in range(0, total, _CHUNK):
        index = torch.arange(lo, min(lo + _CHUNK, total), dtype=torch.int64, device=m.device)
        stats = {
            b: m.units[b].statistic(_block_states(m, b, (index // s) % n))
            for b, s, n in zip(blocks, strides, sizes, strict=True)
        }
        yield slice(lo, lo + len(index)), stats


def _order_from_decomposition(decomposition: nx.Graph, n: int) -> list[int]:
    """An elimination order of nodes 0..n-1 from a tree decomposition (bags are frozensets)."""
    degree = dict(decomposition.degree())
    removed: set[frozenset] = set()
    queue = deque(bag for bag in decomposition if degree[bag] <= 1)
    done = [False] * n
    order: list[int] = []
    while queue:
        bag = queue.popleft()
        if bag in removed:
            continue
        removed.add(bag)
        parents = [p for p in decomposition[bag] if p not in removed]
        keep = parents[0] if parents else frozenset()
        for v in sorted(bag - keep):
            if not done[v]:
                done[v] = True
                order.append(v)
        for p in parents:
            degree[p] -= 1
            if degree[p] <= 1:
                queue.append(p)
    # a valid decomposition covers every node; anything missed is still eliminated (and costed)
    order.extend(v for v in range(n) if not done[v])
    return order


def _block_states(m: EnergyModel, b: str, index: Tensor) -> Tensor:
    return m.units[b].states(index, device=m.device, dtype=torch.float64)


def _block_table(m: EnergyModel, b: str) -> Tensor:
    """-E_0,b over the states of block b: shape (num_states,)."""
    n = int(m.units[b].num_states)
    out = torch.empty(n, dtype=torch.float64, device=m.device)
    for lo in range(0, n, _CHUNK):
        index = torch.arange(lo, min(lo + _CHUNK, n), dtype=torch.int64, device=m.device)
        out[lo : lo + len(index)] = -m.units[b].base_energy(_block_states(m, b, index))
    if torch.isnan(out).any():
        raise ValueError(f"block {b!r}: the base energy is NaN at some state")
    return out


def _factor_table(m: EnergyModel, name: str) -> Tensor:
    """-E_f over the joint states of the blocks f touches, one axis per block (in f.blocks order,
    the last varying fastest)."""
    f = m.factors[name]
    blocks = list(f.blocks)
    sizes = [int(m.units[b].num_states) for b in blocks]
    out = torch.empty(math.prod(sizes), dtype=torch.float64, device=m.device)
    for rows, stats in _joint_statistics(m, blocks):
        e = f.energy(stats)
        count = rows.stop - rows.start
        if tuple(e.shape) != (count,):
            raise ValueError(
                f"factor {name!r}: energy must return shape (batch,), got {tuple(e.shape)}"
            )
        out[rows] = -e
    if torch.isnan(out).any():
        raise ValueError(f"factor {name!r}: the energy is NaN at some joint state of {blocks}")
    return out.reshape(sizes)


def _broadcast(table: Tensor, axes: tuple[str, ...], scope: list[str]) -> Tensor:
    """``table`` (one axis per block of ``axes``) viewed over ``scope``, size 1 where it is absent."""
    perm = sorted(range(len(axes)), key=lambda i: scope.index(axes[i]))
    shape = [table.shape[axes.index(b)] if b in axes else 1 for b in scope]
    return table.permute(perm).reshape(shape)


def _eliminate(
    blocks: list[str], tables: list[tuple[Tensor, tuple[str, ...]]], v: str
) -> list[tuple[Tensor, tuple[str, ...]]]:
    """Sum block v out: logsumexp over v of the sum of the tables that contain it."""
    touching = [(t, axes) for t, axes in tables if v in axes]
    rest = [(t, axes) for t, axes in tables if v not in axes]
    scope = [b for b in blocks if any(b in axes for _, axes in touching)]
    acc = None
    for t, axes in touching:
        t = _broadcast(t, axes, scope)
        acc = t if acc is None else acc + t
    message = torch.logsumexp(acc, dim=scope.index(v))
    rest.append((message, tuple(b for b in scope if b != v)))
    return rest
