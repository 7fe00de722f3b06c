"""What a hot loop allocates, counted by torch's profiler: the check behind "no allocation in the
inner loop" for ``BlockGibbs.run`` and ``estimators.ais``."""

from __future__ import annotations

from collections.abc import Callable

from torch.profiler import ProfilerActivity, profile

__all__ = ["tensor_allocations"]


def tensor_allocations(run: Callable[[], object]) -> list[int]:
    """The size in bytes of every CPU tensor allocation made while ``run()`` runs, in order
    (``torch.profiler`` with ``profile_memory=True``; frees are not listed). Comparing two runs
    that differ only in their number of steps separates what a loop allocates per step from
    what it allocates once."""
    with profile(activities=[ProfilerActivity.CPU], profile_memory=True) as prof:
        run()
    events = prof.profiler.kineto_results.events()
    return [e.nbytes() for e in events if e.name() == "[memory]" and e.nbytes() > 0]
