"""Every exact value and closed form, on models whose parameters were all moved at random away from
their initial values, against an independent computation written here: energies from the
documented formulas, brute-force sums over every joint state, numerical quadrature and importance
sampling. None of them goes through the summing-out, enumeration or elimination code under test.
"""

from __future__ import annotations

import copy
import itertools
import math

import pytest
import torch

import ebm
import estimators
import samplers

SEEDS = [0, 1]


def perturb(model, seed, scale=0.5, skip=()):
    """Add N(0, scale^2) to every floating parameter and buffer (in place, float64 model)."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, value in [*model.named_parameters(), *model.named_buffers()]:
            if value.is_floating_point() and value.numel() and name not in skip:
                value.add_(scale * torch.randn(value.shape, generator=g, dtype=value.dtype))
    return model


def support(units) -> torch.Tensor:
    """Every state of a discrete block by itertools: binary vectors or one-hot rows (T, K)."""
    if hasattr(units, "k"):
        eye = torch.eye(units.k, dtype=torch.float64)
        rows = itertools.product(range(units.k), repeat=units.n)
        return torch.stack([eye[list(r)] for r in rows])
    return torch.tensor(list(itertools.product([0.0, 1.0], repeat=units.n)), dtype=torch.float64)


def product_states(model, blocks):
    sups = [support(model.units[b]) for b in blocks]
    idx = torch.tensor(list(itertools.product(*[range(len(s)) for s in sups])))
    return {b: sups[i][idx[:, i]] for i, b in enumerate(blocks)}


def brute_log_z(model, energy=None) -> float:
    """log sum over every joint state of exp(-E); E from ``energy(state)`` or the model's own."""
    state = product_states(model, model.blocks)
    with torch.no_grad():
        e = (energy or model.energy)(state)
    return float(torch.logsumexp(-e, 0))


def params(model):
    return {k: v.detach() for k, v in model.state_dict().items()}


def rbm_energy(model):
    p = params(model)
    w, b, c = p["factors.dense_v_h.weight"], p["factors.bias_v.bias"], p["factors.bias_h.bias"]
    return lambda s: -(s["v"] @ b) - (s["h"] @ c) - ((s["v"] @ w) * s["h"]).sum(1)


def dbm_energy(model):
    p = params(model)

    def energy(s):
        e = -(s["v"] @ p["factors.bias_v.bias"])
        for i, (lo, hi) in enumerate([("v", "h1"), ("h1", "h2")], start=1):
            e = e - s[hi] @ p[f"factors.bias_{hi}.bias"]
            e = e - ((s[lo] @ p[f"factors.w{i}.weight"]) * s[hi]).sum(1)
        return e

    return energy


# --- discrete families: enumeration, summing out and elimination ---------------------------------


def discrete_models():
    torch.manual_seed(0)
    cat = ebm.Graph()
    cat.add_block("v", ebm.units.Categorical(2, 3), visible=True)
    cat.add_block("h", ebm.units.Bernoulli(3))
    cat.add_factor(ebm.factors.Dense("v", "h"), ebm.factors.Bias("v"), ebm.factors.Bias("h"))
    return {
        "rbm": (ebm.models.rbm(4, 3), rbm_energy),
        "dbm": (ebm.models.dbm([3, 3, 2]), dbm_energy),
        "categorical_rbm": (ebm.EnergyModel(cat), None),
        "gated_rbm": (ebm.models.gated_rbm(2, 2, 2, 2), None),
        "crbm": (ebm.models.crbm(2, 2, 1), None),
        "fcrbm": (ebm.models.fcrbm(2, 2, 1, 2, 2), None),
        "higher_order_bm": (ebm.models.higher_order_bm(4), None),
        "pohmm": (ebm.models.pohmm(2, 2, 3), None),
        "pohmm_categorical": (ebm.models.pohmm(2, 2, 2, emission="categorical", symbols=3), None),
    }


