"""RAISE and the sandwich on enumerable models: each bound lies on its side of the exact value."""

import math

import pytest
import torch

import ebm
import estimators
from tests.helpers import trained_bars_rbm as _trained


def test_sandwich_brackets_the_exact_log_likelihood():
    model, data, exact = _trained()
    betas = estimators.schedules.salakhutdinov_murray((50, 400, 1000))
    s = estimators.sandwich(
        model,
        data,
        num_chains=200,
        reverse_chains=20,
        betas=betas,
        base=ebm.base_rate(model, data),
        generator=torch.Generator().manual_seed(1),
        progress=False,
    )
    lower, upper = s.extras["lower"], s.extras["upper"]
    assert lower.kind == "lower_bound" and upper.kind == "upper_bound" and s.kind == "bracket"
    assert lower.value - 3 * lower.stderr <= exact <= upper.value + 3 * upper.stderr
    assert s.ci[0] <= exact <= s.ci[1]
    assert upper.value - lower.value < 0.2  # a fine path closes the bracket
    line = str(s)
    assert line.startswith("mean log p(v) in [") and "\n" not in line


def test_coarse_raise_is_conservative():
    """With few temperatures RAISE falls well below the exact log-likelihood: the error of a
    coarse path lands on the lower side, as a lower bound's should."""
    model, data, exact = _trained()
    lower = estimators.reverse_ais(
        model,
        data,
        num_chains=50,
        betas=estimators.schedules.linear(20),
        generator=torch.Generator().manual_seed(2),
        progress=False,
    )
    assert lower.value + 3 * lower.stderr < exact


def test_forward_ais_underestimates_log_z_on_average():
    """E[log Z-hat] <= log Z (so the AIS log-likelihood is an upper bound in expectation): 2,000
    independent two-chain estimates on a coarse path average well below the exact log Z."""
    model, _, _ = _trained()
    log_z = estimators.exact_log_z(model).value
    run = estimators.ais(
        model,
        num_chains=4000,
        betas=estimators.schedules.linear(5),
        generator=torch.Generator().manual_seed(3),
        progress=False,
    )
    pairs = torch.logsumexp(run.log_weights.reshape(-1, 2), 1) - math.log(2)
    estimates = pairs + run.extras["log_z_base"]
    se = float(estimates.std() / math.sqrt(len(estimates)))
    assert float(estimates.mean()) + 3 * se < log_z


def test_raise_per_example_against_exact_probabilities():
    model, data, _ = _trained()
    logz = estimators.exact_log_z(model)
    exact = estimators.log_likelihood(model, data, logz).extras["per_example"]
    est = estimators.reverse_ais(
        model,
        data,
        num_chains=30,
        betas=estimators.schedules.salakhutdinov_murray((50, 400, 1000)),
        generator=torch.Generator().manual_seed(4),
        progress=False,
    )
    diff = est.extras["per_example"] - exact
    assert est.extras["per_example"].shape == (14,)
    assert float(diff.abs().max()) < 0.15


def test_reverse_ais_refuses_bad_input():
    model, _, _ = _trained()
    with pytest.raises(ValueError, match=r"block 'v'.*0 or 1"):
        estimators.reverse_ais(model, torch.full((2, 9), 0.5), progress=False)
    with pytest.raises(ValueError, match="num_chains"):
        estimators.reverse_ais(model, torch.zeros(2, 9), num_chains=1, progress=False)


def test_sandwich_reuses_a_forward_estimate():
    model, data, _ = _trained()
    betas = estimators.schedules.linear(100)
    base = ebm.base_rate(model, data)
    log_z = estimators.ais(
        model, 200, betas, base=base, generator=torch.Generator().manual_seed(1), progress=False
    )
    s = estimators.sandwich(
        model,
        data,
        reverse_chains=5,
        betas=betas,
        base=base,
        generator=torch.Generator().manual_seed(2),
        progress=False,
        log_z=log_z,
    )
    upper = s.extras["upper"]
    assert upper.extras["log_z"] is log_z and upper.num_chains == 200
    assert upper.value == pytest.approx(estimators.log_likelihood(model, data, log_z).value)
    with pytest.raises(ValueError, match="point estimate of log Z"):
        estimators.sandwich(model, data, log_z=estimators.exact_log_z(model), progress=False)


def _small_dbm():
    """A DBM 8-6-5 with strong weights, its exact log Z and 20 exact draws of v."""
    torch.manual_seed(0)
    model = ebm.models.dbm([8, 6, 5], init_scale=1.0)
    log_z = estimators.exact_log_z(model)
    v = estimators.exact_samples(model, 20, generator=torch.Generator().manual_seed(1))["v"]
    return model, v, estimators.log_likelihood(model, v, log_z)


def test_raise_on_a_dbm_against_the_exact_log_likelihood():
    """RAISE on a DBM (h1 summed out, h2 drawn from the mean-field posterior): a fine path lands
    within its error of the exact mean log p(v) of model draws; a coarse one falls below it, on
    the conservative side."""
    model, v, exact = _small_dbm()
    fine = estimators.reverse_ais(
        model,
        v,
        num_chains=30,
        betas=400,
        generator=torch.Generator().manual_seed(2),
        progress=False,
    )
    assert abs(fine.value - exact.value) < 4 * fine.stderr
    coarse = estimators.reverse_ais(
        model,
        v,
        num_chains=20,
        betas=estimators.schedules.linear(5),
        generator=torch.Generator().manual_seed(3),
        progress=False,
    )
    assert coarse.value + 3 * coarse.stderr < exact.value


def test_sandwich_brackets_a_dbm_and_refuses_one_without_an_enumerable_layer():
    """The sandwich on a DBM: F(v) by enumerating h2 for the upper end, RAISE for the lower; the
    exact value lies between them within their errors. A DBM whose free energy would enumerate
    2^40 states per example is refused by name before any annealing."""
    model, v, exact = _small_dbm()
    s = estimators.sandwich(
        model,
        v,
        num_chains=200,
        reverse_chains=20,
        betas=300,
        generator=torch.Generator().manual_seed(4),
        progress=False,
    )
    lower, upper = s.extras["lower"], s.extras["upper"]
    assert lower.value - 3 * lower.stderr <= exact.value <= upper.value + 3 * upper.stderr
    with pytest.raises(ValueError, match=r"would enumerate 1,099,511,627,776 states"):
        estimators.sandwich(ebm.models.dbm([10, 40, 40]), torch.zeros(2, 10), progress=False)
