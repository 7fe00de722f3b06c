"""Rectified units: the stepped sigmoid of N binary copies, and its noisy rectified approximation.

Nair & Hinton (2010) replace a binary hidden unit by N copies that share its weights and its
bias, the copies' biases offset by -0.5, -1.5, ..., -(N - 0.5). Given the total input x the copies
are independent, copy i on with probability sigma(x - i + 0.5), and the unit's value is the number
of copies on, y in {0, ..., N}. Factors see only y, but which copies are on also enters the energy
(copy i adds (i - 0.5) when on), so the block written in y alone carries the base energy

    E_0(y) = -log e_y(q_1, ..., q_N),     q_i = exp(-(i - 0.5)),

e_y the elementary symmetric polynomial of degree y (the sum over the C(N, y) sets of y copies of
exp(-sum of their offsets)). With t(y) = y the conditional is the Poisson-binomial law of a sum of
N independent Bernoulli(sigma(x - i + 0.5)) copies, and summing y out leaves

    A(x) = log sum_y e_y(q) exp(x y) = sum_{i=1}^N softplus(x - i + 0.5)

(the product over copies of (1 + q_i e^x)): the "stepped sigmoid" free energy, exact for N
copies. Its mean, sum_i sigma(x - i + 0.5), approaches softplus(x) as N grows and saturates at N.

``SteppedSigmoid(n, copies=N)`` is that block, exact in every respect: draws, means, the
log-partition, enumeration of the (N + 1)^n states. ``noisy=True`` keeps the same energy (and so
the same log Z, sum-out and enumeration) and changes only ``sample`` to the noisy rectified unit

    y = min(N, max(0, x + sqrt(sigma(x)) eps)),   eps ~ N(0, 1),

which is *not* a draw from the conditional above: it is Nair & Hinton's approximation of it (mean
about max(0, x), variance sigma(x) where the conditional's variance is sum_i sigma'(x - i + 0.5)),
capped at N so that it stays in the block's range, and it gives real values. A sampler using it
samples a different chain from the model's; the model's log Z is still that of the stepped
sigmoid. At the real values of noisy draws E_0 is the linear interpolation of the table above,
so that energies of such states are defined (and continuous); at integers it is exact.
"""

from __future__ import annotations

import math
from functools import lru_cache
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, distributions

from ebm.units import UNIT_TYPES, Units, digits, from_digits

__all__ = ["SteppedSigmoid", "log_elementary_symmetric"]


def log_elementary_symmetric(log_q: Tensor) -> Tensor:
    """log e_y(q_1, ..., q_N) for y = 0 .. N from log q (shape (N,)), float64, by the recursion
    e_y(q_1..q_i) = e_y(q_1..q_{i-1}) + q_i e_{y-1}(q_1..q_{i-1}) in log space."""
    log_q = log_q.double()
    n = log_q.numel()
    out = torch.full((n + 1,), -math.inf, dtype=torch.float64)
    out[0] = 0.0
    for i in range(n):
        shifted = torch.cat([out.new_full((1,), -math.inf), out[:-1] + log_q[i]])
        out = torch.logaddexp(out, shifted)
    return out


@lru_cache(maxsize=64)
def _log_e_table(copies: int) -> Tensor:
    return log_elementary_symmetric(-(torch.arange(copies, dtype=torch.float64) + 0.5))


