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

import time
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field

import torch
from tqdm.auto import tqdm

from ebm.model import EnergyModel

__all__ = ["fit", "History"]


@dataclass
class History:
    """Per-epoch records of a training run (``records[i]`` is a dict for epoch i + 1)."""

    records: list[dict] = field(default_factory=list)
    interrupted: bool = False

    def __getitem__(self, key: str) -> list:
        return [r[key] for r in self.records if key in r]

    def __len__(self) -> int:
        return len(self.records)


def _summable(model: EnergyModel) -> bool:
    try:
        model.summable(model.hidden())
    except ValueError:
        return False
    return True


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
) -> History:
    """Train ``model`` on ``data`` by minibatch SGD with momentum on the loss

        L = mean_batch F(v) - mean_negative F(v'),

    whose gradient is minus the (sampled) log-likelihood gradient. ``weight_decay`` is an L2 penalty
    on the weights (parameters with two or more dimensions), not on biases. ``generator`` fixes
    the batch order and the sampler's draws, so a seed reproduces a run exactly. ``monitor(epoch,
    model)`` may return a dict of figures to record each epoch (e.g. an exact log-likelihood).
    Ctrl-C stops after the current batch; the model keeps what it learned and the history says so.
    """
    if epochs < 0 or batch_size < 1 or lr <= 0:
        raise ValueError("need epochs >= 0, batch_size >= 1 and lr > 0")
    data = model.validate_data(data)
    n_data = next(iter(data.values())).shape[0]
    if n_data == 0:
        raise ValueError("no training data")
    summable = _summable(model)
    if not summable and not hasattr(sampler, "positive"):
        raise ValueError(
            f"the hidden blocks {model.hidden()} cannot be summed out; the sampler must "
            f"provide positive(model, data_state, generator)"
        )
    weights = [p for p in model.parameters() if p.requires_grad and p.dim() >= 2]
    others = [p for p in model.parameters() if p.requires_grad and p.dim() < 2]
    optimizer = torch.optim.SGD(
        [
            {"params": weights, "weight_decay": weight_decay},
            {"params": others, "weight_decay": 0.0},
        ],
        lr=lr,
        momentum=momentum,
    )
    device = model.device
    history = History()
    bar = tqdm(range(1, epochs + 1), desc="fit", unit="epoch", disable=not progress, leave=False)
    try:
        for epoch in bar:
            start = time.perf_counter()
            order = torch.randperm(
                n_data,
                generator=generator,
                device=device if generator is None else generator.device,
            ).to(device)
            gaps, free = [], []
            for i in range(0, n_data, batch_size):
                idx = order[i : i + batch_size]
                batch = {b: x[idx] for b, x in data.items()}
                with torch.no_grad():
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
                gaps.append(loss.item())
                free.append(f_pos.mean().item())
            record = {
                "epoch": epoch,
                "free_energy": sum(free) / len(free),
                "free_energy_gap": sum(gaps) / len(gaps),
                "seconds": time.perf_counter() - start,
            }
            if monitor is not None:
                record.update(monitor(epoch, model) or {})
            history.records.append(record)
            bar.set_postfix(
                {
                    k: f"{v:.4g}"
                    for k, v in record.items()
                    if k not in ("epoch", "seconds") and isinstance(v, float)
                }
            )
    except KeyboardInterrupt:
        history.interrupted = True
        warnings.warn(
            f"training interrupted after {len(history)} complete epoch(s); the model keeps "
            f"its current parameters",
            stacklevel=2,
        )
    finally:
        bar.close()
    return history
