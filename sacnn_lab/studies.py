"""Studies: several runs under one budget, returned as tidy tables.

``imbalance_study`` trains SACNN for several defective : defect-free ratios with the same number of
training samples (the paper's Figure 6) and returns one row per (ratio, epoch). ``aggregation_study``
trains one run per aggregation of the defective layer (the paper's maximum against the mean, log-sum-exp
and top-k pooling) with the same budget and seeds, and returns one row per (aggregation, epoch) with the
maps measured against the truth every epoch. Under torchrun both spread their runs over the ranks (each rank
trains its share alone, on its own GPU where there are several; every rank gets every run's figures).
``methods_study`` puts every method of the paper's Table 1
(SACNN under each aggregation, the supervised reference, the Grad-CAM baseline, the unsupervised Weibull
detector) on the same test images, over several seeds, and returns a :class:`MethodsStudy` (its summary: one row
per method).
"""

from __future__ import annotations

import functools
import json
import os
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Sequence

from .config import RunConfig
from .distributed import ranks_from_env, spread
from .experiment import Run, evaluate, load_run, split, train
from .mechanism import drift_summary, winner_drift  # noqa: F401  (where they lived before)
from .trainer import resolve_device


def imbalance_study(ratios: Sequence[float] = (1, 3, 7, 10), base: RunConfig | None = None,
                    run_dir: str | os.PathLike | None = None, progress: bool = True,
                    test_size: int | None = None, seed: int | None = None, reuse: bool = False,
                    load_only: bool = False) -> tuple[Any, dict[float, Run]]:
    """Train one run per ratio with the same budget and gather their figures.

    Args:
        ratios: defect-free training images per defective one (1 = balanced; the paper: 1, 3, 7, 10).
        base: the configuration every run shares (default: the ``fast`` preset); only the training
            ratio changes. Validation and test stay balanced (``base.data.eval_ratio``).
        run_dir: when given, each run is saved in ``run_dir/ratio_<r>`` (``ratio_<r>_seed<s>`` with ``seed``).
        progress: progress bars.
        test_size: images of the final test evaluation (default: ``base.data.test_size``).
        seed: the runs' initialisation seed (``TrainConfig.seed``; default: the base's), named in the folders.
        reuse: a run folder already there is resumed: a finished run is loaded, an interrupted one continues
            (one of another configuration is refused, naming the fields that differ).
        load_only: load each run from its folder, never train (e.g. the reference runs of
            :mod:`sacnn_lab.course`).

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
    jobs = []
    for r in ratios:
        if not 0.1 <= float(r) <= 100:
            raise ValueError(f"each ratio must lie in 0.1–100 defect-free images per defective one, not {r}")
        cfg = RunConfig(base.model, replace(base.data, characters=replace(base.data.characters, ratio=float(r))),
                        base.train if seed is None else replace(base.train, seed=int(seed)))
        folder = None if run_dir is None else \
            Path(run_dir) / (f"ratio_{r:g}" + ("" if seed is None else f"_seed{int(seed)}"))
        jobs.append((r, functools.partial(_train_and_test, cfg, folder, progress, test_size, False, reuse,
                                          load_only)))
    rows, runs = [], {}
    for r, (run, test) in spread(jobs, resolve_device(base.train.device)).items():
        cfg = run.config
        runs[r] = run
        last = run.history.epochs[-1]["epoch"]
        for rec in run.history.epochs:
            row = {"ratio": float(r), "label": f"1:{r:g}", **{k: rec.get(k) for k in (
                "epoch", "samples", "train_time", "train_loss", "train_precision", "val_accuracy",
                "val_precision", "val_recall", "val_pointing_game")}}
            if rec["epoch"] == last:
                row.update(test_accuracy=test["accuracy"], test_pointing_game=test["pointing_game"])
            rows.append(row)
    return pd.DataFrame(rows), runs


def _train_and_test(cfg: RunConfig, folder: Path | None, progress: bool, test_size: int | None,
                    localisation: bool, reuse: bool = False, load_only: bool = False) -> tuple[Run, dict[str, Any]]:
    """One run of a study and its test figures (a job of :func:`~sacnn_lab.distributed.spread`: under torchrun
    each rank trains its share of a study's runs; only rank 0 shows progress)."""
    if load_only:
        if folder is None:
            raise ValueError("load_only reads finished runs: give run_dir")
        run = load_run(folder)
    else:
        run = train(cfg, folder, resume=reuse, progress=progress and ranks_from_env().main)
    return run, evaluate(run.model, split(run.config, "test", n=test_size), localisation=localisation)


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
    jobs, names = [], {}
    for entry in aggregations:
        name, knobs = (entry, {}) if isinstance(entry, str) else (entry[0], dict(entry[1]))
        label = name + "".join(f" {k.split('_')[-1]}={v:g}" for k, v in knobs.items())
        cfg = RunConfig(replace(base.model, aggregation=name, **knobs), base.data,
                        replace(base.train, eval_localisation=True))
        folder = None if run_dir is None else Path(run_dir) / label.replace(" ", "_").replace("=", "")
        if label in names:
            raise ValueError(f"aggregation {label!r} is named twice")
        names[label] = name
        jobs.append((label, functools.partial(_train_and_test, cfg, folder, progress, test_size, True)))
    rows, runs = [], {}
    for label, (run, test) in spread(jobs, resolve_device(base.train.device)).items():
        name = names[label]
        runs[label] = run
        last = run.history.epochs[-1]["epoch"]
        for rec in run.history.epochs:
            row = {"aggregation": name, "label": label,
                   **{k: rec.get(k) for k in ("epoch", "train_time", "train_loss", *AGGREGATION_FIGURES)}}
            if rec["epoch"] == last:
                row.update({f"test_{k[4:]}": test.get(k[4:]) for k in AGGREGATION_FIGURES})
            rows.append(row)
    return pd.DataFrame(rows), runs


METHOD_FIGURES = ("accuracy", "auroc", "recall", "pointing_game", "pointing_game_tol", "energy_pointing_game",
                  "iou_otsu", "dice_otsu", "compactness_otsu", "pixel_auroc", "false_alarm_area", "map_ms")
"""The figures :func:`methods_study` gives for each method (means and, over several seeds, spreads)."""


@dataclass
class MethodsStudy:
    """What :func:`methods_study` returns.

    Attributes:
        summary: one row per method: ``supervision`` (what labels it learnt from), ``seeds``, and for each of
            :data:`METHOD_FIGURES` its mean over the seeds and ``<figure>_std`` (0 for one seed).
        per_seed: one row per (method, seed): the :func:`~sacnn_lab.compare.compare_methods` summary.
        epochs: one row per (method, seed, epoch) of the trained methods: ``train_time``, ``train_loss`` and
            their held-out :data:`AGGREGATION_FIGURES` after each epoch (for :func:`~sacnn_lab.plots.study_curves`).
        figure: the same test images under every method (the first seed's runs).
        runs: ``"<method> seed <s>"`` → its :class:`~sacnn_lab.experiment.Run`.
    """

    summary: Any
    per_seed: Any
    epochs: Any
    figure: Any
    runs: dict[str, Run] = field(default_factory=dict)


SUPERVISION = {"weak": "image labels", "full": "image labels + masks", "none": "none (unsupervised)"}


def methods_study(data: str = "characters", seeds: Sequence[int] = (0,), run_dir: str | os.PathLike | None = None,
                  aggregations: Sequence[str | tuple[str, dict[str, float]]] = (
                      "max", "mean", ("lse", {"lse_r": 5.0}), ("topk", {"topk_k": 0.05})),
                  supervised: bool = True, baseline: bool = True, baseline_seeds: int = 1, weibull: bool = True,
                  weibull_patch: int | None = None, test_size: int | None = None, base: RunConfig | None = None,
                  baseline_config: RunConfig | None = None, progress: bool = True, tolerance: float = 8,
                  figure_images: int = 6, load_only: bool = False) -> MethodsStudy:
    """Every method of the paper's Table 1 on the same test images, with the same metrics: SACNN with each
    aggregation (weakly supervised), the same network trained from the true masks too (the supervised
    reference, ``TrainConfig.supervision="mask"``), the Grad-CAM / VGG19 baseline, and the unsupervised
    Weibull-feature detector.

    Each trained method runs once per seed (``TrainConfig.seed``: the network's initialisation; the data are
    the same); the Weibull detector has nothing to seed (its threshold comes from 500 unlabelled training
    images, or the textile Train split).

    Args:
        data: ``"characters"`` (the ``fast`` preset) or ``"textile"`` (the textile ``fast`` preset).
        seeds: initialisation seeds.
        run_dir: when given, each run lives in ``run_dir/<method>_seed<s>`` and a finished one is loaded
            instead of trained again (an unfinished one is resumed; one of another config is refused).
        aggregations: SACNN's aggregations (see :func:`aggregation_study`).
        supervised / baseline / weibull: include the supervised reference, the Grad-CAM baseline (its
            ``cpu`` preset, for the first ``baseline_seeds`` seeds: it trains for minutes) and the detector.
        weibull_patch: the detector's patch side (default: 32 px on textile, as for DAGM; 16 on the 136 px
            characters).
        test_size: test images (default: the preset's: 2,000 characters of the unseen seed; 575 textile).
        base: the SACNN configuration every run shares (default: the ``fast`` preset of ``data``).
        baseline_config: the baseline's run (default: ``RunConfig.baseline("cpu", data=data)``).
        progress: progress bars.
        tolerance: the pixels of ``pointing_game_tol``.
        figure_images: defective images in the figure.
        load_only: load each run from ``run_dir`` and never train (e.g. the reference runs of
            :mod:`sacnn_lab.course`); a run missing there, or of another configuration, is an error.

    Returns:
        A :class:`MethodsStudy`.
    """
    import numpy as np
    import pandas as pd

    from .compare import compare_methods
    from .weibull import WeibullDetector

    if data not in ("characters", "textile"):
        raise ValueError(f"data must be 'characters' or 'textile', not {data!r}")
    if not seeds:
        raise ValueError("seeds must hold at least one seed")
    base = base or RunConfig.preset("fast", data=data)
    base = RunConfig(base.model, base.data, replace(base.train, eval_localisation=True))
    test = split(base, "test", n=test_size)

    if load_only and run_dir is None:
        raise ValueError("load_only reads finished runs: give run_dir")

    def fit(cfg: RunConfig, label: str, seed: int) -> Run:
        folder = None if run_dir is None else Path(run_dir) / f"{label}_seed{seed}"
        cfg = RunConfig(cfg.model, cfg.data, replace(cfg.train, seed=seed))
        if load_only:
            from .experiment import _plain, config_differences

            if not (folder / "checkpoint.pt").is_file():
                raise FileNotFoundError(f"no finished run in {folder} (load_only never trains)")
            diff = config_differences(_plain(cfg.to_dict()), json.loads((folder / "config.json").read_text()))
            if diff:
                raise ValueError(f"{folder} holds a run of another configuration: {diff}")
            return load_run(folder)
        return train(cfg, folder, resume=folder is not None, progress=progress)

    variants: list[tuple[str, str, str, RunConfig]] = []  # (name, folder label, supervision, config)
    for entry in aggregations:
        name, knobs = (entry, {}) if isinstance(entry, str) else (entry[0], dict(entry[1]))
        label = name + "".join(f"_{k.split('_')[-1]}{v:g}" for k, v in knobs.items())
        shown = "SACNN" + ("" if name == "max" else " (" + name + "".join(
            f" {k.split('_')[-1]}={v:g}" for k, v in knobs.items()) + ")")
        variants.append((shown, label, "weak", RunConfig(replace(base.model, aggregation=name, **knobs),
                                                         base.data, base.train)))
    if supervised:
        variants.append(("supervised (masks)", "supervised", "full",
                         RunConfig(base.model, base.data, replace(base.train, supervision="mask"))))
    detector = None
    if weibull:
        patch = weibull_patch or (32 if data == "textile" else 16)
        if data == "textile":
            from .experiment import textile_split

            unlabelled = textile_split(base, "Train").images
        else:
            from .sources import source_for

            unlabelled = source_for(base).generators[0].generate(base.data.train_seed, np.arange(500)).images
        detector = WeibullDetector(patch=patch).fit(unlabelled)

    runs: dict[str, Run] = {}
    rows, epoch_rows, figure = [], [], None
    for i, seed in enumerate(seeds):
        methods: dict[str, Any] = {}
        kinds: dict[str, str] = {}
        for shown, label, kind, cfg in variants:
            run = fit(cfg, label, seed)
            runs[f"{shown} seed {seed}"] = methods[shown] = run
            kinds[shown] = kind
        if baseline and i < baseline_seeds:
            run = fit(baseline_config or RunConfig.baseline("cpu", data=data), "gradcam", seed)
            runs[f"Grad-CAM seed {seed}"] = methods["Grad-CAM (VGG19-BN, reduced)"] = run
            kinds["Grad-CAM (VGG19-BN, reduced)"] = "weak"
        if detector is not None and i == 0:
            methods["Weibull features"] = detector
            kinds["Weibull features"] = "none"
        for name, m in methods.items():
            for rec in getattr(getattr(m, "history", None), "epochs", []):
                epoch_rows.append({"method": name, "seed": seed, **{k: rec.get(k) for k in (
                    "epoch", "train_time", "train_loss", *AGGREGATION_FIGURES)}})
        c = compare_methods(methods, test, tolerance=tolerance, keep_predictions=False,
                            figure_images=figure_images,
                            figure_title=f"the same {data} test images under every method")
        if figure is None:
            figure = c.figure
        for name, row in c.summary.iterrows():
            rows.append({"method": name, "supervision": SUPERVISION[kinds[name]], "seed": seed,
                         **{k: row[k] for k in c.summary.columns}})
    per_seed = pd.DataFrame(rows)
    out = {}
    for name, g in per_seed.groupby("method", sort=False):
        row: dict[str, Any] = {"supervision": g["supervision"].iloc[0], "seeds": len(g)}
        for k in METHOD_FIGURES:
            row[k] = float(g[k].mean())
            row[f"{k}_std"] = float(g[k].std(ddof=1)) if len(g) > 1 else 0.0
        out[name] = row
    return MethodsStudy(pd.DataFrame.from_dict(out, orient="index"), per_seed, pd.DataFrame(epoch_rows), figure,
                        runs)
