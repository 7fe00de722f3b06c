"""The under-complete product of experts (exact log Z), HMC against its known moments, AIS with
HMC transitions against the exact log Z, and CD with HMC transitions."""

import math

import pytest
import torch

import ebm
import estimators
import samplers


def upoe(dim, experts, seed, df=6.0):
    torch.manual_seed(seed)
    return ebm.models.upoe(dim, experts, df=df).double()


def second_moments(model):
    """E[x x^T] = W^T diag(var_j) W + (I - W^T W), var_j = sigma_j^2 nu_j / (nu_j - 2), of a UPoE."""
    f = model.factors["experts"]
    w = f.projection.detach()
    nu, sigma = f.log_df.exp().detach(), f.log_scale.exp().detach()
    eye = torch.eye(w.shape[1], dtype=torch.float64)
    return w.T @ torch.diag(sigma**2 * nu / (nu - 2)) @ w + eye - w.T @ w


def assert_chains_match(x, exact, az):
    """Draws x (chains, draws, D): every second moment within 4 standard errors (sd / sqrt(bulk
    ESS), the ESS above 100 so that the error bar is not vacuous) and split R-hat below 1.05."""
    dim = x.shape[-1]
    for i in range(dim):
        for j in range(i, dim):
            prod = (x[..., i] * x[..., j]).numpy()
            ess = float(az.ess(prod))
            assert ess > 100, (i, j, ess)
            se = float(prod.std()) / math.sqrt(ess)
            assert abs(float(prod.mean()) - float(exact[i, j])) < 4 * se, (i, j, ess)
            assert float(az.rhat(prod)) < 1.05


def test_log_z_is_exact_and_the_projection_stays_orthonormal():
    """2-D quadrature of exp(-E) gives (D - J) log(2 pi) / 2; W W^T = I after gradient steps."""
    model = upoe(2, 1, seed=0)
    g = torch.linspace(-60, 60, 2401, dtype=torch.float64)
    x, y = torch.meshgrid(g, g, indexing="ij")
    with torch.no_grad():
        e = model.energy({"x": torch.stack([x.flatten(), y.flatten()], 1)})
    quad = float(torch.logsumexp(-e, 0)) + 2 * math.log(float(g[1] - g[0]))
    assert quad == pytest.approx(ebm.models.upoe_log_z(model), abs=1e-5)
    model = upoe(5, 3, seed=1)
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    data = torch.randn(50, 5, generator=torch.Generator().manual_seed(2), dtype=torch.float64)
    for _ in range(5):
        opt.zero_grad()
        model.free_energy({"x": data}).mean().backward()
        opt.step()
    w = model.factors["experts"].projection
    # orthonormal to the float32 precision in which the parametrisation's base was made
    assert torch.allclose(w @ w.T, torch.eye(3, dtype=torch.float64), atol=1e-6)
    with pytest.raises(ValueError, match="fewer experts"):
        ebm.models.upoe(3, 3)


def test_hmc_matches_the_known_second_moments():
    """E[x x^T] = W^T diag(var_j) W + (I - W^T W), var_j = sigma_j^2 nu_j / (nu_j - 2): 2,000 HMC
    chains after a tuned warm-up agree within 4 standard errors, at a sensible acceptance rate."""
    model = upoe(3, 2, seed=3, df=8.0)
    exact = second_moments(model)
    hmc = samplers.BatchedHMC(
        model, step_size=0.3, num_steps=8, generator=torch.Generator().manual_seed(4)
    )
    state = hmc.warmup(hmc.init(2000), 50)
    state = hmc.run(state, 99)
    state, last = hmc.step(state)  # the 100th step, whose acceptance is checked
    assert 0.6 < float(last.accept.mean()) <= 1.0
    x = state["x"]
    products = x[:, :, None] * x[:, None, :]
    err = products.std(0) / math.sqrt(len(x))
    assert ((products.mean(0) - exact).abs() < 4 * err).all()
    assert (x.mean(0).abs() < 4 * x.std(0) / math.sqrt(len(x))).all()