@pytest.mark.parametrize("seed", SEEDS)
@pytest.mark.parametrize("family", list(discrete_models()))
def test_exact_and_elimination_log_z_of_perturbed_discrete_models(family, seed):
    """exact_log_z (with every valid choice of blocks summed out) and elimination_log_z equal the
    brute-force sum over every joint state to 1e-9; the model's energy equals the documented
    formula where there is one, and exact_free_energy equals the brute-force marginal."""
    model, formula = discrete_models()[family]
    model = perturb(model.double(), seed)
    truth = brute_log_z(model)
    if formula is not None:
        assert brute_log_z(model, formula(model)) == pytest.approx(truth, abs=1e-10)
    assert estimators.exact_log_z(model).value == pytest.approx(truth, abs=1e-9)
    for block in model.blocks:
        try:
            value = estimators.exact_log_z(model, sum_out=[block]).value
        except ValueError:  # not summable alone: nothing claimed
            continue
        assert value == pytest.approx(truth, abs=1e-9), block
    assert estimators.elimination_log_z(model).value == pytest.approx(truth, abs=1e-9)
    visible = product_states(model, model.visible)
    hidden = [b for b in model.blocks if b not in model.visible]
    full = product_states(model, model.blocks)
    with torch.no_grad():
        e = model.energy(full).reshape(len(next(iter(visible.values()))), -1)
        got = estimators.exact.exact_free_energy(model, visible)
    expected = -torch.logsumexp(-e, 1) if hidden else e[:, 0]
    assert torch.allclose(got.double(), expected, atol=1e-9)


@pytest.mark.parametrize("seed", SEEDS)
def test_rbm_moments_and_conditional_likelihood_of_perturbed_models(seed):
    """rbm_moments equal the brute-force moments of a perturbed RBM; the exact conditional
    log-likelihood of a perturbed gated RBM equals log p(y | x) by brute force."""
    model = perturb(ebm.models.rbm(4, 3).double(), seed)
    s = product_states(model, ["v", "h"])
    with torch.no_grad():
        p = torch.softmax(-rbm_energy(model)(s), 0)
    ev, eh, evh = estimators.moments.rbm_moments(estimators.moments.rbm_parameters(model))
    assert torch.allclose(ev, p @ s["v"], atol=1e-12)
    assert torch.allclose(eh, p @ s["h"], atol=1e-12)
    assert torch.allclose(evh, (s["v"] * p[:, None]).T @ s["h"], atol=1e-12)

    gated = perturb(ebm.models.gated_rbm(2, 2, 2, 2).double(), seed)
    data = {
        "x": torch.tensor([[0.0, 1.0], [1.0, 1.0]]),
        "y": torch.tensor([[1.0, 0.0], [0.0, 0.0]]),
    }
    got = estimators.exact_conditional_log_likelihood(gated, data, given="x").value
    full = product_states(gated, ["x", "y", "h"])
    with torch.no_grad():
        e = gated.energy(full)
    expected = []
    for i in range(2):
        at_x = (full["x"] == data["x"][i].double()).all(1)
        at_xy = at_x & (full["y"] == data["y"][i].double()).all(1)
        expected.append(float(torch.logsumexp(-e[at_xy], 0) - torch.logsumexp(-e[at_x], 0)))
    assert got == pytest.approx(sum(expected) / 2, abs=1e-10)


# --- Gaussian units: the Gaussian RBM and the mcRBM -----------------------------------------------


def integrate_1d(log_f, lo=-40.0, hi=40.0, n=20001):
    """log of the integral of exp(log_f(x)) over [lo, hi] (trapezoid on a fine grid)."""
    x = torch.linspace(lo, hi, n, dtype=torch.float64)
    vals = log_f(x)
    return float(torch.logsumexp(vals, -1) + math.log(float(x[1] - x[0])))


@pytest.mark.parametrize("seed", SEEDS)
def test_gaussian_rbm_log_z_of_a_perturbed_model_against_quadrature(seed):
    """E = sum_i (v_i - b_i)^2 / (2 s_i^2) - c.h - sum_ij (v_i / s_i) W_ij h_j, with loc, scale,
    W and c all perturbed: log Z by a 1-D quadrature per visible unit for each h, summed over h."""
    model = ebm.models.gaussian_rbm(3, 3)
    model = perturb(model.double(), seed)
    p = params(model)
    b, s = p["units.v.loc"], p["units.v.log_scale"].exp()
    w, c = p["factors.dense_v_h.weight"], p["factors.bias_h.bias"]
    terms = []
    for h in support(model.units["h"]):
        a = w @ h
        log_int = sum(
            integrate_1d(lambda x, i=i, a=a: -((x - b[i]) ** 2) / (2 * s[i] ** 2) + x / s[i] * a[i])
            for i in range(3)
        )
        terms.append(float(c @ h) + log_int)
    truth = float(torch.logsumexp(torch.tensor(terms, dtype=torch.float64), 0))
    assert estimators.exact_log_z(model).value == pytest.approx(truth, abs=1e-8)


