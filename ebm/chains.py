"""A block that is a whole state path of a hidden Markov chain, sampled exactly by dynamic
programming: the building block of products of HMMs (Brown & Hinton 2001)."""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, distributions

from ebm.units import UNIT_TYPES, Categorical

__all__ = ["MarkovChain", "MarkovChainDistribution"]


class MarkovChain(Categorical):
    """A path s = (s_1, ..., s_T) of a K-state Markov chain, one-hot coded: shape (T, K).

    The unit type holds no parameters and no base energy: factors give the path its terms. Linear
    ones add eta . s (eta of shape (T, K): the emission log-likelihoods of an HMM, the
    initial-state term ``ebm.factors.InitialState``) and quadratic ones add log transition
    potentials L (K, K) between consecutive steps (``ebm.factors.Transition``, taken here as
    ``log_transition``, shape (batch, K, K)), so given the rest the path is an HMM posterior,

        p(s | eta, L) = exp(eta . s + sum_{t>1} s_{t-1}^T L s_t - A(eta, L)),
        A(eta, L) = log sum_s exp(eta . s + sum_{t>1} s_{t-1}^T L s_t),

    and A is the forward algorithm in log space (stable for long paths); ``sample`` draws the path
    exactly by forward filtering, backward sampling; ``mean`` gives the forward-backward marginals
    p(s_t = k | eta, L). Without L the steps are independent categoricals (as
    ``Categorical(T, K)``). With L = log A (rows normalised) and log pi added to eta_1, A(0, L) = 0:
    the chain prior is normalised. Enumerable like ``Categorical(T, K)`` (K^T paths). Costs
    O(T K^2) per chain, T steps in sequence.
    """

    quadratic_keyword = "log_transition"

    def __init__(self, length: int, states: int):
        super().__init__(length, states)

    @property
    def length(self) -> int:
        return self.n

    def config(self) -> dict[str, Any]:
        return {"length": self.n, "states": self.k}

    def quadratic_energy(self, t: Tensor, q: Tensor) -> Tensor:
        """-sum_{t>1} s_{t-1}^T L s_t per row (L = ``log_transition``, shape (batch, K, K))."""
        return -torch.einsum("nti,nij,ntj->n", t[:, :-1], q, t[:, 1:])

    def _check(self, natural: Tensor, log_transition: Tensor) -> Tensor:
        k = self.k
        if log_transition.shape[-2:] != (k, k):
            raise ValueError(
                f"MarkovChain: log_transition must have shape (batch, {k}, {k}), "
                f"got {tuple(log_transition.shape)}"
            )
        return log_transition.to(natural.dtype).expand(natural.shape[0], k, k)

    def _forward(self, natural: Tensor, log_a: Tensor) -> Tensor:
        """log alpha_t(k) = log of the sum over paths up to t ending in k: (batch, T, K)."""
        alpha = [natural[:, 0]]
        for t in range(1, self.n):
            alpha.append(torch.logsumexp(alpha[-1].unsqueeze(-1) + log_a, 1) + natural[:, t])
        return torch.stack(alpha, 1)

    def log_partition(self, natural: Tensor, log_transition: Tensor | None = None) -> Tensor:
        if log_transition is None:
            return super().log_partition(natural)
        log_a = self._check(natural, log_transition)
        return torch.logsumexp(self._forward(natural, log_a)[:, -1], -1)

    def mean(self, natural: Tensor, log_transition: Tensor | None = None) -> Tensor:
        if log_transition is None:
            return super().mean(natural)
        log_a = self._check(natural, log_transition)
        alpha = self._forward(natural, log_a)
        beta = [torch.zeros_like(alpha[:, -1])]
        for t in range(self.n - 1, 0, -1):
            beta.append(torch.logsumexp(log_a + (natural[:, t] + beta[-1]).unsqueeze(1), -1))
        beta = torch.stack(beta[::-1], 1)
        return torch.softmax(alpha + beta, -1)

    def sample(
        self,
        natural: Tensor,
        generator: torch.Generator | None = None,
        log_transition: Tensor | None = None,
    ) -> Tensor:
        if log_transition is None:
            return super().sample(natural, generator)
        log_a = self._check(natural, log_transition)
        alpha = self._forward(natural, log_a)
        batch = natural.shape[0]
        rows = torch.arange(batch, device=natural.device)
        states = torch.empty(batch, self.n, dtype=torch.long, device=natural.device)
        states[:, -1] = torch.multinomial(torch.softmax(alpha[:, -1], -1), 1, generator=generator)[
            :, 0
        ]
        for t in range(self.n - 2, -1, -1):
            logits = alpha[:, t] + log_a[rows, :, states[:, t + 1]]
            states[:, t] = torch.multinomial(torch.softmax(logits, -1), 1, generator=generator)[
                :, 0
            ]
        return F.one_hot(states, self.k).to(natural.dtype)

    def distribution(
        self, natural: Tensor, log_transition: Tensor | None = None
    ) -> distributions.Distribution:
        if log_transition is None:
            return super().distribution(natural)
        return MarkovChainDistribution(self, natural, self._check(natural, log_transition))


class MarkovChainDistribution(distributions.Distribution):
    """p(s | eta, L) of a ``MarkovChain`` block as a torch distribution over one-hot paths (one
    row of eta and L per batch element); ``log_prob`` is
    eta . s + sum_t s_{t-1}^T L s_t - A(eta, L), ``sample`` is forward filtering, backward
    sampling, and ``mean`` the forward-backward marginals."""

    arg_constraints: dict = {}
    has_enumerate_support = False

    def __init__(self, units: MarkovChain, natural: Tensor, log_transition: Tensor):
        self.units, self.natural, self.log_transition = units, natural, log_transition
        super().__init__(
            batch_shape=natural.shape[:1], event_shape=natural.shape[1:], validate_args=False
        )

    @property
    def mean(self) -> Tensor:
        return self.units.mean(self.natural, self.log_transition)

    def sample(self, sample_shape=torch.Size()) -> Tensor:
        if sample_shape:
            raise ValueError("MarkovChainDistribution draws one path per row of eta")
        return self.units.sample(self.natural, log_transition=self.log_transition)

    def log_prob(self, value: Tensor) -> Tensor:
        pairs = -self.units.quadratic_energy(value, self.log_transition)
        return (
            (self.natural * value).flatten(1).sum(-1)
            + pairs
            - self.units.log_partition(self.natural, self.log_transition)
        )

    def entropy(self) -> Tensor:
        raise NotImplementedError("the entropy of a Markov chain path is not implemented")


UNIT_TYPES["MarkovChain"] = MarkovChain
