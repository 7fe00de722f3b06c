"""Error of AIS against the exact log Z versus the number of betas, per schedule.

On enumerable RBMs trained on real data (bars and stripes, 8x8 digits with PCD and with CD-1),
for the linear, sigmoid, Salakhutdinov-Murray-shaped and adaptive schedules on the geometric path,
prints the root-mean-square error of AIS against the exact log Z over ``--repeats`` independent
runs, and the mean reported standard error, at each length.

    python benchmarks/ais_schedules.py             # about a minute on 2 CPU cores
    python benchmarks/ais_schedules.py --quick
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import torch
from _models import trained_models

import ebm
import estimators
from estimators import schedules


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--betas", type=int, nargs="+", default=[30, 100, 300, 1000])
    parser.add_argument("--chains", type=int, default=100)
    parser.add_argument("--repeats", type=int, default=10)
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--json", type=Path)
    parser.add_argument("--out", type=Path, help="unused; for uniformity")
    args = parser.parse_args()
    if args.quick:
        args.betas, args.repeats = [30, 100], 2
    rows = []
    print(f"{'model':12} {'schedule':9} {'betas':>6} {'rmse':>8} {'stderr':>8} {'z sd':>5}")
    for name, (model, data) in trained_models(quick=args.quick).items():
        exact = estimators.exact_log_z(model).value
        base = ebm.base_rate(model, data)
        for n in args.betas:
            candidates = {
                "linear": schedules.linear(n),
                "sigmoid": schedules.sigmoid(n),
                "sm-shape": schedules.salakhutdinov_murray_scaled(n),
                "adaptive": schedules.adaptive(
                    model, n, base=base, generator=torch.Generator().manual_seed(1)
                ),
            }
            for sched, betas in candidates.items():
                c = estimators.ais_coverage(
                    model,
                    repeats=args.repeats,
                    num_chains=args.chains,
                    betas=betas,
                    base=base,
                    generator=torch.Generator().manual_seed(0),
                    exact=exact,
                )
                rows.append(
                    {
                        "model": name,
                        "schedule": sched,
                        "betas": n,
                        "rmse": c.rmse,
                        "mean_stderr": c.mean_stderr,
                        "sd_z": c.sd_z,
                        "repeats": args.repeats,
                        "chains": args.chains,
                    }
                )
                print(
                    f"{name:12} {sched:9} {n:6d} {c.rmse:8.4f} {c.mean_stderr:8.4f} {c.sd_z:5.2f}"
                )
    if args.json:
        args.json.write_text(json.dumps(rows, indent=2))


if __name__ == "__main__":
    main()
