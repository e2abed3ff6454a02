"""Figures. Every function returns a matplotlib ``Figure`` (never shows it, never writes a file unless
given a path); figures are built without pyplot so that they work headless and display once in
notebooks."""

from __future__ import annotations

import math
import os
from typing import Any, Sequence

import numpy as np
from matplotlib.figure import Figure
from matplotlib.patches import Rectangle

BOX_COLOUR = "#e8291c"


def _figure_png(fig: Figure) -> bytes:
    import io

    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=fig.dpi, bbox_inches="tight")
    return buf.getvalue()


def _figure_jpeg(fig: Figure) -> bytes:
    import io

    buf = io.BytesIO()
    fig.savefig(buf, format="jpeg", dpi=fig.dpi, bbox_inches="tight", pil_kwargs={"quality": 85})
    return buf.getvalue()


def _register_notebook_display() -> None:
    """Let a returned ``Figure`` (built without pyplot) display as a picture in Jupyter/IPython: PNG, or JPEG where
    ``SACNN_FIGURE_FORMAT=jpeg`` (the notebooks committed executed: photographs of fabric a fifth of the size)."""
    try:
        from IPython import get_ipython
    except ImportError:
        return
    shell = get_ipython()
    if shell is not None:
        if os.environ.get("SACNN_FIGURE_FORMAT", "png").lower() in ("jpeg", "jpg"):
            shell.display_formatter.formatters["image/jpeg"].for_type(Figure, _figure_jpeg)
        else:
            shell.display_formatter.formatters["image/png"].for_type(Figure, _figure_png)


_register_notebook_display()


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
    _stack_hw(images)
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


def _stack_hw(images: np.ndarray, what: str = "images") -> tuple[int, int]:
    """``(H, W)`` of a stack of gray ``(N, H, W)`` or colour ``(N, H, W, 3)`` images (a colour run's)."""
    if not (images.ndim == 3 or (images.ndim == 4 and images.shape[3] == 3)):
        raise ValueError(f"{what} must be (N, H, W), or (N, H, W, 3) in colour, got shape {images.shape}")
    return images.shape[1], images.shape[2]


def overlay(image: np.ndarray, prob_map: np.ndarray, alpha: float = 0.45, cmap: str = "jet") -> np.ndarray:
    """Blend a defect map over a gray or colour image (like grad-cam's ``show_cam_on_image``).

    Args:
        image: ``(H, W)`` uint8 gray image, or ``(H, W, 3)`` RGB.
        prob_map: ``(H, W)`` map in [0, 1].
        alpha: weight of the map's colours.
        cmap: matplotlib colour map.

    Returns:
        ``(H, W, 3)`` uint8 RGB image.
    """
    from matplotlib import colormaps

    image, prob_map = np.asarray(image), np.asarray(prob_map, np.float32)
    if image.shape[:2] != prob_map.shape or image.ndim not in (2, 3):
        raise ValueError(f"image {image.shape} and map {prob_map.shape} must have the same (H, W)")
    colours = colormaps[cmap](np.clip(prob_map, 0, 1))[..., :3]
    gray = image.astype(np.float32) / 255.0 if image.ndim == 3 else \
        np.repeat(image[..., None].astype(np.float32) / 255.0, 3, axis=2)
    return np.clip(255 * ((1 - alpha) * gray + alpha * colours), 0, 255).astype(np.uint8)


