"""A mean-covariance RBM (Ranzato & Hinton 2010) on natural image patches, evaluated exactly.

Random 6x6 patches of scikit-learn's two bundled photographs, with each patch's mean removed and
PCA-whitened (35 dimensions: the patch mean's direction is dropped). Three models of the same
data, each with an exact held-out log-likelihood (the hidden states are enumerated, v integrated):

- the best single Gaussian (whitened data: N(mean, covariance) of the training patches);
- an isotropic Gaussian scale mixture (8 variances, EM): a model of each patch's contrast alone;
- a Gaussian-Bernoulli RBM with as many hidden units (12 by default; mean units only);
- an mcRBM with 8 covariance units pooling 32 squared filter outputs, and 4 mean units.

Whitening removes every second-order dependency, so what a model gains over the Gaussian comes
from the higher-order structure of images: contrast that varies from patch to patch and edges
whose presence changes the correlations, which is what covariance units model. Photographs have
many flat patches, so contrast alone (the scale mixture) is already worth a great deal; the
comparison says how much of that the mcRBM captures. The mcRBM's filters (in pixel space) are
saved as a picture.

    python examples/mcrbm_patches.py               # a few minutes on 2 CPU cores
    python examples/mcrbm_patches.py --quick       # a smoke test
"""

from __future__ import annotations

import argparse
import json
import math
import time
from pathlib import Path

import torch

import ebm
import estimators
import samplers

SIDE = 6


def gaussian_log_likelihood(train: torch.Tensor, test: torch.Tensor) -> estimators.Estimate:
    """Held-out mean log-density under the maximum-likelihood Gaussian of ``train``."""
    dist = torch.distributions.MultivariateNormal(train.mean(0), torch.cov(train.T))
    per = dist.log_prob(test)
    return estimators.Estimate(
        value=float(per.mean()),
        kind="point",
        method="Gaussian (exact)",
        quantity="mean log p(v)",
        stderr=float(per.std() / math.sqrt(len(per))),
        extras={"per_example": per},
    )


def scale_mixture_log_likelihood(
    train: torch.Tensor, test: torch.Tensor, k: int = 8, iterations: int = 200
) -> estimators.Estimate:
    """Held-out mean log-density under an isotropic Gaussian scale mixture,
    p(v) = sum_c pi_c N(v; 0, s_c^2 I), fitted by EM on ``train``: a model of contrast alone (how
    much of a patch's structure is its overall variance)."""
    d = train.shape[1]
    scales = torch.logspace(-3, 0.5, k, dtype=torch.float64)
    weights = torch.full((k,), 1 / k, dtype=torch.float64)

    def log_joint(x):
        r2 = (x**2).sum(1, keepdim=True)
        return torch.log(weights) - 0.5 * d * torch.log(2 * math.pi * scales) - 0.5 * r2 / scales

    for _ in range(iterations):
        resp = torch.softmax(log_joint(train), 1)
        weights = resp.mean(0)
        scales = (resp * (train**2).sum(1, keepdim=True)).sum(0) / (d * resp.sum(0))
    per = torch.logsumexp(log_joint(test), 1)
    return estimators.Estimate(
        value=float(per.mean()),
        kind="point",
        method="scale mixture (exact)",
        quantity="mean log p(v)",
        stderr=float(per.std() / math.sqrt(len(per))),
        extras={"per_example": per},
    )


def train_model(model, data, args, generator) -> float:
    start = time.perf_counter()
    ebm.fit(
        model,
        data,
        samplers.PCD(num_chains=100),
        epochs=args.epochs,
        batch_size=100,
        lr=args.lr,
        momentum=0.9,
        weight_decay=1e-4,
        lr_schedule=ebm.linear_decay(args.epochs),
        generator=generator,
        progress=not args.quick,
    )
    return time.perf_counter() - start


