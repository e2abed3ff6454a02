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

import numpy as np
import torch

from data_gen.characters import CharacterBatch, CharacterGenerator

from .baseline import VGGBaseline
from .callbacks import (Checkpointer, Evaluator, NanGuard, ProbeRecorder, ProgressBar, TimeBudget,
                        evaluate_arrays, read_checkpoint)
from .config import RunConfig
from .data import GeneratedEpochs
from .history import History
from .model import SACNN
from .trainer import Callback, Trainer


@dataclass
class Run:
    """A trained (or loaded) run: its config, model (on CPU, eval mode), history and folder.

    ``model`` is a :class:`~sacnn_lab.model.SACNN`, or a :class:`~sacnn_lab.baseline.VGGBaseline` when
    ``config.is_baseline``.
    """

    config: RunConfig
    model: SACNN | VGGBaseline
    history: History
    run_dir: Path | None = None


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
    same_faces = (ev_cfg.font_split, ev_cfg.font_dirs) == (config.data.characters.font_split,
                                                            config.data.characters.font_dirs)
    ev = CharacterGenerator(ev_cfg, faces=train.faces if same_faces else None)
    if same_faces:
        ev.atlas = train.atlas  # share rendered glyphs
    return train, ev


def split(config: RunConfig, which: str, generator: CharacterGenerator | None = None,
          n: int | None = None) -> CharacterBatch:
    """A fixed evaluation split of the run's data: ``"val"``, ``"test"`` or ``"probe"``.

    The test split uses its own seed (never seen in training); the probe batch is the first
    ``probe_size`` test images, whose maps are recorded every epoch.
    """
    d = config.data
    gen = generator or _generators(config)[1]
    if which not in ("val", "test", "probe"):
        raise ValueError(f"split must be 'val', 'test' or 'probe', not {which!r}")
    if which == "probe":
        return gen.generate(d.test_seed, _probe_indices(gen, d.test_seed, n or d.probe_size))
    seed, size = (d.val_seed, d.val_size) if which == "val" else (d.test_seed, d.test_size)
    return gen.generate(seed, np.arange(n or size), masks=False)