def test_ais_with_hmc_transitions_is_calibrated_against_the_exact_log_z():
    """x carried by the chains, annealed from N(0, I) with one HMC transition per beta (400
    betas, ESS near all 200 chains): over 3 runs the z-scores against the exact log Z stay
    within 3."""
    model = upoe(4, 2, seed=5)
    exact = ebm.models.upoe_log_z(model)
    for seed in range(3):
        est = estimators.ais(
            model,
            num_chains=200,
            betas=estimators.schedules.linear(400),
            generator=torch.Generator().manual_seed(seed),
            progress=False,
        )
        assert 0 < est.stderr < 0.02
        assert abs(est.value - exact) < 3 * est.stderr, (est, exact)


def test_cd_with_hmc_raises_the_exact_log_likelihood():
    """Exact draws of a teacher UPoE (Student-t projections plus a Gaussian complement): a student
    trained by CD with HMC transitions through ebm.fit gains exact held-out log-likelihood by more
    than 5 standard errors of the paired difference."""
    teacher = upoe(4, 2, seed=6, df=3.0)
    f = teacher.factors["experts"]
    g = torch.Generator().manual_seed(7)
    with torch.no_grad():
        y = torch.distributions.StudentT(f.log_df.exp(), 0.0, f.log_scale.exp()).sample((1500,))
        w = f.projection
        complement = torch.randn(1500, 4, generator=g, dtype=torch.float64)
        complement = complement - (complement @ w.T) @ w
        data = y @ w + complement
    train, test = data[:1000], data[1000:]
    student = upoe(4, 2, seed=8, df=6.0)

    def per_example(model):
        return estimators.log_likelihood(model, test, ebm.models.upoe_log_z(model)).extras[
            "per_example"
        ]

    before = per_example(student)
    ebm.fit(
        student,
        train,
        samplers.HMCCD(k=1, step_size=0.3, num_steps=5),
        epochs=20,
        batch_size=50,
        lr=0.02,
        momentum=0.5,
        generator=torch.Generator().manual_seed(9),
        progress=False,
    )
    diff = per_example(student) - before
    assert float(diff.mean()) > 5 * float(diff.std() / math.sqrt(len(diff)))


def _teacher_data(seed, n=1500):
    teacher = upoe(4, 2, seed=seed, df=3.0)
    f = teacher.factors["experts"]
    g = torch.Generator().manual_seed(seed + 1)
    with torch.no_grad():
        torch.manual_seed(seed + 2)
        y = torch.distributions.StudentT(f.log_df.exp(), 0.0, f.log_scale.exp()).sample((n,))
        w = f.projection
        complement = torch.randn(n, 4, generator=g, dtype=torch.float64)
        complement = complement - (complement @ w.T) @ w
    return y @ w + complement


def test_score_matching_loss_matches_its_definition_and_training_helps():
    """For a Gaussian block alone F = |x|^2 / 2: J = mean(|x|^2 / 2 - D). Score matching through
    fit_score_matching takes a UPoE student to the teacher that drew the data: its exact held-out
    log-likelihood ends within 3 standard errors of the teacher's (paired), from well below."""
    g = ebm.Graph().add_block("x", ebm.units.Gaussian(3, learn_loc=False), visible=True)
    plain = ebm.EnergyModel(g).double()
    x = torch.randn(20, 3, generator=torch.Generator().manual_seed(10), dtype=torch.float64)
    loss = ebm.score_matching_loss(plain, x)
    assert float(loss.detach()) == pytest.approx(float((0.5 * (x**2).sum(1) - 3).mean()))
    data = _teacher_data(11)
    train, test = data[:1000], data[1000:]
    student = upoe(4, 2, seed=12, df=6.0)

    def per_example(model):
        log_z = ebm.models.upoe_log_z(model)
        return estimators.log_likelihood(model, test, log_z).extras["per_example"]

    before = per_example(student)
    losses = ebm.fit_score_matching(
        student,
        train,
        epochs=30,
        lr=0.05,
        generator=torch.Generator().manual_seed(13),
        progress=False,
    )
    assert losses[-1] < losses[0]
    teacher = per_example(upoe(4, 2, seed=11, df=3.0))
    start, end = teacher - before, teacher - per_example(student)
    assert float(start.mean()) > 3 * float(start.std() / math.sqrt(len(start)))
    assert abs(float(end.mean())) < 3 * float(end.std() / math.sqrt(len(end)))


