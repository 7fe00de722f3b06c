"""Every benchmark of docs/benchmarks.md, one after the other, each writing its JSON record:

- ``throughput.py``: block Gibbs sweeps per second against the matmul-only limit and the peers;
- ``ais_speed.py``: AIS on the 784 x 500 RBM, time to a standard error, reduced precision;
- ``ais_scaling.py``: AIS sharded over Ray tasks, with its figure;
- ``resident_set.py``: the resident set of a long block Gibbs run under three settings of
  glibc's allocator;
- ``unit_graphs.py``: block Gibbs on unit-level graphs;
- ``documents.py``: block Gibbs and AIS on count blocks (the Replicated Softmax).

They run in turn, never side by side (each would slow the others), then the tables of
docs/benchmarks.md are printed from the records (``tables.py``).

    python benchmarks/run.py --mnist DIR            # about 25 minutes on two CPU cores
    python benchmarks/run.py --quick --out /tmp/b   # a smoke test
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import time
from pathlib import Path

from tables import tables

HERE = Path(__file__).resolve().parent


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=HERE / "results", help="JSON records here")
    parser.add_argument(
        "--figure", type=Path, default=HERE.parent / "docs" / "img" / "ais_scaling.png"
    )
    parser.add_argument("--mnist", type=Path, help="directory of the MNIST IDX files")
    parser.add_argument("--quick", action="store_true", help="each script in its quick mode")
    args = parser.parse_args()
    common = ["--quick"] if args.quick else []
    mnist = ["--mnist", str(args.mnist)] if args.mnist else []
    jobs = [
        ("throughput", ["--no-thrml"] if args.quick else []),
        ("ais_speed", mnist),
        ("ais_scaling", [*mnist, "--figure", str(args.figure)]),
        ("resident_set", []),
        ("unit_graphs", ["--no-thrml"] if args.quick else []),
        ("documents", []),
    ]
    for name, extra in jobs:
        start = time.perf_counter()
        print(f"== {name}", flush=True)
        command = [sys.executable, str(HERE / f"{name}.py"), *common, *extra]
        command += ["--json", str(args.out / f"{name}.json")]
        result = subprocess.run(command, cwd=HERE.parent)
        if result.returncode != 0:
            sys.exit(f"{name}.py failed with exit status {result.returncode}")
        print(f"== {name}: {time.perf_counter() - start:.0f} s", flush=True)
    for name, table in tables(args.out).items():
        print(f"\n## {name}\n\n{table}")


if __name__ == "__main__":
    main()
