import math
import os
import signal
import warnings

import pytest
import torch

import ebm
import estimators
import samplers

UNIFORM = -9 * math.log(2)  # log-likelihood of the uniform distribution on 3x3 images
BEST = -math.log(14)  # the best possible on 3x3 bars and stripes


def _exact_ll(model, data):
    return estimators.log_likelihood(model, data, estimators.exact_log_z(model)).value


@pytest.mark.parametrize("sampler", [samplers.CD(1), samplers.PCD(num_chains=100, k=1)], ids=repr)
def test_fit_learns_bars_and_stripes(sampler):
    data = ebm.datasets.bars_and_stripes(3)
    torch.manual_seed(0)
    model = ebm.models.rbm(9, 8, init_scale=0.1)
    before = _exact_ll(model, data)
    history = ebm.fit(
        model,
        data.repeat(10, 1),
        sampler,
        epochs=100,
        batch_size=14,
        lr=0.1,
        momentum=0.5,
        generator=torch.Generator().manual_seed(0),
        progress=False,
    )
    after = _exact_ll(model, data)
    assert before == pytest.approx(UNIFORM, abs=0.1)
    # most of the way from the uniform distribution to the best possible model
    assert after > UNIFORM + 0.6 * (BEST - UNIFORM), (before, after)
    assert len(history) == 100 and not history.interrupted
    assert all(math.isfinite(x) for x in history["free_energy"])


def test_fixed_seed_reproduces_a_run_exactly():
    data = ebm.datasets.bars_and_stripes(2)
    params = []
    for seed in (3, 3, 4):
        torch.manual_seed(0)
        model = ebm.models.rbm(4, 3)
        ebm.fit(
            model,
            data,
            samplers.PCD(num_chains=10),
            epochs=5,
            batch_size=3,
            lr=0.1,
            generator=torch.Generator().manual_seed(seed),
            progress=False,
        )
        params.append(torch.cat([p.detach().flatten() for p in model.parameters()]))
    assert torch.equal(params[0], params[1])
    assert not torch.equal(params[0], params[2])


def test_monitor_records_and_interruption_keeps_history():
    data = ebm.datasets.bars_and_stripes(2)
    model = ebm.models.rbm(4, 3)

    def monitor(epoch, m):
        if epoch == 3:
            raise KeyboardInterrupt
        return {"ll": _exact_ll(m, data)}

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        history = ebm.fit(
            model,
            data,
            samplers.CD(1),
            epochs=10,
            batch_size=6,
            lr=0.1,
            monitor=monitor,
            progress=False,
        )
    assert history.interrupted and len(history) == 2
    assert len(history["ll"]) == 2
    assert any("interrupted" in str(w.message) for w in caught)


def test_weight_decay_applies_to_weights_only():
    data = ebm.datasets.bars_and_stripes(2)
    model = ebm.models.rbm(4, 3)
    with torch.no_grad():
        model.factors["dense_v_h"].weight.fill_(1.0)
    zero_data = {"v": torch.zeros(6, 4)}

    class NoGradient:  # negative phase equal to the data: the likelihood gradient is zero
        def negative(self, m, batch, generator):
            return dict(batch)

    ebm.fit(
        model,
        zero_data,
        NoGradient(),
        epochs=1,
        batch_size=6,
        lr=0.1,
        weight_decay=0.5,
        progress=False,
    )
    torch.testing.assert_close(model.factors["dense_v_h"].weight, torch.full((4, 3), 0.95))
    assert float(model.factors["bias_v"].bias.detach().abs().sum()) == 0.0
    assert data.shape == (6, 4)


def test_fit_validates_data():
    model = ebm.models.rbm(4, 3)
    with pytest.raises(ValueError, match=r"block 'v'.*0 or 1"):
        ebm.fit(model, torch.full((5, 4), 0.3), samplers.CD(1), epochs=1, progress=False)
    with pytest.raises(ValueError, match=r"shape \(batch, 4\)"):
        ebm.fit(model, torch.zeros(5, 3), samplers.CD(1), epochs=1, progress=False)
    with pytest.raises(ValueError, match="k must be"):
        samplers.CD(0)


