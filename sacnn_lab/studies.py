"""Studies: several runs under one budget, returned as tidy tables.

``imbalance_study`` trains SACNN for several defective : defect-free ratios with the same number of
training samples (the paper's Figure 6) and returns one row per (ratio, epoch). ``aggregation_study``
trains one run per aggregation of the defective layer (the paper's maximum against the mean, log-sum-exp
and top-k pooling) with the same budget and seeds, and returns one row per (aggregation, epoch) with the
maps measured against the truth every epoch.
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


AGGREGATION_FIGURES = ("val_accuracy", "val_auroc", "val_pointing_game", "val_energy_pointing_game",
                       "val_iou_otsu", "val_dice_otsu", "val_compactness_otsu", "val_pixel_auroc",
                       "val_false_alarm_area")
"""The per-epoch figures :func:`aggregation_study` gathers."""


def aggregation_study(aggregations: Sequence[str | tuple[str, dict[str, float]]] = (
                          "max", "mean", ("lse", {"lse_r": 5.0}), ("topk", {"topk_k": 0.05})),
                      base: RunConfig | None = None, run_dir: str | os.PathLike | None = None,
                      progress: bool = True, test_size: int | None = None) -> tuple[Any, dict[str, Run]]:
    """Train one run per aggregation with the same data, budget and seeds, and gather their figures.

    Every run differs from ``base`` in ``ModelConfig.aggregation`` (and its ``lse_r`` / ``topk_k``) alone,
    and measures its maps against the truth after every epoch (``eval_localisation``).

    Args:
        aggregations: each an aggregation's name, or ``(name, {"lse_r": r})`` / ``(name, {"topk_k": k})``.
        base: the configuration every run shares (default: the ``fast`` character preset).
        run_dir: when given, each run is saved in ``run_dir/<label>`` (e.g. ``lse_r5``).
        progress: progress bars.
        test_size: images of the final test evaluation (default: the test split's size).

    Returns:
        ``(table, runs)``: a pandas DataFrame with one row per (aggregation, epoch) — ``aggregation``,
        ``label`` (``"lse r=5"``), ``epoch``, ``train_time``, ``train_loss`` and :data:`AGGREGATION_FIGURES`,
        and on the last epoch's row the same figures on the test split (``test_*``) — and the runs by label.
    """
    import pandas as pd

    if not aggregations:
        raise ValueError("aggregations must name at least one aggregation")
    base = base or RunConfig.preset("fast")
    rows, runs = [], {}
    for entry in aggregations:
        name, knobs = (entry, {}) if isinstance(entry, str) else (entry[0], dict(entry[1]))
        label = name + "".join(f" {k.split('_')[-1]}={v:g}" for k, v in knobs.items())
        cfg = RunConfig(replace(base.model, aggregation=name, **knobs), base.data,
                        replace(base.train, eval_localisation=True))
        folder = None if run_dir is None else Path(run_dir) / label.replace(" ", "_").replace("=", "")
        if label in runs:
            raise ValueError(f"aggregation {label!r} is named twice")
        run = train(cfg, folder, progress=progress)
        runs[label] = run
        test = evaluate(run.model, split(cfg, "test", n=test_size), localisation=True)
        last = run.history.epochs[-1]["epoch"]
        for rec in run.history.epochs:
            row = {"aggregation": name, "label": label,
                   **{k: rec.get(k) for k in ("epoch", "train_time", "train_loss", *AGGREGATION_FIGURES)}}
            if rec["epoch"] == last:
                row.update({f"test_{k[4:]}": test.get(k[4:]) for k in AGGREGATION_FIGURES})
            rows.append(row)
    return pd.DataFrame(rows), runs
