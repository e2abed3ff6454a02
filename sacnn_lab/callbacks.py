"""Callbacks of the trainer: evaluation, probe maps, checkpoints, progress, NaN guard, time budget."""

from __future__ import annotations

import io
import math
import os
import time
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import torch
import torch.distributed as dist

from .distributed import share
from .history import History
from .runfolder import CHECKPOINT_FORMAT, CHECKPOINT_KEYS, atomic_write_bytes, read_checkpoint  # noqa: F401
from .inference import predict
from .metrics import classification, pointing_game
from .trainer import Callback, Trainer, epoch_steps


class NanGuard(Callback):
    """Stops the run with a clear message when the loss becomes NaN or infinite."""

    def on_batch_end(self, trainer: Trainer, record: dict[str, Any]) -> None:
        if not math.isfinite(record["loss"]):
            clip = trainer.config.grad_clip
            clipping = (f"clip the gradients' norm lower (now {clip:.3g})" if clip is not None else
                        "clip the gradients' norm (grad_clip=20, --grad-clip 20)")
            raise FloatingPointError(
                f"the training loss became {record['loss']} at epoch {record['epoch']}, step {record['step']}: "
                f"lower the learning rate (now {trainer.optimizer.param_groups[0]['lr']:.3g}), {clipping}, or "
                f"use reduction='mean' / normalisation")


class TimeBudget(Callback):
    """Ends the run once ``seconds`` of training time (evaluation excluded) have passed."""

    def __init__(self, seconds: float):
        if not seconds > 0:
            raise ValueError(f"the time budget must be > 0 seconds, not {seconds}")
        self.seconds = float(seconds)

    def on_batch_end(self, trainer: Trainer, record: dict[str, Any]) -> None:
        if trainer.train_time >= self.seconds:
            trainer.should_stop = True


class ProgressBar(Callback):
    """A tqdm progress bar per epoch (``tqdm.auto``: a widget in notebooks) and one summary line per epoch.

    Args:
        leave: keep each epoch's bar when it ends.
        bars: ``False``: the summary lines only (for logs, where a bar's redrawing is noise).
    """

    def __init__(self, leave: bool = False, bars: bool = True):
        self.leave = leave
        self.bars = bars
        self.bar = None

    def on_epoch_start(self, trainer: Trainer, epoch: int) -> None:
        if not self.bars:
            return
        from tqdm.auto import tqdm

        self.bar = tqdm(total=epoch_steps(trainer.data, epoch), desc=f"epoch {epoch}/{trainer.config.epochs}",
                        unit="step", leave=self.leave)

    def on_batch_end(self, trainer: Trainer, record: dict[str, Any]) -> None:
        if self.bar is not None:
            self.bar.update(1)
            if record["step"] % 10 == 0:
                self.bar.set_postfix(loss=f"{record['loss']:.4f}")

    def on_epoch_end(self, trainer: Trainer, record: dict[str, Any]) -> None:
        if self.bar is not None:
            self.bar.close()
            self.bar = None
        shown = {k: record[k] for k in ("train_loss", "val_accuracy", "val_precision", "val_pointing_game")
                 if record.get(k) is not None}
        from tqdm.auto import tqdm

        tqdm.write(f"epoch {record['epoch']}: " + ", ".join(f"{k} {v:.4f}" for k, v in shown.items())
                   + f" ({record['train_time']:.0f} s of training)")


def evaluate_arrays(model: torch.nn.Module, images: np.ndarray, labels: np.ndarray, boxes: np.ndarray | list,
                    batch_size: int = 250, threshold: float = 0.5,
                    masks: np.ndarray | None = None, tolerance: float = 0,
                    localisation: bool = False, types: bool = False) -> dict[str, Any]:
    """Classification figures and the pointing game of ``model`` on a fixed set.

    Args:
        model: a SACNN-style model.
        images: ``(N, H, W)`` uint8.
        labels: ``(N,)`` 0/1, or ``0..K`` for a model of K defect types (0: defect-free, k: type k).
        boxes: ``(N, K, 4)`` (-1 rows unused) or a list of box lists.
        batch_size: images per forward pass.
        threshold: decision threshold on the image score.
        masks: ``(N, H, W)`` bool truth masks (DAGM's ellipses) the pointing game uses instead of the
            boxes, or ``None``.
        tolerance: pixels of tolerance of the pointing game (see :func:`~sacnn_lab.metrics.pointing_game`).
        localisation: also the means of every :data:`~sacnn_lab.metrics.LOCALISATION_COLUMNS` figure (IoU,
            Dice, compactness, pixel AUROC and AP, against the masks or else the box union) over the
            defective images with a known truth, and ``false_alarm_area`` over the defect-free ones; the
            maps are measured one batch at a time, never all held at once.
        types: the labels are defect types ``0..K`` of a model of K > 1 types: also ``types``.

    Returns:
        accuracy, precision, recall, f1, auroc, confusion counts, and ``pointing_game`` (share of
        defective images with known boxes whose map maximum lies in a true box, or in the mask;
        ``nan`` without boxes). With ``types``, a model of K > 1 types also gives ``types`` (see
        :func:`~sacnn_lab.metrics.type_figures`): each type's recall, and the confusion between them.

    Raises:
        FloatingPointError: a score is NaN or infinite (figures of such a model would be made up).
    """
    parts = evaluation_parts(model, images, labels, boxes, batch_size, threshold, masks, tolerance, localisation, types)
    return evaluation_figures(parts, labels, threshold, localisation)


