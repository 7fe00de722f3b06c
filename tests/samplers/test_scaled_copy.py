"""ScaledCopyCD, the pretraining rule of the over-replicated softmax, against its exact law."""

import itertools

import pytest
import torch

import ebm
import samplers


def _random_ors(vocab: int, hidden: int, m: int, seed: int):
    model = ebm.models.over_replicated_softmax(vocab, hidden, m).double()
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in model.parameters():
            p.copy_(0.7 * torch.randn(p.shape, generator=g, dtype=p.dtype))
    return model


def _params(model):
    w = model.factors["w"].weight.detach()  # (vocab, hidden)
    b = model.factors["b"].bias.detach()
    a = model.factors["a"].bias.detach()
    return w, b, a


def _up(model, v: torch.Tensor, m: int) -> torch.Tensor:
    """The published pretraining up-pass, written out: sigma((1 + M/D) W^T v + (D + M) a)."""
    w, _, a = _params(model)
    d = v.sum(-1, keepdim=True)
    return torch.sigmoid((1 + m / d) * (v @ w) + (d + m) * a)


def test_positive_state_is_the_scaled_up_pass_and_the_scaled_copy():
    m = 3
    model = _random_ors(5, 4, m, 0)
    v = torch.tensor([[2.0, 0.0, 1.0, 0.0, 1.0], [0.0, 7.0, 0.0, 0.0, 0.0]], dtype=torch.float64)
    pos = samplers.ScaledCopyCD(1).positive(model, {"v": v})
    torch.testing.assert_close(pos["h2"], v * m / v.sum(-1, keepdim=True))
    torch.testing.assert_close(pos["h1"], _up(model, v, m))
    torch.testing.assert_close(pos["h2"].sum(-1), torch.full((2,), float(m), dtype=torch.float64))


def test_negative_visible_law_is_the_rsm_down_pass_after_the_scaled_up_pass():
    """For k = 1: P(v') = sum_h prod_j p_up(h_j) Multinomial(v'; D, softmax(W h + b)), every v'
    of length D enumerated, against the frequencies of many draws (4.5 standard errors)."""
    vocab, hidden, m, d = 3, 3, 4, 3
    model = _random_ors(vocab, hidden, m, 1)
    w, b, _ = _params(model)
    v = torch.tensor([[1.0, 0.0, 2.0]], dtype=torch.float64)
    p_up = _up(model, v, m)[0]
    hs = torch.tensor(list(itertools.product([0.0, 1.0], repeat=hidden)), dtype=torch.float64)
    p_h = (hs * p_up + (1 - hs) * (1 - p_up)).prod(1)
    words = torch.log_softmax(hs @ w.T + b, -1)  # (states of h, vocab)
    counts = [c for c in itertools.product(range(d + 1), repeat=vocab) if sum(c) == d]
    vs = torch.tensor(counts, dtype=torch.float64)
    log_coef = torch.lgamma(torch.tensor(d + 1.0, dtype=torch.float64)) - torch.lgamma(vs + 1).sum(
        -1
    )
    law = (p_h[:, None] * torch.exp(log_coef[None] + words @ vs.T)).sum(0)
    assert float(law.sum()) == pytest.approx(1.0, abs=1e-12)

    n = 40_000
    neg = samplers.ScaledCopyCD(1).negative(
        model, {"v": v.expand(n, -1)}, torch.Generator().manual_seed(2)
    )
    assert bool((neg["v"].sum(-1) == d).all())
    torch.testing.assert_close(neg["h2"], neg["v"] * m / d)
    torch.testing.assert_close(neg["h1"], _up(model, neg["v"], m))
    index = {c: i for i, c in enumerate(counts)}
    drawn = torch.tensor([index[tuple(int(x) for x in row)] for row in neg["v"].tolist()])
    freq = torch.bincount(drawn, minlength=len(counts)).double() / n
    se = (law * (1 - law) / n).sqrt()
    assert ((freq - law).abs() <= 4.5 * se + 1e-9).all(), (freq, law)