def grid_2d(lo=-30.0, hi=30.0, n=1201):
    g = torch.linspace(lo, hi, n, dtype=torch.float64)
    x, y = torch.meshgrid(g, g, indexing="ij")
    return torch.stack([x.flatten(), y.flatten()], 1), 2 * math.log(float(g[1] - g[0]))


@pytest.mark.parametrize("seed", SEEDS)
def test_mcrbm_log_z_and_free_energy_of_a_perturbed_model(seed):
    """E = |(v - b) / s|^2 / 2 - 1/2 sum_fk P_fk hc_k (C_f . t)^2 - bc.hc - t.W hm - bm.hm with
    t = v / s and P = -exp(log_pooling): exact_log_z against a 2-D quadrature over v of the
    brute-force hidden sum, and the free energy of v against that hidden sum."""
    model = perturb(ebm.models.mcrbm(2, 2, 2, 3).double(), seed, scale=0.3)
    p = params(model)
    b, s = p["units.v.loc"], p["units.v.log_scale"].exp()
    cfil, pool = p["factors.covariance.filters"], -p["factors.covariance.log_pooling"].exp()
    w, bc, bm = p["factors.mean.weight"], p["factors.bias_hc.bias"], p["factors.bias_hm.bias"]

    def log_hidden_sum(v):
        t = v / s
        quad = (t @ cfil) ** 2  # (N, F)
        terms = []
        for hc in support(model.units["hc"]):
            for hm in support(model.units["hm"]):
                e = 0.5 * (((v - b) / s) ** 2).sum(1) - 0.5 * quad @ (pool @ hc)
                e = e - bc @ hc - (t @ w) @ hm - bm @ hm
                terms.append(-e)
        return torch.logsumexp(torch.stack(terms), 0)

    v, log_cell = grid_2d()
    truth = float(torch.logsumexp(log_hidden_sum(v), 0)) + log_cell
    assert estimators.exact_log_z(model).value == pytest.approx(truth, abs=1e-6)
    points = 2 * torch.randn(
        6, 2, generator=torch.Generator().manual_seed(seed), dtype=torch.float64
    )
    with torch.no_grad():
        assert torch.allclose(model.free_energy({"v": points}), -log_hidden_sum(points), atol=1e-10)


# --- FAS: Student-t experts from Gamma precisions --------------------------------------------------


@pytest.mark.parametrize("seed", SEEDS)
def test_fas_free_energies_of_a_perturbed_model_against_quadrature(seed):
    """E(x, u) = |(x - mu) / s|^2 / 2 + sum_j [u_j - (alpha_j - 1) log u_j + u_j (w_j . t)^2 / 2]:
    F(x) (u summed out) against a 1-D quadrature over each u_j, and F(u) (x summed out, a
    correlated Gaussian) against a 2-D quadrature over x, with every parameter perturbed."""
    model = ebm.models.fas(2, 3)
    model = perturb(model.double(), seed, scale=0.3)
    p = params(model)
    mu, s = p["units.x.loc"], p["units.x.log_scale"].exp()
    alpha, w = p["units.u.log_shape"].exp(), p["factors.constraints.weight"]
    g = torch.Generator().manual_seed(seed)
    x = 2 * torch.randn(5, 2, generator=g, dtype=torch.float64)
    r = ((x / s) @ w) ** 2 / 2  # (5, J)
    log_u = torch.linspace(-30, 6, 20001, dtype=torch.float64)  # integrate over log u
    u = log_u.exp()
    expected = 0.5 * (((x - mu) / s) ** 2).sum(1)
    for j in range(3):
        integrand = -u - r[:, j : j + 1] * u + alpha[j] * log_u  # du = u dlog u
        log_int = torch.logsumexp(integrand, 1) + math.log(float(log_u[1] - log_u[0]))
        expected = expected - log_int
    with torch.no_grad():
        assert torch.allclose(model.free_energy({"x": x}), expected, atol=1e-7)
    uu = torch.rand(4, 3, generator=g, dtype=torch.float64) * 3 + 0.1
    grid, log_cell = grid_2d(-25, 25, 1001)
    t = grid / s
    for row in uu:
        e = 0.5 * (((grid - mu) / s) ** 2).sum(1) + ((t @ w) ** 2 / 2) @ row
        e = e + (row - (alpha - 1) * row.log()).sum()
        truth = -(float(torch.logsumexp(-e, 0)) + log_cell)
        with torch.no_grad():
            got = float(model.free_energy({"u": row[None]}))
        assert got == pytest.approx(truth, abs=1e-6)


