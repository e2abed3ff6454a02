"""Interactive views for notebooks (ipywidgets), built on the recorded history: nothing is retrained.

``ConvergenceExplorer(history_or_run_folder)`` shows the probe images with their defect maps after any
recorded epoch: an **epoch slider**, a **threshold slider** and a choice of **binarisation** (threshold,
Otsu, non-maximum suppression) redraw the grid at once. The figure is built once; a change only updates
its data (``set_data``) and re-renders it into an image widget. Without a live kernel (a notebook viewed
on GitHub or exported to HTML) the explorer shows its current figure as a static PNG.
"""

from __future__ import annotations

import io
import math
import os
from pathlib import Path
from typing import Any, Sequence

import numpy as np
from matplotlib.figure import Figure
from matplotlib.patches import Rectangle

from .history import History
from .inference import binarise, localise
from .plots import BOX_COLOUR, draw_boxes, overlay

METHODS = {"threshold": "threshold", "Otsu": "otsu", "NMS": "nms"}


def _as_history(source: Any) -> History:
    if isinstance(source, History):
        return source
    if hasattr(source, "history") and isinstance(source.history, History):
        return source.history  # a Run
    if isinstance(source, (str, os.PathLike)):
        return History.load(Path(source))
    raise TypeError(f"expected a History, a Run or a run folder, not {type(source).__name__}")


