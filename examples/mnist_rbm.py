"""Reproduce Salakhutdinov & Murray (2008): RBM 784-500 on MNIST, trained with CD-k, evaluated by AIS.

For each k in --cd: train a 784-500 binary RBM with CD-k on stochastically binarised MNIST (each
pixel intensity/255 the probability of a 1, drawn once with --seed; 50 epochs at a fixed learning
rate, then 50 with it decaying linearly), estimate log Z by AIS (100
chains x 14,500 betas of the published schedule, base-rate start), report the mean test
log-likelihood with its error, and sandwich it between forward AIS and RAISE on the first
--raise-examples test images. Published target for CD-25: -86.34 nats.

Every stage resumes: training checkpoints after each epoch (and on Ctrl-C), trained models are
saved and reused. Results go to OUT/results.json and OUT/results.md.

    python examples/mnist_rbm.py /path/to/mnist                 # the full protocol
    python examples/mnist_rbm.py /path/to/mnist --cd 25 --epochs 20
    python examples/mnist_rbm.py /path/to/mnist --quick          # a smoke test, seconds
"""

from __future__ import annotations

import argparse
import json
import math
import platform
from pathlib import Path

import torch

import ebm
import estimators
import samplers


def train(k, data, args, out: Path) -> tuple[ebm.EnergyModel, float]:
    """CD-k, batches of 100, momentum 0.5 for the first 5 epochs and 0.9 after, weight decay
    2e-4: ``--epochs`` at the learning rate ``--lr``, then ``--decay-epochs`` more with it falling
    linearly towards zero. Returns the model and the training time in seconds (interrupted and
    resumed time included)."""
    path, info = out / f"rbm_cd{k}.safetensors", out / f"rbm_cd{k}.json"
    if path.exists():
        print(f"CD-{k}: reusing {path}")
        seconds = json.loads(info.read_text())["train_seconds"] if info.exists() else math.nan
        return ebm.load(path, device=args.device), seconds
    torch.manual_seed(args.seed)
    model = ebm.models.rbm(784, args.hidden).to(args.device)
    gen = torch.Generator(device=args.device).manual_seed(args.seed)
    warm = min(5, args.epochs)
    seconds = 0.0
    rest = args.epochs - warm + args.decay_epochs
    decay = ebm.linear_decay(rest, start=rest - args.decay_epochs) if args.decay_epochs else None
    for phase, (epochs, momentum, schedule) in enumerate(((warm, 0.5, None), (rest, 0.9, decay))):
        if epochs <= 0:
            continue
        history = ebm.fit(
            model,
            data,
            samplers.CD(k),
            epochs=epochs,
            batch_size=100,
            lr=args.lr,
            momentum=momentum,
            weight_decay=2e-4,
            generator=gen,
            checkpoint=out / f"cd{k}_phase{phase}.ckpt",
            lr_schedule=schedule,
        )
        if history.interrupted:
            raise SystemExit(f"interrupted; run again to resume CD-{k} training")
        seconds += sum(history["seconds"])
    ebm.save(model, path)
    info.write_text(json.dumps({"train_seconds": seconds}))
    total = args.epochs + args.decay_epochs
    print(f"CD-{k}: trained {total} epochs in {seconds:.0f} s; saved {path}")
    return model, seconds


