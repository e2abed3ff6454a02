"""Speed of the map and ranking figures that lean on scipy and scikit-learn: the 8-connected components of
thresholded maps (``scipy.ndimage.label``), the boxes ``localise`` draws around them, and AUROC / average
precision (scikit-learn) of image scores and of pixel scores.

    python benchmarks/metrics_speed.py                          # 64 maps of 256² and of 512², 1,000 images
    python benchmarks/metrics_speed.py --batch 16 --sizes 136 --repeats 3

The maps imitate SACNN's: a low, smooth background with one to three bright blobs (the defects), as
probabilities. Components are counted in two kinds of masks: the maps above 0.5 (the defects: a few
components), and the defect-free backgrounds above their Otsu threshold (Otsu always splits a map: many small
components, the hard case). Rows: the work, its size, and the median and best
milliseconds over ``--repeats`` timed runs after one warm-up run (the first call also imports scipy or
scikit-learn), per batch of maps or per call:

- ``components``: :func:`sacnn_lab.localise.connected_components` on every mask of the batch;
- ``localise``: :func:`sacnn_lab.localise.localise` (``"threshold"`` and ``"otsu"``) on every map;
- ``auroc`` / ``average_precision``: ``--images`` image scores (a tenth of them defective), and the pixel
  scores of the whole batch in one call (``B·H·W`` pixels against the blobs' truth masks);
- ``pixel_auroc`` / ``pixel_average_precision``: one call per map of the batch, as
  :func:`sacnn_lab.metrics.localisation_table` makes them.

The functions timed are looked up in :func:`functions`: another implementation (an older version of the
package, say) is timed on the same data by calling :func:`run` with its own.
"""

from __future__ import annotations

import argparse
import os
import time
from importlib.metadata import version
from typing import Any, Callable

import numpy as np
from scipy import ndimage

from sacnn_lab import localise as _localise
from sacnn_lab import metrics as _metrics


def functions() -> dict[str, Callable[..., Any]]:
    """The functions timed, by name: this package's."""
    return {"connected_components": _localise.connected_components, "localise": _localise.localise,
            "otsu_threshold": _localise.otsu_threshold, "auroc": _metrics.auroc,
            "average_precision": _metrics.average_precision, "pixel_auroc": _metrics.pixel_auroc,
            "pixel_average_precision": _metrics.pixel_average_precision}


def defect_maps(n: int, size: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """``(maps, truth, free)``: ``n`` float32 probability maps ``size × size`` like SACNN's, their truth masks,
    and the same maps without their defects (defect-free images' maps)."""
    rng = np.random.default_rng(seed)
    noise = ndimage.gaussian_filter(rng.random((n, size, size), dtype=np.float32), sigma=(0, 3, 3))
    lo, hi = noise.min(axis=(1, 2), keepdims=True), noise.max(axis=(1, 2), keepdims=True)
    free = 0.25 * (noise - lo) / (hi - lo)  # background: smooth, in [0, 0.25]
    maps = free.copy()
    truth = np.zeros(maps.shape, dtype=bool)
    yy, xx = np.mgrid[:size, :size].astype(np.float32)
    for i in range(n):
        for _ in range(int(rng.integers(1, 4))):
            cy, cx = rng.uniform(0.1, 0.9, 2) * size
            sy, sx = rng.uniform(0.02, 0.08, 2) * size
            d2 = ((yy - cy) / sy) ** 2 + ((xx - cx) / sx) ** 2
            maps[i] = np.maximum(maps[i], rng.uniform(0.6, 1.0) * np.exp(-d2 / 2))
            truth[i] |= d2 <= 4  # the defect: two standard deviations around its centre
    return maps, truth, free


def timed(fn: Callable[[], Any], repeats: int) -> tuple[float, float]:
    """Median and best milliseconds of ``repeats`` calls of ``fn`` after one warm-up call."""
    fn()
    out = []
    for _ in range(repeats):
        t = time.perf_counter()
        fn()
        out.append(time.perf_counter() - t)
    return float(np.median(out)) * 1e3, float(np.min(out)) * 1e3


def run(fns: dict[str, Callable[..., Any]], batch: int = 64, sizes: tuple[int, ...] = (256, 512),
        images: int = 1000, repeats: int = 5, seed: int = 0) -> list[dict[str, Any]]:
    """Time ``fns`` (named as in :func:`functions`) on the same seeded data; one dict per row, also printed."""
    rows: list[dict[str, Any]] = []

    def row(work: str, size: str, fn: Callable[[], Any], per: str) -> None:
        median, best = timed(fn, repeats)
        rows.append({"work": work, "size": size, "per": per, "median_ms": median, "best_ms": best})
        print(f"{work:38s} {size:>14s} {median:10.2f} {best:10.2f}  ms per {per}", flush=True)

    print(f"{'work':38s} {'size':>14s} {'median':>10s} {'best':>10s}")
    rng = np.random.default_rng(seed)
    labels = rng.random(images) < 0.1
    scores = np.clip(rng.normal(0.3 + 0.4 * labels, 0.2), 0, 1).astype(np.float32)
    row("auroc (image scores)", f"{images}", lambda: fns["auroc"](scores, labels), "call")
    row("average_precision (image scores)", f"{images}", lambda: fns["average_precision"](scores, labels), "call")
    for size in sizes:
        maps, truth, free = defect_maps(batch, size, seed)
        shape = f"{batch}×{size}×{size}"
        fixed = maps > 0.5
        otsu = np.stack([m > fns["otsu_threshold"](m) for m in free])
        counts = [np.mean([fns["connected_components"](m)[1] for m in masks]) for masks in (fixed, otsu)]
        print(f"  ({shape}: {counts[0]:.1f} components per map above 0.5, {counts[1]:.1f} per defect-free map "
              "above Otsu's threshold)")
        row("components, maps > 0.5", shape, lambda: [fns["connected_components"](m) for m in fixed], "batch")
        row("components, defect-free > Otsu", shape, lambda: [fns["connected_components"](m) for m in otsu],
            "batch")
        row("localise threshold", shape, lambda: [fns["localise"](m, method="threshold") for m in maps], "batch")
        row("localise otsu", shape, lambda: [fns["localise"](m, method="otsu") for m in maps], "batch")
        row("pixel_auroc (per map)", shape, lambda: [fns["pixel_auroc"](m, t) for m, t in zip(maps, truth)],
            "batch")
        row("pixel_average_precision (per map)", shape,
            lambda: [fns["pixel_average_precision"](m, t) for m, t in zip(maps, truth)], "batch")
        flat, flat_truth = maps.ravel(), truth.ravel()
        row("auroc (pixels, one call)", shape, lambda: fns["auroc"](flat, flat_truth), "call")
        row("average_precision (pixels, one call)", shape, lambda: fns["average_precision"](flat, flat_truth),
            "call")
    return rows


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--batch", type=int, default=64, help="maps per batch (default 64)")
    p.add_argument("--sizes", type=int, nargs="+", default=[256, 512], help="map sides (default 256 512)")
    p.add_argument("--images", type=int, default=1000, help="image scores for the image-level figures (default 1000)")
    p.add_argument("--repeats", type=int, default=5, help="timed runs per row (default 5)")
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args(argv)
    print(f"cores: {os.cpu_count()}; " + ", ".join(f"{d} {version(d)}" for d in ("numpy", "scipy", "scikit-learn")))
    run(functions(), args.batch, tuple(args.sizes), args.images, args.repeats, args.seed)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
