"""Declare an energy model with a factor of your own, train it, and check its likelihood exactly.

The custom factor implements only its energy, E = -a^T M b; block Gibbs gets its conditionals from
autograd. The model is trained with PCD on 3x3 bars and stripes (14 patterns, best possible mean
log-likelihood -log 14 = -2.639), and evaluated exactly and by AIS.

    python examples/custom_factor.py            # about 10 s on 2 CPU cores
    python examples/custom_factor.py --quick    # a few seconds
"""

from __future__ import annotations

import argparse
import math
from pathlib import Path

import torch

import ebm
import estimators
import samplers


class Bilinear(ebm.factors.Factor):
    """E(a, b) = -t(a)^T M t(b): a user factor with only an energy."""

    def __init__(self, a: str, b: str, n_a: int, n_b: int, scale: float = 0.1):
        super().__init__(a, b)
        self.weight = torch.nn.Parameter(scale * torch.randn(n_a, n_b))

    def energy(self, stats):
        a, b = self.blocks
        return -((stats[a] @ self.weight) * stats[b]).sum(-1)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="a short run (for CI)")
    parser.add_argument("--out", type=Path, default=Path("runs/custom_factor"))
    args = parser.parse_args()
    torch.manual_seed(0)

    g = ebm.Graph()
    g.add_block("v", ebm.units.Bernoulli(9), visible=True)
    g.add_block("h", ebm.units.Bernoulli(8))
    g.add_factor(Bilinear("v", "h", 9, 8), ebm.factors.Bias("v"), ebm.factors.Bias("h"))
    model = ebm.EnergyModel(g)
    args.out.mkdir(parents=True, exist_ok=True)
    g.draw(args.out / "graph.png")
    print(f"schedule (colour classes): {model.schedule}; graph drawn to {args.out / 'graph.png'}")

    data = ebm.datasets.bars_and_stripes(3)
    epochs = 20 if args.quick else 100
    ebm.fit(
        model,
        data.repeat(10, 1),
        samplers.PCD(num_chains=100),
        epochs=epochs,
        batch_size=14,
        lr=0.1,
        momentum=0.5,
        generator=torch.Generator().manual_seed(0),
    )

    exact = estimators.exact_log_z(model)
    betas = estimators.schedules.salakhutdinov_murray(
        (50, 400, 1000) if args.quick else (500, 4000, 10000)
    )
    approx = estimators.ais(
        model,
        num_chains=100,
        betas=betas,
        base=ebm.base_rate(model, data),
        generator=torch.Generator().manual_seed(1),
    )
    print(exact)
    print(approx)
    print(estimators.log_likelihood(model, data, exact))
    print(f"best possible: {-math.log(14):.4f}; uniform: {-9 * math.log(2):.4f}")


if __name__ == "__main__":
    main()
