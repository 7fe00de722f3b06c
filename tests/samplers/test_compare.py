"""Sampler comparison: diagnostics on series with known answers, Metropolis and parallel tempering
against exact distributions, tempering against block Gibbs on a two-mode model, findings that flag a
broken sampler, and the command line with its JSON and HTML outputs."""

import json
import math

import numpy as np
import pytest
import torch
from typer.testing import CliRunner

import ebm
import samplers
from boltzkit_cli import app
from ebm.enumeration import exact_log_marginal, state_index
from samplers.compare import COLUMNS
from samplers.diagnostics import autocorrelation, summarize
from samplers.tempering import equal_rejection_ladder
from tests.helpers import joint_states, noise_floor, random_rbm, total_variation


def _ar1(phi, chains, draws, seed):
    """x_t = phi x_{t-1} + e_t, started in its stationary law N(0, 1 / (1 - phi^2))."""
    rng = np.random.default_rng(seed)
    e = rng.standard_normal((chains, draws))
    x = np.empty((chains, draws))
    x[:, 0] = e[:, 0] / math.sqrt(1 - phi**2)
    for t in range(1, draws):
        x[:, t] = phi * x[:, t - 1] + e[:, t]
    return x


def _bartlett_se(phi, lags, n):
    """Bartlett's standard error of the sample autocorrelation r_k of an AR(1) series of n draws:
    var r_k = (1/n) [(1 + phi^2)(1 - phi^2k) / (1 - phi^2) - 2k phi^2k]."""
    k = np.asarray(lags, dtype=np.float64)
    p2k = phi ** (2 * k)
    return np.sqrt(((1 + phi**2) * (1 - p2k) / (1 - phi**2) - 2 * k * p2k) / n)


@pytest.mark.parametrize("phi", [0.0, 0.5, 0.9])
def test_ess_and_autocorrelation_time_of_an_ar1_series(phi):
    """For AR(1), tau = (1 + phi) / (1 - phi), ESS = N / tau and rho(k) = phi^k. The estimates
    agree within 4 standard errors: Sokal's relative error sqrt(2 (2M + 1) / N) of tau for a
    window of M = 5 tau lags (the same relative error for ESS), and for rho(k), k = 1..5, the
    Bartlett standard error of the sample autocorrelation of AR(1) (``_bartlett_se``, with N the
    draws of all chains, as rho averages the independent chains). The rho check has the power to
    tell phi from phi +- 0.05: those are more than 4 standard errors off at some lag."""
    chains, draws = 4, 20_000
    x = _ar1(phi, chains, draws, seed=1)
    n = chains * draws
    tau = (1 + phi) / (1 - phi)
    rel = math.sqrt(2 * (2 * 5 * tau + 1) / n)
    s = summarize(x)
    assert abs(s.tau - tau) < 4 * rel * tau, (s.tau, tau)
    assert abs(s.ess_bulk - n / tau) < 4 * rel * n / tau, (s.ess_bulk, n / tau)
    assert abs(s.rhat - 1) < 0.01 and s.varying_chains == chains
    # the MCSE of the mean is sd sqrt(tau / N)
    sd = 1 / math.sqrt(1 - phi**2)
    assert abs(s.mcse - sd * math.sqrt(tau / n)) < 4 * rel * s.mcse
    rho = autocorrelation(x, 5)
    lags = np.arange(1, 6)
    assert rho[0] == pytest.approx(1.0)

    def z(phi_):  # the largest deviation from phi_^k, in standard errors
        return np.max(np.abs(rho[1:] - phi_**lags) / _bartlett_se(phi_, lags, n))

    assert z(phi) < 4, (rho, phi)
    assert z(phi - 0.05) > 4 and z(phi + 0.05) > 4, (rho, phi)


