"""ProjectedStudentT: the experts of an under-complete product of experts (Welling, Zemel & Hinton
2003): normalised 1-D Student-t densities on orthonormal projections of a Gaussian block."""

from __future__ import annotations

import math
from typing import Any

import torch
from torch import Tensor, distributions, nn
from torch.nn.utils import parametrizations

from ebm.factors.base import Factor, flat_size, register


@register
class ProjectedStudentT(Factor):
    """E(x) = sum_j [-log p_j(y_j) - y_j^2 / 2],  y = W t(x),

    over one Gaussian block x (unit scale), with W (J, D), J < D, kept with orthonormal rows by
    torch's orthogonal parametrisation, and p_j the Student-t density with ``df`` nu_j and scale
    sigma_j (both learned, as logs). With the Gaussian units' base energy |x|^2 / 2 the total is

        E(x) = sum_j -log p_j(w_j . x) + |x_perp|^2 / 2,

    x_perp the part of x outside the span of W: a normalised density up to the complement's
    Gaussian constant, log Z = (D - J) log(2 pi) / 2 exactly (``ebm.models.upoe_log_z``). The
    energy is not linear in x, so x is sampled by HMC (``samplers.BatchedHMC``) and annealed with HMC
    transitions. ``df`` (default 5) and ``scale`` (default 1) set the starting experts.
    """

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
        self.projection = nn.Parameter(torch.randn(self.n_experts, dim))
        parametrizations.orthogonal(self, "projection")

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
