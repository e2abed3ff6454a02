"""SACNN against the Grad-CAM baseline on the same images: the metrics table, the paper's Figure 11, and
what a map costs.

    from sacnn_lab.compare import compare
    c = compare("runs/fast", "runs/vgg", split(config, "test"))
    c.summary[["accuracy", "pointing_game", "iou_otsu", "compactness_otsu"]]
    c.costs                      # ms per image: score only, score + map
    c.figure                     # images, SACNN maps, Grad-CAM maps, true boxes

Both methods are measured the same way (:mod:`sacnn_lab.metrics`); the cost of each map is timed in the
same call, on the same device, in batches of the same size. SACNN's map comes with its forward pass;
Grad-CAM's needs a backward pass per batch.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from matplotlib.figure import Figure
from torch import nn

from .inference import Prediction, _as_images, memory_format_of, pass_size
from .methods import MapMethod, is_model, method_name, method_predict, resolve_method
from .metrics import localisation_table, pointing_game, summarise
from .plots import compare_maps
from .sources import pointing_masks
from .trainer import model_image_scores

__all__ = ["Comparison", "compare", "compare_methods", "map_cost", "method_name"]


@dataclass
class Comparison:
    """What :func:`compare` returns.

    Attributes:
        table: tidy :func:`~sacnn_lab.metrics.localisation_table` of both methods (a ``method`` column,
            one row per method and image).
        summary: :func:`~sacnn_lab.metrics.summarise` of the table, one row per method.
        costs: one row per method: ``images``, ``batch_size``, ``forward_ms`` (score only, per image),
            ``map_ms`` (score and map, per image), ``map_over_forward`` (their ratio), ``device``.
        figure: the paper's Figure 11 (:func:`~sacnn_lab.plots.compare_maps`) on defective images.
        predictions: method name → its :class:`~sacnn_lab.inference.Prediction` on all images.
    """

    table: Any
    summary: Any
    costs: Any
    figure: Figure
    predictions: dict[str, Prediction] = field(default_factory=dict)


def _forward_scores(model: nn.Module, x: torch.Tensor, batch_size: int, device: torch.device) -> torch.Tensor:
    """Image scores from forward passes only (no map), as a plain classifier would give them, in passes of
    the size :func:`~sacnn_lab.inference.predict` would use (cache-sized on the CPU), so that the two timings
    differ by the map alone."""
    out = []
    fmt = memory_format_of(model)  # the inputs predict would give it
    step = pass_size(batch_size, x.shape[-2], x.shape[-1], device)
    was_training = model.training
    model.eval()
    try:
        with torch.inference_mode():
            for start in range(0, x.shape[0], step):
                chunk = x[start:start + step].to(device).contiguous(memory_format=fmt)
                out.append(model_image_scores(model, model(chunk)).cpu())
    finally:
        model.train(was_training)
    return torch.cat(out)


def _timed(fn, dev: torch.device | None):
    cuda = dev is not None and dev.type == "cuda"
    if cuda:
        torch.cuda.synchronize(dev)
    t = time.perf_counter()
    out = fn()
    if cuda:
        torch.cuda.synchronize(dev)
    return out, time.perf_counter() - t


def map_cost(model: nn.Module | MapMethod, images: torch.Tensor | np.ndarray, batch_size: int = 50,
             device: str | torch.device | None = None) -> tuple[dict[str, float], Prediction]:
    """Time a method's score-only forward passes and its scores with maps
    (:func:`~sacnn_lab.methods.method_predict`) on the same images, after one warm-up batch of each.

    Args:
        model: SACNN, the baseline, or a map method (:class:`~sacnn_lab.methods.MapMethod`, e.g. the Weibull
            detector, whose score comes with its map: both timings are then the one of ``predict_maps``).
        images: uint8 ``(N, H, W)`` (a model also takes float ``(N, C, H, W)`` in [0, 1]).
        batch_size: images per pass, the same for both timings.
        device: where a model runs; ``None``: the model's device.

    Returns:
        ``(costs, prediction)``: ``costs`` holds ``images``, ``batch_size``, ``forward_ms`` and ``map_ms``
        (milliseconds per image), ``map_over_forward`` and ``device``; ``prediction`` is the timed
        output (``score`` ``(N,)``, ``map`` ``(N, H, W)``).
    """
    if not is_model(model):
        x = images.numpy() if isinstance(images, torch.Tensor) else np.asarray(images)
        n = len(x)
        method_predict(model, x[:min(batch_size, n)], batch_size)
        pred, t_map = _timed(lambda: method_predict(model, x, batch_size), None)
        return {"images": float(n), "batch_size": float(batch_size), "forward_ms": 1e3 * t_map / n,
                "map_ms": 1e3 * t_map / n, "map_over_forward": 1.0, "device": "cpu"}, pred
    in_channels = getattr(getattr(model, "config", None), "in_channels", None)
    x = _as_images(images, in_channels if isinstance(in_channels, int) else None)
    if device is not None:
        model.to(device)
    dev = next(model.parameters()).device
    n = x.shape[0]
    warm = x[:min(batch_size, n)]
    _forward_scores(model, warm, batch_size, dev)
    method_predict(model, warm, batch_size)
    _, t_forward = _timed(lambda: _forward_scores(model, x, batch_size, dev), dev)
    pred, t_map = _timed(lambda: method_predict(model, x, batch_size), dev)
    costs = {"images": float(n), "batch_size": float(batch_size), "forward_ms": 1e3 * t_forward / n,
             "map_ms": 1e3 * t_map / n, "map_over_forward": t_map / t_forward if t_forward > 0 else float("nan"),
             "device": str(dev)}
    return costs, pred


def _test_data(data: Any, n: int | None, masks: np.ndarray | None):
    for attr in ("images", "labels", "boxes"):
        if not hasattr(data, attr):
            raise ValueError(f"data must have images, labels and boxes; it has no {attr!r}")
    images, labels, boxes = np.asarray(data.images), np.asarray(data.labels), data.boxes
    point = pointing_masks(data)
    if masks is None:
        masks = getattr(data, "masks", None)
    if n is not None:
        images, labels, boxes = images[:n], labels[:n], boxes[:n]
        masks = None if masks is None else masks[:n]
        point = None if point is None else point[:n]
    if len(images) == 0:
        raise ValueError("data holds no image")
    return images, labels, boxes, masks, point


def compare_methods(methods: dict[str, Any] | list[Any], data: Any, n: int | None = None, batch_size: int = 50,
                    figure_images: int = 8, masks: np.ndarray | None = None, threshold: float = 0.5,
                    map_threshold: float = 0.5, device: str | torch.device | None = None, tolerance: float = 8,
                    keep_predictions: bool = True, figure_title: str | None = None) -> Comparison:
    """Any number of methods on the same images, measured the same way: one table, one figure, one cost each.

    Args:
        methods: name → method, or a list of methods (named by :func:`~sacnn_lab.methods.method_name`). A
            method is anything :func:`~sacnn_lab.methods.resolve_method` takes: a model (SACNN with any
            aggregation or supervision, the baseline), a run or run folder, or a map method (the Weibull
            detector).
        data: anything with ``images`` ``(N, H, W)`` uint8, ``labels`` ``(N,)`` and ``boxes`` (a generated
            split, a DAGM split, a loaded labelled folder).
        n: use the first ``n`` images only.
        batch_size: images per pass, the same for every method.
        figure_images: defective images shown in the figure (the first ones with boxes).
        masks: ``(N, H, W)`` truth masks for IoU, Dice, compactness and pixel AUROC (default: the data's
            ``masks`` if it has them, else the boxes).
        threshold: image-level decision threshold.
        map_threshold: the fixed map binarisation threshold.
        device: where the models run; ``None``: each model's device.
        tolerance: the summary's ``pointing_game_tol`` counts a map's maximum within this many pixels of the
            truth (``pointing_game`` stays exact); a DAGM split scores both against its masks, as
            :func:`~sacnn_lab.experiment.evaluate` does.
        keep_predictions: keep every method's scores and maps (``False``: only the figure's images; a 575-image
            textile split takes 600 MB of maps per method).
        figure_title: the figure's title.

    Returns:
        A :class:`Comparison`; ``summary`` has, besides :func:`~sacnn_lab.metrics.summarise`'s columns,
        ``pointing_game_tol``, ``forward_ms`` and ``map_ms``.

    Raises:
        TypeError: a method of the wrong kind.
        ValueError: data without images, labels or boxes, or with no image; no method; a name given twice.
    """
    import pandas as pd

    images, labels, boxes, masks, point = _test_data(data, n, masks)
    if isinstance(methods, dict):
        named = [(str(k), resolve_method(v)) for k, v in methods.items()]
    else:
        named = []
        for m in methods:
            m = resolve_method(m)
            name = method_name(m)
            while name in {k for k, _ in named}:
                name += " (2)"
            named.append((name, m))
    if not named:
        raise ValueError("methods must name at least one method")
    has_box = [i for i in range(len(images)) if labels[i] and any(b[0] >= 0 for b in boxes[i])]
    shown = has_box[:figure_images] or list(range(min(figure_images, len(images))))
    tables, costs, preds, shown_preds, tol_hits = [], {}, {}, {}, {}
    for name, method in named:
        cost, pred = map_cost(method, images, batch_size=batch_size, device=device)
        costs[name] = cost
        prob_map = pred.map.numpy()
        table = localisation_table(pred.score.numpy(), labels, prob_map, boxes, masks=masks, threshold=threshold,
                                   map_threshold=map_threshold, method=name)
        if point is not None:  # the pointing game against the set's masks (DAGM), as evaluate() plays it
            table.loc[table["label"] == 1, "pointing_game"] = np.nan
            rows = [i for i in range(len(images)) if any(b[0] >= 0 for b in boxes[i])]
            table.loc[rows, "pointing_game"] = pointing_game(prob_map, boxes, point).astype(float)
        tol_hits[name] = pointing_game(prob_map, boxes, point, tolerance=tolerance)
        tables.append(table)
        shown_preds[name] = Prediction(score=pred.score[shown], feature_map=pred.feature_map[shown],
                                       map=pred.map[shown])
        if keep_predictions:
            preds[name] = pred
        del pred, prob_map
    table = pd.concat(tables, ignore_index=True)
    table.attrs.update(threshold=threshold, map_threshold=map_threshold)
    summary = summarise(table, threshold)
    cost_table = pd.DataFrame.from_dict(costs, orient="index")
    summary["pointing_game_tol"] = [float(tol_hits[k].mean()) if len(tol_hits[k]) else float("nan")
                                    for k in summary.index]
    summary["forward_ms"] = cost_table["forward_ms"].reindex(summary.index)
    summary["map_ms"] = cost_table["map_ms"].reindex(summary.index)
    summary.attrs["tolerance"] = tolerance
    figure = compare_maps(images[shown], {k: p.map.numpy() for k, p in shown_preds.items()},
                          [boxes[i] for i in shown], {k: p.score.numpy() for k, p in shown_preds.items()},
                          title=figure_title or "defect maps on the same test images (true boxes in white)")
    return Comparison(table=table, summary=summary, costs=cost_table, figure=figure, predictions=preds)


def compare(sacnn: Any, baseline: Any, data: Any, n: int | None = None, batch_size: int = 50,
            figure_images: int = 8, masks: np.ndarray | None = None, threshold: float = 0.5,
            map_threshold: float = 0.5, device: str | torch.device | None = None) -> Comparison:
    """Run SACNN and the baseline on the same images; return the metrics, the figure and the map costs
    (:func:`compare_methods` for two methods).

    Args:
        sacnn: a SACNN model, a :class:`~sacnn_lab.experiment.Run`, or the path of a run folder or
            checkpoint.
        baseline: the same for the Grad-CAM baseline (any method that :func:`compare_methods` takes works).
        data: anything with ``images`` ``(N, H, W)`` uint8, ``labels`` ``(N,)`` and ``boxes`` (a generated
            split, a loaded labelled folder), or a spec for :func:`~sacnn_lab.experiment.load_data`
            (``"characters"``, ``"characters:SEED"``, a folder path; the SACNN run's config is used).
        n: use the first ``n`` images only.
        batch_size: images per pass, the same for both methods.
        figure_images: defective images shown in the figure (the first ones with boxes).
        masks: ``(N, H, W)`` truth masks (default: the data's ``masks`` if it has them, else the boxes).
        threshold: image-level decision threshold.
        map_threshold: the fixed map binarisation threshold.
        device: where both run; ``None``: each model's device (the CPU for loaded runs).

    Returns:
        A :class:`Comparison`.

    Raises:
        TypeError: a model argument of the wrong kind.
        ValueError: data without images, labels or boxes, or with no image.
    """
    if isinstance(data, (str, os.PathLike)):
        if not isinstance(sacnn, (str, os.PathLike)):
            raise TypeError("data given by name needs the SACNN run as a path (its config names the split); "
                            "pass loaded data instead")
        from .experiment import load_data, load_model

        data = load_data(data, load_model(sacnn)[1], n)
    return compare_methods([sacnn, baseline], data, n=n, batch_size=batch_size, figure_images=figure_images,
                           masks=masks, threshold=threshold, map_threshold=map_threshold, device=device)


PAPER_TABLE_1 = (
    ("characters", "SACNN", "image labels", 0.984),
    ("textile", "SACNN", "image labels", 0.986),
    ("textile", "supervised patch CNN [21]", "image labels + masks", 0.998),
    ("textile", "Weibull features [22]", "nothing", 0.915),
)
"""The paper's Table 1: (set, system, what it learns from, test accuracy). Its textile set is DAGM 2007."""


def table_one(measured: dict[tuple[str, str], dict[str, Any]]) -> Any:
    """The paper's Table 1 beside what was measured here, as one table.

    Args:
        measured: ``{(set, system): figures}``, ``set`` ``"characters"`` or ``"textile"``, ``system`` as in
            :data:`PAPER_TABLE_1` (or a new one, which gets a row of its own), ``figures`` as
            :func:`~sacnn_lab.experiment.evaluate` returns them (``accuracy``, ``pointing_game``) plus, if
            given, ``learns from`` and ``run`` (where the figures come from).

    Returns:
        A DataFrame, one row per (set, system): ``learns from``, ``paper`` (test accuracy), ``measured``
        (test accuracy), ``pointing game`` and ``run``; a system not measured here has empty cells (our textile
        set is the generated DAGM-like one unless a run says otherwise).
    """
    import pandas as pd

    rows = {(s, name): {"learns from": learns, "paper": acc, "measured": float("nan"),
                        "pointing game": float("nan"), "run": ""} for s, name, learns, acc in PAPER_TABLE_1}
    for key, figures in measured.items():
        row = rows.setdefault(tuple(key), {"learns from": figures.get("learns from", ""), "paper": float("nan"),
                                           "measured": float("nan"), "pointing game": float("nan"), "run": ""})
        row["measured"] = float(figures.get("accuracy", float("nan")))
        row["pointing game"] = float(figures.get("pointing_game", float("nan")))
        row["run"] = str(figures.get("run", ""))
    table = pd.DataFrame.from_dict(rows, orient="index")
    table.index = pd.MultiIndex.from_tuples(table.index, names=["set", "system"])
    return table
