"""The matrix products of the natural parameters, on the fastest kernel torch offers for them.

A block's natural parameters are sums of products and terms: eta = x W + b for an RBM's hidden
block, eta = x_1 W_1 + x_2 W_2^T + b for a DBM's middle layer. ``matmul_add(x, w, add)``
computes one such step, x w + add, as a tensor of its own.

On the CPU, in float32 and without gradients, it runs as one oneDNN inner product with the
addition fused into the product's output pass (``torch.ops.mkldnn._linear_pointwise``: the
bias, or a whole (batch, n) tensor as a binary post-op), the kernel torch's inductor compiles
linear layers to. torch's own ``torch.mm`` calls the BLAS it was built with (MKL), whose float32
kernels run at less than half of oneDNN's rate on CPUs that MKL does not tune for: on an AMD
EPYC (Zen 5) a 1,000 x 784 by 784 x 500 product took 3.8 ms with ``torch.mm`` and 1.7 ms with
oneDNN, at the same float32 precision (both within 5e-6 of float64 on Gaussian inputs). oneDNN
computes in float32 with float32 accumulation (its strict math mode) unless
``ebm.reduced_precision()`` lets it use bf16 (torch passes that setting on).

Everywhere else (GPUs, float64, a product that records gradients, torch without oneDNN, or
inside ``cpu_products("blas")``) it is ``torch.mm`` followed by an in-place addition, which a
caller can also point at a tensor it keeps (``out=``). The two kernels round differently (their
sums run in different orders): a model's ``natural`` and ``write_natural_`` choose the same one
for the same tensors, so they agree bit for bit, and a seeded run repeats on the same machine.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import torch
from torch import Tensor

__all__ = ["cpu_products", "fused_cpu_product", "matmul_add"]

_CPU_KINDS = ("onednn", "blas")
_setting = {"cpu": "onednn"}


def _onednn_op():
    """torch's oneDNN inner product with fused post-ops, or None where torch was built without
    oneDNN."""
    if not torch.backends.mkldnn.is_available():
        return None
    try:
        return torch.ops.mkldnn._linear_pointwise
    except (AttributeError, RuntimeError):
        return None


_LINEAR = _onednn_op()


@contextlib.contextmanager
def cpu_products(kind: str) -> Iterator[None]:
    """Within the block, float32 CPU products of natural parameters run on ``kind``: "onednn"
    (the default: a fused oneDNN inner product) or "blas" (``torch.mm`` into a given tensor,
    then the additions in place). The previous choice comes back on exit."""
    if kind not in _CPU_KINDS:
        raise ValueError(f"kind must be one of {_CPU_KINDS}, got {kind!r}")
    old = _setting["cpu"]
    _setting["cpu"] = kind
    try:
        yield
    finally:
        _setting["cpu"] = old


def fused_cpu_product(x: Tensor) -> bool:
    """Whether ``matmul_add`` on operands like ``x`` (and float32 weights) runs as a fused oneDNN
    product, which makes its own output tensor: a float32 CPU tensor, no gradient being
    recorded, oneDNN present and chosen (``cpu_products``)."""
    return (
        _LINEAR is not None
        and _setting["cpu"] == "onednn"
        and x.device.type == "cpu"
        and x.dtype == torch.float32
        and not torch.is_grad_enabled()
    )


def matmul_add(x: Tensor, w: Tensor, add: Tensor | None = None, out: Tensor | None = None):
    """x w + add, for x of shape (batch, k), w of shape (k, n) (a transposed view is fine) and
    ``add`` None, of shape (n,), or broadcastable to (batch, n) (a bias expanded over the batch
    is passed as the bias itself).

    As one fused oneDNN product where ``fused_cpu_product(x)`` holds and the operands are float32
    (a new tensor: ``out`` is then not used); otherwise ``torch.mm(x, w, out=out)`` then
    ``add_(add)`` in place, written into ``out`` when given. Returns the tensor holding the
    result. Either way the addition comes after the whole product, so x w + b + c and the
    same with b, c exchanged agree up to float rounding only."""
    if fused_cpu_product(x) and w.dtype == torch.float32 and x.dim() == 2:
        if add is None:
            return _LINEAR(x, w.T, None, "none", [], "")
        if add.dtype == torch.float32 and add.device.type == "cpu":
            bias = _as_bias(add, x.shape[0], w.shape[1])
            if bias is not None:
                return _LINEAR(x, w.T, bias, "none", [], "")
            if tuple(add.shape) == (x.shape[0], w.shape[1]):
                return _LINEAR.binary(x, add, w.T, None, "add")
    result = torch.mm(x, w) if out is None else torch.mm(x, w, out=out)
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
