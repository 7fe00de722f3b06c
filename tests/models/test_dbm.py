"""Deep Boltzmann machines: the odd/even schedule, exact log Z and Gibbs against brute force, mean
field and its bound against the exact posterior, AIS that anneals the odd layers only, per-example
AIS log-likelihoods, and greedy pretraining followed by joint training."""

import copy
import functools
import math

import pytest
import torch

import ebm
import estimators
import samplers
from tests.helpers import brute_log_z, joint_states, noise_floor, randomize, total_variation


def random_dbm(layers, seed, scale=1.0):
    return randomize(ebm.models.dbm(layers), scale, seed).double()


def brute_posterior(model, v):
    """p(h | v) over every joint hidden state (rows of ``joint_states``), for one example v."""
    h = joint_states(model, model.hidden())
    n = next(iter(h.values())).shape[0]
    with torch.no_grad():
        e = model.energy({"v": v.expand(n, -1), **h})
    return torch.softmax(-e, 0), h


def brute_log_p(model, data):
    """log p(v) per example by summing exp(-E) over every hidden state."""
    log_z = brute_log_z(model)
    out = []
    for v in data:
        h = joint_states(model, model.hidden())
        n = next(iter(h.values())).shape[0]
        with torch.no_grad():
            out.append(float(torch.logsumexp(-model.energy({"v": v.expand(n, -1), **h}), 0)))
    return torch.tensor(out, dtype=torch.float64) - log_z


def test_dbm_blocks_schedule_and_bad_input():
    model = ebm.models.dbm([6, 5, 4, 3])
    assert model.blocks == ["v", "h1", "h2", "h3"] and model.visible == ["v"]
    assert sorted(map(sorted, model.schedule)) == [["h1", "h3"], ["h2", "v"]]
    assert [f.blocks for n, f in model.factors.items() if n.startswith("w")] == [
        ("v", "h1"),
        ("h1", "h2"),
        ("h2", "h3"),
    ]
    with pytest.raises(ValueError, match="at least one hidden layer"):
        ebm.models.dbm([5])
    with pytest.raises(ValueError, match="layer 1"):
        ebm.models.dbm([5, 0])


def test_exact_log_z_sums_the_even_layers_and_matches_brute_force():
    model = random_dbm([5, 4, 3], seed=0, scale=1.5)
    exact = estimators.exact_log_z(model)
    assert sorted(exact.extras["summed_out"]) == ["h2", "v"]
    assert exact.value == pytest.approx(brute_log_z(model), abs=1e-9)
    deep = random_dbm([4, 3, 3, 2], seed=1, scale=1.5)
    assert estimators.exact_log_z(deep).value == pytest.approx(brute_log_z(deep), abs=1e-9)


