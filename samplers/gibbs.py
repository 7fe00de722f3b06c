"""Block Gibbs sampling on the colour schedule of a model's block graph."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping

import torch
from torch import Tensor
from tqdm.auto import tqdm

from ebm.model import EnergyModel
from samplers.sweep import gibbs_sweep

__all__ = ["BlockGibbs"]

State = dict[str, Tensor]
Observer = Callable[[State, int], None]


class BlockGibbs:
    """Block Gibbs sampler: one sweep updates each colour class of ``model.schedule`` in turn,
    drawing every block of a class from p(x_block | all other blocks) (they are conditionally
    independent given the rest, so they are drawn together). Each update leaves p(x) invariant; a
    sweep is an irreducible kernel when every conditional has full support.

    ``clamp`` holds blocks fixed: a dict block -> values (shape (n,...) broadcast to all chains, or
    (chains, ...)), or an iterable of block names whose values are taken from the state passed to
    ``init(values=...)``. Clamped blocks never change: the chains then sample the conditional
    distribution of the free blocks.

    Randomness comes from ``generator`` (given here or to ``init``); a fixed seed gives the same
    chains.
    """

    def __init__(
        self,
        model: EnergyModel,
        clamp: Mapping[str, Tensor] | Iterable[str] | None = None,
        generator: torch.Generator | None = None,
    ):
        self.model = model
        self.generator = generator
        if clamp is None:
            clamp = {}
        if isinstance(clamp, str):
            clamp = [clamp]
        if isinstance(clamp, Mapping):
            self.clamp_values = dict(clamp)
            self.clamped = set(clamp)
        else:
            self.clamp_values = {}
            self.clamped = set(clamp)
        for b in self.clamped:
            if b not in model.units:
                raise ValueError(f"cannot clamp unknown block {b!r}; model blocks: {model.blocks}")
        self.schedule = [[b for b in group if b not in self.clamped] for group in model.schedule]
        self.schedule = [g for g in self.schedule if g]

    def init(
        self,
        num_chains: int,
        generator: torch.Generator | None = None,
        values: Mapping[str, Tensor] | None = None,
    ) -> State:
        """Start ``num_chains`` chains: free blocks uniform at random (or from ``values``), clamped
        blocks at their clamped values."""
        if isinstance(num_chains, bool) or not isinstance(num_chains, int) or num_chains < 1:
            raise ValueError(f"num_chains must be an int >= 1, got {num_chains!r}")
        if generator is not None:
            self.generator = generator
        values = dict(values or {})
        model = self.model
        state: State = {}
        for b in model.blocks:
            given = self.clamp_values.get(b, values.get(b))
            if given is not None:
                state[b] = self._expand(b, given, num_chains)
            elif b in self.clamped:
                raise ValueError(
                    f"block {b!r} is clamped but no value was given: pass values={{{b!r}: ...}}"
                )
            else:
                state[b] = model.units[b].random(
                    num_chains, self.generator, device=model.device, dtype=model.dtype
                )
        return state

    def _expand(self, block: str, x, num_chains: int) -> Tensor:
        units = self.model.units[block]
        x = torch.as_tensor(x)
        if tuple(x.shape) == units.shape:
            x = x.unsqueeze(0).expand(num_chains, *units.shape)
        x = units.validate(x, block)
        if x.shape[0] != num_chains:
            raise ValueError(
                f"block {block!r}: values for {x.shape[0]} chains, expected {num_chains}"
            )
        return x.to(device=self.model.device, dtype=self.model.dtype).contiguous()

    @torch.no_grad()
    def step(self, state: State) -> State:
        """One sweep over the schedule (``samplers.sweep.gibbs_sweep``); returns a new state (the
        input is not modified)."""
        return gibbs_sweep(self.model, state, self.schedule, self.generator)

    def run(
        self,
        state: State,
        num_sweeps: int,
        observers: Iterable[Observer] | None = None,
        progress: bool = False,
    ) -> State:
        """Apply ``num_sweeps`` sweeps, calling each observer as ``observer(state, sweep)`` after
        every sweep (observers accumulate statistics instead of storing samples); returns the
        final state. The chains are those of ``num_sweeps`` calls of ``step``, draw for draw.

        The hot loop allocates nothing of a block's size: the sweeps keep their buffers in one
        work dict (``samplers.sweep.update_class``), two per block taken in turn. The input state
        is never written to. Observers see the live state, overwritten two sweeps later: a
        tensor they keep past their call must be copied (``Trace`` copies). ValueError for a
        negative ``num_sweeps`` or a state with values its unit types cannot take."""
        if isinstance(num_sweeps, bool) or not isinstance(num_sweeps, int) or num_sweeps < 0:
            raise ValueError(f"num_sweeps must be an int >= 0, got {num_sweeps!r}")
        observers = list(observers or [])
        self.model.check_state(state)
        for b, x in state.items():
            self.model.units[b].validate(x, b)  # values the unit type can take, finite
        work: dict = {}
        with torch.no_grad():
            for sweep in tqdm(
                range(num_sweeps), desc="gibbs", unit="sweep", disable=not progress, leave=False
            ):
                state = gibbs_sweep(self.model, state, self.schedule, self.generator, work=work)
                for obs in observers:
                    obs(state, sweep)
        return state
