"""Three-way multiplicative couplings across three distinct blocks: the full tensor (Sejnowski's
third-order term) and its factored form (Memisevic & Hinton's gated RBM, Taylor & Hinton's FCRBM)."""

from __future__ import annotations

import weakref
from typing import Any

import torch
from torch import Tensor, nn

from ebm.factors.base import Factor, check_init_scale, flat_size, register


class _ThreeBlocks(Factor):
    """Shared plumbing: three distinct blocks, flattened statistics, zero offset, a config with
    ``init_scale`` (and whatever ``_extra_config`` adds)."""

    def __init__(self, a: str, b: str, c: str, init_scale: float, name: str | None):
        super().__init__(a, b, c, name=name)
        if len({a, b, c}) != 3:
            raise ValueError(
                f"{type(self).__name__} couples three distinct blocks, got {a!r}, {b!r}, {c!r}"
            )
        self.init_scale = check_init_scale(init_scale)
        self._shapes: dict[str, tuple[int, ...]] = {}

    def _flat(self, stats: dict[str, Tensor]) -> list[Tensor]:
        return [stats[b].flatten(1) for b in self.blocks]

    def _shaped(self, target: str, flat: Tensor) -> Tensor:
        return flat.reshape(flat.shape[0], *self._shapes[target])

    def offset(self, target: str, stats: dict[str, Tensor]) -> Tensor:
        return stats[target].new_zeros(())

    def config(self) -> dict[str, Any]:
        return {"blocks": list(self.blocks), "name": self.name, "init_scale": self.init_scale}


@register
class ThirdOrder(_ThreeBlocks):
    """E(a, b, c) = -sum_ijk W_ijk t(a)_i t(b)_j t(c)_k with a full tensor W of shape (size of a,
    size of b, size of c) (blocks flattened): every triple of units across the three blocks has its
    own weight, as in Sejnowski's higher-order Boltzmann machine. Linear in each block, so each
    block's conditional given the other two is of its unit type's family, with natural parameters
    e.g. (W t(b) t(c))_i = sum_jk W_ijk t(b)_j t(c)_k for a. ``weight`` (optional) gives W;
    otherwise W ~ N(0, init_scale^2). The learning signal for W_ijk is <t_i t_j t_k>_data -
    <t_i t_j t_k>_model."""

    def __init__(
        self,
        a: str,
        b: str,
        c: str,
        weight=None,
        init_scale: float = 0.01,
        name: str | None = None,
    ):
        super().__init__(a, b, c, init_scale, name)
        self._initial = self.initial(weight, "weight")
        self.weight: nn.Parameter | None = None

    def bind(self, shapes: dict[str, tuple[int, ...]]) -> None:
        self._shapes = {b: tuple(shapes[b]) for b in self.blocks}
        want = tuple(flat_size(shapes[b]) for b in self.blocks)
        self.weight = self.make_parameter(
            self._initial, want, "weight", lambda shape: self.init_scale * torch.randn(shape)
        )
        self._initial = None

    def energy(self, stats: dict[str, Tensor]) -> Tensor:
        ta, tb, tc = self._flat(stats)
        return -torch.einsum("ni,ijk,nj,nk->n", ta, self.weight, tb, tc)

    def natural(self, target: str, stats: dict[str, Tensor]) -> Tensor:
        ta, tb, tc = self._flat(stats)
        a, b, _ = self.blocks
        if target == a:
            out = torch.einsum("ijk,nj,nk->ni", self.weight, tb, tc)
        elif target == b:
            out = torch.einsum("ijk,ni,nk->nj", self.weight, ta, tc)
        else:
            out = torch.einsum("ijk,ni,nj->nk", self.weight, ta, tb)
        return self._shaped(target, out)