def test_block_gibbs_matches_the_exact_distribution():
    """20,000 chains, 100 odd/even sweeps: the histogram of (v, h1, h2) over the 2^9 states is
    within the noise floor of as many exact draws."""
    model = random_dbm([3, 3, 3], seed=2, scale=1.0)
    states = joint_states(model)
    with torch.no_grad():
        p = torch.softmax(-model.energy(states), 0)
    n = 20_000
    gibbs = samplers.BlockGibbs(model, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        final = gibbs.run(gibbs.init(n), 100)
    bits = torch.cat([final["v"], final["h1"], final["h2"]], 1)
    code = {tuple(r): i for i, r in enumerate(torch.cat(list(states.values()), 1).tolist())}
    idx = torch.tensor([code[tuple(r)] for r in bits.tolist()])
    assert total_variation(torch.bincount(idx, minlength=len(p)), p) <= noise_floor(p, n)


def test_mean_field_fixed_point_and_bound_equal_log_p_minus_kl():
    """At convergence mu1 = sigma(W1^T v + W2 mu2 + c1) and mu2 = sigma(W2^T mu1 + c2); the bound
    B(v) = -E(v, mu) + H(q) - log Z equals log p(v) - KL(q || p(h | v)), both by brute force."""
    model = random_dbm([5, 4, 3], seed=3, scale=1.5)
    data = (torch.rand(6, 5, generator=torch.Generator().manual_seed(4)) < 0.5).double()
    q = ebm.inference.mean_field(model, data, max_sweeps=500, tol=1e-12)
    assert q.converged
    f = model.factors
    w1, w2 = f["w1"].weight.detach(), f["w2"].weight.detach()
    c1, c2 = f["bias_h1"].bias.detach(), f["bias_h2"].bias.detach()
    mu1, mu2 = q.means["h1"], q.means["h2"]
    assert torch.allclose(mu1, torch.sigmoid(data @ w1 + mu2 @ w2.T + c1), atol=1e-10)
    assert torch.allclose(mu2, torch.sigmoid(mu1 @ w2 + c2), atol=1e-10)
    log_z = estimators.exact_log_z(model)
    bound = estimators.mean_field_bound(model, data, log_z, max_sweeps=500, tol=1e-12)
    assert bound.kind == "lower_bound"
    exact = brute_log_p(model, data)
    for i, v in enumerate(data):
        post, h = brute_posterior(model, v)
        qh = torch.ones(len(post), dtype=torch.float64)
        for b in ("h1", "h2"):
            m = q.means[b][i]
            qh = qh * torch.where(h[b] == 1, m, 1 - m).prod(1)
        kl = float((qh * (qh.log() - post.log())).sum())
        per = float(bound.extras["per_example"][i])
        assert per == pytest.approx(float(exact[i]) - kl, abs=1e-8)
        assert per <= float(exact[i]) + 1e-12


def test_mean_field_sweeps_never_lower_the_bound():
    """Coordinate ascent: the bound after k sweeps is non-decreasing in k (per example)."""
    model = random_dbm([6, 5, 4], seed=5, scale=2.0)
    data = (torch.rand(10, 6, generator=torch.Generator().manual_seed(6)) < 0.5).double()
    previous = None
    for k in range(1, 8):
        q = ebm.inference.mean_field(model, data, max_sweeps=k, tol=0.0)
        assert q.sweeps == k
        with torch.no_grad():
            b = -model.energy({"v": data, **q.means}) + q.entropy(model)
        if previous is not None:
            assert (b >= previous - 1e-10).all()
        previous = b


def test_mean_field_refuses_continuous_hidden_units():
    g = ebm.Graph()
    g.add_block("v", ebm.units.Bernoulli(3), visible=True)
    g.add_block("h", ebm.units.Gaussian(2))
    g.add_factor(ebm.factors.Dense("v", "h"))
    with pytest.raises(ValueError, match="discrete hidden units; block .h. is Gaussian"):
        ebm.inference.mean_field(ebm.EnergyModel(g), torch.zeros(2, 3))


@pytest.mark.parametrize("layers,seed", [([8, 6, 5], 0), ([8, 6, 5], 1), ([5, 4, 4, 3], 2)])
def test_ais_anneals_the_odd_layers_and_matches_exact(layers, seed):
    model = random_dbm(layers, seed=seed, scale=1.0)
    path = estimators.path.GeometricPath(model)
    odd = [b for i, b in enumerate(model.blocks) if i % 2 == 1]
    assert path.base.blocks == odd and sorted(path.sum_out) == sorted(set(model.blocks) - set(odd))
    exact = estimators.exact_log_z(model).value
    est = estimators.ais(
        model,
        num_chains=300,
        betas=estimators.schedules.linear(1000),
        generator=torch.Generator().manual_seed(seed),
        progress=False,
    )
    assert 0 < est.stderr < 0.1
    assert abs(est.value - exact) < 3 * est.stderr, (est, exact)


def test_per_example_ais_log_likelihood_and_exact_free_energy():
    """AIS of the model with v clamped gives each log p(v) within 4 of its standard errors of the
    brute-force value (and the mean within 3 of the combined one); the enumerating free energy that
    ``log_likelihood`` falls back on for DBMs is exact."""
    model = random_dbm([8, 6, 5], seed=7, scale=1.0)
    data = (torch.rand(30, 8, generator=torch.Generator().manual_seed(8)) < 0.5).double()
    exact = brute_log_p(model, data)
    log_z = estimators.exact_log_z(model)
    ll = estimators.log_likelihood(model, data, log_z)
    assert torch.allclose(ll.extras["per_example"], exact, atol=1e-9)
    est = estimators.ais_log_likelihood(
        model,
        data,
        log_z,
        chains_per_example=50,
        betas=estimators.schedules.linear(300),
        examples_per_run=16,
        generator=torch.Generator().manual_seed(9),
        progress=False,
    )
    errors = est.extras["per_example_stderr"]
    assert (errors > 0).all() and (errors < 0.2).all()
    assert ((est.extras["per_example"] - exact).abs() < 4 * errors).all()
    mean_error = float(errors.pow(2).mean().sqrt()) / math.sqrt(len(data))
    assert abs(est.value - float(exact.mean())) < 3 * mean_error
    with pytest.raises(ValueError, match="num_chains must be"):
        path = estimators.path.GeometricPath(model, clamp={"v": data[:2]})
        path.init(3)


def test_tied_factors_give_the_doubled_conditionals():
    """Two copies of the input on one shared W: p(h | v, v) = sigma(2 W^T v + c) while each copy
    of v given h is sigma(W h + b); two copies of the hidden layer double the top-down input."""
    bottom = randomize(ebm.deep.layer_rbm(4, 3, copies_below=2), 1.0, seed=0).double()
    w = bottom.factors["weights"].weight.detach()
    b, c = bottom.factors["bias_below"].bias.detach(), bottom.factors["bias_above"].bias.detach()
    v = (torch.rand(5, 4, generator=torch.Generator().manual_seed(1)) < 0.5).double()
    h = (torch.rand(5, 3, generator=torch.Generator().manual_seed(2)) < 0.5).double()
    with torch.no_grad():
        p_h = bottom.conditional("above", {"below": v.repeat(1, 2)}).base_dist.probs
        p_v = bottom.conditional("below", {"above": h}).base_dist.probs
    assert torch.allclose(p_h, torch.sigmoid(2 * v @ w + c))
    assert torch.allclose(p_v, torch.sigmoid(h @ w.T + b).repeat(1, 2))
    top = randomize(ebm.deep.layer_rbm(3, 2, copies_above=2), 1.0, seed=3).double()
    w2, b2 = top.factors["weights"].weight.detach(), top.factors["bias_below"].bias.detach()
    h2 = (torch.rand(5, 2, generator=torch.Generator().manual_seed(4)) < 0.5).double()
    with torch.no_grad():
        p_h1 = top.conditional("below", {"above": h2.repeat(1, 2)}).base_dist.probs
    assert torch.allclose(p_h1, torch.sigmoid(2 * h2 @ w2.T + b2))
    with pytest.raises(ValueError, match="cannot hold 2 equal copies"):
        g = ebm.Graph()
        g.add_block("a", ebm.units.Bernoulli(3)).add_block("b", ebm.units.Bernoulli(2))
        g.add_factor(ebm.factors.TiedDense("a", "b", copies_a=2))


@functools.cache
def _digits_dbm():
    """A 64-16-8 DBM on the digits: (initial, pretrained, jointly trained) copies and the data."""
    train, test = ebm.datasets.digits(binarize="threshold")
    torch.manual_seed(0)
    model = ebm.models.dbm([64, 16, 8])
    initial = copy.deepcopy(model)
    g = torch.Generator().manual_seed(0)
    histories = ebm.pretrain_dbm(
        model,
        train,
        lambda: samplers.CD(1),
        epochs=30,
        batch_size=20,
        lr=0.05,
        momentum=0.5,
        generator=g,
        progress=False,
    )
    pretrained = copy.deepcopy(model)
    ebm.fit(
        model,
        train,
        samplers.MeanFieldPCD(100, k=1, max_sweeps=10),
        epochs=30,
        batch_size=20,
        lr=0.01,
        momentum=0.5,
        generator=g,
        progress=False,
    )
    return initial, pretrained, model, histories, test


def test_pretraining_then_joint_training_raise_the_exact_log_likelihood():
    """On the digits, the exact held-out log p(v) of a 64-16-8 DBM (h1 enumerated for log Z, h2
    for each F(v)) rises from the random start through greedy pretraining, and joint training with
    mean field and persistent chains raises it further, each step by more than 3 standard errors
    of the paired difference; AIS (h1 annealed, v and h2 summed out) finds the exact log Z within
    its error, and the mean-field bound sits below the exact value."""
    initial, pretrained, trained, histories, test = _digits_dbm()
    assert len(histories) == 2 and all(len(h) == 30 for h in histories)
    per = []
    for model in (initial, pretrained, trained):
        log_z = estimators.exact_log_z(model)
        per.append(estimators.log_likelihood(model, test, log_z).extras["per_example"])
    for before, after in zip(per, per[1:], strict=False):
        diff = after - before
        assert float(diff.mean()) > 3 * float(diff.std() / math.sqrt(len(diff)))
    log_z = estimators.exact_log_z(trained)
    assert log_z.extras["enumerated"] == ["h1"]
    est = estimators.ais(
        trained,
        num_chains=100,
        betas=estimators.schedules.linear(1000),
        generator=torch.Generator().manual_seed(3),
        progress=False,
    )
    assert 0 < est.stderr < 0.2 and abs(est.value - log_z.value) < 3 * est.stderr, (est, log_z)
    bound = estimators.mean_field_bound(trained, test, log_z)
    assert (bound.extras["per_example"] <= per[-1] + 1e-6).all()
    assert bound.value > float(per[-1].mean()) - 1.0  # mean field is a reasonable posterior here


def test_pretraining_copies_the_stack_into_the_dbm(monkeypatch):
    """Three hidden layers: the middle RBM's weights are halved, the ends are copied as trained."""
    data = ebm.datasets.bars_and_stripes(3)
    torch.manual_seed(1)
    model = ebm.models.dbm([9, 6, 5, 4])
    captured = []
    original = ebm.deep.fit

    def spy(rbm, *args, **kwargs):
        captured.append(rbm)
        return original(rbm, *args, **kwargs)

    monkeypatch.setattr(ebm.deep, "fit", spy)
    ebm.pretrain_dbm(model, data, lambda: samplers.CD(1), epochs=2, batch_size=4, progress=False)
    copies = [(r.units["below"].n, r.units["above"].n) for r in captured]
    assert copies == [(18, 6), (6, 5), (5, 8)]
    for level, (rbm, factor) in enumerate(zip(captured, ("w1", "w2", "w3"), strict=True), 1):
        w = rbm.factors["weights"].weight
        expected = 0.5 * w if level == 2 else w
        assert torch.equal(model.factors[factor].weight, expected)


def test_pretraining_starts_the_visible_bias_at_the_base_rate(monkeypatch):
    """The bottom RBM starts with the base-rate model's visible bias (``"zero"``: at zero)."""
    data = ebm.datasets.bars_and_stripes(3)
    starts = {}
    original = ebm.deep.fit

    def spy(rbm, *args, **kwargs):
        starts.setdefault(kind, rbm.factors["bias_below"].bias.detach().clone())
        return original(rbm, *args, **kwargs)

    monkeypatch.setattr(ebm.deep, "fit", spy)
    for kind in ("base_rate", "zero"):
        model = ebm.models.dbm([9, 6, 5])
        ebm.pretrain_dbm(
            model, data, lambda: samplers.CD(1), epochs=1, progress=False, visible_bias=kind
        )
    rates = ebm.base_rate(model, {"v": data}).natural["v"]
    assert torch.equal(starts["base_rate"], rates) and rates.abs().min() > 0
    assert torch.equal(starts["zero"], torch.zeros(9))
    with pytest.raises(ValueError, match="visible_bias"):
        ebm.pretrain_dbm(model, data, lambda: samplers.CD(1), visible_bias="data")


def test_ais_from_the_base_rate_sums_out_a_layer_and_matches_exact():
    """With a base over v (the base-rate model) the blocks outside it cannot all be summed out,
    so the path sums out the set that leaves the fewest states (h1 of the 64-16-8 DBM) and anneals
    v and h2. It recovers the exact log Z within its error."""
    _, _, trained, _, _ = _digits_dbm()
    train, _ = ebm.datasets.digits(binarize="threshold")
    base = ebm.base_rate(trained, {"v": train})
    path = estimators.path.GeometricPath(trained, base)
    assert path.sum_out == ["h1"] and path.chain_blocks == ["v", "h2"]
    exact = estimators.exact_log_z(trained).value
    est = estimators.ais(
        trained,
        num_chains=100,
        betas=estimators.schedules.linear(1000),
        base=base,
        generator=torch.Generator().manual_seed(4),
        progress=False,
    )
    assert est.extras["summed_out"] == ["h1"]
    assert 0 < est.stderr < 0.2 and abs(est.value - exact) < 3 * est.stderr, (est, exact)


def test_ais_from_the_mean_field_base_matches_exact():
    """``ebm.mean_field_base`` adds the even layer h2, at the rates of draws from the data's
    mean-field posterior, to the base-rate model over v: AIS from it (h1 summed out, v and h2
    annealed) recovers the exact log Z of the 64-16-8 digits DBM within its error (on this small
    model the base-rate start does as well: ESS 95 and 94 of 100; on MNIST it does not, see
    docs/results.md); a wrong block is refused."""
    _, _, trained, _, _ = _digits_dbm()
    train, _ = ebm.datasets.digits(binarize="threshold")
    base = ebm.mean_field_base(trained, {"v": train}, generator=torch.Generator().manual_seed(0))
    assert sorted(base.blocks) == ["h2", "v"]
    exact = estimators.exact_log_z(trained).value
    est = estimators.ais(
        trained,
        num_chains=100,
        betas=estimators.schedules.linear(1000),
        base=base,
        sum_out=["h1"],
        generator=torch.Generator().manual_seed(4),
        progress=False,
    )
    assert est.extras["summed_out"] == ["h1"]
    assert abs(est.value - exact) < 3 * est.stderr, (est, exact)
    with pytest.raises(ValueError, match="hidden Bernoulli"):
        ebm.mean_field_base(trained, {"v": train}, blocks=["v"])


def test_per_example_ais_from_a_mean_field_base_over_h2_matches_exact():
    """``ais_log_likelihood(base=, sum_out=)``: each test image's log p(v) by AIS with v clamped,
    h1 summed out and h2 annealed from the data's mean-field rates, within 4 of its own standard
    errors of the exact value (enumeration) for every one of 30 test images."""
    _, _, trained, _, test = _digits_dbm()
    train, _ = ebm.datasets.digits(binarize="threshold")
    rates = ebm.mean_field_base(trained, {"v": train}, generator=torch.Generator().manual_seed(0))
    base = ebm.FactorizedBase(trained, {"h2": rates.natural["h2"]})
    exact = estimators.exact_log_z(trained)
    truth = estimators.log_likelihood(trained, test[:30], exact).extras["per_example"]
    est = estimators.ais_log_likelihood(
        trained,
        test[:30],
        exact,
        chains_per_example=20,
        betas=estimators.schedules.linear(500),
        generator=torch.Generator().manual_seed(3),
        progress=False,
        base=base,
        sum_out=["h1"],
    )
    se = est.extras["per_example_stderr"]
    assert (se > 0).all() and ((est.extras["per_example"] - truth).abs() < 4 * se).all()


def test_pretraining_options_of_the_published_protocol(monkeypatch):
    """Epochs per layer, the middle bias averaged from the two RBMs that hold it, and fresh draws
    of grey data: the bottom RBM sees binary draws that change from batch to batch, the top one
    draws of p(h1 | grey v) from the trained bottom RBM."""
    grey = ebm.datasets.bars_and_stripes(3).repeat(4, 1) * 0.8 + 0.1
    captured = []
    original = ebm.deep.fit

    def spy(rbm, data, sampler, **kwargs):
        captured.append((rbm, data, kwargs))
        return original(rbm, data, sampler, **kwargs)

    monkeypatch.setattr(ebm.deep, "fit", spy)
    model = ebm.models.dbm([9, 6, 5])
    histories = ebm.pretrain_dbm(
        model,
        grey,
        lambda: samplers.SharedCopiesCD(1),
        epochs=[2, 3],
        batch_size=8,
        progress=False,
        hidden_bias="average",
        fresh_draws=True,
        generator=torch.Generator().manual_seed(0),
    )
    assert [len(h) for h in histories] == [2, 3]
    (bottom, data1, options1), (top, data2, options2) = captured
    assert torch.equal(data1, grey) and torch.equal(data2, grey)
    g = torch.Generator().manual_seed(1)
    first = options1["batch_transform"](grey, g)["below"]
    second = options1["batch_transform"](grey, g)["below"]
    assert set(first.unique().tolist()) == {0.0, 1.0} and not torch.equal(first, second)
    assert torch.equal(first[:, :9], first[:, 9:])
    up = options2["batch_transform"](grey, g)["below"]
    assert up.shape == (grey.shape[0], 6) and set(up.unique().tolist()) <= {0.0, 1.0}
    mean = 0.5 * (bottom.factors["bias_above"].bias + top.factors["bias_below"].bias)
    assert torch.allclose(model.factors["bias_h1"].bias, mean)
    assert torch.equal(model.factors["bias_h2"].bias, top.factors["bias_above"].bias)
    assert torch.equal(model.factors["bias_v"].bias, bottom.factors["bias_below"].bias)
    with pytest.raises(ValueError, match="one per layer"):
        ebm.pretrain_dbm(model, grey, lambda: samplers.CD(1), epochs=[1], fresh_draws=True)
    with pytest.raises(ValueError, match="hidden_bias"):
        ebm.pretrain_dbm(model, grey, lambda: samplers.CD(1), hidden_bias="upper")
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        ebm.pretrain_dbm(model, grey * 2, lambda: samplers.CD(1), fresh_draws=True)


def test_the_shipped_mnist_dbm_loads_and_its_recorded_bound_is_reproduced_on_a_subset():
    """The long run's model (examples/checkpoints/mnist_dbm) loads as a 784-500-1000 DBM; where
    MNIST is beside the checkout, its mean-field bound on the first 1,000 test images, with the
    recorded log Z, lies within 4 standard errors of the recorded bound on all 10,000."""
    import json
    from pathlib import Path

    import estimators

    root = Path(__file__).resolve().parents[2]
    run = root / "examples" / "checkpoints" / "mnist_dbm"
    model = ebm.load(run / "dbm.safetensors")
    assert [model.units[b].n for b in ("v", "h1", "h2")] == [784, 500, 1000]
    record = json.loads((run / "results.json").read_text())
    mnist = root.parent / "shared" / "data" / "mnist"
    if not mnist.exists():
        pytest.skip("MNIST is not beside the checkout")
    _, test = ebm.datasets.mnist(mnist, binarize="stochastic", seed=0)
    bound = estimators.mean_field_bound(model, test[:1000], record["log_z"], max_sweeps=300)
    assert abs(bound.value - record["test_bound"]) < 4 * bound.stderr, (bound, record["test_bound"])
