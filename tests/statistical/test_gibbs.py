import math

import pytest
import torch

import ebm
import samplers
from tests.helpers import joint_states, random_rbm

NUM_CHAINS = 20_000


def _index(state, blocks):
    """Integer code of each joint configuration (binary units, first unit least significant)."""
    bits = torch.cat([state[b] for b in blocks], 1).round().long()
    return (bits << torch.arange(bits.shape[1])).sum(1)


def _exact_joint(model):
    states = joint_states(model, ["v", "h"])
    with torch.no_grad():
        logp = -model.double().energy(states)
    model.float()
    p = torch.softmax(logp, 0)
    order = _index(states, ["v", "h"])
    out = torch.empty_like(p)
    out[order] = p
    return out


def _noise_floor(p, n, replicates=200, seed=123):
    """Largest total variation to p among ``replicates`` sets of n exact draws."""
    g = torch.Generator().manual_seed(seed)
    tvs = []
    for _ in range(replicates):
        draws = torch.multinomial(p, n, replacement=True, generator=g)
        emp = torch.bincount(draws, minlength=p.numel()).double() / n
        tvs.append(0.5 * float((emp - p).abs().sum()))
    return max(tvs), sum(tvs) / len(tvs)


def _gibbs_tv(model, p, sweeps, seed):
    gibbs = samplers.BlockGibbs(model)
    state = gibbs.init(NUM_CHAINS, generator=torch.Generator().manual_seed(seed))
    state = gibbs.run(state, sweeps)
    emp = torch.bincount(_index(state, ["v", "h"]), minlength=p.numel()).double() / NUM_CHAINS
    return 0.5 * float((emp - p).abs().sum())


@pytest.mark.parametrize("kind", ["cpu", "torch"])
@pytest.mark.parametrize("seed", [0, 1])
def test_gibbs_histogram_matches_exact_distribution(seed, kind):
    """Independent chains on a multimodal 8x4 RBM: the joint histogram of (v, h) after burn-in is
    within the total variation that exact draws of the same size show (their maximum over 200
    replicates); a model with slightly different weights is not. On the fast CPU backend (fused
    oneDNN products, the numba draw kernel) and on the reference backend (``ebm.backend``)."""
    model = random_rbm(8, 4, scale=2.0, seed=seed)
    p = _exact_joint(model)
    top = torch.topk(p, 2).values
    assert float(top.sum()) < 0.9  # not a single dominant state: a real test of mixing
    floor, typical = _noise_floor(p, NUM_CHAINS)
    with ebm.backend.use_backend(kind):
        tv = _gibbs_tv(model, p, sweeps=200, seed=seed)
        assert tv <= floor, (tv, floor, typical)
        # power: a model whose weights are off by 0.2 is detected at the same sample size
        wrong = random_rbm(8, 4, scale=2.0, seed=seed)
        with torch.no_grad():
            wrong.factors["dense_v_h"].weight.add_(0.2)
        assert _gibbs_tv(wrong, p, sweeps=200, seed=seed) > floor


def test_clamped_block_never_changes_and_free_block_follows_conditional():
    model = random_rbm(6, 4, scale=1.5, seed=3)
    v = torch.tensor([1.0, 0, 1, 1, 0, 0])
    gibbs = samplers.BlockGibbs(model, clamp={"v": v})
    state = gibbs.init(5000, generator=torch.Generator().manual_seed(0))
    mean_h = samplers.RunningMean("h")
    seen_v = samplers.RunningMean(fn=lambda s: (s["v"] != v).any(1).double())
    state = gibbs.run(state, 20, observers=[mean_h, seen_v])
    assert torch.equal(state["v"], v.expand(5000, 6))
    assert float(seen_v.mean.sum()) == 0.0
    exact = model.conditional("h", {"v": v.unsqueeze(0)}).mean[0].double().detach()
    n = 5000 * 20  # sweeps are independent draws here: h | v is sampled afresh every sweep
    se = (exact * (1 - exact) / n).sqrt()
    assert ((mean_h.mean.mean(0) - exact).abs() < 5 * se).all()


def test_clamp_by_name_uses_given_values():
    model = random_rbm(4, 3, scale=1.0, seed=0)
    gibbs = samplers.BlockGibbs(model, clamp=["v"])
    with pytest.raises(ValueError, match="clamped but no value"):
        gibbs.init(3)
    vs = torch.tensor([[1.0, 0, 0, 1], [0, 0, 0, 0], [1, 1, 1, 1]])
    state = gibbs.run(gibbs.init(3, values={"v": vs}), 5)
    assert torch.equal(state["v"], vs)
    with pytest.raises(ValueError, match="unknown block"):
        samplers.BlockGibbs(model, clamp=["x"])


def test_fixed_seed_reproduces_chains():
    model = random_rbm(5, 3, scale=1.0, seed=0)
    runs = []
    for seed in (7, 7, 8):
        gibbs = samplers.BlockGibbs(model)
        runs.append(gibbs.run(gibbs.init(10, generator=torch.Generator().manual_seed(seed)), 10))
    assert torch.equal(runs[0]["v"], runs[1]["v"]) and torch.equal(runs[0]["h"], runs[1]["h"])
    assert not torch.equal(runs[0]["v"], runs[2]["v"])


