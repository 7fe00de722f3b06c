"""A gated RBM learns image shifts (Memisevic & Hinton 2010), on random-dot image pairs.

Pairs of 13x13 random-dot images: x has each pixel on with probability 0.1, and y is x shifted
(circularly) by one of several offsets. A factored gated RBM p(y | x) (``ebm.models.gated_rbm``,
x clamped) is trained with CD-1; its hidden units, p(h = 1 | x, y), are then used as features
for a logistic regression that predicts the offset of held-out pairs. The hidden units see only
products of filter responses on x and y, so they can only tell the offsets apart by learning
transformation-sensitive (phase-shifted) filter pairs, which are saved as a picture.

    python examples/gated_shifts.py                # about 20 s on 2 CPU cores
    python examples/gated_shifts.py --quick        # a smoke test
"""

from __future__ import annotations

import argparse
from pathlib import Path

import torch
from sklearn.linear_model import LogisticRegression

import ebm
import samplers

SIDE = 13
OFFSETS = [(0, 1), (0, -1), (1, 0), (-1, 0), (1, 1), (-1, -1), (0, 0)]


def shifted_pairs(n: int, generator: torch.Generator) -> tuple[dict, torch.Tensor]:
    """n pairs (x, y = x shifted by OFFSETS[label]) of flattened 13x13 binary images, and labels."""
    x = (torch.rand(n, SIDE, SIDE, generator=generator) < 0.1).float()
    labels = torch.randint(len(OFFSETS), (n,), generator=generator)
    y = torch.stack(
        [
            torch.roll(img, OFFSETS[k], dims=(0, 1))
            for img, k in zip(x, labels.tolist(), strict=True)
        ]
    )
    return {"x": x.flatten(1), "y": y.flatten(1)}, labels


def hidden_features(model: ebm.EnergyModel, pairs: dict) -> torch.Tensor:
    """p(h = 1 | x, y) for each pair."""
    with torch.no_grad():
        return model.conditional("h", pairs).mean


def offset_accuracy(model, train, train_labels, test, test_labels) -> float:
    """Held-out accuracy of a logistic regression from p(h | x, y) to the offset."""
    clf = LogisticRegression(max_iter=2000)
    clf.fit(hidden_features(model, train).numpy(), train_labels.numpy())
    return float(clf.score(hidden_features(model, test).numpy(), test_labels.numpy()))


def save_filters(model: ebm.EnergyModel, path: Path, count: int = 16) -> None:
    """The first ``count`` factors' filter pairs (Wx_f above Wy_f), on a symmetric colour scale."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    (factor,) = [f for f in model.factors.values() if isinstance(f, ebm.factors.Factored3Way)]
    wx, wy = (w.detach().cpu() for w in factor.factors[:2])
    count = min(count, wx.shape[1])
    fig, axes = plt.subplots(2, count, figsize=(count * 0.9, 2.2))
    for f in range(count):
        for row, w in enumerate((wx, wy)):
            img = w[:, f].reshape(SIDE, SIDE).numpy()
            lim = float(abs(img).max()) or 1.0
            axes[row, f].imshow(img, cmap="RdBu_r", vmin=-lim, vmax=lim)
            axes[row, f].axis("off")
    fig.suptitle("factor filter pairs: Wx (top), Wy (bottom)")
    fig.savefig(path, dpi=100, bbox_inches="tight")
    plt.close(fig)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--train", type=int, default=5000)
    parser.add_argument("--test", type=int, default=2000)
    parser.add_argument("--hidden", type=int, default=64)
    parser.add_argument("--factors", type=int, default=128)
    parser.add_argument("--epochs", type=int, default=150)
    parser.add_argument("--lr", type=float, default=0.1)
    parser.add_argument("--momentum", type=float, default=0.5)
    parser.add_argument("--init-scale", type=float, default=0.1)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, default=Path("runs/gated_shifts"))
    parser.add_argument("--quick", action="store_true")
    args = parser.parse_args()
    if args.quick:
        args.train, args.test, args.epochs = 500, 200, 2
    args.out.mkdir(parents=True, exist_ok=True)
    gen = torch.Generator().manual_seed(args.seed)
    train, train_labels = shifted_pairs(args.train, gen)
    test, test_labels = shifted_pairs(args.test, gen)
    torch.manual_seed(args.seed)
    model = ebm.models.gated_rbm(
        SIDE * SIDE, SIDE * SIDE, args.hidden, args.factors, init_scale=args.init_scale
    )
    untrained = offset_accuracy(model, train, train_labels, test, test_labels)
    ebm.fit(
        model,
        train,
        samplers.CD(1, clamp=["x"]),
        epochs=args.epochs,
        batch_size=100,
        lr=args.lr,
        momentum=args.momentum,
        generator=gen,
    )
    accuracy = offset_accuracy(model, train, train_labels, test, test_labels)
    ebm.save(model, args.out / "gated_rbm.safetensors")
    save_filters(model, args.out / "filters.png")
    print(
        f"offset accuracy on {args.test} held-out pairs: {accuracy:.1%} ({len(OFFSETS)} offsets; "
        f"chance {1 / len(OFFSETS):.1%}, the untrained model's features {untrained:.1%})"
    )
    print(f"model: {args.out / 'gated_rbm.safetensors'}; filters: {args.out / 'filters.png'}")


if __name__ == "__main__":
    main()
