"""What the maximum buys: the paper's feature competition against the mean, log-sum-exp and top-k pooling
of the same defective layer, with the same data, budget and seeds.

    python benchmarks/aggregation_study.py                     # the fast character preset, ~5 min on 2 cores
    python benchmarks/aggregation_study.py --out runs/aggregation --epochs 15
    python benchmarks/aggregation_study.py --data textile --epochs 8 --out runs/aggregation-textile

Prints one row per aggregation: the test figures after the last epoch (accuracy, AUROC, the pointing game
exact and at 8 px, the energy pointing game, IoU and compactness of the map at Otsu's threshold, the
false-alarm area of the defect-free images) and the training time; with ``--out``, also writes the
per-epoch table (``table.csv``), the last epoch's figures (``summary.csv``) and their curves
(``curves.png``).
"""

from __future__ import annotations

import argparse
import math
from pathlib import Path

from sacnn_lab.config import RunConfig
from sacnn_lab.experiment import evaluate, split
from sacnn_lab.studies import AGGREGATION_FIGURES, aggregation_study

SHOWN = ("accuracy", "auroc", "pointing_game", "pointing_game_8px", "energy_pointing_game", "iou_otsu",
         "compactness_otsu", "false_alarm_area")


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--out", help="folder for the runs, table.csv, summary.csv and curves.png")
    p.add_argument("--epochs", type=int, help="epochs of each run (default: the preset's)")
    p.add_argument("--samples-per-epoch", type=int, help="training samples per epoch (default: the preset's)")
    p.add_argument("--data", choices=["characters", "textile"], default="characters",
                   help="the character set (default) or the generated DAGM-like textile set (its Test split)")
    p.add_argument("--test-size", type=int, default=2000,
                   help="test images (default: 2,000 of the unseen seed; textile: its 575 Test images)")
    p.add_argument("--lse-r", type=float, default=5.0, help="sharpness of log-sum-exp pooling")
    p.add_argument("--topk", type=float, default=0.05, help="k of top-k pooling: a count, or a share below 1")
    p.add_argument("--quiet", action="store_true")
    args = p.parse_args(argv)

    changes = {k: v for k, v in (("epochs", args.epochs), ("samples_per_epoch", args.samples_per_epoch)) if v}
    if args.epochs and args.data == "characters":  # the preset's small early epochs, fewer than the epochs
        changes["early_epochs"] = min(RunConfig.preset("fast").data.early_epochs, args.epochs - 1)
    base = RunConfig.preset("fast", data=args.data, **changes)
    table, runs = aggregation_study(["max", "mean", ("lse", {"lse_r": args.lse_r}), ("topk", {"topk_k": args.topk})],
                                    base=base, run_dir=None if args.out is None else Path(args.out) / "runs",
                                    progress=not args.quiet, test_size=args.test_size)
    rows = {}
    for label, run in runs.items():
        test = split(run.config, "test", n=args.test_size)
        last = table[table["label"] == label].iloc[-1]
        figures = {k: last[f"test_{k[4:]}"] for k in AGGREGATION_FIGURES}
        rows[label] = {"accuracy": figures["val_accuracy"], "auroc": figures["val_auroc"],
                       "pointing_game": figures["val_pointing_game"],
                       "pointing_game_8px": evaluate(run.model, test, tolerance=8)["pointing_game"],
                       "energy_pointing_game": figures["val_energy_pointing_game"],
                       "iou_otsu": figures["val_iou_otsu"], "compactness_otsu": figures["val_compactness_otsu"],
                       "false_alarm_area": figures["val_false_alarm_area"], "train_s": last["train_time"]}
    n_test = len(split(base, "test", n=args.test_size).labels)
    print(f"{n_test} test images, {base.train.epochs} epochs of {base.data.samples_per_epoch:,} samples each")
    print(f"{'aggregation':<12}" + "".join(f"{k:>22}" for k in (*SHOWN, "train_s")))
    for label, r in rows.items():
        print(f"{label:<12}" + "".join(f"{r[k]:>22.4f}" if not math.isnan(r[k]) else f"{'n/a':>22}"
                                       for k in (*SHOWN, "train_s")))
    if args.out:
        import pandas as pd

        from sacnn_lab.plots import study_curves

        out = Path(args.out)
        out.mkdir(parents=True, exist_ok=True)
        table.to_csv(out / "table.csv", index=False)
        pd.DataFrame.from_dict(rows, orient="index").to_csv(out / "summary.csv", index_label="aggregation")
        study_curves(table, AGGREGATION_FIGURES, path=out / "curves.png")
        print(f"table.csv, summary.csv and curves.png written to {out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
