"""Products of HMMs against a single HMM on the Mauna Loa CO2 record bundled with statsmodels.

The weekly CO2 concentrations (1958-2001; statsmodels' ``co2`` dataset, gaps filled by linear
interpolation) become weekly changes, discretised into three symbols at the training tertiles
(falling, steady, rising). Windows of --length weeks are the sequences: overlapping windows
(stride 2) from the first 75% of the record train, non-overlapping windows from the last 25%
test. Each model is trained by CD-5 through ``ebm.fit``:

- a single HMM with 8 states (79 free parameters);
- products of 2 HMMs with 5 states (68), 3 with 4 (69) and 4 with 3 (56).

Every held-out log-likelihood is exact: log Z sums the 3^length sequences with the state paths
summed out by the forward algorithm (a single HMM has log Z = 0). AIS is run on each product as a
check. A maximum-likelihood single HMM fitted by EM (hmmlearn, 8 states) is the reference.
The held-out figures, with their errors and the paired differences from the single HMM, go to
OUT/results.json and a bar chart to OUT/pohmm.png.

    python examples/pohmm_co2.py               # 2 min 16 s on one CPU core (docs/results.md)
    python examples/pohmm_co2.py --quick       # a smoke test
"""

from __future__ import annotations

import argparse
import json
import math
import time
from pathlib import Path

import numpy as np
import statsmodels.api as sm
import torch

import ebm
import estimators
import samplers

SYMBOLS = 3
MODELS = {
    "1 HMM x 8 states": (1, 8),
    "2 HMMs x 5": (2, 5),
    "3 HMMs x 4": (3, 4),
    "4 HMMs x 3": (4, 3),
}


def free_parameters(n_hmms: int, k: int) -> int:
    """Initial (K - 1), transition K (K - 1) and emission K (V - 1) probabilities per HMM."""
    return n_hmms * ((k - 1) + k * (k - 1) + k * (SYMBOLS - 1))


def co2_symbols(length: int) -> tuple[torch.Tensor, torch.Tensor, list[float]]:
    """(train, test) windows of one-hot symbols, shape (N, length, 3), and the two cut points."""
    y = sm.datasets.co2.load_pandas().data["co2"].interpolate().to_numpy()
    changes = np.diff(y)
    split = int(0.75 * len(changes))
    cuts = np.quantile(changes[:split], [1 / 3, 2 / 3])
    symbols = torch.as_tensor(np.digitize(changes, cuts))
    train = torch.stack([symbols[i : i + length] for i in range(0, split - length + 1, 2)])
    test = torch.stack(
        [symbols[i : i + length] for i in range(split, len(symbols) - length + 1, length)]
    )
    encode = lambda s: torch.nn.functional.one_hot(s, SYMBOLS).float()  # noqa: E731
    return encode(train), encode(test), [float(c) for c in cuts]


def em_reference(
    train: torch.Tensor, test: torch.Tensor, states: int, seed: int, iterations: int = 200
) -> torch.Tensor:
    """Per-window held-out log-likelihoods of an 8-state HMM fitted by EM (hmmlearn)."""
    from hmmlearn import hmm

    ref = hmm.CategoricalHMM(n_components=states, n_iter=iterations, random_state=seed, tol=1e-6)
    seqs = train.argmax(-1).numpy()
    ref.fit(seqs.reshape(-1, 1), lengths=[seqs.shape[1]] * len(seqs))
    return torch.tensor(
        [ref.score(s.reshape(-1, 1)) for s in test.argmax(-1).numpy()], dtype=torch.float64
    )


