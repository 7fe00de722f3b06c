"""A factor graph of blocks and factors, held in networkx.

Nodes are blocks (``kind="block"``, with their unit type) and factors (``kind="factor"``); an edge
joins a factor to every block it touches. The *block graph* joins two blocks that share a factor;
a colouring of it is the block-update schedule: blocks of one colour are conditionally independent
given the others and are updated together by block Gibbs. A factor may also couple the units of
one block with each other (``Factor.unit_couplings``: a lattice, lateral connections, higher-order
terms); such a block's units are coloured in turn on their *unit graph*, and its part of the
schedule is colour classes of units, members ``(block, unit numbers)``.
"""

from __future__ import annotations

import functools
from pathlib import Path

import networkx as nx
import torch

from ebm.factors.base import Factor
from ebm.units import Units

__all__ = ["Graph", "member_block"]


def common_dtype(*modules: torch.nn.Module, always: bool = False) -> torch.dtype | None:
    """The promotion (torch.promote_types) of the floating dtypes of the modules' parameters and
    buffers, with torch's default dtype; None when they already agree, unless ``always``."""
    dtypes = {
        t.dtype for m in modules for t in [*m.parameters(), *m.buffers()] if t.is_floating_point()
    }
    if not always and len(dtypes) <= 1:
        return None
    return functools.reduce(torch.promote_types, dtypes, torch.get_default_dtype())


def member_block(member) -> str:
    """The block a colour-class member draws: the member itself (a block name), or the block of a
    member ``(block, unit numbers)``."""
    return member if isinstance(member, str) else member[0]


