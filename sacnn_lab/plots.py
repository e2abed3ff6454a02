"""Figures. Every function returns a matplotlib ``Figure`` (never shows it, never writes a file unless
given a path); figures are built without pyplot so that they work headless and display once in
notebooks."""

from __future__ import annotations

import math
import os
from typing import Sequence

import numpy as np
from matplotlib.figure import Figure
from matplotlib.patches import Rectangle

BOX_COLOUR = "#e8291c"


def _grid(n: int, cols: int, cell: float = 2.0) -> tuple[Figure, np.ndarray]:
    cols = max(1, min(cols, n))
    rows = math.ceil(n / cols)
    fig = Figure(figsize=(cell * cols, cell * rows), layout="constrained")
    axes = np.atleast_1d(fig.subplots(rows, cols, squeeze=False).ravel())
    for ax in axes:
        ax.set_axis_off()
    return fig, axes


def draw_boxes(ax, boxes: Sequence[Sequence[int]], colour: str = BOX_COLOUR, lw: float = 1.2) -> None:
    """Draw ``(x0, y0, x1, y1)`` boxes (x1/y1 exclusive) on an image axis."""
    for x0, y0, x1, y1 in boxes:
        ax.add_patch(Rectangle((x0 - 0.5, y0 - 0.5), x1 - x0, y1 - y0, fill=False, ec=colour, lw=lw))


def gallery(images: np.ndarray, labels: Sequence[int] | None = None,
            boxes: Sequence[Sequence[Sequence[int]]] | None = None, cols: int = 8,
            title: str | None = None, path: str | os.PathLike | None = None) -> Figure:
    """A grid of gray images with their true boxes (the paper's Figure 4a).

    Args:
        images: ``(N, H, W)`` uint8 images.
        labels: ``(N,)`` image-level labels, shown as each cell's title.
        boxes: per image, a list of ``(x0, y0, x1, y1)`` boxes.
        cols: cells per row.
        title: figure title.
        path: also save the figure there.

    Returns:
        The figure.
    """
    images = np.asarray(images)
    if images.ndim != 3:
        raise ValueError(f"images must be (N, H, W), got shape {images.shape}")
    fig, axes = _grid(len(images), cols)
    for i, img in enumerate(images):
        ax = axes[i]
        ax.imshow(img, cmap="gray", vmin=0, vmax=255, interpolation="nearest")
        if boxes is not None:
            draw_boxes(ax, boxes[i])
        if labels is not None:
            ax.set_title("defective" if labels[i] else "defect-free", fontsize=8)
    if title:
        fig.suptitle(title)
    if path is not None:
        fig.savefig(path, dpi=110)
    return fig