# --- UPoE: the orthonormal projection and its closed-form log Z -----------------------------------


def upoe_energy(model):
    """E(x) = sum_j [-log p_j(w_j . t) - (w_j . t)^2 / 2] + |t - m|^2 / 2, p_j Student-t (df nu_j,
    scale sigma_j), written out here, with W the model's projection."""
    units, f = model.units["x"], model.factors["experts"]
    s = units.log_scale.detach().exp()
    m = units.loc.detach() / s
    w = f.projection.detach()
    nu, sigma = f.log_df.detach().exp(), f.log_scale.detach().exp()

    def energy(x):
        t = x / s
        y = t @ w.T
        log_p = (
            torch.lgamma((nu + 1) / 2)
            - torch.lgamma(nu / 2)
            - 0.5 * torch.log(nu * math.pi)
            - torch.log(sigma)
            - (nu + 1) / 2 * torch.log1p((y / sigma) ** 2 / nu)
        )
        return (-log_p - y**2 / 2).sum(-1) + 0.5 * ((t - m) ** 2).sum(-1)

    return energy


def quadrature_log_z_2d(model) -> float:
    grid, log_cell = grid_2d(-80, 80, 3201)
    with torch.no_grad():
        return float(torch.logsumexp(-upoe_energy(model)(grid), 0)) + log_cell


def importance_log_z(model, n=400_000, seed=0) -> tuple[float, float]:
    """log Z by importance sampling from a multivariate Cauchy of scale 2 max(s) (its tails are
    heavier than the experts' for df > 2, so the weights have finite variance): (value, stderr)."""
    units = model.units["x"]
    d = units.n
    scale = 2 * float(units.log_scale.detach().exp().max())
    g = torch.Generator().manual_seed(seed)
    z = torch.randn(n, d, generator=g, dtype=torch.float64)
    chi2 = torch.randn(n, 1, generator=g, dtype=torch.float64) ** 2  # Cauchy: nu = 1
    x = scale * z / chi2.sqrt()
    log_q = (
        math.lgamma((1 + d) / 2)
        - math.lgamma(0.5)
        - d / 2 * math.log(math.pi)
        - d * math.log(scale)
        - (1 + d) / 2 * torch.log1p(((x / scale) ** 2).sum(1))
    )
    with torch.no_grad():
        log_w = -upoe_energy(model)(x) - log_q
    top = log_w.max()
    w = (log_w - top).exp()
    value = float(top + w.mean().log())
    return value, float(w.std() / w.mean() / math.sqrt(n))


def orthonormality(model) -> float:
    w = model.factors["experts"].projection.detach().double()
    return float((w @ w.T - torch.eye(w.shape[0], dtype=torch.float64)).abs().max())


def test_upoe_weight_decay_step_keeps_the_projection_orthonormal_and_log_z_exact():
    """One SGD step with weight decay on fit's decayed parameters (what broke torch's Householder
    parametrisation), and a whole fit epoch with weight decay, keep W W^T = I and the exact log Z
    equal to quadrature; the unconstrained matrix behind W is not decayed."""
    torch.manual_seed(1)
    model = ebm.models.upoe(2, 1).double()
    decayed, _ = ebm.training.decay_groups(model)
    assert all(p is not model.factors["experts"].raw_projection for p in decayed)
    opt = torch.optim.SGD(model.parameters(), lr=0.1, weight_decay=1e-4)  # everything decayed
    data = torch.randn(50, 2, generator=torch.Generator().manual_seed(2), dtype=torch.float64)
    opt.zero_grad()
    model.free_energy({"x": data}).mean().backward()
    opt.step()
    assert orthonormality(model) < 1e-12
    assert ebm.models.upoe_log_z(model) == pytest.approx(quadrature_log_z_2d(model), abs=1e-6)
    ebm.fit(
        model,
        data,
        samplers.HMCCD(k=1, step_size=0.3, num_steps=5),
        epochs=2,
        batch_size=25,
        lr=0.05,
        weight_decay=0.1,
        generator=torch.Generator().manual_seed(3),
        progress=False,
    )
    assert orthonormality(model) < 1e-12
    assert ebm.models.upoe_log_z(model) == pytest.approx(quadrature_log_z_2d(model), abs=1e-6)


