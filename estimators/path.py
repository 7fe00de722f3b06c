"""The geometric annealing path between a factorised base and a model, shared by forward and
reverse annealed importance sampling."""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
from torch import Tensor

from ebm.backend import backend_for
from ebm.backend.buffers import kept_buffer
from ebm.base import FactorizedBase
from ebm.graph import member_block
from ebm.model import EnergyModel
from estimators.exact import choose_sum_out
from samplers.hmc import hmc_step
from samplers.sweep import update_class

__all__ = ["GeometricPath", "PathTerms"]

State = dict[str, Tensor]


@dataclass
class PathTerms:
    """What the unnormalised log-densities along the path need at one state x_-S: the factor
    energies that do not touch S (float64), the natural parameters of the summed-out blocks (model
    dtype and float64), the base energy (float64), the unit base energies of the kept blocks
    (float64; not annealed) and the quadratic terms of summed-out blocks with quadratic factors
    (a Gaussian's precision, a Markov chain's log transitions; model dtype and float64)."""

    e_rest: Tensor
    eta: dict[str, Tensor]
    eta64: dict[str, Tensor]
    e_base: Tensor | float
    e_units: Tensor | float = 0.0
    quadratic: dict[str, Tensor] = field(default_factory=dict)
    quadratic64: dict[str, Tensor] = field(default_factory=dict)