def save_filters(model: ebm.EnergyModel, white: torch.Tensor, path: Path) -> None:
    """The covariance filters C as pixel-space filters W C (what each applies to a raw patch),
    ordered by their largest pooling weight."""
    cov = model.factors["covariance"]
    filters = (white.float() @ cov.filters.detach()).T  # (F, SIDE^2)
    order = torch.argsort(-cov.pooling.detach().abs().max(1).values)
    images = filters[order].reshape(-1, SIDE, SIDE)
    ebm.plots.filter_grid(images, path, "mcRBM covariance filters (pixel space)", cols=8)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--train", type=int, default=20_000)
    parser.add_argument("--test", type=int, default=5_000)
    parser.add_argument("--epochs", type=int, default=30)
    parser.add_argument("--lr", type=float, default=0.01)
    parser.add_argument("--factors", type=int, default=32)
    parser.add_argument("--covariance", type=int, default=8)
    parser.add_argument("--mean", type=int, default=4)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, default=Path("runs/mcrbm_patches"))
    parser.add_argument("--quick", action="store_true")
    args = parser.parse_args()
    if args.quick:
        args.train, args.test, args.epochs = 1000, 500, 2
    args.out.mkdir(parents=True, exist_ok=True)
    g = torch.Generator().manual_seed(args.seed)
    raw = ebm.datasets.image_patches(args.train + args.test, size=SIDE, seed=args.seed)
    white, mean = ebm.datasets.pca_whitening(raw[: args.train])
    data = ((raw - mean) @ white).float()
    train, test = data[: args.train], data[args.train :]
    dim = train.shape[1]

    results = {
        "gaussian": gaussian_log_likelihood(train.double(), test.double()),
        "scale_mixture": scale_mixture_log_likelihood(train.double(), test.double()),
    }
    seconds = {}
    torch.manual_seed(args.seed)
    grbm = ebm.models.gaussian_rbm(dim, args.covariance + args.mean)
    seconds["grbm"] = train_model(grbm, train, args, g)
    torch.manual_seed(args.seed)
    mc = ebm.models.mcrbm(
        dim,
        n_covariance=args.covariance,
        n_mean=args.mean,
        n_factors=args.factors,
        init_scale=0.05,
    )
    seconds["mcrbm"] = train_model(mc, train, args, g)
    for name, model in (("grbm", grbm), ("mcrbm", mc)):
        log_z = estimators.exact_log_z(model)
        print(f"{name}: {log_z}")
        results[name] = estimators.log_likelihood(model, test, log_z)

    labels = {
        "gaussian": "Gaussian (full covariance)",
        "scale_mixture": "isotropic scale mixture, 8 scales",
        "grbm": f"Gaussian RBM, {args.covariance + args.mean} mean units",
        "mcrbm": f"mcRBM, {args.covariance} covariance + {args.mean} mean units",
    }
    # the same test patches under every model: the paired difference has a much smaller error
    base = results["gaussian"].extras["per_example"].double()
    gains = {}
    for name, est in results.items():
        diff = est.extras["per_example"].double() - base
        gains[name] = (float(diff.mean()), float(diff.std() / math.sqrt(len(diff))))
    print(f"held-out log p(v) per {dim}-dimensional whitened patch (exact), and its gain over")
    print("the Gaussian on the same patches:")
    for name, est in results.items():
        gain, err = gains[name]
        print(
            f"  {labels[name]:36s} {est.value:9.3f} ± {est.stderr:.3f}   "
            f"gain {gain:+7.3f} ± {err:.3f}"
        )
    save_filters(mc, white, args.out / "filters.png")
    ebm.save(mc, args.out / "mcrbm.safetensors")
    summary = {
        name: {
            "log_p": est.value,
            "stderr": est.stderr,
            "gain_over_gaussian": gains[name][0],
            "gain_stderr": gains[name][1],
            "train_seconds": seconds.get(name),
        }
        for name, est in results.items()
    }
    record = {"args": {**vars(args), "out": str(args.out)}, "results": summary}
    (args.out / "results.json").write_text(json.dumps(record, indent=2))
    print(f"filters: {args.out / 'filters.png'}")


if __name__ == "__main__":
    main()
