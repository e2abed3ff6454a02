"""One experiment from a :class:`~sacnn_lab.config.RunConfig`: data, model, trainer and callbacks wired
together; runs saved to and loaded from a folder.

    run = train(RunConfig.preset("fast"), "runs/fast")      # trains, records, checkpoints
    run.history[3]["val_accuracy"], run.history.maps(3)    # any epoch's figures and probe maps
    run = load_run("runs/fast")                            # later, on any machine
    evaluate(run.model, split(run.config, "test"))         # test figures
    base = train(RunConfig.baseline("cpu"), "runs/vgg")    # the Grad-CAM baseline, same data and callbacks
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

import torch

from data_gen.characters import CharacterBatch

from .baseline import VGGBaseline
from .callbacks import (Checkpointer, Evaluator, NanGuard, ProbeRecorder, ProgressBar, TimeBudget,
                        evaluate_arrays, read_checkpoint)
from .config import RunConfig, TrainConfig
from .data import FolderSet
from .distributed import barrier, current, init_process_group
from .history import History
from .model import SACNN
from .runfolder import atomic_write_bytes, check_run_folder, run_lock
from .sources import (SPLITS_FILE, CharacterSource, ClassFolderSource, DagmSource, LabelledFolderSource,
                      pointing_masks, source_for)
from .trainer import Callback, Trainer, resolve_device


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


def split(config: RunConfig, which: str, n: int | None = None) -> CharacterBatch | FolderSet:
    """A fixed evaluation split of the run's data: ``"val"``, ``"test"`` or ``"probe"`` (see its
    :class:`~sacnn_lab.sources.DataSource`).

    Characters: the test split uses its own seed (never seen in training); the probe batch is
    ``probe_size`` test images, whose maps are recorded every epoch. Textile: the DAGM folder's ``Test``
    split serves all three (DAGM has no validation split); the probe batch is ``probe_size`` of its images,
    half of them defective.

    Args:
        config: the run.
        which: ``"val"``, ``"test"`` or ``"probe"``.
        n: the first ``n`` images instead of the whole split (the probe: its size).
    """
    return source_for(config).split(which, n)


def textile_split(config: RunConfig, which: str = "Test") -> FolderSet:
    """The ``"Train"`` or ``"Test"`` split of a textile run's DAGM folder (generated and cached on first use
    unless ``config.data.folder`` names one), with masks and boxes from ``config.data.truth``.

    Raises:
        ValueError: the run's data source is not ``"textile"``; a bad folder (file named).
    """
    if config.data.source != "textile":
        raise ValueError(f"textile_split needs a textile run, not source={config.data.source!r}")
    return DagmSource(config).folder_split(which)


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
    ranks = init_process_group(resolve_device(config.train.device))  # torchrun: join its process group
    if ranks.distributed and not ranks.main:
        return _follow(config, plain, callbacks)
    announce = _Announcer(ranks)
    try:
        if run_dir is None:
            announce({"state": None})
            return _fit(config, plain, None, None, None, progress, callbacks)
        run_dir = check_run_folder(run_dir)  # a refused folder says so before any data is drawn or glyph rendered
        created = not run_dir.exists()
        try:
            with run_lock(run_dir):
                return _train_locked(config, plain, run_dir, resume, progress, callbacks, announce)
        finally:
            if created and run_dir.is_dir() and not any(run_dir.iterdir()):
                run_dir.rmdir()  # a run that failed before writing anything leaves no empty folder behind
    except BaseException as exc:
        announce({"error": f"{type(exc).__name__}: {exc}"})  # the other ranks stop with rank 0's reason
        raise


class _Announcer:
    """Rank 0 tells the other ranks, once, how the run starts (the state to resume from), or why it does not."""

    def __init__(self, ranks: Any):
        self.ranks, self.done = ranks, False

    def __call__(self, message: dict[str, Any]) -> None:
        if self.ranks.distributed and not self.done:
            import torch.distributed as dist

            dist.broadcast_object_list([message], src=0)
        self.done = True


def _follow(config: RunConfig, plain: dict[str, Any], callbacks: Sequence[Callback]) -> Run:
    """A rank other than 0: train silently from the state rank 0 announces; write nothing."""
    import torch.distributed as dist

    box: list[Any] = [None]
    dist.broadcast_object_list(box, src=0)
    message = box[0]
    if "error" in message:
        raise RuntimeError(f"rank 0 stopped the run: {message['error']}")
    state = message.get("state")
    if message.get("nothing_left"):
        model = build_model(config, pretrained=False)
        model.load_state_dict(state["model"])
        return Run(config, model.eval(), History(), None, nothing_left=message["nothing_left"])
    # a resumed class-folder run's split is read from its run folder (on a disk this rank sees; else the folder
    # is split again from the same seed, as rank 0 split it when the run began)
    saved = Path(message["run_dir"]) if message.get("run_dir") else None
    return _fit(config, plain, saved if saved is not None and saved.is_dir() else None, state, None, False,
                callbacks, main=False)


def check_can_train(run_dir: str | os.PathLike, resume: bool = False) -> Path:
    """Refuse a run folder :func:`train` would refuse, before any work: one holding files that are not a
    run's (:func:`~sacnn_lab.runfolder.check_run_folder`), or a run when ``resume`` is not given.

    Returns:
        The folder as a path.
    """
    run_dir = check_run_folder(run_dir)
    if (run_dir / "checkpoint.pt").is_file() and not resume:
        raise FileExistsError(f"{run_dir} already holds a run; pass resume=True (--resume) to continue "
                              f"it, or choose another folder")
    return run_dir


def _train_locked(config: RunConfig, plain: dict[str, Any], run_dir: Path, resume: bool, progress: bool,
                  callbacks: Sequence[Callback], announce: Any = None) -> Run:
    """The part of :func:`train` done while the run folder's lock is held."""
    check_can_train(run_dir, resume)  # again, now that no other training can write into it
    ckpt = run_dir / "checkpoint.pt"
    state, history = None, None
    if resume and ckpt.is_file():
        state = read_checkpoint(ckpt)
        # a run saved before a config field existed has that field's default
        saved = _plain(RunConfig.from_dict(state["config"]).to_dict())
        if saved != plain:
            changes = "; ".join(f"{k}: {a!r} in the run, {b!r} now" for k, a, b in config_differences(saved, plain))
            raise ValueError(f"{ckpt} was trained with another configuration ({changes}); resume with "
                             f"the same settings, or choose another run folder")
        world, now = int(state.get("world", 1)), current().world
        if world != now:
            raise ValueError(f"{ckpt} was trained on {world} process(es) (a global batch of {world} × "
                             f"{config.train.batch_size}); resume it on {world} (torchrun --nproc_per_node {world}"
                             f"{'' if world > 1 else ', or without torchrun'}): another number of processes would "
                             f"change the batch the run trains with")
        history = History.load(run_dir)
        left = _nothing_left(config, state)
        if left is not None:
            if announce is not None:
                announce({"state": state, "nothing_left": left})
            model = build_model(config, pretrained=False)
            model.load_state_dict(state["model"])
            history.truncate(int(state["epoch"]), int(state["step"]))
            return Run(config, model.eval(), history, run_dir, nothing_left=left)
    if announce is not None:  # with the run folder, where a resumed class-folder run's split is kept
        announce({"state": state, "run_dir": str(run_dir)})
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
         history: History | None, progress: bool, callbacks: Sequence[Callback], main: bool = True) -> Run:
    # a resumed class-folder run: its saved split; a fresh run makes its own (a split.json left by an
    # attempt killed before its first epoch belongs to no run)
    source = source_for(config, run_dir if state is not None else None)
    t = config.train
    if not main:  # another rank than 0 under torchrun: its share of the training and evaluation, nothing recorded
        model = build_model(config, pretrained=state is None)
        barrier(resolve_device(t.device))  # rank 0 has made the data (a generated set's cache) first
        val = source.split("val")
        # rank 0's clock decides the time budget, and its stop reaches every rank (Trainer.fit)
        trainer = Trainer(model, t, source.training(False), [NanGuard(), _evaluator(val, t), *callbacks])
        if state is not None:
            trainer.load_state_dict(state)
        trainer.fit()
        return Run(config, trainer.model.to("cpu").eval(), trainer.history, None)
    data, val, probe = source.training(progress), source.split("val"), source.probe()
    if current().distributed:
        barrier(resolve_device(config.train.device))  # the data exist now: the other ranks read them
    if run_dir is not None:
        atomic_write_bytes(run_dir / "config.json", json.dumps(plain, indent=1).encode())
        record = source.split_record()
        if record is not None:
            atomic_write_bytes(run_dir / SPLITS_FILE, json.dumps(record, indent=1).encode())
        faces = source.faces_record()
        if faces is not None:
            atomic_write_bytes(run_dir / FACES_FILE, json.dumps(faces, indent=1).encode())
    model = build_model(config, pretrained=state is None)  # a resumed run's weights come from its checkpoint
    cbs = [NanGuard()]
    if t.max_time is not None:
        cbs.append(TimeBudget(t.max_time))
    cbs += [ProbeRecorder(probe.images, probe.labels, probe.boxes), _evaluator(val, t)]
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


