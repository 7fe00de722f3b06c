import math

import pytest
import torch

import estimators
from tests.helpers import random_rbm


def _gaussian_works(d, sigma, n, gen):
    """Log-weights with E[e^W_F] = e^d and E[e^W_R] = e^-d (Gaussian work, the textbook case)."""
    wf = d - sigma**2 / 2 + sigma * torch.randn(n, generator=gen, dtype=torch.float64)
    wr = -d - sigma**2 / 2 + sigma * torch.randn(n, generator=gen, dtype=torch.float64)
    return wf, wr


def test_bennett_recovers_known_ratio_with_calibrated_error():
    gen = torch.Generator().manual_seed(0)
    d_true, z = 3.7, []
    ses = []
    for _ in range(200):
        d, se = estimators.bennett(*_gaussian_works(d_true, 2.0, 200, gen))
        z.append((d - d_true) / se)
        ses.append(se)
    z = torch.tensor(z)
    # the errors are standard normal to within what 200 draws resolve
    assert abs(float(z.mean())) < 3 / math.sqrt(200)
    assert abs(float(z.std()) - 1.0) < 0.15
    assert float((z.abs() < 1.96).double().mean()) > 0.9


def test_bennett_is_exact_for_identical_distributions():
    d, se = estimators.bennett(
        torch.zeros(10, dtype=torch.float64), torch.zeros(10, dtype=torch.float64)
    )
    assert d == pytest.approx(0.0, abs=1e-9) and se == pytest.approx(0.0, abs=1e-9)
    with pytest.raises(ValueError, match="two chains"):
        estimators.bennett(torch.zeros(1), torch.zeros(5))


@pytest.mark.parametrize("seed", [0, 1])
def test_bridge_agrees_with_exact_and_brackets_it(seed):
    model = random_rbm(12, 8, scale=2.0, seed=seed)
    exact = estimators.exact_log_z(model).value
    est = estimators.bridge(
        model,
        num_chains=200,
        betas=estimators.schedules.linear(300),
        generator=torch.Generator().manual_seed(seed),
        progress=False,
    )
    assert abs(est.value - exact) < 3 * est.stderr
    fwd, rev = est.extras["forward"], est.extras["reverse"]
    assert rev.kind == "upper_bound" and est.extras["exact_samples"]
    # each direction alone lies on its side of the truth (within its error)
    assert fwd.value - 3 * fwd.stderr <= exact <= rev.value + 3 * rev.stderr
    # two-sided is at least as precise as the forward direction alone at the same path
    assert est.stderr <= fwd.stderr


def test_exact_samples_follow_the_exact_distribution():
    model = random_rbm(5, 3, scale=1.5, seed=4)
    n = 40_000
    draws = estimators.exact_samples(model, n, torch.Generator().manual_seed(0))
    assert set(draws) == {"v", "h"} and draws["v"].shape == (n, 5)
    exact_v = torch.softmax(
        -model.double()
        .free_energy(
            {
                "v": torch.tensor(
                    [[(i >> k) & 1 for k in range(5)] for i in range(32)], dtype=torch.float64
                )
            }
        )
        .detach(),
        0,
    )
    model.float()
    codes = (draws["v"].long() << torch.arange(5)).sum(1)
    emp = torch.bincount(codes, minlength=32).double() / n
    se = (exact_v * (1 - exact_v) / n).sqrt()
    assert ((emp - exact_v).abs() < 5 * se + 1e-12).all()