def test_diagnostics_of_chains_that_disagree_or_never_move():
    """Chains centred on different values have R-hat far above 1; a constant trace has no
    information (ESS 0, infinite tau) and bad shapes are refused."""
    x = _ar1(0.5, 4, 2000, seed=2) + np.array([[0.0], [0.0], [3.0], [3.0]])
    assert summarize(x).rhat > 1.5
    flat = summarize(np.ones((4, 100)))
    assert flat.ess_bulk == 0 and math.isinf(flat.tau) and flat.varying_chains == 0
    with pytest.raises(ValueError, match="chains, draws"):
        summarize(np.ones(10))
    with pytest.raises(ValueError, match="non-finite"):
        summarize(np.full((2, 10), np.nan))


def test_exact_marginal_and_state_index_match_brute_force():
    """exact_log_marginal sums exp(-E) over h for every v, normalised; state_index inverts the
    enumeration order."""
    model = random_rbm(5, 3, scale=1.5, seed=4).double()
    log_p = exact_log_marginal(model, ["v"])
    states = joint_states(model)
    with torch.no_grad():
        joint = torch.softmax(-model.energy(states), 0)
    brute = torch.zeros(32, dtype=torch.float64).index_add_(
        0, state_index(model, ["v"], states), joint
    )
    assert torch.allclose(log_p.exp(), brute, atol=1e-12)
    with pytest.raises(ValueError, match="max_states"):
        exact_log_marginal(model, ["v", "h"], max_states=100)


def _joint_p(model):
    log_p = exact_log_marginal(model.double(), ["v", "h"])
    model.float()
    return log_p.exp().float()


def _final_tv(sampler, model, p, chains, steps, seed):
    state = sampler.init(chains, torch.Generator().manual_seed(seed))
    for _ in range(steps):
        state, _ = sampler.step(state)
    x = sampler.target(state)
    counts = torch.bincount(state_index(model, ["v", "h"], x), minlength=len(p))
    return total_variation(counts, p.double())


@pytest.mark.parametrize("kind", ["metropolis", "tempering"])
def test_metropolis_and_tempering_match_the_exact_joint(kind):
    """20,000 independent chains on a multimodal 8x4 RBM: the histogram of (v, h) after burn-in
    is within the noise floor of as many exact draws (their largest total variation in 200
    replicates), and a model with weights off by 0.2 is detected at the same size."""
    chains = 20_000
    model = random_rbm(8, 4, scale=2.0, seed=0)
    p = _joint_p(model)
    floor = noise_floor(p.double(), chains)

    def build(m):
        if kind == "metropolis":
            return samplers.Metropolis(m)
        return samplers.ParallelTempering(m, num_temperatures=4)

    steps = 300 if kind == "metropolis" else 100
    tv = _final_tv(build(model), model, p, chains, steps, seed=0)
    assert tv <= floor, (tv, floor)
    wrong = random_rbm(8, 4, scale=2.0, seed=0)
    with torch.no_grad():
        wrong.factors["dense_v_h"].weight.add_(0.2)
    assert _final_tv(build(wrong), model, p, chains, steps, seed=0) > floor


def test_metropolis_on_spin_units_matches_the_exact_marginal():
    """Spin visibles: the flip proposal x -> -x with Delta E = -2 eta x is exact too."""
    g = ebm.Graph()
    g.add_block("v", ebm.units.Spin(5), visible=True)
    g.add_block("h", ebm.units.Bernoulli(3))
    g.add_factor(ebm.factors.Dense("v", "h", init_scale=1.0), ebm.factors.Bias("v"))
    torch.manual_seed(0)
    model = ebm.EnergyModel(g)
    p = _joint_p(model)
    chains = 20_000
    tv = _final_tv(samplers.Metropolis(model), model, p, chains, 100, seed=1)
    assert tv <= noise_floor(p.double(), chains)


def test_metropolis_refuses_continuous_units():
    with pytest.raises(ValueError, match="discrete units"):
        samplers.Metropolis(ebm.models.gaussian_rbm(3, 2))


