import itertools
import math

import pytest
import torch

import ebm
import estimators
from ebm.units import Bernoulli, Categorical, Gaussian, Spin
from estimators.elimination import elimination_log_z
from tests.helpers import brute_log_z, random_rbm

HEURISTICS = ["min_fill_in", "min_degree"]


def _size(units) -> int:
    return math.prod(units.shape)


def _pairs(names):
    """Consecutive pairs: the edges of a chain through ``names``."""
    return [(names[i], names[i + 1]) for i in range(len(names) - 1)]


def _dense(a, b, units, gen, scale=1.0):
    w = scale * torch.randn(_size(units[a]), _size(units[b]), generator=gen)
    return ebm.factors.Dense(a, b, weight=w)


def _model(blocks, edges, seed, scale=1.0, extra=()):
    """Blocks (name -> units; the first is visible), Dense factors on ``edges`` with N(0, scale^2)
    weights, N(0, 1) biases on every block, and the ``extra`` factors."""
    gen = torch.Generator().manual_seed(seed)
    g = ebm.Graph()
    for i, (name, units) in enumerate(blocks.items()):
        g.add_block(name, units, visible=i == 0)
    for a, b in edges:
        g.add_factor(_dense(a, b, blocks, gen, scale))
    for name, units in blocks.items():
        g.add_factor(ebm.factors.Bias(name, bias=torch.randn(units.shape, generator=gen)))
    g.add_factor(*extra)
    return ebm.EnergyModel(g)


def _check_exact(est, truth):
    assert est.kind == "exact" and est.method == "variable elimination"
    assert est.stderr == 0.0 and est.ci == (est.value, est.value)
    assert est.value == pytest.approx(truth, abs=1e-9)


@pytest.mark.parametrize("heuristic", HEURISTICS)
@pytest.mark.parametrize("seed", [0, 1])
def test_rbm_matches_enumeration(seed, heuristic):
    model = random_rbm(9, 6, scale=2.0, seed=seed)
    est = elimination_log_z(model, heuristic=heuristic)
    _check_exact(est, estimators.exact_log_z(model).value)
    assert est.extras["treewidth"] == 1
    assert sorted(est.extras["order"]) == ["h", "v"]
    assert est.extras["largest_table"] == 2**15  # the first block eliminated sees the other
    assert next(model.parameters()).dtype == torch.float32  # computed on a float64 copy


@pytest.mark.parametrize("heuristic", HEURISTICS)
def test_chain_has_treewidth_one_and_small_tables(heuristic):
    names = [f"x{i}" for i in range(5)]
    model = _model({n: Bernoulli(3) for n in names}, _pairs(names), seed=3)
    est = elimination_log_z(model, heuristic=heuristic)
    _check_exact(est, estimators.exact_log_z(model).value)
    assert est.extras["treewidth"] == 1
    assert est.extras["largest_table"] == 2**6  # two blocks of 8 states, never more
    assert sorted(est.extras["order"]) == names


@pytest.mark.parametrize("heuristic", HEURISTICS)
def test_cycle_of_mixed_unit_types_has_treewidth_two(heuristic):
    blocks = {"a": Bernoulli(3), "b": Spin(2), "c": Categorical(2, 3), "d": Bernoulli(2)}
    model = _model(blocks, [("a", "b"), ("b", "c"), ("c", "d"), ("d", "a")], seed=5, scale=1.5)
    est = elimination_log_z(model, heuristic=heuristic)
    truth = estimators.exact_log_z(model).value
    _check_exact(est, truth)
    assert truth == pytest.approx(brute_log_z(model), abs=1e-9)
    assert est.extras["treewidth"] == 2
    # three blocks in the largest table: at most the three largest of 8, 4, 9, 4 states
    assert 8 * 4 * 4 <= est.extras["largest_table"] <= 8 * 9 * 4


def test_isolated_block_and_two_components():
    blocks = {
        "a": Bernoulli(3),
        "b": Spin(2),
        "c": Categorical(2, 3),
        "d": Bernoulli(2),
        "e": Spin(4),
        "lonely": Categorical(3, 2),
    }
    gen = torch.Generator().manual_seed(7)
    g = ebm.Graph()
    for name, units in blocks.items():
        g.add_block(name, units, visible=name == "a")
    # component 1: a - b - c (chain); component 2: d - e; "lonely" touched by no factor at all
    g.add_factor(_dense("a", "b", blocks, gen, 2.0), _dense("b", "c", blocks, gen, 2.0))
    g.add_factor(_dense("d", "e", blocks, gen, 2.0), ebm.factors.Bias("d", [0.5, -1.0]))
    model = ebm.EnergyModel(g)
    est = elimination_log_z(model)
    _check_exact(est, estimators.exact_log_z(model).value)
    assert sorted(est.extras["order"]) == sorted(blocks)

    alone = ebm.Graph().add_block("lonely", Categorical(3, 2))
    only = elimination_log_z(ebm.EnergyModel(alone))
    assert only.value == pytest.approx(3 * math.log(2), abs=1e-12)
    assert only.extras == {"treewidth": 0, "order": ["lonely"], "largest_table": 8}


