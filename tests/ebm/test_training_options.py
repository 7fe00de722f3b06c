"""fit's per-parameter learning-rate multipliers."""

import pytest
import torch

import ebm
import samplers


def _one_update(multipliers, tmp_path=None):
    """One SGD step (one batch) of CD-1 on a small RBM from a fixed start and seed; returns the
    parameters before and after."""
    torch.manual_seed(0)
    model = ebm.models.rbm(6, 4).double()
    data = torch.bernoulli(
        torch.full((10, 6), 0.3, dtype=torch.float64), generator=torch.Generator().manual_seed(1)
    )
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    ebm.fit(
        model,
        {"v": data},
        samplers.CD(1),
        epochs=1,
        batch_size=10,
        lr=0.1,
        momentum=0.5,
        generator=torch.Generator().manual_seed(2),
        progress=False,
        lr_multipliers=multipliers,
    )
    after = {n: p.detach().clone() for n, p in model.named_parameters()}
    return before, after


def test_a_multiplier_scales_that_parameter_step_only():
    names = [n for n, _ in ebm.models.rbm(6, 4).named_parameters()]
    bias = "factors.bias_h.bias"
    assert bias in names
    before, plain = _one_update(None)
    _, scaled = _one_update({bias: 0.25})
    for name in names:
        step, step_scaled = plain[name] - before[name], scaled[name] - before[name]
        factor = 0.25 if name == bias else 1.0
        assert float(step.abs().max()) > 0
        torch.testing.assert_close(step_scaled, factor * step)


def test_bad_multipliers_are_refused_by_name():
    model = ebm.models.rbm(4, 3)
    data = {"v": torch.zeros(5, 4)}
    with pytest.raises(ValueError, match="not parameters of the model"):
        ebm.fit(
            model,
            data,
            samplers.CD(1),
            epochs=1,
            progress=False,
            lr_multipliers={"factors.nope.bias": 0.5},
        )
    name = next(n for n, _ in model.named_parameters())
    for bad in (0.0, -1.0, float("nan"), True):
        with pytest.raises(ValueError, match="must be a positive number"):
            ebm.fit(
                model, data, samplers.CD(1), epochs=1, progress=False, lr_multipliers={name: bad}
            )


def test_a_run_with_multipliers_resumes_from_its_checkpoint(tmp_path):
    """Interrupted after 2 of 4 epochs and resumed: the same parameters as 4 epochs straight."""

    def run(epochs, path):
        torch.manual_seed(0)
        model = ebm.models.rbm(6, 4).double()
        name = [n for n, _ in model.named_parameters() if n.endswith("bias")][0]
        data = torch.bernoulli(
            torch.full((40, 6), 0.3, dtype=torch.float64),
            generator=torch.Generator().manual_seed(1),
        )
        for e in epochs:
            ebm.fit(
                model,
                {"v": data},
                samplers.CD(1),
                epochs=e,
                batch_size=10,
                lr=0.1,
                momentum=0.5,
                generator=torch.Generator().manual_seed(2),
                progress=False,
                checkpoint=path,
                lr_multipliers={name: 0.1},
            )
        return [p.detach() for p in model.parameters()]

    straight = run([4], tmp_path / "a.ckpt")
    resumed = run([2, 4], tmp_path / "b.ckpt")
    for x, y in zip(straight, resumed, strict=True):
        torch.testing.assert_close(x, y)


def test_resuming_with_other_multipliers_is_refused(tmp_path):
    """Momentum is saved by parameter index, which the multipliers' groups set: a checkpoint
    resumed with other multipliers is refused by name, not silently misassigned."""
    model = ebm.models.rbm(6, 4)
    data = {"v": torch.zeros(20, 6)}
    path = tmp_path / "run.ckpt"
    options = dict(batch_size=10, lr=0.1, momentum=0.5, progress=False, checkpoint=path)
    ebm.fit(model, data, samplers.CD(1), epochs=1, **options)
    with pytest.raises(ValueError, match="other lr_multipliers"):
        ebm.fit(
            model,
            data,
            samplers.CD(1),
            epochs=2,
            lr_multipliers={"factors.bias_h.bias": 0.5},
            **options,
        )
    ebm.fit(model, data, samplers.CD(1), epochs=2, **options)  # the same ones resume
