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

from .inference import Prediction, _as_images, memory_format_of, pass_size, predict
from .metrics import localisation_table, summarise
from .plots import compare_maps
from .trainer import model_image_scores

__all__ = ["Comparison", "compare", "map_cost", "method_name"]


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


def _resolve(model: Any) -> nn.Module:
    """A model, a :class:`~sacnn_lab.experiment.Run`, or the path of a run folder / checkpoint."""
    if isinstance(model, nn.Module):
        return model
    if isinstance(model, (str, os.PathLike)):
        from .experiment import load_model

        return load_model(model)[0]
    inner = getattr(model, "model", None)
    if isinstance(inner, nn.Module):
        return inner
    raise TypeError(f"expected a model, a Run or the path of a run folder / checkpoint, not {type(model).__name__}")


def method_name(model: nn.Module) -> str:
    """How a model's maps are named in tables: ``"SACNN"``, or the baseline's CAM (``"Grad-CAM"``...)."""
    from .baseline import CAM_METHODS, VGGBaseline

    if isinstance(model, VGGBaseline):
        key = model.config.cam
        return {"gradcam": "Grad-CAM", "gradcam++": "Grad-CAM++"}.get(key, CAM_METHODS[key])
    return "SACNN" if type(model).__name__ == "SACNN" else type(model).__name__


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


def map_cost(model: nn.Module, images: torch.Tensor | np.ndarray, batch_size: int = 50,
             device: str | torch.device | None = None) -> tuple[dict[str, float], Prediction]:
    """Time a model's score-only forward passes and its :func:`~sacnn_lab.inference.predict` (score and
    map) on the same images, after one warm-up batch of each.

    Args:
        model: SACNN or the baseline.
        images: uint8 ``(N, H, W)`` or float ``(N, C, H, W)`` in [0, 1].
        batch_size: images per pass, the same for both timings.
        device: where to run; ``None``: the model's device.

    Returns:
        ``(costs, prediction)``: ``costs`` holds ``images``, ``batch_size``, ``forward_ms`` and ``map_ms``
        (milliseconds per image), ``map_over_forward`` and ``device``; ``prediction`` is the timed
        ``predict`` output.
    """
    in_channels = getattr(getattr(model, "config", None), "in_channels", None)
    x = _as_images(images, in_channels if isinstance(in_channels, int) else None)
    if device is not None:
        model.to(device)
    dev = next(model.parameters()).device
    n = x.shape[0]
    warm = x[:min(batch_size, n)]
    _forward_scores(model, warm, batch_size, dev)
    predict(model, warm, batch_size=batch_size)

    def timed(fn):
        if dev.type == "cuda":
            torch.cuda.synchronize(dev)
        t = time.perf_counter()
        out = fn()
        if dev.type == "cuda":
            torch.cuda.synchronize(dev)
        return out, time.perf_counter() - t

    _, t_forward = timed(lambda: _forward_scores(model, x, batch_size, dev))
    pred, t_map = timed(lambda: predict(model, x, batch_size=batch_size))
    costs = {"images": float(n), "batch_size": float(batch_size), "forward_ms": 1e3 * t_forward / n,
             "map_ms": 1e3 * t_map / n, "map_over_forward": t_map / t_forward if t_forward > 0 else float("nan"),
             "device": str(dev)}
    return costs, pred


def compare(sacnn: Any, baseline: Any, data: Any, n: int | None = None, batch_size: int = 50,
            figure_images: int = 8, masks: np.ndarray | None = None, threshold: float = 0.5,
            map_threshold: float = 0.5, device: str | torch.device | None = None) -> Comparison:
    """Run SACNN and the baseline on the same images; return the metrics, the figure and the map costs.

    Args:
        sacnn: a SACNN model, a :class:`~sacnn_lab.experiment.Run`, or the path of a run folder or
            checkpoint.
        baseline: the same for the Grad-CAM baseline (any model that :func:`~sacnn_lab.inference.predict`
            accepts works: the comparison takes any two methods).
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
    import pandas as pd

    if isinstance(data, (str, os.PathLike)):
        if not isinstance(sacnn, (str, os.PathLike)):
            raise TypeError("data given by name needs the SACNN run as a path (its config names the split); "
                            "pass loaded data instead")
        from .experiment import load_data, load_model

        data = load_data(data, load_model(sacnn)[1], n)
    for attr in ("images", "labels", "boxes"):
        if not hasattr(data, attr):
            raise ValueError(f"data must have images, labels and boxes; it has no {attr!r}")
    images, labels, boxes = np.asarray(data.images), np.asarray(data.labels), data.boxes
    if masks is None:
        masks = getattr(data, "masks", None)
    if n is not None:
        images, labels, boxes = images[:n], labels[:n], boxes[:n]
        masks = None if masks is None else masks[:n]
    if len(images) == 0:
        raise ValueError("data holds no image")

    models = {}
    for m in (_resolve(sacnn), _resolve(baseline)):
        name = method_name(m)
        models[name if name not in models else f"{name} (2)"] = m
    tables, costs, preds = [], {}, {}
    for name, model in models.items():
        cost, pred = map_cost(model, images, batch_size=batch_size, device=device)
        score = pred.score if pred.score.dim() == 1 else pred.score.max(1).values
        prob_map = pred.map if pred.map.dim() == 3 else pred.map.max(1).values
        preds[name] = Prediction(score=score, feature_map=pred.feature_map, map=prob_map)
        costs[name] = cost
        tables.append(localisation_table(score.numpy(), labels, prob_map.numpy(), boxes, masks=masks,
                                         threshold=threshold, map_threshold=map_threshold, method=name))
    table = pd.concat(tables, ignore_index=True)
    table.attrs.update(threshold=threshold, map_threshold=map_threshold)
    summary = summarise(table, threshold)
    cost_table = pd.DataFrame.from_dict(costs, orient="index")

    has_box = [i for i in range(len(images)) if labels[i] and any(b[0] >= 0 for b in boxes[i])]
    shown = has_box[:figure_images] or list(range(min(figure_images, len(images))))
    figure = compare_maps(images[shown], {k: p.map[shown].numpy() for k, p in preds.items()},
                          [boxes[i] for i in shown], {k: p.score[shown].numpy() for k, p in preds.items()},
                          title="defect maps on the same test images (true boxes in white)")
    return Comparison(table=table, summary=summary, costs=cost_table, figure=figure, predictions=preds)
