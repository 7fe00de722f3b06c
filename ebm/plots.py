"""Pictures of learned filters (matplotlib, headless)."""

from __future__ import annotations

import math
from pathlib import Path

from torch import Tensor

__all__ = ["filter_grid"]


def filter_grid(
    images: Tensor, path: str | Path, title: str, cols: int | None = None, dpi: int = 120
) -> Path:
    """Save ``images`` (N, H, W) as a grid of tiles (``cols`` per row, default about square), each
    on its own grey scale symmetric about zero, so that a filter's sign pattern shows whatever its
    size. Returns the path of the PNG."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    images = images.detach().cpu().float()
    cols = cols or math.ceil(math.sqrt(len(images)))
    rows = math.ceil(len(images) / cols)
    fig, axes = plt.subplots(rows, cols, figsize=(1.2 * cols, 1.2 * rows), squeeze=False)
    for ax in axes.flat:
        ax.set_axis_off()
    for ax, img in zip(axes.flat, images, strict=False):
        lim = float(img.abs().max()) or 1.0
        ax.imshow(img, cmap="gray", vmin=-lim, vmax=lim)
    fig.suptitle(title)
    path = Path(path)
    fig.savefig(path, dpi=dpi, bbox_inches="tight")
    plt.close(fig)
    return path