@pytest.mark.parametrize("seed", SEEDS)
def test_upoe_log_z_after_perturbing_every_parameter(seed):
    """Every parameter moved (the projection's matrix, df, scales) and the Gaussian units' scale
    and loc moved too (the loc within the complement of W's rows, where Z stays finite): the
    closed form (D - J) log(2 pi) / 2 + sum log s equals quadrature (D = 2) and importance
    sampling within 4 standard errors (D = 3)."""
    model = ebm.models.upoe(2, 1).double()
    perturb(model, seed, scale=0.5, skip={"units.x.loc"})
    assert ebm.models.upoe_log_z(model) == pytest.approx(quadrature_log_z_2d(model), abs=1e-6)
    model = ebm.models.upoe(3, 2).double()
    perturb(model, seed, scale=0.5, skip={"units.x.loc"})
    with torch.no_grad():
        model.factors["experts"].log_df.clamp_(min=math.log(3.0))
        w = model.factors["experts"].projection
        mu = torch.randn(3, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)
        model.units["x"].loc.copy_(mu - (mu @ w.T) @ w)  # loc / s has no part along W only if s
        model.units["x"].log_scale.fill_(float(model.units["x"].log_scale[0]))  # is uniform
    value, se = importance_log_z(model, seed=seed)
    assert se < 0.02
    assert abs(ebm.models.upoe_log_z(model) - value) < 4 * se


def test_upoe_log_z_after_loading_arbitrary_values():
    """load_state_dict of arbitrary values (a rank-one, far-from-orthonormal matrix included)
    still gives orthonormal rows and the exact log Z; a loc along W (infinite Z), a non-finite
    value and a model that is not a UPoE are refused with the measured figure."""
    model = ebm.models.upoe(2, 1).double()
    state = {
        "units.x.loc": torch.zeros(2, dtype=torch.float64),
        "units.x.log_scale": torch.tensor([0.3, -0.2], dtype=torch.float64),
        "factors.experts.log_df": torch.tensor([1.5], dtype=torch.float64),
        "factors.experts.log_scale": torch.tensor([-0.7], dtype=torch.float64),
        "factors.experts.raw_projection": torch.tensor([[0.37, -0.05]], dtype=torch.float64),
    }
    model.load_state_dict(state)
    assert orthonormality(model) < 1e-12
    assert ebm.models.upoe_log_z(model) == pytest.approx(quadrature_log_z_2d(model), abs=1e-6)
    big = ebm.models.upoe(4, 3).double()
    raw = torch.outer(torch.tensor([1.0, 2.0, 3.0]), torch.tensor([0.5, -1.0, 0.0, 2.0]))
    raw = (
        raw.double() + 1e-3 * torch.randn(3, 4, generator=torch.Generator().manual_seed(0)).double()
    )
    big.factors["experts"].raw_projection.data.copy_(raw)
    assert orthonormality(big) < 1e-12
    with torch.no_grad():
        model.units["x"].loc.copy_(model.factors["experts"].projection[0])
    with pytest.raises(ValueError, match="infinite"):
        ebm.models.upoe_log_z(model)
    with torch.no_grad():
        model.units["x"].loc.zero_()
        model.factors["experts"].log_df.fill_(float("nan"))
    with pytest.raises(ValueError, match="not finite"):
        ebm.models.upoe_log_z(model)
    with pytest.raises(ValueError, match="ProjectedStudentT"):
        ebm.models.upoe_log_z(ebm.models.fas(3, 2))


def test_upoe_exact_log_likelihood_agrees_with_ais_after_training():
    """After CD training with weight decay, the exact log Z and AIS (HMC transitions) agree within
    3 standard errors: the closed form is not only right at initialisation."""
    torch.manual_seed(4)
    model = ebm.models.upoe(4, 2).double()
    data = 1.5 * torch.randn(
        200, 4, generator=torch.Generator().manual_seed(5), dtype=torch.float64
    )
    ebm.fit(
        model,
        data,
        samplers.HMCCD(k=1, step_size=0.3, num_steps=5),
        epochs=3,
        batch_size=50,
        lr=0.05,
        weight_decay=0.01,
        generator=torch.Generator().manual_seed(6),
        progress=False,
    )
    est = estimators.ais(
        copy.deepcopy(model),
        num_chains=200,
        betas=estimators.schedules.linear(400),
        generator=torch.Generator().manual_seed(7),
        progress=False,
    )
    assert 0 < est.stderr < 0.05
    assert abs(est.value - ebm.models.upoe_log_z(model)) < 3 * est.stderr
