"""The moment-averaged path: exact moments, the fits, and AIS / RAISE along it against exact log Z."""

import copy
import math

import pytest
import torch

import ebm
import estimators
from estimators.moments import rbm_moments, rbm_parameters
from tests.helpers import brute_log_z, joint_states, random_rbm, trained_bars_rbm


def brute_moments(model):
    """(E[v], E[h], E[v h^T]) by summing over every joint state (independent of rbm_moments)."""
    m = copy.deepcopy(model).double()
    with torch.no_grad():
        x = joint_states(m)
        p = torch.softmax(-m.energy(x), 0)
    v, h = x["v"], x["h"]
    return p @ v, p @ h, (v * p[:, None]).T @ h


def test_rbm_moments_match_enumeration():
    model = random_rbm(5, 4, scale=1.0, seed=2)
    for got, want in zip(rbm_moments(rbm_parameters(model)), brute_moments(model), strict=True):
        torch.testing.assert_close(got, want, rtol=0, atol=1e-10)


def test_exact_fit_averages_moments_and_keeps_the_ends():
    model = random_rbm(6, 5, scale=1.5, seed=1)
    base = ebm.FactorizedBase(model, {"v": torch.linspace(-1.0, 1.0, 6)})
    path = estimators.moment_averaged_path(model, base, num_knots=5, progress=False)
    assert path.fit == "exact" and path.moment_error < 1e-6
    w, b, c = rbm_parameters(model)
    for got, want in zip(path.theta(1.0), (w, b, c), strict=True):
        torch.testing.assert_close(got, want)
    w0, b0, c0 = path.theta(0.0)
    assert not w0.any() and not c0.any()
    torch.testing.assert_close(b0, base.natural["v"])
    # the base end is the RBM (0, b_A, 0): log Z_0 against brute force
    base_rbm = ebm.models.rbm(6, 5, weight=w0, visible_bias=b0, hidden_bias=c0)
    assert path.log_z0 == pytest.approx(brute_log_z(base_rbm), abs=1e-10)
    # a knot (beta = 1/2) has the averaged moments, checked with moments that rbm_moments did
    # not compute
    s_a, s_b = brute_moments(base_rbm), brute_moments(model)
    mid = ebm.models.rbm(6, 5, *(p.double() for p in path.theta(0.5)))
    for got, x, y in zip(brute_moments(mid), s_a, s_b, strict=True):
        torch.testing.assert_close(got, (x + y) / 2, rtol=0, atol=1e-6)
    # at beta = 1 the path's density is the model's: log f_1(v) = -F(v)
    v = joint_states(model, ["v"])["v"].to(model.dtype)
    torch.testing.assert_close(
        path.log_f(1.0, v), -model.free_energy({"v": v}).double(), rtol=0, atol=1e-4
    )


@pytest.mark.parametrize("fit", ["exact", "sampled"])
def test_ais_and_sandwich_along_the_path_match_the_exact_value(fit):
    """AIS along the moment-averaged path (either fit) is within 3 standard errors of the exact
    log Z, and the sandwich along it brackets the exact mean log-likelihood."""
    model, data, exact_ll = trained_bars_rbm()
    exact = estimators.exact_log_z(model).value
    base = ebm.base_rate(model, data)
    path = estimators.moment_averaged_path(
        model, base, fit=fit, generator=torch.Generator().manual_seed(0), progress=False
    )
    assert path.fit == fit
    betas = estimators.schedules.linear(100)
    est = estimators.ais(
        model, 500, betas, generator=torch.Generator().manual_seed(1), progress=False, path=path
    )
    assert abs(est.value - exact) < 3 * est.stderr
    s = estimators.sandwich(
        model,
        data,
        num_chains=200,
        reverse_chains=20,
        betas=betas,
        generator=torch.Generator().manual_seed(2),
        progress=False,
        path=path,
    )
    lower, upper = s.extras["lower"], s.extras["upper"]
    assert lower.value - 3 * lower.stderr <= exact_ll <= upper.value + 3 * upper.stderr


def test_sampled_fit_reaches_the_averaged_moments():
    """The sampled fit's knots have, exactly computed, moments near the averaged targets: within
    4.5 single-sweep standard errors of 1,000 particles (0.5 / sqrt(1000) each), a bound on the
    largest of the ~100 entries' errors."""
    model, data, _ = trained_bars_rbm()
    base = ebm.base_rate(model, data)
    path = estimators.moment_averaged_path(
        model,
        base,
        num_knots=5,
        fit="sampled",
        generator=torch.Generator().manual_seed(0),
        progress=False,
    )
    s_a, s_b = rbm_moments(path.theta(0.0)), rbm_moments(path.theta(1.0))
    bound = 4.5 * 0.5 / math.sqrt(1000)
    for beta in (0.25, 0.5, 0.75):
        for got, x, y in zip(rbm_moments(path.theta(beta)), s_a, s_b, strict=True):
            assert float((got - ((1 - beta) * x + beta * y)).abs().max()) < bound
    assert path.moment_error < bound


def test_calibration_and_adaptive_schedule_use_the_given_path():
    model, data, _ = trained_bars_rbm()
    base = ebm.base_rate(model, data)
    path = estimators.moment_averaged_path(model, base, num_knots=4, progress=False)
    betas = estimators.schedules.adaptive(
        model, 50, path=path, pilot_betas=200, generator=torch.Generator().manual_seed(0)
    )
    assert estimators.schedules.check(betas).numel() == 50
    exact = estimators.exact_log_z(model).value
    cov = estimators.ais_coverage(
        model,
        repeats=2,
        num_chains=100,
        betas=betas,
        exact=exact,
        path=path,
        generator=torch.Generator().manual_seed(3),
    )
    run = estimators.ais(
        model, 200, betas, path=path, generator=torch.Generator().manual_seed(3), progress=False
    )
    groups = [estimators.log_mean_exp(g)[0] for g in run.log_weights.reshape(2, 100)]
    want = sum(path.log_z0 + g - exact for g in groups) / 2
    assert cov.mean_error == pytest.approx(want, abs=1e-12)


def test_refusals():
    model = random_rbm(4, 18, scale=1.0, seed=0)
    with pytest.raises(
        ValueError, match=r"262,144 states \(2\^18\.0\) of the hidden layer.*fit='sampled'"
    ):
        estimators.moment_averaged_path(model, fit="exact", progress=False)
    with pytest.raises(ValueError, match="fit must be"):
        estimators.moment_averaged_path(model, fit="magic", progress=False)
    with pytest.raises(ValueError, match="num_knots"):
        estimators.moment_averaged_path(model, num_knots=1, progress=False)
    g = ebm.Graph()
    g.add_block("v", ebm.units.Spin(3), visible=True)
    g.add_block("h", ebm.units.Bernoulli(2))
    g.add_factor(ebm.factors.Dense("v", "h"))
    with pytest.raises(ValueError, match="binary"):
        estimators.moment_averaged_path(ebm.EnergyModel(g), progress=False)
    with pytest.raises(ValueError, match="geometric path only"):
        estimators.ais(
            model,
            path=estimators.moment_averaged_path(model, progress=False),
            workers=2,
            progress=False,
        )