def test_greedy_learning_adds_experts_that_raise_the_likelihood():
    """Each added expert raises the exact training log-likelihood, and the two-expert product ends
    within 3 paired standard errors of the teacher that drew the data on held-out data."""
    data = _teacher_data(14)
    train, test = data[:1000], data[1000:]
    model, history = ebm.fit_upoe_greedily(train, 2, steps=150, progress=False)
    assert history[1] > history[0]

    def per_example(m):
        return estimators.log_likelihood(m, test, ebm.models.upoe_log_z(m)).extras["per_example"]

    gap = per_example(upoe(4, 2, seed=14, df=3.0)) - per_example(model)
    assert abs(float(gap.mean())) < 3 * float(gap.std() / math.sqrt(len(gap)))


@pytest.mark.parametrize("kind", ["NUTS", "HMC"])
def test_pyro_samplers_match_the_known_second_moments(kind):
    """pyro's NUTS and HMC on the free energy: 2 chains of 400 draws after 200 adaptation steps;
    every second moment within 4 standard errors (sd / sqrt(bulk ESS), arviz; ESS above 100) of
    the exact value, and split R-hat below 1.05."""
    az = pytest.importorskip("arviz")
    model = upoe(3, 2, seed=3, df=8.0)
    exact = second_moments(model)
    sampler = getattr(samplers, kind)(model) if kind == "NUTS" else samplers.HMC(model, num_steps=8)
    draws = sampler.run(
        400, warmup_steps=200, num_chains=2, generator=torch.Generator().manual_seed(0)
    )
    x = draws["x"]  # (chains, draws, 3)
    assert x.shape == (2, 400, 3)
    assert_chains_match(x, exact, az)


def test_jax_free_energy_equals_the_torch_one():
    """ebm.jax_export.to_jax(model) at random points: FAS (Gamma precisions summed out), UPoE
    and a Gaussian RBM (binary hidden units summed out) agree with torch to 1e-12; unsupported
    parts are refused."""
    pytest.importorskip("jax")
    import numpy as np

    torch.manual_seed(15)
    models = [ebm.models.fas(3, 4), ebm.models.upoe(4, 2), ebm.models.gaussian_rbm(3, 2)]
    for model in models:
        model = model.double()
        exported = ebm.jax_export.to_jax(model)
        (block,) = exported.blocks
        x = torch.randn(7, model.units[block].n, generator=torch.Generator().manual_seed(16))
        x = 3 * x.double()
        with torch.no_grad():
            expected = model.free_energy({block: x}).numpy()
        got = np.asarray(exported.free_energy(exported.params, {block: x.numpy()}))
        assert np.allclose(got, expected, rtol=0, atol=1e-12)
    with pytest.raises(ValueError, match="does not support"):
        ebm.jax_export.to_jax(ebm.models.gated_rbm(2, 2, 2, 2))


def test_numpyro_nuts_matches_the_known_second_moments():
    """NumPyro's NUTS on the JAX energy, 2 vectorised chains of 400 draws: the second moments of a
    UPoE within 4 standard errors (arviz ESS above 100) and split R-hat below 1.05."""
    pytest.importorskip("numpyro")
    az = pytest.importorskip("arviz")
    model = upoe(3, 2, seed=3, df=8.0)
    exact = second_moments(model)
    draws = samplers.NumPyroNUTS(model).run(
        400, warmup_steps=200, num_chains=2, generator=torch.Generator().manual_seed(0)
    )
    x = draws["x"]
    assert x.shape == (2, 400, 3)
    assert_chains_match(x, exact, az)