class SteppedSigmoid(Units):
    """n rectified units, each the number of N binary copies on (the stepped sigmoid of Nair &
    Hinton 2010): y in {0, ..., N}, base energy E_0(y) = -log e_y(exp(-0.5), ..., exp(-(N - 0.5))),

        p(y | x) = e_y exp(x y - A(x)),   A(x) = sum_{i=1}^N softplus(x - i + 0.5),

    a draw being the sum of N independent Bernoulli(sigma(x - i + 0.5)). ``noisy=True`` draws
    instead min(N, max(0, x + sqrt(sigma(x)) eps)), the noisy rectified unit: an approximate
    sampler of the same model (module docstring), everything else unchanged. ``copies`` is N >= 1.
    """

    has_base_energy = True

    def __init__(self, n: int, copies: int = 20, noisy: bool = False):
        super().__init__(n)
        if isinstance(copies, bool) or not isinstance(copies, int) or copies < 1:
            raise ValueError(f"SteppedSigmoid: copies must be an int >= 1, got {copies!r}")
        self.copies = copies
        self.noisy = bool(noisy)
        self.offsets = [i + 0.5 for i in range(copies)]

    # --- description -------------------------------------------------------------------------
    @property
    def exact_draws(self) -> bool:  # a property here, a class attribute on Units
        return not self.noisy

    @property
    def num_states(self) -> int:
        return (self.copies + 1) ** self.n

    @property
    def log2_num_states(self) -> float:
        return self.n * math.log2(self.copies + 1)

    def config(self) -> dict[str, Any]:
        out: dict[str, Any] = {"n": self.n, "copies": self.copies}
        if self.noisy:
            out["noisy"] = True
        return out

    def log_e(self, like: Tensor) -> Tensor:
        """The table log e_y, y = 0 .. N, computed in float64 and given in ``like``'s dtype and
        device (a function of ``copies`` alone: nothing of it is saved)."""
        return _log_e_table(self.copies).to(device=like.device, dtype=like.dtype)

    # --- the exponential family ---------------------------------------------------------------
    def base_energy(self, x: Tensor) -> Tensor:
        """-log e_y per unit, summed; linearly interpolated between integers (noisy draws)."""
        n = self.copies
        table = self.log_e(x)
        y = x.clamp(0, n)
        low = y.detach().floor().clamp_(max=n - 1)
        frac = y - low
        low = low.long()
        log_e = (1 - frac) * table[low] + frac * table[low + 1]
        return -log_e.sum(-1)

    def distribution(self, natural: Tensor) -> distributions.Distribution:
        """The exact conditional: y per unit as a categorical over 0 .. N with logits
        x y + log e_y (a value is the category's index)."""
        y = torch.arange(self.copies + 1, device=natural.device, dtype=natural.dtype)
        logits = natural.unsqueeze(-1) * y + self.log_e(natural)
        return distributions.Independent(distributions.Categorical(logits=logits), 1)

    def sample(self, natural: Tensor, generator: torch.Generator | None = None) -> Tensor:
        """The exact draw (the number of copies on, copy by copy), or with ``noisy`` the noisy
        rectified draw (not exact: see the class docstring)."""
        if self.noisy:
            eps = torch.randn(
                natural.shape, generator=generator, device=natural.device, dtype=natural.dtype
            )
            return (natural + torch.sigmoid(natural).sqrt() * eps).clamp_(0, self.copies)
        y = torch.zeros_like(natural)
        u = torch.empty_like(natural)
        for offset in self.offsets:  # one pass a copy: memory of one block, not N
            u.uniform_(generator=generator)
            y += u < torch.sigmoid(natural - offset)
        return y

    def mean(self, natural: Tensor) -> Tensor:
        """E[y | x] = sum_i sigma(x - i + 0.5) (the exact conditional's, also with ``noisy``)."""
        out = torch.zeros_like(natural)
        for offset in self.offsets:
            out = out + torch.sigmoid(natural - offset)
        return out

    def log_partition(self, natural: Tensor) -> Tensor:
        """sum over units of sum_i softplus(x - i + 0.5)."""
        out = natural.new_zeros(natural.shape[:-1])
        for offset in self.offsets:
            out = out + F.softplus(natural - offset).sum(-1)
        return out

    # --- data ----------------------------------------------------------------------------------
    def _check_support(self, x: Tensor, name: str) -> None:
        inside = (x >= 0) & (x <= self.copies)
        ok = inside if self.noisy else inside & (x == x.round())
        if not bool(ok.all()):
            idx = (~ok).nonzero()[0].tolist()
            kind = "real numbers" if self.noisy else "integers"
            raise ValueError(
                f"block {name!r}: SteppedSigmoid data must be {kind} in [0, {self.copies}] "
                f"(copies={self.copies}); found {x[tuple(idx)].item()!r} at index {idx}"
            )

    def states(self, index: Tensor, device=None, dtype=None) -> Tensor:
        dtype = dtype or torch.get_default_dtype()
        return digits(index.to(device), self.n, self.copies + 1).to(dtype)

    def index(self, x: Tensor) -> Tensor:
        return from_digits(x.reshape(x.shape[0], self.n).round().long(), self.copies + 1)


UNIT_TYPES["SteppedSigmoid"] = SteppedSigmoid
