"""Unit-level graphs: factors that couple the units of one block (Pairwise within a block,
HigherOrder), the unit colouring of the schedule, and block Gibbs on it, against brute force."""

import itertools

import pytest
import torch

import ebm
import estimators
import samplers
from ebm.enumeration import state_index
from tests.helpers import brute_log_z, joint_states, noise_floor, total_variation


def _random_terms(n, k, m, seed):
    combos = list(itertools.combinations(range(n), k))
    g = torch.Generator().manual_seed(seed)
    pick = torch.randperm(len(combos), generator=g)[:m]
    return [combos[i] for i in pick.tolist()]


def _brute_energy(units, pairs, pair_w, triples, triple_w, bias, x):
    """E(x) by explicit loops over the terms (independent of the factors' tensor code)."""
    e = torch.zeros(x.shape[0], dtype=torch.float64)
    for (i, j), w in zip(pairs, pair_w.tolist(), strict=True):
        e -= w * x[:, i] * x[:, j]
    for (i, j, k), w in zip(triples, triple_w.tolist(), strict=True):
        e -= w * x[:, i] * x[:, j] * x[:, k]
    return e - x @ bias


def _model(units, n, pairs, triples, seed):
    g = torch.Generator().manual_seed(seed)
    pair_w = torch.randn(len(pairs), generator=g, dtype=torch.float64)
    triple_w = torch.randn(len(triples), generator=g, dtype=torch.float64)
    bias = 0.5 * torch.randn(n, generator=g, dtype=torch.float64)
    graph = ebm.Graph()
    graph.add_block("s", units(n))
    graph.add_factor(ebm.factors.Pairwise("s", edges=pairs, weight=pair_w))
    graph.add_factor(ebm.factors.HigherOrder("s", terms=triples, weight=triple_w))
    graph.add_factor(ebm.factors.Bias("s", bias=bias))
    return ebm.EnergyModel(graph), (pair_w, triple_w, bias)


@pytest.mark.parametrize("units", [ebm.units.Bernoulli, ebm.units.Spin])
def test_energy_natural_parameters_and_log_z_against_brute_force(units):
    """A random model of 7 units with 8 pairs and 6 triples: energies on every state equal the
    explicit sums over the terms; every unit's natural parameter is E(x with unit i at 0) -
    E(x with unit i at 1) statistics-wise (exactly -dE/dt_i), for the whole block and for any
    subset; exact log Z equals brute force."""
    n = 7
    pairs = _random_terms(n, 2, 8, seed=1)
    triples = _random_terms(n, 3, 6, seed=2)
    model, (pw, tw, bias) = _model(units, n, pairs, triples, seed=3)
    x = joint_states(model)["s"]
    torch.testing.assert_close(
        model.energy({"s": x}), _brute_energy(units, pairs, pw, triples, tw, bias, x)
    )
    eta = model.natural("s", {"s": x})
    for i in range(n):
        t1, t0 = x.clone(), x.clone()
        t1[:, i], t0[:, i] = 1.0, 0.0
        slope = _brute_energy(units, pairs, pw, triples, tw, bias, t0) - _brute_energy(
            units, pairs, pw, triples, tw, bias, t1
        )
        torch.testing.assert_close(eta[:, i], slope)
    index = torch.tensor([5, 0, 3])
    with torch.no_grad():
        torch.testing.assert_close(model.natural_units("s", index, {"s": x}), eta[:, index])
    assert estimators.exact_log_z(model).value == pytest.approx(brute_log_z(model), abs=1e-9)


def test_the_schedule_colours_the_units():
    """Units of one class share no term; every unit is in exactly one class; a grid is
    bipartite, so it takes two classes."""
    n = 9
    pairs = _random_terms(n, 2, 10, seed=4)
    triples = _random_terms(n, 3, 4, seed=5)
    model, _ = _model(ebm.units.Spin, n, pairs, triples, seed=6)
    coupled = {frozenset(p) for p in pairs}
    coupled |= {frozenset(p) for t in triples for p in itertools.combinations(t, 2)}
    seen = []
    for group in model.schedule:
        ((block, index),) = group
        assert block == "s"
        units = index.tolist()
        seen += units
        assert not any(frozenset(p) in coupled for p in itertools.combinations(units, 2))
    assert sorted(seen) == list(range(n))
    grid = ebm.models.ising(__import__("networkx").grid_2d_graph(4, 5), coupling=0.3)
    assert len(grid.schedule) == 2


