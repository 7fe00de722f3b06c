"""Emission terms of hidden Markov models: E = -sum_t log B(x_t | s_t) between a ``MarkovChain``
path block s (T, K) and an observation block x holding T steps. Each is linear in the one-hot path
(its natural parameters are the emission log-likelihoods log B_k(x_t)) and linear in x, so paths
are sampled by forward filtering, backward sampling and x given every path from the normalised
product of the emission distributions."""

from __future__ import annotations

import math
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ebm.factors.base import Factor, check_init_scale, register


class _Emission(Factor):
    """Shared plumbing: the path block first, the observation block second; parameters of shape
    (K, D) made in ``bind``; the observations seen as (batch, T, D)."""

    def __init__(self, path: str, x: str, params=None, init_scale: float = 1.0, name=None):
        super().__init__(path, x, name=name)
        if path == x:
            raise ValueError(f"{type(self).__name__} couples a path block to another block")
        self._initial = self.initial(params, "emission parameters")
        self.init_scale = check_init_scale(init_scale)
        self.params: nn.Parameter | None = None
        self.length = self.states = self.dims = 0

    def bind(self, shapes: dict[str, tuple[int, ...]]) -> None:
        path, x = self.blocks
        if len(shapes[path]) != 2:
            raise ValueError(f"block {path!r} must be a MarkovChain path of shape (T, K)")
        self.length, self.states = shapes[path]
        size = math.prod(shapes[x])
        if size % self.length:
            raise ValueError(
                f"block {x!r} of shape {shapes[x]} does not hold {self.length} equal time steps"
            )
        self.dims = size // self.length
        self._x_shape = tuple(shapes[x])
        self.params = self.make_parameter(
            self._initial,
            (self.states, self.dims),
            "emission parameters",
            lambda shape: self.init_scale * torch.randn(shape),
        )
        self._initial = None

    def _steps(self, stats: dict[str, Tensor]) -> Tensor:
        t = stats[self.blocks[1]]
        return t.reshape(t.shape[0], self.length, self.dims)

    # log B_k(x_t) = x_t . weights_k + constant_k (each subclass says what they are)
    def weights(self) -> Tensor:
        raise NotImplementedError

    def constants(self) -> Tensor:
        raise NotImplementedError

    def log_likelihoods(self, stats: dict[str, Tensor]) -> Tensor:
        """log B_k(x_t) for every step and state: shape (batch, T, K)."""
        return self._steps(stats) @ self.weights().T + self.constants()

    def energy(self, stats: dict[str, Tensor]) -> Tensor:
        return -(stats[self.blocks[0]] * self.log_likelihoods(stats)).sum((1, 2))

    def natural(self, target: str, stats: dict[str, Tensor]) -> Tensor:
        path, x = self.blocks
        if target == path:
            return self.log_likelihoods(stats)
        per_step = stats[path] @ self.weights()  # (batch, T, D)
        return per_step.reshape(per_step.shape[0], *self._x_shape)

    def offset(self, target: str, stats: dict[str, Tensor]) -> Tensor:
        path, x = self.blocks
        if target == path:
            return stats[path].new_zeros(())
        return -(stats[path] @ self.constants()).sum(-1)

    def config(self) -> dict[str, Any]:
        return {"blocks": list(self.blocks), "name": self.name, "init_scale": self.init_scale}


@register
class BernoulliEmission(_Emission):
    """Binary observations, D per step (x a ``Bernoulli(T * D)`` block, step t being units
    t*D .. t*D + D - 1): B_k(x_t) = prod_d p_kd^x_td (1 - p_kd)^(1 - x_td) with p = sigma(L), L
    (K, D) the ``params``. log B_k(x_t) = x_t . L_k + sum_d log sigma(-L_kd)."""

    def weights(self) -> Tensor:
        return self.params

    def constants(self) -> Tensor:
        return F.logsigmoid(-self.params).sum(-1)


@register
class CategoricalEmission(_Emission):
    """Symbols from V, one per step (x a ``Categorical(T, V)`` block): B_k(v) = softmax(L_k)_v with
    L (K, V) the ``params``; log B_k(x_t) = x_t . log softmax(L_k)."""

    def weights(self) -> Tensor:
        return torch.log_softmax(self.params, -1)

    def constants(self) -> Tensor:
        return self.params.new_zeros(self.states)


@register
class GaussianEmission(_Emission):
    """Real observations, D per step, N(x_t; mu_k, sigma^2 I) with means mu (K, D) the ``params``
    and a fixed sigma (``sigma``). x is a ``Gaussian`` block whose units carry the quadratic part:
    for a product of M such HMMs their base energy must be M |x|^2 / 2 sigma^2, i.e. scale
    sigma / sqrt(M) and loc 0 (``ebm.models.pohmm`` sets this up). With t = x / scale the factor
    holds the rest of -log B: -(scale t_t . mu_k / sigma^2 - |mu_k|^2 / 2 sigma^2
    - D log(2 pi sigma^2) / 2)."""

    def __init__(
        self,
        path: str,
        x: str,
        sigma: float = 1.0,
        scale: float = 1.0,
        params=None,
        init_scale: float = 1.0,
        name=None,
    ):
        super().__init__(path, x, params, init_scale, name)
        if not sigma > 0 or not scale > 0:
            raise ValueError("sigma and scale must be positive")
        self.sigma, self.scale = float(sigma), float(scale)

    def weights(self) -> Tensor:
        return self.params * (self.scale / self.sigma**2)

    def constants(self) -> Tensor:
        var = self.sigma**2
        return -(self.params**2).sum(-1) / (2 * var) - 0.5 * self.dims * math.log(2 * math.pi * var)

    def config(self) -> dict[str, Any]:
        return {**super().config(), "sigma": self.sigma, "scale": self.scale}
