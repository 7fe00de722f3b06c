"""Greedy layer-wise pretraining of deep Boltzmann machines (Salakhutdinov & Hinton 2009, 2012).

A DBM's hidden layer l receives input from both neighbours, but an RBM trained on its own sees
only one. The stack of RBMs therefore compensates: the bottom RBM (v, h1) sees its input twice
(p(h1 | v) = sigma(2 W1^T v + c1), standing in for the missing top-down half), the top RBM
(h_{L-1}, h_L) has its hidden layer twice (p(h_{L-1} | h_L) = sigma(2 W_L h_L + b), standing in for
the missing bottom-up half), and the RBMs in between are ordinary and have their weights halved when
composed. Each RBM is built on the Graph API with ``TiedDense``/``TiedBias`` factors over blocks
that hold the copies, and trained by ``ebm.fit``; its data are binary samples of the layer below
from the RBM underneath it (with its doubled input).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path

import torch

from ebm.base import base_rate
from ebm.factors import Dense
from ebm.factors.tied import TiedBias, TiedDense
from ebm.graph import Graph
from ebm.model import EnergyModel
from ebm.training import History, fit
from ebm.units import Bernoulli

__all__ = ["pretrain_dbm", "layer_rbm", "dbm_layers"]


def dbm_layers(model: EnergyModel) -> list[str]:
    """The blocks of a DBM from the bottom (``v``, ``h1``, ...), checked to form a chain of Dense
    factors named ``w1``, ``w2``, ... as ``ebm.models.dbm`` builds them."""
    names = ["v"] + [f"h{i}" for i in range(1, len(model.blocks))]
    if model.blocks != names:
        raise ValueError(f"expected a DBM with blocks {names}, got {model.blocks}")
    for i in range(1, len(names)):
        f = model.factors[f"w{i}"] if f"w{i}" in model.factors else None
        if not isinstance(f, Dense) or f.blocks != (names[i - 1], names[i]):
            raise ValueError(
                f"expected a Dense factor 'w{i}' between {names[i - 1]!r} and {names[i]!r}"
            )
    return names


def layer_rbm(
    n_below: int, n_above: int, copies_below: int = 1, copies_above: int = 1, init_scale=0.01
) -> EnergyModel:
    """The RBM that pretrains one DBM weight matrix: visible block ``below`` (``copies_below``
    copies of n_below units) and hidden block ``above`` (``copies_above`` copies of n_above),
    coupled by one shared W (n_below, n_above) (factor ``weights``) with shared biases
    (``bias_below``, ``bias_above``)."""
    g = Graph()
    g.add_block("below", Bernoulli(n_below * copies_below), visible=True)
    g.add_block("above", Bernoulli(n_above * copies_above))
    g.add_factor(
        TiedDense(
            "below", "above", copies_below, copies_above, init_scale=init_scale, name="weights"
        ),
        TiedBias("below", copies_below, name="bias_below"),
        TiedBias("above", copies_above, name="bias_above"),
    )
    return EnergyModel(g)


def pretrain_dbm(
    model: EnergyModel,
    data,
    sampler: Callable[[], object],
    epochs: int | Sequence[int] = 10,
    generator: torch.Generator | None = None,
    progress: bool = True,
    checkpoint: str | Path | None = None,
    visible_bias: str = "base_rate",
    hidden_bias: str = "lower",
    fresh_draws: bool = False,
    **fit_options,
) -> list[History]:
    """Pretrain the DBM ``model`` (``ebm.models.dbm``) greedily and copy the weights into it.

    Layer l's RBM is ``layer_rbm(n_{l-1}, n_l, copies)`` with two copies of the input for the
    bottom RBM and two of the hidden layer for the top one (none for a one-layer DBM, which is an
    RBM), trained by ``fit(rbm, x_{l-1}, sampler(), epochs_l, ...)`` (``sampler`` makes a fresh
    negative-phase sampler per layer: ``lambda: samplers.CD(1)`` draws each copy on its own,
    ``lambda: samplers.SharedCopiesCD(1)`` one sample for all copies, as the published code does;
    ``fit_options`` go to ``fit``). ``epochs``: one count for every layer, or one per layer (the
    published 100 and 200). x_0 is the data and x_l a binary sample of p(h_l | x_{l-1}) under
    RBM l. The DBM gets W_l (halved for the middle layers), the visible bias of RBM 1 and, for
    h_l, with ``hidden_bias="lower"`` the hidden bias of RBM l, with ``"average"`` the mean of
    RBM l's hidden bias and RBM l+1's visible bias (the top layer keeps RBM L's): each RBM's
    doubled conditional sigma(2 W^T x + c) stands for the DBM's two inputs, so its bias counts
    for both, and the published code (hidden bias c + b' of the halved biases) averages the two
    estimates. Returns the training histories, bottom first.

    ``fresh_draws``: ``data`` may be grey levels in [0, 1]; the bottom RBM trains on draws
    Bernoulli(x) made anew for every mini-batch and RBM l + 1 on draws of p(h_l | x_{l-1}) made
    anew for every mini-batch, with x_0 the data as given (grey levels), as the published code
    does, instead of one binary sample per layer drawn before its training.

    ``checkpoint``: a path prefix; layer l's ``fit`` checkpoints to ``{checkpoint}.layer{l}``, so an
    interrupted run called again with the same prefix resumes in the layer it stopped in (finished
    layers are replayed from their checkpoints, generator state included, at no training cost).
    An interrupted layer stops the pretraining (the returned history says so).

    ``visible_bias``: ``"base_rate"`` (default) starts the bottom RBM's visible bias at the
    logits of the smoothed data marginals (``ebm.base_rate``), so that the weights need not first
    learn that most pixels are off; ``"zero"`` starts it at zero.
    """
    if visible_bias not in ("base_rate", "zero"):
        raise ValueError(f"visible_bias must be 'base_rate' or 'zero', got {visible_bias!r}")
    if hidden_bias not in ("lower", "average"):
        raise ValueError(f"hidden_bias must be 'lower' or 'average', got {hidden_bias!r}")
    names = dbm_layers(model)
    sizes = [model.units[b].n for b in names]
    depth = len(sizes) - 1
    per_layer = _epochs_per_layer(epochs, depth)
    x = _pretraining_data(model, data, fresh_draws)
    histories = []
    rbms = []
    for level in range(1, depth + 1):
        below = 2 if level == 1 and depth > 1 else 1
        above = 2 if level == depth and depth > 1 else 1
        rbm = layer_rbm(sizes[level - 1], sizes[level], below, above).to(
            device=model.device, dtype=model.dtype
        )
        if level == 1 and visible_bias == "base_rate":
            binary = torch.bernoulli(x, generator=generator) if fresh_draws else x
            rates = base_rate(model, {"v": binary}).natural["v"]
            with torch.no_grad():
                rbm.factors["bias_below"].bias.copy_(rates)
        transform = _fresh_draws(list(rbms), below) if fresh_draws else None
        history = fit(
            rbm,
            x if fresh_draws else {"below": x.repeat(1, below)},
            sampler(),
            epochs=per_layer[level - 1],
            generator=generator,
            progress=progress,
            checkpoint=None if checkpoint is None else f"{checkpoint}.layer{level}",
            batch_transform=transform,
            **fit_options,
        )
        histories.append(history)
        if history.interrupted:
            return histories
        rbms.append(rbm)
        if level < depth and not fresh_draws:
            with torch.no_grad():
                x = _draw_above(rbm, x, generator)
    _compose(model, names, rbms, hidden_bias)
    return histories


def _epochs_per_layer(epochs, depth: int) -> list[int]:
    if isinstance(epochs, int) and not isinstance(epochs, bool):
        return [epochs] * depth
    counts = list(epochs)
    if len(counts) != depth or not all(
        isinstance(e, int) and not isinstance(e, bool) for e in counts
    ):
        raise ValueError(f"epochs must be an int or {depth} ints (one per layer), got {epochs!r}")
    return counts


def _pretraining_data(model: EnergyModel, data, grey: bool) -> torch.Tensor:
    """The data as a tensor over v: binary (checked like data), or with ``grey`` probabilities in
    [0, 1] (checked as such)."""
    if not grey:
        return model.validate_data(data)["v"]
    x = data["v"] if isinstance(data, dict) else data
    if not torch.is_tensor(x) or x.dim() != 2 or x.shape[1] != model.units["v"].n:
        raise ValueError(f"data must be a (N, {model.units['v'].n}) tensor of grey levels")
    if not bool(((x >= 0) & (x <= 1)).all()):
        raise ValueError("with fresh_draws the data are probabilities: values in [0, 1]")
    return x.to(device=model.device, dtype=model.dtype)


def _draw_above(rbm: EnergyModel, x: torch.Tensor, generator) -> torch.Tensor:
    """One draw of the hidden layer of a layer RBM (not the top one, whose hidden layer has
    copies) given x in every input copy."""
    copies = rbm.units["below"].n // x.shape[1]
    state = rbm.with_placeholders({"below": x.repeat(1, copies)}, ["above"])
    return rbm.sample_block("above", state, generator)


def _fresh_draws(trained: list[EnergyModel], copies: int):
    """The batch transform of layer len(trained) + 1: grey data drawn to binary for the bottom
    RBM; for a higher one, draws of p(h_l | x_{l-1}) through the trained RBMs (x_0 grey)."""

    def transform(batch: torch.Tensor, generator) -> dict:
        x = batch
        if not trained:
            x = torch.bernoulli(x, generator=generator)
        for rbm in trained:
            x = _draw_above(rbm, x, generator)
        return {"below": x.repeat(1, copies)}

    return transform


def _compose(model: EnergyModel, names: list[str], rbms: list[EnergyModel], hidden_bias: str):
    """Copy the layer RBMs' weights and biases into the DBM (see ``pretrain_dbm``)."""
    depth = len(rbms)
    with torch.no_grad():
        for level, rbm in enumerate(rbms, start=1):
            w = rbm.factors["weights"].weight
            halve = 1 < level < depth
            model.factors[f"w{level}"].weight.copy_(0.5 * w if halve else w)
            bias = rbm.factors["bias_above"].bias
            if hidden_bias == "average" and level < depth:
                bias = 0.5 * (bias + rbms[level].factors["bias_below"].bias)
            model.factors[f"bias_{names[level]}"].bias.copy_(bias)
        model.factors["bias_v"].bias.copy_(rbms[0].factors["bias_below"].bias)
