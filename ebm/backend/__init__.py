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

from ebm.backend.cpu import CPUBackend
from ebm.backend.reference import TorchBackend
from ebm.backend.select import (
    backend_for,
    check_cpu_backend,
    get_backend,
    use_backend,
)

__all__ = [
    "CPUBackend",
    "TorchBackend",
    "backend_for",
    "check_cpu_backend",
    "get_backend",
    "use_backend",
]
