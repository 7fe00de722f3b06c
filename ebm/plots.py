"""Pictures of learned filters (matplotlib, headless)."""

from __future__ import annotations

import math
from pathlib import Path

from torch import Tensor

__all__ = ["filter_grid", "image_rows"]


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


def image_rows(
    rows: dict[str, Tensor], path: str | Path, title: str, side: int, dpi: int = 120
) -> Path:
    """Save rows of images in [0, 1] (each value of ``rows`` shaped (N, side * side), the same N
    for every row; its key labels the row) on one grey scale, white for 1. Returns the PNG's
    path."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = list(rows)
    cols = max(len(rows[k]) for k in names)
    fig, axes = plt.subplots(
        len(names), cols, figsize=(1.0 * cols, 1.1 * len(names)), squeeze=False
    )
    for r, name in enumerate(names):
        images = rows[name].detach().cpu().float().reshape(-1, side, side)
        for c, ax in enumerate(axes[r]):
            ax.set_xticks([])
            ax.set_yticks([])
            if c < len(images):
                ax.imshow(images[c], cmap="gray", vmin=0.0, vmax=1.0)
        axes[r][0].set_ylabel(name, rotation=0, ha="right", va="center", fontsize=8)
    fig.suptitle(title)
    path = Path(path)
    fig.savefig(path, dpi=dpi, bbox_inches="tight")
    plt.close(fig)
    return path
