"""One ablation run of the ``fast`` preset: change any fields by name, train, test, print one line.

    python benchmarks/preset_ablation.py                      # the preset itself
    python benchmarks/preset_ablation.py lr=0.02              # peak learning rate
    python benchmarks/preset_ablation.py first_stride=2 epochs=7
    python benchmarks/preset_ablation.py inner_relu=False norm=none channels=8,16,32
    python benchmarks/preset_ablation.py epochs=75 early_epochs=55 max_time=600 --out runs/long55

Values are parsed as Python literals where possible (``8,16,32`` becomes a tuple). Prints the training
time, samples, validation accuracy per epoch, and test accuracy / pointing game on ``--test`` images of
the unseen test seed. These runs are behind the tables of docs/results.md, "The character `fast` preset".
"""

from __future__ import annotations

import argparse
import ast

from sacnn_lab.config import RunConfig
from sacnn_lab.experiment import evaluate, split, train


def parse(pairs: list[str]) -> dict:
    out = {}
    for pair in pairs:
        key, _, raw = pair.partition("=")
        if not _:
            raise SystemExit(f"expected key=value, got {pair!r}")
        try:
            out[key] = ast.literal_eval(raw)
        except (ValueError, SyntaxError):
            out[key] = raw
    return out


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("changes", nargs="*", help="field=value pairs")
    p.add_argument("--test", type=int, default=2000, help="test images (unseen seed)")
    p.add_argument("--out", help="keep the run in this folder (config, checkpoint, history)")
    args = p.parse_args()
    changes = parse(args.changes)
    cfg = RunConfig.preset("fast", **{"val_size": 500, **changes})
    run = train(cfg, args.out, progress=False)
    h = run.history
    m = evaluate(run.model, split(cfg, "test", n=args.test))
    print(f"{changes or 'fast preset'}: {h.epochs[-1]['train_time']:.0f} s of training, "
          f"{sum(r['samples'] for r in h.epochs)} samples, "
          f"val accuracy per epoch {[round(r['val_accuracy'], 3) for r in h.epochs]}, "
          f"test accuracy {m['accuracy']:.4f}, pointing game {m['pointing_game']:.3f} ({args.test} images)")


if __name__ == "__main__":
    main()
