"""The stepped-sigmoid (rectified) unit against brute force over its binary copies."""

import itertools
import math

import pytest
import torch

import ebm
import estimators
import samplers
from ebm.factors import Bias, Dense
from ebm.rectified import SteppedSigmoid, log_elementary_symmetric
from ebm.units import Bernoulli
from tests.helpers import noise_floor, total_variation


def _brute_log_e(copies):
    """log e_y of q_i = exp(-(i - 0.5)), by summing over the subsets of copies."""
    out = []
    for y in range(copies + 1):
        terms = [
            -sum(i + 0.5 for i in subset) for subset in itertools.combinations(range(copies), y)
        ]
        out.append(float(torch.logsumexp(torch.tensor(terms, dtype=torch.float64), 0)))
    return torch.tensor(out, dtype=torch.float64)


def _copies_log_partition(x, copies):
    """log sum over the 2^N on/off patterns b of the copies of exp(sum_i b_i (x - i + 0.5)),
    elementwise over the tensor x."""
    terms = [
        sum(b * (x - i - 0.5) for i, b in enumerate(bits))
        for bits in itertools.product([0, 1], repeat=copies)
    ]
    return torch.logsumexp(
        torch.stack([torch.as_tensor(t, dtype=torch.float64).expand_as(x) for t in terms]), 0
    )


@pytest.mark.parametrize("copies", [1, 2, 5, 9])
def test_base_energy_table_is_the_sum_over_subsets_of_copies(copies):
    got = log_elementary_symmetric(-(torch.arange(copies, dtype=torch.float64) + 0.5))
    assert torch.allclose(got, _brute_log_e(copies), atol=1e-12, rtol=0)
    units = SteppedSigmoid(1, copies=copies)
    y = torch.arange(copies + 1, dtype=torch.float64)[:, None]
    assert torch.allclose(units.base_energy(y), -_brute_log_e(copies), atol=1e-12, rtol=0)


@pytest.mark.parametrize("copies", [1, 3, 6])
def test_log_partition_mean_and_distribution_agree_with_the_copies(copies):
    x = torch.tensor([[-4.0, -0.3, 0.0, 1.7, 5.5, 12.0]], dtype=torch.float64)
    units = SteppedSigmoid(6, copies=copies)
    per_unit = _copies_log_partition(x[0], copies)
    assert float(units.log_partition(x)) == pytest.approx(float(per_unit.sum()), abs=1e-10)
    dist = units.distribution(x)
    y = torch.arange(copies + 1, dtype=torch.float64)
    probs = dist.base_dist.probs
    assert torch.allclose((probs * y).sum(-1), units.mean(x), atol=1e-12)
    # log p(y | x) = x y - E_0(y) - A(x), A from the copies
    logp = x[0, :, None] * y + _brute_log_e(copies) - per_unit[:, None]
    assert torch.allclose(probs[0].log(), logp, atol=1e-10)


def test_exact_draws_follow_the_poisson_binomial_law():
    """Histograms of 40,000 draws per unit within the total variation that exact draws of the same
    size show; the noisy rectified draw, at the same size, is told apart."""
    copies, n = 4, 40_000
    x = torch.tensor([-1.5, 0.4, 2.2, 4.8], dtype=torch.float64)
    units = SteppedSigmoid(4, copies=copies)
    draws = units.sample(x.expand(n, 4).contiguous(), torch.Generator().manual_seed(0))
    noisy = SteppedSigmoid(4, copies=copies, noisy=True).sample(
        x.expand(n, 4).contiguous(), torch.Generator().manual_seed(0)
    )
    probs = units.distribution(x[None]).base_dist.probs[0]
    told_apart = 0
    for j in range(4):
        floor = noise_floor(probs[j], n, replicates=100, seed=j)
        counts = torch.bincount(draws[:, j].long(), minlength=copies + 1)
        assert total_variation(counts, probs[j]) <= floor
        rounded = torch.bincount(noisy[:, j].round().long(), minlength=copies + 1)
        told_apart += total_variation(rounded, probs[j]) > floor
    assert told_apart >= 3


def test_noisy_draws_are_the_stated_approximation():
    """min(N, max(0, x + sqrt(sigma(x)) eps)): away from 0 and N its mean is x and its variance
    sigma(x), within 4 standard errors; below 0 it is 0."""
    n = 100_000
    units = SteppedSigmoid(3, copies=20, noisy=True)
    x = torch.tensor([3.0, 9.0, -6.0], dtype=torch.float64)
    y = units.sample(x.expand(n, 3).contiguous(), torch.Generator().manual_seed(1))
    for j in range(2):
        var = torch.sigmoid(x[j])
        assert abs(float(y[:, j].mean()) - float(x[j])) < 4 * math.sqrt(var / n)
        # the variance of a sample variance of a normal: 2 var^2 / (n - 1)
        assert abs(float(y[:, j].var()) - float(var)) < 4 * math.sqrt(2 * var**2 / (n - 1))
    assert float(y[:, 2].max()) == 0.0
    assert bool(((y >= 0) & (y <= 20)).all())