def prediction(image: np.ndarray, prob_map: np.ndarray, boxes: Sequence[Sequence[int]] = (),
               score: float | None = None, threshold: float = 0.5, name: str = "", min_side: int = 480,
               cmap: str = "inferno", path: str | os.PathLike | None = None) -> Figure:
    """One image's prediction, for a person to look at: the image at its own size or larger (its longer side
    at least ``min_side`` px), the defect map over it in a colour map that is transparent where the map is
    low (the image stays readable), the located boxes, the score against the threshold in the title, and a
    colour bar.

    Args:
        image: ``(H, W)`` uint8 gray image.
        prob_map: ``(H, W)`` defect probabilities in [0, 1].
        boxes: located ``(x0, y0, x1, y1, ...)`` boxes (x1/y1 exclusive; extra fields ignored).
        score: the image's score, or ``None``.
        threshold: the decision threshold the score is judged by.
        name: a label for the title (the file's name).
        min_side: the least length of the picture's longer side, in pixels.
        cmap: matplotlib colour map of the defect probability.
        path: also write the figure there (PNG).
    """
    from matplotlib import colormaps
    from matplotlib.cm import ScalarMappable
    from matplotlib.colors import Normalize

    image, prob_map = np.asarray(image), np.clip(np.asarray(prob_map, np.float32), 0, 1)
    if image.ndim not in (2, 3) or image.shape[:2] != prob_map.shape:
        raise ValueError(f"image {image.shape} and map {prob_map.shape} must be the same (H, W)")
    h, w = image.shape[:2]
    dpi = 100
    scale = max(1.0, min_side / max(h, w))
    fig = Figure(figsize=(w * scale / dpi + 1.4, h * scale / dpi + 0.7), dpi=dpi, layout="constrained")
    ax = fig.subplots()
    ax.imshow(image, cmap="gray", vmin=0, vmax=255, interpolation="nearest")
    colours = colormaps[cmap](prob_map)
    colours[..., 3] = 0.7 * prob_map  # transparent where nothing is found
    ax.imshow(colours, interpolation="bilinear")
    draw_boxes(ax, [b[:4] for b in boxes], colour="#3ee0ff", lw=1.6)
    ax.set_axis_off()
    verdict = ""
    if score is not None:
        verdict = (f"p = {score:.3f} {'≥' if score >= threshold else '<'} {threshold:g}: "
                   f"{'defective' if score >= threshold else 'defect-free'}"
                   + (f", {len(boxes)} box{'es' if len(boxes) != 1 else ''}" if score >= threshold else ""))
    ax.set_title(f"{name}\n{verdict}" if name and verdict else name or verdict, fontsize=10)
    fig.colorbar(ScalarMappable(Normalize(0, 1), colormaps[cmap]), ax=ax, fraction=0.046, pad=0.02,
                 label="defect probability")
    if path is not None:
        fig.savefig(path, dpi=dpi)
    return fig


def defect_maps(images: np.ndarray, maps: np.ndarray, boxes: Sequence[Sequence[Sequence[int]]] | None = None,
                scores: Sequence[float] | None = None, labels: Sequence[int] | None = None, cols: int = 8,
                title: str | None = None, path: str | os.PathLike | None = None) -> Figure:
    """Test images with their defect maps overlaid and the true boxes drawn.

    Args:
        images: ``(N, H, W)`` uint8.
        maps: ``(N, H, W)`` defect probability maps at input resolution.
        boxes: per image, its true boxes.
        scores: ``(N,)`` image probabilities, shown in each title with the call they make at 0.5.
        labels: ``(N,)`` true labels, shown in each title as the truth.
        cols: cells per row.
        title: figure title.
        path: also save the figure there.
    """
    images, maps = np.asarray(images), np.asarray(maps)
    if _stack_hw(images) != maps.shape[1:] or len(images) != len(maps):
        raise ValueError(f"images {images.shape} and maps {maps.shape} must have the same (N, H, W)")
    fig, axes = _grid(len(images), cols)
    for i in range(len(images)):
        ax = axes[i]
        ax.imshow(overlay(images[i], maps[i]), interpolation="nearest")
        if boxes is not None:
            draw_boxes(ax, [b for b in boxes[i] if b[0] >= 0], colour="white")
        parts = []  # which word is the truth, which the prediction
        if labels is not None:
            parts.append("truth: " + ("defective" if labels[i] else "defect-free"))
        if scores is not None:
            p = float(scores[i])
            parts.append(f"called {'defective' if p >= 0.5 else 'defect-free'} (p={p:.2f})")
        if parts:
            ax.set_title("\n".join(parts), fontsize=7)
    if title:
        fig.suptitle(title)
    if path is not None:
        fig.savefig(path, dpi=110)
    return fig


def batch_gallery(batch, cols: int = 8, title: str | None = None, masks: bool = False,
                  path: str | os.PathLike | None = None) -> Figure:
    """:func:`gallery` of a generated :class:`~data_gen.characters.CharacterBatch` (true boxes drawn; with
    ``masks=True`` the truth masks are tinted too)."""
    images = batch.images
    if masks:
        if batch.masks is None:
            raise ValueError("this batch was generated without masks: generate(..., masks=True)")
        images = images.copy()
        images[batch.masks] = 255 - images[batch.masks] // 2
    return gallery(images, batch.labels, [batch.boxes_of(i) for i in range(len(batch))], cols=cols,
                   title=title, path=path)


