"""Dense: the pairwise bilinear coupling of two blocks."""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor, nn

from ebm.factors.base import Factor, check_init_scale, flat_size, register


@register
class Dense(Factor):
    """E(a, b) = -t(a)^T W t(b), with W of shape (size of a, size of b) (blocks flattened).

    Contributes W t(b) to the natural parameters of a and W^T t(a) to those of b: one matmul each,
    the hot loop of block Gibbs. ``weight`` (optional) gives W; otherwise W ~ N(0, init_scale^2).
    """

    def __init__(
        self, a: str, b: str, weight=None, init_scale: float = 0.01, name: str | None = None
    ):
        super().__init__(a, b, name=name)
        self._initial = self.initial(weight, "weight")
        self.init_scale = check_init_scale(init_scale)
        self.weight: nn.Parameter | None = None
        self._shapes: dict[str, tuple[int, ...]] = {}

    def bind(self, shapes: dict[str, tuple[int, ...]]) -> None:
        a, b = self.blocks
        self._shapes = {a: tuple(shapes[a]), b: tuple(shapes[b])}
        want = (flat_size(shapes[a]), flat_size(shapes[b]))
        self.weight = self.make_parameter(
            self._initial, want, "weight", lambda shape: self.init_scale * torch.randn(shape)
        )
        self._initial = None

    def energy(self, stats: dict[str, Tensor]) -> Tensor:
        a, b = self.blocks
        ta, tb = stats[a].flatten(1), stats[b].flatten(1)
        return -((ta @ self.weight) * tb).sum(-1)

    def natural(self, target: str, stats: dict[str, Tensor]) -> Tensor:
        other, w = self._operands(target, stats)
        return (other @ w).reshape(other.shape[0], *self._shapes[target])

    def natural_product(
        self, target: str, stats: dict[str, Tensor], matmul=torch.mm, mul=torch.mul
    ):
        return self._operands(target, stats)

    def _operands(self, target: str, stats: dict[str, Tensor]) -> tuple[Tensor, Tensor]:
        """(t(other block) flattened, W or W^T): the contribution to ``target`` is their product."""
        a, b = self.blocks
        if target == a:
            return stats[b].flatten(1), self.weight.T
        return stats[a].flatten(1), self.weight

    def offset(self, target: str, stats: dict[str, Tensor]) -> Tensor:
        return stats[target].new_zeros(())

    def config(self) -> dict[str, Any]:
        return {"blocks": list(self.blocks), "name": self.name, "init_scale": self.init_scale}
