"""Couplings whose weights are shared by several copies of a layer, as in the pretraining of deep
Boltzmann machines (Salakhutdinov & Hinton 2009), where the bottom RBM sees its input twice and
the top RBM has its hidden layer twice."""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor, nn

from ebm.factors.base import Factor, register


def _check_copies(name: str, copies: int) -> int:
    if isinstance(copies, bool) or not isinstance(copies, int) or copies < 1:
        raise ValueError(f"{name} must be an int >= 1, got {copies!r}")
    return copies


def _copy_size(block: str, shape: tuple[int, ...], copies: int) -> int:
    if len(shape) != 1 or shape[0] % copies:
        raise ValueError(
            f"block {block!r} of shape {shape} cannot hold {copies} equal copies of a layer"
        )
    return shape[0] // copies


@register
class TiedDense(Factor):
    """E(a, b) = -(sum_i a_i)^T W (sum_j b_j), where block a holds ``copies_a`` copies a_i of a
    layer of n_a units (a has n_a * copies_a units, copy i being units i*n_a .. (i+1)*n_a - 1) and
    b likewise: every copy of a is coupled to every copy of b by the same W (n_a, n_b).

    Linear in each block: a copy of a gets natural parameters W (sum_j b_j). With copies_a = 2 and
    both copies held at the same data v, p(h | v) = sigma(2 W^T v + c) while each copy of v given h
    is sigma(W h + b): the "doubled input" of DBM pretraining; with copies_b = 2 on the hidden side,
    the doubled top layer. ``weight`` gives W; otherwise N(0, init_scale^2).
    """

    def __init__(
        self,
        a: str,
        b: str,
        copies_a: int = 1,
        copies_b: int = 1,
        weight=None,
        init_scale: float = 0.01,
        name: str | None = None,
    ):
        super().__init__(a, b, name=name)
        self.copies = (_check_copies("copies_a", copies_a), _check_copies("copies_b", copies_b))
        self._initial = self.initial(weight, "weight")
        self.init_scale = float(init_scale)
        self.weight: nn.Parameter | None = None
        self._sizes: tuple[int, int] = (0, 0)

    def bind(self, shapes: dict[str, tuple[int, ...]]) -> None:
        a, b = self.blocks
        self._sizes = (
            _copy_size(a, tuple(shapes[a]), self.copies[0]),
            _copy_size(b, tuple(shapes[b]), self.copies[1]),
        )
        self.weight = self.make_parameter(
            self._initial, self._sizes, "weight", lambda shape: self.init_scale * torch.randn(shape)
        )
        self._initial = None

    def _summed(self, which: int, stats: dict[str, Tensor]) -> Tensor:
        t = stats[self.blocks[which]]
        return t.reshape(t.shape[0], self.copies[which], self._sizes[which]).sum(1)

    def energy(self, stats: dict[str, Tensor]) -> Tensor:
        return -((self._summed(0, stats) @ self.weight) * self._summed(1, stats)).sum(-1)

    def natural(self, target: str, stats: dict[str, Tensor]) -> Tensor:
        if target == self.blocks[0]:
            per_copy, copies = self._summed(1, stats) @ self.weight.T, self.copies[0]
        else:
            per_copy, copies = self._summed(0, stats) @ self.weight, self.copies[1]
        return per_copy.repeat(1, copies)

    def offset(self, target: str, stats: dict[str, Tensor]) -> Tensor:
        return stats[target].new_zeros(())

    def config(self) -> dict[str, Any]:
        return {
            "blocks": list(self.blocks),
            "name": self.name,
            "copies_a": self.copies[0],
            "copies_b": self.copies[1],
            "init_scale": self.init_scale,
        }


@register
class TiedBias(Factor):
    """E(x) = -b . (sum_i x_i) over the ``copies`` copies x_i of a layer held in one block (see
    ``TiedDense``): each copy gets the same bias b. ``bias`` gives b (default zero)."""

    def __init__(self, block: str, copies: int = 1, bias=None, name: str | None = None):
        super().__init__(block, name=name)
        self.copies = _check_copies("copies", copies)
        self._initial = self.initial(bias, "bias")
        self.bias: nn.Parameter | None = None
        self._size = 0

    def bind(self, shapes: dict[str, tuple[int, ...]]) -> None:
        block = self.blocks[0]
        self._size = _copy_size(block, tuple(shapes[block]), self.copies)
        self.bias = self.make_parameter(self._initial, (self._size,), "bias", torch.zeros)
        self._initial = None

    def energy(self, stats: dict[str, Tensor]) -> Tensor:
        t = stats[self.blocks[0]]
        return -(t.reshape(t.shape[0], self.copies, self._size).sum(1) * self.bias).sum(-1)

    def natural(self, target: str, stats: dict[str, Tensor]) -> Tensor:
        return self.bias.repeat(self.copies).expand(stats[target].shape[0], -1)

    def offset(self, target: str, stats: dict[str, Tensor]) -> Tensor:
        return stats[target].new_zeros(())

    def config(self) -> dict[str, Any]:
        return {"blocks": list(self.blocks), "name": self.name, "copies": self.copies}

    @classmethod
    def from_config(cls, config: dict[str, Any]) -> TiedBias:
        (block,) = config["blocks"]
        return cls(block, copies=config.get("copies", 1), name=config.get("name"))
