"""Pairwise: a sparse bilinear coupling between the units of two blocks, or of one block."""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor, nn

from ebm.factors.base import Factor, check_init_scale, register
from ebm.factors.terms import PlanCache, UnitPlan, as_terms


@register
class Pairwise(Factor):
    """E = -sum_e W_e t_(i_e) . t_(j_e) over the given unit pairs e = (i_e, j_e): between blocks a
    and b (i_e a unit of a, j_e of b), or within block a (``b`` None or a). Units are numbered
    along the block's first axis; where a unit's statistic is a vector (a Categorical unit's one-hot
    code) the product is the dot product, so on Categorical units W_e counts agreement (a Potts
    coupling). The m weights are one tensor, ``weight`` (shape (m,)) or W ~ N(0, init_scale^2).

    Between two blocks this is a ``Dense`` coupling zero off the edges, linear in each block.
    Within a block it couples the block's units with each other: the energy is linear in each
    unit's statistic, not in the block's, so the graph colours the units (``Graph.schedule``) and
    the units of one colour are drawn together. Natural parameters of unit i:
    eta_i = sum_{e at i} W_e t_(other end of e), gathered and added with ``index_add_`` for the
    whole block, or as a sparse matrix product for a colour class (``natural_units``).
    ``edges``: an (m, 2) integer array or a list of pairs, each pair once (within a block,
    (i, j) and (j, i) are the same pair, and (i, i) is refused).
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
        self.within = b is None or b == a
        if self.within:
            super().__init__(a, name=name or f"pairwise_{a}")
            self._edges = as_terms(edges, f"Pairwise({a!r}) edges", order=2)
        else:
            super().__init__(a, b, name=name)
            self._edges = _as_edges(edges)
        self._initial = self.initial(weight, "weight")
        self.init_scale = check_init_scale(init_scale)
        self.weight: nn.Parameter | None = None
        self.register_buffer("edges", self._edges, persistent=False)
        self._shapes: dict[str, tuple[int, ...]] = {}
        self._plans = PlanCache()

    def bind(self, shapes: dict[str, tuple[int, ...]]) -> None:
        self._shapes = {b: tuple(shapes[b]) for b in self.blocks}
        trailing = {shapes[b][1:] for b in self.blocks}
        if len(trailing) > 1:
            raise ValueError(
                f"factor {self.name!r}: the units of {' and '.join(map(repr, self.blocks))} have "
                f"statistics of different shapes ({', '.join(str(s[1:]) for s in shapes.values())})"
            )
        ends = self.blocks * 2 if self.within else self.blocks
        for column, block in enumerate(ends):
            size = shapes[block][0]
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

    def _ends(self, stats: dict[str, Tensor]) -> tuple[Tensor, Tensor]:
        a, b = self.blocks * 2 if self.within else self.blocks
        return stats[a], stats[b]

    def _weight_like(self, t: Tensor) -> Tensor:
        """W shaped to broadcast over (batch, m, *trailing)."""
        return self.weight.reshape(-1, *([1] * (t.dim() - 2)))

    def energy(self, stats: dict[str, Tensor]) -> Tensor:
        ta, tb = self._ends(stats)
        products = ta[:, self.edges[:, 0]] * tb[:, self.edges[:, 1]]
        if products.dim() > 2:  # vector statistics: dot products
            products = products.flatten(2).sum(-1)
        return -(products @ self.weight)

    def natural(self, target: str, stats: dict[str, Tensor]) -> Tensor:
        ta, tb = self._ends(stats)
        if self.within:
            i, j = self.edges[:, 0], self.edges[:, 1]
            w = self._weight_like(ta)
            out = ta.new_zeros(ta.shape).index_add(1, i, ta[:, j] * w)
            return out.index_add(1, j, ta[:, i] * w)
        here, there = (0, 1) if target == self.blocks[0] else (1, 0)
        other = tb if target == self.blocks[0] else ta
        terms = other[:, self.edges[:, there]] * self._weight_like(other)
        out = other.new_zeros((other.shape[0], *self._shapes[target]))
        return out.index_add_(1, self.edges[:, here], terms)

    def unit_couplings(self, block: str) -> Tensor | None:
        return self._edges if self.within else None

    def _plan(self, index: Tensor, t: Tensor) -> UnitPlan:
        """The plan of the units ``index`` for statistics like ``t`` (cached per class)."""
        return self._plans.get(
            index, t.device, lambda: UnitPlan(self._edges, index, t.shape[1], t.device)
        )

    def natural_units(self, target: str, stats: dict[str, Tensor], index: Tensor) -> Tensor:
        if not self.within or torch.is_grad_enabled():
            return super().natural_units(target, stats, index)
        t = stats[target]
        return self._plan(index, t).natural(self.weight, t)

    def natural_rows(self, target: str, stats: dict[str, Tensor], index: Tensor):
        """Within a block of scalar statistics: the class's couplings by target (see
        ``Factor.natural_rows``); else None."""
        t = stats[target]
        if not self.within or t.dim() != 2:
            return None
        return self._plan(index, t).target_rows(self.weight.detach())

    def coupling_terms(self, block: str) -> list[tuple[Tensor, Tensor]] | None:
        return [(self._edges, self.weight)] if self.within else None

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
        blocks = config["blocks"]
        a, b = blocks if len(blocks) == 2 else (blocks[0], None)
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
