"""SACNN against the Grad-CAM / VGG19 baseline on the character (or textile) set: localisation, accuracy,
map cost.

    python benchmarks/compare_gradcam.py                       # trains both into runs/bench-*, ~20 min
    python benchmarks/compare_gradcam.py --sacnn runs/fast --baseline runs/vgg   # reuse trained runs
    python benchmarks/compare_gradcam.py --n 500               # a quicker, smaller test split
    python benchmarks/compare_gradcam.py --baseline-preset full --device cuda   # torchvision's VGG19, on a GPU
    python benchmarks/compare_gradcam.py --data textile --sacnn runs/bench-textile \
        --baseline runs/bench-textile-vgg                         # the paper's Figure 11 set (DAGM layout)

Trains (or loads, when the run folder already holds a finished run) SACNN's ``fast`` preset and the
baseline's ``cpu`` preset ("VGG19-BN-style, reduced"; ``--baseline-preset full``: torchvision's VGG19,
for a GPU), then, on the test split of an unseen seed (2,000 balanced images by default), prints both
methods' accuracy and localisation figures side by side, and the cost of a map per image for each,
measured in the same run. A third column takes the baseline's Grad-CAM
one layer earlier (``--layer``), where its map is twice as fine. With ``--data textile`` both train their
textile presets on the generated DAGM-like set (``--folder``: the real DAGM 2007 class folder), and the
localisation truth is the label ellipse of each defective test image. The paper's expectation: SACNN's maps are
more compact at equal or better accuracy. This prints what it measures, whichever way it goes.
"""

from __future__ import annotations

import argparse
import copy
import os
import sys
import time
from dataclasses import replace
from pathlib import Path

import pandas as pd

from sacnn_lab.callbacks import ProgressBar
from sacnn_lab.compare import compare, map_cost
from sacnn_lab.config import BASELINE_PRESETS, RunConfig
from sacnn_lab.experiment import load_run, split, train
from sacnn_lab.metrics import localisation_table, summarise

ROWS = [("accuracy", "image accuracy"), ("auroc", "image AUROC"), ("pointing_game", "pointing game"),
        ("energy_pointing_game", "energy pointing game"), ("iou_fixed", "IoU, map > 0.5"),
        ("iou_otsu", "IoU, Otsu"), ("dice_otsu", "Dice, Otsu"),
        ("compactness_fixed", "compactness, map > 0.5"), ("compactness_otsu", "compactness, Otsu"),
        ("pixel_auroc", "pixel AUROC"), ("pixel_ap", "pixel AP"),
        ("false_alarm_area", "false-alarm area (defect-free)")]


def _differences(saved: dict, wanted: dict, prefix: str = "") -> list[str]:
    """Dotted names of the fields where two nested config dicts differ (``train.device`` aside)."""
    out = []
    for key in sorted(set(saved) | set(wanted)):
        a, b, name = saved.get(key), wanted.get(key), f"{prefix}{key}"
        if isinstance(a, dict) and isinstance(b, dict):
            out += _differences(a, b, name + ".")
        elif a != b and name != "train.device":
            out.append(name)
    return out


