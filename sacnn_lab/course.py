"""The runs behind the notebooks, at two settings, from two sources.

Every notebook names its runs here, and has two parameters:

- ``setting``: ``"cpu"`` (the small recipes, minutes on a laptop) or ``"gpu"`` (the paper's own settings, with
  the gradient clipping that keeps them from diverging: for a GPU kernel);
- ``source``: ``"reference"`` (the runs shipped with sacnn-lab, in ``sacnn_lab/reference_runs/``: every figure
  in seconds, on any laptop) or ``"train"`` (trained here, into ``runs/<setting>/<name>``, each setting in its
  own folder; an interrupted run continues, a finished one is loaded).

::

    run = course.run("characters", setting="cpu", source="reference")
    table, runs = course.imbalance(setting="gpu", source="train")

How each reference run was made (the command, the machine, the date, its training time) is in
``sacnn_lab/reference_runs/made.json`` (:func:`made`); ``python benchmarks/reference_runs.py`` makes them again.
"""

from __future__ import annotations

import json
import os
from dataclasses import replace
from pathlib import Path
from typing import Any, Sequence

from .config import RunConfig
from .experiment import Run, config_differences, load_run, train

SETTINGS = ("cpu", "gpu")
SOURCES = ("reference", "train")
REFERENCE_DIR = Path(__file__).with_name("reference_runs")
IMBALANCE_RATIOS = (1, 3, 7, 10)
IMBALANCE_SEEDS = (0, 1, 2)


def _check(setting: str, source: str = "reference") -> None:
    if setting not in SETTINGS:
        raise ValueError(f"setting must be one of {SETTINGS}, not {setting!r}")
    if source not in SOURCES:
        raise ValueError(f"source must be one of {SOURCES}, not {source!r}")


def config(name: str, setting: str = "cpu") -> RunConfig:
    """The configuration of the course's run ``name`` at ``setting``.

    Names: ``"characters"`` (SACNN on the character set: the ``fast`` preset; on a GPU the ``paper`` preset
    clipped to 20, keeping the epoch of the best pointing game as ``best.pt``), ``"textile"`` (the generated
    DAGM-like set: the textile ``fast`` preset; on a GPU the textile ``paper`` preset clipped to 20) and
    ``"imbalance"`` (the base every run of the imbalance study shares: 3 epochs of 2,048 samples at full size;
    on a GPU the paper preset's 15 epochs of 100,000, its Figure 6) and ``"baseline"`` (the Grad-CAM baseline:
    the reduced VGG19-BN-style network for 3 epochs of 4,096 samples; on a GPU torchvision's VGG19).

    Raises:
        ValueError: an unknown name or setting.
    """
    _check(setting)
    gpu = setting == "gpu"
    if name == "characters":
        return (RunConfig.preset("paper", grad_clip=20, keep_best="val_pointing_game", num_workers=8) if gpu
                else RunConfig.preset("fast"))
    if name == "textile":
        # 8 probe images (of 512²): the maps of every epoch, small enough to ship
        return (RunConfig.preset("paper", data="textile", grad_clip=20, num_workers=4, probe_size=8) if gpu
                else RunConfig.preset("fast", data="textile", probe_size=8))
    if name == "baseline":  # the Grad-CAM baseline (notebook 6): "VGG19-BN-style, reduced"; on a GPU torchvision's
        return (RunConfig.baseline("full") if gpu        # VGG19 as it is
                else RunConfig.baseline("cpu", epochs=3, samples_per_epoch=4096, val_size=1000))
    if name == "imbalance":
        return (RunConfig.preset("paper", grad_clip=20, epochs=15, num_workers=8) if gpu
                else RunConfig.preset("fast", epochs=3, early_epochs=0, samples_per_epoch=2048))
    if name == "methods":  # notebook 9: the base every method's run shares (its aggregation, supervision change)
        return (RunConfig.preset("paper", grad_clip=20, num_workers=8) if gpu
                else RunConfig.preset("fast"))
    if name.startswith("failure/") and name[len("failure/"):] in FAILURES:
        base = config("characters", setting)
        change = dict(FAILURES[name[len("failure/"):]][1])
        ratio = change.pop("ratio", None)
        cfg = base.updated(keep_best=None, **change)  # a failure keeps no best epoch
        if ratio is not None:
            cfg.data = replace(cfg.data, characters=replace(cfg.data.characters, ratio=float(ratio)))
        return cfg
    raise ValueError(f"no course run is called {name!r}: choose one of {NAMES}")


