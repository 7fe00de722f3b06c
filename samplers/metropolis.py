"""Single-site Metropolis: the baseline every other sampler should beat."""

from __future__ import annotations

import torch
from torch import Tensor

from ebm.model import EnergyModel
from ebm.units import Categorical, _Binary
from samplers.kernel import Kernel, StepInfo, check_num_chains

__all__ = ["Metropolis"]

State = dict[str, Tensor]


class Metropolis(Kernel):
    """Single-site Metropolis on discrete blocks (Bernoulli, Spin, Categorical units).

    A sweep visits every unit once, block by block in the colour schedule. At unit i of block b the
    proposal flips a binary unit (or moves a categorical one to one of its other k - 1 states,
    uniformly: a symmetric proposal) and is accepted with probability min(1, exp(-Delta E)), where

        Delta E = -eta_b,i . (t(x'_i) - t(x_i)),    eta_b = natural parameters of b given the rest,

    since every factor is linear in each unit's statistic. The units of one block are
    conditionally independent given the other blocks, so visiting them one after another or all
    at once is the same kernel: they are updated together, one accept test per unit. A block whose
    units are coupled with each other is visited a colour class of its units at a time (the
    model's schedule), units of one class sharing no coupling. Each update satisfies
    detailed balance with respect to p(x), so a sweep leaves p(x) invariant. Unlike block Gibbs it
    rejects some moves: each step's info holds each chain's acceptance rate over its units
    (``StepInfo.accept``).

    Blocks with continuous units, or with a factor that is not linear in them (a Markov chain path
    coupled through its transitions), are refused with a clear error.
    """

    def __init__(self, model: EnergyModel, generator: torch.Generator | None = None):
        self.model = model
        self.generator = generator
        for b in model.blocks:
            units = model.units[b]
            if not isinstance(units, (_Binary, Categorical)) or units.has_base_energy:
                raise ValueError(
                    f"Metropolis updates discrete units (Bernoulli, Spin, Categorical) only; "
                    f"block {b!r} has {type(units).__name__} units"
                )
            if model.quadratic_factors(b) or model.nonlinear_factors(b):
                raise ValueError(
                    f"block {b!r}: its units are coupled inside the block (factors "
                    f"{model.quadratic_factors(b) + model.nonlinear_factors(b)}), which "
                    f"single-site Metropolis here does not handle"
                )
        # blocks, or colour classes of the units of a block whose units are coupled
        self.schedule = [m for group in model.schedule for m in group]

    def init(self, num_chains: int, generator: torch.Generator | None = None) -> State:
        """``num_chains`` chains with every unit uniform at random."""
        check_num_chains(num_chains)
        if generator is not None:
            self.generator = generator
        m = self.model
        return {
            b: m.units[b].random(num_chains, self.generator, device=m.device, dtype=m.dtype)
            for b in m.blocks
        }

    def _propose(self, units, x: Tensor) -> Tensor:
        if isinstance(units, _Binary):
            return units.low + units.high - x
        k = units.k
        current = x.argmax(-1)
        shift = torch.randint(1, k, current.shape, generator=self.generator, device=x.device)
        return torch.nn.functional.one_hot((current + shift) % k, k).to(x.dtype)

    @torch.no_grad()
    def step(self, state: State) -> tuple[State, StepInfo]:
        """One sweep over every unit: (a new state, the input is not modified; its info with
        each chain's acceptance rate)."""
        m = self.model
        state = dict(state)
        accepted, total = None, 0
        owned = set()
        for member in self.schedule:
            b, index = (member, None) if isinstance(member, str) else member
            units, x = m.units[b], state[b]
            if index is None:
                eta = m.natural(b, state)
            else:
                eta = m.natural_units(b, index, state)
                x = x[:, index]
            proposal = self._propose(units, x)
            delta = -(eta * (proposal - x))
            if isinstance(units, Categorical):
                delta = delta.sum(-1)
            u = torch.rand(delta.shape, generator=self.generator, device=x.device, dtype=x.dtype)
            accept = torch.log(u) < -delta
            mask = accept.unsqueeze(-1) if isinstance(units, Categorical) else accept
            moved = torch.where(mask, proposal, x)
            if index is None:
                state[b] = moved
            else:  # the class's units written into a copy of the block this step owns
                if b not in owned:
                    state[b] = state[b].clone()
                    owned.add(b)
                state[b][:, index] = moved
            count = accept.flatten(1).sum(1)
            accepted = count if accepted is None else accepted + count
            total += accept.flatten(1).shape[1]
        return state, StepInfo(accept=accepted.double() / total)

    def __repr__(self) -> str:
        return "Metropolis()"
