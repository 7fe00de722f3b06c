"""Sparse terms over the units of one block: their validation, the unit pairs they couple, and
the natural parameters of a subset of the block's units.

A term is a tuple of distinct unit numbers (along the block's first axis) with one weight; the
energy of a set of terms of one order k is E = -sum_r w_r prod_{i in term r} t_i. For a unit i
that shares no term with another unit of the subset C being drawn, -dE/dt_i,

    eta_i = sum_{r: i in term r} w_r prod_{j in term r, j != i} t_j,

is exact and independent of t_i (the energy is linear in each unit's statistic). ``UnitPlan``
holds, for one subset C and one order, the (term, position) slots whose unit lies in C, sorted by
that unit, so that eta_C is a sparse matrix product: for pairs, A_C t with A_C the |C| x n matrix
of the weights; for k >= 3, an incidence matrix times the products of the other units' statistics.
"""

from __future__ import annotations

import warnings
from collections import OrderedDict

import torch
from torch import Tensor

__all__ = ["as_terms", "term_pairs", "UnitPlan", "PlanCache", "natural_of_terms"]


def as_terms(terms, what: str = "terms", order: int | None = None) -> Tensor:
    """``terms`` as an (m, k) int64 tensor of unit numbers, k >= 2, each term's units distinct and
    each term (as a set) given once; ValueError naming the offending term otherwise."""
    if terms is None:
        raise ValueError(f"{what}: give an (m, k) array of unit numbers")
    t = torch.as_tensor(terms)
    if t.numel() == 0:
        t = t.reshape(0, order or 2)
    if t.dim() != 2 or t.shape[1] < 2 or t.is_floating_point() or t.dtype == torch.bool:
        raise ValueError(
            f"{what} must be an (m, k) array of integer unit numbers with k >= 2, got shape "
            f"{tuple(t.shape)} and dtype {t.dtype}"
        )
    if order is not None and t.shape[1] != order:
        raise ValueError(f"{what} must have {order} units per term, got {t.shape[1]}")
    t = t.to(torch.int64).contiguous()
    if not len(t):
        return t
    if int(t.min()) < 0:
        raise ValueError(f"{what} must number units from 0; found {int(t.min())}")
    ordered = t.sort(1).values
    repeats = (ordered[:, 1:] == ordered[:, :-1]).any(1)
    if bool(repeats.any()):
        r = int(repeats.nonzero()[0, 0])
        raise ValueError(
            f"{what}: term {r} {tuple(t[r].tolist())} repeats a unit; a term couples distinct units"
        )
    unique, inverse, counts = torch.unique(ordered, dim=0, return_inverse=True, return_counts=True)
    if int(counts.max()) > 1:
        first = int((counts[inverse] > 1).nonzero()[0, 0])
        raise ValueError(
            f"{what}: the term on units {tuple(unique[inverse[first]].tolist())} is given "
            f"{int(counts.max())} times; give each term once"
        )
    return t


def term_pairs(*term_sets: Tensor) -> Tensor:
    """The distinct unordered unit pairs (i < j) that share a term of any of the given sets: the
    edges of the units' interaction graph, shape (p, 2)."""
    pairs = [torch.empty(0, 2, dtype=torch.int64)]
    for terms in term_sets:
        k = terms.shape[1]
        for a in range(k):
            for b in range(a + 1, k):
                pairs.append(terms[:, [a, b]])
    p = torch.cat(pairs).sort(1).values
    return torch.unique(p, dim=0) if len(p) else p


def natural_of_terms(terms: Tensor, weight: Tensor, t: Tensor) -> Tensor:
    """eta_i = sum over (term r, its unit i) of w_r prod_{j in r, j != i} t_j for every unit of a
    block with statistics t (batch, n): differentiable (gathers, products and ``index_add_``)."""
    out = t.new_zeros(t.shape)
    k = terms.shape[1]
    for slot in range(k):
        others = [c for c in range(k) if c != slot]
        prod = t[:, terms[:, others]].prod(-1) * weight
        out = out.index_add(1, terms[:, slot], prod)
    return out


