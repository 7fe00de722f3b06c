"""Kept buffers: scratch tensors a hot loop reuses from step to step, so it allocates nothing of a
block's size after its first steps (the memory stays in cache). Used by the fast CPU backend and
by the annealing loops that run on it."""

from __future__ import annotations

import torch
from torch import Tensor

__all__ = ["kept_buffer", "swap_buffer"]


def _fits(buf: Tensor | None, shape, dtype, device) -> bool:
    return buf is not None and (tuple(buf.shape), buf.dtype, buf.device) == (
        tuple(shape),
        dtype,
        device,
    )


def kept_buffer(store: dict, key, shape, like: Tensor, dtype: torch.dtype | None = None) -> Tensor:
    """``store[key]``, a tensor of ``shape`` with ``like``'s device and dtype (or ``dtype``), made
    anew only when missing or of another layout: scratch memory a hot loop reuses (so it stays in
    cache)."""
    dtype = like.dtype if dtype is None else dtype
    buf = store.get(key)
    if not _fits(buf, shape, dtype, like.device):
        buf = store[key] = like.new_empty(shape, dtype=dtype)
    return buf


def swap_buffer(store: dict, key, shape, like: Tensor, current: Tensor) -> Tensor:
    """Of the two tensors of ``shape`` kept in ``store`` under ``key`` (made on first use, with
    ``like``'s dtype and device), the one that does not hold ``current``: double buffering, so a
    loop writes its next state while the last one stays intact (for a consistent snapshot)."""
    pair = store.get(key)
    if pair is None or not _fits(pair[0], shape, like.dtype, like.device):
        pair = store[key] = (like.new_empty(shape), like.new_empty(shape))
    return pair[1] if pair[0].data_ptr() == current.data_ptr() else pair[0]
