"""The one block Gibbs update (``samplers.sweep``): its draws follow the tempered, base-mixed
conditional exactly (histograms against enumeration), the allocation-free path draws the same
values bit for bit, and a per-row beta is the same as one sweep per temperature."""

import pytest
import torch

import ebm
from ebm.enumeration import state_index
from samplers.sweep import gibbs_sweep
from tests.helpers import joint_states, noise_floor, random_rbm, total_variation


def _tempered_joint(model, beta, base_v):
    """Exact p_beta(v, h) ∝ exp(-beta E(v, h) + (1 - beta) a.v) over every joint state, in the
    order of ``state_index`` over (v, h)."""
    states = {b: x.to(model.dtype) for b, x in joint_states(model, ["v", "h"]).items()}
    with torch.no_grad():
        energy = model.energy(states).double()
    log_p = -beta * energy + (1 - beta) * (states["v"].double() @ base_v)
    order = state_index(model, ["v", "h"], states)
    p = torch.softmax(log_p, 0)
    return torch.zeros_like(p).index_copy_(0, order, p)


def test_a_tempered_sweep_with_a_base_samples_its_exact_distribution():
    """4,000 independent chains, 60 sweeps at beta = 0.4 with a base over v: the histogram of the
    final joint states lies within the noise floor of as many exact draws."""
    model = random_rbm(4, 3, scale=1.5, seed=0)
    base_v = torch.tensor([1.0, -2.0, 0.5, 0.0])
    g = torch.Generator().manual_seed(1)
    n = 4000
    state = {b: model.units[b].random(n, g) for b in model.blocks}
    for _ in range(60):
        state = gibbs_sweep(model, state, model.schedule, g, beta=0.4, base={"v": base_v})
    p = _tempered_joint(model, 0.4, base_v.double())
    counts = torch.bincount(state_index(model, ["v", "h"], state), minlength=len(p))
    assert total_variation(counts, p) <= noise_floor(p, n)


def test_the_allocation_free_path_draws_the_same_values():
    """With a work dict (buffers kept from sweep to sweep) the draws equal those of the plain
    path bit for bit, for a float beta with a base and for a beta per row, forward and reversed;
    the input state is never written to."""
    model = random_rbm(6, 5, scale=1.0, seed=2)
    start = {b: model.units[b].random(8, torch.Generator().manual_seed(3)) for b in model.blocks}
    kept = {b: x.clone() for b, x in start.items()}
    settings = [
        {"beta": 0.3, "base": {"v": torch.randn(6, generator=torch.Generator().manual_seed(4))}},
        {"beta": torch.linspace(0.0, 1.0, 8)},
        {"beta": 1.0, "reverse": True},
    ]
    for kw in settings:
        plain, fast, work = dict(start), dict(start), {}
        g1, g2 = torch.Generator().manual_seed(5), torch.Generator().manual_seed(5)
        for _ in range(5):
            plain = gibbs_sweep(model, plain, model.schedule, g1, **kw)
            fast = gibbs_sweep(model, fast, model.schedule, g2, work=work, **kw)
            for b in model.blocks:
                assert torch.equal(plain[b], fast[b]), (kw, b)
    for b in model.blocks:
        assert torch.equal(start[b], kept[b])


def test_a_beta_per_row_is_one_sweep_per_temperature():
    """Rows at beta_i draw what a sweep of those rows at the float beta_i draws, given the same
    uniforms: checked by comparing the conditional probabilities the rows are drawn from."""
    model = random_rbm(5, 4, scale=1.0, seed=6)
    betas = torch.tensor([0.0, 0.25, 1.0])
    state = {b: model.units[b].random(3, torch.Generator().manual_seed(7)) for b in model.blocks}
    stats = model.statistics(state)
    eta = model.natural("h", state, stats)
    for i, beta in enumerate(betas.tolist()):
        row = {b: x[i : i + 1] for b, x in state.items()}
        one = model.natural("h", row, model.statistics(row)) * beta
        assert torch.allclose(eta[i : i + 1] * betas[i], one)
    # the same draws: a per-row sweep equals per-temperature sweeps when each row uses the same
    # uniforms, which for a single row per temperature means the same generator state
    for i, beta in enumerate(betas.tolist()):
        row = {b: x[i : i + 1] for b, x in state.items()}
        a = gibbs_sweep(model, row, model.schedule, torch.Generator().manual_seed(8), beta=beta)
        b = gibbs_sweep(
            model, row, model.schedule, torch.Generator().manual_seed(8), beta=betas[i : i + 1]
        )
        for blk in model.blocks:
            assert torch.equal(a[blk], b[blk])


def test_colour_classes_of_some_units_of_a_block_sample_the_exact_distribution():
    """A schedule that draws v's even units, then its odd units, then h (each class units that
    share no factor term, so each is drawn from its own conditional): 4,000 chains after 60
    sweeps at beta = 0.4 with a base lie within the noise floor of as many exact draws, and a
    class never changes the units it does not name."""
    model = random_rbm(4, 3, scale=1.5, seed=0)
    base_v = torch.tensor([1.0, -2.0, 0.5, 0.0])
    classes = [[("v", [0, 2])], [("v", torch.tensor([1, 3]))], ["h"]]
    g = torch.Generator().manual_seed(1)
    n = 4000
    state = {b: model.units[b].random(n, g) for b in model.blocks}
    one = gibbs_sweep(model, state, classes[:1], g, beta=0.4, base={"v": base_v})
    assert torch.equal(one["v"][:, [1, 3]], state["v"][:, [1, 3]])
    assert torch.equal(one["h"], state["h"])
    for _ in range(60):
        state = gibbs_sweep(model, state, classes, g, beta=0.4, base={"v": base_v})
    p = _tempered_joint(model, 0.4, base_v.double())
    counts = torch.bincount(state_index(model, ["v", "h"], state), minlength=len(p))
    assert total_variation(counts, p) <= noise_floor(p, n)


def test_a_colour_class_of_units_is_checked():
    model = random_rbm(4, 3, scale=1.0, seed=0)
    state = {b: model.units[b].random(5, torch.Generator().manual_seed(0)) for b in model.blocks}
    with pytest.raises(ValueError, match="units 0 to 3"):
        gibbs_sweep(model, state, [[("v", [4])]])
    with pytest.raises(ValueError, match="unknown block 'x'"):
        gibbs_sweep(model, state, [[("x", [0])]])
    gaussian = ebm.models.mcrbm(4, 3, 2, 3, init_scale=0.3)
    g_state = {b: gaussian.units[b].random(5) for b in gaussian.blocks}
    with pytest.raises(ValueError, match="quadratic term"):
        gibbs_sweep(gaussian, g_state, [[("v", [0])]])
