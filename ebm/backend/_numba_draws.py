"""The numba code of ``ebm.backend.draws``: SplitMix64 binary draws and the C callbacks a team member
runs. Every function is at module level with its constants as module globals, never a closure:
numba keys its on-disk cache on the bytecode and on the closure's cell contents, and a closure
over a dispatcher hashes differently in every process, so closures were recompiled by every new
interpreter. Import this module only after ``ebm.backend.draws`` has registered the two OpenMP query
symbols with llvmlite (the callbacks link against them when compiled or loaded from the cache).
"""

from __future__ import annotations

import numba
import numpy as np
from numba import types
from numba.extending import intrinsic

#: must equal ebm.backend.draws' constants of the same names
PAIRS = 2048
PARAMS = 5
SYMBOL_PREFIX = "ebm_kernels_"

GAMMA = np.uint64(0x9E3779B97F4A7C15)
M1 = np.uint64(0xBF58476D1CE4E5B9)
M2 = np.uint64(0x94D049BB133111EB)
S30, S27, S31 = np.uint64(30), np.uint64(27), np.uint64(31)
S40, S8, MASK = np.uint64(40), np.uint64(8), np.uint64(0xFFFFFF)

thread_num = types.ExternalFunction(SYMBOL_PREFIX + "omp_get_thread_num", types.int32())
num_threads = types.ExternalFunction(SYMBOL_PREFIX + "omp_get_num_threads", types.int32())


@numba.njit(inline="always", fastmath=True)
def splitmix(seed, k):
    """Output k of the generator seeded with ``seed``."""
    z = seed + np.uint64(k + 1) * GAMMA
    z = (z ^ (z >> S30)) * M1
    z = (z ^ (z >> S27)) * M2
    return z ^ (z >> S31)


@numba.njit(fastmath=True, nogil=True, cache=True)
def kernel(lower, upper, seed, k0, low, high):
    """lower[j] and upper[j] (same length) from output k0 + j. A loop from 0 over two slices
    vectorises; one from k0 over offsets into the whole array did not."""
    scale = lower.dtype.type(1.0 / 16777216.0)
    for j in range(lower.size):
        z = splitmix(seed, k0 + j)
        u0 = lower.dtype.type(np.int32(z >> S40)) * scale
        u1 = lower.dtype.type(np.int32((z >> S8) & MASK)) * scale
        lower[j] = high if u0 < lower[j] else low
        upper[j] = high if u1 < upper[j] else low


@numba.njit(fastmath=True, nogil=True, cache=True)
def last(flat, seed, m, low, high):
    """The last element of an odd-sized tensor, from bits 40..63 of output m."""
    z = splitmix(seed, m)
    u = flat.dtype.type(np.int32(z >> S40)) * flat.dtype.type(1.0 / 16777216.0)
    flat[-1] = high if u < flat[-1] else low


@intrinsic
def pointer(typingctx, address, like):
    """An int64 address as a pointer to ``like``'s type (a float32 or float64 scalar)."""
    sig = types.CPointer(like)(types.int64, like)

    def codegen(context, builder, signature, args):
        return builder.inttoptr(args[0], context.get_value_type(signature.return_type))

    return sig, codegen


@numba.njit(nogil=True, cache=True)
def member_draws(params, zero):
    """A team member's share of the call described by params = (address, n, seed, low, high)
    (int64s and float64s in one buffer): its contiguous run of whole blocks, and for the last
    member the rest after the last whole block. ``zero`` gives the tensor's dtype."""
    ints = numba.carray(params, (PARAMS,), np.int64)
    floats = numba.carray(params, (PARAMS,), np.float64)
    n, seed = ints[1], np.uint64(ints[2])
    flat = numba.carray(pointer(ints[0], zero), (n,))
    low, high = flat.dtype.type(floats[3]), flat.dtype.type(floats[4])
    blocks = n // (2 * PAIRS)
    t, team = thread_num(), num_threads()
    for q in range(blocks * t // team, blocks * (t + 1) // team):
        o = 2 * PAIRS * q
        kernel(flat[o : o + PAIRS], flat[o + PAIRS : o + 2 * PAIRS], seed, PAIRS * q, low, high)
    if t == team - 1:  # the rest: pairs (j, h + j) within it, an odd last element alone
        rest = flat[2 * PAIRS * blocks :]
        h = rest.size // 2
        kernel(rest[:h], rest[h : 2 * h], seed, PAIRS * blocks, low, high)
        if rest.size % 2:
            last(rest, seed, PAIRS * blocks + h, low, high)


@numba.cfunc(types.void(types.voidptr), nogil=True, cache=True)
def member_float32(params):
    """The C callback of a team member on a float32 tensor."""
    member_draws(params, np.float32(0))


@numba.cfunc(types.void(types.voidptr), nogil=True, cache=True)
def member_float64(params):
    """The C callback of a team member on a float64 tensor."""
    member_draws(params, np.float64(0))
