"""Calibration of AIS error bars: how often the 95% interval covers the exact log Z.

Repeats AIS (independent groups of chains) on enumerable RBMs trained on real data and prints, per
model and schedule length, the coverage of the 95% interval, the mean error and the z-scores.
The bar: coverage of at least 90% over 200 repeats.

    python benchmarks/calibration.py                 # 200 repeats x 100 chains, about a minute
    python benchmarks/calibration.py --quick         # seconds
    python benchmarks/calibration.py --json out.json
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import torch
from _models import trained_models

import ebm
import estimators


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=200)
    parser.add_argument("--chains", type=int, default=100)
    parser.add_argument("--betas", type=int, nargs="+", default=[300, 1000, 3000])
    parser.add_argument("--quick", action="store_true", help="few repeats and betas (for CI)")
    parser.add_argument("--json", type=Path, help="also write the rows as JSON")
    parser.add_argument("--out", type=Path, help="folder for outputs (unused; for uniformity)")
    args = parser.parse_args()
    if args.quick:
        args.repeats, args.chains, args.betas = 40, 50, [100]
    rows = []
    print(
        f"{'model':12} {'betas':>6} {'coverage':>9} {'mean err':>9} {'stderr':>8} {'z mean':>7} "
        f"{'z sd':>5} {'degenerate':>10} {'min ESS/n':>9}"
    )
    for name, (model, data) in trained_models(quick=args.quick).items():
        exact = estimators.exact_log_z(model).value
        for n in args.betas:
            c = estimators.ais_coverage(
                model,
                repeats=args.repeats,
                num_chains=args.chains,
                betas=estimators.schedules.linear(n),
                base=ebm.base_rate(model, data),
                generator=torch.Generator().manual_seed(0),
                exact=exact,
            )
            rows.append(
                {
                    "model": name,
                    "betas": n,
                    "chains": args.chains,
                    "repeats": args.repeats,
                    "coverage": c.rate,
                    "mean_error": c.mean_error,
                    "mean_stderr": c.mean_stderr,
                    "mean_z": c.mean_z,
                    "sd_z": c.sd_z,
                    "degenerate": c.degenerate,
                    "min_ess_fraction": c.min_ess_fraction,
                }
            )
            print(
                f"{name:12} {n:6d} {c.rate:9.1%} {c.mean_error:+9.4f} {c.mean_stderr:8.4f} "
                f"{c.mean_z:+7.2f} {c.sd_z:5.2f} {c.degenerate:10d} {c.min_ess_fraction:9.2f}"
            )
    worst = min(r["coverage"] for r in rows)
    print(f"lowest coverage {worst:.1%} (bar: 90%)")
    flagged = sum(r["degenerate"] for r in rows)
    print(f"estimates with degenerate weights (marked untrusted): {flagged} (bar: 0)")
    if args.json:
        args.json.write_text(json.dumps(rows, indent=2))


if __name__ == "__main__":
    main()
