"""ProjectedStudentT: the experts of an under-complete product of experts (Welling, Zemel & Hinton
2003): normalised 1-D Student-t densities on orthonormal projections of a Gaussian block."""

from __future__ import annotations

import math
from typing import Any

import torch
from torch import Tensor, distributions, nn

from ebm.factors.base import Factor, flat_size, register

__all__ = ["ProjectedStudentT", "orthonormal_rows", "orthonormality_error"]


def orthonormal_rows(raw: Tensor) -> Tensor:
    """The orthonormal factor W of the QR decomposition raw^T = W^T R with diag(R) >= 0.

    For any finite ``raw`` of shape (J, D), J <= D, the rows of W are orthonormal to rounding:
    Householder QR gives an orthonormal Q whatever the conditioning of ``raw``, even for a
    rank-deficient or zero matrix (where W is still orthonormal, though no longer a smooth function
    of ``raw``). Flipping the columns of Q to make diag(R) non-negative makes W unique and
    continuous wherever ``raw`` has full row rank, and W = raw when ``raw`` already has orthonormal
    rows. W is invariant to a positive rescaling of ``raw``.
    """
    q, r = torch.linalg.qr(raw.mT, mode="reduced")
    signs = torch.where(r.diagonal(dim1=-2, dim2=-1) < 0, -1.0, 1.0).to(q.dtype)
    return (q * signs.unsqueeze(-2)).mT


def orthonormality_error(w: Tensor) -> float:
    """max |W W^T - I| over the entries (nan when W is not finite), computed in float64."""
    w = w.detach().to(torch.float64)
    gram = w @ w.mT
    return float((gram - torch.eye(w.shape[-2], dtype=torch.float64, device=w.device)).abs().max())


@register
class ProjectedStudentT(Factor):
    """E(x) = sum_j [-log p_j(y_j) - y_j^2 / 2],  y = W t(x),

    over one Gaussian block x (unit scale), with W (J, D), J < D, kept with orthonormal rows: the
    learned parameter is an unconstrained matrix ``raw_projection`` V and W = ``orthonormal_rows(V)``
    (the Q of V^T's QR decomposition), orthonormal for every finite V, and p_j the Student-t
    density with ``df`` nu_j and scale sigma_j (both learned, as logs). With the Gaussian units'
    base energy |x|^2 / 2 the total is

        E(x) = sum_j -log p_j(w_j . x) + |x_perp|^2 / 2,

    x_perp the part of x outside the span of W: a normalised density up to the complement's
    Gaussian constant, log Z = (D - J) log(2 pi) / 2 exactly (``ebm.models.upoe_log_z``). The
    energy is not linear in x, so x is sampled by HMC (``samplers.BatchedHMC``) and annealed with HMC
    transitions. ``df`` (default 5) and ``scale`` (default 1) set the starting experts.

    V's scale carries no meaning (W is invariant to it), so ``fit``'s weight decay leaves it alone
    (``no_weight_decay``). Assigning ``projection = W`` sets V = W (W must be finite, of shape
    (J, D)); W is then used as given after re-orthonormalisation.
    """

    no_weight_decay = ("raw_projection",)

    def __init__(
        self, x: str, n_experts: int, df: float = 5.0, scale: float = 1.0, name: str | None = None
    ):
        super().__init__(x, name=name)
        if isinstance(n_experts, bool) or not isinstance(n_experts, int) or n_experts < 1:
            raise ValueError(f"n_experts must be an int >= 1, got {n_experts!r}")
        if not df > 0 or not scale > 0:
            raise ValueError("df and scale must be positive")
        self.n_experts = n_experts
        self.log_df = nn.Parameter(torch.full((n_experts,), math.log(df)))
        self.log_scale = nn.Parameter(torch.full((n_experts,), math.log(scale)))

    def bind(self, shapes: dict[str, tuple[int, ...]]) -> None:
        dim = flat_size(shapes[self.blocks[0]])
        if self.n_experts >= dim:
            raise ValueError(
                f"an under-complete product needs fewer experts ({self.n_experts}) than "
                f"dimensions ({dim})"
            )
        self.raw_projection = nn.Parameter(orthonormal_rows(torch.randn(self.n_experts, dim)))

    @property
    def projection(self) -> Tensor:
        """W = orthonormal_rows(raw_projection), shape (J, D), rows orthonormal."""
        return orthonormal_rows(self.raw_projection)

    @projection.setter
    def projection(self, value: Tensor) -> None:
        value = torch.as_tensor(value)
        if value.shape != self.raw_projection.shape or not bool(torch.isfinite(value).all()):
            raise ValueError(
                f"projection must be a finite tensor of shape {tuple(self.raw_projection.shape)}, "
                f"got shape {tuple(value.shape)}"
            )
        with torch.no_grad():
            self.raw_projection.copy_(value)

    def experts(self) -> distributions.StudentT:
        return distributions.StudentT(self.log_df.exp(), 0.0, self.log_scale.exp())

    def projections(self, stats: dict[str, Tensor]) -> Tensor:
        """y = W t(x): shape (batch, J)."""
        return stats[self.blocks[0]].flatten(1) @ self.projection.T

    def energy(self, stats: dict[str, Tensor]) -> Tensor:
        y = self.projections(stats)
        return (-self.experts().log_prob(y) - 0.5 * y**2).sum(-1)

    def config(self) -> dict[str, Any]:
        return {"blocks": list(self.blocks), "name": self.name, "n_experts": self.n_experts}

    @classmethod
    def from_config(cls, config: dict[str, Any]) -> ProjectedStudentT:
        (block,) = config["blocks"]
        return cls(block, config["n_experts"], name=config.get("name"))
