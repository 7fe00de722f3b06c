"""The sampler protocol: a Markov kernel as ``init`` and ``step``, with an info record per step.

Every sampler of the project that advances chains one step at a time (block Gibbs, Metropolis,
parallel tempering, batched HMC) is a ``Kernel``:

- ``init(num_chains, generator=None) -> state``: a state of ``num_chains`` chains (a dict block ->
  tensor with one row per chain, or per replica for parallel tempering);
- ``step(state) -> (state, StepInfo)``: one transition that leaves the target distribution
  invariant, and what it did (acceptance, swap rates, cost);
- ``target(state) -> state``: the part of the state that samples p(x) (the beta = 1 replicas of
  parallel tempering; the whole state otherwise);
- ``warmup(state, num_steps) -> state``: steps during which the kernel may adapt itself (step
  size, temperature ladder); the default is plain steps;
- ``stepper() -> step``: the step function for one run, which may keep work buffers from step to
  step (a state it returns may then be overwritten by later steps of that run);
- ``run(state, num_steps, observers, progress) -> state``: ``samplers.runner.run_chain``.

The runner (warm-up, observers, progress, timing, the summary of the infos) lives in one place,
``samplers.runner``; the negative phases of ``samplers.contrastive`` drive the same kernels.
"""

from __future__ import annotations

import abc
from collections.abc import Callable, Iterable
from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor

from ebm.model import EnergyModel
from samplers.runner import Observer, run_chain

__all__ = ["Kernel", "StepInfo", "check_count", "check_num_chains"]

State = dict[str, Tensor]


@dataclass(frozen=True)
class StepInfo:
    """What one step of a kernel did.

    ``cost``: sweeps of the model the step took (parallel tempering's step sweeps R replicas).
    ``accept``: (chains,) each chain's acceptance probability (HMC, swaps) or rate over its units
    (Metropolis) in this step; None for a kernel that always moves (Gibbs). ``swap_accept``: for
    replica exchange, (R - 1,) the mean swap acceptance probability of each adjacent pair in this
    step, NaN for the pairs not tried. ``round_trips``: replicas that completed a round trip
    (bottom -> top -> bottom of the ladder) in this step. ``betas``: the ladder this step used.
    """

    cost: int = 1
    accept: Tensor | None = None
    swap_accept: np.ndarray | None = None
    round_trips: int = 0
    betas: np.ndarray | None = None


#: the info of a step that always moves and costs one sweep
SWEEP = StepInfo()


def check_count(value, name: str, minimum: int = 1) -> int:
    """``value`` when it is an int >= ``minimum``, else ValueError naming it ``name``."""
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise ValueError(f"{name} must be an int >= {minimum}, got {value!r}")
    return value


def check_num_chains(num_chains) -> int:
    """``num_chains`` when it is an int >= 1, else ValueError."""
    return check_count(num_chains, "num_chains")


class Kernel(abc.ABC):
    """A Markov kernel on the states of ``model`` (see the module docstring for the protocol).

    Randomness comes from ``generator`` (set in the constructor or by ``init``)."""

    model: EnergyModel
    generator: torch.Generator | None = None

    @property
    def cost(self) -> int:
        """Sweeps of the model one step takes."""
        return 1

    @abc.abstractmethod
    def init(self, num_chains: int, generator: torch.Generator | None = None) -> State:
        """A state of ``num_chains`` chains."""

    @abc.abstractmethod
    def step(self, state: State) -> tuple[State, StepInfo]:
        """One transition: (the new state, a new dict; the input is not modified, its info)."""

    def target(self, state: State) -> State:
        """The part of ``state`` that samples p(x): the whole state unless overridden."""
        return state

    def check_state(self, state: State) -> None:
        """ValueError unless ``state`` is a state of this kernel: every block of the model (or
        those the kernel moves and reads), with shapes that agree and values their unit types can
        take."""
        self.model.check_state(state)
        for b, x in state.items():
            self.model.units[b].validate(x, b)

    def stepper(self) -> Callable[[State], tuple[State, StepInfo]]:
        """The step function of one run: ``step`` unless the kernel keeps buffers for a run."""
        return self.step

    def warmup(self, state: State, num_steps: int) -> State:
        """``num_steps`` steps before the kept ones; a kernel that adapts overrides this."""
        return run_chain(self, state, num_steps).state

    def run(
        self,
        state: State,
        num_steps: int,
        observers: Iterable[Observer] | None = None,
        progress: bool = False,
    ) -> State:
        """Apply ``num_steps`` steps, calling ``observer(target(state), step)`` after each
        (``samplers.runner.run_chain``); returns the final state."""
        return run_chain(self, state, num_steps, observers, progress).state