def trained(config: RunConfig, run_dir: Path, name: str):
    """Load a finished run from ``run_dir``, or train (resuming an interrupted one) and time it."""
    if (run_dir / "checkpoint.pt").is_file():
        run = load_run(run_dir)
        if len(run.history.epochs) >= run.config.train.epochs:
            print(f"{name}: loaded {run_dir} ({run.history.epochs[-1]['train_time']:.0f} s of training)")
            changed = _differences(run.config.to_dict(), config.to_dict())
            if changed:
                print(f"   note: that run's config differs from today's preset in {', '.join(changed)}; "
                      f"its figures are that config's (delete the folder to retrain)")
            return run
    t = time.perf_counter()
    # one line per epoch (bars too at a terminal): the baseline alone trains for minutes
    run = train(config, run_dir, resume=True, progress=False,
                callbacks=[ProgressBar(bars=sys.stderr.isatty())])
    last = run.history.epochs[-1]
    print(f"{name}: trained in {time.perf_counter() - t:.0f} s wall ({last['train_time']:.0f} s of training steps), "
          f"validation accuracy {last['val_accuracy']:.4f}")
    return run


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--sacnn", default="runs/bench-sacnn-fast", help="SACNN run folder (trained if empty)")
    p.add_argument("--baseline", default=None,
                   help="baseline run folder (trained if empty; default runs/bench-vgg-PRESET)")
    p.add_argument("--baseline-preset", choices=BASELINE_PRESETS, default="cpu",
                   help="'cpu': the reduced VGG19-BN (~11 min on 2 cores); 'full': torchvision's VGG19, "
                        "ImageNet weights when cached, for a GPU")
    p.add_argument("--device", default=None,
                   help="where the comparison runs (default: the CPU, where trained and loaded runs leave "
                        "their models)")
    p.add_argument("--data", choices=["characters", "textile"], default="characters")
    p.add_argument("--folder", default=None, help="textile: a DAGM 2007 class folder instead of the generated set")
    p.add_argument("--n", type=int, default=None,
                   help="test images (characters: unseen seed, balanced, default 2,000; textile: the Test split)")
    p.add_argument("--batch-size", type=int, default=50, help="images per pass for both methods")
    p.add_argument("--figure", default=None, help="also save the Figure 11 reproduction there (PNG)")
    p.add_argument("--layer", default=None,
                   help="also measure Grad-CAM on this layer (default: the last ReLU before the last pooling, "
                        "twice the resolution of features[-1]: features.51 in VGG19-BN, features.35 in VGG19); "
                        "'' to skip")
    args = p.parse_args()

    import torch

    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, {os.cpu_count()} cores")
    extra = {"folder": args.folder} if args.folder else {}
    base_cfg = RunConfig.baseline(args.baseline_preset, data=args.data, **extra)
    sacnn = trained(RunConfig.preset("fast", data=args.data, **extra), Path(args.sacnn), "SACNN (fast preset)")
    base_dir = Path(args.baseline or f"runs/bench-vgg-{args.baseline_preset}")
    base = trained(base_cfg, base_dir, base_cfg.model.name)
    test = split(sacnn.config, "test", n=args.n)
    masks = getattr(test, "masks", None) if args.data == "textile" else None
    t = time.perf_counter()
    c = compare(sacnn, base, test, batch_size=args.batch_size, device=args.device)
    where = f"seed {sacnn.config.data.test_seed}" if args.data == "characters" else "the Test split"
    print(f"\ncompared on {len(test)} test images ({where}, "
          f"{int(test.labels.sum())} defective) in {time.perf_counter() - t:.0f} s\n")
    summary, costs = c.summary, c.costs
    layer = f"features.{len(base.model.features) - 2}" if args.layer is None else args.layer
    if layer:  # the same trained baseline, its CAM taken one layer earlier (8×8 instead of 4×4 at 136 px)
        alt = copy.deepcopy(base.model)
        alt.config = replace(alt.config, target_layer=layer)
        name = f"@{layer}"
        cost, pred = map_cost(alt, test.images, batch_size=args.batch_size, device=args.device)
        table = localisation_table(pred.score.numpy(), test.labels, pred.map.numpy(), test.boxes, masks=masks,
                                   method=name)
        summary = pd.concat([summary, summarise(table)])
        costs = pd.concat([costs, pd.DataFrame.from_dict({name: cost}, orient="index")])
    names = list(summary.index)
    print(f"{'':34s}" + "".join(f"{n:>16s}" for n in names))
    for key, label in ROWS:
        print(f"{label:34s}" + "".join(f"{summary.loc[n, key]:16.3f}" for n in names))
    print(f"\n{'map cost, ms per image':34s}" + "".join(f"{n:>16s}" for n in names))
    for key, label in (("forward_ms", "score only (forward)"), ("map_ms", "score + map"),
                       ("map_over_forward", "map / score-only time")):
        print(f"{label:34s}" + "".join(f"{costs.loc[n, key]:16.2f}" for n in names))
    print(f"(batch {args.batch_size}, device {c.costs.iloc[0]['device']}; the baseline is {base.config.model.name}, "
          f"CAM on {base.config.model.target_layer or 'features[-1]'})")
    if args.figure:
        c.figure.savefig(args.figure, dpi=110)
        print(f"figure written to {args.figure}")


if __name__ == "__main__":
    main()
