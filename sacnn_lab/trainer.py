"""A generic trainer: the loop, the device, mixed precision, and events for callbacks.

The trainer draws nothing and writes nothing itself: callbacks (:mod:`sacnn_lab.callbacks`) evaluate,
record probe maps, save checkpoints, show progress and guard against NaN. Events, in order::

    on_fit_start(trainer)
    on_epoch_start(trainer, epoch)             # epochs count from 1
    on_batch_end(trainer, step_record)         # after every optimiser step
    on_epoch_end(trainer, epoch_record)        # callbacks may add figures to epoch_record
    on_fit_end(trainer)
"""

from __future__ import annotations

import contextlib
import math
import time
from typing import Any, Iterable, Protocol, Sequence

import torch
import torch.distributed as dist
from torch import nn

from data_gen.malloc import keep_freed_memory

from .competition import competition_loss, image_scores, mask_loss
from .config import TrainConfig
from .distributed import agree, cuda_device, current, global_counts, loss_scale
from .history import History


class EpochSource(Protocol):
    """Training data: ``loader(epoch)`` yields batches (dicts with ``image`` (B, 1, H, W) float in [0, 1]
    and ``label`` (B,) int64); ``steps_per_epoch`` is the number of batches of one epoch. A source whose
    epochs differ in length (progressive resizing) also has ``steps_in(epoch)``; see :func:`epoch_steps`."""

    steps_per_epoch: int

    def loader(self, epoch: int) -> Iterable[dict[str, torch.Tensor]]: ...


def epoch_steps(data: EpochSource, epoch: int) -> int:
    """Batches in epoch ``epoch`` (from 1) of ``data``: its ``steps_in(epoch)`` where it has one, else its
    ``steps_per_epoch``."""
    steps_in = getattr(data, "steps_in", None)
    return int(steps_in(epoch)) if steps_in is not None else int(data.steps_per_epoch)


@contextlib.contextmanager
def cudnn_determinism(on: bool = True):
    """While inside (when ``on``): cuDNN's deterministic algorithms only, and no benchmarking of
    algorithms; the previous flags are restored on the way out."""
    if not on:
        yield
        return
    cudnn = torch.backends.cudnn
    before = cudnn.deterministic, cudnn.benchmark
    cudnn.deterministic, cudnn.benchmark = True, False
    try:
        yield
    finally:
        cudnn.deterministic, cudnn.benchmark = before


def resolve_device(name: str = "auto") -> torch.device:
    """``"auto"``: CUDA if available, then Apple MPS, then CPU; otherwise the named device.

    Raises:
        RuntimeError: a device was named that this machine does not have.
    """
    if name == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        if getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    dev = torch.device(name)
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise RuntimeError(f"device {name!r} was asked for, but CUDA is not available on this machine")
    if dev.type == "mps" and not (getattr(torch.backends, "mps", None) and torch.backends.mps.is_available()):
        raise RuntimeError(f"device {name!r} was asked for, but Apple MPS is not available on this machine")
    return dev


class Callback:
    """Base class: override the events you need. ``state_dict``/``load_state_dict`` make it resumable."""

    def on_fit_start(self, trainer: "Trainer") -> None: ...
    def on_epoch_start(self, trainer: "Trainer", epoch: int) -> None: ...
    def on_batch_end(self, trainer: "Trainer", record: dict[str, Any]) -> None: ...
    def on_epoch_end(self, trainer: "Trainer", record: dict[str, Any]) -> None: ...
    def on_fit_end(self, trainer: "Trainer") -> None: ...


def model_image_scores(model: nn.Module, logits: torch.Tensor) -> torch.Tensor:
    """``(B,)`` defective probability of each image from a model's logits: the model's own
    ``image_scores(logits)`` if it has one, else the competition's spatial maximum (Eq. 2); with several
    defect types, their maximum."""
    own = getattr(model, "image_scores", None)
    scores = own(logits) if callable(own) else image_scores(logits)
    return scores if scores.dim() == 1 else scores.max(1).values


