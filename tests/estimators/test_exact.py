import math

import pytest
import torch

import ebm
import estimators
from tests.helpers import brute_log_z, random_rbm


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_exact_log_z_matches_brute_force_with_either_layer_enumerated(seed):
    model = random_rbm(9, 6, scale=2.0, seed=seed)
    truth = brute_log_z(model)
    model = model.float()
    enum_h = estimators.exact_log_z(model, sum_out=["v"])  # enumerate the 64 hidden states
    enum_v = estimators.exact_log_z(model, sum_out=["h"])  # enumerate the 512 visible states
    auto = estimators.exact_log_z(model)
    assert enum_h.extras["states"] == 2**6 and enum_v.extras["states"] == 2**9
    assert auto.extras["summed_out"] == ["v"]  # the larger layer is summed out
    for est in (enum_h, enum_v, auto):
        assert est.kind == "exact" and est.stderr == 0
        assert est.value == pytest.approx(truth, abs=1e-9)


def test_chunked_enumeration_agrees():
    model = random_rbm(12, 3, scale=1.0, seed=4)
    whole = estimators.exact_log_z(model, sum_out=["h"], chunk_size=2**16)
    chunked = estimators.exact_log_z(model, sum_out=["h"], chunk_size=37)
    assert chunked.value == pytest.approx(whole.value, abs=1e-10)


def test_refuses_above_the_size_limit_and_gives_the_size():
    model = ebm.models.rbm(30, 30)
    with pytest.raises(
        ValueError, match=r"1,073,741,824 states \(2\^30\.0\).*max_states=16,777,216"
    ):
        estimators.exact_log_z(model)
    small = ebm.models.rbm(12, 11)
    with pytest.raises(ValueError, match="2,048 states"):
        estimators.exact_log_z(small, max_states=1000)


def test_gaussian_rbm_log_z_against_quadrature():
    model = ebm.models.gaussian_rbm(
        1,
        3,
        weight=[[0.8, -1.2, 0.5]],
        visible_bias=[0.3],
        hidden_bias=[0.2, -0.4, 0.1],
        scale=[0.7],
    ).double()
    assert estimators.exact_log_z(model).extras["summed_out"] == ["v"]
    grid = torch.linspace(-25, 25, 400_001, dtype=torch.float64).unsqueeze(-1)
    terms = []
    for i in range(8):
        h = torch.tensor([[(i >> k) & 1 for k in range(3)]], dtype=torch.float64).expand(
            len(grid), 3
        )
        with torch.no_grad():
            e = model.energy({"v": grid, "h": h})
        terms.append(torch.log(torch.trapezoid(torch.exp(-e), grid.squeeze(-1))))
    truth = float(torch.logsumexp(torch.stack(terms), 0))
    assert estimators.exact_log_z(model).value == pytest.approx(truth, abs=1e-8)


def test_all_blocks_summed_out_when_independent():
    g = ebm.Graph().add_block("a", ebm.units.Bernoulli(3)).add_block("b", ebm.units.Spin(2))
    g.add_factor(ebm.factors.Bias("a", [1.0, -2.0, 0.5]), ebm.factors.Bias("b", [0.3, 0.0]))
    model = ebm.EnergyModel(g)
    est = estimators.exact_log_z(model)
    truth = (
        sum(math.log1p(math.exp(x)) for x in (1.0, -2.0, 0.5))
        + math.log(2 * math.cosh(0.3))
        + math.log(2)
    )
    assert est.value == pytest.approx(truth, abs=1e-6)
    assert est.extras["states"] == 1
