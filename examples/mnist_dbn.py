"""A deep belief net as a joint model of MNIST images and labels (Hinton, Osindero & Teh 2006).

The net 784-500-500-2000 with 10 softmax label units joined to the top-level RBM (over the second
hidden layer and the 2,000 top units) is pretrained greedily (``ebm.dbn.pretrain_dbn``: each RBM
by CD-1 on binary draws of the layer below, the top RBM with the labels) and fine-tuned as a
generative model by contrastive wake-sleep (``ebm.dbn.up_down``, CD-``--top-sweeps`` in the top
RBM). It is then measured three ways:

- the generative classifier (``DBN.classify``: the deterministic up-pass, then the label of lowest
  free energy in the top RBM): test error, against the published 1.25%;
- log Z of the top RBM by AIS (``estimators.ais``, h summed out, x and the labels annealed from
  uniform) with its error and ESS;
- the test log-likelihood of the images: the variational bound of Salakhutdinov & Murray (2008)
  (``estimators.dbn_log_likelihood``, --bound-samples draws of the recognition model per test
  image, the labels summed out), and its importance-weighted refinement.

Training checkpoints into --out after every epoch (each RBM, then up-down); the same command
resumes a stopped run; the trained net is saved to OUT/dbn.safetensors (``ebm.dbn.load_dbn``).
Without a data directory, or with --quick, it runs on scikit-learn's 8x8 digits in seconds.

    python examples/mnist_dbn.py /path/to/mnist --threads 2      # the long run (hours on a CPU)
    python examples/mnist_dbn.py --quick                        # a smoke test on the digits
"""

from __future__ import annotations

import argparse
import json
import platform
import time
from pathlib import Path

import torch

import ebm
import estimators
import samplers

# Hinton, Osindero & Teh (2006): test error of the generative classifier (recalled from the
# paper, not re-checked here)
PUBLISHED_TEST_ERROR = 0.0125


def load_data(args):
    """(train images, train labels, test images, test labels), binary; MNIST binarised by a
    fixed draw (seed 0) from DIR, or the 8x8 digits thresholded."""
    if args.data is None or args.quick:
        train, test = ebm.datasets.digits()
        train_labels, test_labels = ebm.datasets.digits_labels()
        return train, train_labels, test, test_labels
    (train, train_labels), (test, test_labels) = ebm.datasets.mnist(
        args.data, binarize="stochastic", seed=0, return_labels=True
    )
    return train, train_labels, test, test_labels


def train(dbn, images, labels, args, generator) -> dict:
    seconds = {}
    start = time.perf_counter()
    histories = ebm.dbn.pretrain_dbn(
        dbn,
        images,
        lambda: samplers.CD(1),
        epochs=args.pretrain_epochs,
        labels=labels,
        batch_size=args.batch_size,
        lr=args.pretrain_lr,
        momentum=0.9,
        weight_decay=2e-4,
        generator=generator,
        progress=not args.quick,
        checkpoint=args.out / "pretrain.ckpt",
    )
    if histories[-1].interrupted:
        raise SystemExit("pretraining interrupted: run the same command again to resume")
    seconds["pretraining"] = time.perf_counter() - start
    start = time.perf_counter()
    ebm.dbn.up_down(
        dbn,
        images,
        labels=labels,
        epochs=args.up_down_epochs,
        batch_size=args.batch_size,
        lr=args.up_down_lr,
        momentum=0.9,
        weight_decay=2e-4,
        top_sweeps=args.top_sweeps,
        generator=generator,
        progress=not args.quick,
        checkpoint=args.out / "up_down.ckpt",
    )
    seconds["up_down"] = time.perf_counter() - start
    return seconds


def evaluate(dbn, test, test_labels, args, generator) -> dict:
    start = time.perf_counter()
    predicted = dbn.classify(test).argmax(1)
    error = float((predicted != test_labels).double().mean())
    log_z = estimators.ais(
        dbn.top,
        num_chains=args.ais_chains,
        betas=args.betas,
        generator=generator,
        progress=not args.quick,
    )
    print(f"top RBM: {log_z}")
    bound = estimators.dbn_log_likelihood(
        dbn, test, log_z, samples=args.bound_samples, generator=generator
    )
    return {
        "test_error": error,
        "log_z": log_z.value,
        "log_z_stderr": log_z.stderr,
        "log_z_ess": log_z.extras.get("ess"),
        "log_z_trusted": log_z.trusted,
        "test_bound": bound.value,
        "test_bound_stderr": bound.stderr,
        "test_importance_weighted": bound.extras["importance_weighted"],
        "evaluation_seconds": time.perf_counter() - start,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("data", nargs="?", type=Path, help="directory with the MNIST IDX files")
    parser.add_argument("--layers", type=int, nargs="+", default=[784, 500, 500, 2000])
    parser.add_argument("--pretrain-epochs", type=int, nargs="+", default=[30])
    parser.add_argument("--pretrain-lr", type=float, default=0.05)
    parser.add_argument("--up-down-epochs", type=int, default=100)
    parser.add_argument("--up-down-lr", type=float, default=0.001)
    parser.add_argument("--top-sweeps", type=int, default=3)
    parser.add_argument("--batch-size", type=int, default=100)
    parser.add_argument("--ais-chains", type=int, default=100)
    parser.add_argument("--betas", type=int, default=10_000)
    parser.add_argument("--bound-samples", type=int, default=20)
    parser.add_argument("--threads", type=int, help="torch threads (default: torch's choice)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, default=Path("runs/mnist_dbn"))
    parser.add_argument("--quick", action="store_true")
    args = parser.parse_args()
    if args.quick:
        args.layers = [64, 50, 50, 100]
        args.pretrain_epochs, args.up_down_epochs = [2], 2
        args.ais_chains, args.betas, args.bound_samples = 20, 200, 5
    if args.threads:
        torch.set_num_threads(args.threads)
    args.out.mkdir(parents=True, exist_ok=True)
    images, labels, test, test_labels = load_data(args)
    if args.layers[0] != images.shape[1]:
        raise SystemExit(f"--layers must start with {images.shape[1]} (the image size)")
    epochs = (
        args.pretrain_epochs * (len(args.layers) - 1)
        if len(args.pretrain_epochs) == 1
        else args.pretrain_epochs
    )
    args.pretrain_epochs = epochs
    generator = torch.Generator().manual_seed(args.seed)
    torch.manual_seed(args.seed)
    dbn = ebm.models.dbn(args.layers, labels=10)
    seconds = train(dbn, images, labels, args, generator)
    dbn.save(args.out / "dbn.safetensors")
    results = evaluate(dbn, test, test_labels, args, generator)
    print(
        f"test error {100 * results['test_error']:.2f}% (published {100 * PUBLISHED_TEST_ERROR}%)"
    )
    print(
        f"test bound on log p(v) {results['test_bound']:.2f} ± {results['test_bound_stderr']:.2f}"
        f" (importance-weighted {results['test_importance_weighted']:.2f})"
    )
    record = {
        "args": {k: str(v) if isinstance(v, Path) else v for k, v in vars(args).items()},
        "seconds": seconds,
        "machine": f"{platform.machine()}, {torch.get_num_threads()} threads",
        "results": results,
    }
    (args.out / "results.json").write_text(json.dumps(record, indent=2))


if __name__ == "__main__":
    main()