class _SigintAfter:
    """A PCD sampler that sends this process SIGINT (Ctrl-C) during its n-th negative phase."""

    def __init__(self, n):
        self.inner, self.n, self.calls = samplers.PCD(num_chains=20), n, 0

    def negative(self, model, batch, generator):
        self.calls += 1
        if self.calls == self.n:
            os.kill(os.getpid(), signal.SIGINT)
        return self.inner.negative(model, batch, generator)

    def state_dict(self):
        return self.inner.state_dict()

    def load_state_dict(self, tensors, model):
        self.inner.load_state_dict(tensors, model)


def _run(checkpoint=None, sampler=None, monitor=None, lr_schedule=None):
    data = ebm.datasets.bars_and_stripes(3)
    torch.manual_seed(0)
    model = ebm.models.rbm(9, 6, init_scale=0.1)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        history = ebm.fit(
            model,
            data.repeat(3, 1),
            sampler or samplers.PCD(num_chains=20),
            epochs=6,
            batch_size=10,
            lr=0.1,
            momentum=0.5,
            progress=False,
            generator=torch.Generator().manual_seed(11),
            checkpoint=checkpoint,
            monitor=monitor,
            lr_schedule=lr_schedule,
        )
    return model, history


def _params(model):
    return torch.cat([p.detach().flatten() for p in model.parameters()])


def test_ctrl_c_mid_epoch_then_resume_matches_an_uninterrupted_run(tmp_path):
    reference, ref_history = _run()
    ckpt = tmp_path / "fit.safetensors"
    # 42 examples in batches of 10: 5 batches an epoch; Ctrl-C during the 13th batch (epoch 3)
    model, history = _run(ckpt, sampler=_SigintAfter(13))
    assert history.interrupted and len(history) == 2 and ckpt.exists()
    assert not torch.equal(_params(model), _params(reference))
    resumed, history = _run(ckpt)  # a fresh process would do the same: everything is in the file
    assert not history.interrupted and len(history) == 6
    assert torch.equal(_params(resumed), _params(reference))
    assert history["free_energy"] == pytest.approx(ref_history["free_energy"])


def test_interrupt_between_epochs_then_resume(tmp_path):
    reference, _ = _run()
    ckpt = tmp_path / "fit.safetensors"

    def stop_at_4(epoch, model):
        if epoch == 4:
            raise KeyboardInterrupt
        return {}

    _, history = _run(ckpt, monitor=stop_at_4)
    assert history.interrupted and len(history) == 3
    resumed, history = _run(ckpt)
    assert len(history) == 6 and torch.equal(_params(resumed), _params(reference))


def test_checkpoint_of_another_model_is_refused(tmp_path):
    ckpt = tmp_path / "fit.safetensors"
    _run(ckpt)
    other = ebm.models.rbm(9, 7)
    with pytest.raises(ValueError, match="not a training checkpoint of this model"):
        ebm.fit(
            other,
            ebm.datasets.bars_and_stripes(3),
            samplers.CD(1),
            epochs=1,
            checkpoint=ckpt,
            progress=False,
        )


def test_linear_decay_schedule_is_followed_and_survives_a_resume(tmp_path):
    decay = ebm.linear_decay(6, start=2)
    assert [decay(e) for e in range(1, 7)] == [1, 1, 1, 0.75, 0.5, 0.25]
    with pytest.raises(ValueError, match="start < epochs"):
        ebm.linear_decay(3, start=3)
    reference, ref_history = _run(lr_schedule=decay)
    assert ref_history["lr"] == pytest.approx([0.1, 0.1, 0.1, 0.075, 0.05, 0.025])
    constant, _ = _run()
    assert not torch.equal(_params(reference), _params(constant))
    ckpt = tmp_path / "fit.safetensors"
    _, history = _run(ckpt, sampler=_SigintAfter(18), lr_schedule=decay)  # stops in epoch 4
    assert history.interrupted and len(history) == 3
    resumed, history = _run(ckpt, lr_schedule=decay)
    assert torch.equal(_params(resumed), _params(reference))
    assert history["lr"] == pytest.approx(ref_history["lr"])
    with pytest.raises(ValueError, match="need a factor >= 0"):
        _run(lr_schedule=lambda epoch: -1.0)


