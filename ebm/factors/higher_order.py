"""HigherOrder: sparse k-unit terms within one block (Sejnowski's higher-order Boltzmann machine)."""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor, nn

from ebm.factors.base import Factor, check_init_scale, register
from ebm.factors.terms import (
    PlanCache,
    UnitPlan,
    as_terms,
    natural_of_terms,
    term_pairs,
)


@register
class HigherOrder(Factor):
    """E = -sum_r w_r prod_{i in term r} t_i over sparse terms of k >= 2 distinct units of one
    block (numbered 0 .. n-1), orders mixed freely (Sejnowski 1986): pairs, triples, ...

    ``terms``: an (m, k) integer array (one order), or a list of unit tuples of any lengths >= 2;
    a term that repeats a unit, or a term given twice, is refused by name. ``weight``: shape (m,)
    in the order of ``terms``; otherwise w ~ N(0, init_scale^2). The weights are one tensor.

    The energy is linear in each unit's statistic, so a unit's conditional given the others is of
    its unit type's family, with natural parameter eta_i = sum_{r: i in r} w_r prod_{j in r, j != i}
    t_j; units sharing a term are coupled and the graph colours them apart (``unit_couplings``
    gives every pair of units of a term). Blocks whose unit statistic is one number per unit
    (Bernoulli, Spin, Gaussian) only.
    """

    def __init__(
        self,
        block: str,
        terms=None,
        weight=None,
        init_scale: float = 0.01,
        name: str | None = None,
    ):
        super().__init__(block, name=name)
        orders = _by_order(terms, self.name)
        self._count = sum(len(ids) for _, ids in orders)
        self._initial = self.initial(weight, "weight")
        self.init_scale = check_init_scale(init_scale)
        self.weight: nn.Parameter | None = None
        self._orders: list[tuple[Tensor, Tensor]] = orders
        for k, (t, ids) in enumerate(orders):
            self.register_buffer(f"terms{k}", t, persistent=False)
            self.register_buffer(f"ids{k}", ids, persistent=False)
        self._plans = PlanCache()

    def _order_tensors(self) -> list[tuple[Tensor, Tensor]]:
        """(terms, their weights' positions) per order, on the module's device."""
        return [
            (getattr(self, f"terms{k}"), getattr(self, f"ids{k}")) for k in range(len(self._orders))
        ]

    def bind(self, shapes: dict[str, tuple[int, ...]]) -> None:
        (block,) = self.blocks
        shape = tuple(shapes[block])
        if len(shape) != 1:
            raise ValueError(
                f"factor {self.name!r}: HigherOrder needs one number per unit; block {block!r} "
                f"has units of shape {shape[1:]}"
            )
        for terms, _ in self._orders:
            if len(terms) and int(terms.max()) >= shape[0]:
                r = int((terms >= shape[0]).any(1).nonzero()[0, 0])
                raise ValueError(
                    f"factor {self.name!r}: term {tuple(terms[r].tolist())} names a unit of block "
                    f"{block!r}, which has {shape[0]} units"
                )
        self.weight = self.make_parameter(
            self._initial,
            (self._count,),
            "weight",
            lambda s: self.init_scale * torch.randn(s),
        )
        self._initial = None

    def energy(self, stats: dict[str, Tensor]) -> Tensor:
        t = stats[self.blocks[0]]
        e = t.new_zeros(t.shape[0])
        for terms, ids in self._order_tensors():
            e = e - t[:, terms].prod(-1) @ self.weight[ids]
        return e

    def natural(self, target: str, stats: dict[str, Tensor]) -> Tensor:
        t = stats[target]
        out = t.new_zeros(t.shape)
        for terms, ids in self._order_tensors():
            out = out + natural_of_terms(terms, self.weight[ids], t)
        return out

    def unit_couplings(self, block: str) -> Tensor:
        return term_pairs(*(terms for terms, _ in self._orders))

    def coupling_terms(self, block: str) -> list[tuple[Tensor, Tensor]]:
        return [(terms, self.weight[ids]) for terms, ids in self._orders]

    def natural_units(self, target: str, stats: dict[str, Tensor], index: Tensor) -> Tensor:
        if torch.is_grad_enabled():
            return super().natural_units(target, stats, index)
        t = stats[target]
        plans = self._plans.get(
            index,
            t.device,
            lambda: [UnitPlan(terms, index, t.shape[1], t.device) for terms, _ in self._orders],
        )
        out = None
        for plan, (_, ids) in zip(plans, self._order_tensors(), strict=True):
            term = plan.natural(self.weight[ids], t)
            out = term if out is None else out + term
        return out if out is not None else t.new_zeros((t.shape[0], len(index)))

    def offset(self, target: str, stats: dict[str, Tensor]) -> Tensor:
        return stats[target].new_zeros(())

    def config(self) -> dict[str, Any]:
        terms: list[list[int]] = [[] for _ in range(self._count)]
        for t, ids in self._orders:
            for row, i in zip(t.tolist(), ids.tolist(), strict=True):
                terms[i] = row
        return {
            "block": self.blocks[0],
            "terms": terms,
            "init_scale": self.init_scale,
            "name": self.name,
        }

    @classmethod
    def from_config(cls, config: dict[str, Any]) -> HigherOrder:
        return cls(**config)


def _by_order(terms, name: str) -> list[tuple[Tensor, Tensor]]:
    """The terms grouped by order: [(terms of order k (m_k, k), their positions in the given
    list (m_k,))], orders ascending; each group validated by ``as_terms``."""
    if terms is None:
        raise ValueError(f"factor {name!r}: HigherOrder needs terms (tuples of unit numbers)")
    if isinstance(terms, Tensor) or type(terms).__module__ == "numpy":
        t = torch.as_tensor(terms)
        if t.dim() != 2:
            raise ValueError(
                f"factor {name!r}: terms must be an (m, k) array, got {tuple(t.shape)}"
            )
        rows = [t]
        groups = {t.shape[1]: list(range(len(t)))} if len(t) else {}
        arrays = {t.shape[1]: t} if len(t) else {}
    else:
        rows = [tuple(r) for r in terms]
        groups: dict[int, list[int]] = {}
        for i, r in enumerate(rows):
            groups.setdefault(len(r), []).append(i)
        arrays = {k: torch.tensor([rows[i] for i in ids]) for k, ids in groups.items()}
    del rows
    out = []
    for k in sorted(groups):
        if k < 2:
            raise ValueError(f"factor {name!r}: a term couples at least 2 units, got one of {k}")
        checked = as_terms(arrays[k], f"factor {name!r}", order=k)
        out.append((checked, torch.tensor(groups[k], dtype=torch.int64)))
    return out