FAILURES = {
    "no_competition": ("the spatial mean of the defective layer instead of its maximum", {"aggregation": "mean"}),
    "field_too_small": ("one block: a visual field of 16 px, half a character", {"channels": (16,)}),
    "field_too_large": ("four blocks: a visual field of 212 px, larger than the image", {"channels": (16, 32, 32, 32)}),
    "inverted_ratio": ("10 defective images for each defect-free one", {"ratio": 0.1}),
    "rare_defects": ("1 defective image for 50 defect-free ones", {"ratio": 50.0}),
    "paper_optimiser": ("the paper's optimiser: SGD at 0.01 on the loss summed over the batch, no clipping",
                        {"optimizer": "sgd", "lr": 0.01, "reduction": "sum", "schedule": "constant",
                         "grad_clip": None}),
}
"""The failure cases of notebook 10: each the ``characters`` run with one change, ``name → (what, change)``; the
course runs ``"failure/<name>"``."""

NAMES = ("characters", "textile", "imbalance", "baseline", "methods", *(f"failure/{k}" for k in FAILURES))
REFERENCE_NAMES = (*NAMES, "own_data")
"""Every reference run ``benchmarks/reference_runs.py`` makes: the course's runs and notebook 8's (its settings chosen
from the generated stand-in, :func:`own_data`)."""


def reference_path(name: str, setting: str = "cpu") -> Path:
    """Where the reference run ``name`` at ``setting`` lives (it may be absent: :func:`available`)."""
    _check(setting)
    return REFERENCE_DIR / setting / name


def available() -> list[str]:
    """The reference runs shipped, as ``"<setting>/<name>"`` (an imbalance study's runs one by one)."""
    return sorted(str(p.parent.relative_to(REFERENCE_DIR)) for p in REFERENCE_DIR.glob("**/checkpoint.pt"))


def made() -> dict[str, Any]:
    """How each reference run was made: ``"<setting>/<name>"`` → its command, machine, date and training time."""
    path = REFERENCE_DIR / "made.json"
    return json.loads(path.read_text()) if path.is_file() else {}


def describe(run: Run) -> str:
    """Where a course run comes from, in a line: a reference run's command, machine and training time, or the
    folder a run was trained in."""
    folder = Path(run.run_dir) if run.run_dir is not None else None
    last = run.history.epochs[-1] if run.history.epochs else {}
    what = (f"{len(run.history.epochs)} epochs, {last.get('train_time', 0):.0f} s of training")
    if folder is not None and REFERENCE_DIR in folder.resolve().parents:
        key = str(folder.resolve().relative_to(REFERENCE_DIR.resolve()))
        return f"reference run {key} ({what}), {describe_made(key)}"
    return f"trained here, in {folder} ({what})" if folder is not None else f"trained here ({what})"


def _reference(folder: Path, name: str, setting: str) -> Run:
    if not (folder / "checkpoint.pt").is_file():
        raise FileNotFoundError(
            f"no reference run {folder.relative_to(REFERENCE_DIR)} is shipped with sacnn-lab (shipped: "
            f"{', '.join(available()) or 'none'}): set source = 'train' to train it here"
            + (" (the gpu setting wants a GPU)" if setting == "gpu" else ""))
    return load_run(folder)


def run(name: str, setting: str = "cpu", source: str = "reference", run_dir: str | os.PathLike | None = None,
        progress: bool = True, **overrides: Any) -> Run:
    """The course's run ``name`` at ``setting``: the shipped reference run, or trained here.

    Args:
        name: see :func:`config`.
        setting: ``"cpu"`` or ``"gpu"``.
        source: ``"reference"`` or ``"train"``.
        run_dir: where a trained run lives (default ``runs/<setting>/<name>``); not used for a reference run.
        progress: progress bars while training.
        overrides: fields of the configuration to change (:meth:`RunConfig.updated`) for a run trained here,
            e.g. ``epochs=2`` for a first look; a reference run is as it was made.

    Raises:
        FileNotFoundError: ``source="reference"`` for a run that is not shipped.
        ValueError: ``run_dir`` holds a run of another configuration (the fields that differ are named).
    """
    _check(setting, source)
    if source == "reference":
        if overrides:
            raise ValueError(f"a reference run is as it was made: {sorted(overrides)} change a run trained here "
                             f"(source = 'train')")
        return _reference(reference_path(name, setting), name, setting)
    cfg = config(name, setting)
    cfg = cfg.updated(**overrides) if overrides else cfg
    return train(cfg, run_dir or Path("runs") / setting / name, resume=True, progress=progress)


