"""The unsupervised detector the paper's Table 1 quotes: Weibull features of local gradient statistics.

Timm & Barth, "Non-parametric texture defect detection using Weibull features" (SPIE 8300, 2011), evaluated
on DAGM 2007 (the paper quotes 91.5 %): the gradient magnitudes of each local patch follow a two-parameter
Weibull distribution; the two parameters of its fit place the patch in "Weibull space"; each patch's
Euclidean distance from a reference point determined for each image on its own is its novelty, and no
training label is used at all.

What the authors' abstract fixes, and what we had to choose (written here and in docs/results.md):

- gradients: a Sobel filter's magnitude on the gray values in [0, 1] (the abstract says "image gradients");
  magnitudes below ``floor`` (1e-3) are raised to it, since a Weibull fit needs positive samples;
- patches of ``patch`` px (32) at 50 % overlap (``stride = patch / 2``), as the issue gives for 512² images;
- the fit: maximum likelihood (Newton's method on the shape's likelihood equation, all patches at once;
  checked against ``scipy.stats.weibull_min.fit`` in the tests);
- the reference point: the median of the image's patches in Weibull space, and the two axes scaled by their
  median absolute deviation over the image's patches (shape and scale have different units, and a raw
  Euclidean distance would be the shape's alone);
- the image's score: its largest patch distance; its map: each pixel the largest distance of the patches
  covering it;
- the threshold (unsupervised): :meth:`WeibullDetector.fit` sets it from unlabelled images (the median of
  their scores plus ``k_mad`` median absolute deviations); scores and maps are then
  ``sigmoid((d - threshold) / spread)``, so that 0.5 is the threshold, as for SACNN's probabilities.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np
import torch

from .inference import Prediction

__all__ = ["weibull_fit", "gradient_magnitude", "patch_weibull", "WeibullDetector"]


def weibull_fit(samples: np.ndarray, iterations: int = 30) -> tuple[np.ndarray, np.ndarray]:
    """Maximum-likelihood fits of the two-parameter Weibull distribution, one per row.

    The shape ``k`` solves ``Σ x^k ln x / Σ x^k - 1/k - mean(ln x) = 0`` (Newton's method from
    ``1.28 / std(ln x)``, stopped once no row's ``k`` moves by more than a billionth of itself); the scale
    is ``λ = (mean x^k)^(1/k)``. Each row is divided by its maximum first
    (the shape does not change, the scale is multiplied back), so that ``x^k`` neither overflows nor
    underflows.

    Args:
        samples: ``(M, n)`` positive values (or ``(n,)`` for one fit).
        iterations: the most Newton steps (a fit converges in about six).

    Returns:
        ``(shape, scale)``, each ``(M,)`` (or scalars for one row).

    Raises:
        ValueError: values that are not positive and finite, or fewer than two per row.
    """
    x = np.asarray(samples, np.float64)
    one = x.ndim == 1
    x = x[None] if one else x
    if x.ndim != 2 or x.shape[1] < 2:
        raise ValueError(f"samples must be (M, n) with n >= 2, not {np.shape(samples)}")
    if not (np.isfinite(x).all() and (x > 0).all()):
        raise ValueError("a Weibull fit needs positive, finite samples")
    top = x.max(1, keepdims=True)
    lx = np.log(x / top)  # <= 0
    mean_l = lx.mean(1)
    sd = lx.std(1)
    k = np.where(sd > 0, 1.28 / np.maximum(sd, 1e-12), 50.0)
    for _ in range(iterations):
        w = np.exp(k[:, None] * lx)  # x^k, in (0, 1]
        s0, s1, s2 = w.sum(1), (w * lx).sum(1), (w * lx * lx).sum(1)
        f = s1 / s0 - 1.0 / k - mean_l
        df = (s2 * s0 - s1 * s1) / (s0 * s0) + 1.0 / (k * k)
        new = np.clip(k - f / df, 0.05, 50.0)
        settled = bool(np.all(np.abs(new - k) <= 1e-9 * k))
        k = new
        if settled:
            break
    scale = top[:, 0] * np.exp(np.log(np.exp(k[:, None] * lx).mean(1)) / k)
    return (k[0], scale[0]) if one else (k, scale)


def gradient_magnitude(image: np.ndarray, floor: float = 1e-3) -> np.ndarray:
    """``(H, W)`` Sobel gradient magnitude of a gray image (uint8, read as [0, 1]; edges replicated), at
    least ``floor``."""
    a = np.asarray(image, np.float64)
    a = a / 255.0 if np.asarray(image).dtype == np.uint8 else a
    p = np.pad(a, 1, mode="edge")
    gx = (p[:-2, 2:] + 2 * p[1:-1, 2:] + p[2:, 2:]) - (p[:-2, :-2] + 2 * p[1:-1, :-2] + p[2:, :-2])
    gy = (p[2:, :-2] + 2 * p[2:, 1:-1] + p[2:, 2:]) - (p[:-2, :-2] + 2 * p[:-2, 1:-1] + p[:-2, 2:])
    return np.maximum(np.hypot(gx, gy), floor)


def _starts(length: int, patch: int, stride: int) -> list[int]:
    starts = list(range(0, max(length - patch, 0) + 1, stride))
    if starts[-1] + patch < length:  # the last patch reaches the edge
        starts.append(length - patch)
    return starts


def patch_weibull(image: np.ndarray, patch: int = 32, stride: int | None = None
                  ) -> tuple[np.ndarray, np.ndarray, list[int], list[int]]:
    """The Weibull fit of every patch's gradient magnitudes.

    Returns:
        ``(shape, scale, rows, cols)``: ``(R, C)`` parameters of the patches starting at ``rows × cols``.
    """
    g = gradient_magnitude(image)
    h, w = g.shape
    patch = min(patch, h, w)
    stride = stride or max(1, patch // 2)
    rows, cols = _starts(h, patch, stride), _starts(w, patch, stride)
    blocks = np.stack([g[r:r + patch, c:c + patch].ravel() for r in rows for c in cols])
    k, lam = weibull_fit(blocks)
    return k.reshape(len(rows), len(cols)), lam.reshape(len(rows), len(cols)), rows, cols


class WeibullDetector:
    """Timm & Barth's unsupervised detector (see the module's text), as a method that turns images into
    scores and maps like SACNN's :func:`~sacnn_lab.inference.predict`.

    Args:
        patch: the patches' side in px (32 on DAGM's 512²).
        stride: their step (default: half a patch, 50 % overlap).
        k_mad: the threshold :meth:`fit` sets: the median score of its images plus this many median absolute
            deviations.
    """

    def __init__(self, patch: int = 32, stride: int | None = None, k_mad: float = 3.0):
        if patch < 4:
            raise ValueError(f"patch must be at least 4 px, not {patch}")
        self.patch, self.stride, self.k_mad = patch, stride, k_mad
        self.threshold: float | None = None
        self.spread: float = 1.0

    def distances(self, image: np.ndarray) -> np.ndarray:
        """``(H, W)`` novelty of each pixel: the largest distance, in Weibull space, of the patches covering
        it from the image's own reference point (axes scaled by their median absolute deviation)."""
        k, lam, rows, cols = patch_weibull(image, self.patch, self.stride)
        feats = np.stack([k.ravel(), np.log(lam.ravel())], 1)  # the scale on a log axis: it is a magnitude
        ref = np.median(feats, 0)
        mad = np.median(np.abs(feats - ref), 0)
        mad = np.where(mad > 0, mad, 1.0)
        d = np.sqrt((((feats - ref) / (1.4826 * mad)) ** 2).sum(1)).reshape(k.shape)
        h, w = np.shape(image)[:2]
        out = np.zeros((h, w))
        patch = min(self.patch, h, w)
        for i, r in enumerate(rows):
            for j, c in enumerate(cols):
                view = out[r:r + patch, c:c + patch]
                np.maximum(view, d[i, j], out=view)
        return out

    def fit(self, images: Sequence[np.ndarray] | np.ndarray) -> WeibullDetector:
        """Set the threshold from unlabelled images (e.g. a training split, its defects included): the median
        of their largest distances plus ``k_mad`` median absolute deviations; the sigmoid's spread is one
        such deviation."""
        scores = np.asarray([self.distances(im).max() for im in images])
        med = float(np.median(scores))
        mad = float(1.4826 * np.median(np.abs(scores - med))) or 1.0
        self.threshold, self.spread = med + self.k_mad * mad, mad
        return self

    def predict_maps(self, images: np.ndarray) -> Prediction:
        """Scores ``(B,)`` and maps ``(B, H, W)`` in [0, 1] (0.5: the threshold) of ``(B, H, W)`` uint8 images;
        ``feature_map`` is the map too (the detector has no coarser layer)."""
        if self.threshold is None:
            raise RuntimeError("call fit(images) first: the threshold comes from unlabelled images")
        images = np.asarray(images)
        if images.ndim == 2:
            images = images[None]
        maps = np.stack([self.distances(im) for im in images])
        prob = 1.0 / (1.0 + np.exp(-(maps - self.threshold) / self.spread))
        t = torch.from_numpy(prob.astype(np.float32))
        return Prediction(score=t.flatten(1).amax(1), feature_map=t, map=t)
