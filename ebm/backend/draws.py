"""Binary draws from probabilities in one pass, a numba kernel of the fast CPU backend.

``binary_from_probs_(p, generator, low, high)`` overwrites a CPU float tensor of probabilities with
independent draws: ``high`` with probability p_i, else ``low``. It fuses the uniform and the
comparison into one pass over memory with a counter-based generator, so the uniform of element i
is a function of the seed, of i and (in the tensor's last partial block) of its size: the draws do
not depend on how the work is split, nor on the number of threads.

The generator is SplitMix64 (Steele, Lea & Flood 2014; the generator of Java's SplittableRandom,
which passes BigCrush): state_k = seed + (k + 1) * 0x9E3779B97F4A7C15, output k = its 64-bit
finaliser. Each output gives two uniforms with 24 random bits each (bits 40..63 and 8..31), to two
elements of one block: the flattened tensor is cut into blocks of 2L elements (L = 2048), and
elements 2Lq + j and 2Lq + L + j take output Lq + j. In the rest r < 2L elements after the last
whole block, elements j and floor(r / 2) + j take one output; an odd last element takes bits
40..63 of the next. 24 bits is the resolution of torch.rand's float32 uniforms:
P(draw = high) = ceil(p 2^24) / 2^24, within 2^-24 of p. The seed of every call is a fresh
62-bit integer drawn from the caller's torch.Generator, so a seeded generator reproduces the draws
exactly.

Threads: with at least ``PARALLEL_MIN_ELEMENTS`` elements and more than one torch thread, the
kernel runs in the thread team of the OpenMP runtime torch loaded (``GOMP_parallel``, found among
the process's shared libraries on Linux), each member drawing a contiguous run of whole blocks;
elsewhere it runs on the calling thread (``parallel()`` says which). numba compiles the kernel
on first use and caches it on disk; without numba ``available()`` is False.
"""

from __future__ import annotations

import ctypes
import os
import threading

import torch
from torch import Tensor

__all__ = [
    "PARALLEL_MIN_ELEMENTS",
    "available",
    "binary_from_probs_",
    "parallel",
    "usable",
]

#: below this many elements the kernel runs on the calling thread (a team start costs more)
PARALLEL_MIN_ELEMENTS = 1 << 15

#: pairs of elements per block: block q holds elements [2Lq, 2Lq + 2L), element 2Lq + j and
#: 2Lq + L + j taking the two uniforms of output Lq + j (16 KiB of float32s a block)
_PAIRS = 2048
_PARAMS = 5  # the parameter block of a launch: address, n, seed (int64s), low, high (float64s)

_LIB: dict | None = None
_TRIED = False
_OMP_QUERIES = ("omp_get_thread_num", "omp_get_num_threads")
_SYMBOL_PREFIX = "ebm_kernels_"
_PER_THREAD = threading.local()  # each calling thread's parameter block and seed tensor


def _openmp_runtime() -> tuple[ctypes.CDLL, str] | None:
    """The OpenMP runtime torch loaded, as (a ctypes library with GOMP_parallel, its path), or
    None: the one in torch's package when there is one, else the only one in the process. Other
    packages bring their own copies (scikit-learn does); each copy has its own pool of threads,
    and a pool other than torch's competes with torch's spinning workers."""
    try:
        with open("/proc/self/maps") as f:
            paths = {line.split()[-1] for line in f if ".so" in line}
    except OSError:
        return None
    runtimes = sorted(
        p for p in paths if os.path.basename(p).startswith(("libgomp", "libiomp5", "libomp"))
    )
    own = [p for p in runtimes if p.startswith(os.path.dirname(torch.__file__) + os.sep)]
    chosen = own or (runtimes if len(runtimes) == 1 else [])
    for path in chosen:
        try:
            lib = ctypes.CDLL(path)
            lib.GOMP_parallel  # noqa: B018 - the entry point must exist
        except (OSError, AttributeError):
            continue
        return lib, path
    return None


