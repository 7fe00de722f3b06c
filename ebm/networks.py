"""Models whose structure lives between single units, declared from networkx graphs: the Ising
and Potts models, the semi-restricted Boltzmann machine and Sejnowski's higher-order machine.
Their couplings are ``Pairwise`` and ``HigherOrder`` factors within a block (one tensor of weights
each), so the graph colours the block's units and block Gibbs draws a colour class at a time."""

from __future__ import annotations

import itertools
import numbers

import networkx as nx
import torch

from ebm.factors import Bias, Dense, HigherOrder, Pairwise
from ebm.graph import Graph
from ebm.model import EnergyModel
from ebm.units import Bernoulli, Categorical, Gaussian, Spin, Units, _finite_param

__all__ = ["ising", "potts", "semi_restricted_bm", "higher_order_bm", "from_networkx"]

_UNIT_TYPES = {"spin": Spin, "bernoulli": Bernoulli, "gaussian": Gaussian}


def _check_graph(G) -> list:
    if not isinstance(G, nx.Graph):
        raise TypeError(f"expected a networkx graph, got {type(G).__name__}")
    if G.is_directed() or G.is_multigraph():
        raise ValueError(
            "expected an undirected simple graph (nx.Graph); convert with nx.Graph(G) (a "
            "directed graph's two arcs of a pair become one edge)"
        )
    loops = list(nx.selfloop_edges(G))
    if loops:
        raise ValueError(f"self-loop at node {loops[0][0]!r}: an edge couples two distinct units")
    nodes = list(G.nodes)
    if not nodes:
        raise ValueError("the graph has no nodes")
    return nodes


def _edge_values(G, edges, coupling, missing: float | None) -> torch.Tensor | None:
    """One coupling per edge: a number for all, or the edge attribute named ``coupling``. When no
    edge carries it: ``missing`` for all (None: no values, the factor initialises them); some
    edges without it: ValueError naming one."""
    if isinstance(coupling, numbers.Real) and not isinstance(coupling, bool):
        return torch.full((len(edges),), float(coupling), dtype=torch.get_default_dtype())
    if not isinstance(coupling, str):
        raise ValueError(f"coupling must be an edge attribute name or a number, got {coupling!r}")
    values = [G.edges[u, v].get(coupling) for u, v in edges]
    absent = [e for e, x in zip(edges, values, strict=True) if x is None]
    if len(absent) == len(edges):
        return (
            None
            if missing is None
            else torch.full((len(edges),), missing, dtype=torch.get_default_dtype())
        )
    if absent:
        raise ValueError(f"edge {absent[0]!r} has no {coupling!r} attribute (other edges do)")
    return _finite_param(
        torch.tensor(values, dtype=torch.get_default_dtype()), (len(edges),), coupling
    )


def _node_values(G, nodes, field, trailing=()) -> torch.Tensor | None:
    """One field per node (shape (n, *trailing)): None, a number, an array, or the node attribute
    named ``field`` (0 where a node lacks it)."""
    if field is None:
        return None
    shape = (len(nodes), *trailing)
    if isinstance(field, str):
        rows = [G.nodes[v].get(field, 0.0) for v in nodes]
        t = torch.stack(
            [torch.as_tensor(r, dtype=torch.get_default_dtype()).expand(trailing) for r in rows]
        )
        return _finite_param(t, shape, field)
    if isinstance(field, numbers.Real) and not isinstance(field, bool):
        return torch.full(shape, float(field), dtype=torch.get_default_dtype())
    return _finite_param(field, shape, "field")


def ising(G, coupling="weight", field=None, units: str = "spin") -> EnergyModel:
    """The Ising model on the graph G: one block ``s`` over ``list(G.nodes)`` (in that order),

        E(s) = -sum_{(i,j) in edges} J_ij s_i s_j - sum_i h_i s_i,

    with s in {-1, +1} (``units="spin"``) or {0, 1} (``"bernoulli"``). J: ``coupling``, a number
    for every edge or the name of an edge attribute (every edge must carry it; when none does,
    J = 1, a uniform ferromagnet); factor ``coupling`` (a ``Pairwise`` within ``s``). h: ``field``,
    None (no field factor), a number, an array of n, or a node attribute's name (0 where absent);
    factor ``field`` (a ``Bias``). A bipartite graph (a lattice) gives a two-class schedule.
    Numbers and attributes are taken in torch's default dtype; a float64 tensor makes a float64
    model.
    """
    nodes = _check_graph(G)
    if units not in ("spin", "bernoulli"):
        raise ValueError(f"units must be 'spin' or 'bernoulli', got {units!r}")
    index = {v: i for i, v in enumerate(nodes)}
    edges = list(G.edges)
    weight = _edge_values(G, edges, coupling, missing=1.0)
    pairs = [(index[u], index[v]) for u, v in edges]
    g = Graph()
    g.add_block("s", _UNIT_TYPES[units](len(nodes)), visible=True)
    g.add_factor(Pairwise("s", edges=pairs, weight=weight, name="coupling"))
    h = _node_values(G, nodes, field)
    if h is not None:
        g.add_factor(Bias("s", bias=h, name="field"))
    return EnergyModel(g)


