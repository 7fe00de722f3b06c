"""Bias: a linear term on one block."""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor, nn

from ebm.factors.base import Factor, register
from ebm.units import _finite_param


@register
class Bias(Factor):
    """E(x) = -b . t(x) over one block; contributes b to the block's natural parameters.

    ``bias`` (optional) gives the initial value; it must be finite and of the block's shape.
    """

    def __init__(self, block: str, bias=None, name: str | None = None):
        super().__init__(block, name=name)
        self._initial = (
            None
            if bias is None
            else _finite_param(bias, tuple(torch.as_tensor(bias).shape), f"{self.name}.bias")
        )
        self.bias: nn.Parameter | None = None

    def bind(self, shapes: dict[str, tuple[int, ...]]) -> None:
        shape = tuple(shapes[self.blocks[0]])
        if self._initial is not None:
            if tuple(self._initial.shape) != shape:
                raise ValueError(
                    f"factor {self.name!r}: bias has shape {tuple(self._initial.shape)} but block "
                    f"{self.blocks[0]!r} has shape {shape}"
                )
            self.bias = nn.Parameter(self._initial)
        else:
            self.bias = nn.Parameter(torch.zeros(shape))
        self._initial = None

    def energy(self, stats: dict[str, Tensor]) -> Tensor:
        t = stats[self.blocks[0]]
        return -(t * self.bias).flatten(1).sum(-1)

    def natural(self, target: str, stats: dict[str, Tensor]) -> Tensor:
        return self.bias.expand_as(stats[target])

    def offset(self, target: str, stats: dict[str, Tensor]) -> Tensor:
        return stats[target].new_zeros(())

    def config(self) -> dict[str, Any]:
        return {"blocks": list(self.blocks), "name": self.name}

    @classmethod
    def from_config(cls, config: dict[str, Any]) -> Bias:
        (block,) = config["blocks"]
        return cls(block, name=config.get("name"))
