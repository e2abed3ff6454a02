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


def overlay(image: np.ndarray, prob_map: np.ndarray, alpha: float = 0.45, cmap: str = "jet") -> np.ndarray:
    """Blend a defect map over a gray image (like grad-cam's ``show_cam_on_image``).

    Args:
        image: ``(H, W)`` uint8 gray image.
        prob_map: ``(H, W)`` map in [0, 1].
        alpha: weight of the map's colours.
        cmap: matplotlib colour map.

    Returns:
        ``(H, W, 3)`` uint8 RGB image.
    """
    from matplotlib import colormaps

    image, prob_map = np.asarray(image), np.asarray(prob_map, np.float32)
    if image.shape != prob_map.shape:
        raise ValueError(f"image {image.shape} and map {prob_map.shape} must have the same shape")
    colours = colormaps[cmap](np.clip(prob_map, 0, 1))[..., :3]
    gray = np.repeat(image[..., None].astype(np.float32) / 255.0, 3, axis=2)
    return np.clip(255 * ((1 - alpha) * gray + alpha * colours), 0, 255).astype(np.uint8)


def defect_maps(images: np.ndarray, maps: np.ndarray, boxes: Sequence[Sequence[Sequence[int]]] | None = None,
                scores: Sequence[float] | None = None, labels: Sequence[int] | None = None, cols: int = 8,
                title: str | None = None, path: str | os.PathLike | None = None) -> Figure:
    """Test images with their defect maps overlaid and the true boxes drawn.

    Args:
        images: ``(N, H, W)`` uint8.
        maps: ``(N, H, W)`` defect probability maps at input resolution.
        boxes: per image, its true boxes.
        scores: ``(N,)`` image probabilities, shown in each title.
        labels: ``(N,)`` true labels, shown in each title.
        cols: cells per row.
        title: figure title.
        path: also save the figure there.
    """
    images, maps = np.asarray(images), np.asarray(maps)
    if images.shape != maps.shape:
        raise ValueError(f"images {images.shape} and maps {maps.shape} must have the same shape")
    fig, axes = _grid(len(images), cols)
    for i in range(len(images)):
        ax = axes[i]
        ax.imshow(overlay(images[i], maps[i]), interpolation="nearest")
        if boxes is not None:
            draw_boxes(ax, [b for b in boxes[i] if b[0] >= 0], colour="white")
        parts = []
        if labels is not None:
            parts.append("defective" if labels[i] else "defect-free")
        if scores is not None:
            parts.append(f"p={float(scores[i]):.2f}")
        if parts:
            ax.set_title(" ".join(parts), fontsize=8)
    if title:
        fig.suptitle(title)
    if path is not None:
        fig.savefig(path, dpi=110)
    return fig
