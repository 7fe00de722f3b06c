"""Shard independent annealing chains over Ray tasks (processes, machines, one GPU per task): a
wrapper any annealing loop can use, given its shard function.

AIS chains and RAISE examples are independent, so a run split into shards and put back together
is the same estimator as one run: the log-weights of the shards are concatenated and combined by
the same log-mean-exp. Each shard gets its own seed drawn from the caller's generator. The model
travels as its JSON spec and its tensors and is rebuilt on the worker.
"""

from __future__ import annotations

from collections.abc import Callable

import torch

from ebm.base import FactorizedBase
from ebm.io import rebuild
from ebm.model import EnergyModel

__all__ = ["split", "shard_seeds", "run_shards"]


def split(total: int, parts: int) -> list[int]:
    """``total`` items in ``parts`` nearly equal shares (larger first), none empty."""
    parts = max(1, min(parts, total))
    base, extra = divmod(total, parts)
    return [base + (i < extra) for i in range(parts)]


def shard_seeds(generator: torch.Generator | None, n: int) -> list[int]:
    """One seed per shard, drawn from ``generator`` (or the global generator)."""
    return [int(s) for s in torch.randint(2**62, (n,), generator=generator)]


def _rebuild(spec, tensors, base_natural, device):
    model = rebuild(spec, tensors, "the shard's model").to(device)
    base = None if base_natural is None else FactorizedBase(model, base_natural)
    return model, base


def _shard(run, spec, tensors, base_natural, kwargs: dict, seed: int) -> torch.Tensor:
    """Rebuild the model where the shard lands and return ``run(model, base, generator,
    **kwargs)`` on the CPU."""
    device = "cuda" if torch.cuda.is_available() else "cpu"
    model, base = _rebuild(spec, tensors, base_natural, device)
    gen = torch.Generator(device=device).manual_seed(seed)
    return run(model, base, gen, **kwargs).cpu()


def run_shards(
    run: Callable[..., torch.Tensor],
    model: EnergyModel,
    base: FactorizedBase | None,
    shards: list[dict],
    seeds: list[int],
    local: bool = False,
) -> list[torch.Tensor]:
    """For each (kwargs, seed), ``run(model, base, generator, **kwargs) -> tensor`` on a copy of
    the model rebuilt from its spec and tensors, with a generator seeded by ``seed``, as Ray
    tasks (``local``: in this process, in order, which gives the same numbers); returns the
    tensors, on the CPU. ``run`` is any annealing loop's shard function, defined at module level
    (Ray sends it by reference). Starts a local Ray instance when none is running. A task asks
    for one GPU when this machine has one."""
    spec = model.spec()
    tensors = {k: v.detach().cpu() for k, v in model.state_dict().items()}
    natural = None if base is None else {b: n.cpu() for b, n in base.natural.items()}
    if local:
        return [
            _shard(run, spec, tensors, natural, kw, s) for kw, s in zip(shards, seeds, strict=True)
        ]
    try:
        import ray
    except ImportError as err:  # pragma: no cover - depends on the installed extras
        raise ImportError("workers > 1 needs Ray: pip install 'boltzkit[distributed]'") from err
    if not ray.is_initialized():
        ray.init(include_dashboard=False, log_to_driver=False, configure_logging=False)
    gpus = 1 if torch.cuda.is_available() else 0
    task = ray.remote(num_gpus=gpus, num_cpus=1)(_shard)
    spec_ref, tensors_ref = ray.put(spec), ray.put(tensors)
    refs = [
        task.remote(run, spec_ref, tensors_ref, natural, kw, s)
        for kw, s in zip(shards, seeds, strict=True)
    ]
    return ray.get(refs)
