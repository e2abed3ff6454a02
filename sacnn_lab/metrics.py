"""Classification and localisation metrics, as plain functions of scores, maps and boxes (numpy arrays; AUROC
and average precision from scikit-learn).

Every function takes image scores in [0, 1] and/or defect maps at input resolution, never a model: any
method that yields a score and a map (SACNN, Grad-CAM) is measured the same way.

- classification: :func:`confusion`, :func:`auroc`, :func:`classification`; of K defect types :func:`type_figures`;
- localisation on defective images: :func:`pointing_game`, :func:`energy_pointing_game`, :func:`iou`,
  :func:`dice` and :func:`compactness` of the binarised map (fixed threshold and Otsu), :func:`pixel_auroc`
  and :func:`pixel_average_precision`; on defect-free images :func:`false_alarm_area`;
- tables: :func:`localisation_table` (one row per image, one column per figure) and :func:`summarise`.

    table = localisation_table(pred.score, labels, pred.map, boxes, method="SACNN")
    summarise(table)                                  # one row of means
    seaborn.boxplot(table, x="method", y="iou_otsu")  # one line in a notebook
"""

from __future__ import annotations

from typing import Any, Sequence

import numpy as np

Boxes = Sequence[Sequence[int]]


def _as_1d(name: str, x) -> np.ndarray:
    a = np.asarray(x)
    if a.ndim != 1:
        raise ValueError(f"{name} must be one-dimensional, got shape {a.shape}")
    return a


def confusion(scores, labels, threshold: float = 0.5) -> dict[str, int]:
    """Counts of true/false positives/negatives of ``scores >= threshold`` against ``labels`` (1 = defective).

    Args:
        scores: ``(N,)`` image scores.
        labels: ``(N,)`` 0/1 labels.
        threshold: decision threshold.

    Returns:
        ``{"tp": .., "fp": .., "tn": .., "fn": ..}``.
    """
    s, y = _as_1d("scores", scores), _as_1d("labels", labels).astype(bool)
    if s.shape != y.shape:
        raise ValueError(f"scores {s.shape} and labels {y.shape} must have the same length")
    p = s >= threshold
    return {"tp": int(np.sum(p & y)), "fp": int(np.sum(p & ~y)), "tn": int(np.sum(~p & ~y)),
            "fn": int(np.sum(~p & y))}


def _ranking_inputs(scores, labels) -> tuple[np.ndarray, np.ndarray]:
    """``(scores, labels)`` for scikit-learn's ranking metrics: float64 scores and 0/1 int8 labels (non-zero:
    positive), ``(N,)`` each, by decreasing score.

    Both figures depend only on the order of the scores and their ties: scores with NaN or infinite values,
    which scikit-learn refuses, are replaced by their rank (NaN above every number, all NaN tied). The
    order within tied scores does not matter either (scikit-learn takes tied scores together), so numpy's
    fast unstable sort orders them here, and scikit-learn's own stable sort then finds them in order: a
    pass instead of a sort, the sort that costs the most on a map's pixels (benchmarks/metrics_speed.py).
    """
    s, y = _as_1d("scores", scores).astype(np.float64), _as_1d("labels", labels).astype(bool)
    if s.shape != y.shape:
        raise ValueError(f"scores {s.shape} and labels {y.shape} must have the same length")
    if not np.isfinite(s).all():
        s = np.unique(s, return_inverse=True)[1].reshape(s.shape).astype(np.float64)
    order = np.argsort(s)[::-1]
    return s[order], y[order].view(np.int8)  # int8, not bool: scikit-learn's np.unique of the labels is faster


