"""AIS on a 784 x 500 RBM: time for 14,500 betas x 1,000 chains, time to a given standard error,
and the effect of reduced-precision matrix products on log Z.

The RBM is trained briefly by CD-1 on MNIST (``--mnist DIR``, stochastically binarised) or, without
MNIST, on scikit-learn's 8x8 digits enlarged to 28x28 (each pixel repeated over a 3.5 x 3.5 block,
binarised by thresholding), so that AIS has a realistic, peaked model to anneal. AIS runs from the
base-rate model over the Salakhutdinov & Murray schedule scaled to ``--betas`` betas, the hidden
layer summed out, first with float32 matrix products (on the backend ``ebm.backend`` chooses:
fused oneDNN products on the CPU), on a CPU once more with ``torch.mm`` into kept buffers
(``ebm.backend.use_backend("cpu-blas")``), and then inside ``ebm.reduced_precision()`` (bf16
inputs, float32 accumulation on the CPU; TF32 on a GPU), with the same seed.

Reported: seconds per run, log Z with its standard error and ESS, the difference between the two
precisions in units of their combined standard error, the chains (and seconds) that a standard
error of ``--target-se`` nats would take (the standard error falls as 1 / sqrt(chains)), and, on
the 64 x 16 digits RBM whose log Z can be enumerated, the exact change of log Z when its weights
are rounded to bf16 as the reduced-precision products round them.

    python benchmarks/ais_speed.py --mnist DIR --json benchmarks/results/ais_speed.json
    python benchmarks/ais_speed.py --quick
"""

from __future__ import annotations

import argparse
import copy
import json
import math
import platform
import threading
import time
from pathlib import Path

import torch
from throughput import cpu_model, resident_mib

import ebm
import estimators
import samplers


def training_data(mnist: Path | None, quick: bool) -> torch.Tensor:
    if mnist is not None:
        train, _ = ebm.datasets.mnist(mnist, binarize="stochastic", seed=0)
        return train[:5000] if quick else train
    train, _ = ebm.datasets.digits(binarize=None)
    images = train.reshape(-1, 1, 8, 8)
    big = torch.nn.functional.interpolate(images, size=(28, 28), mode="nearest")
    return (big.reshape(-1, 784) > 0.5).float()


def train_rbm(data: torch.Tensor, epochs: int) -> ebm.EnergyModel:
    torch.manual_seed(0)
    model = ebm.models.rbm(784, 500)
    ebm.fit(
        model,
        data,
        samplers.CD(1),
        epochs=epochs,
        batch_size=100,
        lr=0.05,
        momentum=0.5,
        weight_decay=2e-4,
        generator=torch.Generator().manual_seed(0),
        progress=False,
    )
    return model


def run_ais(model, base, chains, betas, seed) -> estimators.Estimate:
    """AIS over the Salakhutdinov & Murray schedule scaled to ``betas`` betas (an int), or over
    the given schedule (a tensor)."""
    if isinstance(betas, int):
        betas = estimators.schedules.salakhutdinov_murray_scaled(betas)
    return estimators.ais(
        model,
        num_chains=chains,
        betas=betas,
        base=base,
        generator=torch.Generator(device=model.device).manual_seed(seed),
        progress=False,
    )


class MemoryWatch:
    """Samples the process's memory every ``interval`` seconds while a run is inside the block
    (resident set on the CPU, ``torch.cuda.memory_allocated`` on a GPU). ``growth()``: MiB the
    largest sample of the last two thirds of the run exceeds the sample at one third: zero when
    the loop's memory stays flat after its first steps (temporaries freed and reused)."""

    def __init__(self, device, interval: float = 0.25):
        self.cuda = torch.device(device).type == "cuda"
        self.interval = interval
        self.samples: list[tuple[float, float]] = []
        self._stop = threading.Event()

    def _read(self) -> float:
        return torch.cuda.memory_allocated() / 2**20 if self.cuda else resident_mib()

    def _loop(self) -> None:
        while not self._stop.wait(self.interval):
            self.samples.append((time.perf_counter(), self._read()))

    def __enter__(self):
        self.start = time.perf_counter()
        self._thread = threading.Thread(target=self._loop, daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc):
        self.end = time.perf_counter()
        self._stop.set()
        self._thread.join()

    def growth(self) -> float | None:
        third = self.start + (self.end - self.start) / 3
        early = [m for t, m in self.samples if t <= third]
        late = [m for t, m in self.samples if t > third]
        if not early or not late:
            return None
        return max(late) - early[-1]