def test_pretraining_gradient_is_the_scaled_rsm_gradient():
    """The loss E(pos) - E(neg) that ``fit`` differentiates: its W gradient is
    -(1 + M/D)(v p(h1|v)^T - v' p(h1|v')^T) averaged, written out here."""
    m = 2
    model = _random_ors(4, 3, m, 3)
    rule = samplers.ScaledCopyCD(1)
    v = torch.tensor([[1.0, 2.0, 0.0, 1.0], [0.0, 0.0, 3.0, 2.0]], dtype=torch.float64)
    g = torch.Generator().manual_seed(4)
    with torch.no_grad():  # as ``fit`` runs the sampler
        pos, neg = rule.positive(model, {"v": v}), rule.negative(model, {"v": v}, g)
    loss = model.energy(pos).mean() - model.energy(neg).mean()
    (grad,) = torch.autograd.grad(loss, [model.factors["w"].weight])
    vn = neg["v"]
    scale_p, scale_n = 1 + m / v.sum(-1, keepdim=True), 1 + m / vn.sum(-1, keepdim=True)
    expected = (
        -((scale_p * v).T @ _up(model, v, m) - (scale_n * vn).T @ _up(model, vn, m)) / v.shape[0]
    )
    torch.testing.assert_close(grad, expected)


def test_refuses_a_model_without_a_fixed_length_copy():
    rsm = ebm.models.replicated_softmax(5, 3)
    with pytest.raises(ValueError, match="needs blocks 'h2' and 'v'"):
        samplers.ScaledCopyCD(1).positive(rsm, {"v": torch.ones(2, 5)})
    with pytest.raises(ValueError, match="k must be"):
        samplers.ScaledCopyCD(0)


def test_fit_pretrains_the_over_replicated_model():
    """A few epochs of the rule through ``fit`` on counts from a random ORS: finite history and
    moved weights."""
    model = ebm.models.over_replicated_softmax(12, 4, 5)
    g = torch.Generator().manual_seed(5)
    lengths = torch.randint(3, 15, (60,), generator=g)
    data = torch.stack(
        [torch.bincount(torch.randint(12, (int(n),), generator=g), minlength=12) for n in lengths]
    ).float()
    before = model.factors["w"].weight.detach().clone()
    history = ebm.fit(
        model,
        {"v": data},
        samplers.ScaledCopyCD(1),
        epochs=2,
        batch_size=20,
        lr=0.05,
        generator=g,
        progress=False,
    )
    assert not history.interrupted
    assert not torch.allclose(before, model.factors["w"].weight)


def test_mean_field_pcd_starts_from_the_given_means():
    """MeanFieldPCD(init=...) fits the posterior from the means it is given: after one sweep the
    result is mean_field's from that start, not from the default one."""
    model = _random_ors(6, 3, 4, 6)
    v = torch.tensor([[3.0, 0.0, 1.0, 0.0, 2.0, 0.0], [0.0, 1.0, 0.0, 5.0, 0.0, 1.0]])
    v = v.double()
    rule = samplers.ScaledCopyCD()
    pos = samplers.MeanFieldPCD(10, max_sweeps=1, init=rule.initial_means).positive(model, {"v": v})
    start = rule.initial_means(model, {"v": v})
    expected = ebm.inference.mean_field(model, {"v": v}, max_sweeps=1, tol=1e-4, init=start)
    default = ebm.inference.mean_field(model, {"v": v}, max_sweeps=1, tol=1e-4)
    for block in ("h1", "h2"):
        torch.testing.assert_close(pos[block], expected.means[block])
    assert not torch.allclose(pos["h1"], default.means["h1"])
    with pytest.raises(TypeError, match="init must be callable"):
        samplers.MeanFieldPCD(10, init={"h1": torch.zeros(2, 3)})