@pytest.mark.parametrize("backend", ["torch", "cpu"])
def test_block_gibbs_on_unit_classes_samples_the_exact_distribution(backend):
    """4,000 chains, 40 sweeps of BlockGibbs.run (kept buffers) on a random 7-unit model of
    pairs and triples: the histogram lies within the noise floor of as many exact draws."""
    n = 7
    model, _ = _model(
        ebm.units.Spin, n, _random_terms(n, 2, 9, seed=7), _random_terms(n, 3, 5, seed=8), seed=9
    )
    model = model.float()
    x = joint_states(model)["s"].float()
    with torch.no_grad():
        p = torch.softmax(-model.energy({"s": x}).double(), 0)
    order = state_index(model, ["s"], {"s": x})
    p = torch.zeros_like(p).index_copy_(0, order, p)
    sampler = samplers.BlockGibbs(model, generator=torch.Generator().manual_seed(10))
    state = sampler.init(4000)
    with ebm.backend.use_backend(backend):
        state = sampler.run(state, 40)
    counts = torch.bincount(state_index(model, ["s"], state), minlength=len(p))
    assert total_variation(counts, p) <= noise_floor(p, 4000)


def test_terms_that_repeat_a_unit_or_come_twice_are_refused():
    with pytest.raises(ValueError, match=r"term 1 \(2, 2\) repeats a unit"):
        ebm.factors.Pairwise("s", edges=[(0, 1), (2, 2)])
    with pytest.raises(ValueError, match=r"units \(0, 1\) is given 2 times"):
        ebm.factors.Pairwise("s", edges=[(0, 1), (1, 0)])
    with pytest.raises(ValueError, match=r"\(3, 1, 3\) repeats a unit"):
        ebm.factors.HigherOrder("s", terms=[(0, 1, 2), (3, 1, 3)])
    graph = ebm.Graph()
    graph.add_block("s", ebm.units.Spin(3))
    with pytest.raises(ValueError, match="names a unit of block 's', which has 3 units"):
        graph.add_factor(ebm.factors.HigherOrder("s", terms=[(0, 1, 3)]))


def test_a_block_with_coupled_units_is_not_drawn_or_summed_as_a_whole():
    model, _ = _model(ebm.units.Spin, 4, [(0, 1)], [(1, 2, 3)], seed=0)
    state = {"s": model.units["s"].random(3)}
    with pytest.raises(ValueError, match="couples the units of block 's'"):
        model.sample_block("s", state)
    with pytest.raises(ValueError, match="cannot be summed out analytically"):
        model.free_energy({})


def _glass(rows, cols, seed, field_scale=1.0):
    """A +-J spin glass on an open grid with N(0, field_scale^2) fields."""
    import networkx as nx

    g = nx.grid_2d_graph(rows, cols)
    gen = torch.Generator().manual_seed(seed)
    for u, v in g.edges:
        g.edges[u, v]["J"] = float(torch.randint(0, 2, (1,), generator=gen)) * 2 - 1
    for v in g.nodes:
        g.nodes[v]["h"] = field_scale * float(torch.randn(1, generator=gen, dtype=torch.float64))
    return ebm.models.ising(g, coupling="J", field="h")


