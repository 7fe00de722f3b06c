"""AIS sharded over Ray tasks on one machine: wall time against the number of workers, as a figure.

One AIS run (``--chains`` chains x ``--betas`` betas, Salakhutdinov-Murray shape, base-rate start)
on a 784 x 500 RBM (the one ``ais_speed.py`` trains on enlarged digits, or on MNIST with
``--mnist``), in this process on one thread and on all of torch's threads, then sharded over
``workers=2 .. N`` Ray tasks (``N`` = the CPU count, or the GPU count where there are GPUs), each
taking one CPU (so one thread) or one GPU and its share of the chains. Ray and its worker
processes are started (by a short sharded run) before the timings. Every run
has its own seeds, so the estimates differ by their errors, which are printed with them.

    python benchmarks/ais_scaling.py --json benchmarks/results/ais_scaling.json \\
        --figure docs/figures/ais_scaling.png
"""

from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path

import torch
from ais_speed import train_rbm, training_data
from throughput import cpu_model

import ebm
import estimators


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--mnist", type=Path)
    parser.add_argument("--epochs", type=int, default=5)
    parser.add_argument("--chains", type=int, default=400)
    parser.add_argument("--betas", type=int, default=2000)
    parser.add_argument("--max-workers", type=int, default=None)
    parser.add_argument("--json", type=Path)
    parser.add_argument("--figure", type=Path)
    parser.add_argument("--quick", action="store_true")
    args = parser.parse_args()
    if args.quick:
        args.epochs, args.chains, args.betas = 1, 40, 50
    import ray

    gpus = torch.cuda.device_count()
    most = args.max_workers or (gpus or os.cpu_count() or 1)
    data = training_data(args.mnist, args.quick)
    model = train_rbm(data, args.epochs)
    base = ebm.base_rate(model, data)
    betas = estimators.schedules.salakhutdinov_murray_scaled(args.betas)
    ray.init(include_dashboard=False, log_to_driver=False, configure_logging=False)
    if most > 1:  # start the worker processes (they import torch) before any timing
        estimators.ais(
            model,
            num_chains=2 * most,
            betas=estimators.schedules.linear(10),
            base=base,
            workers=most,
            progress=False,
        )
    threads = torch.get_num_threads()
    runs = [("1 thread, in process", 1, 1), (f"{threads} threads, in process", 1, threads)]
    runs += [(f"{w} Ray tasks", w, 1) for w in range(2, most + 1)]
    rows = []
    for i, (label, workers, torch_threads) in enumerate(runs):
        torch.set_num_threads(torch_threads)
        start = time.perf_counter()
        est = estimators.ais(
            model,
            num_chains=args.chains,
            betas=betas,
            base=base,
            generator=torch.Generator().manual_seed(i),
            workers=workers,
            progress=False,
        )
        seconds = time.perf_counter() - start
        cores = workers if workers > 1 else torch_threads
        rows.append(
            {
                "run": label,
                "cores": cores,
                "seconds": seconds,
                "log_z": est.value,
                "stderr": est.stderr,
            }
        )
        print(f"{label:>24}: {seconds:7.1f} s  {est}", flush=True)
    torch.set_num_threads(threads)
    ray.shutdown()
    for r in rows:
        r["speedup_over_one_thread"] = rows[0]["seconds"] / r["seconds"]
    record = {
        "rows": rows,
        "chains": args.chains,
        "betas": args.betas,
        "cpus": os.cpu_count(),
        "gpus": gpus,
        "torch_threads": threads,
        "processor": cpu_model(),
    }
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(record, indent=2))
    if args.figure:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        fig, ax = plt.subplots(figsize=(4.5, 3.2))
        ray_rows = [rows[0]] + [r for r in rows[2:]]
        ax.plot(
            [r["cores"] for r in ray_rows],
            [r["speedup_over_one_thread"] for r in ray_rows],
            "o-",
            label="Ray tasks (one thread each)",
        )
        ax.plot(rows[1]["cores"], rows[1]["speedup_over_one_thread"], "s", label="torch threads")
        ax.plot([1, most], [1, most], "--", color="grey", lw=0.8, label="linear")
        ax.set_xlabel("cores")
        ax.set_ylabel("speed-up over one thread")
        ax.set_title(f"AIS {args.chains} chains x {args.betas} betas, 784x500 RBM", fontsize=9)
        ax.legend(fontsize=7)
        args.figure.parent.mkdir(parents=True, exist_ok=True)
        fig.savefig(args.figure, dpi=120, bbox_inches="tight")
        print(f"figure: {args.figure}")


if __name__ == "__main__":
    main()
