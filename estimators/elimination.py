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
"""

from __future__ import annotations

import copy
import math
import time
from collections import deque

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
    width, order, cliques = _plan(model, heuristic)
    largest = max(cliques, key=lambda c: c[1])
    if largest[1] > math.log2(max_states) + 1e-9:
        raise ValueError(
            f"variable elimination needs a table of {describe_count(largest[1])} at "
            f"treewidth {width} (blocks {largest[0]}, {heuristic} order); "
            f"the limit is max_states={max_states:,}"
        )
    size = math.prod(int(model.units[b].num_states) for b in largest[0])

    m = copy.deepcopy(model).to(torch.float64)
    with torch.no_grad():
        tables: list[tuple[Tensor, tuple[str, ...]]] = []
        for b in m.blocks:
            tables.append((_block_table(m, b), (b,)))
        for name, f in m.factors.items():
            tables.append((_factor_table(m, name, f), tuple(f.blocks)))
        for v in tqdm(order, desc="eliminate", unit="block", disable=not progress, leave=False):
            tables = _eliminate(m.blocks, tables, v)
        # every block is gone: what is left are constants (one per connected component)
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


def _plan(model: EnergyModel, heuristic: str) -> tuple[int, list[str], list[tuple[list[str], int]]]:
    """(networkx's treewidth, the elimination order, [(blocks of each intermediate table, log2 of
    its number of entries)] in that order).

    The heuristic's tree decomposition is peeled leaf by leaf: a block that lies in a leaf bag and
    not in the bag it hangs from appears in no other remaining bag, so eliminating it creates a
    table within that bag. The order is then played on the block graph (with fill-in) to get the
    tables it really creates. Blocks are relabelled 0..n-1 in model order first, so that networkx's
    set iteration, and with it the order, does not depend on string hashing.
    """
    blocks = list(model.blocks)
    index = {b: i for i, b in enumerate(blocks)}
    log2_states = [model.units[b].log2_num_states for b in blocks]
    g = nx.Graph()
    g.add_nodes_from(range(len(blocks)))
    g.add_edges_from((index[a], index[b]) for a, b in model.graph.block_graph().edges())
    width, decomposition = _HEURISTICS[heuristic](g)
    order = _order_from_decomposition(decomposition, len(blocks))

    adjacency = {i: set(g[i]) - {i} for i in g}
    cliques = []
    for v in order:
        neighbours = adjacency.pop(v)
        clique = sorted(neighbours | {v})
        cliques.append(([blocks[i] for i in clique], sum(log2_states[i] for i in clique)))
        for a in neighbours:
            adjacency[a].discard(v)
            adjacency[a].update(neighbours - {a})
    return int(width), [blocks[i] for i in order], cliques


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


def _factor_table(m: EnergyModel, name: str, f) -> Tensor:
    """-E_f over the joint states of the blocks f touches, one axis per block (in f.blocks order,
    the last varying fastest)."""
    blocks = list(f.blocks)
    sizes = [int(m.units[b].num_states) for b in blocks]
    strides = [math.prod(sizes[j + 1 :]) for j in range(len(sizes))]
    total = math.prod(sizes)
    out = torch.empty(total, dtype=torch.float64, device=m.device)
    for lo in range(0, total, _CHUNK):
        index = torch.arange(lo, min(lo + _CHUNK, total), dtype=torch.int64, device=m.device)
        stats = {
            b: m.units[b].statistic(_block_states(m, b, (index // s) % n))
            for b, s, n in zip(blocks, strides, sizes, strict=True)
        }
        e = f.energy(stats)
        if tuple(e.shape) != (len(index),):
            raise ValueError(
                f"factor {name!r}: energy must return shape (batch,), got {tuple(e.shape)}"
            )
        out[lo : lo + len(index)] = -e
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