def build_optimizer(model: nn.Module, cfg: TrainConfig) -> torch.optim.Optimizer:
    """The optimiser named by ``cfg.optimizer``."""
    params = [p for p in model.parameters() if p.requires_grad]
    if cfg.optimizer == "sgd":
        return torch.optim.SGD(params, lr=cfg.lr, momentum=cfg.momentum, weight_decay=cfg.weight_decay)
    # Adam's step count on the device, where a captured step (cfg.cuda_graph) can move it on
    capturable = bool(cfg.cuda_graph and params and params[0].is_cuda)
    if cfg.optimizer == "adam":
        return torch.optim.Adam(params, lr=cfg.lr, weight_decay=cfg.weight_decay, capturable=capturable)
    return torch.optim.AdamW(params, lr=cfg.lr, weight_decay=cfg.weight_decay, capturable=capturable)


def build_scheduler(opt: torch.optim.Optimizer, cfg: TrainConfig, total_steps: int):
    """The learning-rate schedule over ``total_steps`` optimiser steps (``None`` for a constant rate)."""
    if cfg.schedule == "onecycle":
        return torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=cfg.lr, total_steps=max(2, total_steps),
                                                   pct_start=cfg.warmup)
    if cfg.schedule == "cosine":  # closed form in the step, so that a time budget may move it on
        t_max = max(1, total_steps)
        return torch.optim.lr_scheduler.LambdaLR(
            opt, lambda step: 0.5 * (1 + math.cos(math.pi * min(step, t_max) / t_max)))
    return None