def auroc(scores, labels) -> float:
    """Area under the ROC curve: the probability that a random defective image scores above a random
    defect-free one (ties count half; Mann–Whitney U / (n_pos · n_neg)). ``nan`` with one class only.

    scikit-learn's, as :func:`~sklearn.metrics.roc_auc_score` computes it for two classes
    (:func:`~sklearn.metrics.auc` of :func:`~sklearn.metrics.roc_curve`); non-finite scores are ranked
    (NaN highest) rather than refused.
    """
    s, y = _ranking_inputs(scores, labels)
    n_pos = int(np.count_nonzero(y))
    if n_pos == 0 or n_pos == y.size:
        return float("nan")
    from sklearn.metrics import auc, roc_curve  # on first use: importing this module stays light

    # roc_auc_score's two-class path is exactly this, after label checks (type_of_target, label_binarize:
    # several passes of np.unique over the labels) that the lines above make needless
    fpr, tpr, _ = roc_curve(y, s, pos_label=1)
    return float(auc(fpr, tpr))


def classification(scores, labels, threshold: float = 0.5) -> dict[str, float]:
    """Accuracy, precision, recall, F1 (at ``threshold``) and AUROC.

    precision = TP / (TP + FP), recall = TP / (TP + FN), F1 = 2PR / (P + R); a ratio with a zero
    denominator is ``nan`` (e.g. precision when nothing is predicted defective).
    """
    c = confusion(scores, labels, threshold)
    n = sum(c.values())

    def ratio(a: int, b: int) -> float:
        return a / b if b else float("nan")

    p, r = ratio(c["tp"], c["tp"] + c["fp"]), ratio(c["tp"], c["tp"] + c["fn"])
    f1 = 2 * p * r / (p + r) if (p == p and r == r and p + r > 0) else float("nan")
    return {"accuracy": ratio(c["tp"] + c["tn"], n), "precision": p, "recall": r, "f1": f1,
            "auroc": auroc(scores, labels), **{k: float(v) for k, v in c.items()}}


def point_in_boxes(y: int, x: int, boxes: Boxes, tolerance: float = 0) -> bool:
    """Whether pixel ``(y, x)`` lies in any ``(x0, y0, x1, y1)`` box (x1/y1 exclusive), or within
    ``tolerance`` pixels of one."""
    for x0, y0, x1, y1 in boxes:
        dx, dy = max(x0 - x, 0, x - (x1 - 1)), max(y0 - y, 0, y - (y1 - 1))
        if dx * dx + dy * dy <= tolerance * tolerance:
            return True
    return False


def _point_in_mask(y: int, x: int, mask: np.ndarray, tolerance: float = 0) -> bool:
    """Whether ``mask`` is true at ``(y, x)``, or at a pixel within ``tolerance`` of it."""
    if tolerance <= 0:
        return bool(mask[y, x])
    r = int(tolerance)
    y0, x0 = max(y - r, 0), max(x - r, 0)
    win = mask[y0:y + r + 1, x0:x + r + 1]
    yy, xx = np.ogrid[y0 - y:y0 - y + win.shape[0], x0 - x:x0 - x + win.shape[1]]
    return bool(win[yy * yy + xx * xx <= tolerance * tolerance].any())


