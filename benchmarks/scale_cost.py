"""Cost as the model grows: block Gibbs and AIS on square RBMs of 1,024, 4,096 and 16,384 units
per layer, next to the matmul-only time of the same shapes.

For each size: seconds per block Gibbs sweep (``--chains`` chains, ``BlockGibbs.run``) and per
sweep of the matmul-only limit (``throughput.matmul_only``: the two products of a sweep and
nothing else), seconds per AIS beta (the Salakhutdinov-Murray shape with ``--betas`` betas) and
the projected time of the published 14,500-beta run, the peak tensor memory of AIS
(``ebm.profiling.peak_tensor_memory``) and its growth from a run of ``--few`` betas to one of 3x
as many (zero when memory does not grow with the number of betas).

    python benchmarks/scale_cost.py                  # about 5 minutes on two CPU cores
    python benchmarks/scale_cost.py --quick          # seconds
    python benchmarks/scale_cost.py --json out.json
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
import warnings
from pathlib import Path

import torch
from throughput import cpu_model, matmul_only, time_rate

import ebm
import estimators
import samplers

FULL_RUN = 14_500


def square_rbm(n: int, device) -> ebm.EnergyModel:
    g = torch.Generator().manual_seed(0)
    weight = torch.randn(n, n, generator=g) / n**0.5
    return ebm.models.rbm(n, n, weight=weight).to(device)


def seconds_per_sweep(model, chains: int, sweeps: int, repeats: int) -> float:
    """Median seconds per block Gibbs sweep, ``sweeps`` sweeps per ``run`` call."""
    gibbs = samplers.BlockGibbs(model, generator=torch.Generator(model.device).manual_seed(0))
    state = gibbs.run(gibbs.init(chains), 1)  # warm-up
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        state = gibbs.run(state, sweeps)
        if model.device.type == "cuda":
            torch.cuda.synchronize()
        times.append((time.perf_counter() - start) / sweeps)
    return statistics.median(times)


def ais_run(model, chains: int, betas: int) -> float:
    """Seconds of one AIS run of ``betas`` betas (default schedule shape, uniform base)."""
    schedule = estimators.schedules.salakhutdinov_murray_scaled(betas)
    start = time.perf_counter()
    estimators.ais(
        model,
        num_chains=chains,
        betas=schedule,
        generator=torch.Generator(model.device).manual_seed(1),
        progress=False,
    )
    if model.device.type == "cuda":
        torch.cuda.synchronize()
    return time.perf_counter() - start


def measure(n: int, args) -> dict:
    model = square_rbm(n, args.device)
    sweep = seconds_per_sweep(model, args.chains, args.sweeps, args.repeats)
    step = matmul_only(model, "rbm", args.chains)
    limit = 1 / time_rate(step, args.sweeps, args.repeats, args.device)
    ais_seconds = ais_run(model, args.chains, args.betas)
    schedules = [
        estimators.schedules.salakhutdinov_murray_scaled(k) for k in (args.few, 3 * args.few)
    ]
    peaks = [
        ebm.profiling.peak_tensor_memory(
            lambda s=s: estimators.ais(
                model,
                num_chains=args.chains,
                betas=s,
                generator=torch.Generator(model.device).manual_seed(2),
                progress=False,
            ),
            model.device,
        )
        for s in schedules
    ]
    per_beta = ais_seconds / args.betas
    return {
        "units_per_layer": n,
        "chains": args.chains,
        "seconds_per_sweep": sweep,
        "matmul_only_seconds_per_sweep": limit,
        "ratio_to_matmul": limit / sweep,
        "ais_seconds_per_beta": per_beta,
        "ais_betas_timed": args.betas,
        "projected_full_run_seconds": per_beta * FULL_RUN,
        "ais_peak_bytes": peaks[0],
        "ais_peak_growth_bytes": peaks[1] - peaks[0],
        "weight_bytes": n * n * model.dtype.itemsize,
    }


def main() -> None:
    # random square RBMs are hard for AIS at these budgets: the weights' report is not the point
    warnings.simplefilter("ignore", estimators.estimate.DegenerateWeightsWarning)
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[1024, 4096, 16384])
    parser.add_argument("--chains", type=int, default=100)
    parser.add_argument("--sweeps", type=int, default=5)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--betas", type=int, default=200)
    parser.add_argument("--few", type=int, default=10, help="betas of the shorter memory run")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    if args.quick:
        args.sizes, args.sweeps, args.repeats, args.betas, args.few = [256, 512], 2, 1, 20, 5
    print(
        f"{'units':>6} {'sweep ms':>9} {'matmul ms':>9} {'ratio':>6} {'AIS ms/beta':>11} "
        f"{'14,500 betas':>12} {'AIS peak MiB':>12} {'growth B':>9}"
    )
    rows = []
    for n in args.sizes:
        row = measure(n, args)
        rows.append(row)
        print(
            f"{n:6d} {1e3 * row['seconds_per_sweep']:9.2f} "
            f"{1e3 * row['matmul_only_seconds_per_sweep']:9.2f} {row['ratio_to_matmul']:6.2f} "
            f"{1e3 * row['ais_seconds_per_beta']:11.2f} "
            f"{row['projected_full_run_seconds'] / 60:10.1f} m "
            f"{row['ais_peak_bytes'] / 2**20:12.1f} {row['ais_peak_growth_bytes']:9d}",
            flush=True,
        )
    if args.json:
        record = {
            "cpu": cpu_model(),
            "torch": torch.__version__,
            "threads": torch.get_num_threads(),
            "rows": rows,
        }
        args.json.write_text(json.dumps(record, indent=2))


if __name__ == "__main__":
    main()
