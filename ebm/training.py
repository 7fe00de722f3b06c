"""The training loop: stochastic gradient ascent on the log-likelihood with a sampled negative phase.

For visible data v and model p(v) = exp(-F(v)) / Z, the log-likelihood gradient is

    d log p(v) / d theta = -dF(v)/d theta + E_model[dF(v')/d theta],

and ``fit`` follows it with the model expectation replaced by samples v' from a negative-phase
sampler (contrastive divergence, persistent chains, ...). Where the hidden blocks can be summed out
analytically the free energy F is used for both phases (the lower-variance, Rao-Blackwellised
gradient); otherwise the energy of full states is used, and the sampler's ``positive`` method fills
in the hidden blocks of the data. The gradient is biased by whatever bias the sampler has (CD-k's is
well known); with exact samples it is unbiased.

The sampler is passed in (``ebm`` does not import ``samplers``). It needs
``negative(model, positive_state, generator) -> state`` and, for models whose hidden blocks cannot be
summed out, ``positive(model, data_state, generator) -> state``.
"""

from __future__ import annotations

import json
import math
import signal
import threading
import time
import warnings
from collections.abc import Callable, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import torch
from torch import nn
from tqdm.auto import tqdm

from ebm.checkpoint import (
    load_checkpoint,
    load_optimizer_tensors,
    optimizer_tensors,
    save_checkpoint,
)
from ebm.model import EnergyModel

__all__ = ["fit", "History", "linear_decay", "exponential_decay", "momentum_switch", "decay_groups"]


@dataclass
class History:
    """Per-epoch records of a training run (``records[i]`` is a dict for epoch i + 1)."""

    records: list[dict] = field(default_factory=list)
    interrupted: bool = False

    def __getitem__(self, key: str) -> list:
        return [r[key] for r in self.records if key in r]

    def __len__(self) -> int:
        return len(self.records)


def linear_decay(epochs: int, start: int = 0) -> Callable[[int], float]:
    """An ``lr_schedule`` for ``fit``: factor 1 up to epoch ``start``, then falling linearly over
    the remaining ``epochs - start`` epochs, (epochs - e + 1) / (epochs - start) at epoch e, to
    1 / (epochs - start) at the last epoch."""
    if not 0 <= start < epochs:
        raise ValueError(f"need 0 <= start < epochs, got start={start}, epochs={epochs}")

    def factor(epoch: int) -> float:
        return 1.0 if epoch <= start else (epochs - epoch + 1) / (epochs - start)

    return factor


def exponential_decay(factor: float, floor: float = 0.0) -> Callable[[int], float]:
    """An ``lr_schedule`` for ``fit``: max(factor^(epoch - 1), floor), 1 at the first epoch.

    Salakhutdinov & Hinton's DBM code divides the rate by 1.000015 after every one of 600 updates
    an epoch, down to a tenth of its start: ``exponential_decay(1.000015 ** -600, 0.1)`` is that
    schedule taken one epoch at a time."""
    if not (math.isfinite(factor) and 0 < factor <= 1):
        raise ValueError(f"factor must be in (0, 1], got {factor}")
    if not (math.isfinite(floor) and 0 <= floor <= 1):
        raise ValueError(f"floor must be in [0, 1], got {floor}")

    def schedule(epoch: int) -> float:
        return max(factor ** (epoch - 1), floor)

    return schedule


def momentum_switch(initial: float, final: float, after: int) -> Callable[[int], float]:
    """A ``momentum_schedule`` for ``fit``: ``initial`` for epochs 1..``after``, ``final`` from
    then on (the 0.5 -> 0.9 switch after 5 epochs of Hinton's and Salakhutdinov's codes)."""
    for name, value in (("initial", initial), ("final", final)):
        if not (math.isfinite(value) and 0 <= value < 1):
            raise ValueError(f"{name} momentum must be in [0, 1), got {value}")
    if isinstance(after, bool) or not isinstance(after, int) or after < 0:
        raise ValueError(f"after must be an int >= 0, got {after!r}")

    def schedule(epoch: int) -> float:
        return initial if epoch <= after else final

    return schedule