def test_trace_observer_and_bad_input():
    model = random_rbm(3, 2, scale=1.0, seed=0)
    gibbs = samplers.BlockGibbs(model, generator=torch.Generator().manual_seed(0))
    trace = samplers.Trace(lambda s: s["v"].sum(1), every=2)
    gibbs.run(gibbs.init(4), 10, observers=[trace])
    assert trace.values.shape == (5, 4)
    with pytest.raises(ValueError, match="num_chains"):
        gibbs.init(0)
    assert math.isfinite(float(trace.values.float().mean()))


MODELS_FOR_RUN = {
    # dense and bias factors, every block binary: drawn in place by the CPU kernel
    "rbm": lambda: ebm.models.rbm(7, 5, init_scale=0.5),
    "dbm": lambda: ebm.models.dbm([6, 5, 4, 3], 0.5),
    # the factored three-way factor and its cache of factor activities
    "gated": lambda: ebm.models.gated_rbm(4, 3, 5, 6, init_scale=0.5),
    # Gaussian visibles, drawn into new tensors by their unit type
    "gaussian": lambda: ebm.models.gaussian_rbm(5, 4, init_scale=0.3),
    # a factor quadratic in v (a precision): v is drawn as in step
    "mcrbm": lambda: ebm.models.mcrbm(4, 3, 2, 3, init_scale=0.3),
    # one block per unit, triple factors through the default (autograd) natural parameters
    "higher-order": lambda: ebm.models.higher_order_bm(5, init_scale=0.5),
}


@pytest.mark.parametrize("kind", ["cpu", "cpu-blas", "torch"])
@pytest.mark.parametrize("name", sorted(MODELS_FOR_RUN))
def test_run_draws_what_step_draws_and_never_writes_its_input(name, kind):
    """``run(state, n)`` gives the chains of n calls of ``step``, draw for draw from the same
    seed, although it computes natural parameters and draws into buffers of its own; the state
    passed in is left as it was. On every backend (``ebm.backend``)."""
    torch.manual_seed(0)
    with ebm.backend.use_backend(kind):
        _check_run_draws_what_step_draws(name)


def _check_run_draws_what_step_draws(name):
    model = MODELS_FOR_RUN[name]()
    stepping = samplers.BlockGibbs(model, generator=torch.Generator().manual_seed(5))
    running = samplers.BlockGibbs(model, generator=torch.Generator().manual_seed(5))
    start = stepping.init(30)
    running.init(30)  # the same draws from the second generator, to keep the two in step
    before = {b: x.clone() for b, x in start.items()}
    stepped = start
    for _ in range(12):
        stepped, _ = stepping.step(stepped)
    ran = running.run(start, 12)
    for b in model.blocks:
        assert torch.equal(ran[b], stepped[b]), b
        assert torch.equal(start[b], before[b]), b


def test_run_reuses_two_buffers_per_block_and_trace_keeps_copies():
    """With products that write into given tensors (the CPU backend on BLAS), after its
    first sweep ``run`` draws every binary block of a DBM into one of two buffers (so the hot
    loop allocates nothing of a block's size), and ``Trace`` keeps copies, not the live
    buffers."""
    model = ebm.models.dbm([6, 5, 4], 0.5)
    gibbs = samplers.BlockGibbs(model, generator=torch.Generator().manual_seed(0))
    pointers = {b: set() for b in model.blocks}

    def record(state, sweep):
        if sweep > 0:
            for b in model.blocks:
                pointers[b].add(state[b].data_ptr())

    trace = samplers.Trace(lambda s: s["h1"])
    with ebm.backend.use_backend("cpu-blas"):
        gibbs.run(gibbs.init(40), 20, observers=[record, trace])
    assert all(len(p) == 2 for p in pointers.values()), pointers
    draws = trace.values
    assert draws.shape == (20, 40, 5)
    assert len({tuple(d.flatten().tolist()) for d in draws}) == 20  # not one buffer seen 20 times


@pytest.mark.parametrize("kind", ["cpu", "cpu-blas"])
@pytest.mark.parametrize("name", sorted(MODELS_FOR_RUN))
def test_the_cpu_backends_natural_parameters_are_the_models(name, kind):
    """The fast CPU backend's natural parameters (fused products, or products written into the
    given tensor) equal ``EnergyModel.natural`` to float32 rounding, for every block linear in
    its factors; on BLAS they are written into the tensor given."""
    torch.manual_seed(1)
    model = MODELS_FOR_RUN[name]()
    state = samplers.BlockGibbs(model, generator=torch.Generator().manual_seed(2)).init(9)
    stats = model.statistics(state)
    backend = ebm.backend.get_backend(kind)
    with torch.no_grad():
        for b in model.blocks:
            if model.quadratic_factors(b):
                continue
            want = model.natural(b, state)
            out = torch.full_like(want, float("nan"))
            got = backend.natural(model, b, stats, out)
            assert torch.allclose(got, want, rtol=1e-5, atol=1e-5), b
            if kind == "cpu-blas":
                assert got is out, b
