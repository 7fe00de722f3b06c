"""The 2D Ising model through its critical point: magnetisation and specific heat against beta,
sampled by parallel tempering on a unit-level graph, next to Onsager's exact results.

The model is ``ebm.models.ising`` on an L x L torus (networkx's periodic grid), energy
E(s) = -beta_max sum_<ij> s_i s_j. Parallel tempering's ladder 0 = b_0 < ... < b_R-1 = 1 then holds
the physical inverse temperatures beta = b beta_max, evenly spaced, and every replica row
samples the Ising model at its own beta; the ladder is kept as given (no tuning), so the rows
stay at those temperatures. Per beta: <|m|> (the mean spin's absolute value) and the specific
heat per spin c = beta^2 Var(H) / N with H = -sum_<ij> s_i s_j. Onsager: beta_c = ln(1 + sqrt 2)/2
= 0.4407 and, above it, the infinite lattice's m = (1 - sinh(2 beta)^-4)^(1/8); the finite
lattice's c peaks near beta_c (its height grows like ln L).

    python examples/ising_critical.py            # 32 x 32, about a minute on 2 CPU cores
    python examples/ising_critical.py --quick    # 8 x 8, seconds
"""

from __future__ import annotations

import argparse
import math
from pathlib import Path

import networkx as nx
import numpy as np
import torch
from tqdm.auto import tqdm

import ebm
import samplers

BETA_C = math.log(1 + math.sqrt(2)) / 2


def onsager_magnetisation(beta: np.ndarray) -> np.ndarray:
    """The infinite lattice's spontaneous magnetisation: 0 below beta_c."""
    with np.errstate(divide="ignore", invalid="ignore"):
        m = (1 - np.sinh(2 * beta) ** -4.0) ** 0.125
    return np.where(beta > BETA_C, m, 0.0)


def sample(side: int, betas: np.ndarray, chains: int, warmup: int, steps: int, seed: int):
    """(<|m|>, c, their standard errors over chains, the swap rates) per beta in ``betas``."""
    beta_max = float(betas[-1])
    model = ebm.models.ising(nx.grid_2d_graph(side, side, periodic=True), coupling=beta_max)
    n = side * side
    pt = samplers.ParallelTempering(
        model, betas=betas / beta_max, tune_rounds=0, generator=torch.Generator().manual_seed(seed)
    )
    state = pt.init(chains)
    r = len(betas)
    abs_m = torch.zeros(r, chains, dtype=torch.float64)
    h_sum = torch.zeros(r, chains, dtype=torch.float64)
    h_sq = torch.zeros(r, chains, dtype=torch.float64)
    for step in tqdm(range(warmup + steps), desc=f"PT {side}x{side}", unit="step"):
        state, _ = pt.step(state)
        if step < warmup:
            continue
        s = state["s"].double().reshape(r, chains, n)
        with torch.no_grad():
            h = model.energy(state).double().reshape(r, chains) / beta_max
        abs_m += s.mean(-1).abs()
        h_sum += h
        h_sq += h**2
        if step == warmup:
            pt.reset_statistics()
    abs_m, h_mean, h2_mean = abs_m / steps, h_sum / steps, h_sq / steps
    beta = torch.as_tensor(betas).reshape(-1, 1)
    heat = beta**2 * (h2_mean - h_mean**2) / n  # per chain: its own time average
    m_err = abs_m.std(1) / math.sqrt(chains)
    c_err = heat.std(1) / math.sqrt(chains)
    return abs_m.mean(1).numpy(), heat.mean(1).numpy(), m_err.numpy(), c_err.numpy(), pt


def plot(path: Path, betas, m, c, m_err, c_err, side: int) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (ax_m, ax_c) = plt.subplots(1, 2, figsize=(10, 3.8))
    fine = np.linspace(betas[0], betas[-1], 400)
    ax_m.errorbar(betas, m, m_err, fmt="o", ms=3, label=f"PT, {side} x {side} torus")
    ax_m.plot(fine, onsager_magnetisation(fine), "k-", lw=1, label="Onsager (infinite lattice)")
    ax_c.errorbar(betas, c, c_err, fmt="o", ms=3, color="C1")
    for ax in (ax_m, ax_c):
        ax.axvline(BETA_C, color="grey", ls="--", lw=1)
        ax.set_xlabel("beta")
    ax_m.set_ylabel("<|m|>")
    ax_c.set_ylabel("specific heat per spin")
    ax_m.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="a small lattice, few steps (CI)")
    parser.add_argument("--out", type=Path, default=Path("runs/ising_critical"))
    args = parser.parse_args()
    side, temps, chains, warmup, steps = (
        (8, 10, 16, 100, 200) if args.quick else (32, 33, 32, 1000, 3000)
    )
    betas = np.linspace(0.0, 0.64, temps)
    m, c, m_err, c_err, pt = sample(side, betas, chains, warmup, steps, seed=0)
    args.out.mkdir(parents=True, exist_ok=True)
    print(f"{'beta':>6} {'<|m|>':>14} {'Onsager m':>10} {'c':>14}")
    exact = onsager_magnetisation(betas)
    for b, mi, me, ex, ci, ce in zip(betas, m, m_err, exact, c, c_err, strict=True):
        print(f"{b:6.3f} {mi:7.4f} ± {me:.4f} {ex:10.4f} {ci:7.4f} ± {ce:.4f}")
    peak = float(betas[int(np.argmax(c))])
    print(
        f"specific heat peaks at beta = {peak:.3f} (beta_c = {BETA_C:.4f}); "
        f"swap rates {np.round(pt.swap_rates, 2).tolist()}"
    )
    figure = args.out / "ising_critical.png"
    plot(figure, betas, m, c, m_err, c_err, side)
    print(f"figure: {figure}")


if __name__ == "__main__":
    main()
