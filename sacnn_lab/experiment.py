"""One experiment from a :class:`~sacnn_lab.config.RunConfig`: data, model, trainer and callbacks wired
together; runs saved to and loaded from a folder.

    run = train(RunConfig.preset("fast"), "runs/fast")      # trains, records, checkpoints
    run.history[3]["val_accuracy"], run.history.maps(3)    # any epoch's figures and probe maps
    run = load_run("runs/fast")                            # later, on any machine
    evaluate(run.model, split(run.config, "test"))         # test figures
    base = train(RunConfig.baseline("cpu"), "runs/vgg")    # the Grad-CAM baseline, same data and callbacks
"""

from __future__ import annotations

import functools
import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import torch

from data_gen.characters import CharacterBatch, CharacterGenerator
from data_gen.fonts import compare_faces, face_records

from .baseline import VGGBaseline
from .callbacks import (Checkpointer, Evaluator, NanGuard, ProbeRecorder, ProgressBar, TimeBudget,
                        evaluate_arrays, read_checkpoint)
from .config import RunConfig
from .data import FolderEpochs, FolderSet, GeneratedEpochs, load_dagm, textile_folder
from .history import History, atomic_write_bytes
from .model import SACNN
from .runfolder import check_run_folder, run_lock
from .trainer import Callback, Trainer


@dataclass
class Run:
    """A trained (or loaded) run: its config, model (on CPU, eval mode), history and folder.

    ``model`` is a :class:`~sacnn_lab.model.SACNN`, or a :class:`~sacnn_lab.baseline.VGGBaseline` when
    ``config.is_baseline``. ``nothing_left`` says why a resumed run trained nothing (all its epochs done,
    or its time budget spent); ``None`` otherwise.
    """

    config: RunConfig
    model: SACNN | VGGBaseline
    history: History
    run_dir: Path | None = None
    nothing_left: str | None = None


def build_model(config: RunConfig, pretrained: bool = True) -> SACNN | VGGBaseline:
    """The run's network, initialised from ``config.train.seed`` (the same weights on every machine).

    Args:
        config: the run (SACNN, or the baseline when ``config.is_baseline``).
        pretrained: load the baseline's pretrained weights (``False`` when a checkpoint follows).
    """
    torch.manual_seed(config.train.seed)
    return _network(config, pretrained)


def _network(config: RunConfig, pretrained: bool) -> SACNN | VGGBaseline:
    if config.is_baseline:
        return VGGBaseline(config.model, pretrained=pretrained)
    return SACNN(config.model)


def _generators(config: RunConfig) -> tuple[CharacterGenerator, CharacterGenerator]:
    train = CharacterGenerator(config.data.characters)
    ev_cfg = config.data.eval_characters()
    same_faces = (ev_cfg.font_split, ev_cfg.font_dirs, ev_cfg.system_fonts) == (
        config.data.characters.font_split, config.data.characters.font_dirs, config.data.characters.system_fonts)
    ev = CharacterGenerator(ev_cfg, faces=train.faces if same_faces else None)
    if same_faces:
        ev.atlas = train.atlas  # share rendered glyphs
    return train, ev


def split(config: RunConfig, which: str, generator: CharacterGenerator | None = None,
          n: int | None = None) -> CharacterBatch | FolderSet:
    """A fixed evaluation split of the run's data: ``"val"``, ``"test"`` or ``"probe"``.

    Characters: the test split uses its own seed (never seen in training); the probe batch is
    ``probe_size`` test images, whose maps are recorded every epoch. Textile: the DAGM folder's ``Test``
    split serves all three (DAGM has no validation split); the probe batch is ``probe_size`` of its images,
    half of them defective.

    Args:
        config: the run.
        which: ``"val"``, ``"test"`` or ``"probe"``.
        generator: the character generator to draw with (shares its glyph cache); characters only.
        n: the first ``n`` images instead of the whole split (the probe: its size).
    """
    d = config.data
    if which not in ("val", "test", "probe"):
        raise ValueError(f"split must be 'val', 'test' or 'probe', not {which!r}")
    if d.source == "textile":
        test = textile_split(config, "Test")
        if which == "probe":
            return test.subset(_textile_probe(test.labels, n or d.probe_size))
        return test if n is None else test.subset(np.arange(min(n, len(test))))
    gen = generator or _generators(config)[1]
    if which == "probe":
        return gen.generate(d.test_seed, _probe_indices(gen, d.test_seed, n or d.probe_size))
    seed, size = (d.val_seed, d.val_size) if which == "val" else (d.test_seed, d.test_size)
    return gen.generate(seed, np.arange(n or size), masks=False)