def test_exponential_decay_and_momentum_switch_schedules():
    decay = ebm.exponential_decay(0.5, floor=0.2)
    assert [decay(e) for e in range(1, 5)] == [1.0, 0.5, 0.25, 0.2]
    switch = ebm.momentum_switch(0.5, 0.9, after=2)
    assert [switch(e) for e in range(1, 5)] == [0.5, 0.5, 0.9, 0.9]
    for bad in (0.0, 1.5, math.nan):
        with pytest.raises(ValueError, match="factor"):
            ebm.exponential_decay(bad)
    with pytest.raises(ValueError, match="final momentum"):
        ebm.momentum_switch(0.5, 1.0, after=2)
    with pytest.raises(ValueError, match="after"):
        ebm.momentum_switch(0.5, 0.9, after=-1)


def _momentum_run(**options):
    data = ebm.datasets.bars_and_stripes(3)
    torch.manual_seed(0)
    model = ebm.models.rbm(9, 6, init_scale=0.1)
    ebm.fit(
        model,
        data.repeat(3, 1),
        samplers.CD(1),
        epochs=4,
        batch_size=10,
        lr=0.1,
        progress=False,
        generator=torch.Generator().manual_seed(5),
        **options,
    )
    return _params(model)


def test_momentum_schedule_sets_the_momentum_of_each_epoch():
    """A constant schedule is the fixed momentum; a switch after 2 epochs differs from both."""
    fixed_low = _momentum_run(momentum=0.5)
    assert torch.equal(_momentum_run(momentum_schedule=lambda e: 0.5), fixed_low)
    fixed_high = _momentum_run(momentum=0.9)
    assert torch.equal(
        _momentum_run(momentum_schedule=ebm.momentum_switch(0.9, 0.9, 0)), fixed_high
    )
    switched = _momentum_run(momentum_schedule=ebm.momentum_switch(0.5, 0.9, after=2))
    assert not torch.equal(switched, fixed_low) and not torch.equal(switched, fixed_high)
    with pytest.raises(ValueError, match="momentum_schedule"):
        _momentum_run(momentum_schedule=lambda e: 1.0)


def test_batch_transform_draws_fresh_states_and_resumes_exactly(tmp_path):
    """Grey-level data with ``bernoulli_draw``: every batch is binarised anew (the positive free
    energies differ from a run on one fixed draw), and a run interrupted mid-epoch resumes to the
    uninterrupted parameters, draws included."""
    grey = ebm.datasets.bars_and_stripes(3).repeat(3, 1) * 0.8 + 0.1

    def run(checkpoint=None, sampler=None, data=grey, transform=ebm.datasets.bernoulli_draw):
        torch.manual_seed(0)
        model = ebm.models.rbm(9, 6, init_scale=0.1)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            history = ebm.fit(
                model,
                data,
                sampler or samplers.PCD(num_chains=20),
                epochs=4,
                batch_size=10,
                lr=0.1,
                progress=False,
                generator=torch.Generator().manual_seed(2),
                checkpoint=checkpoint,
                batch_transform=transform,
            )
        return model, history

    reference, _ = run()
    once = torch.bernoulli(grey, generator=torch.Generator().manual_seed(9))
    fixed, _ = run(data=once, transform=None)
    assert not torch.equal(_params(reference), _params(fixed))
    ckpt = tmp_path / "fit.safetensors"
    _, history = run(ckpt, sampler=_SigintAfter(8))
    assert history.interrupted
    resumed, history = run(ckpt)
    assert len(history) == 4 and torch.equal(_params(resumed), _params(reference))
    with pytest.raises(ValueError, match="common first dimension"):
        run(data={"a": grey, "b": grey[:5]})
    with pytest.raises(ValueError, match="must be 0 or 1"):
        run(transform=lambda batch, g: batch)  # grey levels are not states of Bernoulli units


def test_bernoulli_draw_matches_its_probabilities():
    p = torch.tensor([0.0, 0.1, 0.5, 0.9, 1.0]).repeat(20_000, 1)
    x = ebm.datasets.bernoulli_draw(p, torch.Generator().manual_seed(0))
    se = (p[0] * (1 - p[0]) / p.shape[0]).sqrt()
    assert ((x.mean(0) - p[0]).abs() <= 4 * se + 1e-12).all()
    assert set(x.unique().tolist()) <= {0.0, 1.0}
    assert sorted(ebm.datasets.bernoulli_draw({"a": p[:2], "b": p[:3]})) == ["a", "b"]
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        ebm.datasets.bernoulli_draw(torch.tensor([1.5]))