def font_sheet(generator, text: str = "Ag7", cols: int = 10, size: int | None = None,
               path: str | os.PathLike | None = None) -> Figure:
    """Every face a generator draws from, writing ``text`` (one cell per face, its name below).

    Args:
        generator: a :class:`~data_gen.characters.CharacterGenerator`.
        text: characters to draw (from its alphabet).
        cols: cells per row.
        size: font size in px (default: the middle of ``char_size``).
    """
    cfg = generator.config
    size = size or (cfg.char_size[0] + cfg.char_size[1]) // 2
    faces = generator.faces
    fig, axes = _grid(len(faces), cols, cell=1.3)
    for f, ax in enumerate(axes[:len(faces)]):
        glyphs = [generator.atlas.glyph(f, ch, size) for ch in text]
        top = min(g.top for g in glyphs)
        h = max(g.top + g.height for g in glyphs) - top
        w = sum(g.width for g in glyphs) + 2 * (len(glyphs) - 1)
        canvas = np.zeros((max(1, h), max(1, w)), np.uint8)
        x = 0
        for g in glyphs:
            canvas[g.top - top:g.top - top + g.height, x:x + g.width] = g.alpha
            x += g.width + 2
        ax.imshow(255 - canvas, cmap="gray", vmin=0, vmax=255)
        ax.set_title(faces[f].name[:22], fontsize=6)
    fig.suptitle(f"{len(faces)} font faces", fontsize=10)
    if path is not None:
        fig.savefig(path, dpi=110)
    return fig


def knob_sheet(config, knob: str, values: Sequence, n: int = 6, seed: int = 0,
               path: str | os.PathLike | None = None) -> Figure:
    """One row of ``n`` generated images per value of one generator knob (the rest as in ``config``).

    Args:
        config: a :class:`~data_gen.characters.CharacterConfig`.
        knob: the field to vary, e.g. ``"placement"``, ``"distractor_prob"``, ``"lines"``.
        values: its values, one row each.
        n: images per row (the same sample indices in every row).
        seed: the split's seed.
    """
    from dataclasses import replace

    from data_gen.characters import CharacterGenerator

    fig = Figure(figsize=(1.5 * n, 1.6 * len(values)), layout="constrained")
    axes = fig.subplots(len(values), n, squeeze=False)
    faces = None
    for r, v in enumerate(values):
        gen = CharacterGenerator(replace(config, **{knob: v}), faces=faces)
        faces = gen.faces
        b = gen.generate(seed, np.arange(n))
        for c in range(n):
            ax = axes[r, c]
            ax.imshow(b.images[c], cmap="gray", vmin=0, vmax=255)
            draw_boxes(ax, b.boxes_of(c))
            ax.set_xticks([])
            ax.set_yticks([])
        axes[r, 0].set_ylabel(f"{knob}={v}", fontsize=8)
    if path is not None:
        fig.savefig(path, dpi=110)
    return fig


def metric_curve(history, keys: Sequence[str] = ("val_accuracy", "val_pointing_game"), x: str = "epoch",
                 labels: Sequence[str] | None = None, path: str | os.PathLike | None = None) -> Figure:
    """Per-epoch figures of a history (e.g. the pointing game per epoch) as curves.

    Args:
        history: a :class:`~sacnn_lab.history.History`.
        keys: the figures to draw (epochs where one was not measured are skipped).
        x: ``"epoch"``, or ``"train_time"`` for the curve against seconds of training.
        labels: the legend's name of each key (default: the key, e.g. "val accuracy").
        path: also save the figure there.
    """
    if labels is not None and len(labels) != len(keys):
        raise ValueError(f"give one label per key: {len(labels)} labels for {len(keys)} keys")
    if x not in ("epoch", "train_time"):
        raise ValueError(f"x must be 'epoch' or 'train_time', not {x!r}")
    fig = Figure(figsize=(5.5, 3.2), layout="constrained")
    ax = fig.subplots()
    xs = history.series(x)
    for i, k in enumerate(keys):
        v = history.series(k)
        ok = np.isfinite(v)  # figures measured every few epochs: join the measured points
        ax.plot(xs[ok], v[ok], "o-", label=labels[i] if labels else k.replace("_", " "))
    ax.set(xlabel="epoch" if x == "epoch" else "seconds of training", ylim=(0, 1.02))
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    if path is not None:
        fig.savefig(path, dpi=110)
    return fig