def evaluation_parts(model: torch.nn.Module, images: np.ndarray, labels: np.ndarray, boxes: np.ndarray | list,
                     batch_size: int = 250, threshold: float = 0.5, masks: np.ndarray | None = None,
                     tolerance: float = 0, localisation: bool = False, types: bool = False) -> dict[str, Any]:
    """What :func:`evaluate_arrays` measures image by image, before the figures are made of it: ``scores`` (N,),
    ``hits`` (the pointing game's, one per defective image with a truth), ``tables`` (the localisation tables of
    its batches) and ``type_scores`` (N, K). Parts of consecutive slices, joined in order
    (:func:`join_parts`), give the whole set's: how several processes share an evaluation."""
    from .metrics import localisation_table

    scores, type_scores, hits, tables = [], [], [], []
    labels = np.asarray(labels)
    for lo in range(0, len(images), batch_size):
        p = predict(model, images[lo:lo + batch_size], batch_size=batch_size)
        if p.score.ndim == 2 and types:
            type_scores.append(p.score.numpy())
        whole = p.any_type()
        s, m = whole.score, whole.map
        scores.append(s.numpy())
        part_masks = None if masks is None else masks[lo:lo + batch_size]
        hits.append(pointing_game(m.numpy(), boxes[lo:lo + batch_size], part_masks, tolerance))
        if localisation and np.isfinite(s.numpy()).all():
            tables.append(localisation_table(s.numpy(), labels[lo:lo + batch_size] > 0, m.numpy(),
                                             boxes[lo:lo + batch_size], part_masks, threshold))
    return {"scores": np.concatenate(scores) if scores else np.zeros(0, np.float32),
            "hits": np.concatenate(hits) if hits else np.zeros(0, bool), "tables": tables,
            "type_scores": type_scores}


