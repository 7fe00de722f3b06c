"""The runner: drives any kernel of the ``samplers.kernel`` protocol for a number of steps.

One loop for every sampler: it validates the count, runs without gradients, calls the observers
with the target part of each state, shows a progress bar on request, times the run (each step
alone, observers excluded, when asked: ``timed``) and summarises the steps' info records.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

import numpy as np
import torch
from torch import Tensor
from tqdm.auto import tqdm

__all__ = ["Observer", "RunInfo", "run_chain"]

State = dict[str, Tensor]
Observer = Callable[[State, int], None]


@dataclass
class RunInfo:
    """The summary of a run's step infos.

    ``steps``, ``sweeps`` (the steps' costs summed), ``seconds`` (inside the steps only for a
    timed run, else the whole loop's),
    ``acceptance`` (the mean over steps of the mean over chains of ``StepInfo.accept``; None when
    no step reported one), ``swap_rates`` (per adjacent pair, the mean over the steps that tried
    it; None without replica exchange), ``round_trips`` (summed) and ``betas`` (the last ladder).
    """

    state: State
    steps: int = 0
    sweeps: int = 0
    seconds: float = 0.0
    acceptance: float | None = None
    swap_rates: np.ndarray | None = None
    round_trips: int = 0
    betas: np.ndarray | None = None
    _accept_sum: float = field(default=0.0, repr=False)
    _accept_n: int = field(default=0, repr=False)
    _swap_sum: np.ndarray | None = field(default=None, repr=False)
    _swap_n: np.ndarray | None = field(default=None, repr=False)

    def add(self, info) -> None:
        """Fold one step's ``StepInfo`` into the summary."""
        self.steps += 1
        self.sweeps += int(info.cost)
        if info.accept is not None:
            self._accept_sum += float(torch.as_tensor(info.accept).double().mean())
            self._accept_n += 1
            self.acceptance = self._accept_sum / self._accept_n
        if info.swap_accept is not None:
            rates = np.asarray(info.swap_accept, dtype=np.float64)
            if self._swap_sum is None or self._swap_sum.shape != rates.shape:
                self._swap_sum, self._swap_n = np.zeros_like(rates), np.zeros_like(rates)
            tried = ~np.isnan(rates)
            self._swap_sum[tried] += rates[tried]
            self._swap_n[tried] += 1
            with np.errstate(invalid="ignore"):
                self.swap_rates = self._swap_sum / self._swap_n
        self.round_trips += int(info.round_trips)
        if info.betas is not None:
            self.betas = np.asarray(info.betas, dtype=np.float64)


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def run_chain(
    kernel,
    state: State,
    num_steps: int,
    observers: Iterable[Observer] | None = None,
    progress: bool = False,
    desc: str | None = None,
    timed: bool = False,
) -> RunInfo:
    """Apply ``num_steps`` steps of ``kernel`` (a ``samplers.kernel.Kernel``) to ``state``,
    calling each observer as ``observer(kernel.target(state), step)`` after every step; returns
    the ``RunInfo`` of the run, whose ``state`` is the final state.

    The steps come from ``kernel.stepper()``: a kernel that keeps buffers for a run may
    overwrite a state two steps later, so an observer that keeps a tensor past its call copies
    it (``samplers.observers.Trace`` does). The input state is never written to. ValueError for
    a negative ``num_steps`` or a state the kernel refuses (``Kernel.check_state``).

    ``timed``: time each step alone, observers excluded (on a GPU, synchronising before and after
    every step, which stalls its queue); otherwise ``RunInfo.seconds`` is the whole loop's time,
    synchronised once at each end."""
    if isinstance(num_steps, bool) or not isinstance(num_steps, int) or num_steps < 0:
        raise ValueError(f"num_steps must be an int >= 0, got {num_steps!r}")
    observers = list(observers or [])
    model = kernel.model
    device = model.device
    kernel.check_state(state)
    info = RunInfo(state=state)
    step = kernel.stepper()
    name = desc or type(kernel).__name__.lower()
    _sync(device)
    begin = time.perf_counter()
    with torch.no_grad():
        for i in tqdm(range(num_steps), desc=name, unit="step", disable=not progress, leave=False):
            if timed:
                _sync(device)
                start = time.perf_counter()
            state, step_info = step(state)
            if timed:
                _sync(device)
                info.seconds += time.perf_counter() - start
            info.add(step_info)
            if observers:
                x = kernel.target(state)
                for obs in observers:
                    obs(x, i)
    if not timed:
        _sync(device)
        info.seconds = time.perf_counter() - begin
    info.state = state
    return info