def pointing_game(maps: np.ndarray, boxes: Sequence[Boxes], masks: np.ndarray | None = None,
                  tolerance: float = 0) -> np.ndarray:
    """Pointing game: for each defective image, whether the maximum of its map lies in the truth.

    Args:
        maps: ``(N, H, W)`` defect maps at input resolution.
        boxes: per image, its true boxes (a list, or ``(K, 4)`` rows where ``x0 < 0`` marks padding, as
            in ``(N, K, 4)`` box arrays); images without boxes are skipped.
        masks: ``(N, H, W)`` bool truth masks (e.g. DAGM's label ellipses), or ``None``. Where given,
            an image with boxes scores a hit when its mask is true at the map's maximum.
        tolerance: a hit also when the truth lies within this many pixels of the maximum (Zhang et
            al., "Top-down neural attention by excitation backprop", 2016, used 15 px); 0: exactly inside.

    Returns:
        ``(M,)`` bool hits, one per image that has boxes (the score is their mean).
    """
    maps = np.asarray(maps)
    if maps.ndim != 3 or len(maps) != len(boxes):
        raise ValueError(f"maps must be (N, H, W) with one entry of boxes per map, got {maps.shape} "
                         f"and {len(boxes)} box lists")
    if masks is not None and np.shape(masks) != maps.shape:
        raise ValueError(f"masks must have the maps' shape {maps.shape}, not {np.shape(masks)}")
    if not tolerance >= 0:
        raise ValueError(f"tolerance must be >= 0 pixels, not {tolerance}")
    hits = []
    W = maps.shape[2]
    flat = maps.reshape(len(maps), -1).argmax(1)
    for i, b in enumerate(map(_true_boxes, boxes)):
        if b:
            y, x = int(flat[i] // W), int(flat[i] % W)
            hits.append(_point_in_mask(y, x, masks[i], tolerance) if masks is not None
                        else point_in_boxes(y, x, b, tolerance))
    return np.asarray(hits, bool)


# ---------------------------------------------------------------------------------------------------
# localisation: one map against its truth


def _as_map2d(name: str, x) -> np.ndarray:
    if hasattr(x, "detach"):  # a torch tensor
        x = x.detach().cpu().numpy()
    a = np.asarray(x)
    if a.ndim != 2:
        raise ValueError(f"{name} must have shape (H, W), got {a.shape}")
    return a


def _true_boxes(boxes) -> list[tuple[int, int, int, int]]:
    """Box rows as tuples, rows with ``x0 < 0`` (the ``-1`` padding of ``(K, 4)`` arrays) dropped."""
    out = []
    for b in boxes:
        if len(b) != 4:
            raise ValueError(f"a box must be (x0, y0, x1, y1), got {tuple(b)!r}")
        if b[0] >= 0:
            out.append(tuple(int(v) for v in b))
    return out


def boxes_mask(boxes: Boxes, shape: tuple[int, int]) -> np.ndarray:
    """The union of ``(x0, y0, x1, y1)`` boxes (x1/y1 exclusive) as a boolean ``(H, W)`` mask.

    Rows with ``x0 < 0`` (padding of ``(K, 4)`` box arrays) are ignored; boxes are clipped to the image.
    """
    mask = np.zeros(shape, bool)
    for x0, y0, x1, y1 in _true_boxes(boxes):
        mask[max(y0, 0):max(y1, 0), max(x0, 0):max(x1, 0)] = True
    return mask


def energy_inside(prob_map, boxes: Boxes) -> float:
    """Energy-based pointing game of one map: the share of its mass inside the true boxes.

    .. math:: E = \\frac{\\sum_{p \\in B} m_p}{\\sum_p m_p}

    with ``B`` the union of the boxes. 1 when all the map's mass lies in the boxes; for a uniform map,
    the boxes' share of the image. ``nan`` for an all-zero map or no box.

    Args:
        prob_map: ``(H, W)`` non-negative map.
        boxes: the image's true boxes.

    Raises:
        ValueError: a map of the wrong shape or with negative or non-finite values.
    """
    m = _as_map2d("the map", prob_map).astype(np.float64)
    if not np.isfinite(m).all() or (m < 0).any():
        raise ValueError("the map must hold finite values >= 0 for the energy-based pointing game")
    inside = boxes_mask(boxes, m.shape)
    total = m.sum()
    if total <= 0 or not inside.any():
        return float("nan")
    return float(m[inside].sum() / total)


def energy_pointing_game(maps: np.ndarray, boxes: Sequence[Boxes]) -> np.ndarray:
    """Energy-based pointing game (Wang et al., Score-CAM, 2020) of every image that has boxes.

    See :func:`energy_inside` for the formula.

    Args:
        maps: ``(N, H, W)`` non-negative defect maps at input resolution.
        boxes: per image, its true boxes (a list, or ``(K, 4)`` rows where ``x0 < 0`` marks padding, as
            in ``(N, K, 4)`` box arrays); images without boxes are skipped.

    Returns:
        ``(M,)`` float shares in [0, 1], one per image that has boxes (the score is their mean).
    """
    maps = np.asarray(maps)
    if maps.ndim != 3 or len(maps) != len(boxes):
        raise ValueError(f"maps must be (N, H, W) with one entry of boxes per map, got {maps.shape} "
                         f"and {len(boxes)} box lists")
    return np.asarray([energy_inside(m, b) for m, b in zip(maps, boxes) if _true_boxes(b)], np.float64)


def _masks(pred, truth) -> tuple[np.ndarray, np.ndarray]:
    p, t = _as_map2d("pred", pred).astype(bool), _as_map2d("truth", truth).astype(bool)
    if p.shape != t.shape:
        raise ValueError(f"pred {p.shape} and truth {t.shape} must have the same shape")
    return p, t


def iou(pred, truth) -> float:
    """Intersection over union of two boolean ``(H, W)`` masks: ``|P ∩ T| / |P ∪ T|`` (``nan`` if both
    are empty)."""
    p, t = _masks(pred, truth)
    union = np.count_nonzero(p | t)
    return float(np.count_nonzero(p & t) / union) if union else float("nan")


def dice(pred, truth) -> float:
    """Dice coefficient (F1 of the pixels) of two boolean ``(H, W)`` masks: ``2|P ∩ T| / (|P| + |T|)``
    (``nan`` if both are empty). It relates to IoU by ``D = 2·IoU / (1 + IoU)``."""
    p, t = _masks(pred, truth)
    total = np.count_nonzero(p) + np.count_nonzero(t)
    return float(2 * np.count_nonzero(p & t) / total) if total else float("nan")


def compactness(pred, truth) -> float:
    """Area of the binarised map over the true area: ``|P| / |T|`` (``nan`` when ``T`` is empty).

    1 when the map marks as many pixels as the defect covers; above 1, a map spread wider than the
    defect (the paper's "less compact"); 0 when nothing passes the threshold. It says nothing about
    position: read it beside IoU and the pointing game.
    """
    p, t = _masks(pred, truth)
    area = np.count_nonzero(t)
    return float(np.count_nonzero(p) / area) if area else float("nan")


def false_alarm_area(prob_map, threshold: float = 0.5) -> float:
    """Share of the pixels of a (defect-free) image's map above ``threshold``: ``|{p : m_p > t}| / (H·W)``.

    Ideally 0 on a defect-free image.
    """
    m = _as_map2d("the map", prob_map)
    return float(np.count_nonzero(m > threshold) / m.size) if m.size else float("nan")


def average_precision(scores, labels) -> float:
    """Average precision of ``scores`` ranking the positives of ``labels`` first.

    .. math:: AP = \\sum_n (R_n - R_{n-1})\\, P_n

    over the distinct score thresholds in decreasing order, with ``P_n`` and ``R_n`` the precision and
    recall of ``scores >= t_n`` (tied scores enter together): scikit-learn's
    :func:`~sklearn.metrics.average_precision_score`, ``nan`` without positives (and non-finite scores ranked,
    NaN highest, as in :func:`auroc`).

    Args:
        scores: ``(N,)`` scores (e.g. a flattened map).
        labels: ``(N,)`` booleans (e.g. the flattened truth mask).
    """
    s, y = _ranking_inputs(scores, labels)
    if not y.any():
        return float("nan")
    from sklearn.metrics import average_precision_score  # on first use: importing this module stays light

    return float(average_precision_score(y, s, pos_label=1))


def pixel_ranking(prob_map, truth) -> tuple[float, float]:
    """``(AUROC, average precision)`` of one map's pixels against its truth mask, from one sort.

    The same figures as :func:`auroc` and :func:`average_precision` (scikit-learn's) of the flattened map and
    mask, to rounding (``tests/test_metrics.py`` checks them on random and tied maps), counted here from the
    true and false positives at each distinct score: an evaluation measures every defective image's map, and
    scikit-learn's checks of its inputs cost more than the counting itself at a map's size (about 3 ms a call
    on a 136×136 map). Either figure is ``nan`` where it is undefined (AUROC: a class empty; AP: no defect pixel).

    Args:
        prob_map: ``(H, W)`` map.
        truth: ``(H, W)`` boolean mask.
    """
    m, t = _as_map2d("the map", prob_map), _as_map2d("truth", truth)
    if m.shape != t.shape:
        raise ValueError(f"the map {m.shape} and truth {t.shape} must have the same shape")
    s, y = _ranking_inputs(m.ravel(), t.ravel())  # scores in decreasing order
    pos = int(np.count_nonzero(y))
    neg = y.size - pos
    if pos == 0:
        return float("nan"), float("nan")
    last = np.r_[np.flatnonzero(np.diff(s)), s.size - 1]  # the last pixel of each distinct score
    tps = np.cumsum(y, dtype=np.int64)[last]
    fps = last + 1 - tps
    ap = float(np.sum(np.diff(tps, prepend=0) * (tps / (tps + fps))) / pos)
    if neg == 0:
        return float("nan"), ap
    tpr, fpr = np.r_[0, tps] / pos, np.r_[0, fps] / neg
    return float(np.sum(np.diff(fpr) * (tpr[1:] + tpr[:-1])) / 2), ap


def pixel_auroc(prob_map, truth) -> float:
    """Pixel-level AUROC of one map against its truth mask: the probability that a random defect pixel
    scores above a random background pixel (see :func:`auroc`, :func:`pixel_ranking`); ``nan`` if either class
    is empty."""
    return pixel_ranking(prob_map, truth)[0]


def pixel_average_precision(prob_map, truth) -> float:
    """Pixel-level average precision of one map against its truth mask (see :func:`average_precision`,
    :func:`pixel_ranking`)."""
    return pixel_ranking(prob_map, truth)[1]


LOCALISATION_COLUMNS = ("pointing_game", "energy_pointing_game", "iou_fixed", "dice_fixed",
                        "compactness_fixed", "iou_otsu", "dice_otsu", "compactness_otsu", "pixel_auroc",
                        "pixel_ap")
"""Columns of :func:`localisation_table` measured on defective images with a known truth."""


def image_localisation(prob_map, boxes: Boxes, mask=None, map_threshold: float = 0.5) -> dict[str, float]:
    """Every localisation figure of one defective image's map.

    The truth region ``T`` is the pixel ``mask`` when given, otherwise the union of the ``boxes``. The
    pointing game and the energy-based pointing game use the boxes. The map is binarised twice with
    :func:`sacnn_lab.inference.binarise`: at the fixed ``map_threshold`` (``*_fixed``) and at Otsu's
    threshold of the map (``*_otsu``).

    Args:
        prob_map: ``(H, W)`` non-negative map at input resolution.
        boxes: the image's true boxes ``(x0, y0, x1, y1)``.
        mask: ``(H, W)`` boolean truth mask, or ``None``.
        map_threshold: the fixed binarisation threshold.

    Returns:
        A dict with the keys of :data:`LOCALISATION_COLUMNS` and ``true_area`` (pixels of ``T``).
    """
    from .inference import binarise  # the one definition of binarising a map

    m = _as_map2d("the map", prob_map)
    bx = _true_boxes(boxes)
    truth = boxes_mask(bx, m.shape) if mask is None else _as_map2d("mask", mask).astype(bool)
    if truth.shape != m.shape:
        raise ValueError(f"the mask {truth.shape} and the map {m.shape} must have the same shape")
    flat = int(np.argmax(m))
    out = {"true_area": float(np.count_nonzero(truth)),
           "pointing_game": float(point_in_boxes(flat // m.shape[1], flat % m.shape[1], bx)) if bx else np.nan,
           "energy_pointing_game": energy_inside(m, bx) if bx else np.nan}
    for name, how in (("fixed", "threshold"), ("otsu", "otsu")):
        pred = binarise(m, how, map_threshold)
        out[f"iou_{name}"], out[f"dice_{name}"] = iou(pred, truth), dice(pred, truth)
        out[f"compactness_{name}"] = compactness(pred, truth)
    out["pixel_auroc"], out["pixel_ap"] = pixel_ranking(m, truth)
    return out


def localisation_table(scores, labels, maps, boxes: Sequence[Boxes], masks=None, threshold: float = 0.5,
                       map_threshold: float = 0.5, method: str | None = None):
    """A tidy table: one row per image, one column per figure (for seaborn in one line).

    Columns: ``method`` (when given), ``image`` (position in the input), ``label``, ``score``,
    ``predicted`` (``score >= threshold``), ``true_area``, the :data:`LOCALISATION_COLUMNS` (defined on
    defective images with a known truth, ``nan`` elsewhere; see :func:`image_localisation`) and
    ``false_alarm_area`` (defect-free images only: share of map pixels above ``map_threshold``, see
    :func:`false_alarm_area`).

    Args:
        scores: ``(N,)`` image scores in [0, 1].
        labels: ``(N,)`` 0/1 labels (1 = defective).
        maps: ``(N, H, W)`` defect maps at input resolution (torch or numpy).
        boxes: per image, its true boxes (a list of ``(x0, y0, x1, y1)``, or an ``(N, K, 4)`` array with
            ``-1`` rows unused).
        masks: ``(N, H, W)`` boolean truth masks, or ``None`` (then the box union is the truth).
        threshold: the image-level decision threshold.
        map_threshold: the fixed map binarisation threshold.
        method: a name for the ``method`` column (e.g. ``"SACNN"``, ``"Grad-CAM"``).

    Returns:
        A :class:`pandas.DataFrame`; ``summarise(table)`` gives the figures of the whole set.

    Raises:
        ValueError: inputs of inconsistent lengths or shapes.
    """
    import pandas as pd

    if hasattr(maps, "detach"):
        maps = maps.detach().cpu().numpy()
    if hasattr(scores, "detach"):
        scores = scores.detach().cpu().numpy()
    maps = np.asarray(maps)
    s, y = _as_1d("scores", scores).astype(np.float64), _as_1d("labels", labels).astype(int)
    if maps.ndim != 3:
        raise ValueError(f"maps must be (N, H, W), got shape {maps.shape}")
    n = len(maps)
    if not (len(s) == len(y) == len(boxes) == n) or (masks is not None and len(masks) != n):
        raise ValueError(f"scores ({len(s)}), labels ({len(y)}), maps ({n}), boxes ({len(boxes)})"
                         + ("" if masks is None else f" and masks ({len(masks)})") + " must have one entry "
                         "per image")
    rows = []
    for i in range(n):
        row: dict[str, object] = {} if method is None else {"method": method}
        row.update(image=i, label=int(y[i]), score=float(s[i]), predicted=bool(s[i] >= threshold))
        truth_known = bool(_true_boxes(boxes[i])) or (masks is not None and np.any(masks[i]))
        if y[i] and truth_known:
            row.update(image_localisation(maps[i], boxes[i], None if masks is None else masks[i],
                                          map_threshold))
        else:
            row.update({"true_area": np.nan, **{c: np.nan for c in LOCALISATION_COLUMNS}})
        row["false_alarm_area"] = np.nan if y[i] else false_alarm_area(maps[i], map_threshold)
        rows.append(row)
    table = pd.DataFrame(rows)
    table.attrs.update(threshold=threshold, map_threshold=map_threshold)
    return table


def summarise(table, threshold: float | None = None):
    """The figures of a whole set from a :func:`localisation_table` (one row per ``method`` if present).

    Classification figures (:func:`classification` at ``threshold``) come from ``score`` and ``label``;
    each localisation column is averaged over the images where it is defined (defective images with a
    known truth), ``false_alarm_area`` over the defect-free images.

    Args:
        table: a :func:`localisation_table` (or several concatenated, with a ``method`` column).
        threshold: the image-level decision threshold; default: the table's own (0.5).

    Returns:
        A :class:`pandas.DataFrame` indexed by method (or ``"all"``): ``images``, ``defective``,
        ``accuracy``, ``precision``, ``recall``, ``f1``, ``auroc``, ``tp``, ``fp``, ``tn``, ``fn``, the
        means of :data:`LOCALISATION_COLUMNS`, and ``false_alarm_area``.
    """
    import pandas as pd

    if threshold is None:
        threshold = table.attrs.get("threshold", 0.5)
    missing = {"score", "label"} - set(table.columns)
    if missing:
        raise ValueError(f"table lacks the column(s) {sorted(missing)}: make it with localisation_table")
    groups = table.groupby("method", sort=False) if "method" in table.columns else [("all", table)]
    out = {}
    for name, g in groups:
        row: dict[str, float] = {"images": float(len(g)), "defective": float(g["label"].sum())}
        row.update(classification(g["score"].to_numpy(), g["label"].to_numpy(), threshold))
        for c in (*LOCALISATION_COLUMNS, "false_alarm_area"):
            v = g[c].to_numpy(np.float64) if c in g else np.array([])
            row[c] = float(np.nanmean(v)) if np.isfinite(v).any() else float("nan")
        out[name] = row
    return pd.DataFrame.from_dict(out, orient="index")


def type_figures(type_scores, labels, threshold: float = 0.5) -> dict[str, Any]:
    """Figures of a model of K defect types (``ModelConfig.num_defect_types``): each type's recall, and the
    confusion between the types.

    An image is called defective when its highest type score passes ``threshold``, and then of the type
    whose layer scores highest (0: called defect-free).

    Args:
        type_scores: ``(N, K)`` each type's image score (the maximum of its defective layer).
        labels: ``(N,)`` integers in ``0..K`` (0: defect-free, k: type k).
        threshold: the decision threshold.

    Returns:
        ``{"confusion": (K+1) × (K+1) nested list, rows the truth 0..K, columns the call 0..K;
        "recall": [K] share of each type's images called defective (of any type);
        "type_accuracy": share of the defective images called defective *and* of their own type,
        "per_type_auroc": [K] AUROC of type k's score, type-k images against defect-free ones}``.
    """
    s = np.asarray(type_scores, np.float64)
    y = _as_1d("labels", labels).astype(np.int64)
    if s.ndim != 2 or len(s) != len(y):
        raise ValueError(f"type_scores must be (N, K) with one row per label, got {s.shape} and {y.shape}")
    k = s.shape[1]
    if y.size and (y.min() < 0 or y.max() > k):
        raise ValueError(f"labels must lie in 0..{k} for {k} defect types, got {y.min()}..{y.max()}")
    call = np.where(s.max(1) >= threshold, s.argmax(1) + 1, 0)
    conf = np.zeros((k + 1, k + 1), np.int64)
    np.add.at(conf, (y, call), 1)
    bad = y > 0

    def share(a: np.ndarray) -> float:
        return float(a.mean()) if a.size else float("nan")

    return {"confusion": conf.tolist(),
            "recall": [share(call[y == t] > 0) for t in range(1, k + 1)],
            "type_accuracy": share(call[bad] == y[bad]),
            "per_type_auroc": [auroc(s[(y == t) | (y == 0), t - 1], y[(y == t) | (y == 0)] == t)
                               for t in range(1, k + 1)]}


def worst_misses(scores: Sequence[float] | np.ndarray, labels: Sequence[int] | np.ndarray, n: int = 6,
                 threshold: float = 0.5) -> np.ndarray:
    """Positions of the ``n`` worst-judged images: the misses and false alarms furthest from the threshold
    first (defective images scored lowest, defect-free ones scored highest), then the closest calls.

    Args:
        scores: ``(N,)`` image scores.
        labels: ``(N,)`` 0/1 truth.
        n: how many.
        threshold: the decision threshold.

    Returns:
        ``(min(n, N),)`` int positions, worst first.
    """
    scores, labels = np.asarray(scores, np.float64), np.asarray(labels)
    if scores.shape != labels.shape or scores.ndim != 1:
        raise ValueError(f"scores and labels must be two (N,) arrays, got {scores.shape} and {labels.shape}")
    wrongness = np.where(labels > 0, threshold - scores, scores - threshold)  # > 0: on the wrong side
    return np.argsort(-wrongness, kind="stable")[:n]
