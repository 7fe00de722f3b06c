"""Document models at a fixed length.

A document model's visible block is a ``Multinomial`` whose length D comes from the data, and its
normaliser Z_D depends on D (the replicated softmax's hidden biases are scaled by D, and the
states summed over are those of length D). ``at_length(model, {"v": D})`` is the same model with
that block fixed at D: enumeration, exact and annealed log Z, base distributions and chains
started at random then work as on any model, and give log Z_D.
"""

from __future__ import annotations

import copy

from torch import nn

from ebm.counts import Multinomial
from ebm.model import EnergyModel

__all__ = ["at_length", "data_length_blocks"]


def data_length_blocks(model: EnergyModel) -> list[str]:
    """The count blocks of ``model`` whose length comes from the data (``Multinomial`` with
    ``length=None``)."""
    return [b for b, u in model.units.items() if isinstance(u, Multinomial) and u.length is None]


def at_length(model: EnergyModel, lengths: dict) -> EnergyModel:
    """``model`` with the count blocks named in ``lengths`` fixed at those lengths: ints >= 1,
    or 1-D integer tensors of one length per chain (a batch of chains at several lengths, which
    can be sampled and annealed but not enumerated; its rows must match the chains).

    The result shares every factor and parameter with ``model`` (training either trains both)
    and has new ``Multinomial(k, D)`` units for those blocks; its log Z is log Z_D, the
    normaliser over documents of D words. Blocks other than count blocks are refused by name, as
    are lengths that are not ints >= 1 (or tensors of them). The copy is for computing: a model
    with per-chain lengths is not saved.
    """
    if not isinstance(model, EnergyModel):
        raise TypeError(f"at_length expects an ebm.EnergyModel, got {type(model).__name__}")
    if not isinstance(lengths, dict) or not lengths:
        raise ValueError(f"lengths must be a non-empty dict of block -> length, got {lengths!r}")
    units = dict(model.units.items())
    for block, length in lengths.items():
        if block not in units:
            raise ValueError(f"unknown block {block!r}; model blocks: {model.blocks}")
        old = units[block]
        if not isinstance(old, Multinomial):
            raise ValueError(
                f"block {block!r} is {type(old).__name__}, not a Multinomial count block"
            )
        try:
            fixed_units = Multinomial(old.k, length)
        except ValueError as err:
            raise ValueError(f"block {block!r}: {err}") from err
        units[block] = fixed_units.to(device=model.device, dtype=model.dtype)
    fixed = copy.copy(model)
    fixed._modules = dict(model._modules)  # noqa: SLF001 - a copy of the module's own table
    fixed.units = nn.ModuleDict(units)
    fixed._units = dict(units)  # noqa: SLF001 - the model's plain lookup table of its units
    return fixed
