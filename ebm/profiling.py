"""What a hot loop allocates, counted by torch's profiler: the check behind "no allocation in the
inner loop" for ``BlockGibbs.run`` and ``estimators.ais``.

Two measures. ``tensor_allocations``: every CPU tensor allocation, in bytes, so that a run of n
steps against one of 3n separates what a loop allocates per step from what it allocates once.
``tensor_memory(...).peak``: the most tensor memory a run holds at once, the CPU counterpart of
``torch.cuda.max_memory_allocated``. A loop whose products make fresh outputs (oneDNN's fused
products on a float32 CPU) allocates every step but, freeing as much as it allocates, holds the
same peak however many steps it takes; a loop that keeps what it allocates does not.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch.autograd import DeviceType
from torch.profiler import ProfilerActivity, profile

__all__ = ["TensorMemory", "peak_tensor_memory", "tensor_allocations", "tensor_memory"]


@dataclass(frozen=True)
class TensorMemory:
    """The CPU tensor memory of one run.

    ``allocations``: the size in bytes of every tensor allocation, in order (frees not listed).
    ``peak``: max over the run of M(t) = (bytes allocated since it started) - (bytes freed since
    it started), including frees of tensors made before it (never below 0): the run's peak of
    tensor memory above what it started with. The profiler sees tensors, not the C allocator
    beneath them, so memory the allocator keeps after a free is not counted."""

    allocations: list[int]
    peak: int


def tensor_memory(run: Callable[[], object]) -> TensorMemory:
    """Run ``run()`` under ``torch.profiler`` with ``profile_memory=True`` and return what it
    allocated and its peak of CPU tensor memory (``TensorMemory``)."""
    with profile(activities=[ProfilerActivity.CPU], profile_memory=True) as prof:
        run()
    events = [
        e
        for e in prof.profiler.kineto_results.events()
        if e.name() == "[memory]" and e.device_type() == DeviceType.CPU
    ]
    events.sort(key=lambda e: e.start_ns())
    held = peak = 0
    for e in events:
        held += e.nbytes()
        peak = max(peak, held)
    return TensorMemory([e.nbytes() for e in events if e.nbytes() > 0], peak)


def tensor_allocations(run: Callable[[], object]) -> list[int]:
    """The size in bytes of every CPU tensor allocation made while ``run()`` runs, in order
    (``tensor_memory(run).allocations``). Comparing two runs that differ only in their number of
    steps separates what a loop allocates per step from what it allocates once."""
    return tensor_memory(run).allocations


def peak_tensor_memory(run: Callable[[], object], device: torch.device | str = "cpu") -> int:
    """The peak, in bytes, of the tensor memory ``run()`` holds on ``device`` above what was held
    when it started: ``torch.cuda.max_memory_allocated`` after ``reset_peak_memory_stats`` minus
    ``memory_allocated`` before, on a CUDA device; ``tensor_memory(run).peak`` on the CPU. Equal
    for a run of n steps and one of 3n when the loop holds no more memory the longer it runs."""
    device = torch.device(device)
    if device.type != "cuda":
        return tensor_memory(run).peak
    torch.cuda.synchronize(device)
    torch.cuda.reset_peak_memory_stats(device)
    before = torch.cuda.memory_allocated(device)
    run()
    torch.cuda.synchronize(device)
    return max(0, torch.cuda.max_memory_allocated(device) - before)
