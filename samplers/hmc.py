"""Hamiltonian Monte Carlo over continuous blocks, vectorised over chains (each chain accepts or
rejects on its own), for energies that block Gibbs cannot sample (nonlinear factors)."""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable

import torch
from torch import Tensor

from ebm.model import EnergyModel
from samplers.kernel import Kernel, StepInfo, check_num_chains

__all__ = ["BatchedHMC", "hmc_step"]

State = dict[str, Tensor]


def hmc_step(
    potential: Callable[[State], Tensor],
    state: State,
    blocks: list[str],
    step_size: float,
    num_steps: int,
    generator: torch.Generator | None = None,
) -> tuple[State, Tensor]:
    """One HMC transition of ``blocks`` for every chain: momenta p ~ N(0, I), ``num_steps``
    leapfrog steps of size ``step_size`` on H = U(x) + |p|^2 / 2 with U = ``potential`` (shape
    (chains,)), then a Metropolis test per chain, accepting with probability min(1, exp(H_0 - H_1))
    (a diverging trajectory, H not finite, is rejected). Leaves exp(-U) invariant. Returns the new
    state and each chain's acceptance probability."""

    def grad(x: State) -> tuple[Tensor, State]:
        with torch.enable_grad():
            leaves = {b: x[b].detach().requires_grad_(True) for b in blocks}
            u = potential({**x, **leaves})
            grads = torch.autograd.grad(u.sum(), [leaves[b] for b in blocks])
        return u.detach(), dict(zip(blocks, grads, strict=True))

    x0 = {b: v.detach() for b, v in state.items()}
    p0 = {
        b: torch.randn(x0[b].shape, generator=generator, device=x0[b].device, dtype=x0[b].dtype)
        for b in blocks
    }
    u0, g = grad(x0)
    x, p = dict(x0), {b: p0[b] - 0.5 * step_size * g[b] for b in blocks}
    for i in range(num_steps):
        x.update({b: x[b] + step_size * p[b] for b in blocks})
        u1, g = grad(x)
        scale = step_size if i < num_steps - 1 else 0.5 * step_size
        p = {b: p[b] - scale * g[b] for b in blocks}

    def kinetic(mom: State) -> Tensor:
        return sum(0.5 * (m**2).flatten(1).sum(-1) for m in mom.values())

    log_accept = (u0 + kinetic(p0)) - (u1 + kinetic(p))
    log_accept = torch.where(torch.isfinite(log_accept), log_accept, -math.inf)
    accept_prob = log_accept.clamp(max=0.0).exp()
    uniform = torch.rand(accept_prob.shape, generator=generator, device=accept_prob.device)
    accept = uniform < accept_prob.to(uniform.dtype)
    out = dict(x0)
    for b in blocks:
        mask = accept.reshape(-1, *([1] * (x0[b].dim() - 1)))
        out[b] = torch.where(mask, x[b].detach(), x0[b])
    return out, accept_prob


class BatchedHMC(Kernel):
    """HMC on the continuous blocks of a model (``blocks``, default: every continuous block), the
    other blocks summed out where they can be (the potential is the free energy F of the kept
    blocks, e.g. a product of Student-t experts with its Gamma precisions summed out) and held
    fixed otherwise. ``step_size`` and ``num_steps`` set the leapfrog; ``warmup(state, n)`` tunes
    the step size by stochastic approximation towards ``target_accept`` (mean acceptance over the
    chains). A ``samplers.kernel.Kernel``: each step's info holds each chain's acceptance
    probability (``StepInfo.accept``)."""

    def __init__(
        self,
        model: EnergyModel,
        blocks: Iterable[str] | None = None,
        step_size: float = 0.1,
        num_steps: int = 10,
        generator: torch.Generator | None = None,
        target_accept: float = 0.8,
    ):
        self.model = model
        continuous = [b for b in model.blocks if not model.units[b].discrete]
        self.blocks = continuous if blocks is None else list(blocks)
        if not self.blocks:
            raise ValueError("HMC needs at least one continuous block")
        discrete = [b for b in self.blocks if model.units[b].discrete]
        if discrete:
            raise ValueError(f"HMC moves continuous blocks only; {discrete} are discrete")
        rest = [b for b in model.blocks if b not in self.blocks]
        self.sum_out = rest if model.can_sum_out(rest) else []
        if not step_size > 0 or num_steps < 1:
            raise ValueError("need step_size > 0 and num_steps >= 1")
        self.step_size, self.num_steps = float(step_size), int(num_steps)
        self.generator, self.target_accept = generator, float(target_accept)

    def potential(self, state: State) -> Tensor:
        """U = F(kept blocks), the free energy with ``sum_out`` summed out."""
        kept = {b: x for b, x in state.items() if b not in self.sum_out}
        return self.model.free_energy(kept, sum_out=self.sum_out)

    def init(self, num_chains: int, generator: torch.Generator | None = None) -> State:
        """Chains started from the unit types' draws at zero natural parameters."""
        check_num_chains(num_chains)
        if generator is not None:
            self.generator = generator
        m = self.model
        return {
            b: m.units[b].random(num_chains, self.generator, device=m.device, dtype=m.dtype)
            for b in m.blocks
            if b not in self.sum_out
        }

    def check_state(self, state: State) -> None:
        """The blocks that are not summed out, with shapes the model accepts."""
        self.model.check_state(state, [b for b in self.model.blocks if b not in self.sum_out])

    def step(self, state: State) -> tuple[State, StepInfo]:
        """One HMC transition of ``blocks`` (``hmc_step``): (the new state, its info)."""
        new, accept = hmc_step(
            self.potential, state, self.blocks, self.step_size, self.num_steps, self.generator
        )
        return new, StepInfo(accept=accept)

    def warmup(self, state: State, num_steps: int, rate: float = 0.05) -> State:
        """``num_steps`` steps adapting log(step_size) by rate * (mean acceptance - target)."""
        for _ in range(num_steps):
            state, info = self.step(state)
            gap = float(info.accept.mean()) - self.target_accept
            self.step_size *= math.exp(rate * gap)
        return state

    def __repr__(self) -> str:
        return f"BatchedHMC(step_size={self.step_size:.3g}, num_steps={self.num_steps})"