def imbalance(setting: str = "cpu", source: str = "reference", ratios: Sequence[float] = IMBALANCE_RATIOS,
              seeds: Sequence[int] = IMBALANCE_SEEDS, run_dir: str | os.PathLike | None = None,
              progress: bool = True, test_size: int = 500,
              **overrides: Any) -> tuple[Any, dict[tuple[float, int], Run]]:
    """The imbalance study (the paper's Figure 6): one run per (ratio, seed), each ratio's precision per epoch.

    Args:
        setting, source, progress, overrides: as in :func:`run`.
        ratios: defect-free training images per defective one.
        seeds: initialisation seeds of each ratio's runs (the spread between them).
        run_dir: where trained runs live (default ``runs/<setting>/imbalance``), one folder per run.
        test_size: test images each run is measured on at the end (balanced, an unseen seed).

    Returns:
        ``(table, runs)``: the rows of :func:`~sacnn_lab.studies.imbalance_study` with a ``seed`` column, and
        the runs by ``(ratio, seed)``.
    """
    import pandas as pd

    from .studies import imbalance_study

    _check(setting, source)
    tables, runs = [], {}
    for seed in seeds:
        if source == "reference":
            if overrides:
                raise ValueError("a reference run is as it was made: overrides change runs trained here")
            folder = reference_path("imbalance", setting)
            base = config("imbalance", setting)
        else:
            folder = Path(run_dir or Path("runs") / setting / "imbalance")
            base = config("imbalance", setting).updated(**overrides) if overrides else config("imbalance", setting)
        table, by_ratio = imbalance_study(ratios, base, folder, progress, test_size, seed=int(seed),
                                          reuse=True, load_only=source == "reference")
        tables.append(table.assign(seed=int(seed)))
        runs.update({(r, int(seed)): v for r, v in by_ratio.items()})
    return pd.concat(tables, ignore_index=True), runs


METHODS_AGGREGATIONS = ("max", "mean", ("lse", {"lse_r": 5.0}), ("topk", {"topk_k": 0.05}))


def methods(setting: str = "cpu", source: str = "reference", seeds: Sequence[int] = (0,),
            aggregations: Sequence[Any] = METHODS_AGGREGATIONS, baseline: bool = False,
            run_dir: str | os.PathLike | None = None, progress: bool = True, test_size: int | None = None,
            **overrides: Any) -> Any:
    """Every method on the same test images (notebook 9; :func:`~sacnn_lab.studies.methods_study`): SACNN under
    each aggregation, the supervised reference and the Weibull detector, with the Grad-CAM baseline when
    ``baseline``; each trained method's run from the reference runs or trained here.

    Args:
        setting, source, progress, overrides: as in :func:`run` (``overrides`` change the base every method's run
            shares, for runs trained here).
        seeds: initialisation seeds (the reference runs: seed 0).
        aggregations: SACNN's aggregations, as :func:`~sacnn_lab.studies.aggregation_study` takes them.
        baseline: also the Grad-CAM baseline (the course's ``baseline`` configuration).
        run_dir: where trained runs live (default ``runs/<setting>/methods``), one folder per method and seed.
        test_size: test images of the unseen seed (default: the base's, 2,000 on the cpu setting).

    Returns:
        A :class:`~sacnn_lab.studies.MethodsStudy`.
    """
    from .studies import methods_study

    _check(setting, source)
    reference = source == "reference"
    if reference and overrides:
        raise ValueError("a reference run is as it was made: overrides change runs trained here (source = 'train')")
    base = config("methods", setting)
    base = base.updated(**overrides) if overrides else base
    folder = reference_path("methods", setting) if reference else Path(run_dir or Path("runs") / setting / "methods")
    if reference and not folder.is_dir():
        raise FileNotFoundError(f"no reference runs {setting}/methods are shipped with sacnn-lab: set source = "
                                f"'train' to train them here" + (" (the gpu setting wants a GPU)" if setting == "gpu"
                                                                 else ""))
    return methods_study("characters", seeds=seeds, run_dir=folder, base=base, aggregations=aggregations,
                         baseline=baseline, baseline_config=config("baseline", setting), progress=progress,
                         load_only=reference, test_size=test_size)