def _small_model(copies, noisy=False, seed=0):
    g = torch.Generator().manual_seed(seed)
    graph = ebm.Graph()
    graph.add_block("v", Bernoulli(4), visible=True)
    graph.add_block("h", SteppedSigmoid(2, copies=copies, noisy=noisy))
    graph.add_factor(
        Dense("v", "h", weight=torch.randn(4, 2, generator=g, dtype=torch.float64)),
        Bias("v", torch.randn(4, generator=g, dtype=torch.float64)),
        Bias("h", torch.randn(2, generator=g, dtype=torch.float64) + 1.0),
    )
    return ebm.EnergyModel(graph)


def _brute_joint(model, copies):
    """log p(v, y) up to log Z over every v and y, the y's base energy from the subsets of copies;
    returns (states as a dict, log-weights)."""
    w = model.factors["dense_v_h"].weight.detach()
    b = model.factors["bias_v"].bias.detach()
    c = model.factors["bias_h"].bias.detach()
    log_e = _brute_log_e(copies)
    vs, ys, logw = [], [], []
    for v in itertools.product([0.0, 1.0], repeat=4):
        for y in itertools.product(range(copies + 1), repeat=2):
            vt = torch.tensor(v, dtype=torch.float64)
            yt = torch.tensor(y, dtype=torch.float64)
            vs.append(vt)
            ys.append(yt)
            logw.append(float(vt @ b + yt @ c + vt @ w @ yt + log_e[list(y)].sum()))
    return {"v": torch.stack(vs), "h": torch.stack(ys)}, torch.tensor(logw, dtype=torch.float64)


@pytest.mark.parametrize("noisy", [False, True])
def test_exact_log_z_both_ways_matches_brute_force(noisy):
    """Enumerating v with h summed out, or h with v summed out, gives the brute-force log Z; the
    noisy sampler leaves the model (its log Z) unchanged."""
    model = _small_model(3, noisy=noisy)
    _, logw = _brute_joint(model, 3)
    truth = float(torch.logsumexp(logw, 0))
    assert estimators.exact_log_z(model, sum_out=["h"]).value == pytest.approx(truth, abs=1e-10)
    assert estimators.exact_log_z(model, sum_out=["v"]).value == pytest.approx(truth, abs=1e-10)
    states, logw = _brute_joint(model, 3)
    with torch.no_grad():
        assert torch.allclose(-model.energy(states), logw, atol=1e-10)


@pytest.mark.parametrize("kind", ["cpu", "torch"])
def test_gibbs_histogram_matches_the_exact_joint(kind):
    copies, chains = 3, 20_000
    model = _small_model(copies, seed=2)
    states, logw = _brute_joint(model, copies)
    p = torch.softmax(logw, 0)
    assert float(p.max()) < 0.5
    code_of = {
        (tuple(v.tolist()), tuple(y.tolist())): i
        for i, (v, y) in enumerate(zip(states["v"], states["h"], strict=True))
    }
    floor = noise_floor(p, chains, replicates=100)
    with ebm.backend.use_backend(kind):
        gibbs = samplers.BlockGibbs(model)
        state = gibbs.run(gibbs.init(chains, generator=torch.Generator().manual_seed(3)), 200)
    codes = torch.tensor(
        [
            code_of[(tuple(v.tolist()), tuple(y.tolist()))]
            for v, y in zip(state["v"], state["h"], strict=True)
        ]
    )
    assert total_variation(torch.bincount(codes, minlength=len(p)), p) <= floor
    # power: the same histogram against a model whose weights are off by 0.2 is rejected
    wrong = _small_model(copies, seed=2)
    with torch.no_grad():
        wrong.factors["dense_v_h"].weight.add_(0.2)
    p_wrong = torch.softmax(_brute_joint(wrong, copies)[1], 0)
    assert total_variation(torch.bincount(codes, minlength=len(p)), p_wrong) > floor