def test_tempering_beats_gibbs_on_a_two_mode_model_at_equal_cost():
    """A two-mode RBM (95% of the mass in the all-on mode): block Gibbs chains stay in the mode
    their first sweep picks, so their draws misplace the mass between the modes; tempering over 8
    temperatures, with the same number of model sweeps per chain, crosses between them. Its total
    variation to the exact p(v) is within the noise floor of its effective draws and far below
    Gibbs's, whose R-hat and findings say it has not converged."""
    model = ebm.models.bimodal_rbm(tilt=0.3)
    result = samplers.compare(
        model,
        [samplers.BlockGibbs, lambda m: samplers.ParallelTempering(m, num_temperatures=8)],
        names=["gibbs", "tempering"],
        num_chains=16,
        sweeps=16_000,
        progress=False,
    )
    gibbs, pt = result["gibbs"], result["tempering"]
    assert gibbs.sweeps == pt.sweeps == 16_000
    assert pt.tv <= pt.noise_floor_effective, pt
    assert pt.tv < gibbs.tv / 3, (pt.tv, gibbs.tv)
    assert gibbs.tv > gibbs.noise_floor  # the draws are not like as many exact draws
    assert gibbs.statistics["mean v"].rhat > 1.1 and not gibbs.trusted
    assert any("not converged" in f for f in gibbs.findings)
    assert max(s.rhat for s in pt.statistics.values()) < 1.05
    assert pt.round_trips > 0 and min(pt.swap_rates) > 0.3


def test_tempering_ladder_equalises_the_swap_rates():
    """After tuning, every adjacent pair of the two-mode model's ladder accepts swaps at about
    the same rate (within 4 binomial standard errors of their mean), where the evenly spaced
    ladder's rates differ widely."""
    model = ebm.models.bimodal_rbm()
    pt = samplers.ParallelTempering(model, num_temperatures=8, tune_rounds=5)
    state = pt.init(64, torch.Generator().manual_seed(0))
    for _ in range(200):
        state, _ = pt.step(state)
    even = pt.swap_rates.copy()
    state = pt.warmup(state, 16 * 31)
    for _ in range(400):
        state, _ = pt.step(state)
    tuned = pt.swap_rates
    attempts = 64 * 200  # per pair: every other step of 400, 64 chains
    se = math.sqrt(tuned.mean() * (1 - tuned.mean()) / attempts)
    assert np.ptp(tuned) < 8 * se, (tuned, even)
    assert np.ptp(even) > np.ptp(tuned) * 3
    assert pt.betas[0] == 0 and pt.betas[-1] == 1 and (np.diff(pt.betas) > 0).all()


def test_equal_rejection_ladder_inverts_the_cumulative_barrier():
    """Rejection only between 0.5 and 1: the new ladder puts its temperatures there."""
    betas = np.linspace(0, 1, 5)
    new = equal_rejection_ladder(betas, [0.0, 0.0, 0.4, 0.4])
    assert new[0] == 0 and new[-1] == 1
    assert np.allclose(new[1:4], [0.625, 0.75, 0.875], atol=1e-4)
    with pytest.raises(ValueError, match="rejection rates"):
        equal_rejection_ladder(betas, [0.1])


def test_round_trips_follow_the_deterministic_even_odd_swaps():
    """With every weight zero all swaps are accepted, so DEO moves each replica deterministically
    up and down the ladder: the count of bottom -> top -> bottom trips equals an independent
    simulation of the positions."""
    model = ebm.models.rbm(3, 2, init_scale=0.0)
    r, chains, steps = 4, 3, 50
    pt = samplers.ParallelTempering(model, num_temperatures=r)
    state = pt.init(chains, torch.Generator().manual_seed(0))
    for _ in range(steps):
        state, _ = pt.step(state)
    position = list(range(r))  # position of replica i
    phase = [1 if p == 0 else 0 for p in position]
    trips = 0
    for step in range(steps):
        for i in range(r):
            p = position[i]
            if p % 2 == step % 2 and p + 1 < r:
                position[i] = p + 1
            elif (p - 1) % 2 == step % 2 and p - 1 >= 0:
                position[i] = p - 1
        for i in range(r):
            if position[i] == r - 1 and phase[i] == 1:
                phase[i] = 2
            if position[i] == 0:
                trips += phase[i] == 2
                phase[i] = 1
    assert trips > 0 and pt.round_trips == chains * trips
    assert np.allclose(pt.swap_rates, 1.0)


