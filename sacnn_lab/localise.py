"""From a defect map to boxes, without torch: Otsu's threshold, binarising, 8-connected components, non-maximum
suppression, and :func:`localise`, the paper's three ways (a fixed threshold, Otsu, NMS).

Numpy and scipy, no torch, so that the ONNX runtime path (:mod:`sacnn_lab.runtime`) boxes defects without
importing torch (only :func:`localise` with ``method="nms"`` and no ``box_size`` reads the receptive field from
:mod:`sacnn_lab.model`); a torch tensor is accepted anywhere a numpy array is. Thresholded maps are split into
8-connected components by :func:`connected_components` (:func:`scipy.ndimage.label`).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

__all__ = ["Box", "otsu_threshold", "binarise", "connected_components", "nms", "localise", "METHODS"]

METHODS = ("threshold", "otsu", "nms")


@dataclass(frozen=True)
class Box:
    """An axis-aligned box in pixels: columns ``x0 <= x < x1``, rows ``y0 <= y < y1`` (ends exclusive).

    Attributes:
        x0, y0: first column and row inside the box.
        x1, y1: one past the last column and row.
        score: the map's maximum inside the component (threshold, Otsu) or at the peak (NMS).
    """

    x0: int
    y0: int
    x1: int
    y1: int
    score: float

    @property
    def width(self) -> int:
        return self.x1 - self.x0

    @property
    def height(self) -> int:
        return self.y1 - self.y0

    @property
    def area(self) -> int:
        return self.width * self.height


def _numpy(x: Any) -> Any:
    """A torch tensor as a numpy array (without importing torch), anything else as it is."""
    return x.detach().cpu().numpy() if hasattr(x, "detach") and hasattr(x, "cpu") else x


def _as_map(prob_map: Any) -> np.ndarray:
    prob_map = _numpy(prob_map)
    if not isinstance(prob_map, np.ndarray):
        raise TypeError(f"the map must be a (H, W) tensor or numpy array, not {type(prob_map).__name__}")
    if prob_map.ndim != 2:
        raise ValueError(f"the map must have shape (H, W) (one image, one type), got {prob_map.shape}")
    if not np.issubdtype(prob_map.dtype, np.number) or np.issubdtype(prob_map.dtype, np.complexfloating):
        raise TypeError(f"the map must hold real numbers, not {prob_map.dtype}")
    m = prob_map.astype(np.float64, copy=False)
    if not np.isfinite(m).all():
        raise ValueError("the map holds NaN or infinite values")
    return m


def otsu_threshold(x: Any, bins: int = 256) -> float:
    """Otsu's threshold: the split of the histogram that maximises the between-class variance.

    The histogram spans ``[x.min(), x.max()]``. When several split points share the maximum (an
    empty gap between two modes), the middle of the first such run of points is returned, so the
    threshold sits in the middle of the gap. Binarise with ``x > threshold``.

    Args:
        x: values of any shape (e.g. a ``(H, W)`` probability map).
        bins: histogram bins.

    Returns:
        The threshold; for a constant input, that constant (so ``x > t`` is empty).
    """
    v = np.asarray(_numpy(x), dtype=np.float64).ravel()
    if v.size == 0:
        raise ValueError("otsu_threshold needs at least one value")
    if not np.isfinite(v).all():
        raise ValueError("otsu_threshold got NaN or infinite values")
    if bins < 2:
        raise ValueError(f"bins must be >= 2, not {bins}")
    lo, hi = float(v.min()), float(v.max())
    if hi <= lo:
        return lo
    hist, edges = np.histogram(v, bins=bins, range=(lo, hi))
    hist = hist.astype(np.float64)
    centres = (edges[:-1] + edges[1:]) / 2
    w0 = np.cumsum(hist)[:-1]  # weight of class 0 when splitting after bin i
    w1 = v.size - w0
    s0 = np.cumsum(hist * centres)[:-1]
    valid = (w0 > 0) & (w1 > 0)
    mu0 = np.divide(s0, w0, out=np.zeros_like(s0), where=valid)
    mu1 = np.divide(s0[-1] + hist[-1] * centres[-1] - s0, w1, out=np.zeros_like(s0), where=valid)
    between = np.where(valid, w0 * w1 * (mu0 - mu1) ** 2, -1.0)
    best = between.max()
    first = int(np.argmax(between >= best * (1 - 1e-9)))
    last = first
    while last + 1 < between.size and between[last + 1] >= best * (1 - 1e-9):
        last += 1
    # splitting after bin i puts the threshold on edge i + 1
    return float((edges[first + 1] + edges[last + 1]) / 2)


def binarise(
    prob_map: Any, method: str = "threshold", threshold: float = 0.5
) -> np.ndarray:
    """Defect mask of one map: ``map > threshold`` or ``map > otsu_threshold(map)``.

    Args:
        prob_map: ``(H, W)`` probabilities.
        method: ``"threshold"`` or ``"otsu"`` (NMS gives boxes, not a mask: see :func:`localise`).
        threshold: the fixed threshold of ``"threshold"``.

    Returns:
        Boolean mask ``(H, W)``.
    """
    m = _as_map(prob_map)
    if method == "threshold":
        return m > threshold
    if method == "otsu":
        return m > otsu_threshold(m)
    raise ValueError(f"binarise method must be 'threshold' or 'otsu', not {method!r}")


#: 8-connectivity for :func:`scipy.ndimage.label`: every pixel of the 3×3 neighbourhood, diagonals included.
EIGHT_CONNECTED = np.ones((3, 3), dtype=bool)


def connected_components(mask: Any) -> tuple[np.ndarray, int]:
    """Label the 8-connected components of a boolean mask (:func:`scipy.ndimage.label`, diagonals joined).

    Args:
        mask: ``(H, W)`` booleans (non-zero counts as True).

    Returns:
        ``(labels, n)``: int32 labels ``(H, W)``, 0 for background and ``1..n`` for the components in
        raster order of their first pixel; ``n`` the number of components.
    """
    from scipy import ndimage  # on first use: importing this module stays light (the ONNX runtime path)

    mask = np.asarray(_numpy(mask))
    if mask.ndim != 2:
        raise ValueError(f"mask must have shape (H, W), got {mask.shape}")
    labels = np.empty(mask.shape, dtype=np.int32)
    n = ndimage.label(mask.astype(bool, copy=False), structure=EIGHT_CONNECTED, output=labels)
    return labels, int(n)


def _component_boxes(m: np.ndarray, mask: np.ndarray, min_area: int) -> list[Box]:
    labels, n = connected_components(mask)
    if n == 0:
        return []
    ys, xs = np.nonzero(labels)
    lab = labels[ys, xs] - 1
    area = np.bincount(lab, minlength=n)
    x0 = np.full(n, mask.shape[1])
    y0 = np.full(n, mask.shape[0])
    x1 = np.zeros(n, dtype=np.int64)
    y1 = np.zeros(n, dtype=np.int64)
    score = np.full(n, -np.inf)
    np.minimum.at(x0, lab, xs)
    np.minimum.at(y0, lab, ys)
    np.maximum.at(x1, lab, xs + 1)
    np.maximum.at(y1, lab, ys + 1)
    np.maximum.at(score, lab, m[ys, xs])
    return [
        Box(int(x0[c]), int(y0[c]), int(x1[c]), int(y1[c]), float(score[c]))
        for c in range(n)
        if area[c] >= min_area
    ]


def nms(boxes: np.ndarray, scores: np.ndarray, iou: float) -> list[int]:
    """Greedy non-maximum suppression: the indices kept, best score first (ties in input order); a box
    whose intersection over union with a kept, higher one exceeds ``iou`` is dropped.

    Args:
        boxes: ``(N, 4)`` ``(x0, y0, x1, y1)``, x1/y1 exclusive.
        scores: ``(N,)``.
        iou: the overlap above which the lower box is dropped.
    """
    boxes = np.asarray(boxes, np.float64).reshape(-1, 4)
    order = np.argsort(-np.asarray(scores, np.float64), kind="stable")
    area = (boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1])
    keep: list[int] = []
    while order.size:
        i, rest = int(order[0]), order[1:]
        keep.append(i)
        w = np.clip(np.minimum(boxes[i, 2], boxes[rest, 2]) - np.maximum(boxes[i, 0], boxes[rest, 0]), 0, None)
        h = np.clip(np.minimum(boxes[i, 3], boxes[rest, 3]) - np.maximum(boxes[i, 1], boxes[rest, 1]), 0, None)
        inter = w * h
        union = area[i] + area[rest] - inter
        overlap = np.divide(inter, union, out=np.zeros_like(inter), where=union > 0)
        order = rest[overlap <= iou]
    return keep


def _nms_boxes(m: np.ndarray, threshold: float, box_size: int, iou: float) -> list[Box]:
    h, w = m.shape
    padded = np.pad(m, 1, constant_values=-np.inf)
    around = np.max([padded[dy:dy + h, dx:dx + w] for dy in range(3) for dx in range(3)], axis=0)
    ys, xs = np.nonzero((m == around) & (m > threshold))
    if ys.size == 0:
        return []
    scores = m[ys, xs].astype(np.float32)
    x0 = np.clip(xs - box_size // 2, 0, w)
    y0 = np.clip(ys - box_size // 2, 0, h)
    x1 = np.clip(xs - box_size // 2 + box_size, 0, w)
    y1 = np.clip(ys - box_size // 2 + box_size, 0, h)
    boxes = np.stack([x0, y0, x1, y1], axis=1)
    return [Box(*(int(v) for v in boxes[k]), float(scores[k])) for k in nms(boxes, scores, iou)]


def localise(
    prob_map: Any,
    method: str = "threshold",
    threshold: float = 0.5,
    min_area: int = 1,
    box_size: int | None = None,
    iou: float = 0.3,
    max_boxes: int | None = None,
    config: Any = None,
) -> list[Box]:
    """Boxes around the defects of one probability map, best score first.

    Methods (paper, "testing phase"):

    - ``"threshold"``: ``map > threshold``, one box per 8-connected component, its score the map's
      maximum inside it; components smaller than ``min_area`` pixels are dropped.
    - ``"otsu"``: the same with :func:`otsu_threshold` of the map. Otsu always splits a non-constant
      map, also a defect-free one: decide *whether* there is a defect with the image score first.
    - ``"nms"``: local maxima (equal to the 3×3 maximum around them) above ``threshold``, each the
      centre of a ``box_size`` square (clipped to the map); overlapping boxes (IoU > ``iou``) are
      suppressed (:func:`nms`), keeping the higher peak.

    Args:
        prob_map: ``(H, W)`` probabilities, e.g. ``predict(...).map[i]``.
        method: ``"threshold"``, ``"otsu"`` or ``"nms"``.
        threshold: fixed threshold (``"threshold"``) or minimum peak value (``"nms"``).
        min_area: smallest component kept, in pixels (``"threshold"``, ``"otsu"``).
        box_size: side of the NMS boxes in pixels; ``None``: the visual field of a last-block pixel
            of ``config`` (see :func:`~sacnn_lab.model.receptive_field`).
        iou: NMS overlap above which the lower peak's box is dropped.
        max_boxes: keep at most this many boxes; ``None``: all.
        config: the model's :class:`~sacnn_lab.config.ModelConfig`, for the default ``box_size``.

    Returns:
        A list of :class:`Box`, sorted by decreasing score; empty if nothing is found.

    Raises:
        ValueError: bad method or parameters, a map that is not ``(H, W)``, NMS without box size.
    """
    if method not in METHODS:
        raise ValueError(f"method must be one of {METHODS}, not {method!r}")
    bad_max = isinstance(max_boxes, bool) or not isinstance(max_boxes, int) or max_boxes < 0
    if max_boxes is not None and bad_max:
        raise ValueError(f"max_boxes must be None or an int >= 0, not {max_boxes!r}")
    m = _as_map(prob_map)
    if method == "nms":
        if box_size is None:
            if config is None:
                raise ValueError("method='nms' needs box_size, or config to take the receptive field from")
            from .model import receptive_field  # the one place this module needs torch

            box_size = receptive_field(config)[-1]["rf"]
        if isinstance(box_size, bool) or not isinstance(box_size, int) or box_size < 1:
            raise ValueError(f"box_size must be an int >= 1, not {box_size!r}")
        if not 0 <= iou <= 1:
            raise ValueError(f"iou must lie in [0, 1], not {iou}")
        boxes = _nms_boxes(m, threshold, box_size, iou)
    else:
        if isinstance(min_area, bool) or not isinstance(min_area, int) or min_area < 1:
            raise ValueError(f"min_area must be an int >= 1, not {min_area!r}")
        boxes = _component_boxes(m, binarise(m, method, threshold), min_area)
    boxes.sort(key=lambda b: -b.score)
    return boxes if max_boxes is None else boxes[:max_boxes]
