"""Sharded AIS and RAISE on a local Ray cluster of 2 CPUs: the same estimator as one run."""

import pytest
import torch

import estimators
from estimators.ais import _ais_shard
from estimators.distributed import run_shards, shard_seeds, split
from estimators.reverse import _raise_shard
from tests.helpers import random_rbm, trained_bars_rbm

ray = pytest.importorskip("ray")


@pytest.fixture(scope="module")
def cluster():
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False, configure_logging=False)
    yield
    ray.shutdown()


def test_split_is_even_and_complete():
    assert split(10, 3) == [4, 3, 3] and split(2, 5) == [1, 1] and sum(split(101, 7)) == 101


def test_sharded_ais_combines_exactly_like_its_shards(cluster):
    model = random_rbm(10, 6, scale=2.0, seed=0)
    betas = estimators.schedules.linear(500)
    est = estimators.ais(
        model,
        num_chains=200,
        betas=betas,
        workers=2,
        progress=False,
        generator=torch.Generator().manual_seed(5),
    )
    seeds = shard_seeds(torch.Generator().manual_seed(5), 2)
    shards = [{"num_chains": 100, "betas": betas, "sum_out": ["h"]}] * 2
    local = torch.cat(run_shards(_ais_shard, model, None, shards, seeds, local=True))
    assert torch.equal(est.log_weights, local)
    assert est.num_chains == 200 and est.extras["shards"] == 2
    exact = estimators.exact_log_z(model).value
    assert abs(est.value - exact) < 3 * est.stderr


def test_sharded_sandwich_brackets_the_exact_value(cluster):
    model, data, exact = trained_bars_rbm()
    betas = estimators.schedules.linear(300)
    s = estimators.sandwich(
        model,
        data,
        num_chains=100,
        reverse_chains=10,
        betas=betas,
        workers=2,
        generator=torch.Generator().manual_seed(3),
        progress=False,
    )
    lower, upper = s.extras["lower"], s.extras["upper"]
    assert lower.extras["examples"] == 14
    assert lower.extras["shards"] == 2 and upper.extras["log_z"].extras["shards"] == 2
    assert lower.value - 3 * lower.stderr <= exact <= upper.value + 3 * upper.stderr
    with pytest.raises(ValueError, match="checkpoint is for single-process runs"):
        estimators.ais(model, workers=2, checkpoint="x.safetensors", progress=False)


def test_sharded_raise_equals_its_shards(cluster):
    model, data, _ = trained_bars_rbm()
    betas = estimators.schedules.linear(200)
    est = estimators.reverse_ais(
        model,
        data,
        num_chains=10,
        betas=betas,
        workers=2,
        generator=torch.Generator().manual_seed(4),
        progress=False,
    )
    seeds = shard_seeds(torch.Generator().manual_seed(4), 2)
    shards = [
        {"data": part, "num_chains": 10, "betas": betas, "batch_size": 1000}
        for part in (data[:7], data[7:])
    ]
    local = torch.cat(run_shards(_raise_shard, model, None, shards, seeds, local=True), 1)
    assert torch.equal(est.extras["per_example"], local[0])
    assert est.extras["examples"] == 14
