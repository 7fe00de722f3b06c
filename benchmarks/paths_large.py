"""Geometric against moment-averaged path on an RBM too large to enumerate (e.g. MNIST 784-500).

No exact log Z exists here, so each short run (``--betas``, linear schedule, base-rate start) is
compared with a long reference run on the geometric path (``--reference`` betas of the
Salakhutdinov-Murray shape). The moment-averaged path uses the sampled fit (persistent chains);
its fitting time is reported, and every AIS line carries its own standard error and ESS.

    python benchmarks/paths_large.py runs/mnist_rbm/rbm_cd25.safetensors --data mnist:DIR
    python benchmarks/paths_large.py MODEL --data digits --betas 100 --reference 1000 --quick
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import torch

import ebm
import estimators
from boltzkit_cli import load_data
from estimators import schedules


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("model", type=Path, help="a saved binary RBM")
    parser.add_argument("--data", default="digits", help="digits | mnist:DIR (for the base rate)")
    parser.add_argument("--binarize", default="stochastic")
    parser.add_argument("--betas", type=int, nargs="+", default=[1000, 3000])
    parser.add_argument("--reference", type=int, default=14500)
    parser.add_argument("--chains", type=int, default=100)
    parser.add_argument("--knots", type=int, default=10)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--json", type=Path)
    parser.add_argument("--quick", action="store_true", help="a smoke test")
    args = parser.parse_args()
    fit_options = {"fit_steps": 500, "num_particles": 1000}
    if args.quick:
        args.betas, args.reference, args.chains = [50], 300, 20
        fit_options = {"fit_steps": 20, "num_particles": 50}
    model = ebm.load(args.model)
    train, _ = load_data(args.data, args.binarize, args.seed)
    base = ebm.base_rate(model, train)
    gen = torch.Generator().manual_seed(args.seed)

    def run(betas, path=None):
        return estimators.ais(
            model, args.chains, betas, base=base, generator=gen, path=path, progress=False
        )

    ref = run(schedules.salakhutdinov_murray_scaled(args.reference))
    print(f"reference (geometric, {args.reference} betas): {ref}", flush=True)
    start = time.perf_counter()
    path = estimators.moment_averaged_path(
        model, base, num_knots=args.knots, fit="sampled", generator=gen, **fit_options
    )
    fit_seconds = time.perf_counter() - start
    print(
        f"moment-averaged path: {args.knots} knots fitted in {fit_seconds:.1f} s "
        f"(largest moment error {path.moment_error:.4f}, estimated from the chains)"
    )
    rows = []
    print(
        f"{'path':10} {'betas':>6} {'log Z':>10} {'stderr':>8} {'ESS':>6} {'- ref':>8} {'sec':>6}"
    )
    for n in args.betas:
        for name, p in (("geometric", None), ("mavg", path)):
            est = run(schedules.linear(n), p)
            diff = est.value - ref.value
            rows.append(
                {
                    "path": name,
                    "betas": n,
                    "log_z": est.value,
                    "stderr": est.stderr,
                    "ess": est.ess,
                    "minus_reference": diff,
                    "seconds": est.seconds,
                }
            )
            print(
                f"{name:10} {n:6d} {est.value:10.4f} {est.stderr:8.4f} {est.ess:6.1f} "
                f"{diff:+8.4f} {est.seconds:6.1f}",
                flush=True,
            )
    if args.json:
        summary = {
            "reference": {"betas": args.reference, "log_z": ref.value, "stderr": ref.stderr},
            "fit_seconds": fit_seconds,
            "moment_error": path.moment_error,
            "rows": rows,
        }
        args.json.write_text(json.dumps(summary, indent=2))


if __name__ == "__main__":
    main()
