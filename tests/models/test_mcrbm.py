"""The mean-covariance RBM and the correlated Gaussian block under it, checked against quadrature,
hand-derived conditionals, enumeration of the hidden units and exact Gaussian expectations."""

import math

import pytest
import torch

import ebm
import estimators
import samplers
from ebm.factors import CovariancePooling, Factor
from estimators.exact import enumerate_states
from tests.helpers import noise_floor, total_variation

HIDDEN = ["hc", "hm"]


def random_mcrbm(n_visible, n_covariance, n_mean, n_factors, seed, scale=0.8):
    """An mcRBM in float64 with every parameter drawn at a fixed seed: filters and mean weights
    N(0, scale^2), pooling -exp(N(0, 0.5^2)), biases and the visible mean N(0, 1)."""
    torch.manual_seed(seed)
    model = ebm.models.mcrbm(n_visible, n_covariance, n_mean, n_factors).double()
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        cov = model.factors["covariance"]
        cov.filters.copy_(scale * torch.randn(cov.filters.shape, generator=g))
        cov.log_pooling.copy_(0.5 * torch.randn(cov.log_pooling.shape, generator=g))
        w = model.factors["mean"].weight
        w.copy_(scale * torch.randn(w.shape, generator=g))
        for name in ("bias_hc", "bias_hm"):
            b = model.factors[name].bias
            b.copy_(torch.randn(b.shape, generator=g))
        model.units["v"].loc.copy_(torch.randn(n_visible, generator=g))
    return model


def grid(half_width=12.0, points=1201):
    """A square 2-D grid (points^2 rows) and the area of one cell, for quadrature."""
    g = torch.linspace(-half_width, half_width, points, dtype=torch.float64)
    x, y = torch.meshgrid(g, g, indexing="ij")
    return torch.stack([x.flatten(), y.flatten()], 1), float(g[1] - g[0]) ** 2


def hidden_states(model):
    """Every joint configuration of the hidden blocks (the first varying fastest)."""
    total = int(math.prod(model.units[b].num_states for b in HIDDEN))
    return enumerate_states(model, HIDDEN, 0, total, torch.float64)


def hidden_marginal(model):
    """Exact p(hc, hm) with v integrated out (its correlated-Gaussian log-partition)."""
    h = hidden_states(model)
    return torch.softmax(-model.free_energy(h, sum_out=["v"]), 0), h


# --- the Gaussian block with a precision --------------------------------------------------------


def test_gaussian_precision_matches_quadrature():
    """log_partition, mean and covariance of exp(eta . t - t^T Q t / 2 - E_0(x)) with t = x / s,
    against 2-D quadrature; sample moments agree with them within their standard errors."""
    units = ebm.units.Gaussian(2, loc=[0.5, -1.0], scale=[0.7, 1.6]).double()
    eta = torch.tensor([[0.8, -0.3]], dtype=torch.float64)
    a = torch.tensor([[1.0, 0.6], [0.0, 0.9]], dtype=torch.float64)
    q = (a @ a.T).unsqueeze(0)
    x, cell = grid()
    t = x / units.scale
    log_density = (t @ eta[0]) - 0.5 * ((t @ q[0]) * t).sum(-1) - units.base_energy(x)
    with torch.no_grad():
        log_z = float(torch.logsumexp(log_density, 0) + math.log(cell))
        assert float(units.log_partition(eta, precision=q)) == pytest.approx(log_z, abs=1e-7)
        p = torch.softmax(log_density, 0)
        mean = p @ x
        cov = (x - mean).T @ ((x - mean) * p.unsqueeze(1))
        assert torch.allclose(units.mean(eta, precision=q)[0], mean, atol=1e-7)
        dist = units.distribution(eta, precision=q)
        assert torch.allclose(dist.mean[0], mean, atol=1e-7)
        assert torch.allclose(dist.covariance_matrix[0], cov, atol=1e-7)
        n = 40_000
        draws = units.sample(
            eta.expand(n, 2), torch.Generator().manual_seed(0), precision=q.expand(n, 2, 2)
        )
    stderr = (torch.diagonal(cov) / n).sqrt()
    assert ((draws.mean(0) - mean).abs() < 4 * stderr).all()
    # the sample covariance's standard error for Gaussian data: sqrt((S_ij^2 + S_ii S_jj) / n)
    sample_cov = torch.cov(draws.T)
    cov_err = ((cov**2 + torch.outer(torch.diagonal(cov), torch.diagonal(cov))) / n).sqrt()
    assert ((sample_cov - cov).abs() < 4 * cov_err).all()


