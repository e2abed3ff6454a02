"""Classification and localisation metrics, as plain numpy functions of scores, maps and boxes.

Every function takes image scores in [0, 1] and/or defect maps at input resolution, never a model: any
method that yields a score and a map (SACNN, Grad-CAM) is measured the same way.
"""

from __future__ import annotations

from typing import Sequence

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


def auroc(scores, labels) -> float:
    """Area under the ROC curve: the probability that a random defective image scores above a random
    defect-free one (ties count half; Mann–Whitney U / (n_pos · n_neg)). ``nan`` with one class only."""
    s, y = _as_1d("scores", scores).astype(np.float64), _as_1d("labels", labels).astype(bool)
    n_pos, n_neg = int(y.sum()), int((~y).sum())
    if n_pos == 0 or n_neg == 0:
        return float("nan")
    order = np.argsort(s, kind="mergesort")
    ranks = np.empty(len(s), np.float64)
    sorted_s = s[order]
    # average ranks over ties
    _, first, counts = np.unique(sorted_s, return_index=True, return_counts=True)
    avg = first + (counts + 1) / 2.0
    ranks[order] = np.repeat(avg, counts)
    u = ranks[y].sum() - n_pos * (n_pos + 1) / 2.0
    return float(u / (n_pos * n_neg))


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


def point_in_boxes(y: int, x: int, boxes: Boxes) -> bool:
    """Whether pixel ``(y, x)`` lies in any ``(x0, y0, x1, y1)`` box (x1/y1 exclusive)."""
    return any(x0 <= x < x1 and y0 <= y < y1 for x0, y0, x1, y1 in boxes)


def pointing_game(maps: np.ndarray, boxes: Sequence[Boxes]) -> np.ndarray:
    """Pointing game: for each defective image, whether the maximum of its map lies in a true box.

    Args:
        maps: ``(N, H, W)`` defect maps at input resolution.
        boxes: per image, its true boxes; images without boxes are skipped.

    Returns:
        ``(M,)`` bool hits, one per image that has boxes (the score is their mean).
    """
    maps = np.asarray(maps)
    if maps.ndim != 3 or len(maps) != len(boxes):
        raise ValueError(f"maps must be (N, H, W) with one entry of boxes per map, got {maps.shape} "
                         f"and {len(boxes)} box lists")
    hits = []
    W = maps.shape[2]
    flat = maps.reshape(len(maps), -1).argmax(1)
    for i, b in enumerate(boxes):
        if len(b):
            hits.append(point_in_boxes(int(flat[i] // W), int(flat[i] % W), b))
    return np.asarray(hits, bool)
