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

from collections.abc import Callable
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
    epochs: int = 10,
    generator: torch.Generator | None = None,
    progress: bool = True,
    checkpoint: str | Path | None = None,
    visible_bias: str = "base_rate",
    **fit_options,
) -> list[History]:
    """Pretrain the DBM ``model`` (``ebm.models.dbm``) greedily and copy the weights into it.

    Layer l's RBM is ``layer_rbm(n_{l-1}, n_l, copies)`` with two copies of the input for the
    bottom RBM and two of the hidden layer for the top one (none for a one-layer DBM, which is an
    RBM), trained by ``fit(rbm, x_{l-1}, sampler(), epochs, ...)`` (``sampler`` makes a fresh
    negative-phase sampler per layer, e.g. ``lambda: samplers.CD(1)``; ``fit_options`` go to
    ``fit``). x_0 is the data and x_l a binary sample of p(h_l | x_{l-1}) under RBM l. The DBM
    gets W_l (halved for the middle layers), the visible bias of RBM 1 and the hidden bias of RBM l
    for h_l. Returns the training histories, bottom first.

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
    names = dbm_layers(model)
    sizes = [model.units[b].n for b in names]
    depth = len(sizes) - 1
    x = model.validate_data(data)["v"]
    histories = []
    rbms = []
    for level in range(1, depth + 1):
        below = 2 if level == 1 and depth > 1 else 1
        above = 2 if level == depth and depth > 1 else 1
        rbm = layer_rbm(sizes[level - 1], sizes[level], below, above).to(
            device=model.device, dtype=model.dtype
        )
        inputs = {"below": x.repeat(1, below)}
        if level == 1 and visible_bias == "base_rate":
            rates = base_rate(model, {"v": x}).natural["v"]
            with torch.no_grad():
                rbm.factors["bias_below"].bias.copy_(rates)
        history = fit(
            rbm,
            inputs,
            sampler(),
            epochs=epochs,
            generator=generator,
            progress=progress,
            checkpoint=None if checkpoint is None else f"{checkpoint}.layer{level}",
            **fit_options,
        )
        histories.append(history)
        if history.interrupted:
            return histories
        rbms.append(rbm)
        if level < depth:
            with torch.no_grad():
                x = rbm.sample_block("above", rbm.with_placeholders(inputs, ["above"]), generator)
    with torch.no_grad():
        for level, rbm in enumerate(rbms, start=1):
            w = rbm.factors["weights"].weight
            halve = 1 < level < depth
            model.factors[f"w{level}"].weight.copy_(0.5 * w if halve else w)
            model.factors[f"bias_{names[level]}"].bias.copy_(rbm.factors["bias_above"].bias)
        model.factors["bias_v"].bias.copy_(rbms[0].factors["bias_below"].bias)
    return histories
