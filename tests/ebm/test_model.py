import itertools

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

import ebm
from ebm.factors import Bias, Dense, Factor
from ebm.units import Bernoulli, Categorical, Gaussian, Spin
from tests.helpers import joint_states


class ScaledProduct(Factor):
    """A user factor with energy only (autograd conditionals): E = -s * sum(t_a) * sum(t_b)."""

    def __init__(self, a, b, s):
        super().__init__(a, b, name=f"scaled_{a}_{b}")
        self.s = torch.nn.Parameter(torch.tensor(float(s)))

    def energy(self, stats):
        a, b = self.blocks
        return -self.s * stats[a].flatten(1).sum(-1) * stats[b].flatten(1).sum(-1)


def _unit(draw, i):
    kind = draw(st.sampled_from(["bernoulli", "spin", "categorical", "gaussian"]))
    if kind == "bernoulli":
        return Bernoulli(draw(st.integers(1, 3)))
    if kind == "spin":
        return Spin(draw(st.integers(1, 3)))
    if kind == "categorical":
        return Categorical(draw(st.integers(1, 2)), draw(st.integers(2, 3)))
    n = draw(st.integers(1, 2))
    loc = [draw(st.floats(-1.0, 1.0)) for _ in range(n)]
    scale = [draw(st.floats(0.5, 2.0)) for _ in range(n)]
    return Gaussian(n, learn_variance=True, loc=loc, scale=scale)


@st.composite
def random_graph(draw):
    """A random small graph with a random summable set S of discrete blocks to sum out."""
    torch.manual_seed(draw(st.integers(0, 2**16)))
    n_blocks = draw(st.integers(2, 4))
    g = ebm.Graph()
    names = [f"b{i}" for i in range(n_blocks)]
    for i, name in enumerate(names):
        g.add_block(name, _unit(draw, i))
    for a, b in itertools.combinations(names, 2):
        choice = draw(st.sampled_from(["none", "dense", "custom"]))
        if choice == "dense":
            g.add_factor(Dense(a, b, init_scale=draw(st.floats(0.1, 1.5))))
        elif choice == "custom":
            g.add_factor(ScaledProduct(a, b, draw(st.floats(-1.0, 1.0))))
    for name in names:
        if draw(st.booleans()):
            g.add_factor(Bias(name, bias=torch.randn(g.units[name].shape)))
    model = ebm.EnergyModel(g).double()
    adjacency = g.block_graph()
    discrete = [b for b in names if model.units[b].discrete]
    chosen = []
    for b in draw(st.permutations(discrete)):
        if draw(st.booleans()) and not any(adjacency.has_edge(b, c) for c in chosen):
            chosen.append(b)
    return model, chosen


def _random_state(model, blocks, n, seed):
    gen = torch.Generator().manual_seed(seed)
    out = {}
    for b in blocks:
        u = model.units[b]
        if u.discrete:
            out[b] = u.random(n, gen, dtype=torch.float64)
        else:
            out[b] = torch.randn((n, *u.shape), generator=gen, dtype=torch.float64)
    return out


@settings(max_examples=150, deadline=None, derandomize=True)
@given(random_graph(), st.integers(0, 1000))
def test_free_energy_is_minus_log_sum_of_exp_minus_energy(graph_and_sum, seed):
    model, sum_out = graph_and_sum
    kept = [b for b in model.blocks if b not in sum_out]
    n = 3 if kept else 1  # with nothing kept there is one (empty) configuration
    state = _random_state(model, kept, n, seed)
    with torch.no_grad():
        free = model.free_energy(state, sum_out=sum_out)
        if not sum_out:
            torch.testing.assert_close(free, model.energy(state))
            return
        configs = joint_states(model, sum_out)
        m = next(iter(configs.values())).shape[0]
        full = {b: x.repeat_interleave(m, 0) for b, x in state.items()}
        full.update({b: x.repeat(n, *([1] * (x.dim() - 1))) for b, x in configs.items()})
        brute = -torch.logsumexp(-model.energy(full).reshape(n, m), 1)
    torch.testing.assert_close(free, brute)


