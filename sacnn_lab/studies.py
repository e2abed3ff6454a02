"""Studies: several runs under one budget, returned as tidy tables.

``imbalance_study`` trains SACNN for several defective : defect-free ratios with the same number of
training samples (the paper's Figure 6) and returns one row per (ratio, epoch).
"""

from __future__ import annotations

import os
from dataclasses import replace
from pathlib import Path
from typing import Any, Sequence

from .config import RunConfig
from .experiment import Run, evaluate, split, train


def imbalance_study(ratios: Sequence[float] = (1, 3, 7, 10), base: RunConfig | None = None,
                    run_dir: str | os.PathLike | None = None, progress: bool = True,
                    test_size: int | None = None) -> tuple[Any, dict[float, Run]]:
    """Train one run per ratio with the same budget and gather their figures.

    Args:
        ratios: defect-free training images per defective one (1 = balanced; the paper: 1, 3, 7, 10).
        base: the configuration every run shares (default: the ``fast`` preset); only the training
            ratio changes. Validation and test stay balanced (``base.data.eval_ratio``).
        run_dir: when given, each run is saved in ``run_dir/ratio_<r>``.
        progress: progress bars.
        test_size: images of the final test evaluation (default: ``base.data.test_size``).

    Returns:
        ``(table, runs)``: a pandas DataFrame with one row per (ratio, epoch) — ``ratio``, ``label``
        (``"1:r"``), ``epoch``, ``train_loss``, ``train_precision``, ``val_accuracy``, ``val_precision``,
        ``val_recall``, ``val_pointing_game``, and on the last epoch's row ``test_accuracy`` and
        ``test_pointing_game`` — and the runs by ratio.
    """
    import pandas as pd

    if not ratios:
        raise ValueError("ratios must name at least one defective : defect-free ratio")
    base = base or RunConfig.preset("fast")
    rows, runs = [], {}
    for r in ratios:
        if not 0.1 <= float(r) <= 100:
            raise ValueError(f"each ratio must lie in 0.1–100 defect-free images per defective one, not {r}")
        cfg = RunConfig(base.model, replace(base.data, characters=replace(base.data.characters, ratio=float(r))),
                        base.train)
        folder = None if run_dir is None else Path(run_dir) / f"ratio_{r:g}"
        run = train(cfg, folder, progress=progress)
        runs[r] = run
        test = evaluate(run.model, split(cfg, "test", n=test_size))
        last = run.history.epochs[-1]["epoch"]
        for rec in run.history.epochs:
            row = {"ratio": float(r), "label": f"1:{r:g}", **{k: rec.get(k) for k in (
                "epoch", "samples", "train_time", "train_loss", "train_precision", "val_accuracy",
                "val_precision", "val_recall", "val_pointing_game")}}
            if rec["epoch"] == last:
                row.update(test_accuracy=test["accuracy"], test_pointing_game=test["pointing_game"])
            rows.append(row)
    return pd.DataFrame(rows), runs
