import math

import pytest
import torch

from ebm.units import Bernoulli, Categorical, Gaussian, Spin
from tests.helpers import support

DISCRETE = [Bernoulli(3), Spin(3), Categorical(2, 3)]


@pytest.mark.parametrize("units", DISCRETE, ids=lambda u: type(u).__name__)
def test_log_partition_matches_sum_over_support(units):
    g = torch.Generator().manual_seed(0)
    eta = torch.randn((4, *units.shape), generator=g, dtype=torch.float64)
    xs = support(units)  # (S, *shape)
    brute = torch.logsumexp((eta.unsqueeze(1) * xs.unsqueeze(0)).flatten(2).sum(-1), 1)
    torch.testing.assert_close(units.log_partition(eta), brute)


@pytest.mark.parametrize("units", DISCRETE, ids=lambda u: type(u).__name__)
def test_enumeration_is_the_support(units):
    xs = units.states(torch.arange(int(units.num_states)), dtype=torch.float64)
    assert xs.shape == (int(units.num_states), *units.shape)
    assert len({tuple(r.flatten().tolist()) for r in xs}) == int(units.num_states)
    assert {tuple(r.flatten().tolist()) for r in xs} == {
        tuple(r.flatten().tolist()) for r in support(units)
    }


@pytest.mark.parametrize("units", DISCRETE, ids=lambda u: type(u).__name__)
def test_sample_mean_and_distribution_agree(units):
    g = torch.Generator().manual_seed(1)
    eta = torch.randn(units.shape, generator=g, dtype=torch.float64)
    n = 40_000
    draws = units.sample(eta.expand(n, *units.shape).contiguous(), g)
    mean = units.mean(eta)
    # each coordinate's sample mean within 5 standard errors of the exact mean
    se = (
        (units.mean(eta) - mean**2).clamp_min(0).sqrt()
        if type(units).__name__ != "Spin"
        else (1 - mean**2).sqrt()
    )
    assert ((draws.mean(0) - mean).abs() <= 5 * se / math.sqrt(n) + 1e-12).all()
    # torch.distributions object gives the same log-probabilities as the exponential family
    d = units.distribution(eta.unsqueeze(0))
    xs = support(units)
    lp = d.log_prob(xs)
    manual = (eta * xs).flatten(1).sum(-1) - units.log_partition(eta.unsqueeze(0))
    torch.testing.assert_close(lp, manual)


def test_gaussian_log_partition_against_quadrature():
    u = Gaussian(1, learn_variance=True, loc=[0.7], scale=[1.3]).double()
    eta = torch.tensor([[0.4], [-1.1]], dtype=torch.float64)
    grid = torch.linspace(-30, 30, 200_001, dtype=torch.float64)
    vals = []
    for e in eta:
        log_f = e * u.statistic(grid.unsqueeze(-1)).squeeze(-1) - u.base_energy(grid.unsqueeze(-1))
        vals.append(torch.log(torch.trapezoid(torch.exp(log_f), grid)))
    torch.testing.assert_close(u.log_partition(eta), torch.stack(vals), rtol=0, atol=1e-8)


def test_gaussian_sample_moments():
    u = Gaussian(2, loc=[1.0, -2.0], scale=[0.5, 2.0])
    g = torch.Generator().manual_seed(0)
    eta = torch.tensor([0.3, -0.4]).expand(50_000, 2).contiguous()
    x = u.sample(eta, g)
    mean = u.mean(eta[:1])[0]
    torch.testing.assert_close(mean, torch.tensor([1.0 + 0.5 * 0.3, -2.0 + 2.0 * -0.4]))
    se = u.scale / math.sqrt(50_000)
    assert ((x.mean(0) - mean).abs() < 5 * se).all()
    assert ((x.std(0) - u.scale).abs() < 0.02 * u.scale).all()


def test_bernoulli_validation_names_block_and_value():
    u = Bernoulli(3)
    u.validate(torch.tensor([[0.0, 1.0, 1.0]]), "v")
    with pytest.raises(ValueError, match=r"block 'v'.*0 or 1.*0\.5"):
        u.validate(torch.tensor([[0.0, 0.5, 1.0]]), "v")
    with pytest.raises(ValueError, match=r"block 'v'.*non-finite"):
        u.validate(torch.tensor([[0.0, float("nan"), 1.0]]), "v")
    with pytest.raises(ValueError, match=r"block 'v'.*shape \(batch, 3\).*\(1, 4\)"):
        u.validate(torch.zeros(1, 4), "v")


def test_other_validation():
    with pytest.raises(ValueError, match="-1 or 1"):
        Spin(2).validate(torch.tensor([[0.0, 1.0]]), "s")
    with pytest.raises(ValueError, match="one-hot"):
        Categorical(2, 3).validate(torch.tensor([[[1.0, 1.0, 0.0], [0.0, 0.0, 1.0]]]), "c")
    with pytest.raises(ValueError, match="non-finite"):
        Gaussian(2).validate(torch.tensor([[0.0, float("inf")]]), "x")
    with pytest.raises(ValueError, match="int >= 1"):
        Bernoulli(0)
    with pytest.raises(ValueError, match="k must be"):
        Categorical(2, 1)
    with pytest.raises(ValueError, match="cannot be enumerated"):
        Gaussian(2).states(torch.arange(2))