def test_free_energy_refuses_coupled_blocks():
    model = ebm.models.rbm(3, 2)
    with pytest.raises(ValueError, match="cannot be summed out together.*dense_v_h"):
        model.free_energy({}, sum_out=["v", "h"])


def test_given_parameters_must_be_finite_and_named():
    with pytest.raises(ValueError, match="weight has non-finite"):
        ebm.models.rbm(2, 2, weight=[[0.0, float("nan")], [0.0, 0.0]])
    with pytest.raises(ValueError, match="visible_bias has non-finite"):
        ebm.models.rbm(2, 2, visible_bias=[0.0, float("inf")])
    with pytest.raises(ValueError, match="hidden_bias has non-finite"):
        ebm.models.rbm(2, 2, hidden_bias=[float("-inf"), 0.0])
    with pytest.raises(ValueError, match=r"weight must have shape \(2, 3\)"):
        ebm.models.rbm(2, 3, weight=torch.zeros(3, 2))
    with pytest.raises(ValueError, match="scale has non-finite"):
        ebm.models.gaussian_rbm(2, 2, scale=[1.0, float("nan")])
    with pytest.raises(ValueError, match="n_hidden must be"):
        ebm.models.rbm(2, 0)


def test_rbm_energy_and_free_energy_formulas():
    g = torch.Generator().manual_seed(0)
    w, b, c = (
        torch.randn(4, 3, generator=g),
        torch.randn(4, generator=g),
        torch.randn(3, generator=g),
    )
    model = ebm.models.rbm(4, 3, weight=w, visible_bias=b, hidden_bias=c)
    v, h = torch.tensor([[1.0, 0, 1, 1]]), torch.tensor([[0.0, 1, 1]])
    torch.testing.assert_close(
        model.energy({"v": v, "h": h}), -(v @ b) - (h @ c) - ((v @ w) * h).sum(-1)
    )
    expected = -(v @ b) - torch.nn.functional.softplus(c + v @ w).sum(-1)
    torch.testing.assert_close(model.free_energy({"v": v}), expected)


def test_gaussian_rbm_conditionals():
    model = ebm.models.gaussian_rbm(
        3,
        2,
        weight=torch.ones(3, 2),
        visible_bias=[0.5, 0.0, -0.5],
        scale=[1.0, 2.0, 0.5],
        hidden_bias=[0.1, -0.1],
    )
    h = torch.tensor([[1.0, 0.0]])
    p = model.conditional("v", {"h": h})
    s = torch.tensor([1.0, 2.0, 0.5])
    torch.testing.assert_close(p.mean, torch.tensor([[0.5, 0.0, -0.5]]) + s * 1.0)
    torch.testing.assert_close(p.stddev, s.expand(1, 3))
    v = torch.tensor([[1.0, 2.0, 3.0]])
    ph = model.conditional("h", {"v": v})
    torch.testing.assert_close(ph.mean, torch.sigmoid(torch.tensor([[0.1, -0.1]]) + (v / s).sum()))


def test_model_without_parameters_follows_dtype():
    g = ebm.Graph().add_block("a", Bernoulli(2)).add_block("b", Spin(1))
    model = ebm.EnergyModel(g).double()
    assert model.dtype == torch.float64
    assert model.free_energy({"a": torch.zeros(1, 2, dtype=torch.float64)}).dtype == torch.float64