def describe_made(key: str) -> str:
    """How the reference run ``key`` (``"<setting>/<name>"``) was made, in a line."""
    rec = made().get(key) or next((m for m in made().values() if key in m.get("runs", ())), {})
    return f"made on {rec.get('date', '?')} with `{rec.get('command', '?')}` on {rec.get('machine', '?')}"


def load_config(folder: str | os.PathLike) -> RunConfig:
    """The configuration a run folder was trained with (``config.json``)."""
    return RunConfig.from_dict(json.loads((Path(folder) / "config.json").read_text()))


def check_reference(name: str, setting: str, folder: Path) -> list[tuple[str, Any, Any]]:
    """The configuration fields where a run folder differs from the course's ``config(name, setting)``."""
    from .experiment import _plain

    saved = json.loads((folder / "config.json").read_text())
    return config_differences(_plain(config(name, setting).to_dict()), saved)


def failure_runs(setting: str = "cpu", source: str = "reference", names: Sequence[str] | None = None,
                 progress: bool = True, **overrides: Any) -> dict[str, Run]:
    """The failure cases of notebook 10 (:data:`FAILURES`), by name: each the ``characters`` run with one change,
    from the reference runs or trained here (as :func:`run`)."""
    names = list(FAILURES) if names is None else list(names)
    unknown = [n for n in names if n not in FAILURES]
    if unknown:
        raise ValueError(f"no failure case is called {unknown[0]!r}: choose from {list(FAILURES)}")
    return {n: run(f"failure/{n}", setting, source, progress=progress, **overrides) for n in names}


def summary(runs: dict[str, Run], test_size: int = 1000) -> Any:
    """One row per run: its test accuracy, AUROC and pointing game (on ``test_size`` images of its test split, an
    unseen seed), its last training loss and validation accuracy, and whether its loss ever became NaN."""
    import math

    import pandas as pd

    from .experiment import evaluate, split

    rows = {}
    for name, r in runs.items():
        last = r.history.epochs[-1] if r.history.epochs else {}
        try:
            test = evaluate(r.model, split(r.config, "test", n=test_size))
        except FloatingPointError:  # a diverged run: no figures to report
            test = {}
        rows[name] = {"test_accuracy": test.get("accuracy", math.nan), "test_auroc": test.get("auroc", math.nan),
                      "pointing_game": test.get("pointing_game", math.nan),
                      "train_loss": last.get("train_loss", math.nan),
                      "val_accuracy": last.get("val_accuracy", math.nan),
                      "epochs": len(r.history.epochs), "diverged": not test}
    return pd.DataFrame.from_dict(rows, orient="index")


OWN_DATA_STANDIN = {"image_size": 192, "n": 830}
"""The generated stand-in of notebook 8 (:func:`data_gen.textile.sample_class_folder` at these settings): the class
folder its reference run ``<setting>/own_data`` was trained on."""


class OwnData:
    """Notebook 8's run on a class folder: the configuration chosen for it (and why), its data, and the run.

    Attributes:
        folder: the class folder.
        config: the run's :class:`~sacnn_lab.config.RunConfig` (a saved run's own).
        reasons: why each setting was chosen, one line each.
        run_dir: the run folder (the shipped reference run's, read only, or ``runs/<setting>/own_data``).
        reference: whether the run is the shipped reference run.
        data: the folder's :class:`~sacnn_lab.sources.ClassFolderSource` (its splits as the run keeps them).
    """

    def __init__(self, folder: Path, config: RunConfig, reasons: list[str], run_dir: Path, reference: bool):
        from .sources import source_for

        self.folder, self.config, self.reasons = folder, config, reasons
        self.run_dir, self.reference = run_dir, reference
        self.data = source_for(config, run_dir)

    def describe(self) -> str:
        """Where the run comes from and why each setting is what it is, one line each."""
        try:
            shown = self.folder.resolve().relative_to(Path.cwd().resolve())  # as the notebook names it
        except ValueError:
            shown = self.folder
        head = (f"reference run {self.run_dir.relative_to(REFERENCE_DIR)} ({describe_made('cpu/own_data')}), trained "
                f"on the generated stand-in {shown}" if self.reference else f"run folder {self.run_dir}")
        return "\n".join([head, *self.reasons])

    def run(self, progress: bool = True) -> Run:
        """The reference run, or the run in ``run_dir`` (trained there first when it is not finished)."""
        from .experiment import load_or_train

        if self.reference:
            r = load_run(self.run_dir)
            return Run(self.config, r.model, r.history, r.run_dir)  # the folder as found here
        return load_or_train(self.config, self.run_dir, progress=progress)

    def test_split(self) -> Any:
        """The run's test images (a :class:`~sacnn_lab.data.FolderSet`), as its run folder recorded them."""
        return self.data.split("test")