def decay_groups(model: EnergyModel) -> tuple[list[nn.Parameter], list[nn.Parameter]]:
    """The trainable parameters split into (decayed, not decayed): weight decay applies to the
    weights (two or more dimensions) and not to biases, nor to the parameters a factor names in
    ``no_weight_decay`` (a parametrisation's internals)."""
    exempt = {
        id(getattr(factor, name))
        for factor in model.factors.values()
        for name in factor.no_weight_decay
    }
    trainable = [p for p in model.parameters() if p.requires_grad]
    decayed = [p for p in trainable if p.dim() >= 2 and id(p) not in exempt]
    return decayed, [p for p in trainable if p.dim() < 2 or id(p) in exempt]


def parameter_groups(
    model: EnergyModel, weight_decay: float, lr_multipliers: Mapping[str, float] | None = None
) -> list[dict]:
    """The optimiser's parameter groups: ``decay_groups``'s two, each split by learning-rate
    multiplier (``lr_multipliers``: parameter name -> factor, default 1); each group holds its
    ``weight_decay`` and its ``lr_multiplier``. Unknown names, and factors that are not finite
    and positive, are refused."""
    multipliers = dict(lr_multipliers or {})
    names = {id(p): n for n, p in model.named_parameters()}
    unknown = sorted(set(multipliers) - set(names.values()))
    if unknown:
        raise ValueError(
            f"lr_multipliers names {unknown}, not parameters of the model "
            f"(it has {sorted(names.values())})"
        )
    for name, factor in multipliers.items():
        if (
            isinstance(factor, bool)
            or not isinstance(factor, (int, float))
            or not (math.isfinite(factor) and factor > 0)
        ):
            raise ValueError(f"lr_multipliers[{name!r}] must be a positive number, got {factor!r}")
    groups = []
    for params, decay in zip(decay_groups(model), (weight_decay, 0.0), strict=True):
        by_factor: dict[float, list[nn.Parameter]] = {}
        for p in params:
            by_factor.setdefault(float(multipliers.get(names[id(p)], 1.0)), []).append(p)
        if not by_factor:
            by_factor[1.0] = []
        for factor, members in by_factor.items():
            groups.append({"params": members, "weight_decay": decay, "lr_multiplier": factor})
    return groups


def optimizer_setting_out_of_range(
    lr: float, momentum: float, weight_decay: float
) -> tuple[str, float] | None:
    """The first of ``fit``'s optimiser settings outside its range (lr > 0, 0 <= momentum < 1,
    weight_decay >= 0, all finite) as (name, value), or None when all are in range."""
    for name, value, ok in (
        ("lr", lr, lr > 0),
        ("momentum", momentum, 0 <= momentum < 1),
        ("weight_decay", weight_decay, weight_decay >= 0),
    ):
        if not (math.isfinite(value) and ok):
            return name, value
    return None


def _check_fit_arguments(
    model, data, sampler, epochs, batch_size, lr, momentum, weight_decay, transformed=False
):
    """ValueError or TypeError naming the first argument of ``fit`` that cannot be right
    (``transformed``: the data go through a batch transform, so their blocks are not checked)."""
    for name, value in (("epochs", epochs), ("batch_size", batch_size)):
        if isinstance(value, bool) or not isinstance(value, int):
            raise ValueError(f"{name} must be an int, got {value!r}")
    if epochs < 0 or batch_size < 1:
        raise ValueError(f"need epochs >= 0 and batch_size >= 1, got {epochs} and {batch_size}")
    for name, value in (("lr", lr), ("momentum", momentum), ("weight_decay", weight_decay)):
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ValueError(f"{name} must be a number, got {value!r}")
    bad = optimizer_setting_out_of_range(lr, momentum, weight_decay)
    if bad is not None:
        raise ValueError(
            f"{bad[0]} = {bad[1]} is out of range (lr > 0, 0 <= momentum < 1, weight_decay >= 0)"
        )
    if isinstance(sampler, type):
        raise TypeError(
            f"sampler must be an instance, got the class {sampler.__name__}: "
            f"pass {sampler.__name__}(...), e.g. samplers.PCD(num_chains=100)"
        )
    if not callable(getattr(sampler, "negative", None)):
        raise TypeError(
            f"sampler must provide negative(model, data, generator) (e.g. samplers.PCD(...), "
            f"samplers.CD(k)), got {type(sampler).__name__}"
        )
    if isinstance(data, dict) and not transformed:
        unknown = [b for b in data if b not in model.units]
        if unknown:
            raise ValueError(f"data has unknown block(s) {unknown}; model blocks: {model.blocks}")
        hidden = [b for b in data if b in model.units and b not in model.visible]
        if hidden:
            raise ValueError(
                f"data given for hidden block(s) {hidden}: fit trains on the visible blocks "
                f"{model.visible} (mark a block visible=True in the Graph to train on it)"
            )
        missing = [b for b in model.visible if b not in data]
        if missing:
            raise ValueError(f"data lacks visible block(s) {missing}; give every visible block")


