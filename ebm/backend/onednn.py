"""Matrix products with the addition fused in, on oneDNN: the products of the fast CPU backend.

A block's natural parameters are sums of products and terms: eta = x W + b for an RBM's hidden
block, eta = x_1 W_1 + x_2 W_2^T + b for a DBM's middle layer. ``matmul_add(x, w, add)`` computes
one such step, x w + add, as a new tensor: on a float32 CPU tensor without gradients, as one
oneDNN inner product whose output pass adds ``add`` (a bias row, or a whole (batch, n) tensor
as a binary post-op), through ``torch.ops.mkldnn._linear_pointwise``, the op torch's inductor
compiles linear layers to; otherwise as ``torch.mm`` followed by the addition. The op is private
to torch: this module is the only place that calls it, and ``ebm.backend.cpu`` checks it against
a reference product before turning it on. oneDNN accumulates in float32 unless
``ebm.reduced_precision()`` lets it use bf16.
"""

from __future__ import annotations

import torch
from torch import Tensor

__all__ = ["available", "fusable", "matmul_add"]


def _onednn_op():
    """torch's oneDNN inner product with fused post-ops, or None where torch lacks it."""
    if not torch.backends.mkldnn.is_available():
        return None
    try:
        op = torch.ops.mkldnn._linear_pointwise
        op.binary  # noqa: B018 - the overload with a tensor post-op must exist too
    except (AttributeError, RuntimeError):
        return None
    return op


_LINEAR = _onednn_op()


def available() -> bool:
    """Whether this torch has the fused oneDNN inner product."""
    return _LINEAR is not None


def fusable(x: Tensor) -> bool:
    """Whether a product with left operand ``x`` can run fused: oneDNN present, ``x`` a 2-D
    float32 CPU tensor, no gradient being recorded."""
    return (
        _LINEAR is not None
        and x.device.type == "cpu"
        and x.dtype == torch.float32
        and x.dim() == 2
        and not torch.is_grad_enabled()
    )


def matmul_add(x: Tensor, w: Tensor, add: Tensor | None = None) -> Tensor:
    """x w + add, a new tensor, for x (batch, k), w (k, n) (a transposed view is fine) and
    ``add`` None, of shape (n,), or broadcastable to (batch, n) (a bias expanded over the batch
    is passed on as the bias itself). Fused where ``fusable(x)`` holds and the operands are
    float32 CPU tensors; else ``torch.mm`` then the addition. Either way the addition follows
    the whole product."""
    if fusable(x) and w.dtype == torch.float32:
        if add is None:
            return _LINEAR(x, w.T, None, "none", [], "")
        if add.dtype == torch.float32 and add.device.type == "cpu":
            bias = _as_bias(add, x.shape[0], w.shape[1])
            if bias is not None:
                return _LINEAR(x, w.T, bias, "none", [], "")
            if tuple(add.shape) == (x.shape[0], w.shape[1]):
                return _LINEAR.binary(x, add, w.T, None, "add")
    result = torch.mm(x, w)
    return result if add is None else result.add_(add)


def _as_bias(add: Tensor, batch: int, n: int) -> Tensor | None:
    """``add`` as one contiguous row of length n when it is a vector, or a vector expanded over
    the batch (stride 0 along it); else None."""
    if add.dim() == 1 and add.shape[0] == n and add.is_contiguous():
        return add
    if add.dim() == 2 and tuple(add.shape) == (batch, n) and add.stride(0) == 0:
        row = add[0]
        if row.is_contiguous():
            return row
    return None