def study_curves(table, figures: Sequence[str], by: str = "label", x: str = "epoch", cols: int = 3,
                 path: str | os.PathLike | None = None) -> Figure:
    """A study's per-epoch figures (e.g. :func:`~sacnn_lab.studies.aggregation_study`'s table): one panel per
    figure, one curve per run.

    Args:
        table: a DataFrame with the columns ``by``, ``x`` and ``figures``.
        figures: the columns to draw (a figure's unmeasured epochs are skipped).
        by: the column naming each run (a curve each).
        x: the column along the horizontal axis.
        cols: panels per row.
        path: also save the figure there.
    """
    missing = {by, x, *figures} - set(table.columns)
    if missing:
        raise ValueError(f"the table lacks the column(s) {sorted(missing)}")
    if not figures:
        raise ValueError("figures must name at least one column")
    fig, axes = _grid(len(figures), cols, cell=2.6)
    for ax, name in zip(axes, figures):
        for label, rows in table.groupby(by, sort=False):
            v = rows[name].to_numpy(np.float64)
            ok = np.isfinite(v)
            ax.plot(rows[x].to_numpy()[ok], v[ok], "o-", ms=3, label=str(label))
        ax.set_title(name.replace("val_", "").replace("_", " "), fontsize=9)
        ax.set_axis_on()
        ax.grid(alpha=0.3)
        ax.tick_params(labelsize=7)
    axes[0].legend(fontsize=7)
    if path is not None:
        fig.savefig(path, dpi=110)
    return fig


def _moving_average(x: np.ndarray, window: int) -> np.ndarray:
    if window <= 1 or len(x) < window:
        return x
    c = np.cumsum(np.insert(np.asarray(x, np.float64), 0, 0.0))
    return (c[window:] - c[:-window]) / window


def training_curves(history, window: int = 20, path: str | os.PathLike | None = None, x: str = "step",
                    shade: bool = True) -> Figure:
    """The paper's Figure 5: training loss and precision per step, with the validation figures per epoch.

    The competitive phase shows as a flat or fluctuating start before the loss falls and the precision
    rises; with ``shade`` it is found (:func:`~sacnn_lab.mechanism.competitive_phase`) and shaded.

    Args:
        history: a :class:`~sacnn_lab.history.History`.
        window: steps of the moving average drawn over the raw per-step values.
        path: also save the figure there.
        x: ``"step"`` or ``"samples"`` (samples seen, as the paper draws it).
        shade: shade the competitive phase, where the run has one.
    """
    from .mechanism import competitive_phase

    if x not in ("step", "samples"):
        raise ValueError(f"x must be 'step' or 'samples', not {x!r}")
    steps = history.steps
    loss = np.asarray(steps["loss"], np.float64)
    tp, fp = np.asarray(steps["tp"], np.float64), np.asarray(steps["fp"], np.float64)
    seen = np.cumsum(tp + fp + np.asarray(steps["tn"], np.float64) + np.asarray(steps["fn"], np.float64))
    xs = np.arange(1, len(loss) + 1) if x == "step" else seen
    fig = Figure(figsize=(10, 3.4), layout="constrained")
    ax1, ax2 = fig.subplots(1, 2)
    ax1.plot(xs, loss, color="0.75", lw=0.7, label="per step")
    ma = _moving_average(loss, window)
    ax1.plot(xs[len(xs) - len(ma):], ma, color="C0", lw=1.6, label=f"mean of {window} steps")
    label = "step" if x == "step" else "samples seen"
    ax1.set(xlabel=label, ylabel="training loss", title="(a) loss")
    tp_w, fp_w = _moving_average(tp, window), _moving_average(fp, window)
    with np.errstate(invalid="ignore", divide="ignore"):
        prec = tp_w / (tp_w + fp_w)
    ax2.plot(xs[len(xs) - len(prec):], prec, color="C1", lw=1.6, label=f"training, {window}-step window")
    ends = [r["steps"] for r in history.epochs]
    at = (lambda s: s) if x == "step" else (lambda s: seen[min(int(s), len(seen)) - 1] if len(seen) else 0)
    vp = history.series("val_precision")
    ok = np.isfinite(vp)
    if ok.any():
        ax2.plot([at(e) for e in np.asarray(ends)[ok]], vp[ok], "o-", color="C2", label="validation, per epoch")
    ax2.set(xlabel=label, ylabel="precision", title="(b) precision", ylim=(0, 1.02))
    phase = competitive_phase(history, window) if shade else None
    for ax in (ax1, ax2):
        for e in ends[:-1]:
            ax.axvline(at(e), color="0.9", lw=0.8, zorder=0)
        if phase is not None:
            ax.axvspan(xs[phase[0]], xs[phase[1]], color="C3", alpha=0.12, lw=0, label="competitive phase")
        ax.legend(fontsize=8)
    if path is not None:
        fig.savefig(path, dpi=110)
    return fig


