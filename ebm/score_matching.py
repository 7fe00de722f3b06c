"""Score matching (Hyvarinen 2005): training continuous energy models without sampling and
without log Z, and greedy maximum-likelihood learning of under-complete products of experts."""

from __future__ import annotations

import torch
from torch import Tensor
from tqdm.auto import tqdm

from ebm.model import EnergyModel
from ebm.models import upoe, upoe_log_z

__all__ = ["score_matching_loss", "fit_score_matching", "fit_upoe_greedily"]


def score_matching_loss(model: EnergyModel, x: Tensor, block: str | None = None) -> Tensor:
    """Hyvarinen's objective for p(x) proportional to exp(-F(x)) on a batch of data x,

        J = mean over the batch of sum_i [ (dF/dx_i)^2 / 2 - d^2F/dx_i^2 ],

    which equals E_data |grad log p - grad log p_data|^2 / 2 up to a constant that does not depend
    on the model, so minimising it needs neither samples nor log Z. F is the free energy of the
    visible block ``block`` (default: the only visible one) with the other blocks summed out; the
    Laplacian is exact (one extra backward pass per dimension, with the graph kept so that J can be
    differentiated in the parameters).
    """
    block = block or model.visible[0]
    if model.units[block].discrete:
        raise ValueError(f"score matching needs a continuous block; {block!r} is discrete")
    x = x.detach().requires_grad_(True)
    free = model.free_energy({block: x}).sum()
    (grad,) = torch.autograd.grad(free, x, create_graph=True)
    flat = grad.flatten(1)
    laplacian = x.new_zeros(x.shape[0])
    for i in range(flat.shape[1]):
        (second,) = torch.autograd.grad(flat[:, i].sum(), x, create_graph=True)
        laplacian = laplacian + second.flatten(1)[:, i]
    return (0.5 * (flat**2).sum(1) - laplacian).mean()


def fit_score_matching(
    model: EnergyModel,
    data: Tensor,
    epochs: int = 10,
    batch_size: int = 100,
    lr: float = 0.01,
    generator: torch.Generator | None = None,
    progress: bool = True,
) -> list[float]:
    """Minimise ``score_matching_loss`` by Adam over shuffled minibatches; returns the mean loss of
    each epoch. The estimator is consistent (its minimiser is the maximum-likelihood one when the
    model family holds the data distribution) and needs F to be twice differentiable in x."""
    (block,) = model.visible
    x = model.validate_data(data)[block]
    optimizer = torch.optim.Adam([p for p in model.parameters() if p.requires_grad], lr=lr)
    losses = []
    for _ in tqdm(range(epochs), desc="score matching", disable=not progress, leave=False):
        order = torch.randperm(len(x), generator=generator)
        total = 0.0
        for lo in range(0, len(x), batch_size):
            loss = score_matching_loss(model, x[order[lo : lo + batch_size]], block)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            total += float(loss.detach()) * len(order[lo : lo + batch_size])
        losses.append(total / len(x))
    return losses


def fit_upoe_greedily(
    data: Tensor,
    n_experts: int,
    steps: int = 200,
    lr: float = 0.05,
    df: float = 5.0,
    progress: bool = True,
) -> tuple[EnergyModel, list[float]]:
    """Learn an under-complete product of Student-t experts one expert at a time (Welling, Zemel &
    Hinton 2003), by exact maximum likelihood: its log Z is known, so the log-likelihood is
    -mean F(x) - (D - J) log(2 pi) / 2 and its gradient needs no samples. Stage j starts from the
    j - 1 experts learned so far (their directions, degrees of freedom and scales) plus a new
    direction orthogonal to them, and trains all of them for ``steps`` Adam steps on the full data.
    Returns the final model and the training log-likelihood (per example) after each stage."""
    data = torch.as_tensor(data)
    dim = data.shape[1]
    previous, history = None, []
    for j in tqdm(range(1, n_experts + 1), desc="experts", disable=not progress, leave=False):
        model = upoe(dim, j, df=df).to(data.dtype)
        factor = model.factors["experts"]
        if previous is not None:
            with torch.no_grad():
                old = previous.projection
                fresh = torch.randn(1, dim, dtype=data.dtype)
                fresh = fresh - (fresh @ old.T) @ old
                factor.projection = torch.cat([old, fresh / fresh.norm()])
                factor.log_df[:-1] = previous.log_df
                factor.log_scale[:-1] = previous.log_scale
        optimizer = torch.optim.Adam(model.parameters(), lr=lr)
        for _ in range(steps):
            loss = model.free_energy({"x": data}).mean()
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
        with torch.no_grad():
            history.append(float(-model.free_energy({"x": data}).mean()) - upoe_log_z(model))
        previous = factor
    return model, history
