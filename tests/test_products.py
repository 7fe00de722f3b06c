"""ebm.products: the natural parameters' products on oneDNN (fused) or BLAS, against float64."""

import pytest
import torch

import ebm
import samplers
from ebm import products

U = torch.finfo(torch.float32).eps / 2  # unit roundoff of float32


def _bound(x, w, add):
    """Higham's bound for a float32 dot product of length k plus one addition:
    |fl(x w + a) - (x w + a)| <= gamma_{k+1} (|x| |w| + |a|), gamma_n = n u / (1 - n u)."""
    n = x.shape[1] + 1
    gamma = n * U / (1 - n * U)
    size = x.double().abs() @ w.double().abs()
    if add is not None:
        size = size + add.double().abs()
    return gamma * size


def _operands(seed):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(37, 53, generator=g)
    w = torch.randn(29, 53, generator=g).T  # a transposed view, as Dense passes W^T
    bias = torch.randn(29, generator=g)
    full = torch.randn(37, 29, generator=g)
    return x, w, bias, full


@pytest.mark.parametrize("kind", ["onednn", "blas"])
@pytest.mark.parametrize("form", ["none", "bias", "expanded bias", "tensor"])
def test_matmul_add_is_within_float32_rounding_of_float64(kind, form):
    """x w + add on either kernel, for every form of ``add``, lies within the rounding bound of
    a float32 dot product of its length (a deterministic bound, not a tolerance)."""
    x, w, bias, full = _operands(0)
    add = {"none": None, "bias": bias, "expanded bias": bias.expand(37, -1), "tensor": full}[form]
    with torch.no_grad(), products.cpu_products(kind):
        got = products.matmul_add(x, w, add)
    exact = x.double() @ w.double() + (0 if add is None else add.double())
    assert got.shape == (37, 29) and got.dtype == torch.float32
    assert ((got.double() - exact).abs() <= _bound(x, w, add)).all()


def test_fused_kernel_runs_where_it_should(monkeypatch):
    """The oneDNN op is called for float32 CPU tensors without gradients and only then: not
    inside cpu_products("blas"), not while gradients are recorded (where the result carries
    them), not in float64."""
    calls = []
    real = products._LINEAR
    if real is None:
        pytest.skip("torch built without oneDNN")

    class Counting:
        def __call__(self, *args):
            calls.append("linear")
            return real(*args)

        def binary(self, *args):
            calls.append("binary")
            return real.binary(*args)

    monkeypatch.setattr(products, "_LINEAR", Counting())
    x, w, bias, full = _operands(1)
    with torch.no_grad():
        products.matmul_add(x, w, bias)
        products.matmul_add(x, w, full)
        assert calls == ["linear", "binary"]
        with products.cpu_products("blas"):
            products.matmul_add(x, w, bias)
        products.matmul_add(x.double(), w.double(), bias.double())
    assert len(calls) == 2
    wg = w.detach().clone().requires_grad_(True)
    out = products.matmul_add(x, wg, bias)
    assert len(calls) == 2 and out.requires_grad
    out.sum().backward()
    assert torch.allclose(wg.grad, x.sum(0, keepdim=True).T.expand_as(wg), atol=1e-4)


def test_cpu_products_restores_and_rejects_bad_input():
    with pytest.raises(ValueError, match="onednn"):
        with products.cpu_products("mkl"):
            pass
    with products.cpu_products("blas"):
        assert not products.fused_cpu_product(torch.zeros(2, 2))
    with torch.no_grad():
        assert products.fused_cpu_product(torch.zeros(2, 2)) == (products._LINEAR is not None)


def test_fused_write_natural_returns_a_tensor_of_its_own():
    """On the fused kernel ``write_natural_`` hands back the product's own output (the buffer is
    left alone); on BLAS it writes into the buffer. The same values either way to rounding, and
    each path equal to its ``natural``."""
    if products._LINEAR is None:
        pytest.skip("torch built without oneDNN")
    model = ebm.models.dbm([6, 5, 4], 0.5)
    state = samplers.BlockGibbs(model, generator=torch.Generator().manual_seed(0)).init(11)
    stats = model.statistics(state)
    with torch.no_grad():
        for b in model.blocks:
            buffer = torch.full((11, model.units[b].n), float("nan"))
            fused = model.write_natural_(b, stats, buffer)
            assert fused is not buffer and torch.isnan(buffer).all()
            with products.cpu_products("blas"):
                kept = model.write_natural_(b, stats, buffer)
            assert kept is buffer
            assert torch.allclose(fused, kept, rtol=0, atol=1e-5)