def convergence(history, epochs: Sequence[int] | None = None, images: Sequence[int] | None = None,
                path: str | os.PathLike | None = None) -> Figure:
    """The paper's Figures 7 and 9: the same probe images, their defect maps after several epochs.

    Args:
        history: a :class:`~sacnn_lab.history.History` with recorded probe maps.
        epochs: epochs to show (default: up to 5 spread over the run, the first and last included).
        images: indices of probe images to show (default: up to 8).
        path: also save the figure there.

    Returns:
        A figure with one row of images per column block: row 0 the images with their true boxes, then
        one row per epoch.
    """
    rec = history.recorded_epochs
    if not rec:
        raise ValueError("this history has no recorded probe maps")
    missing: list[int] = []
    if epochs is None:
        idx = np.unique(np.linspace(0, len(rec) - 1, min(5, len(rec))).round().astype(int))
        epochs = [rec[i] for i in idx]
    else:  # e.g. the paper's epochs 1, 4, 7, 11, 17 asked of a shorter run: those it has, and a note
        missing = [int(e) for e in epochs if e not in rec]
        epochs = [int(e) for e in epochs if e in rec]
        if not epochs:
            raise ValueError(f"none of the epochs asked for is recorded in this run (recorded: {rec})")
    images = list(range(min(8, len(history.probe_images)))) if images is None else list(images)
    fig = Figure(figsize=(1.6 * len(images), 1.7 * (len(epochs) + 1)), layout="constrained")
    if missing:
        fig.suptitle(f"epoch(s) {', '.join(map(str, missing))} not in this run (its epochs: {rec[0]}–{rec[-1]})",
                     fontsize=9)
    axes = fig.subplots(len(epochs) + 1, len(images), squeeze=False)
    for j, i in enumerate(images):
        ax = axes[0, j]
        ax.imshow(history.probe_images[i], cmap="gray", vmin=0, vmax=255)
        draw_boxes(ax, [b for b in history.probe_boxes[i] if b[0] >= 0])
    axes[0, 0].set_ylabel("images", fontsize=9)
    for r, e in enumerate(epochs, start=1):
        maps = history.maps_upsampled(e)
        scores = history.probe_scores[e]
        for j, i in enumerate(images):
            ax = axes[r, j]
            ax.imshow(overlay(history.probe_images[i], maps[i]))
            ax.set_title(f"p={scores[i]:.2f}", fontsize=7)
        axes[r, 0].set_ylabel(f"epoch {e}", fontsize=9)
    for ax in axes.ravel():
        ax.set_xticks([])
        ax.set_yticks([])
    if path is not None:
        fig.savefig(path, dpi=110)
    return fig