def test_elimination_over_units_equals_brute_force():
    """Variable elimination sums units, not blocks, where a block's units are coupled: a random
    model of pairs and triples, a semi-restricted BM (one coupled block beside a whole one) and
    a Potts model (vector statistics), each equal to brute-force enumeration."""
    import networkx as nx

    n = 7
    model, _ = _model(
        ebm.units.Spin, n, _random_terms(n, 2, 9, seed=11), _random_terms(n, 3, 5, seed=12), seed=13
    )
    srbm = ebm.models.semi_restricted_bm(5, 3, lateral=[(0, 1), (1, 2), (3, 4), (0, 4)])
    potts = ebm.models.potts(nx.cycle_graph(5), q=3, coupling=0.7, field=torch.randn(5, 3))
    for m in (model, srbm, potts):
        with torch.no_grad():
            for p in m.parameters():
                p.copy_(torch.randn(p.shape, generator=torch.Generator().manual_seed(14)))
        got = estimators.elimination_log_z(m)
        assert got.value == pytest.approx(brute_log_z(m), abs=1e-9)


def test_elimination_refuses_above_its_limit_with_the_width_it_found():
    model = _glass(12, 12, seed=0)
    with pytest.raises(ValueError, match=r"at treewidth \d+ \(variables \[.s\["):
        estimators.elimination_log_z(model, max_states=2**10)


def test_ais_on_a_spin_glass_too_large_to_enumerate_is_within_its_error_of_elimination():
    """A 10 x 12 +-J glass with unit fields (2^120 states): AIS (unit-level Gibbs transitions)
    lies within 3 of its standard errors of the exact log Z by elimination over units."""
    model = _glass(10, 12, seed=1)
    exact = estimators.elimination_log_z(model).value
    est = estimators.ais(
        model,
        num_chains=200,
        betas=estimators.schedules.sigmoid(3000),
        generator=torch.Generator().manual_seed(2),
        progress=False,
    )
    assert abs(est.value - exact) < 3 * est.stderr


@pytest.mark.parametrize("name", ["semi_restricted", "ising"])
def test_raise_and_the_sandwich_bracket_the_exact_log_likelihood(name):
    """RAISE (a stochastic lower bound) lies below the exact mean log p(v) within 3 of its
    standard errors and within 0.3 nats of it; the sandwich's interval holds the exact value. A
    semi-restricted BM (its hidden block carried, v's units coupled) and an Ising model (nothing
    hidden)."""
    import networkx as nx

    if name == "semi_restricted":
        model = ebm.models.semi_restricted_bm(
            6, 3, lateral=[(0, 1), (1, 2), (2, 3), (3, 4), (0, 5)]
        )
    else:
        model = ebm.models.ising(nx.grid_2d_graph(3, 3), coupling=0.5, field=0.2)
    with torch.no_grad():
        for p in model.parameters():
            p.copy_(0.8 * torch.randn(p.shape, generator=torch.Generator().manual_seed(21)))
    model = model.double()
    draws = estimators.exact_samples(model, 20, generator=torch.Generator().manual_seed(22))
    data = {b: draws[b] for b in model.visible}
    exact = estimators.log_likelihood(model, data, estimators.exact_log_z(model)).value
    lower = estimators.reverse_ais(
        model,
        data,
        num_chains=20,
        betas=estimators.schedules.linear(400),
        generator=torch.Generator().manual_seed(23),
        progress=False,
    )
    assert lower.value < exact + 3 * lower.stderr
    assert lower.value > exact - 0.3
    both = estimators.sandwich(
        model,
        data,
        num_chains=200,
        reverse_chains=10,
        betas=estimators.schedules.linear(400),
        generator=torch.Generator().manual_seed(24),
        progress=False,
    )
    assert both.ci[0] <= exact <= both.ci[1]


def _exact_over(model, block, energy_of):
    """The exact distribution over ``block``'s states (in ``state_index`` order) from
    ``energy_of(states)`` (float64)."""
    x = joint_states(model, [block])[block].to(model.dtype)
    with torch.no_grad():
        p = torch.softmax(-energy_of({block: x}).double(), 0)
    order = state_index(model, [block], {block: x})
    return torch.zeros_like(p).index_copy_(0, order, p)


