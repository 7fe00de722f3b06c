"""Products of hidden Markov models: the forward algorithm against hmmlearn and brute force, FFBS
against exact path posteriors, exact log Z against brute force and AIS, block Gibbs against the
exact joint (binary and categorical x) and the exact moments (Gaussian x), and CD training."""

import itertools
import math

import arviz as az
import pytest
import torch
from hmmlearn import hmm

import ebm
import estimators
import samplers
from estimators.exact import enumerate_states, exact_log_marginal
from tests.helpers import noise_floor, randomize, support, total_variation

EMISSIONS = {
    "bernoulli": {"emission": "bernoulli", "dims": 2},
    "categorical": {"emission": "categorical", "symbols": 3},
}


def one_hot_paths(length, states):
    """Every path of a K-state chain of T steps, one-hot, built with itertools."""
    rows = list(itertools.product(range(states), repeat=length))
    return torch.nn.functional.one_hot(torch.tensor(rows), states).double()


def random_pohmm(n_hmms, n_states, length, seed, **kwargs):
    return randomize(ebm.models.pohmm(n_hmms, n_states, length, **kwargs), 1.0, seed).double()


def brute_joint(model):
    """Every (x, s1, ..., sM) of a product of HMMs with binary or categorical x, as one state."""
    parts = [support(model.units["x"])] + [
        one_hot_paths(*model.units[b].shape) for b in model.blocks[1:]
    ]
    idx = torch.tensor(list(itertools.product(*[range(len(p)) for p in parts])))
    state = {b: parts[i][idx[:, i]] for i, b in enumerate(model.blocks)}
    state["x"] = state["x"].reshape(len(idx), *model.units["x"].shape)
    return state


def hmm_parameters(model, m=1):
    initial, transition = model.factors[f"initial{m}"], model.factors[f"transition{m}"]
    f = model.factors[f"emission{m}"]
    return initial.log_initial().exp().detach(), transition.log_transition().exp().detach(), f


def test_categorical_hmm_likelihood_matches_hmmlearn_even_for_long_sequences():
    model = random_pohmm(1, 3, 400, seed=0, emission="categorical", symbols=4)
    pi, a, f = hmm_parameters(model)
    ref = hmm.CategoricalHMM(n_components=3, n_features=4)
    ref.startprob_, ref.transmat_ = pi.detach().numpy(), a.detach().numpy()
    ref.emissionprob_ = torch.softmax(f.params, -1).detach().numpy()
    g = torch.Generator().manual_seed(1)
    symbols = torch.randint(4, (5, 400), generator=g)
    x = torch.nn.functional.one_hot(symbols, 4).double()
    with torch.no_grad():
        free = model.free_energy({"x": x})
    assert torch.isfinite(free).all() and (free > 400 * math.log(4) * 0.5).all()
    for i in range(5):
        expected = ref.score(symbols[i].numpy().reshape(-1, 1))
        assert float(-free[i]) == pytest.approx(expected, rel=1e-9)


def test_gaussian_hmm_likelihood_matches_hmmlearn():
    model = random_pohmm(1, 3, 20, seed=2, emission="gaussian", dims=2, sigma=0.7)
    pi, a, f = hmm_parameters(model)
    ref = hmm.GaussianHMM(n_components=3, covariance_type="spherical")
    ref.n_features = 2
    ref.startprob_, ref.transmat_ = pi.detach().numpy(), a.detach().numpy()
    ref.means_ = f.params.detach().numpy()
    ref.covars_ = torch.full((3,), 0.49, dtype=torch.float64).numpy()
    x = torch.randn(4, 20, 2, generator=torch.Generator().manual_seed(3), dtype=torch.float64)
    with torch.no_grad():
        free = model.free_energy({"x": x.reshape(4, 40)})
    for i in range(4):  # the units' scale was stored in float32 when the model was built
        assert float(-free[i]) == pytest.approx(ref.score(x[i].numpy()), rel=1e-7)