def textile_split(config: RunConfig, which: str = "Test") -> FolderSet:
    """The ``"Train"`` or ``"Test"`` split of a textile run's DAGM folder (generated and cached on first use
    unless ``config.data.folder`` names one), with masks and boxes from ``config.data.truth``.

    Raises:
        ValueError: the run's data source is not ``"textile"``; a bad folder (file named).
    """
    d = config.data
    if d.source != "textile":
        raise ValueError(f"textile_split needs a textile run, not source={d.source!r}")
    folder = textile_folder(d)
    return _load_dagm_cached(str(folder.resolve()), which, d.truth, d.image_size if d.folder is None else None,
                             _split_stamp(folder / which))


def _split_stamp(split_dir: Path) -> tuple[int, ...]:
    """Modification times of a DAGM split folder and of its label index: they change when the folder is
    written again, so that a rewritten folder is read again."""
    return tuple(p.stat().st_mtime_ns for p in (split_dir, split_dir / "Label" / "Labels.txt") if p.exists())


@functools.lru_cache(maxsize=2)
def _load_dagm_cached(folder: str, which: str, truth: str, size: int | None, stamp: tuple[int, ...]) -> FolderSet:
    # a textile run reads its Test split for validation, probe and test: read the PNGs once per process
    # (``stamp`` is only part of the cache's key)
    return load_dagm(folder, which, size=None if size is None else (size, size), truth=truth)


