"""The reference backend: the model's own maths, in plain public torch."""

from __future__ import annotations

import torch
from torch import Tensor

__all__ = ["TorchBackend"]

State = dict[str, Tensor]


class TorchBackend:
    """The four operations the hot loops repeat, as the model states them.

    ``natural(model, block, stats, out, work)``: eta_block = ``model.natural`` (``out`` and the
    caller's ``work`` dict unused);
    ``sample_(units, natural, generator)``: ``units.sample``; ``log_partition_(units, natural,
    out)``: ``units.log_partition`` (copied into ``out`` when given); ``split_energy(model,
    state, sum_out, work)``: ``model.split_energy`` without checks (``work`` unused).

    ``in_place`` is False: the tensors ``natural`` returns may be views of parameters, so a
    caller must not overwrite them, and ``sample_`` leaves ``natural`` intact. A backend with
    ``in_place`` True returns tensors its caller owns and may draw into them."""

    name = "torch"
    in_place = False

    def natural(
        self,
        model,
        block: str,
        stats: State,
        out: Tensor | None = None,
        work: dict | None = None,
    ) -> Tensor:
        return model.natural(block, None, stats)

    def natural_units(self, model, block: str, index: Tensor, stats: State) -> Tensor:
        """The natural parameters of the units ``index`` of ``block``:
        ``model.natural_units``."""
        return model.natural_units(block, index, None, stats)

    def sample_(self, units, natural: Tensor, generator: torch.Generator | None) -> Tensor:
        return units.sample(natural, generator)

    def log_partition_(self, units, natural: Tensor, out: Tensor | None = None) -> Tensor:
        a = units.log_partition(natural)
        return a if out is None else out.copy_(a)

    def split_energy(self, model, state: State, sum_out, work: dict | None = None):
        return model.split_energy(state, sum_out, check=False)

    def __repr__(self) -> str:
        return f"{type(self).__name__}()"
