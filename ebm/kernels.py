"""A fused CPU kernel for the hot loop of block Gibbs: binary draws from probabilities.

On the CPU, torch draws uniforms with one Mersenne Twister per generator, serially (about 2.5 ns a
draw on this project's 2-core machine, whatever the thread count), and a draw then takes three
more passes over memory (the uniforms, the comparison, the cast). For a 784 x 500 RBM that is as
long as the matrix products. This kernel fuses the uniform and the comparison into one pass
with a counter-based generator: the uniform of element i is a function of (seed, i) only, so
the draws do not depend on how the work is split, nor on the number of threads.

The generator is SplitMix64 (Steele, Lea & Flood 2014; the generator of Java's SplittableRandom,
which passes BigCrush): state_i = seed + (i + 1) * 0x9E3779B97F4A7C15, output = its 64-bit finaliser.
Output k (k < m = floor(n / 2), for a flattened tensor of n elements) gives two uniforms with 24
random bits each, bits 40..63 for element k and bits 8..31 for element m + k; on an odd n the last
element takes bits 40..63 of output m. 24 bits is the resolution of torch.rand's float32 uniforms:
P(draw = high) = ceil(p 2^24) / 2^24, within 2^-24 of p. The seed of every call is a fresh
62-bit integer drawn from the caller's torch.Generator, so a seeded generator reproduces the draws
exactly.

numba compiles the kernel on first use (cached on disk). It runs on the calling thread alone.
Split over two Python threads (it releases the GIL) it was faster in isolation, but inside a
sweep it was slower at every size measured (256 thousand to 20 million draws, right after a
2-thread matrix product: 283 against 387 us, 12.8 against 13.1 ms): torch's OpenMP workers
spin on the other core after each product, and a second thread there competes with them; on
the calling thread the draw runs beside them. numba's own threading layers were no better: its
OpenMP layer keeps a second pool of threads spinning (slowing torch 2-3x on 2 cores) and its
work-queue layer stopped the loop from vectorising (3x slower here). Without numba,
``available()`` is False and the unit types keep torch's own sampling.
"""

from __future__ import annotations

import torch
from torch import Tensor

__all__ = ["available", "binary_from_probs_"]

_KERNEL = None
_TRIED = False


def _build():
    import numba
    import numpy as np

    gamma = np.uint64(0x9E3779B97F4A7C15)
    m1 = np.uint64(0xBF58476D1CE4E5B9)
    m2 = np.uint64(0x94D049BB133111EB)
    s30, s27, s31 = np.uint64(30), np.uint64(27), np.uint64(31)
    s40, s8, mask = np.uint64(40), np.uint64(8), np.uint64(0xFFFFFF)

    @numba.njit(fastmath=True, cache=True, nogil=True)
    def kernel(lower, upper, seed, k0, low, high):
        """lower[j] and upper[j] (same length) from output k0 + j. A loop from 0 over two
        slices vectorises; one from k0 over offsets into the whole array did not (2.5x slower)."""
        scale = lower.dtype.type(1.0 / 16777216.0)
        for j in range(lower.size):
            z = seed + np.uint64(k0 + j + 1) * gamma
            z = (z ^ (z >> s30)) * m1
            z = (z ^ (z >> s27)) * m2
            z = z ^ (z >> s31)
            u0 = lower.dtype.type(np.int32(z >> s40)) * scale
            u1 = lower.dtype.type(np.int32((z >> s8) & mask)) * scale
            lower[j] = high if u0 < lower[j] else low
            upper[j] = high if u1 < upper[j] else low

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
    import numpy as np

    if not probs.is_contiguous():
        raise ValueError("binary_from_probs_ needs a contiguous tensor")
    if not available():
        raise RuntimeError("the numba kernel is not available (is numba installed?)")
    seed = np.uint64(int(torch.randint(0, 2**62, (1,), generator=generator)))
    flat = probs.detach().numpy().reshape(-1)
    lo, hi = flat.dtype.type(low), flat.dtype.type(high)
    half = flat.size // 2
    if flat.size % 2:  # the last element takes the upper bits of output ``half``
        _KERNEL(flat[-1:], flat[:0], seed, half, lo, hi)
    _KERNEL(flat[:half], flat[half : 2 * half], seed, 0, lo, hi)
    # numba wrote through a numpy view, which torch does not see: bump the version counter so
    # that caches keyed on it (``Factored3Way``'s factor activities) know the tensor changed
    torch.autograd.graph.increment_version(probs)
    return probs
