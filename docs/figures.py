"""Draw the pictures of the documentation into docs/figures/ (run by ``make docs``).

The factor graph of one model of each family (``Graph.draw`` of a small instance: blocks as
circles with name, unit type and size, factors as squares, one edge per block a factor touches),
and the traces of block Gibbs and parallel tempering on the two-mode RBM (``samplers.compare``).
"""

from __future__ import annotations

from pathlib import Path

import ebm
import samplers

OUT = Path(__file__).resolve().parent / "figures"

MODELS = {
    "rbm": lambda: ebm.models.rbm(784, 500),
    "higher-order": lambda: ebm.models.higher_order_bm(4),
    "gated-rbm": lambda: ebm.models.gated_rbm(169, 169, 100, 200),
    "fcrbm": lambda: ebm.models.fcrbm(20, 50, 2, 4, 30),
    "mcrbm": lambda: ebm.models.mcrbm(36, 64, 16, 64),
    "dbm": lambda: ebm.models.dbm([784, 500, 1000]),
    "pohmm": lambda: ebm.models.pohmm(3, 4, 8, emission="categorical", symbols=3),
    "student-t": lambda: ebm.models.fas(40, 40),
    "upoe": lambda: ebm.models.upoe(16, 4),
}


def compare_traces() -> Path:
    """Traces of 'mean v' for block Gibbs and tempering on ebm.models.bimodal_rbm()."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    result = samplers.compare(
        ebm.models.bimodal_rbm(),
        [samplers.BlockGibbs, lambda m: samplers.ParallelTempering(m, num_temperatures=8)],
        names=["block Gibbs", "parallel tempering (8 temperatures)"],
        num_chains=8,
        sweeps=16_000,
        progress=False,
    )
    fig, axes = plt.subplots(2, 1, figsize=(8, 4), sharey=True)
    for ax, r in zip(axes, result.results, strict=True):
        trace = r.traces["mean v"]
        for chain in trace[:4]:
            ax.plot(chain, lw=0.5)
        ax.set_title(f"{r.name}: 'mean v' of 4 chains, {r.sweeps:,} model sweeps", fontsize=9)
        ax.set_ylabel("mean v")
    axes[-1].set_xlabel("kept step")
    fig.tight_layout()
    path = OUT / "compare-traces.png"
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def main() -> None:
    OUT.mkdir(exist_ok=True)
    for name, build in MODELS.items():
        path = build().graph.draw(OUT / f"{name}.png")
        print(path)
    print(compare_traces())


if __name__ == "__main__":
    main()