def potts(G, q: int, coupling="weight", field=None) -> EnergyModel:
    """The q-state Potts model on G: one block ``s`` of ``Categorical(n, q)`` units over
    ``list(G.nodes)``,

        E(s) = -sum_{(i,j) in edges} J_ij [s_i = s_j] - sum_i h_i . e(s_i),

    (e(s_i) the one-hot code) with J as in ``ising`` (factor ``coupling``, a ``Pairwise`` whose
    dot products of one-hot codes are the agreements) and ``field`` None, an (n, q) array or a
    node attribute holding q numbers (factor ``field``). q = 2 is the Ising model with J/2.
    """
    nodes = _check_graph(G)
    index = {v: i for i, v in enumerate(nodes)}
    edges = list(G.edges)
    weight = _edge_values(G, edges, coupling, missing=1.0)
    g = Graph()
    g.add_block("s", Categorical(len(nodes), q), visible=True)
    pairs = [(index[u], index[v]) for u, v in edges]
    g.add_factor(Pairwise("s", edges=pairs, weight=weight, name="coupling"))
    h = _node_values(G, nodes, field, trailing=(q,))
    if h is not None:
        g.add_factor(Bias("s", bias=h, name="field"))
    return EnergyModel(g)


def semi_restricted_bm(
    n_visible: int, n_hidden: int, lateral=None, init_scale: float = 0.01
) -> EnergyModel:
    """A semi-restricted Boltzmann machine (Osindero & Hinton 2008): an RBM whose visible units
    are also coupled with each other,

        E(v, h) = -v^T W h - sum_{(i,j) in lateral} L_ij v_i v_j - b.v - c.h,

    v, h binary. ``lateral``: the visible pairs (an (m, 2) array; default every pair i < j).
    Factors ``W`` (Dense), ``lateral`` (Pairwise within ``v``), ``b``, ``c``; weights
    N(0, init_scale^2), biases 0. Given v the hidden units are independent; given h the visible
    units are a Boltzmann machine, drawn by colour classes of the lateral graph.
    """
    for name, n in (("n_visible", n_visible), ("n_hidden", n_hidden)):
        if isinstance(n, bool) or not isinstance(n, int) or n < 1:
            raise ValueError(f"{name} must be an int >= 1, got {n!r}")
    if lateral is None:
        lateral = list(itertools.combinations(range(n_visible), 2))
    g = Graph()
    g.add_block("v", Bernoulli(n_visible), visible=True)
    g.add_block("h", Bernoulli(n_hidden))
    g.add_factor(Dense("v", "h", init_scale=init_scale, name="W"))
    if len(lateral):
        g.add_factor(Pairwise("v", edges=lateral, init_scale=init_scale, name="lateral"))
    g.add_factor(Bias("v", name="b"), Bias("h", name="c"))
    return EnergyModel(g)