def compare_maps(images: np.ndarray, maps: dict[str, np.ndarray], boxes: Sequence[Sequence[Sequence[int]]],
                 scores: dict[str, Sequence[float]] | None = None, title: str | None = None,
                 path: str | os.PathLike | None = None) -> Figure:
    """The paper's Figure 11: the same images, each method's defect map beside the others, true boxes drawn.

    Args:
        images: ``(N, H, W)`` uint8 images.
        maps: method name → ``(N, H, W)`` maps at input resolution in [0, 1] (e.g. ``{"SACNN": ...,
            "Grad-CAM": ...}``), one row per method, in the dict's order.
        boxes: per image, its true boxes ``(x0, y0, x1, y1)`` (``-1`` rows are skipped).
        scores: method name → ``(N,)`` image scores, shown above each map.
        title: figure title.
        path: also save the figure there.

    Returns:
        A figure with ``1 + len(maps)`` rows (the images, then one row per method) and ``N`` columns.
    """
    images = np.asarray(images)
    stack = (len(images), *_stack_hw(images))
    if not maps:
        raise ValueError("maps must name at least one method")
    for name, m in maps.items():
        if np.shape(m) != stack:
            raise ValueError(f"maps[{name!r}] has shape {np.shape(m)}, expected {stack}")
    n = len(images)
    fig = Figure(figsize=(1.7 * max(n, 2), 1.8 * (len(maps) + 1)), layout="constrained")
    axes = fig.subplots(len(maps) + 1, max(n, 1), squeeze=False)
    for j in range(n):
        true = [b for b in boxes[j] if b[0] >= 0]
        axes[0, j].imshow(images[j], cmap="gray", vmin=0, vmax=255, interpolation="nearest")
        draw_boxes(axes[0, j], true)
        for r, (name, m) in enumerate(maps.items(), start=1):
            ax = axes[r, j]
            ax.imshow(overlay(images[j], np.asarray(m[j])), interpolation="nearest")
            draw_boxes(ax, true, colour="white")
            if scores is not None and name in scores:
                ax.set_title(f"p={float(scores[name][j]):.2f}", fontsize=7)
    axes[0, 0].set_ylabel("images", fontsize=9)
    for r, name in enumerate(maps, start=1):
        axes[r, 0].set_ylabel(name, fontsize=9)
    for ax in axes.ravel():
        ax.set_xticks([])
        ax.set_yticks([])
    if title:
        fig.suptitle(title)
    if path is not None:
        fig.savefig(path, dpi=110)
    return fig


def detections(images: np.ndarray, maps: np.ndarray | None = None, masks: np.ndarray | None = None,
               scores: Sequence[float] | None = None, method: str = "otsu", threshold: float = 0.5,
               cols: int = 3, cell: float = 3.6, title: str | None = None,
               path: str | os.PathLike | None = None) -> Figure:
    """The paper's Figure 10: enlarged detection results. Each image with its defect map, the true region's
    outline (DAGM's ellipse, or any mask) in white, and the boxes :func:`~sacnn_lab.inference.localise`
    finds in red, each with its score.

    Boxes are drawn only where the image score says "defective" (``scores >= 0.5``, or always without
    scores): Otsu splits any map, also a defect-free one.

    Args:
        images: ``(N, H, W)`` uint8.
        maps: ``(N, H, W)`` defect probability maps at input resolution; ``None``: the images alone, with
            their truth outlined.
        masks: ``(N, H, W)`` bool truth, outlined; or ``None``.
        scores: ``(N,)`` image probabilities, shown in each title.
        method / threshold: how :func:`~sacnn_lab.inference.localise` binarises (``"threshold"``,
            ``"otsu"``).
        cols: images per row.
        cell: inches per image.
        title: figure title.
        path: also save the figure there.
    """
    from .inference import localise

    images = np.asarray(images)
    stack = (len(images), *_stack_hw(images)) if images.ndim in (3, 4) else None
    if stack is None or (maps is not None and stack != np.shape(maps)):
        raise ValueError(f"images and maps must both be (N, H, W), got {images.shape} and {np.shape(maps)}")
    if masks is not None and np.shape(masks) != stack:
        raise ValueError(f"masks must have the images' (N, H, W) {stack}, not {np.shape(masks)}")
    fig, axes = _grid(len(images), cols, cell)
    for i in range(len(images)):
        ax = axes[i]
        if maps is None:
            ax.imshow(images[i], cmap="gray", vmin=0, vmax=255, interpolation="bilinear")
        else:
            ax.imshow(overlay(images[i], maps[i], alpha=0.35), interpolation="bilinear")
        if masks is not None and masks[i].any():
            ax.contour(masks[i].astype(np.float32), levels=[0.5], colors="white", linewidths=1.2)
        found = maps is not None and (scores is None or float(scores[i]) >= 0.5)
        boxes = (localise(maps[i], method, threshold) if found else [])[:3]
        draw_boxes(ax, [(b.x0, b.y0, b.x1, b.y1) for b in boxes], lw=1.5)
        for b in boxes:
            ax.text(b.x0, b.y0 - 4, f"{b.score:.2f}", color=BOX_COLOUR, fontsize=7, va="bottom")
        if scores is not None:
            ax.set_title(f"p={float(scores[i]):.2f}", fontsize=9)
    if title:
        fig.suptitle(title)
    if path is not None:
        fig.savefig(path, dpi=110)
    return fig


