"""Every public path on models whose largest block has 4,096 to 100,000 units, each in seconds on
the CPU: nothing limits the size of a block (no count of states overflows) and the answers stay
right where they can be checked independently."""

from __future__ import annotations

import itertools
import math
import warnings

import pytest
import torch

import ebm
import estimators
import samplers
from estimators.estimate import DegenerateWeightsWarning

GEN = torch.Generator


def big_rbm(n_visible, n_hidden, scale=0.01, seed=0, dtype=torch.float32):
    g = GEN().manual_seed(seed)
    return ebm.models.rbm(
        n_visible,
        n_hidden,
        weight=scale * torch.randn(n_visible, n_hidden, generator=g, dtype=dtype),
        visible_bias=0.1 * torch.randn(n_visible, generator=g, dtype=dtype),
        hidden_bias=0.1 * torch.randn(n_hidden, generator=g, dtype=dtype),
    )


def finite(est):
    return math.isfinite(est.value) and math.isfinite(est.stderr) and est.stderr >= 0


def test_units_count_states_of_a_million_units_without_overflow():
    units = ebm.units.Bernoulli(10**6)
    assert units.log2_num_states == 1e6 and units.discrete
    assert ebm.units.Categorical(10**5, 10).log2_num_states == pytest.approx(1e5 * math.log2(10))
    assert not ebm.units.Gaussian(10**6).discrete


def test_exact_log_z_sums_out_a_2000_unit_layer():
    """RBM 2,000 x 12 in float64: the visible layer summed out, 2^12 hidden states enumerated,
    against log Z = logsumexp_h [c.h + sum_i softplus(b_i + (W h)_i)] computed here."""
    model = big_rbm(2000, 12, scale=0.05, dtype=torch.float64)
    assert model.dtype == torch.float64
    w = model.factors["dense_v_h"].weight.detach()
    b, c = model.factors["bias_v"].bias.detach(), model.factors["bias_h"].bias.detach()
    h = torch.tensor(list(itertools.product([0.0, 1.0], repeat=12)), dtype=torch.float64)
    truth = float(torch.logsumexp(h @ c + torch.nn.functional.softplus(b + h @ w.T).sum(1), 0))
    est = estimators.exact_log_z(model)
    assert est.value == pytest.approx(truth, abs=1e-9)
    with pytest.raises(ValueError, match=r"2\^2000\.0 states"):
        estimators.exact_log_z(model, sum_out=["h"])
    with pytest.raises(ValueError, match=r"table of 2\^2012\.0 states"):
        estimators.elimination_log_z(model)


def test_ais_raise_bridge_and_sandwich_on_a_4096_unit_rbm():
    """RBM 4,096 x 12: AIS, RAISE, the bridge (exact reverse draws, 2^12 hidden states) and the
    sandwich give finite values with standard errors; the bridge and AIS agree with the exact
    log Z within 4 standard errors."""
    model = big_rbm(4096, 12)
    exact = estimators.exact_log_z(model).value
    ais = estimators.ais(
        model, num_chains=50, betas=200, generator=GEN().manual_seed(1), progress=False
    )
    assert finite(ais) and abs(ais.value - exact) < 4 * ais.stderr + 1e-6
    bridge = estimators.bridge(
        model, num_chains=50, betas=100, generator=GEN().manual_seed(2), progress=False
    )
    assert finite(bridge) and abs(bridge.value - exact) < 4 * bridge.stderr + 1e-6
    data = (torch.rand(3, 4096, generator=GEN().manual_seed(3)) < 0.5).float()
    bound = estimators.reverse_ais(
        model, data, num_chains=5, betas=100, generator=GEN().manual_seed(4), progress=False
    )
    assert finite(bound)
    bracket = estimators.sandwich(
        model, data, num_chains=20, betas=100, generator=GEN().manual_seed(5), progress=False
    )
    lower, upper = bracket.extras["lower"], bracket.extras["upper"]
    assert finite(lower) and finite(upper)