def _build() -> dict:
    import llvmlite.binding
    import numba
    from numba import types

    # the team member's number and the team's size, as external symbols (so that the callbacks
    # can be cached on disk): from the OpenMP runtime torch loaded, else a team of one
    found = _openmp_runtime()
    omp, runtime = found if found is not None else (None, None)
    keep = []
    if omp is not None:
        addresses = [ctypes.cast(getattr(omp, f), ctypes.c_void_p).value for f in _OMP_QUERIES]
        parallel = omp.GOMP_parallel
        parallel.restype = None
        parallel.argtypes = [ctypes.c_void_p, ctypes.c_void_p, ctypes.c_uint, ctypes.c_uint]
    else:
        parallel = None
        keep = [numba.cfunc(types.int32())(lambda: 0), numba.cfunc(types.int32())(lambda: 1)]
        addresses = [f.address for f in keep]
    for name, address in zip(_OMP_QUERIES, addresses, strict=True):
        llvmlite.binding.add_symbol(_SYMBOL_PREFIX + name, address)
    import ebm.backend._numba_draws as _numba_draws  # compiled, or loaded from the cache, now

    members = {
        torch.float32: _numba_draws.member_float32,
        torch.float64: _numba_draws.member_float64,
    }
    return {
        "members": {dt: (run, run.address) for dt, run in members.items()},
        "parallel": parallel,
        "runtime": runtime,
        "keep": keep,
    }


def available() -> bool:
    """Whether the numba kernel can be used (numba importable and compiled)."""
    global _LIB, _TRIED
    if not _TRIED:
        _TRIED = True
        try:
            _LIB = _build()
        except ImportError:  # pragma: no cover - numba is a dependency, absent only by choice
            _LIB = None
    return _LIB is not None


def parallel() -> bool:
    """Whether large draws run in torch's OpenMP thread team (else on the calling thread)."""
    return available() and _LIB["parallel"] is not None


def usable(t: Tensor) -> bool:
    """True when ``t`` can go through the kernel: a CPU float32/float64 tensor, numba present."""
    return t.device.type == "cpu" and t.dtype in (torch.float32, torch.float64) and available()


def _thread_state():
    """This thread's parameter block (a numpy buffer, its address, an int64 view) and the
    one-element tensor its seeds are drawn into: made once, so a launch allocates nothing."""
    state = getattr(_PER_THREAD, "state", None)
    if state is None:
        import numpy as np

        params = np.zeros(_PARAMS, dtype=np.float64)
        state = _PER_THREAD.state = (
            params,
            params.ctypes.data,
            params.view(np.int64),
            torch.empty(1, dtype=torch.int64),
        )
    return state


def binary_from_probs_(
    probs: Tensor, generator: torch.Generator | None, low: float = 0.0, high: float = 1.0
) -> Tensor:
    """Overwrite ``probs`` (a CPU float tensor of probabilities, not needing grad) with independent
    draws: ``high`` with probability p, else ``low``; returns it. The seed comes from one
    ``random_`` on ``generator`` (the default generator when None)."""
    if not probs.is_contiguous():
        raise ValueError("binary_from_probs_ needs a contiguous tensor")
    if not usable(probs):
        raise RuntimeError(
            "binary_from_probs_ needs numba and a CPU float32/float64 tensor, got "
            f"{probs.dtype} on {probs.device}"
        )
    params, address, ints, seed = _thread_state()
    seed.random_(0, 2**62, generator=generator)
    n = probs.numel()
    ints[0], ints[1], ints[2] = probs.data_ptr(), n, int(seed)
    params[3], params[4] = low, high
    run, entry = _LIB["members"][probs.dtype]
    threads = torch.get_num_threads()
    if _LIB["parallel"] is not None and threads > 1 and n >= PARALLEL_MIN_ELEMENTS:
        _LIB["parallel"](entry, address, threads, 0)
    else:
        run.ctypes(address)
    # numba wrote through a raw pointer, which torch does not see: bump the version counter so
    # that caches keyed on it (``Factored3Way``'s factor activities) know the tensor changed
    torch.autograd.graph.increment_version(probs)
    return probs