def _evaluator(val: Any, t: TrainConfig) -> Evaluator:
    """The held-out evaluation of a run (on several ranks, each evaluates its share: :class:`Evaluator`)."""
    return Evaluator(val.images, val.labels, val.boxes, "val", every=t.eval_every, batch_size=t.eval_batch_size,
                     masks=pointing_masks(val), localisation=t.eval_localisation)


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
    recorded (``run_dir/faces.json``): a sentence saying how, or ``None`` (the same faces, a source of
    image files, or a run folder without the record)."""
    path = Path(run_dir) / FACES_FILE
    if not path.is_file():
        if config.data.source == "characters" and (Path(run_dir) / "checkpoint.pt").is_file():
            return (f"{run_dir} keeps no record of its font faces (faces.json): a run trained before 2026-11-30 "
                    f"drew the operating system's faces too, so its generated test images here may differ "
                    f"from those it was measured on")
        return None
    try:
        record = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return f"{path} cannot be read: whether this machine has the run's font faces is unknown"
    diff = source_for(config).faces_differ(record)
    if diff is None:
        return None
    return f"{diff}: the generated test images differ from those {run_dir} was measured on, and so may its figures"


def evaluate(model: torch.nn.Module, batch: CharacterBatch | Any, batch_size: int = 250,
             tolerance: float = 0, localisation: bool = False) -> dict[str, Any]:
    """Test figures of ``model`` on a generated batch or a loaded labelled folder (anything with
    ``images`` (N, H, W) uint8, ``labels`` and ``boxes``): accuracy, precision, recall, f1, auroc and
    the pointing game on defective images with known boxes (a DAGM set: inside their masks), a hit
    within ``tolerance`` pixels of the truth counting (see :func:`~sacnn_lab.metrics.pointing_game`).
    ``localisation=True`` adds IoU, Dice, compactness, pixel AUROC/AP and the false-alarm area (see
    :func:`~sacnn_lab.callbacks.evaluate_arrays`); a model of several defect types, on images that carry
    those types (``batch.type_names``), adds ``types``."""
    return evaluate_arrays(model, batch.images, batch.labels, batch.boxes, batch_size,
                           masks=pointing_masks(batch), tolerance=tolerance, localisation=localisation,
                           types=getattr(batch, "type_names", None) is not None)


def _check_n(n: Any) -> None:
    """Refuse an image count that is not a whole number >= 1 (``None``: all of them)."""
    if n is not None and (isinstance(n, bool) or not isinstance(n, int) or n < 1):
        raise ValueError(f"n (--n) must be a whole number >= 1 of images, not {n!r}")


def run_test_split(checkpoint: str | os.PathLike, config: RunConfig, n: int | None = None) -> Any:
    """The test split of the run a checkpoint belongs to: a character run's unseen seed, a textile run's
    ``Test`` split, a class-folder run's test files as its run folder saved them (``splits.json``)."""
    _check_n(n)
    path = Path(checkpoint)
    return source_for(config, path if path.is_dir() else path.parent).split("test", n)