@pytest.mark.parametrize("kind", ["metropolis", "tempering"])
def test_metropolis_and_parallel_tempering_on_an_ising_grid_sample_it_exactly(kind):
    """A 3 x 3 Ising grid with random couplings and fields: 3,000 chains of single-site Metropolis
    (a colour class of units at a time) or of parallel tempering's beta = 1 replicas lie within
    the noise floor of as many exact draws."""
    import networkx as nx

    g = nx.grid_2d_graph(3, 3)
    gen = torch.Generator().manual_seed(31)
    for u, v in g.edges:
        g.edges[u, v]["weight"] = float(torch.randn(1, generator=gen))
    model = ebm.models.ising(g, field=torch.randn(9, generator=gen))
    p = _exact_over(model, "s", model.energy)
    n = 3000
    if kind == "metropolis":
        sampler = samplers.Metropolis(model, generator=torch.Generator().manual_seed(32))
        state = sampler.run(sampler.init(n), 150)
    else:
        pt = samplers.ParallelTempering(
            model, num_temperatures=4, tune_rounds=0, generator=torch.Generator().manual_seed(33)
        )
        state = pt.target(pt.run(pt.init(n), 60))
    counts = torch.bincount(state_index(model, ["s"], state), minlength=len(p))
    assert total_variation(counts, p) <= noise_floor(p, n)


def test_block_gibbs_with_the_hidden_block_clamped_samples_the_lateral_conditional():
    """A semi-restricted BM with h clamped to one configuration: v's chains (drawn a colour class
    of its coupled units at a time) follow the exact p(v | h), a Boltzmann machine over v."""
    model = ebm.models.semi_restricted_bm(6, 3, lateral=[(0, 1), (1, 2), (2, 3), (3, 4), (4, 5)])
    with torch.no_grad():
        for prm in model.parameters():
            prm.copy_(torch.randn(prm.shape, generator=torch.Generator().manual_seed(34)))
    h = torch.tensor([1.0, 0.0, 1.0])
    p = _exact_over(model, "v", lambda s: model.energy({**s, "h": h.expand(len(s["v"]), 3)}))
    n = 3000
    gibbs = samplers.BlockGibbs(model, clamp={"h": h}, generator=torch.Generator().manual_seed(35))
    state = gibbs.run(gibbs.init(n), 60)
    assert torch.equal(state["h"], h.expand(n, 3))
    counts = torch.bincount(state_index(model, ["v"], state), minlength=len(p))
    assert total_variation(counts, p) <= noise_floor(p, n)


def test_unit_level_models_save_load_and_compare(tmp_path):
    """Ising, Potts, higher-order and semi-restricted models come back from a file with the same
    energies and schedule; compare runs its samplers on one and reports total variation against
    the exact distribution."""
    import networkx as nx

    models = {
        "ising": ebm.models.ising(nx.grid_2d_graph(3, 4), coupling=0.3, field=0.1),
        "potts": ebm.models.potts(nx.cycle_graph(4), 3, coupling=0.5),
        "hobm": ebm.models.higher_order_bm(6, triples=[(0, 1, 2), (2, 3, 4)], pairs=[(0, 5)]),
        "srbm": ebm.models.semi_restricted_bm(5, 2, lateral=[(0, 1), (3, 4)]),
    }
    for name, model in models.items():
        path = tmp_path / f"{name}.safetensors"
        ebm.save(model, path)
        back = ebm.load(path)
        state = {
            b: model.units[b].random(7, torch.Generator().manual_seed(0)) for b in model.blocks
        }
        torch.testing.assert_close(back.energy(state), model.energy(state))
        assert [
            [m if isinstance(m, str) else (m[0], m[1].tolist()) for m in g] for g in back.schedule
        ] == [
            [m if isinstance(m, str) else (m[0], m[1].tolist()) for m in g] for g in model.schedule
        ]
    result = samplers.compare(
        models["ising"],
        [samplers.BlockGibbs, samplers.Metropolis],
        num_chains=4,
        sweeps=100,
        progress=False,
    )
    assert "total variation" in str(result)


