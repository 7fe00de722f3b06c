"""A product of Student-t experts (FAS) learns filters from natural image patches.

Random 8x8 patches of scikit-learn's two bundled photographs (first averaged over 2 x 2 pixel
blocks, --downsample, which removes most JPEG block artefacts and sensor noise), each patch's mean
removed, reduced to their --components leading principal components (40: the finest, noisiest
frequencies are dropped, as is usual) and whitened. ``ebm.models.fas`` with 40 Student-t
constraints and a weak Gaussian term (scale 3) is trained by CD-1 with its exact auxiliary-variable
Gibbs sampler (Gamma precisions given x, a correlated Gaussian x given the precisions). The held-
out log-likelihood uses log Z from AIS (the precisions summed out, x annealed from its Gaussian
term) with its error, next to the exact log-likelihood of the best Gaussian; the difference is
paired, on the same test patches. The constraint filters, mapped back to pixels, are saved as a
picture, and how localised and how oriented they are is measured: the share of each filter's
squared weight inside its best 4x4 window, and the coherence of its structure tensor (how much one
gradient orientation dominates), each against the same measure for random directions of the
whitened space and for the filters that FastICA (scikit-learn) finds on the same whitened patches,
the classic reference for localised, oriented filters.

    python examples/image_patches.py             # about 4 minutes on one CPU core
    python examples/image_patches.py --quick     # a smoke test
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

SIDE = 8
WINDOW = 4


def locality(filters: torch.Tensor, window: int = WINDOW) -> torch.Tensor:
    """For each filter (rows, SIDE * SIDE pixels): the share of its squared weight inside its best
    window x window square (1 for a filter confined to one such square; about 0.4 for white
    noise on 8x8 with 4x4 windows)."""
    energy = filters.reshape(-1, 1, SIDE, SIDE) ** 2
    inside = torch.nn.functional.avg_pool2d(energy, window, stride=1) * window**2
    return inside.flatten(1).max(1).values / energy.flatten(1).sum(1)


def orientation_coherence(filters: torch.Tensor) -> torch.Tensor:
    """For each filter (rows, SIDE * SIDE pixels): how much one orientation dominates its local
    gradients, from the structure tensor J = sum over pixels of g g^T (g the image gradient):
    (lambda_1 - lambda_2) / (lambda_1 + lambda_2) of J, 1 for an edge or grating at one angle, near
    0 for a checkerboard or isotropic noise."""
    images = filters.reshape(-1, SIDE, SIDE)
    gy, gx = torch.gradient(images, dim=(1, 2))
    jxx, jyy, jxy = (gx * gx).sum((1, 2)), (gy * gy).sum((1, 2)), (gx * gy).sum((1, 2))
    return torch.sqrt((jxx - jyy) ** 2 + 4 * jxy**2) / (jxx + jyy)


def ica_filters(train: torch.Tensor, seed: int) -> torch.Tensor:
    """The unmixing filters (columns, in whitened coordinates) that FastICA finds on the whitened
    ``train`` patches: the reference for how localised the constraint filters can be."""
    from sklearn.decomposition import FastICA

    ica = FastICA(whiten=False, random_state=seed, max_iter=1000).fit(train.numpy())
    return torch.as_tensor(ica.components_, dtype=train.dtype).T


def save_filters(model: ebm.EnergyModel, white: torch.Tensor, path: Path) -> None:
    """Each constraint w_j acts on whitened x / s; in pixels it is W_white w_j, ordered by the
    norm of w_j."""
    w = model.factors["constraints"].weight.detach()
    pixels = (white @ w).T
    order = torch.argsort(-w.norm(dim=0))
    images = pixels[order].reshape(-1, SIDE, SIDE)
    ebm.plots.filter_grid(
        images, path, "Product of Student-t: constraint filters (pixels)", cols=9, dpi=100
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--train", type=int, default=20_000)
    parser.add_argument("--test", type=int, default=2_000)
    parser.add_argument("--components", type=int, default=40, help="principal components kept")
    parser.add_argument("--downsample", type=int, default=2, help="photograph block averaging")
    parser.add_argument("--constraints", type=int, default=40)
    parser.add_argument("--epochs", type=int, default=200)
    parser.add_argument("--lr", type=float, default=0.02)
    parser.add_argument("--ais-chains", type=int, default=200)
    parser.add_argument("--betas", type=int, default=10_000)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, default=Path("runs/image_patches"))
    parser.add_argument("--quick", action="store_true")
    args = parser.parse_args()
    if args.quick:
        args.train, args.test, args.epochs, args.ais_chains, args.betas = 500, 200, 1, 20, 50
    args.out.mkdir(parents=True, exist_ok=True)
    raw = ebm.datasets.image_patches(
        args.train + args.test, size=SIDE, seed=args.seed, downsample=args.downsample
    )
    white, mean = ebm.datasets.pca_whitening(raw[: args.train], drop=SIDE * SIDE - args.components)
    data = (raw - mean) @ white
    train, test = data[: args.train], data[args.train :]
    dim = train.shape[1]

    torch.manual_seed(args.seed)
    model = ebm.models.fas(dim, args.constraints, scale=3.0, init_scale=0.1).double()
    g = torch.Generator().manual_seed(args.seed)
    start = time.perf_counter()
    ebm.fit(
        model,
        train,
        samplers.CD(1),
        epochs=args.epochs,
        batch_size=100,
        lr=args.lr,
        momentum=0.9,
        lr_schedule=ebm.linear_decay(args.epochs),
        generator=g,
        progress=not args.quick,
    )
    train_seconds = time.perf_counter() - start
    log_z = estimators.ais(
        model,
        num_chains=args.ais_chains,
        betas=estimators.schedules.linear(args.betas),
        generator=g,
        progress=not args.quick,
    )
    print(log_z)
    fas_ll = estimators.log_likelihood(model, test, log_z)
    gaussian = torch.distributions.MultivariateNormal(train.mean(0), torch.cov(train.T))
    gauss_per = gaussian.log_prob(test)
    diff = fas_ll.extras["per_example"] - gauss_per
    gain_se = math.sqrt(float(diff.var()) / len(diff) + log_z.stderr**2)
    print(f"held-out log p(x) per {dim}-dimensional whitened patch:")
    print(f"  Gaussian (exact)               {float(gauss_per.mean()):9.3f}")
    print(f"  product of Student-t (AIS)     {fas_ll.value:9.3f} ± {fas_ll.stderr:.3f}")
    print(f"  gain over the Gaussian         {float(diff.mean()):+9.3f} ± {gain_se:.3f}")
    save_filters(model, white, args.out / "filters.png")
    ebm.save(model, args.out / "fas.safetensors")
    pixels = {
        "learned": (white @ model.factors["constraints"].weight.detach()).T,
        "random": (white @ torch.randn(dim, 1000, generator=g, dtype=white.dtype)).T,
        "ica": (white @ ica_filters(train, args.seed)).T,
    }
    shape_record = {}
    for measure, describe in (
        (locality, f"locality (share of squared weight in the best {WINDOW}x{WINDOW} window)"),
        (orientation_coherence, "orientation (coherence of the structure tensor)"),
    ):
        learned, chance, ica = (measure(pixels[k]) for k in ("learned", "random", "ica"))
        threshold = float(torch.quantile(chance, 0.95))
        above = float((learned > threshold).double().mean())
        ica_above = float((ica > threshold).double().mean())
        print(
            f"{describe}, median: learned filters {float(learned.median()):.2f}, FastICA "
            f"{float(ica.median()):.2f}, random directions {float(chance.median()):.2f}; above "
            f"the random directions' 95th percentile ({threshold:.2f}): {above:.0%} of the "
            f"learned filters, {ica_above:.0%} of ICA's"
        )
        name = measure.__name__
        shape_record |= {
            f"{name}_median": float(learned.median()),
            f"{name}_random_median": float(chance.median()),
            f"{name}_random_95th": threshold,
            f"{name}_share_above_random": above,
            f"{name}_ica_median": float(ica.median()),
            f"{name}_share_above_random_ica": ica_above,
        }
    record = {
        "args": {**vars(args), "out": str(args.out)},
        "gaussian": float(gauss_per.mean()),
        "fas": fas_ll.value,
        "fas_stderr": fas_ll.stderr,
        "gain": float(diff.mean()),
        "gain_stderr": gain_se,
        "log_z": log_z.value,
        "log_z_stderr": log_z.stderr,
        "log_z_ess": log_z.ess,
        "train_seconds": train_seconds,
        "ais_seconds": log_z.seconds,
        **shape_record,
    }
    (args.out / "results.json").write_text(json.dumps(record, indent=2))
    print(f"filters: {args.out / 'filters.png'}")


if __name__ == "__main__":
    main()
