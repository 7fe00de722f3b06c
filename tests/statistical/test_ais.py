import math

import pytest
import torch

import ebm
import estimators
from estimators.estimate import log_mean_exp
from tests.helpers import random_rbm

SCHEDULE = estimators.schedules.salakhutdinov_murray((100, 800, 2000))


@pytest.mark.parametrize("seed,scale", [(0, 2.0), (1, 2.0), (2, 3.0), (3, 3.0)])
def test_ais_within_three_standard_errors_of_exact(seed, scale):
    """Random RBMs with large weights (multimodal): AIS agrees with the exact log Z within 3 of its
    own standard errors, and its standard error is not vacuous."""
    model = random_rbm(15, 10, scale=scale, seed=seed)
    exact = estimators.exact_log_z(model).value
    est = estimators.ais(
        model,
        num_chains=200,
        betas=SCHEDULE,
        generator=torch.Generator().manual_seed(seed),
        progress=False,
    )
    assert est.stderr < 0.5
    assert abs(est.value - exact) < 3 * est.stderr, (est, exact)
    assert est.log_weights.dtype == torch.float64 and est.log_weights.shape == (200,)
    assert 1 <= est.ess <= 200


def test_ais_with_base_rate_start():
    data = ebm.datasets.bars_and_stripes(3)
    model = random_rbm(9, 6, scale=1.5, seed=5)
    base = ebm.base_rate(model, data)
    exact = estimators.exact_log_z(model).value
    est = estimators.ais(
        model,
        num_chains=200,
        betas=SCHEDULE,
        base=base,
        generator=torch.Generator().manual_seed(0),
        progress=False,
    )
    assert abs(est.value - exact) < 3 * est.stderr
    assert est.extras["log_z_base"] == pytest.approx(base.log_z() + 6 * math.log(2))


def test_base_rate_model_formula():
    model = ebm.models.rbm(3, 2)
    data = torch.tensor([[1.0, 0, 0], [1, 1, 0], [1, 0, 0], [0, 1, 0]])
    base = ebm.base_rate(model, data, smoothing=5, batch_size=100)
    a = 5.0  # one batch
    p = (torch.tensor([3.0, 2.0, 0.0]) + a) / (4 + a)
    torch.testing.assert_close(base.natural["v"], torch.log(p / (1 - p)))
    assert base.log_z() == pytest.approx(
        float(torch.nn.functional.softplus(torch.log(p / (1 - p))).sum())
    )


def test_ais_is_reproducible_and_seed_dependent():
    model = random_rbm(8, 5, scale=1.0, seed=0)
    betas = estimators.schedules.linear(200)
    runs = [
        estimators.ais(
            model,
            num_chains=20,
            betas=betas,
            progress=False,
            generator=torch.Generator().manual_seed(s),
        )
        for s in (1, 1, 2)
    ]
    assert torch.equal(runs[0].log_weights, runs[1].log_weights)
    assert not torch.equal(runs[0].log_weights, runs[2].log_weights)


def test_log_mean_exp_delta_method():
    lw = torch.tensor([0.0, math.log(3.0)], dtype=torch.float64)
    value, stderr, ess = log_mean_exp(lw + 1000.0)  # no overflow
    assert value == pytest.approx(1000.0 + math.log(2.0))
    r = torch.tensor([0.5, 1.5], dtype=torch.float64)
    assert stderr == pytest.approx(float(r.std() / math.sqrt(2)))
    assert ess == pytest.approx(16 / 10)


def test_estimate_prints_one_line():
    model = random_rbm(6, 4, scale=1.0, seed=0)
    est = estimators.ais(
        model,
        num_chains=10,
        betas=estimators.schedules.linear(50),
        progress=False,
        generator=torch.Generator().manual_seed(0),
    )
    line = str(est)
    assert "\n" not in line and line.startswith("log Z = ") and "±" in line
    assert "AIS, 10 chains x 50 betas" in line and "ESS" in line and "95% CI" in line
    exact = str(estimators.exact_log_z(model))
    assert exact.startswith("log Z = ") and "exact" in exact and "±" not in exact