def winner_gradient(images: np.ndarray, result: Any, labels: Sequence[int] | None = None, cols: int = 6) -> Figure:
    """Where one backward pass of the competition loss reaches the defective layer
    (:func:`~sacnn_lab.mechanism.winner_gradient`): each image above, the size of the gradient on its map's
    pixels below, the winner circled. One pixel per image is lit: the winner's.

    Args:
        images: ``(B, H, W)`` uint8.
        result: a :class:`~sacnn_lab.mechanism.WinnerGradient` of those images.
        labels: ``(B,)`` image labels, shown in the titles.
        cols: images shown (the first ``cols``).
    """
    n = min(cols, len(images))
    fig = Figure(figsize=(2.0 * n, 4.2), layout="constrained")
    axes = np.atleast_2d(fig.subplots(2, n, squeeze=False))
    for i in range(n):
        axes[0, i].imshow(images[i], cmap="gray", vmin=0, vmax=255)
        label = "" if labels is None else ("defective" if labels[i] else "defect-free")
        axes[0, i].set_title(label, fontsize=8)
        g = result.gradient[i]
        axes[1, i].imshow(g, cmap="magma")
        r, c = result.winners[i]
        axes[1, i].plot(c, r, "o", mfc="none", mec="cyan", ms=10, mew=1.5)
        axes[1, i].set_title(f"{int(result.touched[i])} pixel(s) with a gradient", fontsize=7)
        for ax in axes[:, i]:
            ax.set_xticks([])
            ax.set_yticks([])
    axes[0, 0].set_ylabel("image")
    axes[1, 0].set_ylabel("|gradient| on the map")
    return fig


def property_one(table: Any) -> Figure:
    """The paper's property 1, measured (:func:`~sacnn_lab.mechanism.property_one`): how much one gradient step
    changed each pixel's defective probability, against its distance from the image's winner (one thin line
    per image, their mean thick), on a log scale."""
    fig = Figure(figsize=(5.5, 3.4), layout="constrained")
    ax = fig.subplots()
    for _, g in table.groupby("image"):
        ax.plot(g["distance"], g["change"].clip(lower=1e-7), color="0.8", lw=0.7)
    mean = table.groupby("distance")["change"].mean()
    ax.plot(mean.index, mean.clip(lower=1e-7).values, "o-", color="C3", lw=2, label="mean over the images")
    ax.set(yscale="log", xlabel="distance from the winner (map cells)", ylabel="|change| of the defective probability",
           title="one gradient step changes the map near the winner")
    ax.legend(fontsize=8)
    return fig


def competition_by_epoch(table: Any) -> Figure:
    """The competition over a run's epochs (:func:`~sacnn_lab.mechanism.competition_by_epoch`): (a) the share of
    defective probe images whose winner lies off the defect; (b) the probabilities of the defect-free probe
    images (their mean and largest: the false winners) against the defective ones'."""
    fig = Figure(figsize=(10, 3.4), layout="constrained")
    ax1, ax2 = fig.subplots(1, 2)
    ax1.plot(table["epoch"], table["off_defect"], "o-", color="C3")
    ax1.set(xlabel="epoch", ylabel="share of defective images", ylim=(-0.02, 1.02),
            title="(a) winners off the defect (on a distractor)")
    ax2.plot(table["epoch"], table["defective_mean"], "o-", color="C0", label="defective images, mean")
    ax2.plot(table["epoch"], table["free_max_mean"], "o-", color="C2", label="defect-free images, mean")
    ax2.plot(table["epoch"], table["free_max_top"], "--", color="C2", label="defect-free images, largest")
    ax2.set(xlabel="epoch", ylabel="image probability (the winner's)", ylim=(-0.02, 1.02),
            title="(b) the winners' probabilities")
    ax2.legend(fontsize=8)
    return fig
