"""Shared test helpers: an independent brute-force enumerator and small random models."""

from __future__ import annotations

import copy
import functools
import itertools

import torch

import ebm
import estimators
import samplers


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
    m = copy.deepcopy(model).double()  # leave the caller's model as it is
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


@functools.cache
def trained_bars_rbm():
    """An RBM trained on 3x3 bars and stripes: enumerable, multimodal, not random."""
    data = ebm.datasets.bars_and_stripes(3)
    torch.manual_seed(0)
    model = ebm.models.rbm(9, 8, init_scale=0.1)
    ebm.fit(
        model,
        data.repeat(10, 1),
        samplers.PCD(num_chains=100),
        epochs=60,
        batch_size=14,
        lr=0.1,
        momentum=0.5,
        generator=torch.Generator().manual_seed(0),
        progress=False,
    )
    exact = estimators.log_likelihood(model, data, estimators.exact_log_z(model)).value
    return model, data, exact


def randomize(model, scale: float, seed: int):
    """Set every parameter of ``model`` to N(0, scale^2) draws (fixed seed); returns the model."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in model.parameters():
            p.copy_(scale * torch.randn(p.shape, generator=g))
    return model


def total_variation(counts_or_probs: torch.Tensor, p: torch.Tensor) -> float:
    """Total variation between an empirical distribution (normalised here) and p."""
    q = counts_or_probs.double() / counts_or_probs.sum()
    return 0.5 * float((q - p).abs().sum())


def noise_floor(p: torch.Tensor, n: int, replicates: int = 200, seed: int = 123) -> float:
    """The largest total variation to p among ``replicates`` sets of n exact draws from p: what a
    perfect sampler's histogram of n draws can show."""
    g = torch.Generator().manual_seed(seed)
    return max(
        total_variation(
            torch.bincount(
                torch.multinomial(p, n, replacement=True, generator=g), minlength=len(p)
            ),
            p,
        )
        for _ in range(replicates)
    )


def strip_glass(rows, cols, scale, seed):
    """Couplings (horizontal (rows, cols - 1), vertical (rows - 1, cols)) of a Gaussian spin glass
    on an open rows x cols grid, N(0, scale^2), float64."""
    g = torch.Generator().manual_seed(seed)
    horizontal = scale * torch.randn(rows, cols - 1, generator=g, dtype=torch.float64)
    vertical = scale * torch.randn(rows - 1, cols, generator=g, dtype=torch.float64)
    return horizontal, vertical


def transfer_matrix_log_z(horizontal, vertical, field=None) -> float:
    """Exact log Z of the Ising model E = -sum H s s' (along rows) - sum V s s' (down columns)
    - sum h s on an open grid of spins in {-1, +1}, by a transfer matrix over its columns
    (2^rows states each, in log space, float64): independent of the model code."""
    rows = vertical.shape[0] + 1
    cols = horizontal.shape[1] + 1
    field = torch.zeros(rows, cols, dtype=torch.float64) if field is None else field
    spins = torch.tensor(list(itertools.product([-1.0, 1.0], repeat=rows)), dtype=torch.float64)

    def within(c):  # -E of the couplings and fields inside column c, per column state
        return (spins[:, :-1] * spins[:, 1:]) @ vertical[:, c] + spins @ field[:, c]

    alpha = within(0)
    for c in range(1, cols):
        between = (spins * horizontal[:, c - 1]) @ spins.T  # (previous state, next state)
        alpha = torch.logsumexp(alpha[:, None] + between, 0) + within(c)
    return float(torch.logsumexp(alpha, 0))
