"""The fast CPU backend: fused oneDNN products, in-place binary draws, kept buffers.

Same maths as ``TorchBackend``, computed with less traffic through memory:

- ``natural``: the contributions of the factors that declare themselves one matrix product
  (``Factor.natural_product``) run as fused oneDNN products that add the other terms in their
  output pass (``ebm.backend.onednn``: float32, no gradient); elsewhere the first product is
  written into ``out`` (a tensor the caller keeps), the other terms added in place and further
  products accumulated with ``addmm_``. Either way the result is a tensor the caller owns.
- ``sample_``: Bernoulli and spin blocks drawn into their own natural parameters by the
  counter-based numba kernel (``ebm.backend.draws``).
- ``log_partition_``: a Bernoulli block's softplus computed in place.
- ``split_energy``: placeholders, E_rest and every eta_u in tensors kept in ``work``.

The values agree with the reference backend up to float rounding (the fused product sums in
another order); a given backend repeats its draws exactly for a seeded generator, whether or
not buffers are kept. ``check()`` verifies each piece on this machine before
``ebm.backend.backend_for`` turns it on.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

import ebm.backend.draws as draws
import ebm.backend.onednn as onednn
import ebm.backend.sparse as sparse
from ebm.backend.buffers import kept_buffer
from ebm.backend.reference import TorchBackend
from ebm.units import Bernoulli, Spin

__all__ = ["CPUBackend"]

State = dict[str, Tensor]


class _KeptMul:
    """a * b into a tensor kept in ``work`` under ``key`` (made on first use)."""

    def __init__(self, work: dict, key):
        self.work, self.key = work, ("mul", key)

    def __call__(self, a: Tensor, b: Tensor) -> Tensor:
        shape = torch.broadcast_shapes(a.shape, b.shape)
        return torch.mul(a, b, out=kept_buffer(self.work, self.key, shape, a))


class CPUBackend(TorchBackend):
    """The fast CPU backend. ``products``: "onednn" (fused products where they apply) or "blas"
    (``torch.mm`` into kept tensors); ``fast_draws``: whether binary blocks use the numba kernel
    (where numba is present)."""

    name = "cpu"
    in_place = True

    def __init__(self, products: str = "onednn", fast_draws: bool = True, sparse_rows: bool = True):
        if products not in ("onednn", "blas"):
            raise ValueError(f"products must be 'onednn' or 'blas', got {products!r}")
        self.products = products
        self.fused = products == "onednn" and onednn.available()
        self.fast_draws = bool(fast_draws)
        self.sparse_rows = bool(sparse_rows)

    def matmul(self, x: Tensor, w: Tensor) -> Tensor:
        """x w on this backend's product kernel (a new tensor)."""
        return onednn.matmul_add(x, w) if self.fused else torch.mm(x, w)

    # --- natural parameters ----------------------------------------------------------------------
    def natural(
        self,
        model,
        block: str,
        stats: State,
        out: Tensor | None = None,
        work: dict | None = None,
    ) -> Tensor:
        """eta_block as a tensor the caller owns: written into ``out`` (shape (batch, *block's
        shape), read by nothing else) on the BLAS path, a new tensor from the fused product.
        ``work``: a dict the caller keeps, where the operands' elementwise products are kept."""
        if torch.is_grad_enabled():
            return model.natural(block, None, stats).clone()
        model.natural_check(block)
        terms, products = None, []
        for factor in model.factors_touching(block):
            mul = torch.mul if work is None else _KeptMul(work, (id(factor), block))
            operands = factor.natural_product(block, stats, self.matmul, mul)
            if operands is None:
                term = factor.natural(block, stats)
                terms = term if terms is None else terms + term
            else:
                products.append(operands)
        ref = next(iter(stats.values()))
        shape = (ref.shape[0], *model.units[block].shape)
        if self.fused and products and onednn.fusable(products[0][0]):
            eta = None if terms is None else terms.reshape(shape[0], -1)
            for x, w in products:
                eta = onednn.matmul_add(x, w, eta)
            return eta.reshape(shape)
        if out is None:
            out = ref.new_empty(shape)
        if not products:
            return out.zero_() if terms is None else out.copy_(terms)
        flat = out.view(shape[0], -1)
        x, w = products[0]
        torch.mm(x, w, out=flat)
        if terms is not None:
            out.add_(terms)
        for x, w in products[1:]:
            flat.addmm_(x, w)
        return out

    def natural_units(self, model, block: str, index: Tensor, stats: State) -> Tensor:
        """``model.natural_units``, with the contributions of factors that give their couplings
        as sparse rows (``Factor.natural_rows``) from the row-product kernel
        (``ebm.backend.sparse``) where the block's statistics allow it: the first such product
        is a new tensor, into which the other factors' contributions are added."""
        t = stats[block]
        if torch.is_grad_enabled() or not self.sparse_rows or not sparse.usable(t):
            return model.natural_units(block, index, None, stats)
        model.natural_check(block)
        factors = model.factors_touching(block)
        rows = [f.natural_rows(block, stats, index) for f in factors]
        if all(r is None for r in rows):
            return model.natural_units(block, index, None, stats)
        eta = None
        for r in rows:
            if r is not None:
                term = sparse.rows_product(t, *r)
                eta = term if eta is None else eta.add_(term)
        for f, r in zip(factors, rows, strict=True):
            if r is None:
                eta.add_(f.natural_units(block, stats, index))
        return eta

    # --- draws and log-partitions ----------------------------------------------------------------
    def sample_(self, units, natural: Tensor, generator: torch.Generator | None) -> Tensor:
        """A draw of ``units`` given ``natural``, which is overwritten with it where the numba
        kernel applies (a contiguous CPU float tensor of a Bernoulli or spin block)."""
        kind = type(units).sample
        if (
            self.fast_draws
            and kind in (Bernoulli.sample, Spin.sample)
            and natural.is_contiguous()
            and not natural.requires_grad
            and draws.usable(natural)
        ):
            if kind is Bernoulli.sample:
                return draws.binary_from_probs_(natural.sigmoid_(), generator)
            return draws.binary_from_probs_(natural.mul_(2).sigmoid_(), generator, -1.0, 1.0)
        return units.sample(natural, generator)

    def log_partition_(self, units, natural: Tensor, out: Tensor | None = None) -> Tensor:
        """A(natural) summed over the block; a Bernoulli block's softplus overwrites ``natural``."""
        if type(units).log_partition is Bernoulli.log_partition and not natural.requires_grad:
            return torch.sum(F.softplus(natural, out=natural), -1, out=out)
        return super().log_partition_(units, natural, out)

    # --- the split of the energy -----------------------------------------------------------------
    def split_energy(self, model, state: State, sum_out, work: dict | None = None):
        """``EnergyModel.split_energy`` (unchecked), E_rest accumulated in place and every eta_u
        from ``natural``; with ``work`` the placeholders, E_rest and the eta_u are tensors kept
        there (the same values, bit for bit), overwritten by the next call with the same
        ``work``."""
        sum_out = list(sum_out)
        if not state or torch.is_grad_enabled():
            return model.split_energy(state, sum_out, check=False)
        ref = next(iter(state.values()))
        batch = ref.shape[0]

        def tensor(key, shape):
            return ref.new_empty(shape) if work is None else kept_buffer(work, key, shape, ref)

        full = dict(state)
        for u in sum_out:  # zeros that nothing writes: kept from call to call
            made = None if work is None else work.get(("zeros", u))
            full[u] = tensor(("zeros", u), (batch, *model.units[u].shape))
            if full[u] is not made:
                full[u].zero_()
        kept = [b for b in full if b not in sum_out]
        stats = model.statistics({b: full[b] for b in kept})
        stats.update({u: full[u] for u in sum_out})
        e_rest = tensor("e_rest", (batch,)).zero_()
        for b in kept:
            e_rest.add_(model.units[b].base_energy(full[b]))
        for f in model.factors.values():
            touched = [u for u in sum_out if u in f.blocks]
            e_rest.add_(f.offset(touched[0], stats) if touched else f.energy(stats))
        eta = {u: self.natural(model, u, stats, tensor(("eta", u), full[u].shape)) for u in sum_out}
        return e_rest, eta

    def __repr__(self) -> str:
        return (
            f"CPUBackend(products={self.products!r}, fast_draws={self.fast_draws}, "
            f"sparse_rows={self.sparse_rows})"
        )
