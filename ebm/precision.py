"""Reduced-precision matrix products for the hot loops, as an opt-in context.

Inside ``with ebm.reduced_precision():`` float32 matrix products use oneDNN's bf16 mode on the
CPU and TF32 on NVIDIA GPUs, keeping float32 accumulation and float32 results. How much the CPU
rounds depends on the CPU (with AMX units the inputs are rounded to bfloat16; docs/benchmarks.md
records the error measured on one machine). Tensors stay float32 and estimators still accumulate
log-weights in float64: what changes, where the products round, is that every product sees
weights rounded to 8 (bf16) or 10 (TF32) mantissa bits, so a run samples and anneals a model
whose weights are rounded that way. For binary states the states themselves are exact in bf16.
``estimators.ais`` evaluates the last increment of its log-weights, the model itself at
beta = 1, inside ``full_precision()``: the rounded models are then only its intermediate
distributions, which AIS may choose freely, so on discrete blocks its estimate is of the
full-precision log Z, with no rounding bias.
"""

from __future__ import annotations

import warnings
from collections.abc import Iterator
from contextlib import contextmanager

import torch

__all__ = ["full_precision", "reduced_precision"]


@contextmanager
def reduced_precision(cpu: str = "bf16", cuda: str = "tf32") -> Iterator[None]:
    """Within the block, float32 matmuls use ``cpu`` ("bf16" or "none") internal precision on
    the CPU and ``cuda`` ("tf32" or "none") on GPUs; the previous settings come back on exit.
    On a torch without ``torch.backends.mkldnn.matmul`` (before 2.9) the CPU setting is left
    alone, with a warning when bf16 was asked for."""
    if cpu not in ("bf16", "none") or cuda not in ("tf32", "none"):
        raise ValueError(
            f"cpu must be 'bf16' or 'none' and cuda 'tf32' or 'none', got {cpu}, {cuda}"
        )
    mkldnn = getattr(torch.backends.mkldnn, "matmul", None)  # torch >= 2.9
    if mkldnn is None and cpu != "none":
        warnings.warn(
            f"this torch ({torch.__version__}) has no torch.backends.mkldnn.matmul.fp32_precision "
            f"(torch >= 2.9): CPU products stay at full float32 precision",
            stacklevel=3,
        )
    old_cpu = None if mkldnn is None else mkldnn.fp32_precision
    old_tf32 = torch.backends.cuda.matmul.allow_tf32
    try:
        if mkldnn is not None:
            mkldnn.fp32_precision = cpu
        torch.backends.cuda.matmul.allow_tf32 = cuda == "tf32"
        yield
    finally:
        if mkldnn is not None:
            mkldnn.fp32_precision = old_cpu
        torch.backends.cuda.matmul.allow_tf32 = old_tf32


def full_precision():
    """Within the block, float32 matmuls run at full float32 precision on the CPU and on GPUs,
    whatever ``reduced_precision`` (or a global TF32 setting) chose outside it."""
    return reduced_precision(cpu="none", cuda="none")
