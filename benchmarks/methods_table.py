"""Every method of the paper's Table 1 on the same test images: SACNN under each aggregation (weakly
supervised), the supervised reference (the same network trained from the true masks too), the Grad-CAM /
VGG19 baseline, and the unsupervised Weibull-feature detector.

    python benchmarks/methods_table.py --out runs/methods                         # characters, 1 seed
    python benchmarks/methods_table.py --out runs/methods --seeds 0 1 2           # mean ± spread over 3 seeds
    python benchmarks/methods_table.py --data textile --out runs/methods-textile  # the generated DAGM-like set

Trains (or loads, when ``--out`` already holds the finished runs) one run per method and seed with the
``fast`` preset of the data (the baseline: its ``cpu`` preset, first seed only by default), then measures
all of them on the same test images (characters: 2,000 of the unseen seed; textile: the 575 Test images,
against DAGM's label ellipses) with the same metrics and the cost of a map, and prints one row per method
(the mean over the seeds, ± the standard deviation where there are several). With ``--out`` it also writes
``summary.csv``, ``per_seed.csv``, ``table.md`` and ``maps.png`` (the same test images under every method).
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

from sacnn_lab.config import RunConfig
from sacnn_lab.studies import methods_study

SHOWN = [("accuracy", "accuracy", "{:.1%}"), ("auroc", "AUROC", "{:.3f}"),
         ("pointing_game", "pointing game", "{:.3f}"), ("pointing_game_tol", "pointing game (8 px)", "{:.3f}"),
         ("energy_pointing_game", "energy pointing game", "{:.3f}"), ("iou_otsu", "IoU (Otsu)", "{:.3f}"),
         ("compactness_otsu", "compactness (Otsu)", "{:.2f}"), ("false_alarm_area", "false-alarm area", "{:.3f}"),
         ("map_ms", "ms per map", "{:.1f}")]


def markdown(summary) -> str:
    """The summary as a Markdown table: mean ± standard deviation where a method ran with several seeds."""
    head = "| method | learns from | seeds | " + " | ".join(t for _, t, _ in SHOWN) + " |"
    lines = [head, "|" + "---|" * (3 + len(SHOWN))]
    for name, row in summary.iterrows():
        cells = []
        for key, _, fmt in SHOWN:
            v, sd = row[key], row[f"{key}_std"]
            text = fmt.format(v).replace("%", " %")
            if row["seeds"] > 1 and key != "map_ms":
                text += " ± " + fmt.format(sd).replace("%", " %")
            cells.append(text)
        lines.append(f"| {name} | {row['supervision']} | {int(row['seeds'])} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--data", choices=["characters", "textile"], default="characters")
    p.add_argument("--out", help="folder for the runs (reused when finished) and the table and figure")
    p.add_argument("--seeds", type=int, nargs="+", default=[0], help="initialisation seeds (default: 0)")
    p.add_argument("--epochs", type=int, help="epochs of every SACNN run (default: the preset's)")
    p.add_argument("--samples-per-epoch", type=int, help="training samples per epoch (default: the preset's)")
    p.add_argument("--test-size", type=int, help="test images (default: 2,000 characters; the 575 textile)")
    p.add_argument("--no-baseline", action="store_true", help="leave the Grad-CAM baseline out (it trains longest)")
    p.add_argument("--baseline-seeds", type=int, default=1, help="seeds the baseline runs with (default: the first)")
    p.add_argument("--quiet", action="store_true")
    args = p.parse_args(argv)

    changes = {} if args.samples_per_epoch is None else {"samples_per_epoch": args.samples_per_epoch}
    if args.epochs:
        changes["epochs"] = args.epochs
        if args.data == "characters":
            changes["early_epochs"] = min(RunConfig.preset("fast").data.early_epochs, args.epochs - 1)
    base = RunConfig.preset("fast", data=args.data, **changes)
    t = time.perf_counter()
    study = methods_study(args.data, seeds=args.seeds, run_dir=None if args.out is None else Path(args.out) / "runs",
                          baseline=not args.no_baseline, baseline_seeds=args.baseline_seeds,
                          test_size=args.test_size, base=base, progress=not args.quiet)
    table = markdown(study.summary)
    n = int(study.per_seed["images"].iloc[0])
    print(f"{args.data}: {n} test images, seeds {args.seeds}; {time.perf_counter() - t:.0f} s in all")
    print(table)
    if args.out:
        out = Path(args.out)
        study.summary.to_csv(out / "summary.csv")
        study.per_seed.to_csv(out / "per_seed.csv", index=False)
        (out / "table.md").write_text(table + "\n")
        study.figure.savefig(out / "maps.png", dpi=110)
        print(f"wrote {out / 'summary.csv'}, per_seed.csv, table.md and maps.png")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