class Cubic(ebm.factors.Factor):
    """E = -s * sum(t_a) * sum(t_b)^2 * prod_c sum(t_c): implements only ``energy``, nonlinear in b."""

    def __init__(self, a, b, *more, scale=0.3, declare_nonlinear=True):
        super().__init__(a, b, *more)
        self.scale = torch.nn.Parameter(torch.tensor(float(scale)))
        self.declare_nonlinear = declare_nonlinear

    def energy(self, stats):
        a, b, *more = self.blocks
        e = -self.scale * stats[a].flatten(1).sum(-1) * stats[b].flatten(1).sum(-1) ** 2
        for c in more:
            e = e * stats[c].flatten(1).sum(-1)
        return e

    def linear_in(self, block):
        if self.declare_nonlinear and block == self.blocks[1]:
            return False
        return super().linear_in(block)


@pytest.mark.parametrize("declare_nonlinear", [True, False])
def test_user_factor_with_only_an_energy(declare_nonlinear):
    blocks = {"a": Bernoulli(3), "b": Spin(3), "c": Categorical(1, 3), "d": Bernoulli(2)}
    extra = [
        Cubic("a", "b", scale=0.4, declare_nonlinear=declare_nonlinear),
        Cubic("b", "c", "d", scale=-0.2, declare_nonlinear=declare_nonlinear),
    ]
    model = _model(blocks, [("c", "d")], seed=11, extra=extra)
    truth = brute_log_z(model)
    est = elimination_log_z(model.float())
    _check_exact(est, truth)
    # the three-block factor makes b, c, d a clique
    assert est.extras["treewidth"] == 2
    if declare_nonlinear:  # enumeration is right only when the factor says where it is nonlinear
        assert estimators.exact_log_z(model).value == pytest.approx(truth, abs=1e-9)


def _transfer_log_z(weights, biases) -> float:
    """log Z of a chain of Bernoulli blocks, E = -sum_i b_i.x_i - sum_i x_i^T W_i x_{i+1}, by a
    log-space transfer-matrix product over the 2^n states of each block (float64)."""
    n = biases[0].numel()
    x = torch.tensor(list(itertools.product([0.0, 1.0], repeat=n)), dtype=torch.float64)
    alpha = x @ biases[0].double()
    for w, b in zip(weights, biases[1:], strict=True):
        pair = x @ w.double() @ x.T  # (previous state, next state)
        alpha = torch.logsumexp(alpha[:, None] + pair, 0) + x @ b.double()
    return float(torch.logsumexp(alpha, 0))


def test_long_chain_that_enumeration_refuses():
    length, n = 10, 6  # 2^60 joint states; after summing out every other block still 2^30
    gen = torch.Generator().manual_seed(13)
    weights = [1.5 * torch.randn(n, n, generator=gen) for _ in range(length - 1)]
    biases = [torch.randn(n, generator=gen) for _ in range(length)]
    g = ebm.Graph()
    for i in range(length):
        g.add_block(f"x{i}", Bernoulli(n), visible=i == 0)
        g.add_factor(ebm.factors.Bias(f"x{i}", bias=biases[i]))
    for i, w in enumerate(weights):
        g.add_factor(ebm.factors.Dense(f"x{i}", f"x{i + 1}", weight=w))
    model = ebm.EnergyModel(g)
    with pytest.raises(ValueError, match="max_states"):
        estimators.exact_log_z(model)
    est = elimination_log_z(model)
    _check_exact(est, _transfer_log_z(weights, biases))
    assert est.extras["treewidth"] == 1 and est.extras["largest_table"] == 2**12


def test_refuses_a_table_above_the_limit_before_any_work():
    with pytest.raises(
        ValueError,
        match=r"table of 1,099,511,627,776 states \(2\^40\.0\) at treewidth 1 .*"
        r"max_states=16,777,216",
    ):
        elimination_log_z(ebm.models.rbm(20, 20))

    names = ["a", "b", "c", "d"]
    cycle = _model({n: Bernoulli(4) for n in names}, _pairs(names + names[:1]), 1)
    with pytest.raises(ValueError, match=r"4,096 states \(2\^12\.0\) at treewidth 2.*=1,000"):
        elimination_log_z(cycle, max_states=1000)
    assert elimination_log_z(cycle, max_states=4096).extras["largest_table"] == 4096


def test_refuses_continuous_blocks_and_bad_arguments():
    g = ebm.Graph().add_block("pixels", Gaussian(3), visible=True).add_block("h", Bernoulli(2))
    g.add_factor(ebm.factors.Dense("pixels", "h"))
    with pytest.raises(ValueError, match=r"block 'pixels' is continuous"):
        elimination_log_z(ebm.EnergyModel(g))
    model = random_rbm(3, 2, scale=1.0, seed=0)
    with pytest.raises(ValueError, match="heuristic"):
        elimination_log_z(model, heuristic="random")
    with pytest.raises(ValueError, match="max_states"):
        elimination_log_z(model, max_states=0)
