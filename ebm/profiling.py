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

from collections.abc import Callable, Iterator
from dataclasses import dataclass

import torch
from torch.profiler import ProfilerActivity, profile

__all__ = ["TensorMemory", "peak_tensor_memory", "tensor_allocations", "tensor_memory"]


@dataclass(frozen=True)
class TensorMemory:
    """The CPU tensor memory of one run.

    ``allocations``: the size in bytes of every tensor allocation, in order (frees not listed).
    ``peak``: max over the run of M(t), the bytes of the tensors made during the run and not
    yet freed at t: the most tensor memory the run held at once beyond what it was given. The
    profiler sees tensors, not the C allocator beneath them, so memory the allocator keeps
    after a free is not counted."""

    allocations: list[int]
    peak: int


def tensor_memory(run: Callable[[], object]) -> TensorMemory:
    """Run ``run()`` under ``torch.profiler`` with ``profile_memory=True`` and return what it
    allocated and its peak of CPU tensor memory (``TensorMemory``). Each free is matched to its
    allocation by address, so frees of tensors made before the run (which the profiler reports
    only for some: those it saw being made in an earlier profile) do not count. The events are
    read from the profile's event tree (``experimental_event_tree``), the record torch's own
    memory profiler reads."""
    with profile(activities=[ProfilerActivity.CPU], profile_memory=True) as prof:
        run()
    events = sorted(
        (
            (node.start_time_ns, node.extra_fields.ptr, node.extra_fields.alloc_size)
            for node in _walk(prof.profiler.kineto_results.experimental_event_tree())
            if node.tag.name == "Allocation" and node.extra_fields.device.type == "cpu"
        ),
        key=lambda event: event[0],
    )
    live: dict[int, int] = {}
    allocations = []
    held = peak = 0
    for _, ptr, size in events:
        if size > 0:
            live[ptr] = size
            allocations.append(size)
            held += size
            peak = max(peak, held)
        elif ptr in live:
            held -= live.pop(ptr)
    return TensorMemory(allocations, peak)


def _walk(nodes) -> Iterator:
    """Every node of the profiler's event tree, depth first."""
    for node in nodes:
        yield node
        yield from _walk(node.children)


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