@register
class Factored3Way(_ThreeBlocks):
    """E(x, y, h) = -sum_f (t(x) . Wx_f) (t(y) . Wy_f) (t(h) . Wh_f): the three-way tensor
    factored into ``n_factors`` rank-one terms, with Wx (size of x, F), Wy (size of y, F), Wh
    (size of h, F) (Memisevic & Hinton 2010; Taylor & Hinton 2009). Linear in each block: e.g.
    h's natural parameters are Wh ((x Wx) * (y Wy)), a matmul each way after an elementwise
    product of factor activities, which is what makes the model cheap where the full tensor is
    cubic in size. ``weights`` (optional) gives (Wx, Wy, Wh); otherwise each is
    N(0, init_scale^2)."""

    def __init__(
        self,
        x: str,
        y: str,
        h: str,
        n_factors: int,
        weights=None,
        init_scale: float = 0.1,
        name: str | None = None,
    ):
        super().__init__(x, y, h, init_scale, name)
        if isinstance(n_factors, bool) or not isinstance(n_factors, int) or n_factors < 1:
            raise ValueError(f"n_factors must be an int >= 1, got {n_factors!r}")
        self.n_factors = n_factors
        if weights is not None and len(weights) != 3:
            raise ValueError("weights must be (Wx, Wy, Wh)")
        self._initial = (
            [None] * 3
            if weights is None
            else [self.initial(w, f"W{b}") for w, b in zip(weights, "xyh", strict=True)]
        )
        self.factors = nn.ParameterList()
        self._cache: dict[int, tuple] = {}

    def bind(self, shapes: dict[str, tuple[int, ...]]) -> None:
        self._shapes = {b: tuple(shapes[b]) for b in self.blocks}
        params = []
        for block, initial, label in zip(self.blocks, self._initial, "xyh", strict=True):
            params.append(
                self.make_parameter(
                    initial,
                    (flat_size(shapes[block]), self.n_factors),
                    f"W{label}",
                    lambda shape: self.init_scale * torch.randn(shape),
                )
            )
        self.factors = nn.ParameterList(params)
        self._initial = [None] * 3

    def activities(self, stats: dict[str, Tensor]) -> list[Tensor]:
        """The factor inputs t(block) W_block for the three blocks: each (batch, F)."""
        return [t @ w for t, w in zip(self._flat(stats), self.factors, strict=True)]

    def energy(self, stats: dict[str, Tensor]) -> Tensor:
        fx, fy, fh = self.activities(stats)
        return -(fx * fy * fh).sum(-1)

    def natural(self, target: str, stats: dict[str, Tensor]) -> Tensor:
        x, w = self.natural_product(target, stats)
        return self._shaped(target, x @ w)

    def natural_product(
        self, target: str, stats: dict[str, Tensor], matmul=torch.mm, mul=torch.mul
    ):
        """(fa * fb, W_target^T): the elementwise product (``mul``) of the other two blocks'
        factor activities (projected with ``matmul``) and the target's weights."""
        i, ws = self.blocks.index(target), self._weights()
        f1, f2 = (self._activity(j, stats, ws[j], matmul) for j in range(3) if j != i)
        return mul(f1, f2), ws[i].T

    def _weights(self) -> tuple[Tensor, ...]:
        """(Wx, Wy, Wh), read from the ParameterList's own dict: its indexing costs microseconds
        a call, which the hot loop of block Gibbs on small blocks notices."""
        return tuple(self.factors._parameters.values())

    def _activity(self, j: int, stats: dict[str, Tensor], w: Tensor, matmul) -> Tensor:
        """t(block j) Wj, reused while neither that block's statistic (the same tensor object,
        unmodified) nor Wj has changed and the same ``matmul`` asks, when no gradient is being
        recorded: a block Gibbs sweep then projects each block once (6 matrix products a sweep
        instead of 9)."""
        t = stats[self.blocks[j]]
        if torch.is_grad_enabled():
            return t.flatten(1) @ w
        key = (t._version, w._version, t.shape, matmul)
        cached = self._cache.get(j)
        if cached is not None and cached[0]() is t and cached[1] == key:
            return cached[2]
        out = matmul(t.flatten(1), w)
        self._cache[j] = (weakref.ref(t), key, out)
        return out

    def config(self) -> dict[str, Any]:
        return {**super().config(), "n_factors": self.n_factors}
