"""Mean-field (variational) inference of the hidden blocks given the visible ones.

For a model whose energy is linear in the statistic of each hidden block (every built-in factor
touching two different blocks is), a fully factorised q(h) = prod_b q_b(h_b), each q_b of the
block's unit type with natural parameters lambda_b and means mu_b, has

    E_q[E(v, h)] = E(v, mu),

so the variational free energy E(v, mu) - H(q) is minimised block by block by

    lambda_b = eta_b(v, mu_-b),   mu_b = E[t_b | lambda_b],

the block's natural parameters (as in its Gibbs conditional) evaluated at the other blocks' means.
Blocks of one colour class share no factor, so a class is updated together; sweeping the classes
in schedule order is coordinate descent and never increases the variational free energy. The
fixed point gives the bound log p(v) >= -E(v, mu) + H(q) - log Z (``estimators.mean_field_bound``).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from ebm.graph import member_block
from ebm.model import EnergyModel

__all__ = ["MeanField", "mean_field"]


@dataclass
class MeanField:
    """The fitted q: ``means`` mu_b and ``natural`` lambda_b per hidden block, the number of
    sweeps taken and whether the largest change of a mean in the last sweep was below ``tol``."""

    means: dict[str, Tensor]
    natural: dict[str, Tensor]
    sweeps: int
    converged: bool

    def entropy(self, model: EnergyModel) -> Tensor:
        """H(q) = sum_b H(q_b), shape (batch,) (blocks without a base energy)."""
        out = 0.0
        for b, lam in self.natural.items():
            out = out + model.units[b].distribution(lam).entropy()
        return out

    def elbo(self, model: EnergyModel, data: dict[str, Tensor]) -> Tensor:
        """E_q[-E(v, h)] + H(q) for the visible state ``data``, shape (batch,): the bound
        log p(v) + log Z >= elbo. With every factor linear in each hidden block, E_q[E_f] =
        E_f(v, mu); a hidden block with a base energy E_0 (count units) adds
        H(q_b) - E_q[E_0,b] = A_b(lambda_b) - lambda_b . mu_b, which holds for any unit type
        of the exponential family; the others add their entropy."""
        full = {**data, **self.means}
        out = -model.energy(full)
        for b, lam in self.natural.items():
            units = model.units[b]
            if units.has_base_energy:
                mu = self.means[b]
                out = out + units.base_energy(mu)  # E_0 at the means is not E_q[E_0]: undone
                out = out + units.log_partition(lam) - (lam * mu).flatten(1).sum(-1)
            else:
                out = out + units.distribution(lam).entropy()
        return out


def mean_field(
    model: EnergyModel,
    data,
    max_sweeps: int = 100,
    tol: float = 1e-6,
    init: dict[str, Tensor] | None = None,
    blocks=None,
) -> MeanField:
    """Fit the factorised posterior q(h | v) over the hidden blocks (default: every block not in
    ``data``) by coordinate ascent, at most ``max_sweeps`` sweeps over the colour classes, stopping
    when no mean moves by more than ``tol``. ``init`` gives starting means (default: each block's
    mean at zero natural parameters, 1/2 for Bernoulli units). Runs without gradients. Raises
    ValueError for continuous hidden blocks or a factor not linear in a hidden block (a Markov
    chain's transitions).
    """
    if isinstance(max_sweeps, bool) or not isinstance(max_sweeps, int) or max_sweeps < 1:
        raise ValueError(f"max_sweeps must be an int >= 1, got {max_sweeps!r}")
    state = model.validate_data(data)
    hidden = [b for b in model.blocks if b not in state] if blocks is None else list(blocks)
    for b in hidden:
        if not model.units[b].discrete:
            raise ValueError(
                f"mean field here needs discrete hidden units; block {b!r} is "
                f"{type(model.units[b]).__name__}"
            )
        if model.quadratic_factors(b):
            raise ValueError(
                f"mean field here needs hidden blocks whose units are independent given the rest; "
                f"factor {model.quadratic_factors(b)[0]!r} couples the units of block {b!r}"
            )
    batch = next(iter(state.values())).shape[0]
    with torch.no_grad():
        means, natural = {}, {}
        for b in hidden:
            zero = torch.zeros(
                (batch, *model.units[b].shape), device=model.device, dtype=model.dtype
            )
            natural[b] = zero
            means[b] = model.units[b].mean(zero)
        if init is not None:
            for b, m in init.items():
                means[b] = m.to(device=model.device, dtype=model.dtype)
        # colour classes of the hidden blocks; a block whose units are coupled is updated a
        # colour class of its units at a time (coordinate ascent stays exact per unit)
        groups = [[m for m in group if member_block(m) in hidden] for group in model.schedule]
        groups = [g for g in groups if g]
        current = {**state, **means}
        # coupled blocks are written a class of units at a time: into copies of their own (an
        # ``init`` tensor is the caller's)
        current.update({b: current[b].clone() for b in hidden if model.coupled_factors(b)})
        converged, sweeps = False, 0
        while sweeps < max_sweeps and not converged:
            sweeps += 1
            change = 0.0
            for group in groups:
                stats = model.statistics(current)
                updates = [(m, _member_natural(model, m, current, stats)) for m in group]
                for m, lam in updates:
                    mu = model.units[member_block(m)].mean(lam)
                    change = max(change, _write_member(m, mu, lam, current, natural))
            converged = change < tol
    return MeanField(
        means={b: current[b] for b in hidden},
        natural=natural,
        sweeps=sweeps,
        converged=converged,
    )


def _member_natural(model: EnergyModel, member, current, stats) -> Tensor:
    """The natural parameters of a colour-class member: a whole block's, or those of the units
    of ``(block, units)``."""
    if isinstance(member, str):
        return model.natural(member, current, stats)
    block, index = member
    return model.natural_units(block, index, current, stats)


def _write_member(member, mu: Tensor, lam: Tensor, current, natural) -> float:
    """Store a member's new means and natural parameters; returns the largest change of a mean."""
    if isinstance(member, str):
        change = float((mu - current[member]).abs().max())
        natural[member], current[member] = lam, mu
        return change
    block, index = member
    change = float((mu - current[block][:, index]).abs().max())
    current[block][:, index] = mu  # both tensors mean_field made for the coupled block
    natural[block][:, index] = lam
    return change
