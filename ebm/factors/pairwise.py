"""Pairwise: a sparse bilinear coupling between the units of two blocks."""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor, nn

from ebm.factors.base import Factor, check_init_scale, flat_size, register


@register
class Pairwise(Factor):
    """E(a, b) = -sum_e W_e t(a)_{i_e} t(b)_{j_e} over the given unit pairs e = (i_e, j_e) (units
    numbered in the flattened blocks): a ``Dense`` coupling whose weight matrix is zero outside
    the edges, with its m weights as one tensor.

    Linear in each block: a's natural parameters are eta_i = sum_{e: i_e = i} W_e t(b)_{j_e}
    (a gather, a product and an ``index_add_``), and b's likewise. ``edges``: an (m, 2) integer
    array or a list of pairs, each pair at most once. ``weight`` (optional) gives W (shape (m,));
    otherwise W ~ N(0, init_scale^2). Coupling units of one block with each other (``b`` None) needs
    a schedule over the block's units, which the graph does not build yet: refused.
    """

    def __init__(
        self,
        a: str,
        b: str | None = None,
        edges=None,
        weight=None,
        init_scale: float = 0.01,
        name: str | None = None,
    ):
        if b is None or b == a:
            raise ValueError(
                f"Pairwise couples two distinct blocks; coupling the units of block {a!r} with "
                f"each other needs a unit-level schedule, which the graph does not build yet"
            )
        super().__init__(a, b, name=name)
        self._edges = _as_edges(edges)
        self._initial = self.initial(weight, "weight")
        self.init_scale = check_init_scale(init_scale)
        self.weight: nn.Parameter | None = None
        self.register_buffer("edges", self._edges, persistent=False)
        self._shapes: dict[str, tuple[int, ...]] = {}

    def bind(self, shapes: dict[str, tuple[int, ...]]) -> None:
        a, b = self.blocks
        self._shapes = {a: tuple(shapes[a]), b: tuple(shapes[b])}
        for column, block in enumerate(self.blocks):
            size = flat_size(shapes[block])
            bad = (self._edges[:, column] >= size).nonzero()
            if len(bad):
                e = int(bad[0, 0])
                raise ValueError(
                    f"factor {self.name!r}: edge {e} {tuple(self._edges[e].tolist())} names unit "
                    f"{int(self._edges[e, column])} of block {block!r}, which has {size} units"
                )
        self.weight = self.make_parameter(
            self._initial,
            (len(self._edges),),
            "weight",
            lambda shape: self.init_scale * torch.randn(shape),
        )
        self._initial = None

    def energy(self, stats: dict[str, Tensor]) -> Tensor:
        a, b = self.blocks
        i, j = self.edges[:, 0], self.edges[:, 1]
        ta, tb = stats[a].flatten(1), stats[b].flatten(1)
        return -((ta[:, i] * tb[:, j]) @ self.weight)

    def natural(self, target: str, stats: dict[str, Tensor]) -> Tensor:
        a, b = self.blocks
        here, there = (0, 1) if target == a else (1, 0)
        other = stats[b if target == a else a].flatten(1)
        terms = other[:, self.edges[:, there]] * self.weight
        size = flat_size(self._shapes[target])
        out = terms.new_zeros((other.shape[0], size)).index_add_(1, self.edges[:, here], terms)
        return out.reshape(other.shape[0], *self._shapes[target])

    def offset(self, target: str, stats: dict[str, Tensor]) -> Tensor:
        return stats[target].new_zeros(())

    def config(self) -> dict[str, Any]:
        return {
            "blocks": list(self.blocks),
            "edges": self._edges.tolist(),
            "init_scale": self.init_scale,
            "name": self.name,
        }

    @classmethod
    def from_config(cls, config: dict[str, Any]) -> Pairwise:
        a, b = config["blocks"]
        return cls(
            a, b, edges=config["edges"], init_scale=config["init_scale"], name=config.get("name")
        )


def _as_edges(edges) -> Tensor:
    """``edges`` as an (m, 2) int64 tensor of distinct pairs of unit numbers >= 0."""
    if edges is None:
        raise ValueError("Pairwise needs edges: an (m, 2) array of unit pairs")
    t = torch.as_tensor(edges)
    if t.numel() == 0:
        t = t.reshape(0, 2)
    if t.dim() != 2 or t.shape[1] != 2 or t.is_floating_point() or t.dtype == torch.bool:
        raise ValueError(
            f"edges must be an (m, 2) array of integer unit numbers, got shape {tuple(t.shape)} "
            f"and dtype {t.dtype}"
        )
    t = t.to(torch.int64)
    if len(t) and int(t.min()) < 0:
        raise ValueError(f"edges must number units from 0; found {int(t.min())}")
    unique, counts = torch.unique(t, dim=0, return_counts=True)
    if len(t) and int(counts.max()) > 1:
        pair = tuple(unique[counts.argmax()].tolist())
        raise ValueError(f"edge {pair} is given {int(counts.max())} times; give each pair once")
    return t.contiguous()