def allocations_per_beta(model, base, chains, few: int = 20, many: int = 60) -> dict | None:
    """What one beta of the AIS loop allocates (``ebm.profiling.tensor_allocations`` of a run of
    ``many`` betas against one of ``few``): the number of allocations and bytes per beta, and
    the allocations per beta of a block's size (chains x the hidden layer, float32) or more.
    None on a GPU, where the profiler does not see the caching allocator's reuse."""
    if model.device.type != "cpu":
        return None
    runs = [
        ebm.profiling.tensor_allocations(lambda n=n: run_ais(model, base, chains, n, seed=0))
        for n in (few, many)
    ]
    block = chains * model.units["h"].n * model.dtype.itemsize
    steps = many - few
    return {
        "count": (len(runs[1]) - len(runs[0])) / steps,
        "bytes": (sum(runs[1]) - sum(runs[0])) / steps,
        "block_sized": (sum(s >= block for s in runs[1]) - sum(s >= block for s in runs[0]))
        / steps,
    }


def peak_growth(model, base, chains, few: int = 20, many: int = 60) -> int:
    """Bytes by which the peak tensor memory of an AIS run of ``many`` betas exceeds that of a
    run of ``few`` (``ebm.profiling.peak_tensor_memory``: live tensor bytes counted by the
    profiler on the CPU, ``torch.cuda.max_memory_allocated`` on a GPU): zero when the loop
    holds no more memory the longer it runs, whatever it allocates and frees per beta. (The
    schedules are made outside the measured runs: their own size grows with the betas.)"""
    schedules = [estimators.schedules.salakhutdinov_murray_scaled(n) for n in (few, many)]
    peaks = [
        ebm.profiling.peak_tensor_memory(
            lambda s=s: run_ais(model, base, chains, s, seed=0), model.device
        )
        for s in schedules
    ]
    return peaks[1] - peaks[0]