def test_from_networkx_places_typed_nodes_in_blocks_and_couples_them():
    """Nodes of two unit types become two blocks; every edge is a coupling with its weight: the
    energy equals the explicit sum over the edges."""
    import networkx as nx

    g = nx.Graph()
    g.add_nodes_from(["a", "b", "c"], units="spin")
    g.add_node("d", units="bernoulli")
    g.add_edge("a", "b", weight=0.5)
    g.add_edge("b", "c", weight=-1.0)
    g.add_edge("c", "d", weight=2.0)
    graph, where = ebm.networks.from_networkx(g)
    assert where == {"a": ("spin", 0), "b": ("spin", 1), "c": ("spin", 2), "d": ("bernoulli", 0)}
    model = ebm.EnergyModel(graph)
    s = torch.tensor([[1.0, -1.0, -1.0], [1.0, 1.0, 1.0]])
    x = torch.tensor([[1.0], [0.0]])
    expected = -(0.5 * s[:, 0] * s[:, 1] - 1.0 * s[:, 1] * s[:, 2] + 2.0 * s[:, 2] * x[:, 0])
    torch.testing.assert_close(model.energy({"spin": s, "bernoulli": x}), expected)
    g.add_edge("a", "c")
    with pytest.raises(ValueError, match="has no 'weight' attribute"):
        ebm.networks.from_networkx(g)
    with pytest.raises(ValueError, match="has no 'units' attribute"):
        ebm.networks.from_networkx(nx.path_graph(2))


@pytest.mark.parametrize("backend", ["torch", "cpu"])
def test_block_gibbs_on_a_potts_cycle_samples_it_exactly(backend):
    """A 3-state Potts model on a 5-cycle (odd: three colour classes) with fields: 3,000 chains
    after 40 sweeps lie within the noise floor of as many exact draws (243 states)."""
    import networkx as nx

    gen = torch.Generator().manual_seed(41)
    model = ebm.models.potts(
        nx.cycle_graph(5), 3, coupling=0.9, field=torch.randn(5, 3, generator=gen)
    )
    assert len(model.schedule) == 3
    p = _exact_over(model, "s", model.energy)
    n = 3000
    gibbs = samplers.BlockGibbs(model, generator=torch.Generator().manual_seed(42))
    with ebm.backend.use_backend(backend):
        state = gibbs.run(gibbs.init(n), 40)
    counts = torch.bincount(state_index(model, ["s"], state), minlength=len(p))
    assert total_variation(counts, p) <= noise_floor(p, n)


@pytest.mark.parametrize("kind", ["CD", "PCD"])
def test_cd_and_pcd_train_a_semi_restricted_bm_towards_its_teacher(kind):
    """Data drawn exactly from a random semi-restricted BM (lateral ring of 6 visible units, 3
    hidden): CD-1 or PCD from a fresh model raise the exact mean log-likelihood by more than 0.5
    nats, to within 0.1 of the teacher's own (here -4.17 -> -3.257 against -3.231)."""
    lateral = [(0, 1), (1, 2), (2, 3), (3, 4), (4, 5), (0, 5)]
    teacher = ebm.models.semi_restricted_bm(6, 3, lateral=lateral)
    with torch.no_grad():
        for p in teacher.parameters():
            p.copy_(1.5 * torch.randn(p.shape, generator=torch.Generator().manual_seed(1)))
    draws = estimators.exact_samples(teacher, 600, generator=torch.Generator().manual_seed(2))
    data = {"v": draws["v"]}

    def exact_ll(m):
        return estimators.log_likelihood(m, data, estimators.exact_log_z(m)).value

    student = ebm.models.semi_restricted_bm(6, 3, lateral=lateral)
    before = exact_ll(student)
    sampler = samplers.CD(1) if kind == "CD" else samplers.PCD(num_chains=100)
    ebm.fit(
        student,
        data,
        sampler,
        epochs=30,
        batch_size=60,
        lr=0.1,
        generator=torch.Generator().manual_seed(3),
        progress=False,
    )
    after = exact_ll(student)
    assert after > before + 0.5
    assert after > exact_ll(teacher) - 0.1
