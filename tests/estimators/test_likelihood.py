import math

import pytest
import torch

import estimators
from tests.helpers import random_rbm


def test_log_likelihood_against_exact_probabilities():
    model = random_rbm(5, 3, scale=1.0, seed=0)
    data = torch.tensor([[1.0, 0, 1, 0, 1], [0, 0, 0, 0, 0], [1, 1, 1, 1, 1]])
    logz = estimators.exact_log_z(model)
    est = estimators.log_likelihood(model, data, logz)
    # p(v) by brute force over h
    hs = torch.tensor([[(i >> k) & 1 for k in range(3)] for i in range(8)], dtype=torch.float32)
    lp = []
    for v in data:
        e = model.energy({"v": v.expand(8, 5), "h": hs}).detach()
        lp.append(float(torch.logsumexp(-e.double(), 0)) - logz.value)
    assert est.value == pytest.approx(sum(lp) / 3, abs=1e-5)
    expected_se = float(torch.tensor(lp, dtype=torch.float64).std() / math.sqrt(3))
    assert est.stderr == pytest.approx(expected_se, rel=1e-5)
    assert est.extras["per_example"].shape == (3,)


def test_uncertainty_includes_log_z_error():
    data = torch.tensor([[1.0, 0, 0, 1], [0, 1, 1, 0], [1, 1, 0, 0], [0, 0, 0, 0]])
    model = random_rbm(4, 3, scale=1.0, seed=1)
    noisy = estimators.Estimate(
        value=estimators.exact_log_z(model).value, kind="point", method="AIS", stderr=0.3
    )
    exact = estimators.log_likelihood(model, data, estimators.exact_log_z(model))
    combined = estimators.log_likelihood(model, data, noisy)
    assert combined.stderr == pytest.approx(math.sqrt(exact.stderr**2 + 0.3**2))
    assert "mean log p(v)" in str(combined)


def test_log_likelihood_validates_data():
    model = random_rbm(4, 3, scale=1.0, seed=0)
    with pytest.raises(ValueError, match=r"block 'v'.*0 or 1"):
        estimators.log_likelihood(model, torch.full((2, 4), 2.0), 0.0)
    with pytest.raises(ValueError, match=r"block 'v'.*non-finite"):
        estimators.log_likelihood(model, torch.tensor([[0.0, float("nan"), 0, 1]]), 0.0)
    with pytest.raises(ValueError, match="log Z must be finite"):
        estimators.log_likelihood(model, torch.zeros(2, 4), float("nan"))