def plot(rows: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = list(rows)
    values = [rows[n]["test_ll"] for n in names]
    errors = [rows[n]["paired_stderr"] for n in names]
    fig, ax = plt.subplots(figsize=(7, 3.5))
    ax.errorbar(
        range(len(names)),
        values,
        yerr=[1.96 * e for e in errors],
        fmt="o",
        capsize=4,
        color="#2171b5",
    )
    ax.axhline(values[0], color="#999999", lw=0.8, ls="--")
    ax.set_xticks(range(len(names)), names, rotation=15)
    ax.set_ylabel("held-out log p(x) per window (nats)")
    ax.set_title("CO2 weekly changes: products of HMMs vs one HMM")
    ax.text(
        0.01,
        0.02,
        "bars: 95% intervals of the difference from the first model (paired)",
        transform=ax.transAxes,
        fontsize=8,
        color="#555555",
    )
    fig.savefig(path, dpi=120, bbox_inches="tight")
    plt.close(fig)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--length", type=int, default=8)
    parser.add_argument("--epochs", type=int, default=100)
    parser.add_argument("--lr", type=float, default=0.1)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, default=Path("runs/pohmm_co2"))
    parser.add_argument("--ais-chains", type=int, default=200, help="for the AIS check of log Z")
    parser.add_argument("--betas", type=int, default=1000, help="for the AIS check of log Z")
    parser.add_argument("--quick", action="store_true")
    args = parser.parse_args()
    if args.quick:
        args.length, args.epochs, args.ais_chains, args.betas = 5, 2, 20, 50
    args.out.mkdir(parents=True, exist_ok=True)
    train, test, cuts = co2_symbols(args.length)
    print(f"{len(train)} training and {len(test)} test windows of {args.length} weeks")
    per_example, rows = {}, {}
    for name, (n_hmms, k) in MODELS.items():
        torch.manual_seed(args.seed)
        model = ebm.models.pohmm(n_hmms, k, args.length, emission="categorical", symbols=SYMBOLS)
        start = time.perf_counter()
        ebm.fit(
            model,
            train,
            samplers.CD(5),
            epochs=args.epochs,
            batch_size=50,
            lr=args.lr,
            momentum=0.9,
            lr_schedule=ebm.linear_decay(args.epochs),
            generator=torch.Generator().manual_seed(args.seed),
            progress=not args.quick,
        )
        seconds = time.perf_counter() - start
        log_z = estimators.exact_log_z(model)
        ll = estimators.log_likelihood(model, test, log_z)
        per_example[name] = ll.extras["per_example"]
        row = {
            "hmms": n_hmms,
            "states": k,
            "free_parameters": free_parameters(n_hmms, k),
            "log_z": log_z.value,
            "test_ll": ll.value,
            "test_ll_stderr": ll.stderr,
            "train_seconds": seconds,
        }
        if n_hmms > 1:
            check = estimators.ais(
                model,
                num_chains=args.ais_chains,
                betas=estimators.schedules.linear(args.betas),
                generator=torch.Generator().manual_seed(args.seed),
                progress=False,
            )
            row.update({"ais_log_z": check.value, "ais_log_z_stderr": check.stderr})
            print(f"{name}: exact {log_z}; {check}")
        rows[name] = row
    per_example["EM, 1 HMM x 8 (hmmlearn)"] = em_reference(
        train, test, 8, args.seed, iterations=5 if args.quick else 200
    )
    rows["EM, 1 HMM x 8 (hmmlearn)"] = {
        "hmms": 1,
        "states": 8,
        "free_parameters": free_parameters(1, 8),
        "test_ll": float(per_example["EM, 1 HMM x 8 (hmmlearn)"].mean()),
    }
    baseline = per_example["1 HMM x 8 states"]
    n = len(baseline)
    print(f"held-out log p(x) per {args.length}-week window (exact), {n} windows:")
    for name, row in rows.items():
        diff = per_example[name] - baseline
        row["difference_from_single_hmm"] = float(diff.mean())
        row["paired_stderr"] = float(diff.std() / math.sqrt(n))
        row.setdefault("test_ll_stderr", float(per_example[name].std() / math.sqrt(n)))
        print(
            f"  {name:26s} {row['free_parameters']:3d} parameters  {row['test_ll']:8.3f} "
            f"± {row['test_ll_stderr']:.3f}   vs one HMM {row['difference_from_single_hmm']:+.3f} "
            f"± {row['paired_stderr']:.3f}"
        )
    plot(rows, args.out / "pohmm.png")
    record = {
        "args": {**vars(args), "out": str(args.out)},
        "cuts": cuts,
        "windows": {"train": len(train), "test": n},
        "results": rows,
    }
    (args.out / "results.json").write_text(json.dumps(record, indent=2))
    print(f"plot: {args.out / 'pohmm.png'}")


if __name__ == "__main__":
    main()
