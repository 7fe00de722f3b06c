"""AIS on a strongly frustrated spin glass: what brings the estimate back within its error?

A Gaussian spin glass on an open rows x cols strip (couplings N(0, scale^2); 10 x 100 = 1,000
spins by default) written as an RBM over its checkerboard (``ebm.models.checkerboard_ising``),
with the exact log Z from a transfer matrix over the columns (``tests.helpers``). For each remedy
the docstring of ``estimators.ais`` suggests (more betas, more chains, an adaptive schedule) it
prints the estimate's error in its own standard errors, the ESS and whether the call flagged
its weights as degenerate.

    python benchmarks/glass_ais.py                  # about 6 minutes on two CPU cores
    python benchmarks/glass_ais.py --quick          # seconds
    python benchmarks/glass_ais.py --json out.json
"""

from __future__ import annotations

import argparse
import json
import sys
import time
import warnings
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # the tests' independent log Z

import ebm  # noqa: E402
import estimators  # noqa: E402
from tests.helpers import strip_glass, transfer_matrix_log_z  # noqa: E402


def runs(quick: bool) -> list[tuple[str, int, object]]:
    """(label, chains, betas) of each remedy; betas an int (the default shape) or 'adaptive N'."""
    if quick:
        return [("default shape", 20, 300), ("adaptive", 20, "adaptive 300")]
    return [
        ("default (14,500 betas)", 100, 14_500),
        ("4x the betas", 100, 58_000),
        ("10x the chains", 1_000, 14_500),
        ("adaptive schedule", 100, "adaptive 14500"),
    ]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=10)
    parser.add_argument("--cols", type=int, default=100)
    parser.add_argument("--scale", type=float, default=3.0)
    parser.add_argument("--seeds", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    if args.quick:
        args.rows, args.cols, args.seeds = 6, 20, [1]
    print(
        f"{'glass':>6} {'run':24} {'chains':>6} {'error / se':>10} {'se':>7} {'ESS':>6} "
        f"{'flagged':>7} {'seconds':>7}"
    )
    rows = []
    for seed in args.seeds:
        horizontal, vertical = strip_glass(args.rows, args.cols, args.scale, seed)
        model = ebm.models.checkerboard_ising(args.rows, args.cols, horizontal, vertical)
        truth = transfer_matrix_log_z(horizontal, vertical)
        for label, chains, betas in runs(args.quick):
            generator = torch.Generator().manual_seed(seed)
            start = time.perf_counter()
            if isinstance(betas, str):
                n = int(betas.split()[1])
                betas = estimators.schedules.adaptive(model, n, generator=generator)
            with warnings.catch_warnings(record=True) as caught:
                warnings.simplefilter("always", estimators.estimate.DegenerateWeightsWarning)
                est = estimators.ais(
                    model, num_chains=chains, betas=betas, generator=generator, progress=False
                )
            seconds = time.perf_counter() - start
            z = (est.value - truth) / est.stderr
            flagged = bool(caught) and not est.trusted
            print(
                f"{seed:6d} {label:24} {chains:6d} {z:10.1f} {est.stderr:7.3f} {est.ess:6.1f} "
                f"{'yes' if flagged else 'no':>7} {seconds:7.1f}",
                flush=True,
            )
            rows.append(
                {
                    "seed": seed,
                    "run": label,
                    "chains": chains,
                    "z": z,
                    "stderr": est.stderr,
                    "ess": est.ess,
                    "flagged": flagged,
                    "error": est.value - truth,
                    "seconds": seconds,
                }
            )
    if args.json:
        args.json.write_text(json.dumps(rows, indent=2))


if __name__ == "__main__":
    main()