def higher_order_bm(
    n: int,
    triples=None,
    pairs=None,
    triple_weight=None,
    pair_weight=None,
    bias=None,
    init_scale: float = 0.1,
) -> EnergyModel:
    """Sejnowski's (1986) higher-order Boltzmann machine over n binary units s_i in {0, 1}:

        E(s) = -sum_{(i,j,k)} w_ijk s_i s_j s_k - sum_{(i,j)} w_ij s_i s_j - sum_i theta_i s_i,

    over the given ``triples`` and ``pairs`` (default: every i<j<k and every i<j). One Bernoulli
    block ``s``; factors ``triples`` (``HigherOrder``), ``pairs`` (``Pairwise`` within ``s``) and
    ``theta`` (``Bias``), each one tensor: weights as given, else N(0, init_scale^2) (biases 0).
    Units that share a term are coupled, so the schedule is a colouring of the units' interaction
    graph (with every triple, every pair of units interacts: n classes of one unit). Learning
    signal for w_ijk: <s_i s_j s_k>_data - <s_i s_j s_k>_model.
    """
    if isinstance(n, bool) or not isinstance(n, int) or n < 1:
        raise ValueError(f"n must be an int >= 1, got {n!r}")
    triples = list(itertools.combinations(range(n), 3)) if triples is None else triples
    pairs = list(itertools.combinations(range(n), 2)) if pairs is None else pairs
    g = Graph()
    g.add_block("s", Bernoulli(n), visible=True)
    if len(triples):
        g.add_factor(
            HigherOrder(
                "s", terms=triples, weight=triple_weight, init_scale=init_scale, name="triples"
            )
        )
    if len(pairs):
        g.add_factor(
            Pairwise("s", edges=pairs, weight=pair_weight, init_scale=init_scale, name="pairs")
        )
    g.add_factor(Bias("s", bias=bias, name="theta"))
    return EnergyModel(g)


def from_networkx(G, units="units", coupling="weight", field=None, init_scale: float = 0.01):
    """A Graph from a networkx graph whose nodes carry their unit type: one block per type (named
    after it: ``spin``, ``bernoulli``, ``gaussian``, ``categorical``; the first is visible), units
    in the order of ``G.nodes``; every edge a coupling, ``Pairwise`` within a block or between two
    (factor ``coupling_<a>`` or ``coupling_<a>_<b>``), field as a ``Bias`` per block when given.

    ``units``: the node attribute holding the type, a name (``"spin"``, ``"bernoulli"``,
    ``"gaussian"``, ``"categorical"`` with a node attribute ``k``) or an ``ebm.units`` class.
    ``coupling``: a number, or an edge attribute every edge carries (when none does, the weights
    are initialised N(0, init_scale^2), to learn). ``field``: a node attribute (0 where absent).
    Returns (graph, where): ``where[node] = (block, unit number)``; add factors to the graph, then
    ``ebm.EnergyModel(graph)``.
    """
    nodes = _check_graph(G)
    kinds: dict[str, type[Units]] = {}
    where: dict = {}
    members: dict[str, list] = {}
    ks: dict[str, int] = {}
    for v in nodes:
        kind = G.nodes[v].get(units)
        if kind is None:
            raise ValueError(f"node {v!r} has no {units!r} attribute (its unit type)")
        name = (kind.__name__ if isinstance(kind, type) else str(kind)).lower()
        if name == "categorical":
            k = G.nodes[v].get("k")
            if ks.setdefault(name, k) != k or not isinstance(k, int):
                raise ValueError(f"node {v!r}: categorical nodes need one int attribute 'k'")
        elif name not in _UNIT_TYPES:
            raise ValueError(
                f"node {v!r}: unit type {kind!r} is not one of spin, bernoulli, gaussian, "
                f"categorical"
            )
        kinds[name] = Categorical if name == "categorical" else _UNIT_TYPES[name]
        where[v] = (name, len(members.setdefault(name, [])))
        members[name].append(v)
    g = Graph()
    for name, cls in kinds.items():
        size = len(members[name])
        g.add_block(name, cls(size, ks[name]) if name in ks else cls(size))
    groups: dict[tuple[str, str], list] = {}
    for u, v in G.edges:
        (a, i), (b, j) = where[u], where[v]
        if (b, a) in groups and a != b:
            (a, i), (b, j) = (b, j), (a, i)
        groups.setdefault((a, b), []).append(((i, j), (u, v)))
    for (a, b), items in groups.items():
        pairs = [p for p, _ in items]
        weight = _edge_values(G, [e for _, e in items], coupling, missing=None)
        name = f"coupling_{a}" if a == b else f"coupling_{a}_{b}"
        g.add_factor(
            Pairwise(
                a,
                None if a == b else b,
                edges=pairs,
                weight=weight,
                init_scale=init_scale,
                name=name,
            )
        )
    if field is not None:
        for name in kinds:
            trailing = (ks[name],) if name in ks else ()
            h = _node_values(G, members[name], field, trailing)
            g.add_factor(Bias(name, bias=h, name=f"field_{name}"))
    return g, where
