"""CovariancePooling: the covariance part of the mean-covariance RBM (Ranzato & Hinton 2010), a
factored three-way term with its two visible inputs tied, so that hidden units gate the precision
of a Gaussian block."""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor, nn

from ebm.factors.base import Factor, check_init_scale, flat_size, register


@register
class CovariancePooling(Factor):
    """E(v, h) = -1/2 sum_f sum_k P_fk h_k (C_f . t(v))^2 with non-positive pooling weights P.

    ``v`` is a Gaussian block (t(v) = v / s), ``h`` a block of covariance units; C (size of v, F)
    holds the F filters and P (F, size of h) pools their squared outputs. P = -exp(rho) is kept
    non-positive by its parametrisation (``log_pooling`` = rho), so

    - in h the energy is linear: h_k's natural parameter is 1/2 sum_f P_fk (C_f . t)^2 <= 0, a
      covariance unit turns *off* when the filters it pools see a violated constraint;
    - in v it is quadratic, E = t^T Q t / 2 with the positive semi-definite precision
      Q(h) = C diag(-P h) C^T: given h, v is a correlated Gaussian (Lambda = I + Q, sampled
      exactly by the Gaussian units through a Cholesky factor per chain).

    Learning signals: dE/dC_if = -sum_k P_fk h_k (C_f . t) t_i and dE/dP_fk = -h_k (C_f . t)^2 / 2,
    so the gradient of the log-likelihood is <.>_model - <.>_data of these. The paper's variant
    that normalises v inside the covariance term is not quadratic in v (it was sampled by HMC) and is
    not this factor. ``filters`` (C) and ``pooling`` (P, entries < 0) give initial values;
    otherwise C ~ N(0, init_scale^2) and P = -exp(N(0, 0.1^2)), near -1.
    """

    def __init__(
        self,
        v: str,
        h: str,
        n_factors: int,
        filters=None,
        pooling=None,
        init_scale: float = 0.1,
        name: str | None = None,
    ):
        super().__init__(v, h, name=name)
        if v == h:
            raise ValueError(f"CovariancePooling couples two distinct blocks, got {v!r} twice")
        if isinstance(n_factors, bool) or not isinstance(n_factors, int) or n_factors < 1:
            raise ValueError(f"n_factors must be an int >= 1, got {n_factors!r}")
        self.n_factors = n_factors
        self.init_scale = check_init_scale(init_scale)
        self._initial_filters = self.initial(filters, "filters")
        initial_pooling = self.initial(pooling, "pooling")
        if initial_pooling is not None and not bool((initial_pooling < 0).all()):
            raise ValueError(
                f"factor {self.name!r}: pooling weights must be negative (P = -exp(rho))"
            )
        self._initial_log_pooling = None if initial_pooling is None else torch.log(-initial_pooling)
        self.filters: nn.Parameter | None = None
        self.log_pooling: nn.Parameter | None = None
        self._shapes: dict[str, tuple[int, ...]] = {}

    def bind(self, shapes: dict[str, tuple[int, ...]]) -> None:
        v, h = self.blocks
        self._shapes = {v: tuple(shapes[v]), h: tuple(shapes[h])}
        f = self.n_factors
        self.filters = self.make_parameter(
            self._initial_filters,
            (flat_size(shapes[v]), f),
            "filters",
            lambda shape: self.init_scale * torch.randn(shape),
        )
        self.log_pooling = self.make_parameter(
            self._initial_log_pooling,
            (f, flat_size(shapes[h])),
            "pooling",
            lambda shape: 0.1 * torch.randn(shape),
        )
        self._initial_filters = self._initial_log_pooling = None

    @property
    def pooling(self) -> Tensor:
        """P = -exp(log_pooling), shape (F, size of h): non-positive by construction."""
        return -self.log_pooling.exp()

    def filter_outputs(self, stats: dict[str, Tensor]) -> Tensor:
        """C^T t(v): the factor outputs, shape (batch, F)."""
        return stats[self.blocks[0]].flatten(1) @ self.filters

    def energy(self, stats: dict[str, Tensor]) -> Tensor:
        th = stats[self.blocks[1]].flatten(1)
        return -0.5 * ((self.filter_outputs(stats) ** 2) * (th @ self.pooling.T)).sum(-1)

    def natural(self, target: str, stats: dict[str, Tensor]) -> Tensor:
        v, h = self.blocks
        batch = stats[target].shape[0]
        if target == v:  # no linear term in v
            return stats[v].new_zeros((batch, *self._shapes[v]))
        out = 0.5 * (self.filter_outputs(stats) ** 2) @ self.pooling
        return out.reshape(batch, *self._shapes[h])

    def precision(self, target: str, stats: dict[str, Tensor]) -> Tensor | None:
        v, h = self.blocks
        if target != v:
            return None
        gain = -(stats[h].flatten(1) @ self.pooling.T)  # (batch, F), >= 0 for h >= 0
        c = self.filters
        return (c * gain.unsqueeze(1)) @ c.T

    def offset(self, target: str, stats: dict[str, Tensor]) -> Tensor:
        return stats[target].new_zeros(())

    def config(self) -> dict[str, Any]:
        return {
            "blocks": list(self.blocks),
            "name": self.name,
            "n_factors": self.n_factors,
            "init_scale": self.init_scale,
        }
