"""One block Gibbs update, the single one every sampler and annealing path of the project uses.

The target is the tempered model with an optional factorised base mixed in,

    p_beta(x) ∝ exp(-sum_u E_0,u(x_u) - beta sum_f E_f(x) - (1 - beta) E_A(x_A)),

whose conditional for a block b is of b's unit type with natural parameters

    lambda_b = beta eta_b(x_-b) + (1 - beta) a_b        (a_b = 0 when the base A omits b)

and, for a block with quadratic factors, the quadratic coefficient beta q_b(x_-b). beta = 1 with
no base is the model itself (``BlockGibbs``); a beta per row is parallel tempering's ladder; a
float beta with a base is a point of the annealing path of AIS and RAISE. Unit base energies
E_0 are not tempered, so every p_beta is normalisable.

The unit of update is a colour class: blocks that share no factor, hence conditionally
independent given the rest, drawn together from one set of statistics. A sweep is the classes in
order; the reversed order is the sweep's reversal as a kernel (the order the reverse chains of
RAISE and the bridge need).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import torch
from torch import Tensor

from ebm.backend import backend_for
from ebm.backend.buffers import kept_buffer, swap_buffer
from ebm.graph import member_block
from ebm.model import EnergyModel

__all__ = ["gibbs_sweep", "update_class"]

State = dict[str, Tensor]


@torch.no_grad()
def gibbs_sweep(
    model: EnergyModel,
    state: State,
    classes: Sequence[Sequence[str]],
    generator: torch.Generator | None = None,
    beta: float | Tensor = 1.0,
    base: Mapping[str, Tensor] | None = None,
    reverse: bool = False,
    work: dict | None = None,
    backend=None,
) -> State:
    """One sweep: each colour class of ``classes`` (reversed with ``reverse``) drawn in turn from
    its conditional under p_beta (``update_class``); returns the new state, a new dict (blocks
    not in ``classes``, e.g. clamped ones, are carried over). ``work``, ``backend``: see
    ``update_class``."""
    state = dict(state)
    if backend is None and state:
        backend = backend_for(next(iter(state.values())))
    owned = _own_unit_blocks(state, classes, work)
    for blocks in reversed(classes) if reverse else classes:
        state.update(
            update_class(
                model, state, blocks, generator, beta, base, work=work, backend=backend, owned=owned
            )
        )
    return state


def _own_unit_blocks(state: State, classes, work: dict | None) -> frozenset[str]:
    """The blocks drawn by classes of their units in this sweep, each replaced in ``state`` by a
    copy the sweep owns (from ``work``'s double buffers when given), which the classes then
    overwrite in place: one copy of such a block per sweep, not one per class."""
    blocks = {member_block(m) for group in classes for m in group if not isinstance(m, str)}
    for b in blocks:
        if b not in state:
            continue
        x = state[b]
        copy = x.clone() if work is None else swap_buffer(work, ("sweep.units", b), x.shape, x, x)
        if work is not None:
            copy.copy_(x)
        state[b] = copy
    return frozenset(blocks)


@torch.no_grad()
def update_class(
    model: EnergyModel,
    state: State,
    blocks: Sequence[str],
    generator: torch.Generator | None = None,
    beta: float | Tensor = 1.0,
    base: Mapping[str, Tensor] | None = None,
    given: Mapping[str, Tensor] | None = None,
    given_quadratic: Mapping[str, Tensor] | None = None,
    work: dict | None = None,
    backend=None,
    owned: frozenset[str] = frozenset(),
) -> State:
    """Draw the blocks of one colour class from their conditionals under p_beta given the other
    blocks of ``state``; returns {block: draw} and leaves ``state`` and ``given`` unchanged.
    Runs without gradients (a draw is not differentiable). A member of the class is a block name,
    or a pair (block, unit numbers): those units are drawn and the block's others kept (drawn from
    new tensors, without ``work``).

    ``beta``: a float, or a tensor of one inverse temperature per row (chain). ``base``: block ->
    natural parameters a_b of a factorised base, mixed in with weight (1 - beta). ``given``:
    block -> eta_b at beta = 1 already computed by the caller, used instead of computing it from
    ``state`` (which need not hold the block): a path's summed-out blocks, whose parameters its
    densities needed anyway; ``given_quadratic``: their quadratic coefficients q_b at beta = 1.

    ``backend`` (default ``ebm.backend.backend_for`` the state's tensors) computes the natural
    parameters and the draws. On a backend that works in place (``backend.in_place``) the
    natural parameters are tensors the update owns, scaled and mixed in place and drawn into;
    with ``work``, a dict the caller keeps from call to call, they are kept there, two per block
    taken in turn, so the update allocates nothing of a block's size and a draw it returns is
    overwritten two calls later (copy what you keep). The draws are those without ``work``, bit
    for bit. Blocks with a quadratic term, and blocks whose draws keep something of their current
    state (a count block's lengths), are drawn by their unit type from new tensors.
    ``owned``: blocks whose tensor in ``state`` the caller lets a unit-class member overwrite in
    place (``gibbs_sweep`` passes the copies it made); other members draw into a copy.
    """
    given, base = given or {}, base or {}
    if backend is None:
        like = next(iter({**state, **given}.values()))
        backend = backend_for(like)
    members = [_member(model, item) for item in blocks]
    blocks = [b for b, _ in members]
    stats = None if all(b in given for b in blocks) else model.statistics(state)
    out = {}
    for b, units_drawn in members:
        if units_drawn is not None:  # some of the block's units, the others kept as they are
            out[b] = _update_units(
                model, state, stats, b, units_drawn, generator, beta, base, given, backend, owned
            )
            continue
        model.units_check(b)
        units = model.units[b]
        if b in given:
            q = (given_quadratic or {}).get(b)
        else:
            q = model.quadratic(b, state, stats)
        if q is not None or not backend.in_place or units.takes_state_keywords:
            eta = given[b] if b in given else backend.natural(model, b, stats)
            natural = _tempered(eta, beta, base.get(b))
            if q is not None or units.takes_state_keywords:
                if q is not None and not _is_one(beta):
                    q = q * _per_row(beta, q)
                out[b] = units.sample(
                    natural,
                    generator,
                    **model.given_quadratic(b, q),
                    **model.state_keywords(b, state),
                )
            else:
                out[b] = backend.sample_(units, natural, generator)
            continue
        buffer = None
        if work is not None:
            like = given[b] if b in given else state[b]
            buffer = swap_buffer(work, ("sweep.x", b), like.shape, like, state.get(b, like))
        if b in given:  # scaled into a tensor of the update's own; ``given`` stays intact
            natural = torch.mul(given[b], _per_row(beta, given[b]), out=buffer)
        else:
            natural = backend.natural(model, b, stats, out=buffer, work=work)
            if not _is_one(beta):
                natural.mul_(_per_row(beta, natural))
        a = base.get(b)
        if a is not None:
            weight = _complement(beta, natural)
            if work is None:
                natural.add_(a * weight)
            else:
                shape = torch.broadcast_shapes(a.shape, getattr(weight, "shape", ()))
                mixed = kept_buffer(work, ("sweep.base", b), shape, a)
                natural.add_(torch.mul(a, weight, out=mixed))
        out[b] = backend.sample_(units, natural, generator)
    return out


def _member(model: EnergyModel, item) -> tuple[str, Tensor | None]:
    """A colour-class member as (block, the unit numbers drawn, None for the whole block): a block
    name, or a pair (block, unit numbers along the block's first axis)."""
    if isinstance(item, str):
        return item, None
    block, index = item
    if block not in model.units:
        raise ValueError(f"unknown block {block!r} in a colour class; model blocks: {model.blocks}")
    if not (isinstance(index, Tensor) and index.dtype == torch.int64 and index.dim() == 1):
        index = torch.as_tensor(index, dtype=torch.int64).reshape(-1)
    size = model.units[block].shape[0]
    if len(index) and (int(index.min()) < 0 or int(index.max()) >= size):
        raise ValueError(f"block {block!r} has units 0 to {size - 1}; a colour class names others")
    return block, index


def _update_units(
    model, state, stats, b, index, generator, beta, base, given, backend, owned
) -> Tensor:
    """Block b with the units ``index`` drawn from their conditionals under p_beta and the
    others as in ``state`` (overwritten in place when b is in ``owned``, else copied). Exact when
    the drawn units share no factor term with each other (a colour class): each is then drawn from
    its own conditional given everything else. A block with a quadratic term (correlated units)
    is refused."""
    if b in given or model.quadratic(b, state, stats) is not None:
        raise ValueError(
            f"block {b!r}: a colour class of some of its units needs a block without a quadratic "
            f"term, computed from the state"
        )
    eta = backend.natural_units(model, b, index, stats)
    a = base.get(b)
    if a is not None:  # the base's parameters of these units (with or without a batch axis)
        a = a[:, index] if a.dim() == eta.dim() else a[index]
    natural = _tempered(eta, beta, a)
    draw = backend.sample_(model.units[b], natural.contiguous(), generator)
    new = state[b] if b in owned else state[b].clone()
    new[:, index.to(new.device)] = draw
    return new


def _is_one(beta) -> bool:
    return isinstance(beta, (int, float)) and beta == 1.0


def _per_row(beta: float | Tensor, like: Tensor) -> float | Tensor:
    """beta as a scalar, or a per-row tensor shaped to broadcast against ``like``."""
    if isinstance(beta, Tensor):
        return beta.to(like.dtype).reshape(-1, *([1] * (like.dim() - 1)))
    return beta


def _complement(beta: float | Tensor, like: Tensor) -> float | Tensor:
    return 1.0 - _per_row(beta, like)


def _tempered(eta: Tensor, beta: float | Tensor, a: Tensor | None) -> Tensor:
    """beta eta + (1 - beta) a (a new tensor unless beta = 1 and there is no base)."""
    natural = eta if _is_one(beta) else eta * _per_row(beta, eta)
    if a is not None:
        natural = natural + _complement(beta, natural) * a
    return natural
