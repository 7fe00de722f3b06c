"""EnergyModel: a ``torch.nn.Module`` compiled from a :class:`ebm.Graph`.

A state is a dict of block name -> tensor of shape (chains, *block shape). With sufficient
statistics t_u(x_u) and unit base energies E_0,u, the energy is

    E(x) = sum_u E_0,u(x_u) + sum_f E_f(t).

Every factor is linear in the statistic of each block it touches once (or quadratic in a block
whose unit type takes a quadratic term q_u: a Gaussian's precision, a Markov chain's log
transition potentials), so a block u that no factor couples to another summed-out block can be
summed out analytically:

    sum_{x_u} exp(-E(x)) = exp(-[E_rest - A_u(eta_u)]),   eta_u = sum_{f touching u} natural_f(u),

where E_rest holds the other terms with t_u set to zero and A_u is the unit type's log-partition
(A_u(eta_u, q_u) with a quadratic term).
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor, distributions, nn

from ebm.factors.base import Factor
from ebm.graph import Graph, common_dtype

__all__ = ["EnergyModel", "MAX_QUADRATIC_ENTRIES"]

#: the largest quadratic term (batch x n x n entries) a block may need: 2^31, 8 GiB of float32
MAX_QUADRATIC_ENTRIES = 2**31

State = dict[str, Tensor]


class EnergyModel(nn.Module):
    """An energy model compiled from a Graph.

    ``energy(state)``: E(x) for a full state, shape (batch,).
    ``free_energy(state)``: F = -log sum over the blocks missing from ``state`` of exp(-E).
    ``conditional(block, state)``: p(x_block | rest) as a ``torch.distributions`` object.
    ``schedule``: colour classes of the block graph (conditionally independent groups).
    Device and dtype follow the module (``.to(device, dtype)``). A model is built in one floating
    dtype: the promotion of its parameters' dtypes, so parameters given in float64 make a float64
    model (the others are created in torch's default dtype, then cast).
    """

    def __init__(self, graph: Graph):
        super().__init__()
        if not isinstance(graph, Graph):
            raise TypeError(f"EnergyModel expects an ebm.Graph, got {type(graph).__name__}")
        graph.check()
        graph.freeze()
        self.graph = graph
        self.units = nn.ModuleDict(graph.units)
        self.factors = nn.ModuleDict(graph.factors)
        self.blocks: list[str] = graph.blocks
        self.visible: list[str] = graph.visible
        #: False when the graph marked no block ``visible=True`` (the first block is then taken)
        self.visible_marked = bool(graph._visible)
        self.schedule: list[list[str]] = graph.schedule()
        # an empty buffer that .to() moves: device and dtype are defined even with no parameters
        self.register_buffer("_anchor", torch.empty(0), persistent=False)
        self._promote_to_common_dtype()
        self._touching: dict[str, list[str]] = {
            b: [n for n, f in graph.factors.items() if b in f.blocks] for b in self.blocks
        }
        # the same factor objects in plain lists (ModuleDict lookups cost a microsecond each)
        self._factors_of = {
            b: [graph.factors[n] for n in names] for b, names in self._touching.items()
        }
        self._units = dict(graph.units)
        # factors whose energy is quadratic in a block (adding to its quadratic term), and those that
        # are neither linear nor quadratic in it (the graph is frozen: computed once)
        self._quadratic: dict[str, list[str]] = {
            b: [n for n in self._touching[b] if graph.factors[n].quadratic_in(b)]
            for b in self.blocks
        }
        #: factors that couple units of a block with each other (linear in each unit)
        self._coupled: dict[str, list[str]] = {
            b: [n for n in self._touching[b] if graph.factors[n].couples_units(b)]
            for b in self.blocks
        }
        self._nonlinear: dict[str, list[str]] = {
            b: [
                n
                for n in self._touching[b]
                if not graph.factors[n].linear_in(b)
                and n not in self._quadratic[b]
                and n not in self._coupled[b]
            ]
            for b in self.blocks
        }

    # --- device and dtype ------------------------------------------------------------------------
    def _promote_to_common_dtype(self) -> None:
        """Cast every floating tensor to the promotion of their dtypes (torch.promote_types):
        a float64 parameter given by the user makes a float64 model, never a rounded one."""
        common = common_dtype(self)
        if common is not None:
            self.to(common)

    @property
    def device(self) -> torch.device:
        return self._anchor.device

    @property
    def dtype(self) -> torch.dtype:
        return self._anchor.dtype

    # --- states ----------------------------------------------------------------------------------
    def check_state(self, state: State, blocks=None) -> int:
        """Check that ``state`` holds the given blocks (default: all) with shapes that agree.

        Returns the batch size. Raises ValueError naming the offending block.
        """
        if not isinstance(state, dict):
            raise TypeError(
                f"a state is a dict of block name -> tensor, got {type(state).__name__}"
            )
        unknown = [b for b in state if b not in self.units]
        if unknown:
            raise ValueError(f"state has unknown block(s) {unknown}; model blocks: {self.blocks}")
        wanted = self.blocks if blocks is None else list(blocks)
        missing = [b for b in wanted if b not in state]
        if missing:
            raise ValueError(f"state lacks block(s) {missing}")
        batch = None
        for b, x in state.items():
            shape = self.units[b].shape
            if x.dim() != len(shape) + 1 or tuple(x.shape[1:]) != shape:
                raise ValueError(
                    f"block {b!r}: expected shape (batch, {', '.join(map(str, shape))}), "
                    f"got {tuple(x.shape)}"
                )
            if batch is None:
                batch = x.shape[0]
            elif x.shape[0] != batch:
                raise ValueError(f"block {b!r} has batch size {x.shape[0]}, others have {batch}")
        return int(batch or 0)

    def validate_data(self, data: Tensor | State) -> State:
        """Turn data into a state over the visible blocks, checking values like the units do.

        A tensor is accepted when the model has a single visible block. Values are cast to the
        model's dtype and device after validation. When the graph marked no block visible, the
        first block is the visible one, and a refusal of the data says so.
        """
        if not isinstance(data, dict):
            if len(self.visible) != 1:
                raise ValueError(f"model has visible blocks {self.visible}: pass data as a dict")
            data = {self.visible[0]: data}
        out = {}
        try:
            for b, x in data.items():
                if b not in self.units:
                    raise ValueError(f"data has unknown block {b!r}; model blocks: {self.blocks}")
                x = self.units[b].validate(x, b)
                out[b] = x.to(device=self.device, dtype=self.dtype)
            self.check_state(out, blocks=list(out))
        except ValueError as err:
            if self.visible_marked:
                raise
            raise ValueError(
                f"{err} (no block of this model's graph is marked visible=True, so its first "
                f"block {self.visible[0]!r} is taken as the visible one: mark the observed "
                f"blocks with Graph.add_block(..., visible=True))"
            ) from None
        return out

    def statistics(self, state: State) -> State:
        """t_u(x_u) for every block of ``state``."""
        units = self._units
        return {b: units[b].statistic(x) for b, x in state.items()}

    # --- energies --------------------------------------------------------------------------------
    def energy(self, state: State) -> Tensor:
        """E(x) = sum_u E_0,u(x_u) + sum_f E_f(t(x)) for a full state: shape (batch,)."""
        self.check_state(state)
        stats = self.statistics(state)
        e = sum(self.units[b].base_energy(x) for b, x in state.items())
        for f in self.factors.values():
            e = e + f.energy(stats)
        return e

    def natural(self, block: str, state: State, stats: State | None = None) -> Tensor:
        """eta_block = sum over the factors f touching the block of natural_f(block), in the
        order of ``factors_touching``: the natural parameters of the block's conditional, shape
        (batch, *block's shape).

        Exact for factors linear (or quadratic, see ``quadratic``) in the block; independent of the
        block's own current value. ``stats`` (the statistics of ``state``) saves recomputing them.
        With one factor touching the block this is that factor's contribution itself (possibly a
        view of a parameter): do not modify it in place.
        """
        self.natural_check(block)
        stats = self.statistics(state) if stats is None else stats
        eta = None
        for factor in self._factors_of[block]:
            term = factor.natural(block, stats)
            eta = term if eta is None else eta + term
        if eta is None:
            ref = next(iter(stats.values()))
            return ref.new_zeros((ref.shape[0], *self.units[block].shape))
        return eta

    def natural_units(
        self, block: str, index: Tensor, state: State, stats: State | None = None
    ) -> Tensor:
        """The natural parameters of the units ``index`` of ``block`` (unit numbers along its first
        axis), shape (batch, len(index), *trailing): the sum of the factors' ``natural_units``.
        Each unit's is exact given all the other units; units of one colour class of
        ``schedule`` share no coupling, so together they are the natural parameters of their
        joint conditional."""
        self.natural_check(block)
        stats = self.statistics(state) if stats is None else stats
        eta = None
        for factor in self._factors_of[block]:
            term = factor.natural_units(block, stats, index)
            eta = term if eta is None else eta + term
        if eta is None:
            ref = next(iter(stats.values()))
            return ref.new_zeros((ref.shape[0], len(index), *self.units[block].shape[1:]))
        return eta

    def coupled_factors(self, block: str) -> list[str]:
        """Names of the factors that couple units of ``block`` with each other: the block is then
        drawn by colour classes of its units (``schedule``) and cannot be summed out
        analytically."""
        return list(self._coupled[block])

    def units_check(self, block: str) -> None:
        """ValueError when the block's units are coupled with each other, naming the factor: its
        conditional given the other blocks is not a product over its units."""
        if self._coupled[block]:
            raise ValueError(
                f"factor {self._coupled[block][0]!r} couples the units of block {block!r} with "
                f"each other: draw it by colour classes of its units (the model's schedule), "
                f"not as one block"
            )

    def factors_touching(self, block: str) -> list[Factor]:
        """The factors whose energy involves ``block``, in the graph's order."""
        if block not in self.units:
            raise ValueError(f"unknown block {block!r}; model blocks: {self.blocks}")
        return list(self._factors_of[block])

    def natural_check(self, block: str) -> None:
        """ValueError unless every factor touching ``block`` is linear or quadratic in it (so
        its natural parameters define its conditional)."""
        if block not in self.units:
            raise ValueError(f"unknown block {block!r}; model blocks: {self.blocks}")
        nonlinear = self._nonlinear[block]
        if nonlinear:
            raise ValueError(
                f"factor {nonlinear[0]!r} is not linear in block {block!r}: the block's conditional "
                f"is not of its unit type's family, so it cannot be sampled or summed out this way"
            )

    def quadratic(self, block: str, state: State, stats: State | None = None) -> Tensor | None:
        """q_block = sum of the quadratic coefficients of the factors quadratic in the block, so
        that E = ... - eta . t + units.quadratic_energy(t, q) in t_block: a Gaussian's precision Q
        (shape (batch, size, size)), a Markov chain's log transition potentials (batch, K, K). None
        when every factor touching the block is linear in it (its units are then independent
        given the rest)."""
        names = self._quadratic[block]
        if not names:
            return None
        stats = self.statistics(state) if stats is None else stats
        self._check_quadratic_size(block, stats)
        q = None
        for name in names:
            term = self.factors[name].quadratic(block, stats)
            q = term if q is None else q + term
        return q

    def _check_quadratic_size(self, block: str, stats: State) -> None:
        """Refuse, by name, a quadratic term too large to hold: a Gaussian block's precision is
        (batch, n, n), a Markov chain's potentials (batch, K, K)."""
        units = self._units[block]
        size = units.k if hasattr(units, "k") else units.n
        batch = next(iter(stats.values())).shape[0]
        entries = batch * size * size
        if entries > MAX_QUADRATIC_ENTRIES:
            raise ValueError(
                f"block {block!r}: its quadratic term (a precision of {batch:,} x {size:,} x "
                f"{size:,} entries for these chains) exceeds {MAX_QUADRATIC_ENTRIES:,} entries; "
                f"use fewer chains or a smaller block"
            )

    def nonlinear_factors(self, block: str) -> list[str]:
        """Names of the factors neither linear nor quadratic in ``block``: the block cannot be
        drawn from its unit type's family (use HMC) nor summed out."""
        return list(self._nonlinear[block])

    def quadratic_factors(self, block: str) -> list[str]:
        """Names of the factors quadratic in ``block`` (those adding to its quadratic term)."""
        return list(self._quadratic[block])

    def given_quadratic(self, block: str, q: Tensor | None) -> dict:
        """``{keyword: q}`` (``Units.quadratic_keyword``, e.g. ``{"precision": Q}``) for a quadratic
        coefficient q of ``block``, else ``{}``: keyword arguments for its unit type's methods."""
        return {} if q is None else {self.units[block].quadratic_keyword: q}

    def _given_quadratic(self, block: str, state: State, stats: State | None) -> dict:
        return self.given_quadratic(block, self.quadratic(block, state, stats))

    def conditional(self, block: str, state: State) -> distributions.Distribution:
        """p(x_block | the other blocks of ``state``) as a torch.distributions object (not for a
        block whose units are coupled, see ``units_check``)."""
        self.units_check(block)
        full = self.with_placeholders(state, [block])
        stats = self.statistics(full)
        return self.units[block].distribution(
            self.natural(block, full, stats),
            **self._given_quadratic(block, full, stats),
            **self.state_keywords(block, state),
        )

    def sample_block(
        self,
        block: str,
        state: State,
        generator: torch.Generator | None = None,
        stats: State | None = None,
    ) -> Tensor:
        """Draw x_block ~ p(x_block | rest of ``state``) (not for a block whose units are
        coupled, see ``units_check``)."""
        self.units_check(block)
        stats = self.statistics(state) if stats is None else stats
        eta = self.natural(block, state, stats)
        extra = self._given_quadratic(block, state, stats)
        return self.units[block].sample(
            eta, generator, **extra, **self.state_keywords(block, state)
        )

    def state_keywords(self, block: str, state: State) -> dict:
        """What a conditional draw of ``block`` keeps from its current value in ``state`` (the
        lengths of a count block whose length comes from the data), as keywords of its unit
        type's methods (``Units.state_keywords``); {} when the unit type keeps nothing or the
        block is not in ``state``."""
        units = self._units[block]
        if not units.takes_state_keywords or block not in state:
            return {}
        return units.state_keywords(state[block])

    def with_placeholders(self, state: State, blocks) -> State:
        """A copy of ``state`` where the given blocks are zeros when missing (placeholders)."""
        if state:
            ref = next(iter(state.values()))
        else:  # everything summed out: one empty configuration
            ref = torch.empty(1, 0, dtype=self.dtype, device=self.device)
        batch = ref.shape[0]
        out = dict(state)
        for b in blocks:
            if b not in out:
                out[b] = ref.new_zeros((batch, *self.units[b].shape))
        return out

    def can_sum_out(self, blocks) -> bool:
        """Whether ``blocks`` can be summed out analytically together (see ``summable``)."""
        try:
            self.summable(blocks)
        except ValueError:
            return False
        return True

    def summable(self, blocks) -> None:
        """Raise ValueError unless ``blocks`` can be summed out analytically together: no factor
        may have a term in two of them (``Factor.interacts``), and every factor must be linear
        in each one it touches."""
        if isinstance(blocks, str):
            blocks = [blocks]
        unknown = [b for b in blocks if b not in self.units]
        if unknown:
            raise ValueError(f"unknown block(s) {unknown} to sum out; model blocks: {self.blocks}")
        blocks = set(blocks)
        for b in blocks:
            if self._coupled[b]:
                raise ValueError(
                    f"block {b!r} cannot be summed out analytically: factor "
                    f"{self._coupled[b][0]!r} couples its units with each other"
                )
        for name, f in self.factors.items():
            inside = [b for b in dict.fromkeys(f.blocks) if b in blocks]
            joint = [(a, b) for i, a in enumerate(inside) for b in inside[i + 1 :]]
            for a, b in joint:
                if f.interacts(a, b):
                    raise ValueError(
                        f"blocks {[a, b]} cannot be summed out together: factor {name!r} "
                        f"couples them"
                    )
            for b in inside:
                if not (f.linear_in(b) or name in self._quadratic[b]):
                    raise ValueError(
                        f"block {b!r} cannot be summed out: factor {name!r} is not linear in it"
                    )

    def split_energy(self, state: State, sum_out, check: bool = True) -> tuple[Tensor, State]:
        """Split E into the part that does not depend on the summed-out blocks S and their natural
        parameters: E(x) = E_rest(x_-S) - sum_{u in S} eta_u(x_-S) . t_u(x_u).

        Returns (E_rest, {u: eta_u}). Used by ``free_energy`` and by annealing estimators, which
        validate once and pass ``check=False`` inside their loops.
        """
        sum_out = list(sum_out)
        if check:
            self.summable(sum_out)
        full = self.with_placeholders(state, sum_out)
        kept = [b for b in full if b not in sum_out]
        if check:
            self.check_state(full)
        stats = self.statistics({b: full[b] for b in kept})
        for u in sum_out:
            stats[u] = torch.zeros_like(full[u])
        batch = next(iter(full.values())).shape[0]
        e_rest = sum(self.units[b].base_energy(full[b]) for b in kept) if kept else 0.0
        for f in self.factors.values():
            touched = [u for u in sum_out if u in f.blocks]
            e_rest = e_rest + (f.offset(touched[0], stats) if touched else f.energy(stats))
        eta = {u: self.natural(u, full, stats) for u in sum_out}
        if not isinstance(e_rest, Tensor) or e_rest.dim() == 0:
            e_rest = e_rest + torch.zeros(batch, dtype=self.dtype, device=self.device)
        return e_rest, eta

    def free_energy(self, state: State, sum_out=None) -> Tensor:
        """F(x_-S) = -log sum_{x_S} exp(-E(x)) = E_rest - sum_{u in S} A_u(eta_u): shape (batch,).

        S (``sum_out``) defaults to the blocks missing from ``state``; they must be summable
        together (see ``summable``). With S empty this is the energy. A block with quadratic
        factors (a correlated Gaussian, a Markov chain path) contributes A_u(eta_u, q_u).
        """
        if sum_out is None:
            sum_out = [b for b in self.blocks if b not in state]
        e_rest, eta = self.split_energy(state, sum_out)
        f = e_rest
        full = None
        for u, n in eta.items():
            extra = {}
            if self._quadratic[u]:
                full = self.with_placeholders(state, sum_out) if full is None else full
                extra = self._given_quadratic(u, full, None)
            f = f - self.units[u].log_partition(n, **extra)
        return f

    def hidden(self) -> list[str]:
        """Blocks that are not visible."""
        return [b for b in self.blocks if b not in self.visible]

    # --- persistence -----------------------------------------------------------------------------
    def spec(self) -> dict[str, Any]:
        """A JSON-serialisable description of the graph (no parameters, no code)."""
        return {
            "format": "boltzkit.model/1",
            "blocks": [
                {"name": b, "type": type(u).__name__, "config": u.config()}
                for b, u in self.units.items()
            ],
            "visible": list(self.visible),
            "factors": [
                {"type": type(f).__name__, "config": f.config()} for f in self.factors.values()
            ],
        }

    def extra_repr(self) -> str:
        return f"blocks={self.blocks}, visible={self.visible}, schedule={self.schedule}"