def test_bernoulli_product_free_energy_is_minus_the_sum_of_hmm_log_likelihoods():
    """F(x) = -sum_m log p_m(x), each p_m summed over every path by brute force."""
    model = random_pohmm(2, 2, 4, seed=4, emission="bernoulli", dims=3)
    x = (torch.rand(6, 12, generator=torch.Generator().manual_seed(5)) < 0.5).double()
    paths = one_hot_paths(4, 2)
    expected = torch.zeros(6, dtype=torch.float64)
    for m in (1, 2):
        pi, a, f = hmm_parameters(model, m)
        p = torch.sigmoid(f.params).detach()  # (K, D)
        for i in range(6):
            steps = x[i].reshape(4, 3)
            total = 0.0
            for s in paths.argmax(-1).tolist():
                prob = pi[s[0]] * math.prod(float(a[s[t - 1], s[t]]) for t in range(1, 4))
                for t in range(4):
                    prob = prob * torch.where(steps[t] == 1, p[s[t]], 1 - p[s[t]]).prod()
                total = total + prob
            expected[i] += math.log(float(total))
    with torch.no_grad():
        assert torch.allclose(-model.free_energy({"x": x}), expected, atol=1e-10)


def test_ffbs_and_forward_backward_match_the_exact_path_posterior():
    """A 3-state chain of 4 steps with random unary terms and log transition potentials L (not
    normalised): log_partition and the marginals agree with enumeration of the 81 paths, and
    20,000 FFBS draws are within the noise floor; with normalised log pi and log A the prior's
    A(0, L) is zero; without L the steps are independent categoricals."""
    gen = torch.Generator().manual_seed(7)
    units = ebm.chains.MarkovChain(4, 3)
    eta = torch.randn(1, 4, 3, generator=gen, dtype=torch.float64)
    log_t = torch.randn(1, 3, 3, generator=gen, dtype=torch.float64)
    paths = one_hot_paths(4, 3)
    pairs = torch.stack([log_t[0][p[:-1], p[1:]].sum() for p in paths.argmax(-1)])
    with torch.no_grad():
        log_w = (paths * eta).sum((1, 2)) + pairs
        assert torch.allclose(-units.quadratic_energy(paths, log_t.expand(81, 3, 3)), pairs)
        p = torch.softmax(log_w, 0)
        log_z = float(units.log_partition(eta, log_t))
        assert log_z == pytest.approx(float(torch.logsumexp(log_w, 0)), rel=1e-12)
        assert torch.allclose(units.mean(eta, log_t)[0], (p[:, None, None] * paths).sum(0))
        prior = torch.zeros_like(eta)
        prior[:, 0] = torch.log_softmax(torch.randn(3, generator=gen, dtype=torch.float64), -1)
        log_a = torch.log_softmax(log_t, -1)
        assert float(units.log_partition(prior, log_a)) == pytest.approx(0.0, abs=1e-12)
        independent = ebm.units.Categorical(4, 3)
        assert torch.allclose(units.log_partition(eta), independent.log_partition(eta))
        n = 20_000
        draws = units.sample(eta.expand(n, 4, 3), torch.Generator().manual_seed(8), log_t)
    index = (draws.argmax(-1) * torch.tensor([27, 9, 3, 1])).sum(-1)
    assert total_variation(torch.bincount(index, minlength=81), p) <= noise_floor(p, n)
    dist = units.distribution(eta.expand(81, 4, 3), log_t)
    assert torch.allclose(dist.log_prob(paths), torch.log(p))
    with pytest.raises(ValueError, match="log_transition must have shape"):
        units.log_partition(eta, torch.zeros(1, 2, 2, dtype=torch.float64))


def test_initial_state_and_transition_are_factors_the_graph_classifies():
    """The chain prior lives in two factors on the path block: InitialState is linear in it,
    Transition quadratic (its log A is the unit type's log_transition); a quadratic factor on a
    block whose units take no quadratic term is refused."""
    model = random_pohmm(2, 3, 5, seed=3, emission="bernoulli", dims=2)
    assert model.quadratic_factors("s1") == ["transition1"]
    assert model.factors["initial1"].linear_in("s1")
    assert not model.units["s1"].has_base_energy and not list(model.units.parameters())
    state = estimators.exact_samples(model, 4, torch.Generator().manual_seed(0))
    q = model.quadratic("s2", state)
    assert torch.equal(q[0], model.factors["transition2"].log_transition())
    with pytest.raises(ValueError, match="couples the units of block 's1'"):
        ebm.inference.mean_field(model, state["x"])
    g = ebm.Graph()
    g.add_block("s", ebm.units.Categorical(4, 3))
    with pytest.raises(ValueError, match="take no quadratic term"):
        g.add_factor(ebm.factors.Transition("s"))