def _probe_indices(gen: CharacterGenerator, seed: int, size: int) -> np.ndarray:
    """Test images for the probe batch: about half defective, a quarter of those with several
    characters where the generator makes them (the paper's Figures 7 and 8), the rest defect-free."""
    pool = gen.generate(seed, np.arange(max(256, 16 * size)))
    n_boxes = (pool.boxes[:, :, 0] >= 0).sum(1)
    multi = np.flatnonzero(n_boxes > 1)[: size // 4]
    single = np.flatnonzero(n_boxes == 1)[: (size + 1) // 2 - len(multi)]
    free = np.flatnonzero(n_boxes == 0)[: size - len(multi) - len(single)]
    return np.sort(np.concatenate([multi, single, free]))


def train(config: RunConfig, run_dir: str | os.PathLike | None = None, resume: bool = False,
          progress: bool = True, callbacks: Sequence[Callback] = ()) -> Run:
    """Train SACNN (or the baseline) as ``config`` says, recording the history (and checkpoints when
    ``run_dir`` is given). A baseline run uses the same data, trainer and callbacks; its probe maps and
    validation pointing game come from its CAM.

    Args:
        config: model, data and training settings (e.g. ``RunConfig.preset("fast")``,
            ``RunConfig.baseline("cpu")``).
        run_dir: folder for ``config.json``, ``checkpoint.pt`` and ``history.json/.npz``.
        resume: continue from ``run_dir/checkpoint.pt`` when it exists (the result equals an
            uninterrupted run); the saved config must equal ``config``.
        progress: show progress bars and one line per epoch.
        callbacks: extra callbacks, called after the built-in ones.

    Returns:
        The :class:`Run`, its model on the CPU in eval mode.
    """
    gen_train, gen_eval = _generators(config)
    val, probe = split(config, "val", gen_eval), split(config, "probe", gen_eval)
    state, history = None, None
    if run_dir is not None:
        run_dir = Path(run_dir)
        ckpt = run_dir / "checkpoint.pt"
        if resume and ckpt.is_file():
            state = read_checkpoint(ckpt)
            if state["config"] != _plain(config.to_dict()):
                raise ValueError(f"{ckpt} was trained with another configuration; resume with the same "
                                 f"config, or choose another run folder")
            history = History.load(run_dir)
        elif ckpt.is_file() and not resume:
            raise FileExistsError(f"{run_dir} already holds a run; pass resume=True (--resume) to continue "
                                  f"it, or choose another folder")
        run_dir.mkdir(parents=True, exist_ok=True)
        (run_dir / "config.json").write_text(json.dumps(_plain(config.to_dict()), indent=1))
    model = build_model(config, pretrained=state is None)  # a resumed run's weights come from its checkpoint
    t = config.train
    data = GeneratedEpochs(gen_train, config.data.train_seed, config.data.samples_per_epoch, t.batch_size,
                           t.num_workers)
    cbs: list[Callback] = [NanGuard()]
    if t.max_time is not None:
        cbs.append(TimeBudget(t.max_time))
    cbs += [ProbeRecorder(probe.images, probe.labels, probe.boxes),
            Evaluator(val.images, val.labels, val.boxes, "val", batch_size=t.eval_batch_size)]
    if run_dir is not None:
        cbs.append(Checkpointer(run_dir, _plain(config.to_dict())))
    if progress:
        cbs.append(ProgressBar())
    trainer = Trainer(model, t, data, [*cbs, *callbacks], history)
    if state is not None:
        trainer.load_state_dict(state)
    trainer.history.config = _plain(config.to_dict())
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
        ValueError: corrupt file, or weights that do not fit the architecture its config describes.
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
    return model.eval(), config


def load_run(run_dir: str | os.PathLike) -> Run:
    """A run folder written by :func:`train`: model, config and history (for widgets and plots)."""
    run_dir = Path(run_dir)
    model, config = load_model(run_dir)
    return Run(config, model, History.load(run_dir), run_dir)


def evaluate(model: torch.nn.Module, batch: CharacterBatch | Any, batch_size: int = 250) -> dict[str, float]:
    """Test figures of ``model`` on a generated batch or a loaded labelled folder (anything with
    ``images`` (N, H, W) uint8, ``labels`` and ``boxes``): accuracy, precision, recall, f1, auroc and
    the pointing game on defective images with known boxes."""
    return evaluate_arrays(model, batch.images, batch.labels, batch.boxes, batch_size)


def load_or_train(config: RunConfig, run_dir: str | os.PathLike, progress: bool = True) -> Run:
    """The run saved in ``run_dir`` if there is one (whatever config it was trained with, e.g. on a GPU);
    otherwise train ``config`` there first."""
    if (Path(run_dir) / "checkpoint.pt").is_file():
        return load_run(run_dir)
    return train(config, run_dir, progress=progress)


def load_data(spec: str | os.PathLike, config: RunConfig, n: int | None = None) -> CharacterBatch | Any:
    """Evaluation images by name: a labelled folder, or ``characters[:SEED]`` (the run's test split, or
    the same generator at another seed).

    Args:
        spec: ``"characters"``, ``"characters:SEED"`` or the path of a labelled folder.
        config: the run whose test split (and image size) is meant.
        n: images of a generated split (default: ``config.data.test_size``); ignored for folders.

    Returns:
        Anything with ``images`` ``(N, H, W)`` uint8, ``labels`` ``(N,)`` and ``boxes`` ``(N, K, 4)``.
    """
    from dataclasses import replace

    from .data import load_folder

    spec = os.fspath(spec)
    if spec == "characters" or spec.startswith("characters:"):
        if spec.startswith("characters:"):
            seed = spec.split(":", 1)[1]
            if not seed.isdigit():
                raise ValueError(f"expected characters:SEED with an integer seed, not {spec!r}")
            config = replace(config, data=replace(config.data, test_seed=int(seed)))
        return split(config, "test", n=n)
    size = (config.data.characters.image_size,) * 2
    return load_folder(spec, size=size)