def test_zero_precision_is_the_independent_case():
    units = ebm.units.Gaussian(3, loc=[0.1, 0.2, -0.3], scale=[1.0, 2.0, 0.5]).double()
    eta = torch.randn(4, 3, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    zero = torch.zeros(4, 3, 3, dtype=torch.float64)
    with torch.no_grad():
        assert torch.allclose(units.log_partition(eta, precision=zero), units.log_partition(eta))
        assert torch.allclose(units.mean(eta, precision=zero), units.mean(eta))


def test_precision_that_is_not_positive_definite_is_refused():
    units = ebm.units.Gaussian(2)
    bad = torch.tensor([[[-2.0, 0.0], [0.0, 0.0]]])
    with pytest.raises(ValueError, match="not positive definite"):
        units.sample(torch.zeros(1, 2), precision=bad)
    with pytest.raises(ValueError, match="precision must have shape"):
        units.log_partition(torch.zeros(1, 2), precision=torch.zeros(1, 3, 3))


# --- the graph and the factor ---------------------------------------------------------------------


def test_quadratic_factor_needs_units_that_take_a_quadratic_term():
    g = ebm.Graph()
    g.add_block("v", ebm.units.Bernoulli(3), visible=True)
    g.add_block("h", ebm.units.Bernoulli(2))
    with pytest.raises(ValueError, match="Bernoulli units take no quadratic term"):
        g.add_factor(CovariancePooling("v", "h", 2))


class WrongQuadratic(Factor):
    """E = |t_v|^2 h / 2, declaring its precision but giving the gradient at the current t as its
    natural parameters (so E != offset - natural . t + t^T Q t / 2): must be caught."""

    def energy(self, stats):
        return 0.5 * (stats["v"] ** 2).sum(-1) * stats["h"][:, 0]

    def precision(self, target, stats):
        if target != "v":
            return None
        eye = torch.eye(stats["v"].shape[1], dtype=stats["v"].dtype)
        return stats["h"][:, 0, None, None] * eye

    def natural(self, target, stats):
        return ebm.factors.natural_from_energy(self, target, stats)


def test_wrong_quadratic_form_is_flagged_and_refused():
    g = ebm.Graph()
    g.add_block("v", ebm.units.Gaussian(2), visible=True)
    g.add_block("h", ebm.units.Bernoulli(1))
    g.add_factor(WrongQuadratic("v", "h"))
    model = ebm.EnergyModel(g)
    assert "v" in model.factors["wrong_quadratic_v_h"].nonlinear_blocks
    state = {"v": torch.zeros(3, 2), "h": torch.ones(3, 1)}
    with pytest.raises(ValueError, match="not linear in block 'v'"):
        model.sample_block("v", state)


def test_mcrbm_structure_and_save_load(tmp_path):
    model = random_mcrbm(3, 2, 2, 4, seed=0)
    assert model.schedule == [["v"], ["hc", "hm"]]
    assert model.quadratic_factors("v") == ["covariance"]
    assert model.factors["covariance"].quadratic_in("v")
    assert model.factors["covariance"].linear_in("hc")
    assert bool((model.factors["covariance"].pooling < 0).all())
    path = ebm.save(model, tmp_path / "mcrbm.safetensors")
    loaded = ebm.load(path).double()
    v = torch.randn(5, 3, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    with torch.no_grad():
        assert torch.allclose(loaded.free_energy({"v": v}), model.free_energy({"v": v}))
    with pytest.raises(ValueError, match="pooling weights must be negative"):
        CovariancePooling("v", "h", 2, pooling=torch.zeros(2, 2))


# --- conditionals, exact log Z, Gibbs, AIS ------------------------------------------------------


def test_mcrbm_conditionals_match_the_paper():
    """p(hc | v), p(hm | v) and v | hc, hm ~ N(Sigma (b + W hm), Sigma) with
    Sigma^-1 = I + C diag(-P hc) C^T, written out by hand from the parameters."""
    model = random_mcrbm(3, 2, 2, 4, seed=1)
    cov, w = model.factors["covariance"], model.factors["mean"].weight
    c, p = cov.filters.detach(), cov.pooling.detach()
    b = model.units["v"].loc.detach()
    bc, bm = model.factors["bias_hc"].bias.detach(), model.factors["bias_hm"].bias.detach()
    g = torch.Generator().manual_seed(2)
    v = torch.randn(6, 3, generator=g, dtype=torch.float64)
    hc = torch.bernoulli(torch.full((6, 2), 0.5, dtype=torch.float64), generator=g)
    hm = torch.bernoulli(torch.full((6, 2), 0.5, dtype=torch.float64), generator=g)
    with torch.no_grad():
        p_hc = model.conditional("hc", {"v": v, "hm": hm}).base_dist.probs
        p_hm = model.conditional("hm", {"v": v, "hc": hc}).base_dist.probs
        assert torch.allclose(p_hc, torch.sigmoid(bc + 0.5 * ((v @ c) ** 2) @ p))
        assert torch.allclose(p_hm, torch.sigmoid(bm + v @ w.detach()))
        dist = model.conditional("v", {"hc": hc, "hm": hm})
        for i in range(6):
            sigma = torch.linalg.inv(
                torch.eye(3, dtype=torch.float64) + c @ torch.diag(-(p @ hc[i])) @ c.T
            )
            assert torch.allclose(dist.covariance_matrix[i], sigma)
            assert torch.allclose(dist.mean[i], sigma @ (b + w.detach() @ hm[i]))


def test_mcrbm_exact_log_z_matches_quadrature():
    """Enumerating (hc, hm) with v summed out through its correlated-Gaussian log-partition gives
    the log Z that 2-D quadrature of exp(-F(v)) (hidden units summed out) gives."""
    model = random_mcrbm(2, 3, 2, 4, seed=0)
    exact = estimators.exact_log_z(model)
    assert exact.extras["summed_out"] == ["v"]
    x, cell = grid()
    with torch.no_grad():
        quad = float(torch.logsumexp(-model.free_energy({"v": x}), 0)) + math.log(cell)
    assert exact.value == pytest.approx(quad, abs=1e-6)


def test_mcrbm_gibbs_matches_the_exact_distribution():
    """Block Gibbs from random starts: the histogram of (hc, hm) over independent chains is within
    the noise floor of as many exact draws, and the first and second moments of v are within 4
    standard errors of the exact mixture moments, sum_h p(h) of m_h = Sigma_h (b + W hm) and of
    Sigma_h + m_h m_h^T. The covariance units are mostly on (their biases raised by 2), so that v
    is strongly correlated: a sampler drawing v with covariance Lambda instead of Lambda^-1 fails
    every one of these checks by a wide margin."""
    model = random_mcrbm(3, 3, 2, 4, seed=3, scale=1.0)
    with torch.no_grad():
        model.factors["bias_hc"].bias.add_(2.0)
    probs, h = hidden_marginal(model)
    n = 20_000
    gibbs = samplers.BlockGibbs(model, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        state = gibbs.run(gibbs.init(n), 60)
        weights = torch.tensor([1.0, 2.0, 4.0, 8.0, 16.0], dtype=torch.float64)
        index = torch.cat([state["hc"], state["hm"]], 1) @ weights
        counts = torch.bincount(index.long(), minlength=len(probs))
        assert total_variation(counts, probs) <= noise_floor(probs, n)
        given = model.conditional("v", h)
        outer = given.mean[:, :, None] * given.mean[:, None, :]
        mean = probs @ given.mean
        second = (probs[:, None, None] * (given.covariance_matrix + outer)).sum(0)
    v = state["v"]
    stderr = ((torch.diagonal(second) - mean**2) / n).sqrt()
    assert ((v.mean(0) - mean).abs() < 4 * stderr).all()
    products = v[:, :, None] * v[:, None, :]
    # the standard error of each sample second moment, from the draws' own spread
    products_err = products.std(0) / math.sqrt(n)
    assert ((products.mean(0) - second).abs() < 4 * products_err).all()


@pytest.mark.parametrize("seed,sum_out", [(0, None), (1, None), (2, None), (0, []), (1, [])])
def test_mcrbm_ais_within_three_standard_errors_of_exact(seed, sum_out):
    """AIS from a uniform base over the hidden units, with v summed out along the path (default)
    or carried by the chains (``sum_out=[]``: v's Gaussian base energy is then not annealed and v
    is drawn with precision beta Q at each temperature)."""
    model = random_mcrbm(4, 3, 3, 5, seed=seed, scale=1.0)
    exact = estimators.exact_log_z(model).value
    est = estimators.ais(
        model,
        num_chains=500,
        betas=torch.linspace(0, 1, 500, dtype=torch.float64),
        sum_out=sum_out,
        generator=torch.Generator().manual_seed(seed),
        progress=False,
    )
    assert 0 < est.stderr < 0.1
    assert abs(est.value - exact) < 3 * est.stderr, (est, exact)


# --- learning -----------------------------------------------------------------------------------


def _log_z(model):
    """Differentiable exact log Z: logsumexp over (hc, hm) of -F(hc, hm) with v summed out."""
    return torch.logsumexp(-model.free_energy(hidden_states(model), sum_out=["v"]), 0)


def _mean_log_likelihood(model, v):
    return -model.free_energy({"v": v}).mean() - _log_z(model)


def _grads(model, value):
    params = [p for p in model.parameters() if p.requires_grad]
    return torch.autograd.grad(value, params)


def test_mcrbm_gradient_is_data_minus_model_moments():
    """d mean log p(v) / d theta equals (a) central finite differences of the exact log-likelihood
    and (b) -<dE/dtheta>_data + <dE/dtheta>_model, where the data term uses E[h | v] (E is linear
    in h) and the model term sums over (hc, hm) the exact Gaussian expectation of dE/dtheta given
    them (dE/dtheta is at most quadratic in v, so 2n sigma points m +- sqrt(n) L e_i give it
    exactly)."""
    model = random_mcrbm(2, 2, 2, 3, seed=4)
    g = torch.Generator().manual_seed(5)
    v = torch.randn(7, 2, generator=g, dtype=torch.float64)
    params = [p for p in model.parameters() if p.requires_grad]
    grad = _grads(model, _mean_log_likelihood(model, v))

    # (a) finite differences
    eps = 1e-6
    with torch.no_grad():
        for p, gp in zip(params, grad, strict=True):
            flat = p.view(-1)
            for i in range(flat.numel()):
                old = float(flat[i])
                flat[i] = old + eps
                up = float(_mean_log_likelihood(model, v))
                flat[i] = old - eps
                down = float(_mean_log_likelihood(model, v))
                flat[i] = old
                assert float(gp.view(-1)[i]) == pytest.approx((up - down) / (2 * eps), abs=1e-6)

    # (b) data minus model moments
    with torch.no_grad():
        h_mean = {b: model.conditional(b, {"v": v}).base_dist.probs for b in HIDDEN}
    data_term = _grads(model, model.energy({"v": v, **h_mean}).mean())
    probs, h = hidden_marginal(model)
    probs = probs.detach()
    with torch.no_grad():
        given = model.conditional("v", h)
        chol = torch.linalg.cholesky(given.covariance_matrix)
    n = 2
    model_term = [torch.zeros_like(p) for p in params]
    for j in range(len(probs)):
        for sign in (1.0, -1.0):
            for i in range(n):
                point = given.mean[j] + sign * math.sqrt(n) * chol[j][:, i]
                state = {"v": point[None], "hc": h["hc"][j : j + 1], "hm": h["hm"][j : j + 1]}
                weight = float(probs[j]) / (2 * n)
                for acc, gp in zip(
                    model_term, _grads(model, model.energy(state).sum()), strict=True
                ):
                    acc += weight * gp
    for gp, d, m in zip(grad, data_term, model_term, strict=True):
        assert torch.allclose(gp, -d + m, atol=1e-9)


def test_mcrbm_cd_training_raises_the_exact_log_likelihood():
    """CD-5 through ebm.fit on exact draws from a teacher mcRBM: the exact held-out log-likelihood
    of the student rises well above its starting value, towards the teacher's."""
    teacher = random_mcrbm(3, 3, 2, 4, seed=6, scale=1.2)
    draws = estimators.exact_samples(teacher, 3000, torch.Generator().manual_seed(0))["v"]
    train, test = draws[:2000], draws[2000:]
    torch.manual_seed(7)
    student = ebm.models.mcrbm(3, 3, 2, 4).double()

    def held_out(model):
        with torch.no_grad():
            return float(_mean_log_likelihood(model, test))

    before, target = held_out(student), held_out(teacher)
    ebm.fit(
        student,
        train,
        samplers.CD(5),
        epochs=30,
        batch_size=50,
        lr=0.05,
        momentum=0.5,
        generator=torch.Generator().manual_seed(1),
        progress=False,
    )
    after = held_out(student)
    assert after > before + 0.5 * (target - before), (before, after, target)
