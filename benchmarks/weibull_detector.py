"""The paper's unsupervised reference [22] (Timm & Barth 2011, Weibull features) on the textile set.

    python benchmarks/weibull_detector.py                          # the generated DAGM-like set, ~5 min
    python benchmarks/weibull_detector.py --folder /data/DAGM2007/Class1

The threshold is set from the Train split's images without their labels (``WeibullDetector.fit``); the
figures are measured on the Test split against its masks, with the same metrics as SACNN's: accuracy,
AUROC, the pointing game (exact and at 8 px), IoU and compactness at Otsu's threshold, pixel AUROC, and
the time per image.
"""

from __future__ import annotations

import argparse
import time

import numpy as np

from sacnn_lab.config import RunConfig
from sacnn_lab.metrics import classification, localisation_table, pointing_game, summarise
from sacnn_lab.sources import DagmSource
from sacnn_lab.weibull import WeibullDetector


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--folder", help="a DAGM 2007 class folder (default: the generated textile set)")
    p.add_argument("--patch", type=int, default=32, help="patch side in px (50 %% overlap)")
    p.add_argument("--n", type=int, help="only the first N images of each split")
    args = p.parse_args(argv)

    source = DagmSource(RunConfig.preset("fast", data="textile", **({"folder": args.folder} if args.folder else {})))
    train, test = source.folder_split("Train"), source.folder_split("Test")
    if args.n:
        train, test = train.subset(np.arange(min(args.n, len(train)))), test.subset(np.arange(min(args.n, len(test))))
    det = WeibullDetector(patch=args.patch)
    t = time.perf_counter()
    det.fit(train.images)
    t_fit = time.perf_counter() - t
    scores, maps_hits, maps_hits8, tables = [], [], [], []
    t = time.perf_counter()
    for lo in range(0, len(test), 16):
        part = test.subset(np.arange(lo, min(lo + 16, len(test))))
        pred = det.predict_maps(part.images)
        s, m = pred.score.numpy(), pred.map.numpy()
        scores.append(s)
        maps_hits.append(pointing_game(m, part.boxes, part.masks))
        maps_hits8.append(pointing_game(m, part.boxes, part.masks, tolerance=8))
        tables.append(localisation_table(s, part.labels, m, part.boxes, part.masks, method="Weibull"))
    t_test = time.perf_counter() - t
    import pandas as pd

    scores = np.concatenate(scores)
    c = classification(scores, test.labels)
    summary = summarise(pd.concat(tables, ignore_index=True)).iloc[0]
    exact, at8 = np.concatenate(maps_hits).mean(), np.concatenate(maps_hits8).mean()
    print(f"Weibull features (Timm & Barth 2011), patches of {args.patch} px at 50 % overlap, threshold from "
          f"{len(train)} unlabelled Train images ({t_fit:.0f} s)")
    print(f"{len(test)} Test images ({int(test.labels.sum())} defective): accuracy {c['accuracy']:.4f}, "
          f"AUROC {c['auroc']:.4f}, recall {c['recall']:.4f}, pointing game {exact:.3f} exact / {at8:.3f} at 8 px, "
          f"IoU (Otsu) {summary['iou_otsu']:.3f}, compactness (Otsu) {summary['compactness_otsu']:.2f}, "
          f"pixel AUROC {summary['pixel_auroc']:.3f}; {1000 * t_test / len(test):.0f} ms per image")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
