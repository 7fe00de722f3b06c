"""Terms of the replicated softmax models of documents (Salakhutdinov & Hinton 2009; Srivastava,
Salakhutdinov & Hinton 2013): a hidden bias scaled by the number of words, and weights and biases
shared by several count blocks (the document's words and the over-replicated softmax layer)."""

from __future__ import annotations

import torch
from torch import Tensor, nn

from ebm.factors.base import Factor, check_init_scale, flat_size, register


def _total(stats: dict[str, Tensor], blocks) -> Tensor:
    """sum over the blocks of their statistics, shape (batch, *shape)."""
    out = stats[blocks[0]]
    for b in blocks[1:]:
        out = out + stats[b]
    return out


def _same_shapes(factor: Factor, blocks, shapes) -> tuple[int, ...]:
    first = tuple(shapes[blocks[0]])
    for b in blocks[1:]:
        if tuple(shapes[b]) != first:
            raise ValueError(
                f"factor {factor.name!r}: blocks {blocks[0]!r} and {b!r} share its parameters and "
                f"must have one shape; got {first} and {tuple(shapes[b])}"
            )
    if len(first) != 1:
        raise ValueError(f"factor {factor.name!r}: blocks of one axis expected, got {first}")
    return first


def _check_distinct(blocks) -> None:
    if len(set(blocks)) != len(blocks):
        raise ValueError(f"a block may appear once among {list(blocks)}")


@register
class LengthScaledBias(Factor):
    """E(h, c_1, ..., c_m) = -(sum_i sum_k t(c_i)_k) (a . t(h)): the bias a of block ``hidden``
    scaled by the total count of the count blocks ``counts`` (a document's length D, or D + M
    with an over-replicated layer of M words), as the replicated softmax's hidden units have it.

    Linear in each block: h gets (sum_i |c_i|) a, every unit of a count block gets a . t(h) (the
    same for all k, so it leaves a count block's conditional at a fixed length unchanged and only
    shifts its log-partition by D a . t(h)). ``bias`` gives a (default zero)."""

    def __init__(self, hidden: str, *counts: str, bias=None, name: str | None = None):
        if not counts:
            raise ValueError("LengthScaledBias needs at least one count block")
        _check_distinct((hidden, *counts))
        super().__init__(hidden, *counts, name=name)
        self._initial = self.initial(bias, "bias")
        self.bias: nn.Parameter | None = None

    @property
    def counts(self) -> tuple[str, ...]:
        return self.blocks[1:]

    def interacts(self, a: str, b: str) -> bool:
        """Only the hidden block interacts with the count blocks (the length is a sum)."""
        return self.blocks[0] in (a, b)

    def bind(self, shapes: dict[str, tuple[int, ...]]) -> None:
        hidden = self.blocks[0]
        self.bias = self.make_parameter(
            self._initial, (flat_size(shapes[hidden]),), "bias", torch.zeros
        )
        self._initial = None

    def _length(self, stats: dict[str, Tensor]) -> Tensor:
        return sum(stats[b].flatten(1).sum(-1) for b in self.counts)

    def _drive(self, stats: dict[str, Tensor]) -> Tensor:
        return stats[self.blocks[0]].flatten(1) @ self.bias

    def energy(self, stats: dict[str, Tensor]) -> Tensor:
        return -self._length(stats) * self._drive(stats)

    def natural(self, target: str, stats: dict[str, Tensor]) -> Tensor:
        like = stats[target]
        if target == self.blocks[0]:
            return (self._length(stats).unsqueeze(-1) * self.bias).reshape(like.shape)
        return self._drive(stats).reshape(-1, *([1] * (like.dim() - 1))).expand_as(like)


@register
class SharedDense(Factor):
    """E(h, c_1, ..., c_m) = -(sum_i t(c_i))^T W t(h): one weight matrix W (size of c, size of h)
    between block ``hidden`` and each of the blocks ``inputs`` (all of one shape), as the
    over-replicated softmax ties its second layer's weights to the words'. With one input it is
    ``Dense(input, hidden)``. Linear in each block: an input gets W t(h), h gets W^T sum_i t(c_i).
    ``weight`` gives W; otherwise N(0, init_scale^2)."""

    def __init__(self, hidden: str, *inputs: str, weight=None, init_scale: float = 0.01, name=None):
        if not inputs:
            raise ValueError("SharedDense needs at least one input block")
        _check_distinct((hidden, *inputs))
        super().__init__(hidden, *inputs, name=name)
        self._initial = self.initial(weight, "weight")
        self.init_scale = check_init_scale(init_scale)
        self.weight: nn.Parameter | None = None

    @property
    def inputs(self) -> tuple[str, ...]:
        return self.blocks[1:]

    def interacts(self, a: str, b: str) -> bool:
        """Only the hidden block interacts with the inputs (the inputs enter as a sum)."""
        return self.blocks[0] in (a, b)

    def bind(self, shapes: dict[str, tuple[int, ...]]) -> None:
        (size,) = _same_shapes(self, self.inputs, shapes)
        hidden = self.blocks[0]
        if len(shapes[hidden]) != 1:
            raise ValueError(f"factor {self.name!r}: block {hidden!r} must have one axis")
        self.weight = self.make_parameter(
            self._initial,
            (size, shapes[hidden][0]),
            "weight",
            lambda shape: self.init_scale * torch.randn(shape),
        )
        self._initial = None

    def energy(self, stats: dict[str, Tensor]) -> Tensor:
        return -((_total(stats, self.inputs) @ self.weight) * stats[self.blocks[0]]).sum(-1)

    def natural(self, target: str, stats: dict[str, Tensor]) -> Tensor:
        x, w = self.natural_product(target, stats)
        return x @ w

    def natural_product(self, target: str, stats: dict[str, Tensor], matmul=torch.mm, mul=None):
        if target == self.blocks[0]:
            return _total(stats, self.inputs), self.weight
        return stats[self.blocks[0]], self.weight.T

    def offset(self, target: str, stats: dict[str, Tensor]) -> Tensor:
        if target == self.blocks[0] or len(self.inputs) == 1:
            return stats[target].new_zeros(())
        return super().offset(target, stats)


@register
class SharedBias(Factor):
    """E(c_1, ..., c_m) = -b . sum_i t(c_i): one bias b for each of the blocks (all of one
    shape). With one block it is ``Bias``. ``bias`` gives b (default zero)."""

    def __init__(self, *blocks: str, bias=None, name: str | None = None):
        _check_distinct(blocks)
        super().__init__(*blocks, name=name)
        self._initial = self.initial(bias, "bias")
        self.bias: nn.Parameter | None = None

    def bind(self, shapes: dict[str, tuple[int, ...]]) -> None:
        shape = _same_shapes(self, self.blocks, shapes)
        self.bias = self.make_parameter(self._initial, shape, "bias", torch.zeros)
        self._initial = None

    def interacts(self, a: str, b: str) -> bool:
        """A sum of one term per block: no two blocks interact."""
        return False

    def energy(self, stats: dict[str, Tensor]) -> Tensor:
        return -(_total(stats, self.blocks) @ self.bias)

    def natural(self, target: str, stats: dict[str, Tensor]) -> Tensor:
        return self.bias.expand_as(stats[target])