def fit(
    model: EnergyModel,
    data,
    sampler,
    epochs: int = 10,
    batch_size: int = 100,
    lr: float = 0.01,
    momentum: float = 0.0,
    weight_decay: float = 0.0,
    generator: torch.Generator | None = None,
    progress: bool = True,
    monitor: Callable[[int, EnergyModel], dict] | None = None,
    checkpoint: str | Path | None = None,
    lr_schedule: Callable[[int], float] | None = None,
    momentum_schedule: Callable[[int], float] | None = None,
    batch_transform: Callable[[dict, torch.Generator | None], object] | None = None,
    lr_multipliers: Mapping[str, float] | None = None,
) -> History:
    """Train ``model`` on ``data`` by minibatch SGD with momentum on the loss

        L = mean_batch F(v) - mean_negative F(v'),

    whose gradient is minus the (sampled) log-likelihood gradient. ``weight_decay`` is an L2 penalty
    on the weights (parameters with two or more dimensions), not on biases nor on a factor's
    ``no_weight_decay`` parameters (``decay_groups``). ``generator`` fixes
    the batch order and the sampler's draws, so a seed reproduces a run exactly. ``monitor(epoch,
    model)`` may return a dict of figures to record each epoch (e.g. an exact log-likelihood).
    Ctrl-C stops after the current batch; the model keeps what it learned and the history says so.
    ``checkpoint``: a file written after every epoch and on Ctrl-C (parameters, momentum, the
    sampler's persistent chains, the generator and the position within the epoch); calling ``fit``
    again with the same file resumes there and ends where an uninterrupted run would.
    ``lr_schedule(epoch)``: a factor on ``lr`` for each epoch (1-based), e.g.
    ``ebm.linear_decay(epochs)``; it depends on the epoch alone, so a resumed run follows it too.
    ``momentum_schedule(epoch)``: the momentum for each epoch (in [0, 1)), replacing ``momentum``,
    e.g. ``ebm.momentum_switch(0.5, 0.9, after=5)``.
    ``batch_transform(batch, generator)``: the training states drawn from each mini-batch of
    ``data`` before the positive phase (a dict of tensors, or a tensor for a model with one visible
    block), e.g. ``ebm.datasets.bernoulli_draw`` to binarise grey levels afresh every time an
    example is used. ``data`` is then any dict of equally long tensors (or one tensor, and the
    transform is given its rows as one tensor), and each
    transformed batch is checked like data. The draws come from ``generator``, so a checkpointed
    run resumes them exactly.
    ``lr_multipliers``: {parameter name (as ``model.named_parameters()`` gives it): factor} on
    ``lr`` for that parameter (default 1), e.g. ``{"factors.a.bias": 1 / D}`` for a hidden bias
    whose gradient carries the document length D, as the Replicated Softmax's published update
    divides it.
    """
    _check_fit_arguments(
        model,
        data,
        sampler,
        epochs,
        batch_size,
        lr,
        momentum,
        weight_decay,
        transformed=batch_transform is not None,
    )
    if momentum_schedule is not None and not callable(momentum_schedule):
        raise TypeError(f"momentum_schedule must be callable, got {momentum_schedule!r}")
    single_tensor = False
    if batch_transform is None:
        data = model.validate_data(data)
        n_data = next(iter(data.values())).shape[0]
    else:
        if not callable(batch_transform):
            raise TypeError(f"batch_transform must be callable, got {batch_transform!r}")
        single_tensor = torch.is_tensor(data)
        data, n_data = _raw_data(data, model.device)
    if n_data == 0:
        raise ValueError("no training data")
    summable = model.can_sum_out(model.hidden())
    if not summable and not hasattr(sampler, "positive"):
        raise ValueError(
            f"the hidden blocks {model.hidden()} cannot be summed out; the sampler must "
            f"provide positive(model, data_state, generator)"
        )
    optimizer = torch.optim.SGD(
        parameter_groups(model, weight_decay, lr_multipliers), lr=lr, momentum=momentum
    )
    for group in optimizer.param_groups:
        group["lr"] = lr * group["lr_multiplier"]
    device = model.device
    if checkpoint is not None and generator is None:
        generator = torch.Generator(device=device).manual_seed(int(torch.randint(2**62, (1,))))
    history = History()
    position = _Position()
    if checkpoint is not None and Path(checkpoint).exists():
        position = _load(checkpoint, model, optimizer, sampler, generator, history, n_data)
    bar = tqdm(
        range(position.epoch, epochs + 1),
        desc="fit",
        unit="epoch",
        disable=not progress,
        leave=False,
    )
    with _deferred_interrupt() as interrupt:
        try:
            for epoch in bar:
                if position.order is None:
                    position = _Position(
                        epoch=epoch,
                        order=torch.randperm(
                            n_data,
                            generator=generator,
                            device=device if generator is None else generator.device,
                        ).to(device),
                    )
                if lr_schedule is not None:
                    factor = float(lr_schedule(epoch))
                    if not factor >= 0:
                        raise ValueError(f"lr_schedule({epoch}) = {factor}; need a factor >= 0")
                    for group in optimizer.param_groups:
                        group["lr"] = lr * factor * group["lr_multiplier"]
                if momentum_schedule is not None:
                    value = float(momentum_schedule(epoch))
                    if not 0 <= value < 1:
                        raise ValueError(f"momentum_schedule({epoch}) = {value}; need [0, 1)")
                    for group in optimizer.param_groups:
                        group["momentum"] = value
                start = time.perf_counter()
                while position.index < n_data and not interrupt.requested:
                    idx = position.order[position.index : position.index + batch_size]
                    batch = {b: x[idx] for b, x in data.items()}
                    with torch.no_grad():
                        if batch_transform is not None:
                            raw = batch["data"] if single_tensor else batch
                            batch = model.validate_data(batch_transform(raw, generator))
                        neg = sampler.negative(model, batch, generator)
                        pos = batch if summable else sampler.positive(model, batch, generator)
                    if summable:
                        f_pos = model.free_energy(pos)
                        f_neg = model.free_energy({b: neg[b] for b in model.visible})
                    else:
                        f_pos, f_neg = model.energy(pos), model.energy(neg)
                    loss = f_pos.mean() - f_neg.mean()
                    optimizer.zero_grad(set_to_none=True)
                    loss.backward()
                    optimizer.step()
                    position.gaps.append(loss.item())
                    position.free.append(f_pos.mean().item())
                    position.index += batch_size
                if interrupt.requested:
                    raise KeyboardInterrupt
                record = {
                    "epoch": epoch,
                    "lr": optimizer.param_groups[0]["lr"],
                    "free_energy": sum(position.free) / len(position.free),
                    "free_energy_gap": sum(position.gaps) / len(position.gaps),
                    "seconds": position.seconds + time.perf_counter() - start,
                }
                if monitor is not None:
                    record.update(monitor(epoch, model) or {})
                history.records.append(record)
                position = _Position(epoch=epoch + 1)
                if checkpoint is not None:
                    _save(checkpoint, model, optimizer, sampler, generator, history, position)
                bar.set_postfix(
                    {
                        k: f"{v:.4g}"
                        for k, v in record.items()
                        if k not in ("epoch", "seconds", "lr") and isinstance(v, float)
                    }
                )
        except KeyboardInterrupt:
            history.interrupted = True
            where = f"epoch {position.epoch}, example {position.index} of {n_data}"
            if checkpoint is not None:
                _save(checkpoint, model, optimizer, sampler, generator, history, position)
                where += f"; saved to {checkpoint}: call fit again with the same file to resume"
            warnings.warn(
                f"training interrupted at {where}; the model keeps its current parameters",
                stacklevel=2,
            )
        finally:
            bar.close()
    return history