def own_data(folder: str | os.PathLike | None = None, source: str = "reference", setting: str = "cpu",
             generated: str | os.PathLike = "data/07_fabric", image_size: int = 192, n_images: int = 830,
             run_dir: str | os.PathLike | None = None, **choices: Any) -> OwnData:
    """Notebook 8: a class folder (``good/`` beside folders of defective images), its settings and its run.

    Without ``folder`` the generated stand-in is written into ``generated`` (once: ``n_images`` textile images of
    ``image_size``², about one defective in six) and used instead. ``source="reference"`` reads the run shipped for
    that stand-in (seconds); ``source="train"`` chooses the settings from the folder
    (:func:`~sacnn_lab.autoconfig.suggest_config`, or a saved run's own) and trains into ``run_dir`` (default
    ``runs/<setting>/own_data``; the recipe is chosen from the data at either setting, a GPU only shortens it).

    Args:
        folder: your class folder, or ``None`` for the generated stand-in.
        source: ``"reference"`` (the stand-in only) or ``"train"``.
        setting: ``"cpu"`` or ``"gpu"`` (where a trained run lives).
        generated: where the stand-in is written.
        image_size, n_images: the stand-in's (the reference run's: :data:`OWN_DATA_STANDIN`).
        run_dir: where a trained run lives.
        choices: :func:`~sacnn_lab.autoconfig.suggest_config`'s choices for a trained run (e.g. ``epochs=3``).

    Raises:
        ValueError: ``source="reference"`` with your own folder or with choices (the reference run is the
            stand-in's, as it was made), or a stand-in that is not the one the reference run was trained on.
    """
    from data_gen.textile import sample_class_folder

    from .autoconfig import config_for

    _check(setting, source)
    if source == "reference":
        if (image_size, n_images) != tuple(OWN_DATA_STANDIN.values()):
            choices = {**choices, "image_size": image_size, "n_images": n_images}
        if folder is not None or choices:
            what = "your folder" if folder is not None else f"{sorted(choices)}"
            raise ValueError(f"the reference run is the generated stand-in's, as it was made: for {what} set "
                             f"source = 'train' (training chooses the settings from the folder)")
        ref = REFERENCE_DIR / "cpu" / "own_data"  # the recipe is chosen from the data: one run for both settings
        if not (ref / "checkpoint.pt").is_file():
            raise FileNotFoundError("no reference run cpu/own_data is shipped with sacnn-lab: set source = 'train'")
        stand_in = sample_class_folder(generated, progress=False, **OWN_DATA_STANDIN).resolve()
        config = load_config(ref)
        config.data = replace(config.data, folder=os.fspath(stand_in))
        record = json.loads((ref / "splits.json").read_text(encoding="utf-8"))
        missing = [p for k in ("train", "val", "test") for p in record[k] if not (stand_in / p).is_file()]
        if missing:
            raise ValueError(f"{stand_in} is not the stand-in the reference run was trained on ({len(missing)} of "
                             f"its files missing, e.g. {missing[0]}): remove it to have it written again, or set "
                             f"source = 'train'")
        return OwnData(stand_in, config, ["the settings of the reference run (its config.json): nothing chosen"],
                       ref, True)
    folder = Path(folder) if folder is not None else sample_class_folder(generated, image_size=image_size, n=n_images)
    run_dir = Path(run_dir or Path("runs") / setting / "own_data")
    config, reasons = config_for(folder, run_dir, **choices)
    return OwnData(Path(folder), config, reasons, run_dir, False)
