"""ebm.backend: the seam, its choice, and the fast CPU backend against the reference."""

import pytest
import torch

import ebm
import samplers
from ebm.backend import onednn
from ebm.backend.cpu import CPUBackend

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


@pytest.mark.parametrize("grad", [False, True])
@pytest.mark.parametrize("form", ["none", "bias", "expanded bias", "tensor"])
def test_matmul_add_is_within_float32_rounding_of_float64(form, grad):
    """x w + add, fused (no gradient) or torch.mm then the addition (gradients recorded), for
    every form of ``add``, lies within the rounding bound of a float32 dot product of its length
    (a deterministic bound, not a tolerance)."""
    x, w, bias, full = _operands(0)
    add = {"none": None, "bias": bias, "expanded bias": bias.expand(37, -1), "tensor": full}[form]
    with torch.set_grad_enabled(grad):
        got = onednn.matmul_add(x, w, add)
    exact = x.double() @ w.double() + (0 if add is None else add.double())
    assert got.shape == (37, 29) and got.dtype == torch.float32
    assert ((got.double() - exact).abs() <= _bound(x, w, add)).all()


def test_fused_kernel_runs_where_it_should(monkeypatch):
    """The oneDNN op is called for float32 CPU tensors without gradients and only then: not
    while gradients are recorded (where the result carries them), not in float64."""
    calls = []
    real = onednn._LINEAR
    if real is None:
        pytest.skip("torch built without oneDNN")

    class Counting:
        def __call__(self, *args):
            calls.append("linear")
            return real(*args)

        def binary(self, *args):
            calls.append("binary")
            return real.binary(*args)

    monkeypatch.setattr(onednn, "_LINEAR", Counting())
    x, w, bias, full = _operands(1)
    with torch.no_grad():
        onednn.matmul_add(x, w, bias)
        onednn.matmul_add(x, w, full)
        assert calls == ["linear", "binary"]
        onednn.matmul_add(x.double(), w.double(), bias.double())
    assert len(calls) == 2
    wg = w.detach().clone().requires_grad_(True)
    out = onednn.matmul_add(x, wg, bias)
    assert len(calls) == 2 and out.requires_grad
    out.sum().backward()
    assert torch.allclose(wg.grad, x.sum(0, keepdim=True).T.expand_as(wg), atol=1e-4)


def test_the_choice_of_backend():
    """CPU tensors get the CPU backend where it verified itself (on this machine: both pieces);
    use_backend overrides the choice and restores it; unknown names are refused."""
    products, draws_ok, reasons = ebm.backend.check_cpu_backend()
    cpu = ebm.backend.backend_for(torch.zeros(2))
    assert isinstance(cpu, CPUBackend) or products == "blas" and not draws_ok, reasons
    if onednn.available():
        assert products == "onednn" and cpu.fused, reasons
    with ebm.backend.use_backend("torch"):
        assert type(ebm.backend.backend_for(torch.zeros(2))) is ebm.backend.TorchBackend
        with ebm.backend.use_backend("cpu-blas"):
            assert ebm.backend.backend_for(torch.device("cpu")).products == "blas"
        assert type(ebm.backend.backend_for(torch.zeros(2))) is ebm.backend.TorchBackend
    assert ebm.backend.backend_for(torch.zeros(2)) is cpu
    with pytest.raises(ValueError, match="unknown backend"):
        ebm.backend.get_backend("mkl")
    with pytest.raises(ValueError, match="onednn"):
        CPUBackend(products="mkl")


def test_a_failed_check_leaves_the_piece_off(monkeypatch):
    """A fused product that disagrees with the reference, or a draw kernel whose frequencies are
    off, is reported and not used."""
    from ebm.backend import select as backend

    monkeypatch.setattr(backend, "_fused_product_matches", lambda: False)
    monkeypatch.setattr(backend, "_draws_match", lambda: False)
    products, draws_ok, reasons = backend.check_cpu_backend()
    assert products == "blas" and not draws_ok
    assert len(reasons) == 2 and any("disagrees" in r or "no fused" in r for r in reasons)

    def broken():
        raise RuntimeError("schema changed")

    monkeypatch.setattr(backend, "_fused_product_matches", broken)
    monkeypatch.setattr(backend, "_draws_match", broken)
    products, draws_ok, reasons = backend.check_cpu_backend()
    assert products == "blas" and not draws_ok
    if onednn.available():
        assert any("failed its check (RuntimeError: schema changed)" in r for r in reasons)


