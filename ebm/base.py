"""Factorised base distributions for annealing: exact samples and an exact log Z."""

from __future__ import annotations

import math

import torch
from torch import Tensor

from ebm.counts import Multinomial
from ebm.graph import member_block
from ebm.inference import mean_field
from ebm.model import EnergyModel
from ebm.units import Bernoulli, Categorical, Spin

__all__ = ["FactorizedBase", "base_rate", "mean_field_base"]


class FactorizedBase:
    """p_A(x) = prod_u exp(b_u . t_u(x_u) - A_u(b_u)) over some blocks of a model (independent units).

    ``natural`` maps block name -> b_u (the block's shape). ``energy`` is E_A(x) = -sum_u b_u . t_u,
    ``log_z`` is sum_u A_u(b_u) (float64), and ``sample`` draws exact samples. The default base of
    annealed importance sampling is ``uniform(model)``: b = 0 on the visible blocks (on the discrete
    blocks when a visible one is continuous).
    """

    def __init__(self, model: EnergyModel, natural: dict[str, Tensor]):
        for b, n in natural.items():
            if b not in model.units:
                raise ValueError(f"base has unknown block {b!r}")
            if tuple(n.shape) != model.units[b].shape:
                raise ValueError(
                    f"base natural parameters for {b!r} have shape {tuple(n.shape)}, "
                    f"expected {model.units[b].shape}"
                )
            if not torch.isfinite(n).all():
                raise ValueError(f"base natural parameters for {b!r} are not finite")
            if not model.units[b].discrete:
                raise ValueError(
                    f"a factorised base needs discrete units; block {b!r} is "
                    f"{type(model.units[b]).__name__}"
                )
        self.units = {b: model.units[b] for b in natural}
        # on the model's device: a base made on the CPU serves a model on a GPU
        self.natural = {b: n.detach().to(model.device) for b, n in natural.items()}

    @classmethod
    def uniform(cls, model: EnergyModel) -> FactorizedBase:
        """Uniform over the visible blocks; when a visible block is continuous, uniform over every
        discrete block instead (annealing then sums the continuous blocks out given them)."""
        blocks = model.visible
        if any(not model.units[b].discrete for b in blocks):
            blocks = [b for b in model.blocks if model.units[b].discrete]
        return cls(model, {b: torch.zeros(model.units[b].shape) for b in blocks})

    @property
    def blocks(self) -> list[str]:
        return list(self.natural)

    def to(self, device=None, dtype=None) -> FactorizedBase:
        self.natural = {b: n.to(device=device, dtype=dtype) for b, n in self.natural.items()}
        return self

    def log_z(self) -> float:
        """log Z_A = sum_u A_u(b_u), computed in float64."""
        return float(
            sum(
                self.units[b].log_partition(n.double().unsqueeze(0)).item()
                for b, n in self.natural.items()
            )
        )

    def energy(self, state: dict[str, Tensor]) -> Tensor:
        """E_A(x) = -sum_u b_u . t_u(x_u): shape (batch,)."""
        e = 0.0
        for b, n in self.natural.items():
            t = self.units[b].statistic(state[b])
            n = n.to(device=t.device, dtype=t.dtype)
            e = e - t.flatten(1) @ n.reshape(-1)  # no temporary of t's size
        return e

    def sample(
        self, num_chains: int, generator: torch.Generator | None = None, device=None, dtype=None
    ) -> dict[str, Tensor]:
        out = {}
        for b, n in self.natural.items():
            nat = n.to(device=device, dtype=dtype).expand(num_chains, *n.shape)
            out[b] = self.units[b].sample(nat.contiguous(), generator)
        return out


def base_rate(
    model: EnergyModel, data, smoothing: float = 5.0, batch_size: int = 100
) -> FactorizedBase:
    """The base-rate model of Salakhutdinov & Murray (2008): independent visible units matching the
    smoothed marginals of the training data.

    For Bernoulli units p_i = (count_i + a) / (N + a) with a = smoothing * ceil(N / batch_size) (the
    published recipe); a unit on in every example (p_i = 1) is capped at (N + a) / (N + a + 1) so
    that no bias is infinite; b_i = logit(p_i).
    Spin units use p(+1) the same way with b_i = logit(p_i) / 2; categorical units use
    p_s = (count_s + a) / (N + k a); count blocks (``Multinomial``: documents) use the smoothed
    word frequencies p_w = (n_w + a) / (sum_w n_w + k a), n_w the word's total count in the
    data, so that the base draws each of a document's words from the corpus's unigram model.
    """
    state = model.validate_data(data)
    out = {}
    for b, x in state.items():
        units = model.units[b]
        n_data = x.shape[0]
        if n_data == 0:
            raise ValueError(f"base_rate needs data: block {b!r} has no examples")
        a = smoothing * math.ceil(n_data / batch_size)
        x = x.double().cpu()
        if isinstance(units, (Bernoulli, Spin)):
            ones = (x == 1).sum(0)
            p = (ones + a) / (n_data + a)
            p = p.clamp(max=(n_data + a) / (n_data + a + 1))
            logit = torch.log(p) - torch.log1p(-p)
            out[b] = (logit if isinstance(units, Bernoulli) else logit / 2).to(
                torch.get_default_dtype()
            )
        elif isinstance(units, Categorical):
            p = (x.sum(0) + a) / (n_data + units.k * a)
            out[b] = torch.log(p).to(torch.get_default_dtype())
        elif isinstance(units, Multinomial):
            words = x.sum(0)
            p = (words + a) / (words.sum() + units.k * a)
            out[b] = torch.log(p).to(torch.get_default_dtype())
        else:
            raise ValueError(
                f"base_rate supports discrete units; block {b!r} is {type(units).__name__}"
            )
    return FactorizedBase(model, out)


def mean_field_base(
    model: EnergyModel,
    data,
    blocks=None,
    generator: torch.Generator | None = None,
    max_sweeps: int = 100,
    smoothing: float = 5.0,
) -> FactorizedBase:
    """A base-rate model over the data's blocks and, beyond them, over hidden ``blocks`` (for a
    default: the hidden blocks in the colour class of the data's blocks, for a DBM the even hidden
    layers h2, h4, ...), whose rates come from the data's posterior.

    The hidden blocks are filled by mean field (``ebm.inference.mean_field`` on ``data``, at most
    ``max_sweeps`` sweeps), one binary draw per example from q is taken, and ``base_rate`` is fitted
    to the data together with those draws (``smoothing`` as there). Annealing from it with the odd
    layers summed out starts the chains where the model puts its mass, not at the pixels'
    marginals with the hidden units uniform (docs/results.md compares the two starts on an
    MNIST-trained DBM).
    """
    state = model.validate_data(data)
    if blocks is None:  # the hidden blocks of the data's colour class: a DBM's h2, h4, ...
        group = next((g for g in model.schedule if set(state) & {member_block(m) for m in g}), [])
        blocks = [member_block(m) for m in group if member_block(m) not in state]
    blocks = list(blocks)
    for b in blocks:
        if not isinstance(model.units[b], Bernoulli) or b in state:
            raise ValueError(f"mean_field_base draws hidden Bernoulli blocks; got {b!r}")
    if not blocks:
        return base_rate(model, state, smoothing=smoothing)
    with torch.no_grad():
        q = mean_field(model, state, max_sweeps=max_sweeps)
        drawn = {}
        for b in blocks:
            mu = q.means[b]
            u = torch.rand(mu.shape, generator=generator, device=mu.device, dtype=mu.dtype)
            drawn[b] = (u < mu).to(mu.dtype)
    return base_rate(model, {**state, **drawn}, smoothing=smoothing)
