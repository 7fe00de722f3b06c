"""Products of Student-t experts (FAS) with auxiliary Gamma precisions: the Gamma units against
torch and quadrature, the exact block Gibbs sampler against moments from 2-D quadrature, AIS
against the quadrature log Z, and CD training."""

import math

import pytest
import torch

import ebm
import estimators
import samplers


def grid(half_width=30.0, points=1501):
    g = torch.linspace(-half_width, half_width, points, dtype=torch.float64)
    x, y = torch.meshgrid(g, g, indexing="ij")
    return torch.stack([x.flatten(), y.flatten()], 1), float(g[1] - g[0]) ** 2


def fas_2d(seed=0, n_constraints=3, scale=2.0):
    torch.manual_seed(seed)
    return ebm.models.fas(2, n_constraints, scale=scale).double()


def quadrature(model):
    """(log Z, E[x], E[x x^T]) of exp(-F(x)) on a 2-D grid."""
    x, cell = grid()
    with torch.no_grad():
        log_w = -model.free_energy({"x": x})
    p = torch.softmax(log_w, 0)
    mean = p @ x
    second = x.T @ (x * p.unsqueeze(1))
    return float(torch.logsumexp(log_w, 0)) + math.log(cell), mean, second


def test_gamma_units_match_torch_and_quadrature():
    units = ebm.units.Gamma(3, shape=[0.7, 1.5, 4.0]).double()
    eta = torch.tensor([[-0.5, 0.3, -2.0]], dtype=torch.float64)
    alpha, rate = torch.tensor([0.7, 1.5, 4.0], dtype=torch.float64), 1 - eta[0]
    u = torch.linspace(1e-6, 60, 600_001, dtype=torch.float64)
    with torch.no_grad():
        # log of the integral of exp(eta u - E_0(u)) per unit, by the trapezoid rule
        for i in range(3):
            log_f = eta[0, i] * u - (u - (alpha[i] - 1) * torch.log(u))
            if alpha[i] >= 1:  # the integrand is bounded: quadrature is accurate
                numeric = math.log(torch.trapezoid(torch.exp(log_f), u))
                expected = float(torch.lgamma(alpha[i]) - alpha[i] * torch.log(rate[i]))
                assert numeric == pytest.approx(expected, abs=1e-5)
        assert float(units.log_partition(eta)) == pytest.approx(
            float((torch.lgamma(alpha) - alpha * torch.log(rate)).sum())
        )
        n = 50_000
        draws = units.sample(eta.expand(n, 3), torch.Generator().manual_seed(0))
        again = units.sample(eta.expand(n, 3), torch.Generator().manual_seed(0))
    assert torch.equal(draws, again)
    mean, var = alpha / rate, alpha / rate**2
    assert torch.allclose(units.mean(eta)[0], mean)
    assert ((draws.mean(0) - mean).abs() < 4 * (var / n).sqrt()).all()
    with pytest.raises(ValueError, match="below 1"):
        units.sample(torch.ones(1, 3, dtype=torch.float64))
    with pytest.raises(ValueError, match="must be positive"):
        units.validate(torch.tensor([[1.0, 0.0, 2.0]]), "u")


def test_free_energy_is_the_product_of_student_t_experts():
    model = fas_2d(seed=1)
    x = torch.randn(5, 2, generator=torch.Generator().manual_seed(2), dtype=torch.float64)
    w = model.factors["constraints"].weight.detach()
    alpha = model.units["u"].shape_parameter.detach()
    s = 2.0
    expected = (x**2).sum(1) / (2 * s**2) + (
        alpha * torch.log1p((x / s @ w) ** 2 / 2) - torch.lgamma(alpha)
    ).sum(1)
    with torch.no_grad():
        assert torch.allclose(model.free_energy({"x": x}), expected)


