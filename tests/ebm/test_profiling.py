"""``ebm.profiling``: the tensor-memory counts behind "no allocation in the hot loop", checked on
loops whose memory is known, and on the samplers' hot loops on the fused oneDNN products (which
make a new output per product, so only the peak, not the allocation count, can stay flat)."""

import torch

import ebm
import estimators
import samplers
from tests.helpers import random_rbm


def test_peak_counts_what_a_loop_keeps_and_not_what_it_frees():
    kept = []

    def keep(n):  # a leak: 4,000 bytes held per step
        for _ in range(n):
            kept.append(torch.empty(1000))

    def churn(n):  # two tensors made and dropped per step: at most three alive at once
        for _ in range(n):
            a = torch.empty(1000)
            b = a + 1
        return b

    assert ebm.profiling.tensor_memory(lambda: keep(5)).peak == 5 * 4000
    assert ebm.profiling.tensor_memory(lambda: keep(15)).peak == 15 * 4000
    short, long = (ebm.profiling.tensor_memory(lambda n=n: churn(n)) for n in (5, 15))
    assert short.peak == long.peak
    assert 2 * 4000 <= short.peak <= 3 * 4000 + 64
    assert sum(s == 4000 for s in long.allocations) == 3 * 10  # two a step, all counted
    assert sum(s == 4000 for s in short.allocations) == 10
    assert ebm.profiling.peak_tensor_memory(lambda: keep(2), "cpu") == 2 * 4000


def test_frees_of_tensors_made_before_the_run_do_not_lower_its_peak():
    """A tensor made under an earlier profile and freed in this one: the profiler reports its
    free, which must not offset what this run makes (2,000 bytes held at its peak)."""
    held = []
    ebm.profiling.tensor_memory(lambda: held.append(torch.empty(1000)))
    # freed first, then 500 floats made: without matching frees to allocations, 2,000 - 4,000
    run = ebm.profiling.tensor_memory(lambda: (held.clear(), held.append(torch.empty(500))))
    assert run.allocations == [2000]
    assert run.peak == 2000


def test_gibbs_run_on_fused_products_holds_a_steady_peak():
    """On the fused oneDNN products (the default on a float32 CPU) each sweep allocates the
    products' outputs, and frees as much: 60 sweeps peak at the same tensor memory as 5."""
    model = ebm.models.dbm([40, 30, 20], 0.3)
    gibbs = samplers.BlockGibbs(model, generator=torch.Generator().manual_seed(0))
    start = gibbs.init(64)
    runs = {n: ebm.profiling.tensor_memory(lambda n=n: gibbs.run(start, n)) for n in (5, 60)}
    if getattr(ebm.backend.backend_for(start["v"]), "fused", False):
        assert len(runs[60].allocations) > len(runs[5].allocations)  # it does allocate
    assert runs[60].peak == runs[5].peak


def test_ais_on_fused_products_holds_a_steady_peak():
    model = random_rbm(64, 32, scale=1.0, seed=0)

    def peak(num_betas):
        betas = estimators.schedules.linear(num_betas)  # made outside: its size is the run's
        return ebm.profiling.peak_tensor_memory(
            lambda: estimators.ais(
                model,
                256,
                betas=betas,
                progress=False,
                generator=torch.Generator().manual_seed(0),
            )
        )

    assert peak(60) == peak(20)