def bf16_rounding_on_digits() -> dict:
    """Exact log Z of the 64 x 16 digits RBM with float32 weights and with bf16-rounded ones."""
    train, _ = ebm.datasets.digits(binarize="threshold")
    torch.manual_seed(0)
    model = ebm.models.rbm(64, 16)
    ebm.fit(
        model,
        train,
        samplers.PCD(100),
        epochs=30,
        batch_size=20,
        lr=0.05,
        momentum=0.5,
        generator=torch.Generator().manual_seed(0),
        progress=False,
    )
    rounded = copy.deepcopy(model)
    with torch.no_grad():
        w = rounded.factors["dense_v_h"].weight
        w.copy_(w.bfloat16().float())
    exact = estimators.exact_log_z(model).value
    exact_rounded = estimators.exact_log_z(rounded).value
    with ebm.reduced_precision():
        ais_reduced = run_ais(model, ebm.base_rate(model, train), 1000, 14_500, seed=3)
    return {
        "exact_log_z": exact,
        "exact_log_z_bf16_weights": exact_rounded,
        "change": exact_rounded - exact,
        "ais_reduced": ais_reduced.value,
        "ais_reduced_stderr": ais_reduced.stderr,
        "ais_reduced_vs_exact_in_se": (ais_reduced.value - exact) / ais_reduced.stderr,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--mnist", type=Path, help="directory of the MNIST IDX files")
    parser.add_argument("--epochs", type=int, default=5, help="CD-1 epochs for the RBM")
    parser.add_argument("--chains", type=int, default=1000)
    parser.add_argument("--betas", type=int, default=14_500)
    parser.add_argument("--target-se", type=float, default=0.05, help="nats")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--json", type=Path)
    parser.add_argument("--quick", action="store_true")
    args = parser.parse_args()
    if args.quick:
        args.epochs, args.chains, args.betas = 1, 50, 200
    data = training_data(args.mnist, args.quick)
    start = time.perf_counter()
    model = train_rbm(data, args.epochs).to(args.device)
    train_seconds = time.perf_counter() - start
    base = ebm.base_rate(model, data.to(args.device))
    allocated = allocations_per_beta(model, base, args.chains)
    with ebm.backend.use_backend("cpu-blas"):
        allocated_blas = allocations_per_beta(model, base, args.chains)
    print(f"allocations per beta: {allocated}; torch.mm products: {allocated_blas}", flush=True)
    peak = peak_growth(model, base, args.chains)
    with ebm.backend.use_backend("cpu-blas"):
        peak_blas = peak_growth(model, base, args.chains)
    print(f"peak tensor memory growth: {peak:+,d} bytes; torch.mm {peak_blas:+,d}", flush=True)
    with MemoryWatch(args.device) as watch:
        full = run_ais(model, base, args.chains, args.betas, seed=1)
    growth = watch.growth()
    print(
        f"float32 products:  {full}; memory growth after the first third: {growth} MiB", flush=True
    )
    blas = growth_blas = None
    if model.device.type == "cpu":  # elsewhere torch.mm is what the products run on anyway
        with ebm.backend.use_backend("cpu-blas"), MemoryWatch(args.device) as watch_blas:
            blas = run_ais(model, base, args.chains, args.betas, seed=1)
        growth_blas = watch_blas.growth()
        print(f"float32, torch.mm: {blas}; memory growth {growth_blas} MiB", flush=True)
    with ebm.reduced_precision():
        reduced = run_ais(model, base, args.chains, args.betas, seed=1)
    print(f"reduced precision: {reduced}", flush=True)
    combined = math.hypot(full.stderr, reduced.stderr)
    needed = math.ceil(args.chains * (full.stderr / args.target_se) ** 2)
    record = {
        "data": "mnist" if args.mnist else "digits enlarged to 28x28",
        "train_seconds": train_seconds,
        "chains": args.chains,
        "betas": args.betas,
        "float32": {
            "log_z": full.value,
            "stderr": full.stderr,
            "ess": full.ess,
            "seconds": full.seconds,
        },
        "reduced": {
            "log_z": reduced.value,
            "stderr": reduced.stderr,
            "ess": reduced.ess,
            "seconds": reduced.seconds,
        },
        "memory_growth_mib": growth,
        "allocations_per_beta": allocated,
        "allocations_per_beta_torch_mm": allocated_blas,
        "peak_growth_bytes": peak,
        "peak_growth_bytes_torch_mm": peak_blas if model.device.type == "cpu" else None,
        "difference_in_combined_se": (reduced.value - full.value) / combined,
        "speedup": full.seconds / reduced.seconds,
        "float32_torch_mm": None
        if blas is None
        else {
            "log_z": blas.value,
            "stderr": blas.stderr,
            "ess": blas.ess,
            "seconds": blas.seconds,
            "memory_growth_mib": growth_blas,
        },
        "target_se": args.target_se,
        "chains_for_target_se": needed,
        "seconds_for_target_se_float32": full.seconds * needed / args.chains,
        "seconds_for_target_se_reduced": reduced.seconds * needed / args.chains,
        "seconds_for_target_se_float32_torch_mm": None
        if blas is None
        else blas.seconds * needed / args.chains,
        "device": args.device,
        "torch": torch.__version__,
        "threads": torch.get_num_threads(),
        "machine": platform.machine(),
        "processor": cpu_model(),
    }
    print(
        f"difference {record['difference_in_combined_se']:+.2f} combined standard errors; "
        f"reduced precision {record['speedup']:.2f}x faster; a standard error of "
        f"{args.target_se} nats needs about {needed:,} chains: "
        f"{record['seconds_for_target_se_float32']:.0f} s (float32), "
        f"{record['seconds_for_target_se_reduced']:.0f} s (reduced)",
        flush=True,
    )
    if not args.quick:
        record["digits_exact"] = bf16_rounding_on_digits()
        d = record["digits_exact"]
        print(
            f"digits 64x16 RBM: exact log Z {d['exact_log_z']:.4f}, with bf16-rounded weights "
            f"{d['exact_log_z_bf16_weights']:.4f} (change {d['change']:+.4f}); AIS inside "
            f"reduced_precision {d['ais_reduced']:.4f} ± {d['ais_reduced_stderr']:.4f} "
            f"({d['ais_reduced_vs_exact_in_se']:+.2f} se from the exact float32 value)"
        )
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(record, indent=2))
        print(f"wrote {args.json}")


if __name__ == "__main__":
    main()