def join_parts(parts: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """The parts of consecutive slices of a set (:func:`evaluation_parts`), in order, as the whole set's."""
    return {"scores": np.concatenate([p["scores"] for p in parts]),
            "hits": np.concatenate([p["hits"] for p in parts]),
            "tables": [t for p in parts for t in p["tables"]],
            "type_scores": [t for p in parts for t in p["type_scores"]]}


def evaluation_figures(parts: dict[str, Any], labels: np.ndarray, threshold: float = 0.5,
                       localisation: bool = False) -> dict[str, Any]:
    """The figures of :func:`evaluate_arrays` from a whole set's parts (:func:`evaluation_parts`).

    Raises:
        FloatingPointError: a score is NaN or infinite.
    """
    from .metrics import LOCALISATION_COLUMNS, type_figures

    labels = np.asarray(labels)
    scores = parts["scores"]
    if not np.isfinite(scores).all():
        raise FloatingPointError(f"the model gives non-finite scores for {int((~np.isfinite(scores)).sum())} of "
                                 f"{len(scores)} images (NaN or infinite weights, or a diverged run): there are "
                                 f"no figures to report")
    out: dict[str, Any] = classification(scores, labels > 0, threshold)
    hit = parts["hits"]
    out["pointing_game"] = float(hit.mean()) if hit.size else float("nan")
    if localisation:
        import pandas as pd

        table = pd.concat(parts["tables"], ignore_index=True)
        for c in (*LOCALISATION_COLUMNS, "false_alarm_area"):
            if c == "pointing_game":  # the one above: against the masks, with the tolerance
                continue
            v = table[c].to_numpy(np.float64)
            out[c] = float(np.nanmean(v)) if np.isfinite(v).any() else float("nan")
    if parts["type_scores"]:
        out["types"] = type_figures(np.concatenate(parts["type_scores"]), labels, threshold)
    return out


class Evaluator(Callback):
    """After every ``every`` epochs, evaluates on a fixed held-out set and adds ``{prefix}_*`` figures
    (accuracy, precision, recall, f1, auroc, pointing_game; with ``localisation`` also IoU, Dice,
    compactness, the energy pointing game, pixel AUROC/AP and the false-alarm area) to the epoch record."""

    def __init__(self, images: np.ndarray, labels: np.ndarray, boxes: np.ndarray, prefix: str = "val",
                 every: int = 1, batch_size: int = 250, masks: np.ndarray | None = None,
                 localisation: bool = False):
        self.images, self.labels, self.boxes, self.masks = images, labels, boxes, masks
        self.prefix, self.every, self.batch_size, self.localisation = prefix, every, batch_size, localisation

    def on_epoch_end(self, trainer: Trainer, record: dict[str, Any]) -> None:
        if record["epoch"] % self.every and not trainer.should_stop and record["epoch"] != trainer.config.epochs:
            return
        t = time.perf_counter()
        images, labels, boxes, masks = self.images, self.labels, self.boxes, self.masks
        ranks = trainer.ranks
        if ranks.distributed:  # each rank its consecutive share of the set; every rank gets the whole set's figures
            sl = share(len(images), ranks)
            images, labels, boxes = images[sl], labels[sl], boxes[sl]
            masks = None if masks is None else masks[sl]
        part = evaluation_parts(trainer.model, images, labels, boxes, self.batch_size, masks=masks,
                                localisation=self.localisation)
        if ranks.distributed:
            gathered: list[Any] = [None] * ranks.world
            dist.all_gather_object(gathered, part)
            part = join_parts(gathered)
        res = evaluation_figures(part, self.labels, localisation=self.localisation)
        record.update({f"{self.prefix}_{k}": v for k, v in res.items()})
        record[f"{self.prefix}_seconds"] = time.perf_counter() - t


class ProbeRecorder(Callback):
    """Records the feature-level defect maps and scores of a fixed probe batch before training (epoch 0)
    and after every epoch, into the history."""

    def __init__(self, images: np.ndarray, labels: np.ndarray, boxes: np.ndarray):
        self.images, self.labels, self.boxes = images, labels, boxes

    def _record(self, trainer: Trainer, epoch: int) -> None:
        p = predict(trainer.model, self.images)
        fm = p.feature_map if p.feature_map.ndim == 3 else p.feature_map.max(1).values
        sc = p.score if p.score.ndim == 1 else p.score.max(1).values
        trainer.history.probe_maps[epoch] = fm.numpy().astype(np.float16)
        trainer.history.probe_scores[epoch] = sc.numpy().astype(np.float32)

    def on_fit_start(self, trainer: Trainer) -> None:
        h = trainer.history
        if h.probe_images is None:
            h.probe_images, h.probe_labels, h.probe_boxes = self.images, self.labels, self.boxes
        if trainer.epoch not in h.probe_maps:
            self._record(trainer, trainer.epoch)

    def on_epoch_end(self, trainer: Trainer, record: dict[str, Any]) -> None:
        self._record(trainer, record["epoch"])


def save_checkpoint(path: str | os.PathLike, trainer: Trainer, config: dict[str, Any]) -> Path:
    """Write the trainer's state and the run's config atomically; loads with ``weights_only=True``."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    state = {"format": CHECKPOINT_FORMAT, "config": config, **trainer.state_dict()}
    buf = io.BytesIO()
    torch.save(state, buf)
    atomic_write_bytes(path, buf.getvalue())
    return path


class Checkpointer(Callback):
    """After every epoch, writes the history (``history.json/.npz``) and ``run_dir/checkpoint.pt``
    atomically, the checkpoint last; an interrupted run resumes from there (a history saved after the
    checkpoint is cut back to it, see :meth:`History.truncate`).

    With ``best`` (a figure of the epoch records, higher is better, e.g. ``"val_pointing_game"``) it also
    writes ``run_dir/best.pt`` whenever an epoch beats every earlier one (:meth:`History.best_epoch`; the
    earlier ones are read from the history, so a resumed run keeps the same best).
    """

    def __init__(self, run_dir: str | os.PathLike, config: dict[str, Any], best: str | None = None):
        self.run_dir = Path(run_dir)
        self.config = config
        self.best = best

    def on_epoch_end(self, trainer: Trainer, record: dict[str, Any]) -> None:
        # the checkpoint last: an interruption before it redoes this epoch, whose records and best.pt
        # come out the same again
        if self.best is not None and trainer.history.best_epoch(self.best) == record["epoch"]:
            save_checkpoint(self.run_dir / "best.pt", trainer, self.config)
        trainer.history.save(self.run_dir)
        save_checkpoint(self.run_dir / "checkpoint.pt", trainer, self.config)

    def on_fit_end(self, trainer: Trainer) -> None:
        trainer.history.save(self.run_dir)


__all__ = ["NanGuard", "TimeBudget", "ProgressBar", "Evaluator", "ProbeRecorder", "Checkpointer",
           "evaluate_arrays", "save_checkpoint", "read_checkpoint", "History"]
