"""Shard independent annealing chains over Ray tasks (processes, machines, one GPU per task).

AIS chains and RAISE examples are independent, so a run split into shards and put back together
is the same estimator as one run: the log-weights of the shards are concatenated and combined by
the same log-mean-exp. Each shard gets its own seed drawn from the caller's generator. The model
travels as its JSON spec and its tensors and is rebuilt on the worker.
"""

from __future__ import annotations

import torch

from ebm.base import FactorizedBase
from ebm.io import from_spec
from ebm.model import EnergyModel
from estimators.estimate import judged_elsewhere

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
    model = from_spec(spec)
    dtypes = {t.dtype for t in tensors.values() if t.is_floating_point()}
    if len(dtypes) == 1:
        model = model.to(dtype=dtypes.pop())
    model.load_state_dict(tensors)
    model = model.to(device)
    base = None if base_natural is None else FactorizedBase(model, base_natural)
    return model, base


def _shard(kind: str, spec, tensors, base_natural, kwargs: dict, seed: int) -> torch.Tensor:
    """Run one shard where it lands; returns on the CPU its float64 log-weights (AIS) or, for
    RAISE, the rows (per-example log p-hat, their standard errors, their ESS, the spread of their
    log-weights)."""
    from estimators.ais import ais
    from estimators.reverse import reverse_ais

    device = "cuda" if torch.cuda.is_available() else "cpu"
    model, base = _rebuild(spec, tensors, base_natural, device)
    gen = torch.Generator(device=device).manual_seed(seed)
    if kind == "ais":
        with judged_elsewhere():  # judged on all the shards' weights together
            est = ais(model, base=base, generator=gen, progress=False, **kwargs)
        return est.log_weights.cpu()
    kwargs = dict(kwargs)
    data = kwargs.pop("data").to(device)
    with judged_elsewhere():  # the combined estimate is judged where the shards meet
        est = reverse_ais(model, data, base=base, generator=gen, progress=False, **kwargs)
    extras = est.extras
    return torch.stack(
        [
            extras["per_example"],
            extras["per_example_stderr"],
            extras["per_example_ess"],
            extras["per_example_log_weight_sd"],
        ]
    )


def run_shards(
    kind: str,
    model: EnergyModel,
    base: FactorizedBase | None,
    shards: list[dict],
    seeds: list[int],
    local: bool = False,
) -> list[torch.Tensor]:
    """Run ``_shard`` for each (kwargs, seed) as Ray tasks (``local``: in this process, in order,
    which gives the same numbers). Starts a local Ray instance when none is running. A task asks
    for one GPU when this machine has one."""
    spec = model.spec()
    tensors = {k: v.detach().cpu() for k, v in model.state_dict().items()}
    natural = None if base is None else {b: n.cpu() for b, n in base.natural.items()}
    if local:
        return [
            _shard(kind, spec, tensors, natural, kw, s) for kw, s in zip(shards, seeds, strict=True)
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
        task.remote(kind, spec_ref, tensors_ref, natural, kw, s)
        for kw, s in zip(shards, seeds, strict=True)
    ]
    return ray.get(refs)
