"""Enumerable models trained on real data, shared by the benchmark scripts."""

from __future__ import annotations

import torch

import ebm
import samplers


def trained_models(quick: bool = False) -> dict[str, tuple[ebm.EnergyModel, torch.Tensor]]:
    """name -> (model, training data): RBMs small enough for exact log Z, trained as users would.

    - bars3-pcd: 9x8 RBM on 3x3 bars and stripes, PCD-1;
    - digits-pcd: 64x16 RBM on threshold-binarised 8x8 digits, PCD-1 (as ``ebm demo``);
    - digits-cd1: the same with CD-1 (PCD and CD models differ most in how hard they anneal).
    """
    epochs = 5 if quick else 30
    out = {}
    bars = ebm.datasets.bars_and_stripes(3)
    torch.manual_seed(0)
    model = ebm.models.rbm(9, 8, init_scale=0.1)
    ebm.fit(
        model,
        bars.repeat(10, 1),
        samplers.PCD(num_chains=100),
        epochs=2 * epochs,
        batch_size=14,
        lr=0.1,
        momentum=0.5,
        generator=torch.Generator().manual_seed(0),
        progress=False,
    )
    out["bars3-pcd"] = (model, bars)
    train, _ = ebm.datasets.digits(binarize="threshold")
    for name, neg in (("digits-pcd", samplers.PCD(num_chains=100)), ("digits-cd1", samplers.CD(1))):
        torch.manual_seed(0)
        model = ebm.models.rbm(64, 16)
        ebm.fit(
            model,
            train,
            neg,
            epochs=epochs,
            batch_size=20,
            lr=0.05,
            momentum=0.5,
            weight_decay=1e-4,
            generator=torch.Generator().manual_seed(0),
            progress=False,
        )
        out[name] = (model, train)
    return out