def test_gaussian_relu_rbm_log_z_matches_quadrature():
    """One Gaussian visible unit and two rectified hidden units: log Z from the model (h
    enumerated, v summed out) against a trapezoid rule over v of exp(-F(v)), F's hidden terms
    summed over the copies' on/off patterns."""
    copies = 3
    model = ebm.models.gaussian_rbm(
        1,
        2,
        weight=torch.tensor([[0.8, -1.3]], dtype=torch.float64),
        visible_bias=torch.tensor([0.4], dtype=torch.float64),
        hidden_bias=torch.tensor([0.5, -0.2], dtype=torch.float64),
        scale=torch.tensor([1.7], dtype=torch.float64),
        hidden="relu",
        copies=copies,
    )
    v = torch.linspace(-40, 40, 40_001, dtype=torch.float64)
    s, b = 1.7, 0.4
    log_f = -((v - b) ** 2) / (2 * s**2)
    for wj, cj in [(0.8, 0.5), (-1.3, -0.2)]:
        log_f = log_f + _copies_log_partition(cj + wj * v / s, copies)
    quad = math.log(float(torch.trapezoid(torch.exp(log_f), v)))
    assert estimators.exact_log_z(model).value == pytest.approx(quad, abs=1e-8)


def test_bad_data_and_arguments_are_refused_by_name():
    units = SteppedSigmoid(2, copies=3)
    for bad in ([[0.5, 1.0]], [[4.0, 0.0]], [[-1.0, 0.0]]):
        with pytest.raises(ValueError, match="SteppedSigmoid data must be integers in \\[0, 3\\]"):
            units.validate(torch.tensor(bad), "h")
    SteppedSigmoid(2, copies=3, noisy=True).validate(torch.tensor([[0.5, 3.0]]), "h")
    for copies in (0, 2.0, True):
        with pytest.raises(ValueError, match="copies must be an int >= 1"):
            SteppedSigmoid(2, copies=copies)
    with pytest.raises(ValueError, match="hidden must be 'binary' or 'relu'"):
        ebm.models.gaussian_rbm(2, 2, hidden="rectified")


def test_states_enumerate_every_configuration_once():
    units = SteppedSigmoid(3, copies=2)
    states = units.states(torch.arange(units.num_states))
    assert states.shape == (27, 3)
    assert len({tuple(r) for r in states.tolist()}) == 27
    assert torch.equal(units.index(states), torch.arange(27))


def test_save_and_load_keep_copies_and_noisy(tmp_path):
    model = ebm.models.gaussian_rbm(3, 2, hidden="relu", copies=7, noisy=True, learn_variance=True)
    path = ebm.save(model, tmp_path / "relu.safetensors")
    loaded = ebm.load(path)
    assert loaded.units["h"].copies == 7 and loaded.units["h"].noisy
    state = {"v": torch.randn(5, 3), "h": torch.randint(0, 8, (5, 2)).float()}
    with torch.no_grad():
        assert torch.allclose(loaded.energy(state), model.energy(state))


def test_ais_on_a_gaussian_relu_rbm_within_three_standard_errors_of_exact():
    """AIS from the zero-parameter model (h at the stepped sigmoid's law at x = 0, v summed out)
    against the exact log Z (h enumerated: 5^6 states)."""
    model = ebm.models.gaussian_rbm(
        5, 6, scale=torch.full((5,), 0.7), hidden="relu", copies=4
    ).double()
    g = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for p in model.parameters():
            p.copy_(0.5 * torch.randn(p.shape, generator=g, dtype=torch.float64))
    exact = estimators.exact_log_z(model).value
    est = estimators.ais(
        model,
        num_chains=300,
        betas=torch.linspace(0, 1, 500, dtype=torch.float64),
        generator=torch.Generator().manual_seed(0),
        progress=False,
    )
    zero_x = sum(math.log1p(math.exp(-(i + 0.5))) for i in range(4))
    assert est.extras["log_z_base"] == pytest.approx(
        6 * zero_x + 5 * (math.log(0.7) + 0.5 * math.log(2 * math.pi))
    )
    assert 0 < est.stderr < 0.1
    assert abs(est.value - exact) < 3 * est.stderr, (est, exact)


def test_annealing_refuses_the_noisy_sampler_and_takes_the_same_model_exact():
    model = ebm.models.gaussian_rbm(3, 2, hidden="relu", copies=3, noisy=True).double()
    with pytest.raises(ValueError, match=r"blocks \['h'\] draw from an approximation"):
        estimators.ais(model, num_chains=10, betas=10, progress=False)
    exact = estimators.exact_log_z(model).value
    model.units["h"].noisy = False
    est = estimators.ais(
        model, num_chains=200, betas=200, generator=torch.Generator().manual_seed(0), progress=False
    )
    assert abs(est.value - exact) < 4 * est.stderr
