"""Observers: called after every sweep, they accumulate statistics instead of storing samples."""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import Tensor

__all__ = ["RunningMean", "Trace"]


class RunningMean:
    """Running mean of ``fn(state)`` (default: the block's values) over sweeps, per chain and unit,
    accumulated in float64. ``mean`` averages over sweeps; ``mean.mean(0)`` over chains too."""

    def __init__(
        self, block: str | None = None, fn: Callable[[dict], Tensor] | None = None, burn_in: int = 0
    ):
        if (block is None) == (fn is None):
            raise ValueError("give exactly one of block or fn")
        self.fn = fn or (lambda s: s[block])
        self.burn_in = burn_in
        self.count = 0
        self.total: Tensor | None = None

    def __call__(self, state: dict, sweep: int) -> None:
        if sweep < self.burn_in:
            return
        x = self.fn(state).double()
        self.total = x.clone() if self.total is None else self.total + x
        self.count += 1

    @property
    def mean(self) -> Tensor:
        if self.total is None:
            raise ValueError("no sweep observed yet")
        return self.total / self.count


class Trace:
    """Stores a copy of ``fn(state)`` (detached, on the CPU) at every ``every``-th sweep: ``values`` is a
    tensor of shape (draws, ...)."""

    def __init__(self, fn: Callable[[dict], Tensor], every: int = 1):
        self.fn, self.every = fn, every
        self._values: list[Tensor] = []

    def __call__(self, state: dict, sweep: int) -> None:
        if sweep % self.every == 0:
            # a copy: the sampler may overwrite the state's tensors in the next sweep
            self._values.append(self.fn(state).detach().to("cpu", copy=True))

    @property
    def values(self) -> Tensor:
        return torch.stack(self._values)
