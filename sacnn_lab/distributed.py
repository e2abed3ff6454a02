"""Training on several processes: ``torchrun --nproc_per_node N -m sacnn_lab train ...`` (or the Python ``train``
under torchrun), with PyTorch's DistributedDataParallel.

What a run of N processes (ranks) does:

- **the samples**: each optimiser step takes one *global* batch of ``N · b`` samples (``b`` the config's
  ``batch_size``, per rank), exactly the batch one process with ``batch_size = N · b`` would take, and rank
  ``r`` computes its ``r``-th share of it (:func:`share`): generated sets draw their samples from the same
  ``(seed, index)`` streams, folders from the same seeded order and augmentation draws;
- **the loss**: each rank's loss is scaled (:func:`loss_scale`) so that DDP's average of the gradients is the
  gradient of the global batch's loss: ``N`` ranks with batch ``b`` train the same weights as one process with
  batch ``N · b`` (to float rounding; exactly so without batch normalisation, e.g. the ``paper`` preset);
- **batch normalisation**: on CUDA with NCCL the layers become :class:`torch.nn.SyncBatchNorm`, whose
  statistics are the global batch's; with gloo (the CPU, ranks sharing a GPU) each rank normalises with its own
  share's statistics;
- **writing**: only rank 0 writes the run folder, the history and the progress; the others train silently.

Backends: NCCL on CUDA, gloo on the CPU and where ranks share a GPU (NCCL refuses that). The process group is
made from torchrun's environment
(``RANK``, ``WORLD_SIZE``, ``LOCAL_RANK``, ``MASTER_ADDR``, ``MASTER_PORT``).
"""

from __future__ import annotations

import os
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, Callable, Hashable, Sequence

import numpy as np
import torch
import torch.distributed as dist

__all__ = ["Ranks", "ranks_from_env", "init_process_group", "share", "loss_scale", "current", "spread", "alone"]


@dataclass(frozen=True)
class Ranks:
    """Where this process stands: its ``rank`` of ``world`` processes, ``local_rank`` on its machine."""

    rank: int = 0
    world: int = 1
    local_rank: int = 0

    @property
    def main(self) -> bool:
        """Whether this is rank 0, the one that writes."""
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        return self.world > 1


def ranks_from_env() -> Ranks:
    """The ranks torchrun gives this process (``RANK``, ``WORLD_SIZE``, ``LOCAL_RANK``); one process without them.

    Raises:
        ValueError: values that do not fit together.
    """
    world = int(os.environ.get("WORLD_SIZE", "1"))
    rank = int(os.environ.get("RANK", "0"))
    local = int(os.environ.get("LOCAL_RANK", str(rank)))
    if world < 1 or not 0 <= rank < world:
        raise ValueError(f"RANK={rank} and WORLD_SIZE={world} do not fit together")
    return Ranks(rank, world, local)


_ALONE = [False]  # inside alone(): this process trains as if it were the only one


@contextmanager
def alone():
    """While inside, :func:`current` and :func:`init_process_group` answer "one process": a study's rank trains
    its own runs by itself (:func:`spread`), with no gradients shared with the other ranks."""
    before, _ALONE[0] = _ALONE[0], True
    try:
        yield
    finally:
        _ALONE[0] = before


def current() -> Ranks:
    """The ranks of the process group in use, or one process when there is none (or inside :func:`alone`)."""
    if _ALONE[0]:
        return Ranks()
    if dist.is_available() and dist.is_initialized():
        return Ranks(dist.get_rank(), dist.get_world_size(), int(os.environ.get("LOCAL_RANK", dist.get_rank())))
    return Ranks()


def cuda_device(ranks: Ranks) -> torch.device:
    """This rank's GPU: its local rank's, taken round the machine's GPUs when there are more ranks than GPUs
    (e.g. 2 processes sharing one GPU)."""
    return torch.device("cuda", ranks.local_rank % max(1, torch.cuda.device_count()))


def shares_gpus() -> bool:
    """Whether this machine runs more ranks than it has GPUs (torchrun's ``LOCAL_WORLD_SIZE``): NCCL refuses two
    ranks on one GPU, so such a group communicates through gloo."""
    local_world = int(os.environ.get("LOCAL_WORLD_SIZE", os.environ.get("WORLD_SIZE", "1")))
    return local_world > torch.cuda.device_count()