def test_ais_bridge_raise_and_sandwich_on_a_dbm_with_a_1100_unit_layer():
    """DBM 1,100-30-10: AIS, the bridge (reverse chains from block Gibbs draws), RAISE (h1 summed
    out, h2 drawn from the mean-field posterior) and the sandwich (F(v) by enumerating h2) give
    finite values with standard errors, the sandwich's lower end below its upper end within
    their errors."""
    torch.manual_seed(0)
    model = ebm.models.dbm([1100, 30, 10], init_scale=0.01)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DegenerateWeightsWarning)
        est = estimators.ais(
            model, num_chains=20, betas=100, generator=GEN().manual_seed(1), progress=False
        )
        gibbs = samplers.BlockGibbs(model, generator=GEN().manual_seed(2))
        draws = gibbs.run(gibbs.init(20), 50)
        bridge = estimators.bridge(
            model,
            num_chains=20,
            betas=100,
            samples=draws,
            generator=GEN().manual_seed(3),
            progress=False,
        )
        v = (torch.rand(2, 1100, generator=GEN().manual_seed(4)) < 0.5).float()
        bound = estimators.reverse_ais(
            model, v, num_chains=5, betas=100, generator=GEN().manual_seed(5), progress=False
        )
        bracket = estimators.sandwich(
            model, v, num_chains=20, betas=100, generator=GEN().manual_seed(6), progress=False
        )
    assert finite(est) and finite(bridge) and finite(bound)
    lower, upper = bracket.extras["lower"], bracket.extras["upper"]
    assert finite(lower) and finite(upper)
    assert lower.value - upper.value < 4 * math.hypot(lower.stderr, upper.stderr) + 1e-6


def test_block_gibbs_with_clamping_on_100000_units():
    """RBM 100,000 x 16: two sweeps with the visible block clamped leave it as given and draw
    binary hidden units."""
    model = big_rbm(100_000, 16)
    v = (torch.rand(4, 100_000, generator=GEN().manual_seed(0)) < 0.5).float()
    gibbs = samplers.BlockGibbs(model, clamp={"v": v}, generator=GEN().manual_seed(1))
    state = gibbs.run(gibbs.init(4), 2)
    assert torch.equal(state["v"], v)
    assert ((state["h"] == 0) | (state["h"] == 1)).all()


def test_compare_fit_save_and_load_on_a_4096_unit_rbm(tmp_path):
    """compare with a small budget, one fit epoch on a small batch, save and load: the loaded
    model is the saved one."""
    model = big_rbm(4096, 32)
    result = samplers.compare(model, [samplers.BlockGibbs], num_chains=2, sweeps=10, seed=0)
    assert len(result.results) == 1
    data = (torch.rand(20, 4096, generator=GEN().manual_seed(0)) < 0.3).float()
    history = ebm.fit(
        model,
        data,
        samplers.CD(),
        epochs=1,
        batch_size=10,
        generator=GEN().manual_seed(1),
        progress=False,
    )
    assert len(history) == 1
    path = ebm.save(model, tmp_path / "big.safetensors")
    loaded = ebm.load(path)
    state = {"v": data[:3], "h": torch.zeros(3, 32)}
    with torch.no_grad():
        assert torch.equal(loaded.energy(state), model.energy(state))


def test_jax_and_thrml_exports_of_a_4096_unit_rbm():
    """The JAX free energy equals torch's; thrml's energy equals ours up to its constant."""
    jax = pytest.importorskip("jax")
    import numpy as np

    model = big_rbm(4096, 16).double()
    v = (torch.rand(3, 4096, generator=GEN().manual_seed(0)) < 0.5).double()
    exported = ebm.jax_export.to_jax(model)
    with torch.no_grad():
        ours = model.free_energy({"v": v}).numpy()
    theirs = np.asarray(exported.free_energy(exported.params, {"v": v.numpy()}))
    assert np.allclose(theirs, ours, rtol=0, atol=1e-8)
    pytest.importorskip("thrml")
    from ebm.thrml_export import to_thrml

    spin = to_thrml(model)
    h = (torch.rand(3, 16, generator=GEN().manual_seed(1)) < 0.5).double()
    state = {"v": v, "h": h}
    blocks = [spin.nodes[b] for b in spin.order]
    spins = spin.from_ebm_state(state)
    got = jax.vmap(lambda *s: spin.ebm.energy(list(s), blocks))(*spins)
    got = torch.tensor(jax.device_get(got).tolist(), dtype=torch.float64) + spin.constant
    with torch.no_grad():
        torch.testing.assert_close(got, model.energy(state), atol=1e-2, rtol=1e-5)
