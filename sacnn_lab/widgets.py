"""Interactive views for notebooks (ipywidgets), built on the recorded history: nothing is retrained.

``ConvergenceExplorer(history_or_run_folder)`` shows the probe images with their defect maps after any
recorded epoch, the defective ones and, beside them, defect-free ones (the images whose false winners the
competition pushes down). Its controls redraw the grid at once:

- an **epoch slider** with a **play** button that steps through the recorded epochs;
- **side by side**: a second epoch drawn next to the first;
- **binarisation** (threshold, Otsu, non-maximum suppression) and its **threshold**;
- the map's **opacity** over the image;
- the **view**: the map over the image, or the raw ``s×t`` map with each image's winning pixel marked;
- **maps**: SACNN's, or the Grad-CAM maps of a baseline run when one is given (``baseline=``);
- **save PNG** (the current view at 200 dpi) and **save GIF** (every recorded epoch, for slides).

The figure is built once; a change only updates its data (``set_data``) and re-renders it into an image
widget. Without a live kernel (a notebook viewed on GitHub or exported to HTML) the explorer shows its
current figure as a static PNG.
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
VIEWS = ("overlay", "raw map")
OFF = -1  # the side-by-side control's "no second epoch"


def _as_history(source: Any) -> History:
    if isinstance(source, History):
        return source
    if hasattr(source, "history") and isinstance(source.history, History):
        return source.history  # a Run
    if isinstance(source, (str, os.PathLike)):
        return History.load(Path(source))
    raise TypeError(f"expected a History, a Run or a run folder, not {type(source).__name__}")


def _nearest(raw: np.ndarray, H: int, W: int) -> np.ndarray:
    """``(s, t)`` -> ``(H, W)`` by nearest neighbour: each feature-map pixel as the block it covers."""
    s, t = raw.shape
    return raw[(np.arange(H) * s) // H][:, (np.arange(W) * t) // W]


class ConvergenceExplorer:
    """Epoch by epoch, how the competition converges onto the defect (the paper's Figures 7–9).

    Args:
        source: a :class:`~sacnn_lab.history.History`, a :class:`~sacnn_lab.experiment.Run` or a run
            folder (e.g. trained elsewhere on a GPU and copied to a laptop).
        images: indices of the probe images to show, or a kind of
            :meth:`~sacnn_lab.history.History.probe_indices` (``"defective"``, ``"multi"``, ...); default: every
            probe image, at most 16, the defective first.
        defect_free: how many defect-free probe images to show after ``images`` when those hold none (default 4;
            0 for none).
        cols: images per row.
        epoch: the epoch shown first (default: the last recorded).
        threshold: the first threshold (for ``"threshold"`` and ``"nms"``).
        method: ``"threshold"``, ``"otsu"`` or ``"nms"``.
        box_size: the NMS box side in pixels (default: a quarter of the image side).
        opacity: the map's weight over the image, in [0, 1].
        baseline: a baseline run (History, Run or folder) recorded on the same probe images: its Grad-CAM maps
            can then be shown in place of SACNN's (the baseline's latest recorded epoch not after the shown one).
        save_dir: where the save buttons write (default: the working directory).

    Attributes:
        epoch_slider, play, compare_dropdown, method_dropdown, threshold_slider, opacity_slider, view_toggle,
        maps_toggle, save_png_button, save_gif_button: the controls (ipywidgets).
        image, compare_image: the ``ipywidgets.Image`` holding the rendered figure, and the second epoch's.
        figure: the matplotlib figure (updated in place).
        widget: the whole view (display it, or just put the explorer last in a cell).
    """

    def __init__(self, source: Any, images: Sequence[int] | str | None = None, cols: int = 8,
                 epoch: int | None = None, threshold: float = 0.5, method: str = "threshold",
                 box_size: int | None = None, defect_free: int = 4, opacity: float = 0.35,
                 baseline: Any = None, save_dir: str | os.PathLike = "."):
        import ipywidgets as W

        self.history = _as_history(source)
        h = self.history
        if not h.recorded_epochs or h.probe_images is None:
            raise ValueError("this history holds no probe maps: train with the ProbeRecorder callback")
        if method not in METHODS.values():
            raise ValueError(f"method must be one of {sorted(METHODS.values())}, not {method!r}")
        if not 0.0 <= threshold <= 1.0:
            raise ValueError(f"threshold must lie in [0, 1], not {threshold}")
        if not 0.0 <= opacity <= 1.0:
            raise ValueError(f"opacity must lie in [0, 1], not {opacity}")
        self.indices = self._choose(images, defect_free)
        self.baseline = None if baseline is None else _as_history(baseline)
        if self.baseline is not None:
            b = self.baseline
            if not b.recorded_epochs or b.probe_images is None or b.probe_images.shape != h.probe_images.shape \
                    or not np.array_equal(b.probe_images, h.probe_images):
                raise ValueError("the baseline run must have recorded its maps on the same probe images "
                                 "(the same data configuration and probe seed)")
        self.box_size = box_size or max(8, h.probe_images.shape[1] // 4)
        self.save_dir = Path(save_dir)
        epochs = h.recorded_epochs
        start = epochs[-1] if epoch is None else epoch
        if start not in epochs:
            raise ValueError(f"epoch {start} was not recorded; recorded epochs: {epochs}")

        self.epoch_slider = W.SelectionSlider(options=epochs, value=start, description="epoch",
                                              continuous_update=False)
        self.play = W.Play(value=epochs.index(start), min=0, max=len(epochs) - 1, step=1, interval=900,
                           description="play", layout=W.Layout(width="150px"))
        W.link((self.play, "value"), (self.epoch_slider, "index"))
        self.compare_dropdown = W.Dropdown(options=[("off", OFF)] + [(str(e), e) for e in epochs], value=OFF,
                                           description="beside")
        self.threshold_slider = W.FloatSlider(value=threshold, min=0.0, max=1.0, step=0.01,
                                              description="threshold", continuous_update=False)
        self.method_dropdown = W.Dropdown(options=list(METHODS.items()), value=method, description="locate")
        self.opacity_slider = W.FloatSlider(value=opacity, min=0.0, max=1.0, step=0.05, description="opacity",
                                            continuous_update=False)
        self.view_toggle = W.ToggleButtons(options=list(VIEWS), value=VIEWS[0], description="view")
        self.maps_toggle = W.ToggleButtons(options=["SACNN", "Grad-CAM"], value="SACNN", description="maps",
                                           disabled=self.baseline is None,
                                           tooltips=["SACNN's defect maps", "the baseline run's Grad-CAM maps"])
        self.save_png_button = W.Button(description="save PNG", tooltip="the current view at 200 dpi")
        self.save_gif_button = W.Button(description="save GIF", tooltip="every recorded epoch, as an animation")
        self.image = W.Image(format="png")
        self.compare_image = W.Image(format="png", layout=W.Layout(display="none"))
        self.status = W.HTML()
        self.saved = W.HTML()
        self._build_figure(cols)
        for w in (self.epoch_slider, self.compare_dropdown, self.threshold_slider, self.method_dropdown,
                  self.opacity_slider, self.view_toggle, self.maps_toggle):
            w.observe(lambda _change: self.update(), names="value")
        self.save_png_button.on_click(lambda _b: self._saved(self.save_png()))
        self.save_gif_button.on_click(lambda _b: self._saved(self.save_gif()))
        self.widget = W.VBox([
            W.HBox([self.play, self.epoch_slider, self.compare_dropdown]),
            W.HBox([self.method_dropdown, self.threshold_slider, self.opacity_slider]),
            W.HBox([self.view_toggle, self.maps_toggle]),
            W.HBox([self.save_png_button, self.save_gif_button, self.saved]),
            self.status, W.HBox([self.image, self.compare_image])])
        self.update()

    def _choose(self, images: Sequence[int] | str | None, defect_free: int) -> list[int]:
        h = self.history
        n = len(h.probe_images)
        if images is None:
            order = h.probe_indices("defective") + h.probe_indices("defect-free")
            return order[:16] if len(order) == n else list(range(min(n, 16)))
        chosen = h.probe_indices(images) if isinstance(images, str) else [int(i) for i in images]
        if not chosen or min(chosen) < 0 or max(chosen) >= n:
            raise ValueError(f"images must be indices into the {n} probe images")
        good = h.probe_indices("defect-free")
        if defect_free > 0 and not set(chosen) & set(good):
            chosen = chosen + good[:defect_free]
        return chosen

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
            (winner,) = ax.plot([], [], marker="s", ms=7, mfc="none", mec="white", mew=1.6, ls="none")
            title = ax.set_title("", fontsize=8)
            self._cells.append({"i": i, "ax": ax, "img": img, "mask": mask, "title": title, "found": [],
                                "winner": winner})

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

    @property
    def opacity(self) -> float:
        return float(self.opacity_slider.value)

    @property
    def view(self) -> str:
        return str(self.view_toggle.value)

    @property
    def maps_source(self) -> str:
        """``"SACNN"`` or ``"Grad-CAM"``: whose maps are drawn."""
        return str(self.maps_toggle.value)

    @property
    def compare_epoch(self) -> int | None:
        """The epoch drawn beside the first, or ``None``."""
        v = int(self.compare_dropdown.value)
        return None if v == OFF else v

    def show(self, epoch: int | None = None, threshold: float | None = None, method: str | None = None,
             opacity: float | None = None, view: str | None = None, maps: str | None = None,
             beside: int | None = None) -> None:
        """Set any control programmatically (the view redraws once per change); ``beside=-1`` turns the second
        epoch off."""
        if epoch is not None:
            self.epoch_slider.value = epoch
        if method is not None:
            self.method_dropdown.value = method
        if threshold is not None:
            self.threshold_slider.value = threshold
        if opacity is not None:
            self.opacity_slider.value = opacity
        if view is not None:
            if view not in VIEWS:
                raise ValueError(f"view must be one of {VIEWS}, not {view!r}")
            self.view_toggle.value = view
        if maps is not None:
            if maps == "Grad-CAM" and self.baseline is None:
                raise ValueError("no baseline run was given: ConvergenceExplorer(..., baseline=run)")
            self.maps_toggle.value = maps
        if beside is not None:
            self.compare_dropdown.value = beside

    def _source(self, epoch: int) -> tuple[History, int]:
        """The history whose maps are drawn for ``epoch``, and its epoch (a baseline's latest recorded epoch not
        after ``epoch``, else its first)."""
        if self.maps_source == "SACNN" or self.baseline is None:
            return self.history, epoch
        recorded = self.baseline.recorded_epochs
        before = [e for e in recorded if e <= epoch]
        return self.baseline, (before[-1] if before else recorded[0])

    def current_maps(self, epoch: int | None = None) -> np.ndarray:
        """``(n, H, W)`` maps of the shown images at the shown epoch (or ``epoch``), input resolution."""
        h, e = self._source(self.epoch if epoch is None else epoch)
        return h.maps_upsampled(e)[self.indices]

    def raw_maps(self, epoch: int | None = None) -> np.ndarray:
        """``(n, s, t)`` feature-level maps of the shown images, as the network outputs them."""
        h, e = self._source(self.epoch if epoch is None else epoch)
        return h.maps(e)[self.indices]

    def winners(self, epoch: int | None = None) -> np.ndarray:
        """``(n, 2)`` the (row, column) of each shown image's winning pixel on the ``s×t`` map."""
        raw = self.raw_maps(epoch)
        flat = raw.reshape(len(raw), -1).argmax(1)
        return np.stack(np.unravel_index(flat, raw.shape[1:]), axis=1)

    # ---- drawing ----------------------------------------------------------------------------------
    def _draw(self, epoch: int) -> str:
        """Set the figure's data for ``epoch``; returns the status line."""
        from matplotlib import colormaps

        h = self.history
        src, src_epoch = self._source(epoch)
        maps = src.maps_upsampled(src_epoch)[self.indices]
        raw = src.maps(src_epoch)[self.indices]
        scores = src.probe_scores[src_epoch][self.indices]
        method, thr, raw_view = self.method, self.threshold, self.view == "raw map"
        H, W = h.probe_images.shape[1:3]
        hits = n_def = false_alarms = 0
        good_max = []
        for cell, m, r, s in zip(self._cells, maps, raw, scores):
            i = cell["i"]
            truth = [b for b in h.probe_boxes[i] if b[0] >= 0]
            for patch in cell["found"]:
                patch.remove()
            cell["found"] = []
            rgba = np.zeros((*m.shape, 4), np.float32)
            wr, wc = np.unravel_index(int(np.argmax(r)), r.shape)
            if raw_view:
                cell["img"].set_data((255 * colormaps["inferno"](np.clip(_nearest(r, H, W), 0, 1))[..., :3])
                                     .astype(np.uint8))
                cell["winner"].set_data([(wc + 0.5) * W / r.shape[1] - 0.5], [(wr + 0.5) * H / r.shape[0] - 0.5])
            else:
                cell["img"].set_data(overlay(h.probe_images[i], m, alpha=self.opacity))
                cell["winner"].set_data([], [])
                region = binarise(m, method="otsu" if method == "otsu" else "threshold", threshold=thr)
                rgba[region] = (1.0, 0.1, 0.1, 0.45)
                boxes = localise(m, method=method, threshold=thr, box_size=self.box_size) if s >= 0.5 else []
                cell["found"] = [cell["ax"].add_patch(Rectangle((b.x0 - 0.5, b.y0 - 0.5), b.x1 - b.x0, b.y1 - b.y0,
                                                                fill=False, ec=BOX_COLOUR, lw=1.2, ls="--"))
                                 for b in boxes]
            cell["mask"].set_data(rgba)
            if truth:
                n_def += 1
                y, x = np.unravel_index(int(np.argmax(m)), m.shape)
                hit = any(x0 <= x < x1 and y0 <= y < y1 for x0, y0, x1, y1 in truth)
                hits += hit
                mark = " ✓" if hit else " ✗"
            else:
                good_max.append(float(s))
                false_alarms += s >= 0.5
                mark = " good"
            winner = f" @({wr},{wc})" if raw_view else ""
            cell["title"].set_text(f"p={s:.2f}{mark}{winner}")
            cell["title"].set_color("tab:green" if not truth else "black")
        who = "SACNN" if src is h else f"Grad-CAM (baseline epoch {src_epoch})"
        line = (f"<b>epoch {epoch}</b> · {who} · {method}" + ("" if method == "otsu" else f" at {thr:.2f}")
                + (f" · pointing game on these images: {hits}/{n_def}" if n_def else ""))
        if good_max:
            line += (f" · defect-free: highest p {max(good_max):.2f}, "
                     f"{false_alarms}/{len(good_max)} called defective")
        return line + (" · white squares: the winners, @(row,col) on the s×t map; green: defect-free images"
                       if raw_view
                       else " · white: true boxes, dashed red: located defects; green: defect-free images")

    def update(self) -> None:
        """Redraw the grid for the current controls (updates data only) and re-render the image(s)."""
        self.threshold_slider.disabled = self.method == "otsu" or self.view == "raw map"
        self.method_dropdown.disabled = self.opacity_slider.disabled = self.view == "raw map"
        other = self.compare_epoch
        if other is not None:
            second = self._draw(other)
            self.compare_image.value = self.png()
        self.status.value = self._draw(self.epoch) + (
            "" if other is None else f"<br><i>right: </i>{second}")
        self.image.value = self.png()
        self.compare_image.layout.display = None if other is not None else "none"
        self.image.layout.width = self.compare_image.layout.width = "49%" if other is not None else None

    def png(self, dpi: int = 90) -> bytes:
        """The current figure as PNG bytes."""
        buf = io.BytesIO()
        self.figure.savefig(buf, format="png", dpi=dpi)
        return buf.getvalue()

    # ---- saving -----------------------------------------------------------------------------------
    def _saved(self, path: Path) -> None:
        self.saved.value = f"saved <code>{path}</code>"

    def save_png(self, path: str | os.PathLike | None = None, dpi: int = 200) -> Path:
        """Write the current view (the first epoch's grid) as a PNG, by default
        ``<save_dir>/explorer_epoch<e>.png`` at 200 dpi; returns the path."""
        path = Path(path) if path is not None else self.save_dir / f"explorer_epoch{self.epoch}.png"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(self.png(dpi))  # update() leaves the figure at the first epoch's view
        return path

    def save_gif(self, path: str | os.PathLike | None = None, epochs: Sequence[int] | None = None,
                 seconds_per_epoch: float = 0.8, dpi: int = 90) -> Path:
        """Write the view at every recorded epoch (or ``epochs``) as an animated GIF that loops, by default
        ``<save_dir>/explorer.gif``; returns the path. The controls are left as they were."""
        from PIL import Image, ImageDraw

        epochs = list(self.history.recorded_epochs if epochs is None else epochs)
        missing = [e for e in epochs if e not in self.history.recorded_epochs]
        if not epochs or missing:
            raise ValueError(f"epochs {missing} were not recorded; recorded: {self.history.recorded_epochs}")
        path = Path(path) if path is not None else self.save_dir / "explorer.gif"
        path.parent.mkdir(parents=True, exist_ok=True)
        frames = []
        for e in epochs:
            self._draw(e)
            grid = Image.open(io.BytesIO(self.png(dpi))).convert("RGB")
            frame = Image.new("RGB", (grid.width, grid.height + 22), "white")  # a strip above for the epoch
            frame.paste(grid, (0, 22))
            ImageDraw.Draw(frame).text((8, 5), f"epoch {e}", fill="black")
            frames.append(frame.convert("P", palette=Image.Palette.ADAPTIVE))
        self.update()
        frames[0].save(path, save_all=True, append_images=frames[1:], duration=int(1000 * seconds_per_epoch),
                       loop=0)
        return path

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