class Graph:
    """A bipartite factor graph: ``add_block(name, units)``, then ``add_factor(*factors)``.

    Validation happens as parts are added, with messages that name the block or factor: unknown
    blocks, duplicate names, shape mismatches (a probe evaluation of each factor's energy) and
    factors that name one block twice. A factor couples units within a block only through
    ``unit_couplings``, checked to be linear in each unit's statistic.
    """

    def __init__(self) -> None:
        self._nx = nx.Graph()
        self.units: dict[str, Units] = {}
        self.factors: dict[str, Factor] = {}
        self._visible: list[str] = []
        self._frozen = False
        #: factors bound on the meta device and not probed: a skeleton to read shapes from
        self._shapes_only = False

    def freeze(self) -> None:
        """Called when a model is compiled from this graph: later changes would not reach it."""
        self._frozen = True

    def _check_open(self) -> None:
        if self._frozen:
            raise ValueError(
                "this graph was compiled into an EnergyModel and can no longer change; "
                "build a new Graph"
            )

    # --- building --------------------------------------------------------------------------------
    def add_block(self, name: str, units: Units, visible: bool = False) -> Graph:
        """Add a block of units. ``visible=True`` marks it as observed data (default: the first
        block added is the visible one when none is marked)."""
        self._check_open()
        if not isinstance(name, str) or not name or "." in name:
            raise ValueError(f"block name must be a non-empty string without '.', got {name!r}")
        if not isinstance(units, Units):
            raise TypeError(
                f"block {name!r}: units must be an ebm.units.Units instance, got {units!r}"
            )
        if name in self._nx:
            raise ValueError(
                f"duplicate name {name!r}: a {self._nx.nodes[name]['kind']} has it already"
            )
        self.units[name] = units
        self._nx.add_node(name, kind="block", units=units)
        if visible:
            self._visible.append(name)
        return self

    def add_factor(self, *factors: Factor) -> Graph:
        """Add one or more factors; each is bound to the shapes of its blocks and probed once."""
        self._check_open()
        for factor in factors:
            self._add_factor(factor)
        return self

    def _add_factor(self, factor: Factor) -> None:
        if not isinstance(factor, Factor):
            raise TypeError(f"add_factor expects ebm.factors.Factor instances, got {factor!r}")
        name = factor.name
        if name in self._nx:
            raise ValueError(
                f"duplicate name {name!r}: a {self._nx.nodes[name]['kind']} has it already; "
                f"give the factor another name with name=..."
            )
        for b in factor.blocks:
            if b not in self.units:
                known = ", ".join(map(repr, self.units)) or "none"
                raise ValueError(f"factor {name!r} touches unknown block {b!r} (blocks: {known})")
        repeated = {b for b in factor.blocks if factor.blocks.count(b) > 1}
        if repeated:
            raise ValueError(
                f"factor {name!r} couples block {sorted(repeated)[0]!r} to itself: units of one block "
                f"must be conditionally independent given the other blocks; split the block"
            )
        shapes = {b: self.units[b].shape for b in factor.blocks}
        if self._shapes_only:
            with torch.device("meta"):
                factor.bind(shapes)
            factor.coupled_blocks = self._coupled_blocks(factor)
        else:
            factor.bind(shapes)
            # one floating dtype for the factor and its blocks' units (a given float64 weight
            # beside initialised ones, float64 units): the promotion of theirs; the model
            # promotes the rest
            dtype = self._probe_dtype(factor)
            factor.to(dtype)
            self._probe(factor, dtype)
            factor.coupled_blocks = self._coupled_blocks(factor)
            for b in factor.coupled_blocks:
                self._check_unit_linearity(factor, b, dtype)
            factor.nonlinear_blocks, factor.quadratic_blocks = self._classify_blocks(factor, dtype)
            self._check_separate(factor, dtype)
        self.factors[name] = factor
        self._nx.add_node(name, kind="factor", factor=factor)
        for b in factor.blocks:
            self._nx.add_edge(name, b)

    def _coupled_blocks(self, factor: Factor) -> frozenset[str]:
        """The blocks whose units ``factor`` couples (``unit_couplings`` not None), each pair
        checked: two distinct units of the block."""
        coupled = set()
        for b in dict.fromkeys(factor.blocks):
            pairs = factor.unit_couplings(b)
            if pairs is None:
                continue
            pairs = torch.as_tensor(pairs, device="cpu")
            n = self.units[b].shape[0]
            if pairs.dim() != 2 or pairs.shape[1] != 2:
                raise ValueError(
                    f"factor {factor.name!r}: unit_couplings({b!r}) must be an (m, 2) array of "
                    f"unit pairs, got shape {tuple(pairs.shape)}"
                )
            bad = ((pairs < 0) | (pairs >= n)).any(1) | (pairs[:, 0] == pairs[:, 1])
            if bool(bad.any()):
                pair = tuple(pairs[int(bad.nonzero()[0, 0])].tolist())
                raise ValueError(
                    f"factor {factor.name!r} couples units {pair} of block {b!r} ({n} units): a "
                    f"coupling joins two distinct units of the block"
                )
            coupled.add(b)
        return frozenset(coupled)

    def _check_unit_linearity(
        self, factor: Factor, block: str, dtype: torch.dtype, num: int = 8, probes: int = 4
    ) -> None:
        """ValueError unless, at random states, the energy is linear in the statistic of each of a
        few random units of ``block`` (E = E(t_i = 0) - eta_i . t_i, eta_i from ``natural``) and
        ``natural_units`` agrees with ``natural``: what drawing units of one colour together
        from their unit type's family needs."""
        gen = torch.Generator().manual_seed(0)
        units = self.units[block]
        with torch.no_grad():
            stats = {
                b: self.units[b].statistic(self.units[b].random(num, gen, dtype=dtype))
                for b in dict.fromkeys(factor.blocks)
            }
            e = factor.energy(stats)
            eta = factor.natural(block, stats)
            picked = torch.randperm(units.shape[0], generator=gen)[:probes]
            scale = 1.0 + float(e.abs().max())
            for i in picked.tolist():
                zeroed = dict(stats)
                zeroed[block] = stats[block].clone()
                zeroed[block][:, i] = 0
                t_i = stats[block][:, i].reshape(num, -1)
                predicted = factor.energy(zeroed) - (eta[:, i].reshape(num, -1) * t_i).sum(-1)
                if not torch.allclose(e, predicted, rtol=0.0, atol=1e-4 * scale):
                    raise ValueError(
                        f"factor {factor.name!r} couples units of block {block!r}, but its energy "
                        f"is not linear in the statistic of unit {i} (with natural(...) as its "
                        f"coefficient): a unit's conditional would not be of its unit type's family"
                    )
            got = factor.natural_units(block, stats, picked)
            if not torch.allclose(got, eta[:, picked], rtol=0.0, atol=1e-5 * scale):
                raise ValueError(
                    f"factor {factor.name!r}: natural_units({block!r}, ...) disagrees with "
                    f"natural({block!r}, ...) on units {picked.tolist()}"
                )

    def _check_separate(self, factor: Factor, dtype: torch.dtype, num: int = 8) -> None:
        """ValueError unless, for every pair of blocks the factor says do not interact
        (``Factor.interacts``), E(a, b) - E(0, b) - E(a, 0) + E(0, 0) = 0 at random states (seeded),
        the other blocks held: what sharing a colour class and summing out together need."""
        blocks = list(dict.fromkeys(factor.blocks))
        pairs = [
            (a, b)
            for i, a in enumerate(blocks)
            for b in blocks[i + 1 :]
            if not factor.interacts(a, b)
        ]
        if not pairs:
            return
        gen = torch.Generator().manual_seed(0)
        with torch.no_grad():
            stats = {
                b: self.units[b].statistic(self.units[b].random(num, gen, dtype=dtype))
                for b in blocks
            }
            scale = 1.0 + float(factor.energy(stats).abs().max())
            for a, b in pairs:
                corners = []
                for zero in ((), (a,), (b,), (a, b)):
                    changed = {**stats, **{z: torch.zeros_like(stats[z]) for z in zero}}
                    corners.append(factor.energy(changed))
                mixed = corners[0] - corners[1] - corners[2] + corners[3]
                if not torch.allclose(mixed, torch.zeros_like(mixed), atol=1e-4 * scale):
                    raise ValueError(
                        f"factor {factor.name!r} says blocks {a!r} and {b!r} do not interact, but "
                        f"its energy has a term in both (interacts({a!r}, {b!r}) must be True)"
                    )

    def _probe_dtype(self, factor: Factor) -> torch.dtype:
        """The dtype to probe ``factor`` in: the promotion of its tensors' and its blocks' units'."""
        modules = [factor, *(self.units[b] for b in factor.blocks)]
        return common_dtype(*modules, always=True)

    def _probe_states(self, factor: Factor, num: int) -> int:
        """How many random states the linearity probe may use: a factor that may be quadratic
        in a block with a quadratic term makes a (states, n, n) coefficient there, so the probe
        keeps that under 2^26 entries, and a block past 2^28 entries for one state (n > 16,384)
        is refused by name: every chain would need n x n of its own."""
        overrides = type(factor).quadratic is not Factor.quadratic or (
            type(factor).precision is not Factor.precision
        )
        sizes = [
            self.units[b].n
            for b in factor.blocks
            if overrides and self.units[b].quadratic_keyword == "precision"
        ]
        if not sizes:
            return num
        largest = max(sizes) ** 2
        if largest > 2**28:
            raise ValueError(
                f"factor {factor.name!r} may be quadratic in a Gaussian block of {max(sizes):,} "
                f"units: each chain would hold a {max(sizes):,} x {max(sizes):,} precision; "
                f"blocks with a precision are limited to 16,384 units"
            )
        return max(1, min(num, 2**26 // largest))

    def _probe(self, factor: Factor, dtype: torch.dtype) -> None:
        """Evaluate the factor on a batch of two zero states: catches shape mismatches early."""
        stats = {b: torch.zeros((2, *self.units[b].shape), dtype=dtype) for b in factor.blocks}
        try:
            with torch.no_grad():
                e = factor.energy(stats)
        except (RuntimeError, IndexError, ValueError) as err:
            shapes = ", ".join(f"{b}: {self.units[b].shape}" for b in factor.blocks)
            raise ValueError(
                f"factor {factor.name!r} does not fit its blocks ({shapes}): {err}"
            ) from err
        if not isinstance(e, torch.Tensor) or tuple(e.shape) != (2,):
            got = tuple(e.shape) if isinstance(e, torch.Tensor) else type(e).__name__
            raise ValueError(
                f"factor {factor.name!r}: energy must return shape (batch,), got {got}"
            )

    def _classify_blocks(
        self, factor: Factor, dtype: torch.dtype, num: int = 8
    ) -> tuple[frozenset[str], frozenset[str]]:
        """(nonlinear, quadratic): the blocks for which neither E_f = offset - natural . t nor, where
        the factor gives a ``quadratic`` q, E_f = offset - natural . t + quadratic_energy(t, q)
        (t^T Q t / 2 for a Gaussian's precision Q) holds at random
        states of the units (seeded), and the blocks where the quadratic form holds. Summing a
        nonlinear block out, or sampling it from its unit type's family, would be wrong, so the
        model refuses to. Built-in factors are exact by construction."""
        gen = torch.Generator().manual_seed(0)
        num = self._probe_states(factor, num)
        with torch.no_grad():
            stats = {}
            for b in dict.fromkeys(factor.blocks):
                units = self.units[b]
                stats[b] = units.statistic(units.random(num, gen, dtype=dtype))
            e = factor.energy(stats)
            nonlinear, quadratic = set(), set()
            for b in stats:
                if b in factor.coupled_blocks:  # linear per unit, checked on its own
                    continue
                if factor.blocks.count(b) != 1:
                    nonlinear.add(b)
                    continue
                t = stats[b].flatten(1)
                predicted = factor.offset(b, stats) - (factor.natural(b, stats).flatten(1) * t).sum(
                    -1
                )
                q = factor.quadratic(b, stats)
                if q is not None:
                    if self.units[b].quadratic_keyword is None:
                        raise ValueError(
                            f"factor {factor.name!r} is quadratic in block {b!r}, but "
                            f"{type(self.units[b]).__name__} units take no quadratic term "
                            f"(Gaussian and MarkovChain units do)"
                        )
                    predicted = predicted + self.units[b].quadratic_energy(stats[b], q)
                scale = 1.0 + float(e.abs().max())
                if not torch.allclose(e, predicted, rtol=0.0, atol=1e-4 * scale):
                    nonlinear.add(b)
                elif q is not None:
                    quadratic.add(b)
        return frozenset(nonlinear), frozenset(quadratic)

    # --- views ------------------------------------------------------------------------------------
    @property
    def blocks(self) -> list[str]:
        return list(self.units)

    @property
    def visible(self) -> list[str]:
        """Blocks that hold observed data (the first block when none was marked)."""
        if self._visible:
            return list(self._visible)
        return self.blocks[:1]

    def block_graph(self) -> nx.Graph:
        """Blocks joined when some factor touches both and has a term in both
        (``Factor.interacts``): a projection of the factor graph."""
        g = nx.Graph()
        g.add_nodes_from(self.units)
        for f in self.factors.values():
            bs = list(dict.fromkeys(f.blocks))
            g.add_edges_from(
                (a, b) for i, a in enumerate(bs) for b in bs[i + 1 :] if f.interacts(a, b)
            )
        return g

    def coupled_blocks(self) -> list[str]:
        """Blocks whose units some factor couples with each other (``Factor.unit_couplings``)."""
        return [b for b in self.units if any(f.couples_units(b) for f in self.factors.values())]

    def unit_graph(self, block: str) -> nx.Graph:
        """The block's units (0 .. n-1) joined when a factor couples them (networkx)."""
        if block not in self.units:
            raise ValueError(f"unknown block {block!r}; blocks: {self.blocks}")
        g = nx.Graph()
        g.add_nodes_from(range(self.units[block].shape[0]))
        for f in self.factors.values():
            if f.couples_units(block):
                g.add_edges_from(map(tuple, f.unit_couplings(block).tolist()))
        return g

    def unit_classes(self, block: str) -> list[torch.Tensor]:
        """A colouring of the block's unit graph as int64 tensors of unit numbers, one per colour:
        the two sides for a bipartite graph (a lattice), else networkx's DSATUR greedy colouring
        (largest-first above 20,000 units, where DSATUR gets slow). Units of one class share no
        coupling, so they are conditionally independent given the rest."""
        g = self.unit_graph(block)
        if nx.is_bipartite(g):
            colours = nx.bipartite.color(g)
        else:
            strategy = "DSATUR" if g.number_of_nodes() <= 20_000 else "largest_first"
            colours = nx.coloring.greedy_color(g, strategy=strategy)
        classes: dict[int, list[int]] = {}
        for unit in range(g.number_of_nodes()):
            classes.setdefault(colours[unit], []).append(unit)
        return [torch.tensor(classes[c], dtype=torch.int64) for c in sorted(classes)]

    def schedule(self) -> list[list]:
        """Colour classes of the block graph (networkx DSATUR colouring), in colour order.

        Blocks within a class share no factor, so they are conditionally independent given the
        rest and block Gibbs updates them together. An RBM gives two classes. A block whose units
        are coupled with each other (``coupled_blocks``) is split into the colour classes of its
        units (``unit_classes``): its members are ``(block, unit numbers)``, the first class of
        its units joining its block class and the others following it. Blocks without such
        couplings keep the layer schedule.
        """
        g = self.block_graph()
        colours = nx.coloring.greedy_color(g, strategy="DSATUR")
        classes: dict[int, list[str]] = {}
        for b in self.units:  # insertion order within a class
            classes.setdefault(colours[b], []).append(b)
        coupled = set(self.coupled_blocks())
        schedule = []
        for c in sorted(classes):
            whole = [b for b in classes[c] if b not in coupled]
            split = [(b, self.unit_classes(b)) for b in classes[c] if b in coupled]
            rounds = max((len(parts) for _, parts in split), default=1)
            for r in range(rounds):
                group = list(whole) if r == 0 else []
                group += [(b, parts[r]) for b, parts in split if r < len(parts)]
                schedule.append(group)
        return schedule

    def to_networkx(self) -> nx.Graph:
        """A copy of the factor graph for any networkx algorithm (nodes carry ``kind``)."""
        return self._nx.copy()

    def check(self) -> None:
        """Raise ValueError if the graph cannot make a model (no blocks)."""
        if not self.units:
            raise ValueError("the graph has no blocks: add_block first")

    def draw(self, path: str | Path) -> Path:
        """Save a picture of the factor graph as PNG: blocks as circles, factors as squares."""
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        g = self._nx
        blocks = list(self.units)
        factors = list(self.factors)
        pos = self._layout()
        width = max(len(blocks), len(factors), 2)
        fig, ax = plt.subplots(figsize=(1.8 * width, 3.5))
        nx.draw_networkx_edges(g, pos, ax=ax, edge_color="#888888")
        nx.draw_networkx_nodes(
            g, pos, nodelist=blocks, node_shape="o", node_size=1800, node_color="#9ecae1", ax=ax
        )
        if factors:
            nx.draw_networkx_nodes(
                g, pos, nodelist=factors, node_shape="s", node_size=900, node_color="#fdd0a2", ax=ax
            )
        labels = {
            b: f"{b}\n{type(u).__name__}\n{'x'.join(map(str, u.shape))}"
            for b, u in self.units.items()
        }
        labels.update({f: type(self.factors[f]).__name__ for f in factors})
        nx.draw_networkx_labels(g, pos, labels=labels, font_size=8, ax=ax)
        ax.set_axis_off()
        ax.margins(0.2)
        path = Path(path)
        fig.savefig(path, dpi=120, bbox_inches="tight")
        plt.close(fig)
        return path

    def _layout(self) -> dict[str, tuple[float, float]]:
        """Blocks on a row in insertion order (spread to the width of the factor row when there
        are more factors than blocks); factors on a row above, each as near the mean of its
        blocks as a spacing of one unit between neighbours allows."""
        blocks, factors = list(self.units), list(self.factors)
        spacing = max(1.0, len(factors) / max(len(blocks), 1))
        pos = {b: (i * spacing, 0.0) for i, b in enumerate(blocks)}
        wanted = {
            n: sum(pos[b][0] for b in self.factors[n].blocks) / len(self.factors[n].blocks)
            for n in factors
        }
        order = sorted(factors, key=lambda n: (wanted[n], factors.index(n)))
        xs: list[float] = []
        for n in order:
            xs.append(wanted[n] if not xs else max(wanted[n], xs[-1] + 1.0))
        if xs:  # shift the row back so that it is centred where the factors want to be
            shift = sum(wanted[n] for n in order) / len(order) - sum(xs) / len(xs)
            for n, x in zip(order, xs, strict=True):
                pos[n] = (x + shift, 1.0)
        return pos

    def __repr__(self) -> str:
        return f"Graph(blocks={self.blocks}, factors={list(self.factors)})"
