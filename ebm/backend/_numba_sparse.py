"""The numba code of ``ebm.backend.sparse``: a sparse matrix's rows against every chain's state,
eta[b, c] = sum_{k in row c} value_k t[b, col_k], as the C callback a team member runs (its share
of the chains). Module-level functions only (see ``ebm.backend._numba_draws`` on numba's cache);
import after ``ebm.backend.draws`` has registered the OpenMP query symbols.
"""

from __future__ import annotations

import numba
import numpy as np
from numba import types

from ebm.backend._numba_draws import num_threads, pointer, thread_num

#: must equal ebm.backend.sparse's constant of the same name: t, out, crow, col, values (addresses),
#: batch, n (t's row length), rows (out's row length)
PARAMS = 8


@numba.njit(fastmath=True, nogil=True, cache=True)
def rows_product(t, out, crow, col, values, b0, b1, n, rows):
    """out[b, c] = sum_k values[k] t[b, col[k]] over k in crow[c] .. crow[c + 1], chains b0..b1."""
    for b in range(b0, b1):
        base = b * n
        o = b * rows
        for c in range(rows):
            s = values.dtype.type(0.0)
            for k in range(crow[c], crow[c + 1]):
                s += values[k] * t[base + col[k]]
            out[o + c] = s


@numba.njit(nogil=True, cache=True)
def member_product(params, zero):
    """A team member's share (a contiguous run of chains) of the call params describes."""
    ints = numba.carray(params, (PARAMS,), np.int64)
    batch, n, rows = ints[5], ints[6], ints[7]
    t = numba.carray(pointer(ints[0], zero), (batch * n,))
    out = numba.carray(pointer(ints[1], zero), (batch * rows,))
    crow = numba.carray(pointer(ints[2], np.int64(0)), (rows + 1,))
    nnz = crow[rows]
    col = numba.carray(pointer(ints[3], np.int64(0)), (nnz,))
    values = numba.carray(pointer(ints[4], zero), (nnz,))
    member, team = thread_num(), num_threads()
    rows_product(
        t, out, crow, col, values, batch * member // team, batch * (member + 1) // team, n, rows
    )


@numba.cfunc(types.void(types.voidptr), nogil=True, cache=True)
def product_float32(params):
    """The C callback of a team member on float32 tensors."""
    member_product(params, np.float32(0))


@numba.cfunc(types.void(types.voidptr), nogil=True, cache=True)
def product_float64(params):
    """The C callback of a team member on float64 tensors."""
    member_product(params, np.float64(0))
