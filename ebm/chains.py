"""A block that is a whole state path of a hidden Markov chain, sampled exactly by dynamic
programming: the building block of products of HMMs (Brown & Hinton 2001)."""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, distributions, nn

from ebm.units import UNIT_TYPES, Categorical, _finite_param

__all__ = ["MarkovChain", "MarkovChainDistribution"]


class MarkovChain(Categorical):
    """A path s = (s_1, ..., s_T) of a K-state Markov chain, one-hot coded: shape (T, K).

    Its base energy is the chain's own log-probability,

        E_0(s) = -log pi(s_1) - sum_{t>1} log A(s_{t-1}, s_t),

    with pi = softmax(``initial_logits``) and each row of A = softmax(``transition_logits``), both
    learned. Factors add unary terms eta . s (eta of shape (T, K): the emission log-likelihoods of
    an HMM), so given the rest the path is an HMM posterior,

        p(s | eta) = exp(eta . s - E_0(s) - A(eta)),   A(eta) = log sum_s exp(eta . s - E_0(s)),

    and A is the forward algorithm in log space (stable for long paths); ``sample`` draws the path
    exactly by forward filtering, backward sampling; ``mean`` gives the forward-backward marginals
    p(s_t = k | eta). A(0) = 0: the prior is normalised. Enumerable like ``Categorical(T, K)``
    (K^T paths). Costs O(T K^2) per chain, T steps in sequence.
    """

    has_base_energy = True

    def __init__(self, length: int, states: int, initial=None, transition=None):
        super().__init__(length, states)
        k = states
        self.initial_logits = nn.Parameter(_finite_param(initial, (k,), "initial", default=0.0))
        self.transition_logits = nn.Parameter(
            _finite_param(transition, (k, k), "transition", default=0.0)
        )

    @property
    def length(self) -> int:
        return self.n

    def config(self) -> dict[str, Any]:
        return {"length": self.n, "states": self.k}

    def log_initial(self) -> Tensor:
        """log pi, shape (K,)."""
        return torch.log_softmax(self.initial_logits, -1)

    def log_transition(self) -> Tensor:
        """log A, shape (K, K), rows summing to one in probability."""
        return torch.log_softmax(self.transition_logits, -1)

    def base_energy(self, x: Tensor) -> Tensor:
        log_pi, log_a = self.log_initial().to(x.dtype), self.log_transition().to(x.dtype)
        start = x[:, 0] @ log_pi
        steps = torch.einsum("nti,ij,ntj->n", x[:, :-1], log_a, x[:, 1:])
        return -(start + steps)

    def _forward(self, natural: Tensor) -> Tensor:
        """log alpha_t(k) = log p(s_t = k, evidence up to t): shape (batch, T, K)."""
        log_pi = self.log_initial().to(natural.dtype)
        log_a = self.log_transition().to(natural.dtype)
        alpha = [log_pi + natural[:, 0]]
        for t in range(1, self.n):
            alpha.append(torch.logsumexp(alpha[-1].unsqueeze(-1) + log_a, 1) + natural[:, t])
        return torch.stack(alpha, 1)

    def log_partition(self, natural: Tensor) -> Tensor:
        return torch.logsumexp(self._forward(natural)[:, -1], -1)

    def mean(self, natural: Tensor) -> Tensor:
        alpha = self._forward(natural)
        log_a = self.log_transition().to(natural.dtype)
        beta = [torch.zeros_like(alpha[:, -1])]
        for t in range(self.n - 1, 0, -1):
            beta.append(torch.logsumexp(log_a + (natural[:, t] + beta[-1]).unsqueeze(1), -1))
        beta = torch.stack(beta[::-1], 1)
        return torch.softmax(alpha + beta, -1)

    def sample(self, natural: Tensor, generator: torch.Generator | None = None) -> Tensor:
        alpha = self._forward(natural)
        log_a = self.log_transition().to(natural.dtype)
        batch = natural.shape[0]
        states = torch.empty(batch, self.n, dtype=torch.long, device=natural.device)
        states[:, -1] = torch.multinomial(torch.softmax(alpha[:, -1], -1), 1, generator=generator)[
            :, 0
        ]
        for t in range(self.n - 2, -1, -1):
            logits = alpha[:, t] + log_a[:, states[:, t + 1]].T
            states[:, t] = torch.multinomial(torch.softmax(logits, -1), 1, generator=generator)[
                :, 0
            ]
        return F.one_hot(states, self.k).to(natural.dtype)

    def distribution(self, natural: Tensor) -> distributions.Distribution:
        return MarkovChainDistribution(self, natural)


class MarkovChainDistribution(distributions.Distribution):
    """p(s | eta) of a ``MarkovChain`` block as a torch distribution over one-hot paths (batch of
    eta rows); ``log_prob`` is eta . s - E_0(s) - A(eta), ``sample`` is forward filtering, backward
    sampling, and ``mean`` the forward-backward marginals."""

    arg_constraints: dict = {}
    has_enumerate_support = False

    def __init__(self, units: MarkovChain, natural: Tensor):
        self.units, self.natural = units, natural
        super().__init__(
            batch_shape=natural.shape[:1], event_shape=natural.shape[1:], validate_args=False
        )

    @property
    def mean(self) -> Tensor:
        return self.units.mean(self.natural)

    def sample(self, sample_shape=torch.Size()) -> Tensor:
        if sample_shape:
            raise ValueError("MarkovChainDistribution draws one path per row of eta")
        return self.units.sample(self.natural)

    def log_prob(self, value: Tensor) -> Tensor:
        energy = self.units.base_energy(value)
        return (
            (self.natural * value).flatten(1).sum(-1)
            - energy
            - self.units.log_partition(self.natural)
        )

    def entropy(self) -> Tensor:
        raise NotImplementedError("the entropy of a Markov chain path is not implemented")


UNIT_TYPES["MarkovChain"] = MarkovChain
