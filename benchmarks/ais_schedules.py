"""Error of AIS against the exact log Z versus the number of betas, per path and schedule.

On enumerable RBMs trained on real data (bars and stripes, 8x8 digits with PCD and with CD-1),
for the geometric and the moment-averaged paths (base-rate start, or uniform with ``--base
uniform``) and the linear, sigmoid, Salakhutdinov-Murray-shaped and adaptive schedules, prints
the root-mean-square error of AIS against the exact log Z over ``--repeats`` independent runs
of ``--chains`` chains, the mean reported standard error and the spread of the z-scores, at each
length.

    python benchmarks/ais_schedules.py             # about 20 minutes on 2 CPU cores
    python benchmarks/ais_schedules.py --quick     # under a minute
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
    parser.add_argument(
        "--paths", nargs="+", default=["geometric", "mavg"], choices=["geometric", "mavg"]
    )
    parser.add_argument(
        "--base",
        choices=["base-rate", "uniform"],
        default="base-rate",
        help="the start of the path",
    )
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--json", type=Path)
    parser.add_argument("--out", type=Path, help="unused; for uniformity")
    args = parser.parse_args()
    if args.quick:
        args.betas, args.repeats = [30, 100], 2
    rows = []
    head = (
        f"{'model':12} {'path':9} {'schedule':9} {'betas':>6} {'rmse':>8} {'stderr':>8} {'z sd':>5}"
    )
    print(head, flush=True)
    for name, (model, data) in trained_models(quick=args.quick).items():
        exact = estimators.exact_log_z(model).value
        base = ebm.base_rate(model, data) if args.base == "base-rate" else None
        paths = {
            "geometric": None,
            "mavg": estimators.moment_averaged_path(model, base, progress=False)
            if "mavg" in args.paths
            else None,
        }
        for path_name in args.paths:
            path = paths[path_name]
            for n in args.betas:
                candidates = {
                    "linear": schedules.linear(n),
                    "sigmoid": schedules.sigmoid(n),
                    "sm-shape": schedules.salakhutdinov_murray_scaled(n),
                    "adaptive": schedules.adaptive(
                        model, n, base=base, generator=torch.Generator().manual_seed(1), path=path
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
                        path=path,
                    )
                    rows.append(
                        {
                            "model": name,
                            "path": path_name,
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
                        f"{name:12} {path_name:9} {sched:9} {n:6d} {c.rmse:8.4f} "
                        f"{c.mean_stderr:8.4f} {c.sd_z:5.2f}",
                        flush=True,
                    )
    if args.json:
        args.json.write_text(json.dumps(rows, indent=2))
    print(markdown(rows))


def markdown(rows: list[dict]) -> str:
    """One Markdown table per path: rows (model, betas), columns schedules, cells 'rmse (mean
    stderr)'."""
    out = []
    cells = {(r["path"], r["model"], r["betas"], r["schedule"]): r for r in rows}
    schedules_ = list(dict.fromkeys(r["schedule"] for r in rows))
    keys = list(dict.fromkeys((r["model"], r["betas"]) for r in rows))
    for path in dict.fromkeys(r["path"] for r in rows):
        out += [f"\n{path} path", "", f"| model | betas | {' | '.join(schedules_)} |"]
        out.append("|---|---|" + "---|" * len(schedules_))
        for model, n in keys:
            row = [cells[(path, model, n, s)] for s in schedules_]
            text = " | ".join(f"{r['rmse']:.4f} ({r['mean_stderr']:.4f})" for r in row)
            out.append(f"| {model} | {n} | {text} |")
    return "\n".join(out)


if __name__ == "__main__":
    main()