@pytest.mark.parametrize(
    "emission, n_hmms, seed",
    [("bernoulli", 2, 9), ("categorical", 3, 10)],
    ids=["bernoulli", "categorical"],
)
def test_exact_log_z_and_ais_on_a_product_of_hmms(emission, n_hmms, seed):
    """Exact log Z against brute force over every (x, s1, ..., sM), and three AIS runs (300 chains,
    300 linear betas, the paths summed out) within 3 standard errors of it: 2 HMMs with binary x
    (2 per step) and 3 HMMs with categorical x (3 symbols), 2 states, 3 steps."""
    model = random_pohmm(n_hmms, 2, 3, seed=seed, **EMISSIONS[emission])
    with torch.no_grad():
        brute = float(torch.logsumexp(-model.energy(brute_joint(model)), 0))
    exact = estimators.exact_log_z(model)
    assert exact.value == pytest.approx(brute, abs=1e-10)
    assert exact.value < 0  # sum_x prod_m p_m(x) <= 1
    for ais_seed in range(3):
        est = estimators.ais(
            model,
            num_chains=300,
            betas=estimators.schedules.linear(300),
            generator=torch.Generator().manual_seed(ais_seed),
            progress=False,
        )
        assert est.extras["summed_out"] == model.blocks[1:] and 0 < est.stderr < 0.1
        assert abs(est.value - exact.value) < 3 * est.stderr, (est, exact)


@pytest.mark.parametrize(
    "emission, seed", [("bernoulli", 11), ("categorical", 19)], ids=["bernoulli", "categorical"]
)
def test_block_gibbs_matches_the_exact_joint(emission, seed):
    """20,000 chains, 50 sweeps (all paths by FFBS given x, then x given the paths) on 2 HMMs of
    2 states and 3 steps: the histogram of (x, s1, s2) over its 4,096 states (binary x, 2 per step)
    or 1,728 (categorical x, 3 symbols) is within the noise floor of as many exact draws."""
    model = random_pohmm(2, 2, 3, seed=seed, **EMISSIONS[emission])
    joint = brute_joint(model)
    with torch.no_grad():
        p = torch.softmax(-model.energy(joint), 0)
    codes = {
        tuple(r): i
        for i, r in enumerate(torch.cat([joint[b].flatten(1) for b in model.blocks], 1).tolist())
    }
    n = 20_000
    gibbs = samplers.BlockGibbs(model, generator=torch.Generator().manual_seed(12))
    with torch.no_grad():
        final = gibbs.run(gibbs.init(n), 50)
    rows = torch.cat([final[b].flatten(1) for b in model.blocks], 1).tolist()
    idx = torch.tensor([codes[tuple(r)] for r in rows])
    assert total_variation(torch.bincount(idx, minlength=len(p)), p) <= noise_floor(p, n)


