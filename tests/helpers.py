"""Shared test helpers: an independent brute-force enumerator and small random models."""

from __future__ import annotations

import itertools

import torch

import ebm


def support(units) -> torch.Tensor:
    """Every configuration of a discrete block, built with itertools (independent of the units'
    own enumeration code)."""
    name = type(units).__name__
    if name == "Bernoulli":
        rows = list(itertools.product([0.0, 1.0], repeat=units.n))
    elif name == "Spin":
        rows = list(itertools.product([-1.0, 1.0], repeat=units.n))
    elif name == "Categorical":
        eye = torch.eye(units.k).tolist()
        rows = [list(c) for c in itertools.product(eye, repeat=units.n)]
    else:
        raise ValueError(f"cannot enumerate {name}")
    return torch.tensor(rows, dtype=torch.float64)


def joint_states(model, blocks=None) -> dict:
    """The Cartesian product of the supports of ``blocks`` (default: all) as one batched state."""
    blocks = model.blocks if blocks is None else blocks
    sups = [support(model.units[b]) for b in blocks]
    idx = list(itertools.product(*[range(len(s)) for s in sups]))
    idx = torch.tensor(idx, dtype=torch.long).reshape(len(idx), len(blocks))
    return {b: sups[i][idx[:, i]] for i, b in enumerate(blocks)}


def brute_log_z(model) -> float:
    """log Z by summing exp(-E) over every joint state (float64)."""
    m = model.double()
    with torch.no_grad():
        e = m.energy(joint_states(m))
    return float(torch.logsumexp(-e, 0))


def random_rbm(n_visible, n_hidden, scale, seed, bias_scale=1.0):
    g = torch.Generator().manual_seed(seed)
    return ebm.models.rbm(
        n_visible,
        n_hidden,
        weight=scale * torch.randn(n_visible, n_hidden, generator=g),
        visible_bias=bias_scale * torch.randn(n_visible, generator=g),
        hidden_bias=bias_scale * torch.randn(n_hidden, generator=g),
    )