class ConvergenceExplorer:
    """Epoch by epoch, how the competition converges onto the defect (the paper's Figures 7–9).

    Args:
        source: a :class:`~sacnn_lab.history.History`, a :class:`~sacnn_lab.experiment.Run` or a run
            folder (e.g. trained elsewhere on a GPU and copied to a laptop).
        images: indices of the probe images to show (default: all, at most 16).
        cols: images per row.
        epoch: the epoch shown first (default: the last recorded).
        threshold: the first threshold (for ``"threshold"`` and ``"nms"``).
        method: ``"threshold"``, ``"otsu"`` or ``"nms"``.
        box_size: the NMS box side in pixels (default: a quarter of the image side).

    Attributes:
        epoch_slider, threshold_slider, method_dropdown: the controls (ipywidgets).
        image: the ``ipywidgets.Image`` holding the rendered figure.
        figure: the matplotlib figure (updated in place).
        widget: the whole view (display it, or just put the explorer last in a cell).
    """

    def __init__(self, source: Any, images: Sequence[int] | None = None, cols: int = 8, epoch: int | None = None,
                 threshold: float = 0.5, method: str = "threshold", box_size: int | None = None):
        import ipywidgets as W

        self.history = _as_history(source)
        h = self.history
        if not h.recorded_epochs or h.probe_images is None:
            raise ValueError("this history holds no probe maps: train with the ProbeRecorder callback")
        if method not in METHODS.values():
            raise ValueError(f"method must be one of {sorted(METHODS.values())}, not {method!r}")
        if not 0.0 <= threshold <= 1.0:
            raise ValueError(f"threshold must lie in [0, 1], not {threshold}")
        n = len(h.probe_images)
        self.indices = list(range(min(n, 16))) if images is None else [int(i) for i in images]
        if not self.indices or min(self.indices) < 0 or max(self.indices) >= n:
            raise ValueError(f"images must be indices into the {n} probe images")
        self.box_size = box_size or max(8, h.probe_images.shape[1] // 4)
        epochs = h.recorded_epochs
        start = epochs[-1] if epoch is None else epoch
        if start not in epochs:
            raise ValueError(f"epoch {start} was not recorded; recorded epochs: {epochs}")

        self.epoch_slider = W.SelectionSlider(options=epochs, value=start, description="epoch",
                                              continuous_update=False)
        self.threshold_slider = W.FloatSlider(value=threshold, min=0.0, max=1.0, step=0.01,
                                              description="threshold", continuous_update=False)
        self.method_dropdown = W.Dropdown(options=list(METHODS.items()), value=method, description="locate")
        self.image = W.Image(format="png")
        self.status = W.HTML()
        self._build_figure(cols)
        for w in (self.epoch_slider, self.threshold_slider, self.method_dropdown):
            w.observe(lambda _change: self.update(), names="value")
        self.widget = W.VBox([W.HBox([self.epoch_slider, self.method_dropdown, self.threshold_slider]),
                              self.status, self.image])
        self.update()

    # ---- the figure, built once ------------------------------------------------------------------
    def _build_figure(self, cols: int) -> None:
        h = self.history
        cols = max(1, min(cols, len(self.indices)))
        rows = math.ceil(len(self.indices) / cols)
        self.figure = Figure(figsize=(1.9 * cols, 2.05 * rows), layout="constrained")
        axes = np.atleast_1d(self.figure.subplots(rows, cols, squeeze=False).ravel())
        self._cells = []
        H, W = h.probe_images.shape[1:3]  # gray or colour probe images
        for ax in axes:
            ax.set_axis_off()
        for ax, i in zip(axes, self.indices):
            img = ax.imshow(np.zeros((H, W, 3), np.uint8), interpolation="nearest")
            mask = ax.imshow(np.zeros((H, W, 4), np.float32), interpolation="nearest")
            draw_boxes(ax, [b for b in h.probe_boxes[i] if b[0] >= 0], colour="white")
            title = ax.set_title("", fontsize=8)
            self._cells.append({"i": i, "ax": ax, "img": img, "mask": mask, "title": title, "found": []})

    # ---- state ------------------------------------------------------------------------------------
    @property
    def epoch(self) -> int:
        return int(self.epoch_slider.value)

    @property
    def method(self) -> str:
        return str(self.method_dropdown.value)

    @property
    def threshold(self) -> float:
        return float(self.threshold_slider.value)

    def show(self, epoch: int | None = None, threshold: float | None = None, method: str | None = None) -> None:
        """Set any control programmatically (the view redraws once per change)."""
        if epoch is not None:
            self.epoch_slider.value = epoch
        if method is not None:
            self.method_dropdown.value = method
        if threshold is not None:
            self.threshold_slider.value = threshold

    def current_maps(self) -> np.ndarray:
        """``(n, H, W)`` maps of the shown images at the shown epoch (input resolution)."""
        return self.history.maps_upsampled(self.epoch)[self.indices]

    def update(self) -> None:
        """Redraw the grid for the current controls (updates data only) and re-render the image."""
        h = self.history
        maps = self.current_maps()
        scores = h.probe_scores[self.epoch][self.indices]
        method, thr = self.method, self.threshold
        self.threshold_slider.disabled = method == "otsu"
        hits = 0
        n_def = 0
        for cell, m, s in zip(self._cells, maps, scores):
            i = cell["i"]
            cell["img"].set_data(overlay(h.probe_images[i], m, alpha=0.35))
            region = binarise(m, method="otsu" if method == "otsu" else "threshold", threshold=thr)
            rgba = np.zeros((*m.shape, 4), np.float32)
            rgba[region] = (1.0, 0.1, 0.1, 0.45)
            cell["mask"].set_data(rgba)
            for patch in cell["found"]:
                patch.remove()
            boxes = localise(m, method=method, threshold=thr, box_size=self.box_size) if s >= 0.5 else []
            cell["found"] = [cell["ax"].add_patch(Rectangle((b.x0 - 0.5, b.y0 - 0.5), b.x1 - b.x0, b.y1 - b.y0,
                                                            fill=False, ec=BOX_COLOUR, lw=1.2, ls="--"))
                             for b in boxes]
            truth = [b for b in h.probe_boxes[i] if b[0] >= 0]
            if truth:
                n_def += 1
                y, x = np.unravel_index(int(np.argmax(m)), m.shape)
                hit = any(x0 <= x < x1 and y0 <= y < y1 for x0, y0, x1, y1 in truth)
                hits += hit
            cell["title"].set_text(f"p={s:.2f}" + (" ✓" if truth and hit else " ✗" if truth else ""))
        self.status.value = (f"<b>epoch {self.epoch}</b> · {method}"
                             + ("" if method == "otsu" else f" at {thr:.2f}")
                             + f" · pointing game on these images: {hits}/{n_def}"
                             + " · white: true boxes, dashed red: located defects")
        self.image.value = self.png()

    def png(self) -> bytes:
        """The current figure as PNG bytes."""
        buf = io.BytesIO()
        self.figure.savefig(buf, format="png", dpi=90)
        return buf.getvalue()

    # ---- display ----------------------------------------------------------------------------------
    def _repr_mimebundle_(self, **kwargs: Any) -> dict:
        bundle = self.widget._repr_mimebundle_(**kwargs) or {}
        if isinstance(bundle, tuple):
            bundle = bundle[0]
        bundle = dict(bundle)
        import base64

        bundle["image/png"] = base64.b64encode(self.png()).decode()  # the static view, without a kernel
        return bundle


def explore(source: Any, **kwargs: Any) -> ConvergenceExplorer:
    """``ConvergenceExplorer(source, **kwargs)``: one call from a notebook."""
    return ConvergenceExplorer(source, **kwargs)
