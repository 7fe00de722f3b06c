"""StudentT: heavy-tailed constraint experts (Hinton & Teh 2001; Welling, Hinton & Osindero 2003)
written with auxiliary Gamma precisions, so that block Gibbs is exact."""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor, nn

from ebm.factors.base import Factor, check_init_scale, flat_size, register


@register
class StudentT(Factor):
    """E(x, u) = sum_j u_j (w_j . t(x))^2 / 2 between a Gaussian block x and a ``Gamma`` block u of
    J auxiliary precisions, with W (size of x, J) the constraint filters.

    Linear in u (u_j's natural parameter is -(w_j . t)^2 / 2) and quadratic in x (precision
    Q(u) = W diag(u) W^T): given x each u_j is Gamma(alpha_j, 1 + (w_j . t)^2 / 2), and given u, x
    is Gaussian with precision I + Q(u) in t. Summing u out with its Gamma(alpha, 1) base gives the
    product of Student-t experts,

        F(x) = E_0(x) + sum_j [alpha_j log(1 + (w_j . t)^2 / 2) - log Gamma(alpha_j)],

    each constraint w_j . t penalised heavily near zero and gently far from it. ``weight`` gives W;
    otherwise N(0, init_scale^2).
    """

    def __init__(
        self, x: str, u: str, weight=None, init_scale: float = 0.5, name: str | None = None
    ):
        super().__init__(x, u, name=name)
        if x == u:
            raise ValueError("StudentT couples a Gaussian block to a distinct Gamma block")
        self._initial = self.initial(weight, "weight")
        self.init_scale = check_init_scale(init_scale)
        self.weight: nn.Parameter | None = None
        self._shapes: dict[str, tuple[int, ...]] = {}

    def bind(self, shapes: dict[str, tuple[int, ...]]) -> None:
        x, u = self.blocks
        self._shapes = {x: tuple(shapes[x]), u: tuple(shapes[u])}
        self.weight = self.make_parameter(
            self._initial,
            (flat_size(shapes[x]), flat_size(shapes[u])),
            "weight",
            lambda shape: self.init_scale * torch.randn(shape),
        )
        self._initial = None

    def responses(self, stats: dict[str, Tensor]) -> Tensor:
        """w_j . t(x) for every constraint: shape (batch, J)."""
        return stats[self.blocks[0]].flatten(1) @ self.weight

    def energy(self, stats: dict[str, Tensor]) -> Tensor:
        u = stats[self.blocks[1]].flatten(1)
        return 0.5 * (u * self.responses(stats) ** 2).sum(-1)

    def natural(self, target: str, stats: dict[str, Tensor]) -> Tensor:
        x, u = self.blocks
        batch = stats[target].shape[0]
        if target == x:
            return stats[x].new_zeros((batch, *self._shapes[x]))
        return (-0.5 * self.responses(stats) ** 2).reshape(batch, *self._shapes[u])

    def precision(self, target: str, stats: dict[str, Tensor]) -> Tensor | None:
        x, u = self.blocks
        if target != x:
            return None
        w = self.weight
        return (w * stats[u].flatten(1).unsqueeze(1)) @ w.T

    def offset(self, target: str, stats: dict[str, Tensor]) -> Tensor:
        return stats[target].new_zeros(())

    def config(self) -> dict[str, Any]:
        return {"blocks": list(self.blocks), "name": self.name, "init_scale": self.init_scale}