def test_schedules_and_bad_input():
    sm = estimators.schedules.salakhutdinov_murray()
    assert sm.numel() == 14_500 and sm[0] == 0 and sm[-1] == 1 and sm.dtype == torch.float64
    assert int((sm < 0.5).sum()) == 500 and int(((sm >= 0.5) & (sm < 0.9)).sum()) == 4000
    assert int((sm >= 0.9).sum()) == 10_000
    model = random_rbm(4, 3, scale=1.0, seed=0)
    with pytest.raises(ValueError, match="start at 0 and end at 1"):
        estimators.ais(model, betas=[0.0, 0.5], progress=False)
    with pytest.raises(ValueError, match="non-decreasing"):
        estimators.ais(model, betas=[0.0, 0.6, 0.5, 1.0], progress=False)
    with pytest.raises(ValueError, match="num_chains"):
        estimators.ais(model, num_chains=1, progress=False)


@pytest.mark.parametrize("seed", [0, 1])
def test_ais_on_a_gaussian_rbm_within_three_standard_errors_of_exact(seed):
    """A Gaussian-Bernoulli RBM: the default base is uniform over h, v is summed out along the
    path (its base energy is not annealed), and AIS agrees with the exact log Z (h enumerated)."""
    torch.manual_seed(seed)
    model = ebm.models.gaussian_rbm(5, 8, scale=torch.full((5,), 0.7)).double()
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in model.parameters():
            p.copy_(torch.randn(p.shape, generator=g, dtype=torch.float64))
    exact = estimators.exact_log_z(model).value
    est = estimators.ais(
        model,
        num_chains=300,
        betas=torch.linspace(0, 1, 300, dtype=torch.float64),
        generator=torch.Generator().manual_seed(seed),
        progress=False,
    )
    assert est.extras["log_z_base"] == pytest.approx(
        8 * math.log(2) + 5 * (math.log(0.7) + 0.5 * math.log(2 * math.pi))
    )
    assert 0 < est.stderr < 0.1
    assert abs(est.value - exact) < 3 * est.stderr, (est, exact)


def test_base_rate_caps_units_that_are_always_on():
    model = ebm.models.rbm(2, 2)
    data = torch.tensor([[1.0, 0.0], [1.0, 1.0]])
    base = ebm.base_rate(model, data, smoothing=5, batch_size=100)
    assert torch.isfinite(base.natural["v"]).all()
    assert float(torch.sigmoid(base.natural["v"][0])) == pytest.approx(7 / 8)


def test_interrupted_ais_resumes_to_the_uninterrupted_result(tmp_path, monkeypatch):
    from estimators.path import GeometricPath

    model = random_rbm(8, 5, scale=1.5, seed=2)
    betas = estimators.schedules.linear(300)
    whole = estimators.ais(
        model,
        num_chains=30,
        betas=betas,
        progress=False,
        generator=torch.Generator().manual_seed(5),
    )
    original = GeometricPath.transition
    calls = {"n": 0}

    def interrupting(self, *args, **kwargs):
        calls["n"] += 1
        if calls["n"] == 120:
            raise KeyboardInterrupt
        return original(self, *args, **kwargs)

    monkeypatch.setattr(GeometricPath, "transition", interrupting)
    ckpt = tmp_path / "ais.safetensors"
    with pytest.raises(KeyboardInterrupt):
        estimators.ais(
            model,
            num_chains=30,
            betas=betas,
            progress=False,
            checkpoint=ckpt,
            generator=torch.Generator().manual_seed(5),
        )
    assert ckpt.exists()
    monkeypatch.setattr(GeometricPath, "transition", original)
    resumed = estimators.ais(
        model,
        num_chains=30,
        betas=betas,
        progress=False,
        checkpoint=ckpt,
        generator=torch.Generator().manual_seed(999),
    )  # state comes from the file
    assert resumed.extras["resumed"]
    torch.testing.assert_close(resumed.log_weights, whole.log_weights, rtol=0, atol=1e-12)
    other = random_rbm(8, 5, scale=1.5, seed=3)
    with pytest.raises(ValueError, match="another model"):
        estimators.ais(other, num_chains=30, betas=betas, progress=False, checkpoint=ckpt)


def _rbm_with_base_rate():
    data = (torch.rand(50, 20, generator=torch.Generator().manual_seed(0)) < 0.3).float()
    model = ebm.models.rbm(20, 7)
    return model, ebm.base_rate(model, data)


PATH_CASES = {
    "rbm, uniform base": lambda: (ebm.models.rbm(20, 7), None),
    "rbm, base-rate base": _rbm_with_base_rate,
    "dbm, odd layers annealed": lambda: (ebm.models.dbm([12, 8, 6]), None),
    "gaussian rbm (unit base energies)": lambda: (ebm.models.gaussian_rbm(10, 6), None),
    "mcrbm (a precision)": lambda: (ebm.models.mcrbm(6, 4, 3, 5), None),
}