def test_dtype_and_state_checks():
    model = ebm.models.rbm(3, 2).to(dtype=torch.float64)
    assert model.dtype == torch.float64
    out = model.energy(
        {"v": torch.ones(2, 3, dtype=torch.float64), "h": torch.zeros(2, 2, dtype=torch.float64)}
    )
    assert out.dtype == torch.float64 and out.shape == (2,)
    with pytest.raises(ValueError, match="lacks block"):
        model.energy({"v": torch.ones(2, 3, dtype=torch.float64)})
    with pytest.raises(ValueError, match="batch size"):
        model.energy({"v": torch.ones(2, 3), "h": torch.ones(3, 2)})
    with pytest.raises(ValueError, match="unknown block"):
        model.energy({"v": torch.ones(2, 3), "h": torch.ones(2, 2), "x": torch.ones(2, 1)})
    with pytest.raises(ValueError, match=r"block 'v'.*0 or 1"):
        model.validate_data(torch.full((2, 3), 0.5))


class SquaredSum(Factor):
    """E = -s * sum(t_a) * (sum t_b)^2: linear in a, not in b (autograd would mislead)."""

    def __init__(self, a, b, s):
        super().__init__(a, b)
        self.s = torch.nn.Parameter(torch.tensor(float(s)))

    def energy(self, stats):
        a, b = self.blocks
        return -self.s * stats[a].flatten(1).sum(-1) * stats[b].flatten(1).sum(-1) ** 2


def test_nonlinear_user_factor_is_detected_and_never_summed_out():
    import estimators
    import samplers
    from tests.helpers import brute_log_z

    g = ebm.Graph().add_block("a", Bernoulli(1)).add_block("b", Spin(4))
    g.add_factor(SquaredSum("a", "b", 0.4))
    model = ebm.EnergyModel(g)
    factor = model.factors["squared_sum_a_b"]
    assert factor.linear_in("a") and not factor.linear_in("b")
    est = estimators.exact_log_z(model)
    assert est.extras["summed_out"] == ["a"]
    assert est.value == pytest.approx(brute_log_z(model), abs=1e-9)
    with pytest.raises(ValueError, match="'b' cannot be summed out.*not linear"):
        model.free_energy({"a": torch.ones(2, 1)}, sum_out=["b"])
    gibbs = samplers.BlockGibbs(model)
    with pytest.raises(ValueError, match="not linear in block 'b'"):
        gibbs.step(gibbs.init(3))


def test_a_compiled_graph_is_frozen():
    g = ebm.Graph().add_block("v", Bernoulli(2)).add_block("h", Bernoulli(2))
    g.add_factor(Dense("v", "h"))
    model = ebm.EnergyModel(g)
    with pytest.raises(ValueError, match="can no longer change"):
        g.add_factor(Bias("v"))
    with pytest.raises(ValueError, match="can no longer change"):
        g.add_block("x", Bernoulli(1))
    assert list(model.factors) == ["dense_v_h"]


def test_constructors_keep_the_dtype_of_given_parameters():
    """float64 parameters (tensors or numpy arrays) build a float64 model, lists and no parameters
    torch's default dtype; a float64 model's exact log Z equals the float64 brute force to 1e-12."""
    import numpy as np

    import estimators
    from tests.helpers import brute_log_z

    g = torch.Generator().manual_seed(0)
    w = torch.randn(5, 3, generator=g, dtype=torch.float64)
    model = ebm.models.rbm(5, 3, weight=w, visible_bias=torch.randn(5, generator=g).double())
    assert model.dtype == torch.float64
    assert all(p.dtype == torch.float64 for p in model.parameters())
    assert torch.equal(model.factors["dense_v_h"].weight.detach(), w)
    assert estimators.exact_log_z(model).value == pytest.approx(brute_log_z(model), abs=1e-12)
    assert ebm.models.rbm(5, 3, weight=np.ones((5, 3))).dtype == torch.float64
    assert ebm.models.gaussian_rbm(2, 2, weight=w[:2, :2]).dtype == torch.float64
    assert ebm.models.rbm(5, 3, weight=[[0.1] * 3] * 5).dtype == torch.get_default_dtype()
    assert ebm.models.rbm(5, 3).dtype == torch.get_default_dtype()
