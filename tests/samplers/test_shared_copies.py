"""SharedCopiesCD, the published negative phase of DBM pretraining, against its exact law."""

import itertools

import pytest
import torch

import ebm
import samplers


def _states(n: int) -> torch.Tensor:
    return torch.tensor(list(itertools.product([0.0, 1.0], repeat=n)), dtype=torch.float64)


def _exact_law(p_up: torch.Tensor, down) -> torch.Tensor:
    """P(x') = sum_h p(h) p(x' | h) over all binary h (p_up: the factorised law of h), x' over
    all states in the order of ``_states``."""
    hs = _states(p_up.numel())
    p_h = (hs * p_up + (1 - hs) * (1 - p_up)).prod(1)
    q = torch.sigmoid(down(hs))  # (states of h, n_x)
    xs = _states(q.shape[1])
    p_x_given_h = (xs[None] * q[:, None] + (1 - xs[None]) * (1 - q[:, None])).prod(-1)
    return p_h @ p_x_given_h


def _check_law(draws: torch.Tensor, law: torch.Tensor) -> None:
    n = draws.shape[0]
    index = (draws * 2 ** torch.arange(draws.shape[1] - 1, -1, -1)).sum(1).long()
    freq = torch.bincount(index, minlength=law.numel()).double() / n
    se = (law * (1 - law) / n).sqrt()
    assert ((freq - law).abs() <= 4.5 * se + 1e-9).all(), (freq, law)


def _random(model, seed):
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in model.parameters():
            p.copy_(torch.randn(p.shape, generator=g))
    return model


def _weights(rbm):
    """W, b (below) and c (above) of a layer RBM, in float64."""
    return tuple(
        rbm.factors[name].weight.detach().double()
        if name == "weights"
        else rbm.factors[name].bias.detach().double()
        for name in ("weights", "bias_below", "bias_above")
    )


def test_doubled_input_draws_one_visible_sample_from_the_doubled_up_pass():
    """Bottom RBM (input doubled): h ~ sigma(2 W^T v + c), one v' ~ sigma(W h + b) held in both
    copies (not the two independent copies of block Gibbs)."""
    rbm = _random(ebm.deep.layer_rbm(3, 2, copies_below=2), 0)
    w, b, c = _weights(rbm)
    v = torch.tensor([1.0, 0.0, 1.0], dtype=torch.float64)
    n = 40_000
    neg = samplers.SharedCopiesCD(1).negative(
        rbm, {"below": v.repeat(n, 2).float()}, torch.Generator().manual_seed(1)
    )
    assert torch.equal(neg["below"][:, :3], neg["below"][:, 3:])
    law = _exact_law(torch.sigmoid(2 * v.double() @ w + c), lambda h: h @ w.T + b)
    _check_law(neg["below"][:, :3].double(), law)


def test_doubled_top_draws_one_hidden_sample_for_both_copies():
    """Top RBM (hidden layer doubled): one h ~ sigma(W^T x + c) for both copies, then
    x' ~ sigma(2 W h + b)."""
    rbm = _random(ebm.deep.layer_rbm(3, 2, copies_above=2), 2)
    w, b, c = _weights(rbm)
    x = torch.tensor([0.0, 1.0, 1.0], dtype=torch.float64)
    n = 40_000
    neg = samplers.SharedCopiesCD(1).negative(
        rbm, {"below": x.repeat(n, 1).float()}, torch.Generator().manual_seed(3)
    )
    assert torch.equal(neg["above"][:, :2], neg["above"][:, 2:])
    law = _exact_law(torch.sigmoid(x.double() @ w + c), lambda h: 2 * h @ w.T + b)
    _check_law(neg["below"].double(), law)


def test_without_copies_it_is_cd_on_an_rbm():
    """No copies: the same draws as CD-k's hidden-then-visible sweeps, in law: the visible
    marginal after one step matches the exact one-step law."""
    rbm = _random(ebm.deep.layer_rbm(3, 2), 4)
    w, b, c = _weights(rbm)
    x = torch.tensor([1.0, 1.0, 0.0], dtype=torch.float64)
    neg = samplers.SharedCopiesCD(1).negative(
        rbm, {"below": x.repeat(40_000, 1).float()}, torch.Generator().manual_seed(5)
    )
    law = _exact_law(torch.sigmoid(x.double() @ w + c), lambda h: h @ w.T + b)
    _check_law(neg["below"].double(), law)
    assert repr(samplers.SharedCopiesCD(2)) == "SharedCopiesCD(k=2)"
    with pytest.raises(ValueError):
        samplers.SharedCopiesCD(0)