def init_process_group(device: torch.device) -> Ranks:
    """Join torchrun's process group when there are several ranks and it is not joined yet: NCCL on CUDA (gloo
    where ranks share a GPU, :func:`shares_gpus`), gloo on the CPU; returns the ranks (one process: nothing is
    initialised)."""
    if _ALONE[0]:
        return Ranks()
    ranks = ranks_from_env()
    if ranks.distributed and not dist.is_initialized():
        backend = "nccl" if device.type == "cuda" and not shares_gpus() else "gloo"
        if device.type == "cuda":  # this rank's GPU before any collective (NCCL uses the current device)
            torch.cuda.set_device(cuda_device(ranks))
        dist.init_process_group(backend=backend)
    return current() if ranks.distributed else ranks


def share(n: int, ranks: Ranks) -> slice:
    """Rank ``ranks.rank``'s positions in a global batch of ``n`` samples: the ``rank``-th of ``world`` nearly equal
    consecutive parts (the first ``n % world`` one larger). Every rank takes part in every step; in a last global
    batch of fewer samples than ranks, some ranks' part is empty (their loss then counts for nothing)."""
    base, extra = divmod(int(n), ranks.world)
    lo = ranks.rank * base + min(ranks.rank, extra)
    return slice(lo, lo + base + (1 if ranks.rank < extra else 0))


def loss_scale(local: int, global_: int, world: int, reduction: str) -> float:
    """The factor on a rank's loss that makes DDP's mean of the ranks' gradients the global batch's gradient:
    ``world`` for a summed loss, ``world · local / global`` for a mean (each rank's mean weighs by its share)."""
    if world == 1:
        return 1.0
    return float(world) if reduction == "sum" else world * local / max(global_, 1)


def global_counts(values: torch.Tensor) -> torch.Tensor:
    """``values`` (a tensor on this rank's device) summed over the ranks, in place (each rank's own when there is
    one process)."""
    if dist.is_available() and dist.is_initialized():
        dist.all_reduce(values)
    return values


def agree(train_time: float, stop: bool, device: torch.device) -> tuple[float, bool]:
    """One collective per step: rank 0's training time (the clock the schedule and the time budget follow on
    every rank: the others' clocks include their waits while rank 0 evaluates) and whether any rank stops."""
    if not (dist.is_available() and dist.is_initialized()):
        return train_time, stop
    t = torch.tensor([train_time if dist.get_rank() == 0 else 0.0, 1.0 if stop else 0.0], dtype=torch.float64,
                     device=device)
    dist.all_reduce(t)
    return float(t[0]), bool(t[1] > 0)


def barrier(device: torch.device) -> None:
    """Wait for every rank (no-op with one process)."""
    if dist.is_available() and dist.is_initialized():
        nccl = dist.get_backend() == "nccl"
        dist.barrier(device_ids=[torch.cuda.current_device()] if device.type == "cuda" and nccl else None)


def positions(step_start: int, global_n: int, ranks: Ranks) -> np.ndarray:
    """The sample positions rank ``ranks`` takes from a global batch starting at ``step_start`` of ``global_n``."""
    sl = share(global_n, ranks)
    return np.arange(step_start + sl.start, step_start + sl.stop)


def spread(jobs: Sequence[tuple[Hashable, Callable[[], Any]]], device: torch.device) -> dict[Hashable, Any]:
    """Run independent jobs (e.g. a study's trainings) spread over the ranks: rank ``r`` runs jobs ``r, r + N, …``
    alone (:func:`alone`: one process each, on its own GPU where there are several), and every rank gets every
    job's result, keyed and ordered as ``jobs``. One process (no torchrun): all of them, in order.

    A job's result travels between ranks pickled (a :class:`~sacnn_lab.experiment.Run` does: CPU weights and a
    history). A job that fails fails its rank; torchrun then ends the others.
    """
    ranks = init_process_group(device)
    if not ranks.distributed:
        return {key: job() for key, job in jobs}
    if device.type == "cuda":  # "cuda" in the jobs' configs is this rank's GPU
        torch.cuda.set_device(cuda_device(ranks))
    with alone():
        mine = {i: job() for i, (_, job) in enumerate(jobs) if i % ranks.world == ranks.rank}
    gathered: list[Any] = [None] * ranks.world
    dist.all_gather_object(gathered, mine)
    done = {i: result for part in gathered for i, result in part.items()}
    return {key: done[i] for i, (key, _) in enumerate(jobs)}