def _textile_probe(labels: np.ndarray, size: int) -> np.ndarray:
    """Positions of a probe batch: about half defective images, the rest defect-free, in folder order."""
    bad, good = np.flatnonzero(labels == 1), np.flatnonzero(labels == 0)
    k = min(len(bad), (size + 1) // 2)
    return np.sort(np.concatenate([bad[:k], good[: size - k]]))


def _probe_indices(gen: CharacterGenerator, seed: int, size: int) -> np.ndarray:
    """Test images for the probe batch: about half defective, a quarter of those with several
    characters where the generator makes them (the paper's Figures 7 and 8), the rest defect-free."""
    pool = gen.generate(seed, np.arange(max(256, 16 * size)))
    n_boxes = (pool.boxes[:, :, 0] >= 0).sum(1)
    multi = np.flatnonzero(n_boxes > 1)[: size // 4]
    single = np.flatnonzero(n_boxes == 1)[: (size + 1) // 2 - len(multi)]
    free = np.flatnonzero(n_boxes == 0)[: size - len(multi) - len(single)]
    return np.sort(np.concatenate([multi, single, free]))


# a run that draws this many character samples renders most glyphs anyway: render them all before the
# clock starts (16–19 s on our 2-core machine) rather than one by one inside the training steps
WARM_UP_SAMPLES = 20_000


def _training_data(config: RunConfig, progress: bool = False
                   ) -> tuple[GeneratedEpochs | FolderEpochs, Any, Any, dict[str, list[dict]] | None]:
    """The run's training source, validation set and probe batch (the glyphs of a long character run
    rendered first, see ``WARM_UP_SAMPLES``), and the font faces a character run draws with
    (:func:`data_gen.fonts.face_records` of its training and evaluation generators; ``None`` for textile)."""
    t, d = config.train, config.data
    if d.source == "textile":
        train_set = textile_split(config, "Train")
        return (FolderEpochs(train_set.images, train_set.labels, t.batch_size, seed=d.train_seed),
                split(config, "val"), split(config, "probe"), None)
    gen_train, gen_eval = _generators(config)
    early = None
    if d.early_epochs:
        early = CharacterGenerator(d.early_characters(), faces=gen_train.faces)
        early.atlas = gen_train.atlas  # the same glyphs at the same sizes
    if t.epochs * d.samples_per_epoch >= WARM_UP_SAMPLES:
        gen_train.warm_up(progress=progress)
    data = GeneratedEpochs(gen_train, d.train_seed, d.samples_per_epoch, t.batch_size, t.num_workers,
                           early_generator=early, early_epochs=d.early_epochs)
    faces = {"train": face_records(gen_train.faces), "eval": face_records(gen_eval.faces)}
    return data, split(config, "val", gen_eval), split(config, "probe", gen_eval), faces


def train(config: RunConfig, run_dir: str | os.PathLike | None = None, resume: bool = False,
          progress: bool = True, callbacks: Sequence[Callback] = ()) -> Run:
    """Train SACNN (or the baseline) as ``config`` says, recording the history (and checkpoints when
    ``run_dir`` is given). A baseline run uses the same data, trainer and callbacks; its probe maps and
    validation pointing game come from its CAM.

    Args:
        config: model, data and training settings (e.g. ``RunConfig.preset("fast")``,
            ``RunConfig.baseline("cpu")``).
        run_dir: folder for ``config.json``, ``checkpoint.pt``, ``history.json/.npz`` and, with
            ``keep_best``, ``best.pt``: new, empty, or a run of ours (see :mod:`sacnn_lab.runfolder`); the
            training holds its ``run.lock`` while it runs.
        resume: continue from ``run_dir/checkpoint.pt`` when it exists (the result equals an
            uninterrupted run); the saved config must equal ``config``. A run with nothing left to do
            (its epochs done, its time budget spent) is returned as saved, with ``Run.nothing_left``.
        progress: show progress bars and one line per epoch.
        callbacks: extra callbacks, called after the built-in ones.

    Returns:
        The :class:`Run`, its model on the CPU in eval mode.

    Raises:
        FileExistsError: ``run_dir`` holds files that are not a run's, or a run (without ``resume``);
            :class:`~sacnn_lab.runfolder.RunFolderBusy`: another training holds it.
        ValueError: ``resume`` with another configuration (the fields that differ are named).
    """
    config.check()
    plain = _plain(config.to_dict())
    if run_dir is None and config.train.keep_best is not None:
        raise ValueError(f"keep_best={config.train.keep_best!r} writes best.pt into the run folder: give run_dir")
    if run_dir is None:
        return _fit(config, plain, None, None, None, progress, callbacks)
    run_dir = check_run_folder(run_dir)  # a refused folder says so before any data is drawn or glyph rendered
    created = not run_dir.exists()
    try:
        with run_lock(run_dir):
            return _train_locked(config, plain, run_dir, resume, progress, callbacks)
    finally:
        if created and run_dir.is_dir() and not any(run_dir.iterdir()):
            run_dir.rmdir()  # a run that failed before writing anything leaves no empty folder behind


def _train_locked(config: RunConfig, plain: dict[str, Any], run_dir: Path, resume: bool, progress: bool,
                  callbacks: Sequence[Callback]) -> Run:
    """The part of :func:`train` done while the run folder's lock is held."""
    check_run_folder(run_dir)  # again, now that no other training can write into it
    ckpt = run_dir / "checkpoint.pt"
    state, history = None, None
    if ckpt.is_file() and not resume:
        raise FileExistsError(f"{run_dir} already holds a run; pass resume=True (--resume) to continue "
                              f"it, or choose another folder")
    if resume and ckpt.is_file():
        state = read_checkpoint(ckpt)
        # a run saved before a config field existed has that field's default
        saved = _plain(RunConfig.from_dict(state["config"]).to_dict())
        if saved != plain:
            changes = "; ".join(f"{k}: {a!r} in the run, {b!r} now" for k, a, b in config_differences(saved, plain))
            raise ValueError(f"{ckpt} was trained with another configuration ({changes}); resume with "
                             f"the same settings, or choose another run folder")
        history = History.load(run_dir)
        left = _nothing_left(config, state)
        if left is not None:
            model = build_model(config, pretrained=False)
            model.load_state_dict(state["model"])
            history.truncate(int(state["epoch"]), int(state["step"]))
            return Run(config, model.eval(), history, run_dir, nothing_left=left)
    return _fit(config, plain, run_dir, state, history, progress, callbacks)


def _nothing_left(config: RunConfig, state: dict[str, Any]) -> str | None:
    """Why a saved run has nothing left to train (all its epochs done, or its time budget spent), or ``None``."""
    t = config.train
    if int(state["epoch"]) >= t.epochs:
        return f"the run has finished its {t.epochs} epoch(s)"
    if t.max_time is not None and float(state.get("train_time", 0.0)) >= t.max_time:
        return (f"the run spent its time budget (max_time={t.max_time:g} s) in epoch {state['epoch']}; a longer "
                f"run needs a new folder and a larger budget")
    return None


def config_differences(a: Any, b: Any, prefix: str = "") -> list[tuple[str, Any, Any]]:
    """``[(dotted field, value in a, value in b), ...]`` where two plain config dicts differ."""
    if isinstance(a, dict) and isinstance(b, dict):
        out = []
        for k in sorted(set(a) | set(b)):
            out += config_differences(a.get(k), b.get(k), f"{prefix}{k}.")
        return out
    return [] if a == b else [(prefix.rstrip("."), a, b)]


def _fit(config: RunConfig, plain: dict[str, Any], run_dir: Path | None, state: dict[str, Any] | None,
         history: History | None, progress: bool, callbacks: Sequence[Callback]) -> Run:
    data, val, probe, faces = _training_data(config, progress)
    if run_dir is not None:
        atomic_write_bytes(run_dir / "config.json", json.dumps(plain, indent=1).encode())
        if faces is not None:
            atomic_write_bytes(run_dir / FACES_FILE, json.dumps(faces, indent=1).encode())
    model = build_model(config, pretrained=state is None)  # a resumed run's weights come from its checkpoint
    t = config.train
    cbs: list[Callback] = [NanGuard()]
    if t.max_time is not None:
        cbs.append(TimeBudget(t.max_time))
    cbs += [ProbeRecorder(probe.images, probe.labels, probe.boxes),
            Evaluator(val.images, val.labels, val.boxes, "val", every=t.eval_every,
                      batch_size=t.eval_batch_size, masks=_pointing_masks(val))]
    if run_dir is not None:
        cbs.append(Checkpointer(run_dir, plain, best=t.keep_best))
    if progress:
        cbs.append(ProgressBar())
    trainer = Trainer(model, t, data, [*cbs, *callbacks], history)
    if state is not None:
        trainer.load_state_dict(state)
    trainer.history.config = plain
    trainer.fit()
    model = trainer.model.to("cpu").eval()
    return Run(config, model, trainer.history, run_dir)


def _plain(d: Any) -> Any:
    """Tuples as lists, as they come back from JSON / a checkpoint."""
    return json.loads(json.dumps(d))


def load_model(checkpoint: str | os.PathLike) -> tuple[SACNN | VGGBaseline, RunConfig]:
    """The model (CPU, eval mode) and config of a checkpoint file or run folder (SACNN or baseline).

    Raises:
        FileNotFoundError: no checkpoint there.
        ValueError: corrupt file, weights that do not fit the architecture its config describes, or
            non-finite weights (a diverged run).
    """
    path = Path(checkpoint)
    if path.is_dir():
        path = path / "checkpoint.pt"
    state = read_checkpoint(path)
    try:
        config = RunConfig.from_dict(state["config"])
    except (KeyError, TypeError, ValueError) as exc:
        raise ValueError(f"{path} holds an unusable run configuration: {exc}") from exc
    model = _network(config, pretrained=False)
    try:
        model.load_state_dict(state["model"])
    except RuntimeError as exc:
        first = str(exc).strip().splitlines()[0]
        raise ValueError(f"{path} holds weights of another architecture than its config describes "
                         f"({first})") from exc
    bad = [name for name, t in state["model"].items() if t.is_floating_point() and not torch.isfinite(t).all()]
    if bad:
        raise ValueError(f"{path} holds non-finite weights (NaN or infinite in {', '.join(bad[:3])}"
                         f"{' ...' if len(bad) > 3 else ''}): the run diverged; its figures would mean nothing")
    return model.eval(), config


def load_run(run_dir: str | os.PathLike, checkpoint: str = "checkpoint.pt") -> Run:
    """A run folder written by :func:`train`: model, config and history (for widgets and plots).

    ``checkpoint="best.pt"``: the model of the run's best epoch (``TrainConfig.keep_best``) instead of
    its last; the history is the whole run's either way.
    """
    run_dir = Path(run_dir)
    model, config = load_model(run_dir / checkpoint)
    return Run(config, model, History.load(run_dir), run_dir)


FACES_FILE = "faces.json"


def faces_differ(run_dir: str | os.PathLike, config: RunConfig) -> str | None:
    """Whether this machine draws a character run's evaluation images with other font faces than the run
    recorded (``run_dir/faces.json``): a sentence saying how, or ``None`` (the same faces, a textile run,
    or a run folder without the record)."""
    path = Path(run_dir) / FACES_FILE
    if config.data.source != "characters" or not path.is_file():
        return None
    try:
        recorded = json.loads(path.read_text(encoding="utf-8"))["eval"]
    except (OSError, ValueError, KeyError, TypeError):
        return f"{path} cannot be read: whether this machine has the run's font faces is unknown"
    diff = compare_faces(recorded, face_records(_generators(config)[1].faces))
    if diff is None:
        return None
    return (f"this machine's font faces differ from those {run_dir} was trained and measured with ({diff}): "
            f"its generated test images differ too, and so may its figures")


def _pointing_masks(batch: Any) -> np.ndarray | None:
    """The masks the pointing game scores against: a DAGM set's (its label ellipses, or true masks);
    character sets point into their boxes."""
    return batch.masks if isinstance(batch, FolderSet) else None


def evaluate(model: torch.nn.Module, batch: CharacterBatch | Any, batch_size: int = 250,
             tolerance: float = 0) -> dict[str, float]:
    """Test figures of ``model`` on a generated batch or a loaded labelled folder (anything with
    ``images`` (N, H, W) uint8, ``labels`` and ``boxes``): accuracy, precision, recall, f1, auroc and
    the pointing game on defective images with known boxes (a DAGM set: inside their masks), a hit
    within ``tolerance`` pixels of the truth counting (see :func:`~sacnn_lab.metrics.pointing_game`)."""
    return evaluate_arrays(model, batch.images, batch.labels, batch.boxes, batch_size,
                           masks=_pointing_masks(batch), tolerance=tolerance)


def load_or_train(config: RunConfig, run_dir: str | os.PathLike, progress: bool = True) -> Run:
    """The run saved in ``run_dir`` if there is one (whatever config it was trained with, e.g. on a GPU);
    otherwise train ``config`` there first."""
    if (Path(run_dir) / "checkpoint.pt").is_file():
        return load_run(run_dir)
    return train(config, run_dir, progress=progress)


def load_data(spec: str | os.PathLike, config: RunConfig, n: int | None = None) -> CharacterBatch | Any:
    """Evaluation images by name: ``characters[:SEED]`` (the run's test split, or the same generator at
    another seed), ``textile`` (a textile run's Test split; for a character run, the default generated
    textile set's), a DAGM 2007 class folder (its Test split), or a labelled folder.

    Args:
        spec: ``"characters"``, ``"characters:SEED"``, ``"textile"``, or a folder path.
        config: the run whose test split (and image size) is meant.
        n: the first ``n`` images (default: all of the split).

    Returns:
        Anything with ``images`` ``(N, H, W)`` uint8, ``labels`` ``(N,)`` and ``boxes`` ``(N, K, 4)``
        (DAGM sets also ``masks``).
    """
    from dataclasses import replace

    from data_gen.folders import is_dagm

    from .config import DataConfig
    from .data import load_folder

    if n is not None and (isinstance(n, bool) or not isinstance(n, int) or n < 1):
        raise ValueError(f"n (--n) must be a whole number >= 1 of images, not {n!r}")
    spec = os.fspath(spec)
    if spec == "characters" or spec.startswith("characters:"):
        if spec.startswith("characters:"):
            seed = spec.split(":", 1)[1]
            if not seed.isdigit():
                raise ValueError(f"expected characters:SEED with an integer seed, not {spec!r}")
            config = replace(config, data=replace(config.data, test_seed=int(seed)))
        if config.data.source != "characters":
            config = replace(config, data=DataConfig())
        return split(config, "test", n=n)
    if spec == "textile" or is_dagm(spec):
        data = config.data if config.data.source == "textile" else DataConfig.dagm()
        if spec != "textile":
            data = replace(data, folder=spec)
        return split(replace(config, data=data), "test", n=n)
    size = (config.data.characters.image_size,) * 2 if config.data.source == "characters" else None
    return load_folder(spec, size=size)
