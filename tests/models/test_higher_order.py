"""Sejnowski's higher-order Boltzmann machine: one block of units with its terms as tensors, the
unit-level colouring, and exact checks of its energy, log Z, Gibbs sampler, AIS and training."""

import itertools

import networkx as nx
import pytest
import torch

import ebm
import estimators
import samplers
from tests.helpers import brute_log_z, noise_floor, randomize, total_variation

N = 6


def random_hobm(seed, scale=1.0, **kwargs):
    return randomize(ebm.models.higher_order_bm(N, **kwargs), scale, seed)


def sejnowski_energy(model, s):
    """-sum w_ijk s_i s_j s_k - sum w_ij s_i s_j - sum theta_i s_i, by loops over the default
    terms (every triple and pair, in itertools order) and the factors' weight tensors."""
    out = torch.zeros(s.shape[0], dtype=torch.float64)
    triples = model.factors["triples"].weight.detach().double()
    pairs = model.factors["pairs"].weight.detach().double()
    for w, (i, j, k) in zip(triples, itertools.combinations(range(N), 3), strict=True):
        out -= w * s[:, i] * s[:, j] * s[:, k]
    for w, (i, j) in zip(pairs, itertools.combinations(range(N), 2), strict=True):
        out -= w * s[:, i] * s[:, j]
    return out - s @ model.factors["theta"].bias.detach().double()


def _all_states():
    return torch.tensor(list(itertools.product([0.0, 1.0], repeat=N)), dtype=torch.float64)


def test_energy_is_sejnowskis_and_log_z_is_exact():
    model = random_hobm(0)
    s = _all_states()
    torch.testing.assert_close(
        model.energy({"s": s.float()}).double(),
        sejnowski_energy(model, s),
        rtol=0,
        atol=1e-5,
    )
    assert estimators.exact_log_z(model).value == pytest.approx(brute_log_z(model), abs=1e-9)
    truth = float(torch.logsumexp(-sejnowski_energy(model, s), 0))
    assert brute_log_z(model) == pytest.approx(truth, abs=1e-9)


def test_schedule_is_a_colouring_of_the_unit_graph():
    full = ebm.models.higher_order_bm(N)
    assert len(full.schedule) == N  # every pair of units shares a triple
    sparse = ebm.models.higher_order_bm(N, triples=[(0, 1, 2), (3, 4, 5), (2, 3, 4)], pairs=[])
    units = nx.Graph()
    units.add_nodes_from(range(N))
    for t in [(0, 1, 2), (3, 4, 5), (2, 3, 4)]:
        units.add_edges_from(itertools.combinations(t, 2))
    members = [index.tolist() for group in sparse.schedule for _, index in group]
    for group in members:  # each colour class is an independent set of units
        assert not any(units.has_edge(a, b) for a, b in itertools.combinations(group, 2))
    assert sorted(u for group in members for u in group) == list(units.nodes)
    assert len(sparse.schedule) == 3
    with pytest.raises(ValueError, match=r"\(0, 0, 1\) repeats a unit"):
        ebm.models.higher_order_bm(N, triples=[(0, 0, 1)])


def test_a_model_of_300_units_builds_fast_and_matches_its_given_weights():
    """300 units, 3,000 triples and 1,500 pairs with given weights: one block, three factors,
    the energy of a random state equal to the explicit sums."""
    g = torch.Generator().manual_seed(0)
    triples = torch.stack([torch.randperm(300, generator=g)[:3] for _ in range(3000)])
    pairs = torch.stack([torch.randperm(300, generator=g)[:2] for _ in range(1500)])
    triples = torch.unique(triples.sort(1).values, dim=0)
    pairs = torch.unique(pairs.sort(1).values, dim=0)
    tw = torch.randn(len(triples), generator=g, dtype=torch.float64)
    pw = torch.randn(len(pairs), generator=g, dtype=torch.float64)
    model = ebm.models.higher_order_bm(
        300, triples=triples, pairs=pairs, triple_weight=tw, pair_weight=pw
    )
    assert list(model.factors) == ["triples", "pairs", "theta"]
    s = torch.randint(0, 2, (4, 300), generator=g).double()
    expected = -(s[:, triples].prod(-1) @ tw) - (s[:, pairs].prod(-1) @ pw)
    torch.testing.assert_close(model.energy({"s": s}), expected)


def test_gibbs_histogram_and_ais_match_the_exact_distribution():
    """20,000 chains after 100 sweeps: total variation to the exact distribution (64 states) within
    the largest of 200 replicates of as many exact draws; AIS within 3 standard errors of the
    exact log Z."""
    model = random_hobm(1, scale=1.0)
    s = _all_states()
    p = torch.softmax(-sejnowski_energy(model, s), 0)
    assert float(torch.topk(p, 2).values.sum()) < 0.9
    n, g = 20_000, torch.Generator().manual_seed(2)
    floor = noise_floor(p, n, seed=2)
    gibbs = samplers.BlockGibbs(model, generator=g)
    state = gibbs.run(gibbs.init(n), 100)
    bits = state["s"].round().long()
    index = (bits * (2 ** torch.arange(N - 1, -1, -1))).sum(1)  # itertools.product order
    assert total_variation(torch.bincount(index, minlength=64), p) <= floor
    est = estimators.ais(
        model,
        num_chains=500,
        betas=estimators.schedules.linear(300),
        generator=torch.Generator().manual_seed(3),
        progress=False,
    )
    assert abs(est.value - estimators.exact_log_z(model).value) < 3 * est.stderr


def test_pcd_training_raises_the_exact_likelihood():
    teacher = random_hobm(4, scale=1.5)
    draws = estimators.exact_samples(teacher, 600, generator=torch.Generator().manual_seed(5))
    data = {b: draws[b] for b in teacher.visible}
    student = random_hobm(6, scale=0.01)

    def exact_ll(m):
        return estimators.log_likelihood(m, data, estimators.exact_log_z(m)).value

    before, best = exact_ll(student), exact_ll(teacher)
    ebm.fit(
        student,
        data,
        samplers.PCD(num_chains=200),
        epochs=40,
        batch_size=60,
        lr=0.1,
        generator=torch.Generator().manual_seed(7),
        progress=False,
    )
    after = exact_ll(student)  # here -4.22 -> -1.218; the teacher's own -1.217
    assert after > before + 0.3
    assert after > best - 0.2