class NeverUpdatesHidden(samplers.Kernel):
    """A broken sampler: block Gibbs that forgets to update h."""

    def __init__(self, model):
        self.model = model
        self.inner = samplers.BlockGibbs(model)

    def init(self, num_chains, generator=None):
        return self.inner.init(num_chains, generator)

    def step(self, state):
        state = dict(state)
        state["v"] = self.model.sample_block("v", state, self.inner.generator)
        return state, samplers.StepInfo()


def test_findings_flag_a_broken_sampler_and_pass_a_sound_one():
    """On a small random RBM, block Gibbs is trusted (no finding); a sampler that never updates h
    is flagged (h never changes, the energy's chains disagree), and its v-histogram is off by
    more than the noise floor of as many exact draws (its own draws are so correlated that the
    floor of its few effective draws is wider still)."""
    model = random_rbm(6, 3, scale=1.0, seed=2)
    result = samplers.compare(
        model,
        [samplers.BlockGibbs, NeverUpdatesHidden],
        num_chains=8,
        sweeps=3000,
        progress=False,
    )
    good, bad = result["BlockGibbs"], result["NeverUpdatesHidden"]
    assert good.trusted, good.findings
    assert good.tv <= good.noise_floor_effective
    assert not bad.trusted
    assert any("'mean h' never changed" in f for f in bad.findings), bad.findings
    assert any("not converged" in f and "'energy'" in f for f in bad.findings), bad.findings
    assert bad.tv > bad.noise_floor
    text = str(result)
    assert "NeverUpdatesHidden" in text and "never changed" in text and "no problem found" in text
    # the TV cell shows both floors: of as many exact draws as were kept, and of the smallest ESS
    cell = result.row(good)[COLUMNS.index("TV (floors n / ESS)")]
    assert cell == f"{good.tv:.3f} ({good.noise_floor:.3f} / {good.noise_floor_effective:.3f})"
    assert good.tv_draws == 8 * 2400 and 0 < good.effective_draws < good.tv_draws
    assert good.noise_floor < good.noise_floor_effective


def test_findings_flag_a_short_run():
    """60 sweeps of 4 block Gibbs chains on the multimodal 8x4 RBM keep 48 draws per chain: at
    most 192 draws (ESS below 400: too few samples), and fewer than 50 autocorrelation times
    (undermixed) for any statistic with tau above 48 / 50."""
    model = random_rbm(8, 4, scale=2.0, seed=0)
    r = samplers.compare(
        model, [samplers.BlockGibbs], num_chains=4, sweeps=60, progress=False
    ).results[0]
    assert r.statistics["energy"].draws == 48 and not r.trusted
    assert any(f.startswith("too few samples: 'energy'") for f in r.findings), r.findings
    assert any(f.startswith("undermixed: the autocorrelation time of 'energy'") for f in r.findings)


class ExactDraws(samplers.Kernel):
    """A perfect sampler of ``source`` offered as a sampler of ``model`` (the same blocks): every
    step draws each chain's (v, h) afresh from the exact joint of ``source``. With ``source`` =
    ``model`` it is an ideal sampler; with another model it mixes perfectly, but wrongly."""

    def __init__(self, model, source):
        self.model = model
        blocks = ["v", "h"]
        self.p = exact_log_marginal(source.double(), blocks).exp()
        source.float()
        states = joint_states(model, blocks)
        order = torch.argsort(state_index(model, blocks, states))
        self.states = {b: states[b][order].float() for b in blocks}

    def init(self, num_chains, generator=None):
        self.generator, self.chains = generator, num_chains
        return self.step(None)[0]

    def step(self, state):
        i = torch.multinomial(self.p, self.chains, replacement=True, generator=self.generator)
        return {b: s[i] for b, s in self.states.items()}, samplers.StepInfo()


