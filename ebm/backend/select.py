"""How ``ebm.backend`` chooses a backend: ``use_backend``, ``backend_for`` and the checks of
the fast CPU backend (see the package docstring)."""

from __future__ import annotations

import contextlib
import functools
import math
import warnings
from collections.abc import Iterator

import torch
from torch import Tensor

import ebm.backend.draws as draws
import ebm.backend.onednn as onednn
import ebm.backend.sparse as sparse
from ebm.backend.cpu import CPUBackend
from ebm.backend.reference import TorchBackend

__all__ = [
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
    sparse_ok = bool(_passes(_sparse_rows_match, [], "the sparse row kernel"))
    return CPUBackend(products=products, fast_draws=draws_ok, sparse_rows=sparse_ok)


def check_cpu_backend() -> tuple[str, bool, list[str]]:
    """Verify the fast CPU backend's pieces on this machine: (the product kernel to use,
    "onednn" or "blas"; whether the draw kernel may be used; the reasons for what is off)."""
    reasons = []
    products = "blas"
    if not onednn.available():
        reasons.append(f"torch {torch.__version__} has no fused oneDNN inner product")
    else:
        ok = _passes(_fused_product_matches, reasons, "the fused oneDNN product")
        if ok is False:
            reasons.append("the fused oneDNN product disagrees with a float64 reference product")
        products = "onednn" if ok else "blas"
    draws_ok = False
    if not draws.available():
        reasons.append("numba is not installed: binary draws use torch.rand")
    elif torch.get_num_threads() > 1 and not draws.parallel():
        reasons.append("no OpenMP runtime of torch's found: binary draws use torch.rand")
    else:
        ok = _passes(_draws_match, reasons, "the draw kernel")
        if ok is False:
            reasons.append("the draw kernel's frequencies are off: binary draws use torch.rand")
        draws_ok = bool(ok)
    return products, draws_ok, reasons


def _passes(check, reasons: list[str], what: str) -> bool | None:
    """``check()``; None when it raises (an op whose schema changed, an interface a torch
    lacks), the failure then added to ``reasons``."""
    try:
        return bool(check())
    except Exception as err:  # noqa: BLE001 - any failure turns the piece off
        reasons.append(f"{what} failed its check ({type(err).__name__}: {err})")
        return None


def _fused_product_matches() -> bool:
    """x w + b, x w + C and x w on the fused kernel within float32 rounding of float64."""
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


def _sparse_rows_match() -> bool:
    """The sparse row kernel against a float64 dense product, on a random CSR matrix, in float32
    and float64, on one thread's share and on the team's."""
    g = torch.Generator().manual_seed(0)
    dense = torch.randn(23, 41, generator=g, dtype=torch.float64)
    dense[torch.rand(23, 41, generator=g) < 0.8] = 0.0
    with warnings.catch_warnings():  # torch's note that CSR support is in beta
        warnings.simplefilter("ignore", UserWarning)
        csr = dense.to_sparse_csr()
    crow, col, values = csr.crow_indices(), csr.col_indices(), csr.values()
    for batch in (3, 5000):
        t = torch.randn(batch, 41, generator=g, dtype=torch.float64)
        exact = t @ dense.T
        for dtype, tol in ((torch.float32, 1e-4), (torch.float64, 1e-10)):
            got = sparse.rows_product(t.to(dtype), crow, col, values)
            if float((got.double() - exact).abs().max()) > tol * (1 + float(exact.abs().max())):
                return False
    return True


def _draws_match() -> bool:
    """2^16 draws at p = 0.3: every value 0 or 1 and the frequency within 6 standard errors."""
    n, p = 1 << 16, 0.3
    x = draws.binary_from_probs_(torch.full((n,), p), torch.Generator().manual_seed(0))
    binary = bool(((x == 0) | (x == 1)).all())
    return binary and abs(float(x.mean()) - p) <= 6 * math.sqrt(p * (1 - p) / n)