class CapturedStep:
    """A trainer's whole training step (forward, loss, backward, clipping, optimiser step and the step's figures)
    captured once as a CUDA graph, then replayed for every batch of the captured shape.

    The first ``warmup`` batches of that shape train eagerly on a side stream (the optimiser's state and cuDNN's
    choices are made there, as capture requires); the next one is copied into static input tensors, the step
    is captured, and from then on each step is: copy the batch in, replay, read the figures. A batch of
    another shape (an epoch's shorter last batch) trains eagerly with the same parameters. The parameters, the
    optimiser's state and the gradients keep their memory, so checkpoints, evaluation and resuming see one
    model either way.
    """

    def __init__(self, trainer: "Trainer", warmup: int = 3):
        self.trainer, self.warmup = trainer, int(warmup)
        self.shape: tuple[int, ...] | None = None
        self.done = 0
        self.graph: torch.cuda.CUDAGraph | None = None

    def fits(self, x: torch.Tensor) -> bool:
        """Whether ``x`` has the shape this step is (or will be) captured for: the first batch's."""
        if self.shape is None:
            self.shape = tuple(x.shape)
        return tuple(x.shape) == self.shape

    def step(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """One optimiser step on ``x`` (B, C, H, W) and ``y`` (B,); returns the figures (see ``Trainer._step``)."""
        t = self.trainer
        if self.graph is None and self.done < self.warmup:
            self.done += 1
            side = torch.cuda.Stream(t.device)
            side.wait_stream(torch.cuda.current_stream(t.device))
            with torch.cuda.stream(side):
                out = t._step(x, y, None, 1.0, cache=False)
            torch.cuda.current_stream(t.device).wait_stream(side)
            return out
        if self.graph is None:
            self.x, self.y = x.clone(), y.clone()  # the static inputs, in x's memory format
            torch.cuda.synchronize(t.device)
            t.optimizer.zero_grad(set_to_none=True)  # the gradients are allocated by the captured backward
            graph = torch.cuda.CUDAGraph()
            # thread_local: a DataLoader's pin-memory thread may go on allocating while this thread captures
            with torch.cuda.graph(graph, capture_error_mode="thread_local"):
                self.stats = t._step(self.x, self.y, None, 1.0, cache=False)
            self.graph = graph  # capture records the step without running it: it runs below
        self.x.copy_(x, non_blocking=True)
        self.y.copy_(y, non_blocking=True)
        self.graph.replay()
        return self.stats


class Trainer:
    """Trains a SACNN-style model (logits ``(B, 1+K, s, t)``) with the competition loss, or any other
    classifier that brings its own loss; with ``config.supervision == "mask"``, SACNN's network against
    the batches' true masks as well (:func:`~sacnn_lab.competition.mask_loss` plus the competition loss:
    the supervised reference).

    A model may define ``loss(logits, labels, class_weights, reduction) -> Tensor`` and
    ``image_scores(logits) -> (B,) or (B, K)`` (the defective probability); the trainer then uses them
    instead of :func:`~sacnn_lab.competition.competition_loss` and
    :func:`~sacnn_lab.competition.image_scores` (e.g. :class:`~sacnn_lab.baseline.VGGBaseline`).

    On the CPU the process is told to keep freed memory for reuse (:func:`data_gen.malloc.keep_freed_memory`,
    glibc only): it then holds up to 512 MB of freed heap instead of returning it to the system.

    Args:
        model: the network.
        config: training settings.
        data: the training batches per epoch (:class:`EpochSource`).
        callbacks: event handlers, called in order.
        history: a history to continue (e.g. loaded with a checkpoint); default: a new one.

    Attributes:
        epoch: epochs finished so far.
        step: optimiser steps so far.
        train_time: seconds spent in training steps (evaluation and checkpoints excluded).
        should_stop: set by a callback to end the run after the current step.
    """

    def __init__(self, model: nn.Module, config: TrainConfig, data: EpochSource,
                 callbacks: Sequence[Callback] = (), history: History | None = None):
        self.config = config
        self.ranks = current()  # several processes when torchrun's process group is joined (experiment.train)
        self.device = resolve_device(config.device)
        if self.ranks.distributed and self.device.type == "cuda":
            self.device = cuda_device(self.ranks)
            torch.cuda.set_device(self.device)
        if config.threads:
            torch.set_num_threads(config.threads)
        if self.device.type == "cpu":
            keep_freed_memory()  # fewer page faults per step: 7–25 % faster CPU training (data_gen.malloc)
        if self.ranks.distributed and self.device.type == "cuda" and dist.get_backend() == "nccl":
            model = nn.SyncBatchNorm.convert_sync_batchnorm(model)  # the global batch's statistics (NCCL only)
        self.model = model.to(self.device)
        if config.channels_last:
            self.model = self.model.to(memory_format=torch.channels_last)
        # the forward pass of training: through DDP on several ranks (it averages the gradients)
        self.forward_model: nn.Module = self.model
        if self.ranks.distributed:
            from torch.nn.parallel import DistributedDataParallel

            self.forward_model = DistributedDataParallel(
                self.model, device_ids=[self.device.index] if self.device.type == "cuda" else None)
        self.data = data
        self.callbacks = list(callbacks)
        self.history = history or History()
        self.optimizer = build_optimizer(self.model, config)
        self.total_steps = sum(epoch_steps(data, e) for e in range(1, config.epochs + 1))
        self.scheduler = build_scheduler(self.optimizer, config, self.total_steps)
        self.amp = bool(config.amp and self.device.type == "cuda")
        self.amp_dtype = torch.bfloat16 if (self.amp and torch.cuda.is_bf16_supported()) else torch.float16
        self.scaler = torch.amp.GradScaler("cuda", enabled=self.amp and self.amp_dtype == torch.float16)
        self.epoch = 0
        self.step = 0
        self.train_time = 0.0
        self._agreed_time = 0.0
        self.should_stop = False
        if config.compile != "off":  # the model's own module stays self.model: checkpoints keep their keys
            self.forward_model = torch.compile(self.forward_model, mode=config.compile)
        self._graph: CapturedStep | None = None
        if config.cuda_graph and self.device.type == "cuda":
            if self.ranks.distributed:
                raise ValueError("cuda_graph=True is for one process: under torchrun, leave it off (DDP's "
                                 "gradient averaging is not captured)")
            if self.scaler.is_enabled():
                raise ValueError("cuda_graph=True cannot capture float16 loss scaling (this GPU has no bfloat16): "
                                 "set amp=False or leave cuda_graph off")
            self._graph = CapturedStep(self)

    # ---- events --------------------------------------------------------------------------------------
    def add_callback(self, callback: Callback) -> None:
        self.callbacks.append(callback)

    def _emit(self, event: str, *args: Any) -> None:
        for cb in self.callbacks:
            getattr(cb, event)(self, *args)

    # ---- the loop ------------------------------------------------------------------------------------
    def autocast(self):
        """The mixed-precision context of this trainer (a no-op off CUDA or with ``amp=False``)."""
        if self.amp:
            return torch.autocast("cuda", dtype=self.amp_dtype)
        return contextlib.nullcontext()

    def prepare(self, images: torch.Tensor) -> torch.Tensor:
        """Move a ``(B, C, H, W)`` batch to the device, in the trainer's memory format."""
        x = images.to(self.device, non_blocking=True)
        return x.contiguous(memory_format=torch.channels_last) if self.config.channels_last else x

    def loss(self, logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        """The training loss of a batch: the model's own ``loss`` if it has one, else the competition
        loss (Eqs. 3–4), with the config's class weights and reduction."""
        own = getattr(self.model, "loss", None)
        fn = own if callable(own) else competition_loss
        return fn(logits, labels, class_weights=self.config.class_weights, reduction=self.config.reduction)

    def image_scores(self, logits: torch.Tensor) -> torch.Tensor:
        """``(B,)`` defective probability of each image (see :func:`model_image_scores`)."""
        return model_image_scores(self.model, logits)

    def train_step(self, batch: dict[str, torch.Tensor]) -> dict[str, Any]:
        """One optimiser step on one batch; returns the step's record (loss and confusion counts).

        The step's figures stay on the device until one transfer at its end (one synchronisation per step).
        """
        self.model.train()
        x = self.prepare(batch["image"])
        y = batch["label"].to(self.device, non_blocking=True)
        n_local = int(y.shape[0])
        n_global = int(batch.get("global_batch", n_local))
        scale = loss_scale(n_local, n_global, self.ranks.world, self.config.reduction)
        if self._graph is not None and self._graph.fits(x):
            stats = self._graph.step(x, y)
        else:
            mask = batch.get("mask")
            stats = self._step(x, y, None if mask is None else mask.to(self.device, non_blocking=True), scale)
        self._advance_schedule()
        self.step += 1
        if self.ranks.distributed:  # the global batch's loss and counts, as one process would record them
            stats = global_counts(stats)
        loss, n, tp, fp, tn, fn = stats.tolist()
        return {"epoch": self.epoch + 1, "step": self.step, "loss": float(loss), "batch_size": int(n),
                "tp": int(tp), "fp": int(fp), "tn": int(tn), "fn": int(fn)}

    def _step(self, x: torch.Tensor, y: torch.Tensor, mask: torch.Tensor | None, scale: float,
              cache: bool = True) -> torch.Tensor:
        """The optimiser step on a batch on the device; returns its figures as one float64 tensor on the device:
        ``[loss (this rank's part of the global batch's), samples, tp, fp, tn, fn]``. No synchronisation (a CUDA
        graph may capture it: ``cache=False`` turns autocast's cache off, as capture needs)."""
        ctx = torch.autocast("cuda", dtype=self.amp_dtype, cache_enabled=cache) if self.amp \
            else contextlib.nullcontext()
        with ctx:
            logits = self.forward_model(x)
        if self.config.supervision == "mask":
            if mask is None:
                raise ValueError("supervision='mask' needs training batches with true masks ('mask'); this "
                                 "source gives none")
            # every cell against the mask, and the image's winner against its label: the supervised
            # reference is given everything SACNN is given, and the masks besides
            loss = mask_loss(logits.float(), mask, y, class_weights=self.config.class_weights,
                             reduction=self.config.reduction) + self.loss(logits.float(), y)
        else:
            loss = self.loss(logits.float(), y)
        self.optimizer.zero_grad(set_to_none=True)
        self.scaler.scale(loss * scale if scale != 1.0 else loss).backward()
        if self.config.grad_clip is not None:
            self.scaler.unscale_(self.optimizer)
            nn.utils.clip_grad_norm_(self.model.parameters(), self.config.grad_clip)
        self.scaler.step(self.optimizer)
        self.scaler.update()
        with torch.no_grad():  # defective when any defect type's score (SACNN: winning pixel) passes 0.5
            pred = self.image_scores(logits.detach().float()) >= 0.5
            pos = y > 0
            n = y.shape[0]
            # an empty share (a last global batch of fewer samples than ranks): its loss counts for nothing
            part = (loss.detach().double() * (scale / self.ranks.world) if n
                    else torch.zeros((), dtype=torch.float64, device=y.device))
            return torch.stack([part, torch.full((), float(n), dtype=torch.float64, device=y.device),
                                (pred & pos).sum().double(),
                                (pred & ~pos).sum().double(), (~pred & ~pos).sum().double(),
                                (~pred & pos).sum().double()])

    def schedule_position(self) -> int:
        """Where the learning-rate schedule stands after the current step, in steps.

        The step count, or — with a time budget (``config.max_time``) — the share of the budget spent, if that
        is further along: a run cut by its budget has still warmed up and annealed, instead of stopping at a
        high learning rate.
        """
        pos = self.step + 1
        if self.config.max_time:
            # on several ranks, rank 0's clock as of the last step (the same on every rank): the others' own
            # clocks include their waits while rank 0 evaluates, and a different learning rate would part them
            clock = self._agreed_time if self.ranks.distributed else self.train_time
            pos = max(pos, math.ceil(self.total_steps * clock / self.config.max_time))
        return min(pos, self.total_steps - 1)

    def _advance_schedule(self) -> None:
        if self.scheduler is None or self.step >= self.total_steps - 1:
            return
        self.scheduler.last_epoch = self.schedule_position() - 1  # step() moves it on by one
        self.scheduler.step()

    def fit(self) -> History:
        """Train until ``config.epochs`` are done (or a callback stops the run); returns the history."""
        with cudnn_determinism(self.config.deterministic and self.device.type == "cuda"):
            return self._fit()

    def _fit(self) -> History:
        self._emit("on_fit_start")
        while self.epoch < self.config.epochs and not self.should_stop:
            epoch = self.epoch + 1
            self._emit("on_epoch_start", epoch)
            losses: list[float] = []
            counts = {"tp": 0, "fp": 0, "tn": 0, "fn": 0}
            seen = 0
            t_epoch = time.perf_counter()
            t0 = time.perf_counter()
            for batch in self.data.loader(epoch):
                rec = self.train_step(batch)
                self.train_time += time.perf_counter() - t0
                losses.append(rec["loss"])
                seen += rec["batch_size"]
                for k in counts:
                    counts[k] += rec[k]
                for k in self.history.steps:
                    self.history.steps[k].append(rec[k])
                self._emit("on_batch_end", rec)
                if self.ranks.distributed:  # one clock (rank 0's) for the schedule and budget; one stop for all
                    self.train_time, self.should_stop = agree(self.train_time, self.should_stop, self.device)
                    self._agreed_time = self.train_time
                if self.should_stop:
                    break
                t0 = time.perf_counter()
            n = sum(counts.values())
            pp = counts["tp"] + counts["fp"]
            self.epoch = epoch
            record = {"epoch": epoch, "train_loss": float(sum(losses) / max(1, len(losses))),
                      "train_accuracy": (counts["tp"] + counts["tn"]) / n if n else math.nan,
                      "train_precision": counts["tp"] / pp if pp else math.nan,
                      "samples": seen, "steps": self.step, "train_time": self.train_time,
                      "epoch_seconds": time.perf_counter() - t_epoch, "lr": self.optimizer.param_groups[0]["lr"],
                      "partial": bool(self.should_stop and epoch_steps(self.data, epoch) > len(losses))}
            self.history.epochs.append(record)
            self._emit("on_epoch_end", record)
        self._emit("on_fit_end")
        return self.history

    # ---- state ---------------------------------------------------------------------------------------
    def state_dict(self) -> dict[str, Any]:
        """Everything needed to resume: model, optimiser, schedule, scaler, counters, and torch's random
        state (dropout draws from it, so a resumed run equals an uninterrupted one)."""
        rng = {"cpu": torch.get_rng_state()}
        if self.device.type == "cuda":
            rng["cuda"] = torch.cuda.get_rng_state(self.device)
        return {"model": self.model.state_dict(), "optimizer": self.optimizer.state_dict(),
                "scheduler": self.scheduler.state_dict() if self.scheduler is not None else None,
                "scaler": self.scaler.state_dict(), "epoch": self.epoch, "step": self.step,
                "train_time": self.train_time, "rng": rng, "world": self.ranks.world}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.model.load_state_dict(state["model"])
        self.optimizer.load_state_dict(state["optimizer"])
        if self.scheduler is not None and state.get("scheduler") is not None:
            self.scheduler.load_state_dict(state["scheduler"])
        if state.get("scaler"):
            self.scaler.load_state_dict(state["scaler"])
        self.epoch, self.step = int(state["epoch"]), int(state["step"])
        self.history.truncate(self.epoch, self.step)  # a history saved after this checkpoint
        self.train_time = self._agreed_time = float(state.get("train_time", 0.0))
        rng = state.get("rng") or {}  # absent from older checkpoints
        if "cpu" in rng:
            torch.set_rng_state(rng["cpu"])
        if "cuda" in rng and self.device.type == "cuda":
            torch.cuda.set_rng_state(rng["cuda"], self.device)
