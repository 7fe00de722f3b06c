"""pyro's HMC and NUTS (with step-size and mass-matrix adaptation) on a model's free energy."""

from __future__ import annotations

from collections.abc import Iterable

import torch
from torch import Tensor

from ebm.model import EnergyModel

__all__ = ["HMC", "NUTS"]


class _PyroSampler:
    """Shared plumbing: the potential U = F(blocks) (the free energy, other blocks summed out where
    they can be), one pyro ``MCMC`` run per chain, chains run one after another."""

    def __init__(self, model: EnergyModel, blocks: Iterable[str] | None = None, **options):
        try:
            import pyro  # noqa: F401
        except ImportError as err:  # pragma: no cover - pyro is an optional extra
            raise ImportError("pyro samplers need pyro: pip install 'boltzkit[pyro]'") from err
        self.model = model
        continuous = [b for b in model.blocks if not model.units[b].discrete]
        self.blocks = continuous if blocks is None else list(blocks)
        if not self.blocks or any(model.units[b].discrete for b in self.blocks):
            raise ValueError(f"pyro samplers move continuous blocks; got {self.blocks}")
        for b in self.blocks:
            if type(model.units[b]).__name__ != "Gaussian":
                raise ValueError(
                    f"block {b!r} has {type(model.units[b]).__name__} units: pyro's HMC and NUTS "
                    f"here need unconstrained (Gaussian) blocks; sum the others out"
                )
        self.sum_out = [b for b in model.blocks if b not in self.blocks]
        model.summable(self.sum_out)
        self.options = options

    def potential(self, params: dict[str, Tensor]) -> Tensor:
        """U(x) = F(x) for one state (no chain dimension), a scalar."""
        state = {b: params[b].unsqueeze(0) for b in self.blocks}
        return self.model.free_energy(state, sum_out=self.sum_out)[0]

    def kernel(self):
        raise NotImplementedError

    def run(
        self,
        num_samples: int,
        warmup_steps: int = 200,
        num_chains: int = 1,
        initial: dict[str, Tensor] | None = None,
        generator: torch.Generator | None = None,
        progress: bool = False,
    ) -> dict[str, Tensor]:
        """Draw ``num_samples`` after ``warmup_steps`` adaptation steps in each of ``num_chains``
        chains (started at ``initial`` rows or at draws of the units at zero natural parameters);
        returns block -> tensor of shape (chains, samples, *block shape). ``generator`` seeds each
        chain's pyro run, so a fixed generator reproduces the draws."""
        import pyro
        from pyro.infer.mcmc import MCMC

        m = self.model
        out: dict[str, list[Tensor]] = {b: [] for b in self.blocks}
        for c in range(num_chains):
            seed = int(torch.randint(2**31 - 1, (1,), generator=generator))
            pyro.set_rng_seed(seed)
            if initial is not None:
                start = {b: initial[b][c].to(m.device, m.dtype) for b in self.blocks}
            else:
                start = {
                    b: m.units[b].random(1, generator, device=m.device, dtype=m.dtype)[0]
                    for b in self.blocks
                }
            mcmc = MCMC(
                self.kernel(),
                num_samples=num_samples,
                warmup_steps=warmup_steps,
                initial_params=start,
                disable_progbar=not progress,
            )
            mcmc.run()
            for b, x in mcmc.get_samples().items():
                out[b].append(x.detach())
        return {b: torch.stack(xs) for b, xs in out.items()}


class HMC(_PyroSampler):
    """``pyro.infer.mcmc.HMC`` on U = F(x): fixed trajectory length ``num_steps`` leapfrog steps,
    step size (and, with ``adapt_mass_matrix``, a diagonal mass matrix) adapted during warm-up.
    ``options`` go to pyro's kernel (e.g. ``step_size``, ``num_steps``, ``target_accept_prob``)."""

    def kernel(self):
        from pyro.infer.mcmc import HMC as PyroHMC

        options = {"step_size": 0.1, "num_steps": 10, **self.options}
        return PyroHMC(potential_fn=self.potential, **options)


class NUTS(_PyroSampler):
    """``pyro.infer.mcmc.NUTS`` on U = F(x): the no-U-turn sampler, trajectory lengths chosen per
    step, step size and diagonal mass matrix adapted during warm-up. ``options`` go to pyro's
    kernel (e.g. ``max_tree_depth``, ``target_accept_prob``)."""

    def kernel(self):
        from pyro.infer.mcmc import NUTS as PyroNUTS

        return PyroNUTS(potential_fn=self.potential, **self.options)