@pytest.mark.parametrize("kind", ["cpu", "cpu-blas", "torch"])
@pytest.mark.parametrize("case", list(PATH_CASES))
def test_kept_buffers_give_the_plain_steps_bit_for_bit(case, kind):
    """terms, log_f and transition with ``work`` are the plain calls' values, draw for draw,
    over many steps (where buffers are reused) and for an odd number of chains, on every
    backend (``ebm.backend``)."""
    with ebm.backend.use_backend(kind):
        _check_kept_buffers_give_the_plain_steps(case)


def _check_kept_buffers_give_the_plain_steps(case):
    from estimators.path import GeometricPath

    model, base = PATH_CASES[case]()
    torch.manual_seed(1)
    with torch.no_grad():
        for p in model.parameters():
            p.add_(0.3 * torch.randn_like(p))
    path = GeometricPath(model, base)
    betas = torch.linspace(0, 1, 25).tolist()
    runs = []
    for work in (None, {}):
        kept = {} if work is None else {"work": work}
        generator = torch.Generator().manual_seed(5)
        steps = []
        with torch.no_grad():
            x = path.init(37, generator)
            for k in range(1, len(betas)):
                t = path.terms(x, **kept)
                if work is None:
                    up, down = path.log_f(betas[k], t), path.log_f(betas[k - 1], t)
                else:  # two results alive at once: two keys
                    up = path.log_f(betas[k], t, work, key="up")
                    down = path.log_f(betas[k - 1], t, work, key="down")
                increment = up - down
                x = path.transition(x, betas[k], t, generator, **kept)
                steps.append(({b: v.clone() for b, v in x.items()}, increment))
        runs.append(steps)
    for (x_plain, w_plain), (x_kept, w_kept) in zip(*runs, strict=True):
        assert torch.equal(w_plain, w_kept)
        assert all(torch.equal(x_plain[b], x_kept[b]) for b in x_plain)


def test_ais_log_weights_are_the_plain_loops_bit_for_bit():
    """estimators.ais (kept buffers, swapped each beta) against the loop written plainly."""
    from estimators.path import GeometricPath

    model = random_rbm(10, 6, scale=1.5, seed=4)
    betas = estimators.schedules.linear(40)
    run = estimators.ais(
        model, 33, betas=betas, progress=False, generator=torch.Generator().manual_seed(2)
    )
    path = GeometricPath(model)
    generator = torch.Generator().manual_seed(2)
    beta = betas.tolist()
    with torch.no_grad():
        x = path.init(33, generator)
        log_w = torch.zeros(33, dtype=torch.float64)
        for k in range(1, len(beta)):
            t = path.terms(x)
            log_w = log_w + path.log_f(beta[k], t) - path.log_f(beta[k - 1], t)
            if k < len(beta) - 1:
                x = path.transition(x, beta[k], t, generator)
    assert torch.equal(run.log_weights, log_w)


def test_ais_allocates_nothing_of_a_blocks_size_per_beta():
    """On the CPU backend with products that write into given tensors (its BLAS variant, chosen
    here), three times the betas, the same allocations of a block's size (the kept
    buffers, made in the first steps): the inner loop allocates none. What it still allocates
    per beta is small: chain-length vectors (factor energies) and scalars, under 64 bytes a
    chain. (oneDNN's fused products make their own outputs: see test_backend.py.)"""
    model = random_rbm(64, 32, scale=1.0, seed=0)
    chains = 256
    block_bytes = chains * 32 * 4  # the smallest block, float32

    def sizes(num_betas):
        with ebm.backend.use_backend("cpu-blas"):
            return ebm.profiling.tensor_allocations(
                lambda: estimators.ais(
                    model,
                    chains,
                    betas=estimators.schedules.linear(num_betas),
                    progress=False,
                    generator=torch.Generator().manual_seed(0),
                )
            )

    few, many = sizes(20), sizes(60)
    big_few = sorted(s for s in few if s >= block_bytes)
    big_many = sorted(s for s in many if s >= block_bytes)
    assert big_few and big_few == big_many
    per_beta = (sum(many) - sum(few)) / 40
    assert 0 < per_beta < 64 * chains
