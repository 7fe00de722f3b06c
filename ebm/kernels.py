"""A fused, parallel CPU kernel for the hot loop of block Gibbs: binary draws from probabilities.

On the CPU, torch draws uniforms with one Mersenne Twister per generator, serially (about 2.5 ns a
draw on this project's 2-core machine, whatever the thread count), and a draw then takes three
more passes over memory (the uniforms, the comparison, the cast). For a 784 x 500 RBM that is as
long as the matrix products. This kernel fuses the uniform and the comparison into one pass, in
parallel, with a counter-based generator: the uniform of element i is a function of (seed, i)
only, so the draws do not depend on the number of threads.

The generator is SplitMix64 (Steele, Lea & Flood 2014; the generator of Java's SplittableRandom,
which passes BigCrush): state_i = seed + (i + 1) * 0x9E3779B97F4A7C15, output = its 64-bit finaliser.
Each 64-bit output gives two uniforms with 24 random bits each (bits 40..63 and 8..31), the
resolution of torch.rand's float32 uniforms, so P(draw = high) = ceil(p 2^24) / 2^24, within 2^-24
of p. The seed of every call is a fresh 62-bit integer drawn from the caller's torch.Generator, so
a seeded generator reproduces the draws exactly.

numba compiles the kernel on first use (cached on disk); without numba, ``available()`` is False
and the unit types keep torch's own sampling.
"""

from __future__ import annotations

import torch
from torch import Tensor

__all__ = ["available", "binary_from_probs_"]

_KERNEL = None
_TRIED = False


def _build():
    import os

    import numba
    import numpy as np

    # numba's OpenMP layer keeps its threads spinning between parallel regions, which slows
    # torch's own threads down by 2-3x on a 2-core machine; its work-queue layer does not spin
    if "NUMBA_THREADING_LAYER" not in os.environ:
        numba.config.THREADING_LAYER = "workqueue"

    gamma = np.uint64(0x9E3779B97F4A7C15)
    m1 = np.uint64(0xBF58476D1CE4E5B9)
    m2 = np.uint64(0x94D049BB133111EB)
    s30, s27, s31 = np.uint64(30), np.uint64(27), np.uint64(31)
    s40, s8, mask = np.uint64(40), np.uint64(8), np.uint64(0xFFFFFF)

    @numba.njit(parallel=True, fastmath=False, cache=True, nogil=True)
    def kernel(p, seed, low, high):  # p: 1-D, overwritten with the draws
        n = p.size
        pairs = (n + 1) // 2
        chunk = 8192
        chunks = (pairs + chunk - 1) // chunk
        scale = 1.0 / 16777216.0
        for c in numba.prange(chunks):
            start = c * chunk
            stop = min(pairs, start + chunk)
            for k in range(start, stop):
                z = seed + np.uint64(k + 1) * gamma
                z = (z ^ (z >> s30)) * m1
                z = (z ^ (z >> s27)) * m2
                z = z ^ (z >> s31)
                i = 2 * k
                u = np.float64(z >> s40) * scale
                p[i] = high if u < p[i] else low
                if i + 1 < n:
                    u = np.float64((z >> s8) & mask) * scale
                    p[i + 1] = high if u < p[i + 1] else low

    return kernel


def available() -> bool:
    """Whether the numba kernel can be used (numba importable and compiled)."""
    global _KERNEL, _TRIED
    if not _TRIED:
        _TRIED = True
        try:
            _KERNEL = _build()
        except ImportError:  # pragma: no cover - numba is a dependency, absent only by choice
            _KERNEL = None
    return _KERNEL is not None


def usable(t: Tensor) -> bool:
    """True when ``t`` can go through the kernel: a CPU float32/float64 tensor, numba present."""
    return t.device.type == "cpu" and t.dtype in (torch.float32, torch.float64) and available()


def binary_from_probs_(
    probs: Tensor, generator: torch.Generator | None, low: float = 0.0, high: float = 1.0
) -> Tensor:
    """Overwrite ``probs`` (a CPU float tensor of probabilities, not needing grad) with independent
    draws: ``high`` with probability p, else ``low``; returns it. The seed comes from one
    ``torch.randint`` on ``generator`` (the default generator when None)."""
    import numba
    import numpy as np

    if not probs.is_contiguous():
        raise ValueError("binary_from_probs_ needs a contiguous tensor")
    seed = int(torch.randint(0, 2**62, (1,), generator=generator))
    threads = max(1, min(torch.get_num_threads(), numba.config.NUMBA_NUM_THREADS))
    if numba.get_num_threads() != threads:
        numba.set_num_threads(threads)
    flat = probs.detach().numpy().reshape(-1)
    _KERNEL(flat, np.uint64(seed), flat.dtype.type(low), flat.dtype.type(high))
    return probs