def test_block_gibbs_matches_the_exact_moments_of_a_gaussian_product_of_hmms():
    """2 HMMs of 2 states, 3 steps of 2-D Gaussian x (sigma 0.7). Exactly, x is a mixture over the
    64 joint path configurations: given the paths, x_t ~ N(mean_m mu_m(s^m_t), sigma^2 / M) (the
    normalised product of the emissions), and the paths have weights p(s) (the model's exact
    marginal, checked against the chain priors times the Gaussian integral by hand). 2,000 block
    Gibbs chains (30 sweeps of burn-in, then 50 draws): E[x_i] and E[x_i^2] of every coordinate
    within 4 Monte Carlo standard errors (sd / sqrt(arviz ESS)); with the emission variance off by
    20% either way the second moments are not."""
    n_hmms, length, dims, sigma = 2, 3, 2, 0.7
    model = random_pohmm(n_hmms, 2, length, seed=17, emission="gaussian", dims=dims, sigma=sigma)
    paths = model.blocks[1:]
    log_p = exact_log_marginal(model, paths)
    configs = enumerate_states(model, paths, 0, len(log_p), torch.float64)
    log_prior, mu_sum, mu_sq = 0.0, 0.0, 0.0
    for m in range(1, n_hmms + 1):
        pi, a, f = hmm_parameters(model, m)
        s = configs[f"s{m}"]  # (64, T, K)
        log_prior = log_prior + s[:, 0] @ pi.log()
        log_prior = log_prior + torch.einsum("cti,ij,ctj->c", s[:, :-1], a.log(), s[:, 1:])
        mu = s @ f.params.detach()  # (64, T, D)
        mu_sum, mu_sq = mu_sum + mu, mu_sq + (mu**2).sum(-1)
    # integral over x_t of prod_m N(x_t; mu_m, sigma^2), up to a constant
    log_gauss = ((mu_sum**2).sum(-1) / (2 * n_hmms * sigma**2) - mu_sq / (2 * sigma**2)).sum(-1)
    assert torch.allclose(torch.log_softmax(log_prior + log_gauss, 0), log_p, atol=1e-10)
    mean, var = (mu_sum / n_hmms).reshape(len(log_p), length * dims), sigma**2 / n_hmms
    with torch.no_grad():
        given = model.conditional("x", configs)
    assert torch.allclose(given.mean, mean)
    assert torch.allclose(given.variance, torch.full_like(mean, var))
    p = log_p.exp()

    def second(v):
        return p @ (mean**2 + v)

    gibbs = samplers.BlockGibbs(model, generator=torch.Generator().manual_seed(18))
    with torch.no_grad():
        state, draws = gibbs.run(gibbs.init(2000), 30), []
        for _ in range(50):
            state, _ = gibbs.step(state)
            draws.append(state["x"])
    x = torch.stack(draws, 1).numpy()  # (chains, draws, T * D)

    def z_scores(stat, exact):
        out = []
        for i in range(stat.shape[-1]):
            ess = float(az.ess(stat[..., i]))
            assert ess > 1000, (i, ess)
            se = float(stat[..., i].std()) / math.sqrt(ess)
            out.append((float(stat[..., i].mean()) - float(exact[i])) / se)
        return torch.tensor(out)

    z_first, z_second = z_scores(x, p @ mean), z_scores(x**2, second(var))
    assert (z_first.abs() < 4).all() and (z_second.abs() < 4).all(), (z_first, z_second)
    for wrong in (0.8 * var, 1.2 * var):
        assert z_scores(x**2, second(wrong)).abs().max() > 4


def test_cd_training_raises_the_exact_log_likelihood_and_the_model_saves(tmp_path):
    """Sequences drawn exactly from a teacher product of 2 HMMs: CD-5 through ebm.fit raises the
    student's exact held-out log-likelihood by far more than its standard error; the trained model
    saves and loads (the Markov chains' parameters included)."""
    teacher = random_pohmm(2, 2, 6, seed=13, emission="bernoulli", dims=2)
    with torch.no_grad():
        for m in (1, 2):
            teacher.factors[f"emission{m}"].params.mul_(3.0)
            teacher.factors[f"transition{m}"].logits.copy_(2.0 * torch.eye(2) - 1.0)
    draws = estimators.exact_samples(teacher, 3000, torch.Generator().manual_seed(14))["x"]
    train, test = draws[:2000].float(), draws[2000:].float()
    torch.manual_seed(15)
    student = ebm.models.pohmm(2, 2, 6, emission="bernoulli", dims=2)

    def held_out(model):
        return estimators.log_likelihood(model, test, estimators.exact_log_z(model))

    before = held_out(student)
    ebm.fit(
        student,
        train,
        samplers.CD(5),
        epochs=20,
        batch_size=50,
        lr=0.05,
        momentum=0.5,
        generator=torch.Generator().manual_seed(16),
        progress=False,
    )
    after, target = held_out(student), held_out(teacher)
    diff = after.extras["per_example"] - before.extras["per_example"]
    assert float(diff.mean()) > 10 * float(diff.std() / math.sqrt(len(diff)))
    assert after.value > before.value + 0.5 * (target.value - before.value), (before, after, target)
    path = ebm.save(student, tmp_path / "pohmm.safetensors")
    loaded = ebm.load(path)
    with torch.no_grad():
        assert torch.allclose(loaded.free_energy({"x": test}), student.free_energy({"x": test}))
