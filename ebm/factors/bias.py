"""Bias: a linear term on one block."""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor, nn

from ebm.factors.base import Factor, register


@register
class Bias(Factor):
    """E(x) = -b . t(x) over one block; contributes b to the block's natural parameters.

    ``bias`` (optional) gives the initial value; it must be finite and of the block's shape.
    """

    def __init__(self, block: str, bias=None, name: str | None = None):
        super().__init__(block, name=name)
        self._initial = self.initial(bias, "bias")
        self.bias: nn.Parameter | None = None

    def bind(self, shapes: dict[str, tuple[int, ...]]) -> None:
        self.bias = self.make_parameter(self._initial, shapes[self.blocks[0]], "bias", torch.zeros)
        self._initial = None

    def energy(self, stats: dict[str, Tensor]) -> Tensor:
        t = stats[self.blocks[0]]
        return -(t.flatten(1) @ self.bias.reshape(-1))  # a product: no temporary of t's size

    def natural(self, target: str, stats: dict[str, Tensor]) -> Tensor:
        return self.bias.expand_as(stats[target])

    def natural_units(self, target: str, stats: dict[str, Tensor], index: Tensor) -> Tensor:
        """b of the units ``index``, broadcast over the chains (a view of a new tensor)."""
        t = stats[target]
        return self.bias[index.to(self.bias.device)].expand(t.shape[0], len(index), *t.shape[2:])

    def offset(self, target: str, stats: dict[str, Tensor]) -> Tensor:
        return stats[target].new_zeros(())

    def config(self) -> dict[str, Any]:
        return {"blocks": list(self.blocks), "name": self.name}

    @classmethod
    def from_config(cls, config: dict[str, Any]) -> Bias:
        (block,) = config["blocks"]
        return cls(block, name=config.get("name"))
