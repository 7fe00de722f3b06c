"""The resident set of a long block Gibbs run on the fused CPU products, under three settings of
glibc's allocator.

oneDNN's fused products (``ebm.backend``, the default on a float32 CPU) make a new output per
product; each sweep frees as much tensor memory as it allocates (``throughput.py`` measures the
peak of live tensor bytes: it does not grow), but what the resident set shows depends on how
the C allocator places and returns that memory. Each setting runs in its own process (glibc
reads ``MALLOC_*_`` when the process starts): ``--rounds`` rounds of ``--sweeps`` sweeps of one
``BlockGibbs.run`` on the 784 x 500 RBM at 1,000 chains (41 rounds of 500 by default: a
warm-up round, then 20,000 sweeps), recording the resident set after every
sweep and the rate of each round. Settings:

- glibc's defaults (a dynamic mmap threshold, trimming of the heap's top),
- ``MALLOC_MMAP_THRESHOLD_=1 MiB`` (fixed: every block-sized output is mapped and unmapped),
- ``MALLOC_MMAP_THRESHOLD_=64 MiB``, ``MALLOC_TRIM_THRESHOLD_=256 MiB`` (the heap keeps freed
  memory and never hands it back).

The processes run one after the other (``--passes`` times in turn); each setting's rate is the
median over its rounds after the first, of every pass. The bands are those of the first pass,
by quarter of the sweeps after its first round (the warm-up).

    python benchmarks/resident_set.py --json benchmarks/results/resident_set.json
    python benchmarks/resident_set.py --quick        # a smoke test
"""

from __future__ import annotations

import argparse
import array
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent

SETTINGS = {
    "glibc defaults": {},
    "fixed mmap threshold, 1 MiB": {"MALLOC_MMAP_THRESHOLD_": str(2**20)},
    "no mmap, no trim": {
        "MALLOC_MMAP_THRESHOLD_": str(64 * 2**20),
        "MALLOC_TRIM_THRESHOLD_": str(256 * 2**20),
    },
}


def worker(rounds: int, sweeps: int, quick: bool) -> dict:
    """One process's run: the resident set (MiB) after every sweep and each round's rate."""
    import torch
    from throughput import build, resident_mib

    import samplers

    model = build("rbm", quick)
    gibbs = samplers.BlockGibbs(model, generator=torch.Generator().manual_seed(0))
    state = gibbs.init(100 if quick else 1000)
    # made in full before the run, so that recording adds nothing to what is recorded (a list
    # appended to grew by 32 bytes a sweep: 0.6 MiB over 20,000 sweeps)
    resident = array.array("d", bytes(8 * rounds * sweeps))
    rates = array.array("d", bytes(8 * rounds))
    for k in range(rounds):

        def observe(_state, sweep, first=k * sweeps):
            resident[first + sweep] = resident_mib()

        start = time.perf_counter()
        state = gibbs.run(state, sweeps, observers=[observe])
        rates[k] = sweeps / (time.perf_counter() - start)
    return {"resident_mib": resident.tolist(), "rates": rates.tolist()}


def summary(runs: list[dict], sweeps: int) -> dict:
    """The resident set's band (smallest and largest value, MiB) in each quarter of the sweeps
    after the first round (the warm-up) of the first run, its range over all of them, how much
    its highest value rose from the first quarter to the last, and the median rate of the
    rounds after the first of every run."""
    after = runs[0]["resident_mib"][sweeps:]
    size = len(after) // 4
    quarters = [after[i * size : (i + 1) * size] for i in range(4)]
    return {
        "sweeps": len(runs[0]["resident_mib"]),
        "quarters_mib": [[min(q), max(q)] for q in quarters],
        "range_mib": max(after) - min(after),
        "rise_of_highest_mib": max(quarters[-1]) - max(quarters[0]),
        "sweeps_per_second": statistics.median(x for r in runs for x in r["rates"][1:]),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=41)
    parser.add_argument("--sweeps", type=int, default=500, help="sweeps a round")
    parser.add_argument("--passes", type=int, default=1, help="runs of each setting, in turn")
    parser.add_argument("--json", type=Path)
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.quick:
        args.rounds, args.sweeps = 5, 12
    if args.worker:
        json.dump(worker(args.rounds, args.sweeps, args.quick), sys.stdout)
        return
    from throughput import cpu_model

    command = [sys.executable, str(Path(__file__).resolve()), "--worker"]
    command += ["--rounds", str(args.rounds), "--sweeps", str(args.sweeps)]
    command += ["--quick"] if args.quick else []
    runs: dict[str, list[dict]] = {name: [] for name in SETTINGS}
    for _ in range(args.passes):
        for name, env in SETTINGS.items():
            result = subprocess.run(
                command,
                env={**os.environ, **env},
                capture_output=True,
                text=True,
                cwd=HERE,
                check=False,
            )
            if result.returncode != 0:
                sys.exit(f"the worker for {name!r} failed:\n{result.stderr[-2000:]}")
            runs[name].append(json.loads(result.stdout))
    record = {
        "model": "rbm 784-500" if not args.quick else "rbm 196-125",
        "chains": 100 if args.quick else 1000,
        "rounds": args.rounds,
        "sweeps_per_round": args.sweeps,
        "processor": cpu_model(),
        "settings": {
            name: {"env": SETTINGS[name], **summary(runs[name], args.sweeps)} for name in SETTINGS
        },
    }
    for name, s in record["settings"].items():
        bands = ", ".join(f"{lo:.1f}-{hi:.1f}" for lo, hi in s["quarters_mib"])
        print(
            f"{name}: {s['sweeps_per_second']:.1f} sweeps/s; resident set by quarter {bands} MiB, "
            f"range {s['range_mib']:.1f} MiB",
            flush=True,
        )
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(record, indent=2) + "\n")


if __name__ == "__main__":
    main()
