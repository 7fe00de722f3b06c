"""The one seam between the model maths and the machinery that makes the hot loops fast.

The model (``ebm.model``, ``ebm.units``, ``ebm.factors``) states its maths in plain public
torch. The loops that repeat it thousands of times (``samplers.sweep``, ``estimators.path``) ask
a backend for four operations:

- ``natural(model, block, stats, out=None, work=None)``: the block's natural parameters eta_block;
- ``sample_(units, natural, generator)``: a draw from the block's conditional;
- ``log_partition_(units, natural, out=None)``: A(natural), summed over the block;
- ``split_energy(model, state, sum_out, work=None)``: ``EnergyModel.split_energy``, unchecked.

``TorchBackend`` (``"torch"``) is the reference: the model's own methods. ``CPUBackend``
(``"cpu"``; ``"cpu-blas"`` without the fused products) computes the same quantities with fused
oneDNN products, draws binary blocks in place with a numba kernel and keeps its buffers from call
to call; it is the only code that touches private torch or OS interfaces.

``backend_for(tensor)`` chooses: the backend set by ``use_backend`` when there is one; for a CPU
tensor, the CPU backend with the pieces that ``check_cpu_backend`` verified on this machine
(once per process: the fused product present and within float32 rounding of a float64
reference product; the draw kernel present, running in torch's thread team where torch uses
several threads, and drawing a known probability within 6 standard errors); the reference
backend everywhere else (GPUs, or a CPU where nothing verified).
"""

from __future__ import annotations

import contextlib
import functools
import math
import warnings
from collections.abc import Iterator

import torch
from torch import Tensor

from ebm.backend.reference import TorchBackend

__all__ = [
    "TorchBackend",
    "backend_for",
    "check_cpu_backend",
    "get_backend",
    "use_backend",
]

_FORCED: list = []
_NAMES = ("torch", "cpu", "cpu-blas")


def get_backend(name: str):
    """The backend called ``name``: "torch", "cpu" or "cpu-blas"."""
    if name == "torch":
        return TorchBackend()
    if name in ("cpu", "cpu-blas"):
        from ebm.backend.cpu import CPUBackend

        return CPUBackend(products="onednn" if name == "cpu" else "blas")
    raise ValueError(f"unknown backend {name!r}; choose one of {_NAMES}")


@contextlib.contextmanager
def use_backend(backend) -> Iterator[None]:
    """Within the block every hot loop runs on ``backend`` (a name for ``get_backend`` or a
    backend object), whatever the tensors' device; the previous choice comes back on exit."""
    chosen = get_backend(backend) if isinstance(backend, str) else backend
    _FORCED.append(chosen)
    try:
        yield
    finally:
        _FORCED.pop()


def backend_for(like: Tensor | torch.device):
    """The backend for hot loops over tensors like ``like`` (a tensor or its device; see the
    module docstring)."""
    if _FORCED:
        return _FORCED[-1]
    device = like if isinstance(like, torch.device) else like.device
    if device.type == "cpu":
        cpu = _verified_cpu_backend()
        if cpu is not None:
            return cpu
    return _REFERENCE


_REFERENCE = TorchBackend()


@functools.cache
def _verified_cpu_backend():
    products, draws_ok, reasons = check_cpu_backend()
    if reasons:
        warnings.warn(
            "ebm.backend: parts of the fast CPU backend are off on this machine: "
            + "; ".join(reasons),
            RuntimeWarning,
            stacklevel=3,
        )
    if products == "blas" and not draws_ok:
        return None
    from ebm.backend.cpu import CPUBackend

    return CPUBackend(products=products, fast_draws=draws_ok)


def check_cpu_backend() -> tuple[str, bool, list[str]]:
    """Verify the fast CPU backend's pieces on this machine: (the product kernel to use,
    "onednn" or "blas"; whether the draw kernel may be used; the reasons for what is off)."""
    from ebm.backend import draws, onednn

    reasons = []
    products = "blas"
    if not onednn.available():
        reasons.append(f"torch {torch.__version__} has no fused oneDNN inner product")
    elif not _fused_product_matches():
        reasons.append("the fused oneDNN product disagrees with a float64 reference product")
    else:
        products = "onednn"
    draws_ok = False
    if not draws.available():
        reasons.append("numba is not installed: binary draws use torch.rand")
    elif torch.get_num_threads() > 1 and not draws.parallel():
        reasons.append("no OpenMP runtime of torch's found: binary draws use torch.rand")
    elif not _draws_match():
        reasons.append("the draw kernel's frequencies are off: binary draws use torch.rand")
    else:
        draws_ok = True
    return products, draws_ok, reasons


def _fused_product_matches() -> bool:
    """x w + b, x w + C and x w on the fused kernel within float32 rounding of float64."""
    from ebm.backend import onednn

    g = torch.Generator().manual_seed(0)
    x, w = torch.randn(37, 29, generator=g), torch.randn(29, 23, generator=g)
    bias, full = torch.randn(23, generator=g), torch.randn(37, 23, generator=g)
    exact = x.double() @ w.double()
    tol = 1e-4 * float(exact.abs().max())
    with torch.no_grad():
        cases = [
            (onednn.matmul_add(x, w), exact),
            (onednn.matmul_add(x, w, bias), exact + bias.double()),
            (onednn.matmul_add(x, w, bias.expand(37, 23)), exact + bias.double()),
            (onednn.matmul_add(x, w, full), exact + full.double()),
        ]
    return all(
        got.shape == want.shape and float((got.double() - want).abs().max()) <= tol
        for got, want in cases
    )


def _draws_match() -> bool:
    """2^16 draws at p = 0.3: every value 0 or 1 and the frequency within 6 standard errors."""
    from ebm.backend import draws

    n, p = 1 << 16, 0.3
    x = draws.binary_from_probs_(torch.full((n,), p), torch.Generator().manual_seed(0))
    binary = bool(((x == 0) | (x == 1)).all())
    return binary and abs(float(x.mean()) - p) <= 6 * math.sqrt(p * (1 - p) / n)