class GeometricPath:
    """p_beta*(x) = p_A*(x_A)^(1 - beta) p*(x)^beta on the factors, i.e.

        E_beta(x) = sum_u E_0,u(x_u) + (1 - beta) E_A(x_A) + beta sum_f E_f(x),

    where the unit base energies E_0 (zero for discrete units; the Gaussian's |x - mu|^2 / 2s^2)
    are not annealed, so that every p_beta is normalisable. The base A is a factorised distribution
    over some discrete blocks (default ``FactorizedBase.uniform``: the visible blocks, or every
    discrete block when a visible block is continuous); blocks it does not cover are independent
    draws of their unit type at zero natural parameters at beta = 0 (uniform, or N(mu, s^2)), so

        log Z_0 = log Z_A + sum_{u not in A} A_u(0).

    The blocks S (``sum_out``; default: the blocks outside the base when they can be summed out
    together) are summed out of the densities. When neither base nor ``sum_out`` is given and
    the blocks outside the default base cannot be summed out together (a DBM's hidden layers), the
    path anneals the fewest states instead (``anneal_fewest``: for a DBM, a uniform base over the
    odd layers with the even layers, v included, summed out), and where continuous blocks make
    that impossible (a product of Student-t experts) it sums out the hidden blocks alone. With a
    base given and no ``sum_out``, S is the blocks outside the base if they can go together, else
    the summable set among them that leaves the fewest states (``exact.choose_sum_out``). For a
    trained DBM, pass ``base=ebm.mean_field_base(model, data)`` and ``sum_out=["h1"]``: the path
    then anneals v and h2 from the data's rates with h1 summed out, which starts the chains where
    the model puts its mass (docs/results.md compares the starts on an MNIST-trained DBM). Then

        log f_beta(x_-S) = -(1 - beta) E_A(x_A) - sum_u E_0,u(x_u) - beta E_rest(x_-S)
                           + sum_{u in S} A_u(beta eta_u(x_-S), beta q_u(x_-S)),

    with q_u the quadratic term that quadratic factors add to a block (a Gaussian's precision, a
    Markov chain's log transition potentials; none for the others).

    ``transition`` is one block Gibbs sweep that leaves p_beta invariant: S drawn afresh first (so
    the chain on x_-S is Markov), then the other colour classes in order (reversed with
    ``reverse=True``). A continuous block with a factor that is not linear (nor quadratic) in it
    (an under-complete product of experts) cannot be drawn from its conditional: it takes one HMC
    transition on -log f_beta instead (``hmc_steps`` leapfrog steps of ``hmc_step_size``), which
    leaves p_beta invariant too.

    ``clamp`` (block -> values, one row per chain) holds blocks fixed: the path then runs from the
    base to the model conditioned on them, and log Z_1 is log Z(x_clamped) = log of the sum of
    exp(-E) over the other blocks, one per chain (what a per-example log p(v) needs: log p(v) =
    log Z(v) - log Z). Clamped blocks are never sampled, summed out or annealed against a base; the
    default base and S are then ``anneal_fewest`` among the other blocks.
    """

    def __init__(
        self,
        model: EnergyModel,
        base: FactorizedBase | None = None,
        sum_out=None,
        clamp: dict[str, Tensor] | None = None,
        hmc_step_size: float = 0.1,
        hmc_steps: int = 10,
    ):
        self.hmc_step_size, self.hmc_steps = float(hmc_step_size), int(hmc_steps)
        self.clamp = self._check_clamp(model, clamp)
        free = [b for b in model.blocks if b not in self.clamp]
        approximate = [b for b in free if not model.units[b].exact_draws]
        if approximate:
            raise ValueError(
                f"blocks {approximate} draw from an approximation of their conditional (e.g. "
                f"SteppedSigmoid(noisy=True)), so annealing with them would not leave the "
                f"intermediate distributions invariant; switch them to exact draws for the "
                f"estimate (model.units[b].noisy = False): the model, and its log Z, are the same"
            )
        if base is None:
            if self.clamp:
                if sum_out is None:
                    base, sum_out = self.anneal_fewest(model, among=free)
                else:
                    base = FactorizedBase(model, {})
            else:
                base = FactorizedBase.uniform(model)
                outside = [b for b in model.blocks if b not in base.blocks]
                if sum_out is None and not model.can_sum_out(outside):
                    try:
                        base, sum_out = self.anneal_fewest(model)
                    except ValueError:  # continuous blocks that cannot all be summed out
                        sum_out = self.default_sum_out(model, base, model.hidden())
        if not isinstance(base, FactorizedBase):
            raise TypeError("base must be an ebm.FactorizedBase (e.g. ebm.base_rate(model, data))")
        if sum_out is None:
            sum_out = self.default_sum_out(model, base, free)
        sum_out = list(sum_out)
        overlap = (set(sum_out) | set(base.blocks)) & set(self.clamp)
        if overlap:
            raise ValueError(
                f"clamped blocks {sorted(overlap)} cannot be in the base or summed out"
            )
        overlap = set(sum_out) & set(base.blocks)
        if overlap:
            raise ValueError(
                f"blocks {sorted(overlap)} are covered by the base and cannot be summed out"
            )
        model.summable(sum_out)
        self.model, self.base, self.sum_out = model, base, sum_out
        self.base_natural = {
            b: n.to(device=model.device, dtype=model.dtype) for b, n in base.natural.items()
        }
        units = model.units
        outside = [b for b in free if b not in base.blocks]
        per_chain = [b for b in outside if units[b].per_chain]
        with torch.no_grad():  # the blocks outside the base at beta = 0
            log_z_free = sum(
                float(
                    units[b].log_partition(torch.zeros((1, *units[b].shape), dtype=torch.float64))
                )
                for b in outside
                if b not in per_chain
            )
            #: the part of log Z_0 that differs from chain to chain (blocks whose states differ
            #: per chain: count blocks with one length per chain), float64 (chains,), or None
            self.log_z0_per_chain = None
            for b in per_chain:
                zero = torch.zeros((len(units[b].length), *units[b].shape), dtype=torch.float64)
                part = units[b].log_partition(zero)
                self.log_z0_per_chain = (
                    part if self.log_z0_per_chain is None else (self.log_z0_per_chain + part)
                )
        self.log_z0 = base.log_z() + log_z_free
        groups = [
            [
                m
                for m in group
                if member_block(m) not in sum_out and member_block(m) not in self.clamp
            ]
            for group in model.schedule
        ]
        self.groups = [g for g in groups if g]
        # blocks with a factor neither linear nor quadratic in them: moved by HMC, not Gibbs
        self.smooth = {
            member_block(m)
            for g in self.groups
            for m in g
            if model.nonlinear_factors(member_block(m))
        }

    @staticmethod
    def _check_clamp(model: EnergyModel, clamp) -> dict[str, Tensor]:
        if not clamp:
            return {}
        out = {}
        for b, x in clamp.items():
            if b not in model.units:
                raise ValueError(f"clamped block {b!r} is not a block of the model")
            out[b] = model.units[b].validate(x, b).to(device=model.device, dtype=model.dtype)
        model.check_state(out, blocks=list(out))
        return out

    @staticmethod
    def anneal_fewest(model: EnergyModel, among=None) -> tuple[FactorizedBase, list[str]]:
        """(uniform base over R, S): S is the summable set that leaves the fewest states to anneal
        (``exact.choose_sum_out``, among the given blocks) and R the other blocks of ``among``.
        For a DBM: S = the even layers (v, h2, ...), annealing the odd ones only, as Salakhutdinov
        & Hinton (2009) do; with v clamped, S = the larger of the layers that can go together."""
        among = model.blocks if among is None else list(among)
        sum_out = choose_sum_out(model, among=among)
        rest = [b for b in among if b not in sum_out]
        return FactorizedBase(model, {b: torch.zeros(model.units[b].shape) for b in rest}), sum_out

    @staticmethod
    def default_sum_out(model: EnergyModel, base: FactorizedBase, candidates=None) -> list[str]:
        """The blocks the base does not cover (among ``candidates``, default all), when summable
        together; else the summable set among them that leaves the fewest states to anneal
        (``exact.choose_sum_out``; for a DBM with a base over v, the larger of h1 and h2);
        else (continuous blocks that cannot go together) none."""
        candidates = model.blocks if candidates is None else candidates
        hidden = [b for b in candidates if b not in base.blocks]
        if model.can_sum_out(hidden):
            return hidden
        try:
            return choose_sum_out(model, among=hidden)
        except ValueError:
            return []

    def fingerprint_tensors(self) -> list:
        """Tensors that identify the path beyond the model (for checkpoints)."""
        return list(self.base.natural.values()) + list(self.clamp.values())

    @property
    def chain_blocks(self) -> list[str]:
        """The blocks a chain carries from one temperature to the next (all but S)."""
        return [b for b in self.model.blocks if b not in self.sum_out]

    def init(self, num_chains: int, generator: torch.Generator | None = None) -> State:
        """An exact draw from p_0: the base over its blocks, every other chain block uniform."""
        m = self.model
        x = self.base.sample(num_chains, generator, device=m.device, dtype=m.dtype)
        for b, values in self.clamp.items():
            if values.shape[0] != num_chains:
                raise ValueError(
                    f"clamped block {b!r} has {values.shape[0]} rows; the path runs one per chain, "
                    f"so num_chains must be {values.shape[0]}"
                )
            x[b] = values
        for b in self.chain_blocks:
            if b not in x:
                x[b] = m.units[b].random(num_chains, generator, device=m.device, dtype=m.dtype)
        return x

    def terms(self, x: State, work: dict | None = None) -> PathTerms:
        """The pieces of log f_beta at x_-S, for any beta (one pass over the factors).

        ``work``: a dict the caller keeps from step to step (see ``transition``): the terms are
        then written into tensors kept there, the same values bit for bit, and are overwritten
        by the next call with the same ``work``."""
        kept = {b: x[b] for b in self.chain_blocks}
        backend = backend_for(self.model.device)
        e_rest, eta = backend.split_energy(self.model, kept, self.sum_out, work)
        m = self.model
        e_base = _double(self.base.energy(x), work, "path.e_base") if self.base.blocks else 0.0
        e_rest = _double(e_rest, work, "path.e_rest")
        e_units: Tensor | float = 0.0
        for b in self.chain_blocks:  # unit base energies stay out of the annealing
            if m.units[b].has_base_energy:
                e_units = e_units + m.units[b].base_energy(x[b]).double()
        if isinstance(e_units, Tensor):
            e_rest = e_rest - e_units if work is None else e_rest.sub_(e_units)
        quadratic = {}
        if any(m.quadratic_factors(u) for u in self.sum_out):
            full = m.with_placeholders({b: x[b] for b in self.chain_blocks}, self.sum_out)
            stats = m.statistics(full)
            for u in self.sum_out:
                q = m.quadratic(u, full, stats)
                if q is not None:
                    quadratic[u] = q
        return PathTerms(
            e_rest,
            eta,
            {u: _double(n, work, ("path.eta64", u)) for u, n in eta.items()},
            e_base,
            e_units,
            quadratic,
            {u: q.double() for u, q in quadratic.items()},
        )

    def log_f(self, beta: float, t: PathTerms, work: dict | None = None, key="log_f") -> Tensor:
        """log f_beta(x_-S), float64: shape (chains,). With ``work`` (see ``transition``) the
        result and its temporaries are tensors kept there under ``key``: the same values, bit
        for bit, overwritten by the next call with the same ``work`` and ``key``."""
        if work is None:
            out = -(1.0 - beta) * t.e_base - beta * t.e_rest - t.e_units
            for u, n in t.eta64.items():
                extra = self.model.given_quadratic(u, _scaled(beta, t.quadratic64.get(u)))
                out = out + self.model.units[u].log_partition(beta * n, **extra)
            return out
        # the same operations in the same order, into kept tensors
        backend = backend_for(self.model.device)
        out = kept_buffer(work, (key, "out"), t.e_rest.shape, t.e_rest)
        if isinstance(t.e_base, Tensor):
            torch.mul(t.e_base, -(1.0 - beta), out=out)
        else:
            out.fill_(-(1.0 - beta) * t.e_base)
        out.sub_(torch.mul(t.e_rest, beta, out=kept_buffer(work, (key, "e"), out.shape, out)))
        out.sub_(t.e_units)
        for u, n in t.eta64.items():
            units = self.model.units[u]
            if u in t.quadratic64:
                extra = self.model.given_quadratic(u, _scaled(beta, t.quadratic64[u]))
                out.add_(units.log_partition(beta * n, **extra))
                continue
            scaled = torch.mul(n, beta, out=kept_buffer(work, (key, "eta", u), n.shape, n))
            a = kept_buffer(work, (key, "a", u), out.shape, out)
            out.add_(backend.log_partition_(units, scaled, a))
        return out

    def transition(
        self,
        x: State,
        beta: float,
        t: PathTerms,
        generator: torch.Generator | None = None,
        reverse: bool = False,
        work: dict | None = None,
    ) -> State:
        """One block Gibbs sweep at ``beta`` from x (``t`` = terms(x) supplies S's conditionals).

        ``work``: a dict that an annealing loop keeps from step to step. The natural parameters
        of each block are then written into tensors kept there (``EnergyModel.write_natural_``)
        and drawn in place, two per block taken in turn, so the sweep allocates nothing of a
        block's size and leaves ``x`` intact; the state it returns is overwritten two calls
        later (copy what you keep). The draws are those of the call without ``work``, bit for
        bit. Blocks with a quadratic term or moved by HMC are drawn as without ``work``."""
        m = self.model
        x = dict(x)
        if self.sum_out:  # S afresh from the parameters the densities already needed
            x.update(
                update_class(
                    m,
                    x,
                    self.sum_out,
                    generator,
                    beta,
                    given=t.eta,
                    given_quadratic=t.quadratic,
                    work=work,
                )
            )
        for group in reversed(self.groups) if reverse else self.groups:
            smooth = list(
                dict.fromkeys(member_block(m) for m in group if member_block(m) in self.smooth)
            )
            moved = {}
            if smooth:
                moved, _ = hmc_step(
                    lambda s: -self.log_f(beta, self.terms(s)),
                    {b: x[b] for b in self.chain_blocks},
                    smooth,
                    self.hmc_step_size,
                    self.hmc_steps,
                    generator,
                )
                moved = {b: moved[b] for b in smooth}
            rest = [m for m in group if member_block(m) not in self.smooth]
            if rest:
                moved.update(
                    update_class(m, x, rest, generator, beta, self.base_natural, work=work)
                )
            x.update(moved)
        return {b: x[b] for b in self.chain_blocks}


def _double(v: Tensor, work: dict | None, key) -> Tensor:
    """v in float64: a new tensor, or one kept in ``work`` under ``key``."""
    if work is None:
        return v.double()
    return kept_buffer(work, key, v.shape, v, dtype=torch.float64).copy_(v)


def _scaled(beta: float, q: Tensor | None) -> Tensor | None:
    return None if q is None else beta * q