def test_noise_floor_findings_catch_a_sampler_of_the_wrong_distribution():
    """Exact independent draws of the multimodal 8x4 RBM and of the same RBM with every weight
    0.1 larger (exact total variation 0.096 between their p(v)), both offered as samplers of the
    first: 6,400 kept draws each, whose noise floor is about 0.03. The true model's draws stay
    under both floors (no noise-floor finding); the wrong model's are above both, and that is
    the one finding, as no convergence diagnostic notices anything."""
    model = random_rbm(8, 4, scale=2.0, seed=0)
    wrong = random_rbm(8, 4, scale=2.0, seed=0)
    with torch.no_grad():
        wrong.factors["dense_v_h"].weight.add_(0.1)
    result = samplers.compare(
        model,
        [lambda m: ExactDraws(m, m), lambda m: ExactDraws(m, wrong)],
        names=["exact", "wrong"],
        num_chains=4,
        sweeps=2000,
        progress=False,
    )
    exact, bad = result["exact"], result["wrong"]
    assert exact.tv_draws == bad.tv_draws == 4 * 1600
    assert exact.tv <= min(exact.noise_floor, exact.noise_floor_effective), exact
    assert not any("above the noise floor" in f for f in exact.findings), exact.findings
    assert bad.tv > max(bad.noise_floor, bad.noise_floor_effective), bad
    assert bad.findings and all(f.startswith("above the noise floor") for f in bad.findings)
    data = result.to_dict()["samplers"][1]
    assert data["noise_floor"] == bad.noise_floor
    assert data["noise_floor_effective"] == bad.noise_floor_effective


def test_compare_checks_its_arguments():
    model = random_rbm(3, 2, scale=1.0, seed=0)
    with pytest.raises(ValueError, match="exactly one budget"):
        samplers.compare(model, [samplers.BlockGibbs])
    with pytest.raises(TypeError, match="not a sampler"):
        samplers.compare(model, [42], sweeps=10)
    other = random_rbm(3, 2, scale=1.0, seed=1)
    with pytest.raises(ValueError, match="another model"):
        samplers.compare(model, [samplers.BlockGibbs(other)], sweeps=10)
    with pytest.raises(ValueError, match="burn_in"):
        samplers.compare(model, [samplers.BlockGibbs], sweeps=10, burn_in=1.0)
    result = samplers.compare(
        model, [samplers.BlockGibbs], seconds=0.2, statistics=["v"], progress=False
    )
    r = result.results[0]
    assert list(r.statistics) == ["mean v"] and r.steps >= 5 and r.seconds > 0


def test_cli_compare_writes_json_and_html(tmp_path):
    """``ebm compare bimodal``: the table, a JSON file whose numbers match the findings, an HTML
    report with the plots, and exit status 1 because Gibbs cannot be trusted there."""
    out_json, out_html = tmp_path / "c.json", tmp_path / "c.html"
    result = CliRunner().invoke(
        app,
        [
            "compare",
            "bimodal",
            "-s",
            "gibbs",
            "-s",
            "pt",
            "--sweeps",
            "4000",
            "--json",
            str(out_json),
            "--html",
            str(out_html),
        ],
    )
    assert result.exit_code == 1, result.output
    assert "gibbs" in result.output and "not converged" in result.output
    data = json.loads(out_json.read_text())
    names = [s["name"] for s in data["samplers"]]
    assert names == ["gibbs", "pt"]
    gibbs = data["samplers"][0]
    assert gibbs["trusted"] is False and gibbs["statistics"]["mean v"]["rhat"] > 1.1
    assert gibbs["noise_floor"] < gibbs["tv"] and gibbs["noise_floor_effective"] is not None
    assert data["samplers"][1]["swap_rates"] and data["samplers"][1]["tv"] is not None
    page = out_html.read_text()
    assert page.count("data:image/png;base64,") == 4 and "not converged" in page
    missing = CliRunner().invoke(app, ["compare", str(tmp_path / "none.safetensors")])
    assert missing.exit_code != 0 and "no model file" in missing.output