def _raw_data(data, device) -> tuple[dict, int]:
    """Data that a batch transform will turn into states: a dict of tensors (or one tensor, kept
    under the key ``"data"``) with one common first dimension, moved to ``device``."""
    if torch.is_tensor(data):
        data = {"data": data}
    if not isinstance(data, dict) or not data or not all(torch.is_tensor(x) for x in data.values()):
        raise ValueError("with a batch_transform, data must be a tensor or a dict of tensors")
    lengths = {b: x.shape[0] if x.dim() else None for b, x in data.items()}
    if len(set(lengths.values())) != 1 or None in lengths.values():
        raise ValueError(f"data tensors need one common first dimension, got {lengths}")
    return {b: x.to(device) for b, x in data.items()}, next(iter(lengths.values()))


@dataclass
class _Position:
    """Where a run is: the epoch, its example order, how far through it, and the epoch's sums."""

    epoch: int = 1
    order: torch.Tensor | None = None
    index: int = 0
    gaps: list[float] = field(default_factory=list)
    free: list[float] = field(default_factory=list)
    seconds: float = 0.0


class _Interrupt:
    requested = False


@contextmanager
def _deferred_interrupt():
    """Turn Ctrl-C into a flag that the loop checks after each batch, so that a run always stops
    in a consistent state (only possible in the main thread; elsewhere Ctrl-C raises as usual)."""
    flag = _Interrupt()
    if threading.current_thread() is not threading.main_thread():
        yield flag
        return

    def handler(signum, frame):
        if flag.requested:  # a second Ctrl-C: stop at once
            raise KeyboardInterrupt
        flag.requested = True

    previous = signal.signal(signal.SIGINT, handler)
    try:
        yield flag
    finally:
        signal.signal(signal.SIGINT, previous)