def load_or_train(config: RunConfig, run_dir: str | os.PathLike, progress: bool = True) -> Run:
    """The run saved in ``run_dir`` if there is one (whatever config it was trained with, e.g. on a GPU);
    otherwise train ``config`` there first."""
    if (Path(run_dir) / "checkpoint.pt").is_file():
        return load_run(run_dir)
    return train(config, run_dir, progress=progress)


def load_data(spec: str | os.PathLike, config: RunConfig, n: int | None = None) -> CharacterBatch | Any:
    """Evaluation images by name: ``characters[:SEED]`` (the run's test split, or the same generator at
    another seed), ``textile`` (a textile run's Test split; for a character run, the default generated
    textile set's), a DAGM 2007 class folder (its Test split), a class folder (all its images), or a
    labelled folder. A folder run (``source="folder"``) reads a folder of any layout the way it trained
    (its image size, colour and defect types), every image of it as test data.

    Args:
        spec: ``"characters"``, ``"characters:SEED"``, ``"textile"``, or a folder path.
        config: the run whose test split (and image size) is meant.
        n: the first ``n`` images (default: all of the split).

    Returns:
        Anything with ``images`` ``(N, H, W)`` uint8, ``labels`` ``(N,)`` and ``boxes`` ``(N, K, 4)``
        (DAGM sets also ``masks``).
    """
    from dataclasses import replace

    from data_gen.folders import folder_layout

    from .config import DataConfig

    _check_n(n)
    spec = os.fspath(spec)
    own = config.data.source == "folder"
    if own and (config.data.color or config.data.defect_types) and not os.path.isdir(spec):
        what = "colour" if config.data.color else f"{len(config.data.defect_types)} defect types"
        raise ValueError(f"a run of {what} is evaluated on folders (its own layout, a DAGM or a labelled folder), "
                         f"not on {spec!r}: the generated sets are gray and of one defect type")
    if spec == "characters" or spec.startswith("characters:"):
        if spec.startswith("characters:"):
            seed = spec.split(":", 1)[1]
            if not seed.isdigit():
                raise ValueError(f"expected characters:SEED with an integer seed, not {spec!r}")
            config = replace(config, data=replace(config.data, test_seed=int(seed)))
        if config.data.source != "characters":
            config = replace(config, data=DataConfig())
        return CharacterSource(config).split("test", n)
    layout = None if spec == "textile" else folder_layout(spec)
    if layout == "class" or (own and layout is not None):
        # a folder run reads any folder the way it trained (its size, colour and types): all of it is test data
        return ClassFolderSource.evaluation(config, spec).split("test", n)
    if spec == "textile" or layout == "dagm":
        data = config.data if config.data.source == "textile" else DataConfig.dagm()
        if spec != "textile":
            data = replace(data, folder=spec)
        return DagmSource(replace(config, data=data)).split("test", n)
    size = (config.data.characters.image_size,) * 2 if config.data.source == "characters" else None
    return LabelledFolderSource(spec, size=size).split("test", n)
