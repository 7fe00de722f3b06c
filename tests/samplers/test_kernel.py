"""The sampler protocol (samplers.kernel) and the one runner (samplers.runner)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

import ebm
import samplers
from tests.helpers import random_rbm


def test_parallel_tempering_infos_sum_to_its_own_statistics():
    """The runner's swap rates and round trips, folded from the step infos, equal those the
    kernel keeps for its tuning over the same steps; one step costs R sweeps."""
    model = ebm.models.bimodal_rbm()
    pt = samplers.ParallelTempering(model, num_temperatures=5)
    state = pt.init(16, torch.Generator().manual_seed(0))
    seen = []
    run = samplers.run_chain(pt, state, 40, observers=[lambda x, i: seen.append(len(x["v"]))])
    assert np.allclose(run.swap_rates, pt.swap_rates)
    assert run.round_trips == pt.round_trips
    assert run.steps == 40 and run.sweeps == 40 * 5
    assert np.array_equal(run.betas, pt.betas)
    assert seen == [16] * 40  # observers see the beta = 1 replicas only
    assert 0.0 < run.acceptance <= 1.0 and run.seconds > 0


def test_metropolis_reports_its_acceptance_in_the_info():
    """With every parameter zero each proposal leaves the energy unchanged: every move is
    accepted; with large weights the rate per chain is a fraction in [0, 1]."""
    flat = ebm.models.rbm(4, 3, init_scale=0.0)
    kernel = samplers.Metropolis(flat)
    state, info = kernel.step(kernel.init(6, torch.Generator().manual_seed(0)))
    assert info.accept.shape == (6,) and bool((info.accept == 1.0).all())
    steep = random_rbm(4, 3, scale=3.0, seed=1)
    kernel = samplers.Metropolis(steep)
    run = samplers.run_chain(kernel, kernel.init(50, torch.Generator().manual_seed(0)), 20)
    assert 0.0 < run.acceptance < 1.0


def test_hmc_info_drives_its_warmup():
    model = ebm.models.upoe(3, 2)
    hmc = samplers.BatchedHMC(model, step_size=5.0, num_steps=4)
    state = hmc.init(64, torch.Generator().manual_seed(0))
    state, info = hmc.step(state)
    assert info.accept.shape == (64,) and info.cost == 1
    hmc.warmup(state, 30)
    assert hmc.step_size < 5.0  # far too large a step is rejected, so warm-up shrinks it


def test_the_runner_checks_what_it_is_given():
    model = random_rbm(3, 2, scale=1.0, seed=0)
    gibbs = samplers.BlockGibbs(model, generator=torch.Generator().manual_seed(0))
    state = gibbs.init(4)
    with pytest.raises(ValueError, match="num_steps"):
        samplers.run_chain(gibbs, state, -1)
    with pytest.raises(ValueError, match="expected shape"):
        samplers.run_chain(gibbs, {**state, "v": torch.zeros(4, 5)}, 2)
    with pytest.raises(ValueError):
        samplers.run_chain(gibbs, {**state, "v": torch.full((4, 3), 0.5)}, 2)
    assert samplers.run_chain(gibbs, state, 0).state is state


def test_compare_takes_kernels_only():
    class StepOnly:  # the old duck-typed form: no info record, not a Kernel
        def __init__(self, model):
            self.model = model

        def init(self, num_chains, generator=None):
            return {}

        def step(self, state):
            return state

    model = random_rbm(3, 2, scale=1.0, seed=0)
    with pytest.raises(TypeError, match="samplers.Kernel"):
        samplers.compare(model, [StepOnly], sweeps=10, progress=False)


def test_negative_phases_drive_a_kernel_built_once_per_model():
    """CD and PCD run the kernel a factory builds, the same object from update to update while
    the model is the same, a new one for another model; a factory that builds no kernel is
    refused."""
    built = []

    def factory(model):
        built.append(samplers.Metropolis(model))
        return built[-1]

    model = random_rbm(4, 3, scale=1.0, seed=0)
    data = {
        "v": torch.bernoulli(torch.full((8, 4), 0.5), generator=torch.Generator().manual_seed(1))
    }
    gen = torch.Generator().manual_seed(2)
    cd = samplers.CD(k=3, kernel=factory)
    for _ in range(3):
        negative = cd.negative(model, data, gen)
        assert sorted(negative) == ["h", "v"] and negative["v"].shape == (8, 4)
    assert len(built) == 1
    cd.negative(random_rbm(4, 3, scale=1.0, seed=1), data, gen)
    assert len(built) == 2
    pcd = samplers.PCD(num_chains=5, k=2, kernel=factory)
    assert pcd.negative(model, data, gen)["v"].shape == (5, 4)
    with pytest.raises(ValueError, match="either clamp or kernel"):
        samplers.CD(clamp=["v"], kernel=factory)
    with pytest.raises(TypeError, match="not a samplers.Kernel"):
        samplers.CD(kernel=lambda m: object()).negative(model, data, gen)


def test_block_gibbs_takes_a_schedule_of_unit_classes():
    """A schedule with v's units split over two classes: run gives the chains of as many steps,
    clamping still holds, and a schedule that never updates a free block or names an unknown one
    is refused."""
    model = random_rbm(4, 3, scale=1.0, seed=0)
    classes = [[("v", [0, 2])], [("v", [1, 3])], ["h"]]
    stepping = samplers.BlockGibbs(
        model, generator=torch.Generator().manual_seed(1), schedule=classes
    )
    running = samplers.BlockGibbs(
        model, generator=torch.Generator().manual_seed(1), schedule=classes
    )
    start = stepping.init(20)
    running.init(20)
    stepped = start
    for _ in range(6):
        stepped, _ = stepping.step(stepped)
    ran = running.run(start, 6)
    assert all(torch.equal(ran[b], stepped[b]) for b in model.blocks)
    v = torch.tensor([1.0, 0.0, 1.0, 1.0])
    clamped = samplers.BlockGibbs(model, clamp={"v": v}, schedule=classes)
    assert clamped.schedule == [["h"]]
    assert torch.equal(clamped.run(clamped.init(5), 3)["v"], v.expand(5, 4))
    with pytest.raises(ValueError, match=r"never updates block\(s\) \['h'\]"):
        samplers.BlockGibbs(model, schedule=[["v"]])
    with pytest.raises(ValueError, match="unknown block"):
        samplers.BlockGibbs(model, schedule=[["v"], ["h"], [("x", [0])]])
