"""Rows of a sparse matrix against every chain's state, a numba kernel of the fast CPU backend.

``rows_product(t, crow, col, values)`` gives eta[b, c] = sum_{k in row c} values_k t[b, col_k] for
a contiguous CPU float tensor t (batch, n) and a CSR matrix (rows x n: ``crow`` its row offsets,
``col`` its column numbers, int64): the natural parameters of a colour class of units from the
sparse couplings of their block. It reads each chain's state once, row by row, with the chains
split over torch's OpenMP team (``ebm.backend.draws`` finds it), where torch's sparse-dense
products transpose the state first. It sums in the order of the CSR entries, in the state's
dtype.
"""

from __future__ import annotations

import torch
from torch import Tensor

from ebm.backend import draws

__all__ = ["available", "rows_product", "usable"]

_PARAMS = 8
#: below this many multiply-adds the kernel runs on the calling thread
PARALLEL_MIN_WORK = 1 << 16
_KERNELS: dict | None = None


def available() -> bool:
    """Whether the kernel is compiled (numba present; loaded from its cache after the first time)."""
    global _KERNELS
    if _KERNELS is None:
        if not draws.available():
            _KERNELS = {}
        else:
            import ebm.backend._numba_sparse as kernels

            _KERNELS = {
                torch.float32: (kernels.product_float32, kernels.product_float32.address),
                torch.float64: (kernels.product_float64, kernels.product_float64.address),
            }
    return bool(_KERNELS)


def usable(t: Tensor) -> bool:
    """A contiguous 2-D CPU float32/float64 tensor not needing grad, and the kernel compiled."""
    return (
        t.device.type == "cpu"
        and t.dim() == 2
        and t.dtype in (torch.float32, torch.float64)
        and t.is_contiguous()
        and not t.requires_grad
        and available()
    )


def rows_product(
    t: Tensor, crow: Tensor, col: Tensor, values: Tensor, out: Tensor | None = None
) -> Tensor:
    """eta (batch, rows) = t times the transpose of the CSR matrix (crow, col, values), row by row
    (see the module's docstring); written into ``out`` when given (contiguous, (batch, rows))."""
    if not usable(t):
        raise ValueError("rows_product needs a contiguous 2-D CPU float tensor and numba")
    import numpy as np

    rows = len(crow) - 1
    crow = crow.contiguous()
    col = col.contiguous()
    values = values.to(t.dtype).contiguous()
    if out is None:
        out = t.new_empty((t.shape[0], rows))
    params = np.array(
        [
            t.data_ptr(),
            out.data_ptr(),
            crow.data_ptr(),
            col.data_ptr(),
            values.data_ptr(),
            t.shape[0],
            t.shape[1],
            rows,
        ],
        dtype=np.int64,
    )
    run, entry = _KERNELS[t.dtype]
    threads = torch.get_num_threads()
    parallel = draws._LIB["parallel"]
    if parallel is not None and threads > 1 and t.shape[0] * len(col) >= PARALLEL_MIN_WORK:
        parallel(entry, params.ctypes.data, threads, 0)
    else:
        run.ctypes(params.ctypes.data)
    torch.autograd.graph.increment_version(out)
    return out
