"""NumPyro's NUTS on the JAX version of a model's free energy (``ebm.jax_export.to_jax(model)``)."""

from __future__ import annotations

import torch
from torch import Tensor

from ebm.jax_export import to_jax
from ebm.model import EnergyModel

__all__ = ["NumPyroNUTS"]


class NumPyroNUTS:
    """``numpyro.infer.NUTS`` with potential U(x) = F(x) from ``ebm.jax_export.to_jax(model)`` (the visible
    continuous blocks, the others summed out), step size and diagonal mass matrix adapted during
    warm-up, chains vectorised in one JAX program. ``options`` go to NumPyro's kernel (e.g.
    ``max_tree_depth``, ``target_accept_prob``). The parameters are copied when the sampler is
    made: make a new one after training."""

    def __init__(self, model: EnergyModel, **options):
        try:
            import numpyro  # noqa: F401
        except ImportError as err:  # pragma: no cover - numpyro is an optional extra
            raise ImportError("NumPyroNUTS needs numpyro: pip install 'boltzkit[jax]'") from err
        self.model = model
        self.energy = to_jax(model)
        if any(model.units[b].discrete for b in self.energy.blocks):
            raise ValueError("NumPyroNUTS moves continuous blocks only")
        self.options = options

    def potential(self, params: dict) -> object:
        """U(x) for one state (JAX arrays without a chain dimension)."""
        state = {b: params[b][None] for b in self.energy.blocks}
        return self.energy.free_energy(self.energy.params, state)[0]

    def run(
        self,
        num_samples: int,
        warmup_steps: int = 200,
        num_chains: int = 1,
        generator: torch.Generator | None = None,
        progress: bool = False,
    ) -> dict[str, Tensor]:
        """block -> draws of shape (chains, samples, *block shape), as float64 torch tensors.
        Chains start at draws of the units at zero natural parameters; ``generator`` seeds the
        JAX random key."""
        import jax
        import numpy as np
        from numpyro.infer import MCMC, NUTS

        m = self.model
        init = {
            b: jax.numpy.asarray(
                m.units[b].random(num_chains, generator, dtype=torch.float64).cpu().numpy()
            )
            for b in self.energy.blocks
        }
        seed = int(torch.randint(2**31 - 1, (1,), generator=generator))
        mcmc = MCMC(
            NUTS(potential_fn=self.potential, **self.options),
            num_warmup=warmup_steps,
            num_samples=num_samples,
            num_chains=num_chains,
            chain_method="vectorized",
            progress_bar=progress,
        )
        mcmc.run(jax.random.PRNGKey(seed), init_params=init)
        draws = mcmc.get_samples(group_by_chain=True)
        return {b: torch.from_numpy(np.array(x)) for b, x in draws.items()}