def _categorical_rbm(seed=0):
    """Categorical(3 units, 3 states)-visible RBM with 3 Bernoulli hidden units, weights ~ N(0, 1)."""
    g = ebm.Graph()
    g.add_block("v", ebm.units.Categorical(3, 3), visible=True)
    g.add_block("h", ebm.units.Bernoulli(3))
    weight = torch.randn(9, 3, generator=torch.Generator().manual_seed(seed))
    g.add_factor(ebm.factors.Dense("v", "h", weight=weight))
    return ebm.EnergyModel(g)


class Frozen(samplers.Kernel):
    """A stuck sampler: block Gibbs's start, never moved."""

    def __init__(self, model):
        self.model = model
        self.inner = samplers.BlockGibbs(model)

    def init(self, num_chains, generator=None):
        return self.inner.init(num_chains, generator)

    def step(self, state):
        return state, samplers.StepInfo()


@pytest.mark.parametrize(
    "name, build",
    [
        ("categorical", lambda: _categorical_rbm()),
        ("gaussian", lambda: ebm.models.gaussian_rbm(3, 3, init_scale=0.5)),
        ("dbm", lambda: ebm.models.dbm([4, 3, 2], init_scale=0.5)),
    ],
)
def test_default_statistics_trust_block_gibbs_on_every_unit_type(name, build):
    """With the default statistics (energy, each block's summary: the mean category index of a
    one-hot block), block Gibbs on small well-mixing Categorical, Gaussian and DBM models has no
    finding; a sampler that never moves on the same model is flagged as stuck, block by block."""
    torch.manual_seed(0)
    model = build()
    result = samplers.compare(
        model, [samplers.BlockGibbs, Frozen], num_chains=4, sweeps=1500, progress=False
    )
    good, bad = result["BlockGibbs"], result["Frozen"]
    assert good.trusted, good.findings
    assert good.notes == [] and good.unmoved == {b: 0 for b in model.blocks}
    assert not bad.trusted
    for b in model.blocks:
        assert f"block '{b}' never changed in any chain" in " ".join(bad.findings)


def test_one_hot_summary_is_the_mean_category_index():
    units = ebm.units.Categorical(2, 3)
    x = torch.nn.functional.one_hot(torch.tensor([[0, 2], [1, 1]]), 3).float()
    assert units.summary(x).tolist() == [1.0, 1.0]
    assert ebm.units.Bernoulli(2).summary(torch.tensor([[0.0, 1.0], [1.0, 1.0]])).tolist() == [
        0.5,
        1.0,
    ]


def test_a_constant_statistic_on_moving_chains_is_a_note_not_a_finding():
    """The mean of the one-hot statistic is 1/k in every state: on chains that move it is
    reported as uninformative (a note), while the verdict rests on the other statistics."""
    model = _categorical_rbm()
    one_hot_mean = {
        "energy": lambda s: model.energy(s),
        "one-hot mean": lambda s: s["v"].flatten(1).mean(1),
    }
    result = samplers.compare(
        model,
        [samplers.BlockGibbs],
        num_chains=4,
        sweeps=1500,
        statistics=one_hot_mean,
        progress=False,
    )
    r = result["BlockGibbs"]
    assert r.trusted, r.findings
    assert len(r.notes) == 1 and "'one-hot mean'" in r.notes[0] and "uninformative" in r.notes[0]
    assert "note: 'one-hot mean'" in str(result)
    row = result.row(r)
    assert row[COLUMNS.index("max R-hat")] != "nan"