def test_block_gibbs_matches_moments_from_quadrature():
    """4,000 independent chains after 100 sweeps of u | x, x | u: the mean and second moments of x
    within 4 standard errors of the quadrature values."""
    model = fas_2d(seed=3, n_constraints=4)
    _, mean, second = quadrature(model)
    n = 4000
    gibbs = samplers.BlockGibbs(model, generator=torch.Generator().manual_seed(4))
    with torch.no_grad():
        x = gibbs.run(gibbs.init(n), 100)["x"]
    stderr = (torch.diagonal(second) - mean**2).div(n).sqrt()
    assert ((x.mean(0) - mean).abs() < 4 * stderr).all()
    products = x[:, :, None] * x[:, None, :]
    err = products.std(0) / math.sqrt(n)
    assert ((products.mean(0) - second).abs() < 4 * err).all()


def test_ais_is_calibrated_against_the_quadrature_log_z():
    """AIS sums u out and anneals x from N(0, s^2): over 20 independent runs the z-scores
    (estimate - quadrature) / stderr have mean within 3 / sqrt(20) of zero and none beyond 4."""
    model = fas_2d(seed=0)
    exact, _, _ = quadrature(model)
    path = estimators.path.GeometricPath(model)
    assert path.sum_out == ["u"] and path.base.blocks == []
    z = []
    for seed in range(20):
        est = estimators.ais(
            model,
            num_chains=300,
            betas=estimators.schedules.linear(300),
            generator=torch.Generator().manual_seed(100 + seed),
            progress=False,
        )
        z.append((est.value - exact) / est.stderr)
    z = torch.tensor(z)
    assert abs(float(z.mean())) < 3 / math.sqrt(20) and float(z.abs().max()) < 4, z


def test_cd_training_raises_the_held_out_log_likelihood():
    """Data from a teacher FAS (long Gibbs runs); a student trained by CD-1 through ebm.fit gains
    held-out log-likelihood (log Z by quadrature) by more than 5 standard errors of the paired
    difference."""
    teacher = fas_2d(seed=5, n_constraints=3)
    with torch.no_grad():
        teacher.factors["constraints"].weight.mul_(3.0)
    gibbs = samplers.BlockGibbs(teacher, generator=torch.Generator().manual_seed(6))
    with torch.no_grad():
        data = gibbs.run(gibbs.init(3000), 200)["x"]
    train, test = data[:2000], data[2000:]
    student = fas_2d(seed=7, n_constraints=3)

    def per_example(model):
        log_z, _, _ = quadrature(model)
        return estimators.log_likelihood(model, test, log_z).extras["per_example"]

    before = per_example(student)
    ebm.fit(
        student,
        train,
        samplers.CD(1),
        epochs=30,
        batch_size=50,
        lr=0.02,
        momentum=0.5,
        generator=torch.Generator().manual_seed(8),
        progress=False,
    )
    diff = per_example(student) - before
    assert float(diff.mean()) > 5 * float(diff.std() / math.sqrt(len(diff)))


def test_numpyro_nuts_with_the_precisions_summed_out_matches_quadrature():
    """NumPyro's NUTS on F(x), the Gamma precisions summed out inside the JAX free energy: the
    second moments of x agree with quadrature within 4 Monte Carlo standard errors (arviz's MCSE
    of each product x_i x_j over 4 chains)."""
    pytest.importorskip("numpyro")
    from samplers.diagnostics import mcse

    model = fas_2d(seed=3, n_constraints=4)
    _, _, second = quadrature(model)
    draws = samplers.NumPyroNUTS(model).run(
        2000, warmup_steps=500, num_chains=4, generator=torch.Generator().manual_seed(5)
    )["x"]
    assert draws.shape == (4, 2000, 2)
    for i in range(2):
        for j in range(2):
            product = draws[..., i] * draws[..., j]
            err = mcse(product)
            assert abs(float(product.mean()) - float(second[i, j])) < 4 * err, (i, j, err)


def test_pyro_nuts_starts_from_detached_draws_on_a_gaussian_rbm():
    """The starting values come from the unit types' own draws, which must not carry their
    learnable parameters' gradients into pyro (a Gaussian RBM has a learnable mean)."""
    pytest.importorskip("pyro")
    model = ebm.models.gaussian_rbm(3, 2)
    draws = samplers.NUTS(model).run(
        20, warmup_steps=20, num_chains=1, generator=torch.Generator().manual_seed(0)
    )
    assert draws["v"].shape == (1, 20, 3) and torch.isfinite(draws["v"]).all()
