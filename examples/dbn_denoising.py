"""Denoising with a joint model of images and labels: a deep belief net cleans digits crossed by
bars, with and without being told which digit it sees.

A DBN 64-100-100-200 with 10 label units joined to its top-level RBM is trained on scikit-learn's
8x8 digits (thresholded): greedy pretraining (``ebm.dbn.pretrain_dbn``), then contrastive
wake-sleep (``ebm.dbn.up_down``). Every test digit then gets structured noise: --bars random full
rows or columns switched on. ``DBN.denoise`` blends the bottom-up pass of the noisy image with the
top RBM's mean-field beliefs (--keep of the bottom-up evidence, --sweeps iterations) and runs the
top-down pass; with the label clamped to the true class the top RBM knows which digit to restore,
without it the label is inferred along the way. Measured on the test digits: the share of
pixels wrong (the cleaned image thresholded at 1/2 against the clean digit), for the noisy
input, the plain up-down reconstruction (keep = 1), the cleaned image without a label, and with
the true label, each with its standard error over the test digits. The picture (OUT/denoising.png)
shows the first digits in each version.

    python examples/dbn_denoising.py            # about a minute on 2 CPU cores
    python examples/dbn_denoising.py --quick    # a smoke test
"""

from __future__ import annotations

import argparse
import json
import math
from pathlib import Path

import torch

import ebm
import samplers

SIDE = 8


def add_bars(images: torch.Tensor, bars: int, generator: torch.Generator) -> torch.Tensor:
    """A copy of ``images`` (n, SIDE * SIDE) with ``bars`` random full rows or columns set to 1."""
    noisy = images.clone().reshape(-1, SIDE, SIDE)
    for i in range(len(noisy)):
        for _ in range(bars):
            line = int(torch.randint(SIDE, (1,), generator=generator))
            if bool(torch.randint(2, (1,), generator=generator)):
                noisy[i, line, :] = 1.0
            else:
                noisy[i, :, line] = 1.0
    return noisy.reshape(len(images), -1)


def pixel_error(cleaned: torch.Tensor, clean: torch.Tensor) -> tuple[float, float]:
    """(mean, standard error over images) of the share of pixels wrong after thresholding."""
    wrong = ((cleaned > 0.5).float() != clean).float().mean(1)
    return float(wrong.mean()), float(wrong.std() / math.sqrt(len(wrong)))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--layers", type=int, nargs="+", default=[64, 100, 100, 200])
    parser.add_argument("--pretrain-epochs", type=int, default=30)
    parser.add_argument("--up-down-epochs", type=int, default=30)
    parser.add_argument("--bars", type=int, default=1)
    parser.add_argument("--keep", type=float, default=0.5)
    parser.add_argument("--sweeps", type=int, default=20)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, default=Path("runs/dbn_denoising"))
    parser.add_argument("--quick", action="store_true")
    args = parser.parse_args()
    if args.quick:
        args.pretrain_epochs, args.up_down_epochs = 2, 1
    args.out.mkdir(parents=True, exist_ok=True)
    train, test = ebm.datasets.digits()
    train_labels, test_labels = ebm.datasets.digits_labels()
    generator = torch.Generator().manual_seed(args.seed)
    torch.manual_seed(args.seed)
    dbn = ebm.models.dbn(args.layers, labels=10)
    ebm.dbn.pretrain_dbn(
        dbn,
        train,
        lambda: samplers.CD(1),
        epochs=args.pretrain_epochs,
        labels=train_labels,
        batch_size=20,
        lr=0.05,
        momentum=0.9,
        weight_decay=2e-4,
        generator=generator,
        progress=not args.quick,
    )
    ebm.dbn.up_down(
        dbn,
        train,
        labels=train_labels,
        epochs=args.up_down_epochs,
        batch_size=20,
        lr=0.005,
        momentum=0.9,
        weight_decay=2e-4,
        top_sweeps=3,
        generator=generator,
        progress=not args.quick,
    )
    noisy = add_bars(test, args.bars, generator)
    versions = {
        "clean": test,
        "noisy": noisy,
        "up-down": dbn.denoise(noisy, sweeps=args.sweeps, keep=1.0),
        "no label": dbn.denoise(noisy, sweeps=args.sweeps, keep=args.keep),
        "true label": dbn.denoise(noisy, test_labels, sweeps=args.sweeps, keep=args.keep),
    }
    error = dbn.classify(noisy).argmax(1).ne(test_labels).double().mean()
    print(
        f"{len(test)} test digits, {args.bars} bar(s) each; classifier error on them "
        f"{100 * float(error):.1f}%"
    )
    print("pixels wrong (share, ± standard error over digits):")
    results = {}
    for name, images in versions.items():
        if name == "clean":
            continue
        mean, se = pixel_error(images, test)
        results[name] = {"pixels_wrong": mean, "stderr": se}
        print(f"  {name:10s} {100 * mean:6.2f}% ± {100 * se:.2f}")
    ebm.plots.image_rows(
        {k: v[:12] for k, v in versions.items()},
        args.out / "denoising.png",
        "digits crossed by bars, cleaned by the DBN",
        side=SIDE,
    )
    record = {"args": {**vars(args), "out": str(args.out)}, "results": results}
    (args.out / "results.json").write_text(json.dumps(record, indent=2))
    print(f"picture: {args.out / 'denoising.png'}")


if __name__ == "__main__":
    main()
