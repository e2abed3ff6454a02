"""The record of a run: per-epoch figures, per-step losses, and the probe batch's defect maps per epoch.

``history[e]`` holds epoch ``e``'s figures (epochs count from 1; ``history.epochs`` lists them in order);
``history.maps(e)`` the probe batch's defect maps after epoch ``e`` (epoch 0: before training), so that any epoch
can be shown later without retraining. A run folder holds ``history.json`` (scalars and the config) and
``history.npz`` (arrays).
"""

from __future__ import annotations

import json
import math
import os
import zipfile
import zlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from .runfolder import atomic_write_bytes


def _jsonable(x: Any) -> Any:
    if isinstance(x, dict):
        return {str(k): _jsonable(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [_jsonable(v) for v in x]
    if isinstance(x, (np.floating, float)):
        return None if x != x else float(x)  # NaN -> null
    if isinstance(x, np.integer):
        return int(x)
    return x


@dataclass
class History:
    """Everything recorded while training.

    Attributes:
        epochs: one dict per finished epoch (``epoch``, ``train_loss``, ``train_accuracy``, ``val_*``,
            ``time``, ``samples``...).
        steps: per training step: ``loss``, ``tp``, ``fp``, ``tn``, ``fn`` (lists of equal length).
        probe_images: ``(N, H, W)`` uint8, the fixed probe batch.
        probe_labels: ``(N,)`` its labels.
        probe_boxes: ``(N, K, 4)`` its true boxes (-1 rows unused).
        probe_maps: ``{epoch: (N, s, t) float16}`` feature-level defect maps after each epoch.
        probe_scores: ``{epoch: (N,) float32}`` image probabilities after each epoch.
        config: the run's configuration (``RunConfig.to_dict()``).
    """

    epochs: list[dict[str, Any]] = field(default_factory=list)
    steps: dict[str, list[float]] = field(default_factory=lambda: {k: [] for k in ("loss", "tp", "fp", "tn", "fn")})
    probe_images: np.ndarray | None = None
    probe_labels: np.ndarray | None = None
    probe_boxes: np.ndarray | None = None
    probe_maps: dict[int, np.ndarray] = field(default_factory=dict)
    probe_scores: dict[int, np.ndarray] = field(default_factory=dict)
    config: dict[str, Any] = field(default_factory=dict)

    # ---- reading -----------------------------------------------------------------------------------
    def __getitem__(self, epoch: int) -> dict[str, Any]:
        """The figures of epoch ``epoch`` (1-based, as printed)."""
        for rec in self.epochs:
            if rec["epoch"] == epoch:
                return rec
        raise KeyError(f"no epoch {epoch} in this history (epochs: {[r['epoch'] for r in self.epochs]})")

    @property
    def recorded_epochs(self) -> list[int]:
        """Epochs with probe maps, ascending (0 = before training)."""
        return sorted(self.probe_maps)

    def series(self, key: str) -> np.ndarray:
        """``(E,)`` values of one per-epoch figure (``nan`` where missing)."""
        return np.asarray([np.nan if r.get(key) is None else r[key] for r in self.epochs], np.float64)

    def truncate(self, epoch: int, step: int) -> None:
        """Forget what was recorded after ``epoch`` and global step ``step``: a resumed run whose history
        was saved after the checkpoint it resumes from (an interruption between the two writes) redoes
        those epochs, so they must not be there twice."""
        self.epochs = [r for r in self.epochs if r["epoch"] <= epoch]
        for values in self.steps.values():
            del values[step:]
        for recorded in (self.probe_maps, self.probe_scores):
            for e in [e for e in recorded if e > epoch]:
                del recorded[e]

    def best_epoch(self, key: str) -> int | None:
        """The epoch with the highest ``key`` (e.g. ``"val_pointing_game"``), the earliest of ties; epochs
        without it, or with NaN, never count; ``None`` when none has it. ``best.pt`` holds this epoch when
        the run kept its best (``TrainConfig.keep_best``)."""
        values = self.series(key)
        if np.isnan(values).all():
            return None
        return int(self.epochs[int(np.nanargmax(values))]["epoch"])  # nanargmax: the first of ties

    def maps(self, epoch: int) -> np.ndarray:
        """``(N, s, t)`` float32 feature-level defect maps of the probe batch after ``epoch``."""
        if epoch not in self.probe_maps:
            raise KeyError(f"no maps recorded for epoch {epoch}; recorded: {self.recorded_epochs}")
        return self.probe_maps[epoch].astype(np.float32)

    def maps_upsampled(self, epoch: int) -> np.ndarray:
        """``(N, H, W)`` float32 maps of ``epoch`` resized to the probe images by bilinear interpolation
        (as SACNN's inference does)."""
        m = torch.from_numpy(self.maps(epoch))[:, None]
        H, W = self.probe_images.shape[1:3]  # gray (N, H, W) or colour (N, H, W, 3)
        return F.interpolate(m, size=(H, W), mode="bilinear", align_corners=False)[:, 0].numpy()

    def probe_indices(self, kind: str = "all") -> list[int]:
        """Indices of probe images of one kind: ``"all"``, ``"defective"``, ``"single"`` (one true
        character), ``"multi"`` (several) or ``"defect-free"`` — e.g. the paper's Figures 7 and 8."""
        n_boxes = (self.probe_boxes[:, :, 0] >= 0).sum(1) if self.probe_boxes is not None else np.zeros(0)
        pick = {"all": np.ones(len(n_boxes), bool), "defective": self.probe_labels > 0,
                "single": n_boxes == 1, "multi": n_boxes > 1, "defect-free": self.probe_labels == 0}
        if kind not in pick:
            raise ValueError(f"kind must be one of {sorted(pick)}, not {kind!r}")
        return [int(i) for i in np.flatnonzero(pick[kind])]

    def records(self) -> list[dict[str, Any]]:
        """Per-epoch figures as a list of flat dicts (``pandas.DataFrame(history.records())``)."""
        return [dict(r) for r in self.epochs]

    # ---- files -------------------------------------------------------------------------------------
    def save(self, run_dir: str | os.PathLike) -> Path:
        """Write ``history.json`` and ``history.npz`` into ``run_dir`` (atomically)."""
        run_dir = Path(run_dir)
        run_dir.mkdir(parents=True, exist_ok=True)
        meta = {"format": "sacnn-lab-history/1", "epochs": self.epochs, "steps": self.steps,
                "recorded_epochs": self.recorded_epochs, "config": self.config}
        atomic_write_bytes(run_dir / "history.json", json.dumps(_jsonable(meta), indent=1).encode())
        arrays: dict[str, np.ndarray] = {}
        if self.probe_images is not None:
            arrays.update(probe_images=self.probe_images, probe_labels=self.probe_labels,
                          probe_boxes=self.probe_boxes)
        for e in self.recorded_epochs:
            arrays[f"maps_{e}"] = self.probe_maps[e]
            arrays[f"scores_{e}"] = self.probe_scores[e]
        import io

        buf = io.BytesIO()
        np.savez_compressed(buf, **arrays)
        atomic_write_bytes(run_dir / "history.npz", buf.getvalue())
        return run_dir

    @classmethod
    def load(cls, run_dir: str | os.PathLike) -> "History":
        """Read a history saved by :meth:`save` (a run folder, possibly trained on another machine)."""
        run_dir = Path(run_dir)
        jf, nf = run_dir / "history.json", run_dir / "history.npz"
        for f in (jf, nf):
            if not f.is_file():
                raise FileNotFoundError(f"{f} does not exist: {run_dir} is not a sacnn-lab run folder")
        try:
            meta = json.loads(jf.read_text(encoding="utf-8"))
            if not isinstance(meta, dict) or not str(meta.get("format", "")).startswith("sacnn-lab-history"):
                raise ValueError(f"{jf.name} is not a sacnn-lab history")
            epochs = [{k: (math.nan if v is None else v) for k, v in r.items()} for r in meta["epochs"]]  # NaN
            steps = {k: list(v) for k, v in meta["steps"].items()}
            h = cls(epochs=epochs, steps=steps, config=meta.get("config", {}))
            with np.load(nf) as data:
                if "probe_images" in data:
                    h.probe_images, h.probe_labels, h.probe_boxes = (data["probe_images"], data["probe_labels"],
                                                                     data["probe_boxes"])
                for e in meta.get("recorded_epochs", []):
                    h.probe_maps[int(e)] = data[f"maps_{e}"]
                    h.probe_scores[int(e)] = data[f"scores_{e}"]
            if any(not isinstance(r.get("epoch"), int) for r in epochs) or \
                    len({len(v) for v in steps.values()}) > 1:
                raise ValueError("inconsistent epoch or step records")
        except (ValueError, OSError, KeyError, TypeError, AttributeError, EOFError, zipfile.BadZipFile,
                zlib.error) as exc:
            raise ValueError(f"{run_dir} holds an unreadable or damaged history (history.json / history.npz: "
                             f"{type(exc).__name__}: {exc})") from exc
        return h