class UnitPlan:
    """The natural parameters of the units ``index`` (a subset C of a block of n units) from the
    terms (m, k) of one order, as one product of the statistics with a sparse matrix (see the
    module's docstring): for pairs eta_C = t A_C with A_C (n x |C|) holding w_r at (other unit,
    target); for k >= 3 eta_C = P S_C with P the products of the other units' statistics times
    w (batch x slots) and S_C the slots' incidence (slots x |C|). Exact for units of C that share
    no term with each other; built once per subset and device."""

    def __init__(self, terms: Tensor, index: Tensor, n: int, device):
        k = terms.shape[1]
        position = torch.full((n,), -1, dtype=torch.int64)
        position[index.cpu()] = torch.arange(len(index))
        slots = (position[terms] >= 0).nonzero()  # (p, 2): term, slot
        term_id, slot = slots[:, 0], slots[:, 1]
        target = position[terms[term_id, slot]]
        rest = torch.tensor([[c for c in range(k) if c != s] for s in range(k)], dtype=torch.int64)
        others = terms[term_id].gather(1, rest[slot])
        # CSR rows: the other unit (pairs) or the slot (k >= 3); columns: the target's position
        num_rows = n if k == 2 else len(term_id)
        crow, order = _csr_layout(others[:, 0] if k == 2 else torch.arange(num_rows), num_rows)
        self.k = k
        self.size = (num_rows, len(index))
        self.crow = crow.to(device)
        self.col = target[order].to(device)
        self.term_id = term_id[order].to(device)
        self.others = others[order].to(device)
        if k == 2:  # the same matrix by target (|C| x n): rows of a kernel that reads by chain
            crow, by_target = _csr_layout(target, len(index))
            self.rows = (
                crow.to(device),
                others[by_target, 0].contiguous().to(device),
                term_id[by_target].to(device),
            )

    def target_rows(self, weight: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """Pairs only: the |C| x n matrix of the couplings by target, as CSR (row offsets, other
        unit, weight): eta_C[b, c] = sum over row c of weight * t[b, other unit]."""
        crow, col, term_id = self.rows
        return crow, col, weight[term_id]

    def natural(self, weight: Tensor, t: Tensor) -> Tensor:
        """eta_C for statistics t of shape (batch, n, *trailing) (trailing dims for pairs only,
        whose terms are then dot products t_i . t_j): shape (batch, |C|, *trailing); not
        differentiable."""
        batch, trailing = t.shape[0], t.shape[2:]
        if not len(self.term_id):
            return t.new_zeros((batch, self.size[1], *trailing))
        values = weight[self.term_id].to(t.dtype)
        if self.k == 2:
            if not trailing:
                return _product(t, _csr(self.crow, self.col, values, self.size))
            rows = t.movedim(1, -1).reshape(-1, t.shape[1])  # (batch * trailing, n)
            out = _product(rows, _csr(self.crow, self.col, values, self.size))
            return out.reshape(batch, *trailing, -1).movedim(-1, 1)
        products = t[:, self.others].prod(-1) * values
        return _product(products, _csr(self.crow, self.col, torch.ones_like(values), self.size))


def _csr_layout(rows: Tensor, num_rows: int) -> tuple[Tensor, Tensor]:
    """(row offsets, the order that sorts the entries by row, stably) of a CSR matrix whose
    entries lie in rows ``rows``."""
    order = torch.sort(rows, stable=True).indices
    counts = torch.bincount(rows, minlength=num_rows)
    return torch.cat([torch.zeros(1, dtype=torch.int64), counts.cumsum(0)]), order


def _product(dense: Tensor, sparse: Tensor) -> Tensor:
    """dense @ sparse (a CSR matrix), or (sparse^T dense^T)^T where a device lacks the former."""
    try:
        return dense @ sparse
    except (RuntimeError, NotImplementedError):
        return (sparse.t() @ dense.T).T


class PlanCache:
    """Plans by subset: the plan built for an index tensor, found again by that tensor's identity
    (it is held, so its id cannot be reused) and device; the last ``size`` subsets are kept (a
    schedule's colour classes are the same tensors sweep after sweep)."""

    def __init__(self, size: int = 256):
        self.size = size
        self._plans: OrderedDict = OrderedDict()

    def get(self, index: Tensor, device, build):
        key = (id(index), str(device))
        hit = self._plans.get(key)
        if hit is not None and hit[0] is index:
            self._plans.move_to_end(key)
            return hit[1]
        plan = build()
        self._plans[key] = (index, plan)
        if len(self._plans) > self.size:
            self._plans.popitem(last=False)
        return plan


def _csr(crow: Tensor, col: Tensor, values: Tensor, size) -> Tensor:
    """A sparse CSR matrix (torch's beta warning about CSR support silenced)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        return torch.sparse_csr_tensor(crow, col, values, size)