def test_the_fused_product_is_checked_against_float64():
    if not onednn.available():
        pytest.skip("torch built without oneDNN")
    from ebm.backend import select as backend

    assert backend._fused_product_matches()
    assert backend._draws_match()


@pytest.mark.parametrize("kind", ["cpu", "cpu-blas"])
def test_split_energy_and_log_partition_equal_the_models(kind):
    """The CPU backend's E_rest and eta_u (kept buffers or not) and its in-place log-partition
    equal the model's plain ones to float32 rounding, and leave the state intact."""
    model = ebm.models.dbm([7, 6, 5], 0.5)
    state = samplers.BlockGibbs(model, generator=torch.Generator().manual_seed(0)).init(13)
    kept = {"v": state["v"], "h2": state["h2"]}
    before = {b: x.clone() for b, x in kept.items()}
    e_plain, eta_plain = model.split_energy(kept, ["h1"])
    backend = ebm.backend.get_backend(kind)
    store: dict = {}
    with torch.no_grad():
        for work in (None, store, store):  # without buffers, then making and reusing them
            e, eta = backend.split_energy(model, kept, ["h1"], work)
            assert torch.allclose(e, e_plain, rtol=1e-5, atol=1e-5)
            assert torch.allclose(eta["h1"], eta_plain["h1"], rtol=1e-5, atol=1e-5)
            a = backend.log_partition_(model.units["h1"], eta["h1"].clone())
            want = model.units["h1"].log_partition(eta_plain["h1"])
            assert torch.allclose(a, want, rtol=1e-5, atol=1e-5)
    assert all(torch.equal(kept[b], before[b]) for b in kept)


def test_fused_natural_returns_a_tensor_of_its_own():
    """On the fused kernel ``natural`` hands back the product's own output (the buffer given is
    left alone); on BLAS it writes into the buffer."""
    if not onednn.available():
        pytest.skip("torch built without oneDNN")
    model = ebm.models.dbm([6, 5, 4], 0.5)
    state = samplers.BlockGibbs(model, generator=torch.Generator().manual_seed(0)).init(11)
    stats = model.statistics(state)
    fused, blas = CPUBackend("onednn"), CPUBackend("blas")
    with torch.no_grad():
        for b in model.blocks:
            buffer = torch.full((11, model.units[b].n), float("nan"))
            got = fused.natural(model, b, stats, buffer)
            assert got is not buffer and torch.isnan(buffer).all()
            kept = blas.natural(model, b, stats, buffer)
            assert kept is buffer
            assert torch.allclose(got, kept, rtol=0, atol=1e-5)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_the_sparse_row_kernel_gives_the_models_natural_parameters_of_a_unit_class(dtype):
    """On an Ising grid with random couplings and fields, the CPU backend's natural parameters
    of each colour class (couplings from the numba row kernel) equal the model's own, for a few
    chains (one thread) and for many (the team)."""
    import networkx as nx

    from ebm.backend.reference import TorchBackend

    g = nx.grid_2d_graph(9, 7)
    gen = torch.Generator().manual_seed(0)
    for u, v in g.edges:
        g.edges[u, v]["weight"] = float(torch.randn(1, generator=gen))
    model = ebm.models.ising(g, field=torch.randn(63, generator=gen)).to(dtype)
    fast, reference = CPUBackend(), TorchBackend()
    for chains in (3, 3000):
        state = {"s": model.units["s"].random(chains, gen, dtype=dtype)}
        stats = model.statistics(state)
        for ((block, index),) in model.schedule:
            with torch.no_grad():
                got = fast.natural_units(model, block, index, stats)
                want = reference.natural_units(model, block, index, stats)
            torch.testing.assert_close(got, want)
