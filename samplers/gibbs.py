"""Block Gibbs sampling on the colour schedule of a model's block graph."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping

import torch
from torch import Tensor

from ebm.graph import member_block
from ebm.model import EnergyModel
from samplers.kernel import SWEEP, Kernel, StepInfo, check_num_chains
from samplers.sweep import gibbs_sweep

__all__ = ["BlockGibbs"]

State = dict[str, Tensor]


class BlockGibbs(Kernel):
    """Block Gibbs sampler: one sweep updates each colour class of ``model.schedule`` in turn,
    drawing every block of a class from p(x_block | all other blocks) (they are conditionally
    independent given the rest, so they are drawn together). Each update leaves p(x) invariant; a
    sweep is an irreducible kernel when every conditional has full support.

    ``schedule``: the colour classes a sweep draws in turn (default ``model.schedule``); a class
    member is a block or a pair (block, unit numbers), and the members of one class must share
    no factor term (``samplers.sweep.update_class``). Every free block must be updated.

    ``clamp`` holds blocks fixed: a dict block -> values (shape (n,...) broadcast to all chains, or
    (chains, ...)), or an iterable of block names whose values are taken from the state passed to
    ``init(values=...)``. Clamped blocks never change: the chains then sample the conditional
    distribution of the free blocks.

    Randomness comes from ``generator`` (given here or to ``init``); a fixed seed gives the same
    chains. A ``samplers.kernel.Kernel``: ``run`` is ``samplers.runner.run_chain`` on the
    buffered ``stepper``.
    """

    def __init__(
        self,
        model: EnergyModel,
        clamp: Mapping[str, Tensor] | Iterable[str] | None = None,
        generator: torch.Generator | None = None,
        schedule: Iterable[Iterable] | None = None,
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
        groups = model.schedule if schedule is None else [list(g) for g in schedule]
        self.schedule = [[m for m in g if member_block(m) not in self.clamped] for g in groups]
        self.schedule = [g for g in self.schedule if g]
        named = {member_block(m) for g in self.schedule for m in g}
        unknown = sorted(named - set(model.blocks))
        if unknown:
            raise ValueError(
                f"the schedule names unknown block(s) {unknown}; model blocks: {model.blocks}"
            )
        never = [b for b in model.blocks if b not in named and b not in self.clamped]
        if never:
            raise ValueError(
                f"the schedule never updates block(s) {never}: name each free block, or some of "
                f"its units, in a colour class, or clamp it"
            )

    def init(
        self,
        num_chains: int,
        generator: torch.Generator | None = None,
        values: Mapping[str, Tensor] | None = None,
    ) -> State:
        """Start ``num_chains`` chains: free blocks uniform at random (or from ``values``), clamped
        blocks at their clamped values."""
        check_num_chains(num_chains)
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
    def step(self, state: State) -> tuple[State, StepInfo]:
        """One sweep over the schedule (``samplers.sweep.gibbs_sweep``): (a new state, the input
        is not modified; its info: one sweep, always moved)."""
        return gibbs_sweep(self.model, state, self.schedule, self.generator), SWEEP

    def stepper(self) -> Callable[[State], tuple[State, StepInfo]]:
        """The step of one run, the sweeps keeping their buffers in one work dict
        (``samplers.sweep.update_class``): nothing of a block's size is allocated from the
        second sweep on, and the draws are those of ``step``, bit for bit. A state it returns
        is overwritten two steps later."""
        work: dict = {}

        def sweep(state: State) -> tuple[State, StepInfo]:
            return gibbs_sweep(self.model, state, self.schedule, self.generator, work=work), SWEEP

        return sweep