def _save(path, model, optimizer, sampler, generator, history, position: _Position) -> None:
    tensors = {f"model.{k}": v for k, v in model.state_dict().items()}
    tensors.update(optimizer_tensors(optimizer))
    if hasattr(sampler, "state_dict"):
        tensors.update({f"sampler.{k}": v for k, v in sampler.state_dict().items()})
    tensors["rng"] = generator.get_state()
    if position.order is not None:
        tensors["order"] = position.order
    meta = {
        "kind": "fit",
        "epoch": position.epoch,
        "index": position.index,
        "gaps": position.gaps,
        "free": position.free,
        "records": history.records,
        "spec": json.dumps(model.spec()),
        "param_groups": _group_layout(optimizer),
    }
    save_checkpoint(path, tensors, meta)


def _group_layout(optimizer) -> list[list[float]]:
    """[number of parameters, lr multiplier] of each parameter group: momentum is saved by
    parameter index, which depends on it."""
    return [[len(g["params"]), g["lr_multiplier"]] for g in optimizer.param_groups]


def _load(path, model, optimizer, sampler, generator, history, n_data) -> _Position:
    tensors, meta = load_checkpoint(path)
    if meta.get("kind") != "fit" or meta.get("spec") != json.dumps(model.spec()):
        raise ValueError(
            f"{path} is not a training checkpoint of this model; delete it or pass another file"
        )
    if "order" in tensors and tensors["order"].numel() != n_data:
        raise ValueError(
            f"{path} was made with {tensors['order'].numel()} training examples, not {n_data}"
        )
    layout = _group_layout(optimizer)
    saved = meta.get("param_groups")  # absent before lr_multipliers: every multiplier was 1
    if (saved is None and any(m != 1.0 for _, m in layout)) or (
        saved is not None and saved != layout
    ):
        raise ValueError(
            f"{path} was made with other lr_multipliers (parameter groups {saved or 'all at 1'},"
            f" now {layout}); resume with the ones it was made with"
        )
    model.load_state_dict({k[6:]: v for k, v in tensors.items() if k.startswith("model.")})
    load_optimizer_tensors(optimizer, tensors)
    if hasattr(sampler, "load_state_dict"):
        sampler.load_state_dict(
            {k[8:]: v for k, v in tensors.items() if k.startswith("sampler.")}, model
        )
    generator.set_state(tensors["rng"])
    history.records = list(meta["records"])
    order = tensors.get("order")
    return _Position(
        epoch=meta["epoch"],
        order=None if order is None else order.to(model.device),
        index=meta["index"],
        gaps=list(meta["gaps"]),
        free=list(meta["free"]),
    )
