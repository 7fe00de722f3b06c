"""The prior of a hidden Markov chain as factors on a ``MarkovChain`` path block s (T, K):
the initial-state term -log pi(s_1), linear in the one-hot path, and the transition term
-sum_t log A(s_{t-1}, s_t), quadratic in it (pairs of steps). With both, the path's prior is the
chain p(s) = pi(s_1) prod_t A(s_{t-1}, s_t); given the other blocks it is an HMM posterior, which
the unit type samples by forward filtering, backward sampling and sums out by the forward
algorithm."""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor, nn

from ebm.factors.base import Factor, register

__all__ = ["InitialState", "Transition"]


class _ChainPrior(Factor):
    """A factor on one path block with logits of shape ``shape(K)`` made in ``bind``; learned,
    normalised by a softmax over the last axis, so that the chain's prior sums to one."""

    what = "logits"

    def __init__(self, block: str, logits=None, name: str | None = None):
        super().__init__(block, name=name)
        self._initial = self.initial(logits, self.what)
        self.logits: nn.Parameter | None = None
        self.length = self.states = 0

    def logits_shape(self, states: int) -> tuple[int, ...]:
        raise NotImplementedError

    def bind(self, shapes: dict[str, tuple[int, ...]]) -> None:
        (block,) = self.blocks
        if len(shapes[block]) != 2:
            raise ValueError(
                f"{type(self).__name__}: block {block!r} must be a MarkovChain path of shape "
                f"(T, K), got {shapes[block]}"
            )
        self.length, self.states = shapes[block]
        self.logits = self.make_parameter(
            self._initial, self.logits_shape(self.states), self.what, torch.zeros
        )
        self._initial = None

    def config(self) -> dict[str, Any]:
        return {"blocks": list(self.blocks), "name": self.name}


@register
class InitialState(_ChainPrior):
    """E = -log pi . s_1 with pi = softmax(``logits``) (K,): the initial-state distribution of
    the chain. Linear in the path: its natural parameters are log pi at t = 1, zero after."""

    what = "initial logits"

    def logits_shape(self, states: int) -> tuple[int, ...]:
        return (states,)

    def log_initial(self) -> Tensor:
        """log pi, shape (K,)."""
        return torch.log_softmax(self.logits, -1)

    def energy(self, stats: dict[str, Tensor]) -> Tensor:
        s = stats[self.blocks[0]]
        return -(s[:, 0] @ self.log_initial().to(s.dtype))

    def natural(self, target: str, stats: dict[str, Tensor]) -> Tensor:
        s = stats[target]
        out = torch.zeros_like(s)
        out[:, 0] = self.log_initial().to(s.dtype)
        return out

    def offset(self, target: str, stats: dict[str, Tensor]) -> Tensor:
        return stats[target].new_zeros(())


@register
class Transition(_ChainPrior):
    """E = -sum_{t>1} s_{t-1}^T log A s_t with each row of A = softmax(``logits``) (K, K): the
    transition probabilities of the chain. Quadratic in the path (it couples consecutive steps):
    ``quadratic`` gives L = log A, which the ``MarkovChain`` unit type takes as
    ``log_transition``; no linear part."""

    what = "transition logits"

    def logits_shape(self, states: int) -> tuple[int, ...]:
        return (states, states)

    def log_transition(self) -> Tensor:
        """log A, shape (K, K), rows summing to one in probability."""
        return torch.log_softmax(self.logits, -1)

    def energy(self, stats: dict[str, Tensor]) -> Tensor:
        s = stats[self.blocks[0]]
        log_a = self.log_transition().to(s.dtype)
        return -torch.einsum("nti,ij,ntj->n", s[:, :-1], log_a, s[:, 1:])

    def natural(self, target: str, stats: dict[str, Tensor]) -> Tensor:
        return torch.zeros_like(stats[target])

    def offset(self, target: str, stats: dict[str, Tensor]) -> Tensor:
        return stats[target].new_zeros(())

    def quadratic(self, target: str, stats: dict[str, Tensor]) -> Tensor:
        s = stats[target]
        return self.log_transition().to(s.dtype).expand(s.shape[0], self.states, self.states)