def evaluate(k, model, train_data, test, args) -> dict:
    gen = torch.Generator(device=args.device).manual_seed(args.seed + 1)
    base = ebm.base_rate(model, train_data)
    betas = (
        estimators.schedules.salakhutdinov_murray(tuple(args.schedule))
        if args.schedule
        else estimators.schedules.salakhutdinov_murray()
    )
    log_z = estimators.ais(model, num_chains=args.chains, betas=betas, base=base, generator=gen)
    ll = estimators.log_likelihood(model, test, log_z)
    print(log_z)
    print(ll)
    row = {
        "cd": k,
        "hidden": args.hidden,
        "epochs": args.epochs,
        "decay_epochs": args.decay_epochs,
        "log_z": log_z.value,
        "log_z_stderr": log_z.stderr,
        "log_z_ess": log_z.ess,
        "ais_seconds": log_z.seconds,
        "test_ll": ll.value,
        "test_ll_stderr": ll.stderr,
        "betas": log_z.num_betas,
        "chains": args.chains,
    }
    if args.raise_examples > 0:
        s = estimators.sandwich(
            model,
            test,
            num_chains=args.chains,
            reverse_chains=args.raise_chains,
            betas=betas,
            base=base,
            generator=gen,
            num_examples=args.raise_examples,
            log_z=log_z,
        )
        print(s)
        lo, hi = s.extras["lower"], s.extras["upper"]
        row.update(
            {
                "sandwich_examples": args.raise_examples,
                "raise_lower": lo.value,
                "raise_lower_stderr": lo.stderr,
                "ais_upper": hi.value,
                "ais_upper_stderr": hi.stderr,
                "sandwich_seconds": s.seconds,
            }
        )
    return row


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("data", type=Path, help="directory with the four MNIST IDX files")
    parser.add_argument("--cd", type=int, nargs="+", default=[1, 3, 25])
    parser.add_argument("--epochs", type=int, default=50, help="epochs at the full learning rate")
    parser.add_argument(
        "--decay-epochs", type=int, default=50, help="then epochs with the rate decaying to 0"
    )
    parser.add_argument("--hidden", type=int, default=500)
    parser.add_argument("--lr", type=float, default=0.05)
    parser.add_argument("--chains", type=int, default=100)
    parser.add_argument(
        "--schedule",
        type=int,
        nargs=3,
        metavar=("LOW", "MID", "HIGH"),
        help="betas in [0,.5), [.5,.9), [.9,1] (default 500 4000 10000)",
    )
    parser.add_argument("--raise-examples", type=int, default=100)
    parser.add_argument("--raise-chains", type=int, default=10)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--out", type=Path, default=Path("runs/mnist_rbm"))
    parser.add_argument("--quick", action="store_true", help="a tiny run that checks the pipeline")
    args = parser.parse_args()
    train_data, test = ebm.datasets.mnist(args.data, binarize="stochastic", seed=args.seed)
    if args.quick:
        train_data, test = train_data[:500], test[:100]
        args.cd, args.epochs, args.decay_epochs, args.hidden, args.chains = [1], 1, 1, 20, 20
        args.schedule, args.raise_examples, args.raise_chains = [10, 40, 100], 10, 2
    args.out.mkdir(parents=True, exist_ok=True)
    rows = []
    for k in args.cd:
        model, seconds = train(k, train_data.to(args.device), args, args.out)
        rows.append(
            {**evaluate(k, model, train_data, test.to(args.device), args), "train_seconds": seconds}
        )
    hardware = (
        f"{platform.processor() or platform.machine()}, torch {torch.__version__}, {args.device}"
    )
    (args.out / "results.json").write_text(
        json.dumps({"rows": rows, "hardware": hardware}, indent=2)
    )
    lines = [
        "| CD-k | epochs | log Z (AIS) | test log p(v) | RAISE lower | AIS upper |",
        "|---|---|---|---|---|---|",
    ]
    for r in rows:
        sw = (
            (
                f"{r['raise_lower']:.2f} ± {r['raise_lower_stderr']:.2f} | "
                f"{r['ais_upper']:.2f} ± {r['ais_upper_stderr']:.2f}"
            )
            if "raise_lower" in r
            else "- | -"
        )
        lines.append(
            f"| {r['cd']} | {r['epochs']}+{r['decay_epochs']} | {r['log_z']:.2f} ± {r['log_z_stderr']:.2f} | "
            f"{r['test_ll']:.2f} ± {r['test_ll_stderr']:.2f} | {sw} |"
        )
    (args.out / "results.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
