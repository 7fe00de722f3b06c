"""Group resampling of sequential Monte Carlo."""

import math

import torch

from estimators.resampling import resample_degenerate_groups


def test_only_degenerate_groups_are_resampled_and_their_estimate_carried():
    # group 0: one chain carries all the weight (ESS 1 of 4); group 1: equal weights (ESS 4)
    log_w = torch.tensor([[0.0, -50.0, -50.0, -50.0], [0.3, 0.3, 0.3, 0.3]], dtype=torch.float64)
    log_z = torch.tensor([1.0, 2.0], dtype=torch.float64)
    expected_z0 = 1.0 + float(torch.logsumexp(log_w[0], 0)) - math.log(4)
    index = resample_degenerate_groups(log_w, log_z, torch.Generator().manual_seed(0))
    assert index.tolist() == [0, 0, 0, 0, 4, 5, 6, 7]
    assert log_z.tolist() == [expected_z0, 2.0]
    assert log_w[0].tolist() == [0.0] * 4 and log_w[1].tolist() == [0.3] * 4
    assert resample_degenerate_groups(log_w, log_z) is None  # nothing degenerate now


def test_resampling_picks_chains_in_proportion_to_their_weights():
    """Over many groups, the share of picks of each chain is its normalised weight (within
    4.5 standard errors of the binomial count)."""
    groups, size = 4000, 4
    w = torch.tensor([0.7, 0.2, 0.1, 1e-9], dtype=torch.float64)
    log_w = w.log().expand(groups, size).clone()
    log_z = torch.zeros(groups, dtype=torch.float64)
    index = resample_degenerate_groups(log_w, log_z, torch.Generator().manual_seed(1))
    picks = (index.view(groups, size) % size).reshape(-1)
    counts = torch.bincount(picks, minlength=size).double()
    n = groups * size
    p = w / w.sum()
    assert ((counts - n * p).abs() <= 4.5 * (n * p * (1 - p)).sqrt() + 1e-9).all(), counts
    torch.testing.assert_close(log_z, torch.full((groups,), math.log(float(w.mean()))).double())
