"""Degenerate importance weights are reported, not hidden: a strongly frustrated spin glass (exact
log Z by a transfer matrix written in the tests) makes AIS, RAISE and the bridge warn and mark
their estimates untrusted, and the mark is deserved (the estimate is many standard errors off);
an easy model raises no warning and its interval covers the truth."""

from __future__ import annotations

import math
import warnings

import pytest
import torch

import ebm
import estimators
from estimators.estimate import DegenerateWeightsWarning, weight_degeneracy
from tests.helpers import strip_glass, transfer_matrix_log_z


def glass(scale, seed=1, rows=8, cols=40):
    horizontal, vertical = strip_glass(rows, cols, scale, seed)
    model = ebm.models.checkerboard_ising(rows, cols, horizontal, vertical)
    return model, transfer_matrix_log_z(horizontal, vertical)


def run_ais(model, seed=2, betas=1000):
    return estimators.ais(
        model,
        num_chains=100,
        betas=betas,
        generator=torch.Generator().manual_seed(seed),
        progress=False,
    )


def test_checkerboard_ising_energy_is_the_grid_energy():
    """The checkerboard RBM's exact log Z equals the transfer matrix's on a small grid with fields."""
    horizontal, vertical = strip_glass(3, 5, 1.0, seed=0)
    field = 0.5 * torch.randn(3, 5, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    model = ebm.models.checkerboard_ising(3, 5, horizontal, vertical, field)
    truth = transfer_matrix_log_z(horizontal, vertical, field)
    assert estimators.exact_log_z(model).value == pytest.approx(truth, abs=1e-10)


@pytest.mark.parametrize("seed", [1, 2])
def test_a_strong_glass_warns_and_its_estimate_is_untrusted(seed):
    """8 x 40 glass, couplings N(0, 3^2), 100 chains x 1,000 betas: AIS warns naming the ESS, the
    estimate is marked untrusted, its line and the log-likelihood built on it say so; and the
    estimate is indeed more than 5 of its standard errors below the exact log Z."""
    model, truth = glass(3.0, seed)
    with pytest.warns(DegenerateWeightsWarning, match=r"ESS is \d+\.\d% of the chains"):
        est = run_ais(model)
    assert not est.trusted and "ESS" in est.untrusted
    assert "NOT to be trusted" in str(est)
    assert (est.value - truth) / est.stderr < -5
    black = torch.ones(3, model.units["black"].n)
    ll = estimators.log_likelihood(model, black, est)
    assert not ll.trusted and "NOT to be trusted" in str(ll)


def test_an_easy_model_raises_no_warning_and_is_covered():
    """A weakly coupled glass (N(0, 0.5^2)) with the same budget: no warning, trusted, within 3
    standard errors of the exact log Z."""
    model, truth = glass(0.5)
    with warnings.catch_warnings():
        warnings.simplefilter("error", DegenerateWeightsWarning)
        est = run_ais(model)
    assert est.trusted and "NOT" not in str(est)
    assert abs(est.value - truth) < 3 * est.stderr


def test_raise_and_bridge_flag_the_strong_glass():
    """RAISE (10 chains per example) marks its bound untrusted on the strong glass; the bridge on
    a smaller strong glass (enumerable, exact reverse draws) flags its forward direction."""
    model, _ = glass(3.0, rows=6, cols=20)
    black = torch.ones(4, model.units["black"].n)
    with pytest.warns(DegenerateWeightsWarning, match="RAISE"):
        bound = estimators.reverse_ais(
            model,
            black,
            num_chains=10,
            betas=200,
            progress=False,
            generator=torch.Generator().manual_seed(3),
        )
    assert not bound.trusted
    small, _ = glass(3.0, rows=4, cols=8)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DegenerateWeightsWarning)
        est = estimators.bridge(
            small,
            num_chains=100,
            betas=20,
            progress=False,
            generator=torch.Generator().manual_seed(4),
        )
    assert not est.extras["forward"].trusted


def test_the_diagnosis_on_known_weights():
    """Log-normal log-weights of sd 0.5 pass, of sd 2 fail (ESS about e^-4 of the chains); one
    weight carrying everything fails on the ESS even with sd just under the bar."""
    g = torch.Generator().manual_seed(0)
    z = torch.randn(10_000, generator=g, dtype=torch.float64)
    for sd, degenerate in [(0.5, False), (2.0, True)]:
        log_w = sd * z
        _, _, ess = estimators.log_mean_exp(log_w)
        reason = weight_degeneracy(ess / log_w.numel(), float(log_w.std()))
        assert (reason is not None) == degenerate, (sd, ess)
    log_w = torch.zeros(100, dtype=torch.float64)
    log_w[0] = 14.0
    _, _, ess = estimators.log_mean_exp(log_w)
    assert float(log_w.std()) < 1.5 and ess < 10
    assert "ESS" in weight_degeneracy(ess / 100, float(log_w.std()))
    assert math.isclose(
        ess,
        1 / ((math.exp(14) / (math.exp(14) + 99)) ** 2 + 99 / (math.exp(14) + 99) ** 2),
        rel_tol=1e-9,
    )
