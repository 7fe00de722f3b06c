"""Export to thrml: the spin energy equals ours up to one constant on every state, thrml's block
Gibbs chains reproduce the exact joint distribution of small models, and unsupported models are
refused by name."""

import itertools

import pytest
import torch

pytest.importorskip("thrml")

import jax  # noqa: E402  (after the skip: thrml brings JAX)

import ebm  # noqa: E402
from ebm.thrml_export import to_thrml  # noqa: E402
from tests.helpers import (  # noqa: E402
    joint_states,
    noise_floor,
    random_rbm,
    randomize,
    total_variation,
)


def mixed_model(seed: int) -> ebm.EnergyModel:
    """Bernoulli and Spin blocks coupled every way (Bernoulli-Spin, Spin-Spin), with biases."""
    g = torch.Generator().manual_seed(seed)
    graph = ebm.Graph()
    graph.add_block("v", ebm.units.Bernoulli(3), visible=True)
    graph.add_block("s", ebm.units.Spin(3))
    graph.add_block("t", ebm.units.Spin(2))
    graph.add_factor(
        ebm.factors.Dense("v", "s", weight=torch.randn(3, 3, generator=g)),
        ebm.factors.Dense("t", "s", weight=torch.randn(2, 3, generator=g)),
        ebm.factors.Bias("v", torch.randn(3, generator=g)),
        ebm.factors.Bias("s", torch.randn(3, generator=g)),
        ebm.factors.Bias("t", torch.randn(2, generator=g)),
    )
    return ebm.EnergyModel(graph)


def unit_per_block_higher_order(n):
    """Sejnowski's machine over n units declared one block per unit: a ThirdOrder factor per
    triple, a Dense factor per pair, a Bias per unit."""
    graph = ebm.Graph()
    names = [f"s{i}" for i in range(n)]
    for name in names:
        graph.add_block(name, ebm.units.Bernoulli(1), visible=True)
    for i, j, k in itertools.combinations(range(n), 3):
        graph.add_factor(ebm.factors.ThirdOrder(names[i], names[j], names[k]))
    for i, j in itertools.combinations(range(n), 2):
        graph.add_factor(ebm.factors.Dense(names[i], names[j]))
    graph.add_factor(*(ebm.factors.Bias(name) for name in names))
    return ebm.EnergyModel(graph)


MODELS = {
    "rbm": lambda: random_rbm(6, 4, 1.5, seed=0),
    "dbm": lambda: randomize(ebm.models.dbm([3, 3, 2, 2]), 1.5, seed=1),
    "mixed": lambda: mixed_model(2),
    "gated": lambda: randomize(ebm.models.gated_rbm(3, 3, 2, 2), 0.8, seed=3),
    "higher_order": lambda: randomize(unit_per_block_higher_order(4), 0.8, seed=4),
}


def _index(model, state) -> torch.Tensor:
    """A joint state's index (every unit one bit: 1 for the high value, model block order)."""
    bits = torch.cat([state[b] == model.units[b].high for b in model.blocks], 1).long()
    return (bits << torch.arange(bits.shape[1])).sum(1)


def _exact(model) -> tuple[dict, torch.Tensor]:
    """Every joint state (float64) and the exact distribution p, indexed by ``_index``."""
    model = model.double()
    states = joint_states(model)
    with torch.no_grad():
        p = torch.softmax(-model.energy(states), 0)
    exact = torch.empty_like(p)
    exact[_index(model, states)] = p
    return states, exact


@pytest.mark.parametrize("name", list(MODELS))
def test_spin_energy_equals_ours_up_to_the_constant(name):
    model = MODELS[name]().double()
    exported = to_thrml(model)
    states = joint_states(model)
    with torch.no_grad():
        ours = model.energy(states)
    blocks = [exported.nodes[b] for b in exported.order]
    spins = exported.from_ebm_state(states)
    theirs = jax.vmap(lambda *s: exported.ebm.energy(list(s), blocks))(*spins)
    theirs = torch.tensor(jax.device_get(theirs).tolist(), dtype=torch.float64)
    torch.testing.assert_close(ours, theirs + exported.constant, atol=1e-4, rtol=1e-5)
    back = exported.to_ebm_state(spins)
    assert all(torch.equal(back[b], states[b]) for b in model.blocks)


@pytest.mark.parametrize("name", ["rbm", "dbm", "mixed", "gated"])
def test_thrml_chains_match_the_exact_distribution(name):
    """20,000 independent thrml chains after 300 sweeps of block Gibbs in the model's schedule:
    the total variation of their joint histogram to the exact distribution (enumerated with
    ``model.energy`` in float64) is within the largest of 200 replicates of as many exact draws."""
    model = MODELS[name]()
    states, exact = _exact(model)
    assert float(torch.topk(exact, 2).values.sum()) < 0.9  # no dominant state: a test of mixing
    n = 20_000
    floor = noise_floor(exact, n, seed=5)
    exported = to_thrml(model)
    assert exported.schedule == model.schedule
    state = exported.run(jax.random.key(7), exported.init(jax.random.key(6), n), 300)
    sample = exported.to_ebm_state(state)
    assert {b: tuple(x.shape) for b, x in sample.items()} == {
        b: (n, model.units[b].n) for b in model.blocks
    }
    tv = total_variation(torch.bincount(_index(model, sample), minlength=len(exact)), exact)
    print(f"{name}: TV {tv:.4f}, noise floor {floor:.4f} ({len(exact)} states)")
    assert tv <= floor


def test_unsupported_models_are_refused_by_name():
    with pytest.raises(ValueError, match=r"block 'v' \(Gaussian units\)"):
        to_thrml(ebm.models.gaussian_rbm(3, 2))
    graph = ebm.Graph()
    graph.add_block("a", ebm.units.Bernoulli(4), visible=True)
    graph.add_block("b", ebm.units.Bernoulli(2))
    graph.add_factor(ebm.factors.TiedDense("a", "b", copies_a=2, name="tied"))
    with pytest.raises(ValueError, match=r"factor 'tied' \(TiedDense\)"):
        to_thrml(ebm.EnergyModel(graph))
    with pytest.raises(ValueError, match=r"factor 'triples' \(HigherOrder\)"):
        to_thrml(ebm.models.higher_order_bm(4))
