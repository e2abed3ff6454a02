"""The run folder: which files are a run's, the checkpoint's format (:func:`read_checkpoint`), the lock a
training holds on it, and the checks that keep a user's own files out of harm's way.

A run folder holds only what sacnn-lab writes (:data:`RUN_FILES`); a training refuses a folder holding
anything else (a thesis, a ``.git``), and holds ``run.lock`` (its process id, host and start time) while it
writes, so that a second training into the same folder is refused instead of silently mixing two runs. A
lock left by a process that no longer runs (a killed training) is recognised as stale, reported and
replaced.
"""

from __future__ import annotations

import contextlib
import errno
import json
import os
import socket
import time
import warnings
from pathlib import Path
from typing import Any, Iterator


def atomic_write_bytes(path: Path, data: bytes) -> None:
    """Write a file so that a reader sees the old or the new content, never half of it; a failed write
    (a full or read-only disk) leaves the old file and no temporary one."""
    tmp = path.with_name(path.name + f".{os.getpid()}.tmp")
    try:
        with open(tmp, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException as exc:  # a full or read-only disk, Ctrl-C: no stray temporary file
        try:
            os.unlink(tmp)
        except OSError:
            pass
        if isinstance(exc, OSError):
            raise OSError(exc.errno, f"cannot write {path}: {exc.strerror or exc}") from exc
        raise


try:
    import fcntl
except ImportError:  # Windows: exclusive creation and the owner's process id instead
    fcntl = None  # type: ignore[assignment]

LOCK = "run.lock"
RUN_FILES = frozenset({"config.json", "checkpoint.pt", "best.pt", "history.json", "history.npz", "faces.json",
                       "splits.json", LOCK, "defect_maps.png", "test_metrics.json"})
# what a file browser leaves in any folder it shows: never a reason to refuse one
BROWSER_LITTER = frozenset({".DS_Store", "Thumbs.db", "desktop.ini"})


class RunFolderBusy(FileExistsError):
    """Another training holds the run folder's lock."""


def _is_our_temporary(name: str) -> bool:
    # atomic writes leave NAME.PID.tmp behind only when the process is killed in the middle of one
    parts = name.split(".")
    return len(parts) >= 3 and parts[-1] == "tmp" and parts[-2].isdigit()


def _json_is(path: Path, check: Any) -> bool:
    try:
        return bool(check(json.loads(path.read_text(encoding="utf-8"))))
    except (OSError, ValueError, TypeError, AttributeError):
        return False


def _npz_is_history(path: Path) -> bool:
    import numpy as np

    try:
        with np.load(path) as data:
            return all(k.startswith(("probe_", "maps_", "scores_")) for k in data.files)
    except (OSError, ValueError, EOFError):
        return False


def _png(path: Path) -> bool:
    try:
        with open(path, "rb") as fh:
            return fh.read(8) == b"\x89PNG\r\n\x1a\n"
    except OSError:
        return False


def _is_dict_with(*keys: str) -> Any:
    return lambda d: isinstance(d, dict) and set(keys) <= set(d)


# how each file of a run is recognised by its content (a file of the same name that fails is the user's)
CONTENT = {
    "config.json": lambda p: _json_is(p, _is_dict_with("model", "data", "train")),
    "history.json": lambda p: _json_is(p, lambda d: isinstance(d, dict)
                                       and str(d.get("format", "")).startswith("sacnn-lab-history")),
    "history.npz": _npz_is_history,
    "faces.json": lambda p: _json_is(p, _is_dict_with("train", "eval")),
    "splits.json": lambda p: _json_is(p, _is_dict_with("size", "train", "val", "test")),
    "test_metrics.json": lambda p: _json_is(p, _is_dict_with("accuracy")),
    "defect_maps.png": _png,
    "checkpoint.pt": lambda p: _is_checkpoint(p),
    "best.pt": lambda p: _is_checkpoint(p),
}


def foreign_entries(run_dir: str | os.PathLike, deep: bool = False) -> list[str]:
    """Names in ``run_dir`` that no sacnn-lab run writes (sorted); ``[]`` for an absent or empty folder.

    A file counts as a run's by its name and its content (:data:`CONTENT`). Beside a ``checkpoint.pt`` (a
    run, which a training refuses without ``resume``) names are enough; without one, and with ``deep``
    (before a folder is replaced as a whole), every file's content is checked, since a training would
    write over it.
    """
    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        return []
    check = deep or not (run_dir / "checkpoint.pt").is_file()
    out = []
    for p in run_dir.iterdir():
        ours = p.name in RUN_FILES and p.is_file() or _is_our_temporary(p.name) or p.name in BROWSER_LITTER
        if ours and check and p.name in CONTENT:
            ours = CONTENT[p.name](p)
        if not ours:
            out.append(p.name)
    return sorted(out)


CHECKPOINT_FORMAT = "sacnn-lab-checkpoint/1"
# what every checkpoint holds besides its format (the optimiser's state and counters: trainer.state_dict())
CHECKPOINT_KEYS = ("config", "model", "optimizer", "epoch", "step")


def read_checkpoint(path: str | os.PathLike) -> dict[str, Any]:
    """Load a checkpoint written by :func:`sacnn_lab.callbacks.save_checkpoint` (``weights_only=True``: no code is run).

    Raises:
        FileNotFoundError: no such file.
        ValueError: the file is not a readable sacnn-lab checkpoint (corrupt, truncated, other format).
    """
    import torch

    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"checkpoint {path} does not exist")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # noqa: BLE001 - any unpickling error means the same thing to the user
        # torch's own message advises weights_only=False, i.e. running the file's code: not for a file we
        # did not write
        raise ValueError(f"{path} is not a readable sacnn-lab checkpoint: not a file this toolkit wrote, or a "
                         f"damaged one ({type(exc).__name__})") from None
    if not isinstance(state, dict) or state.get("format") != CHECKPOINT_FORMAT:
        what = state.get("format") if isinstance(state, dict) else type(state).__name__
        raise ValueError(f"{path} is not a sacnn-lab checkpoint (format {what!r})")
    missing = [k for k in CHECKPOINT_KEYS if k not in state]
    if missing:
        raise ValueError(f"{path} is a damaged sacnn-lab checkpoint: it has no {', '.join(missing)} entry")
    if not isinstance(state["model"], dict) or not all(isinstance(v, torch.Tensor) for v in state["model"].values()):
        raise ValueError(f"{path} is a damaged sacnn-lab checkpoint: its model entry holds no weights")
    if not isinstance(state["config"], dict):
        raise ValueError(f"{path} is a damaged sacnn-lab checkpoint: its config entry is no configuration")
    return state


def _is_checkpoint(path: Path) -> bool:
    try:
        read_checkpoint(path)
    except (OSError, ValueError):
        return False
    return True


def check_run_folder(run_dir: str | os.PathLike, deep: bool = False) -> Path:
    """Refuse a ``run_dir`` that is a file or holds files that are not a run's (see :func:`foreign_entries`).

    Raises:
        FileExistsError: ``run_dir`` is a file, or names what it holds that is not a run's.
    """
    run_dir = Path(run_dir)
    if run_dir.exists() and not run_dir.is_dir():
        raise FileExistsError(f"run folder {run_dir} is a file")
    foreign = foreign_entries(run_dir, deep)
    if foreign:
        shown = ", ".join(foreign[:5]) + (f" and {len(foreign) - 5} more" if len(foreign) > 5 else "")
        raise FileExistsError(f"{run_dir} holds files that are not part of a sacnn-lab run ({shown}); a run "
                              f"writes only into an empty or new folder, or one of its own runs: choose another")
    return run_dir


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # someone else's process
        return True
    return True


def read_lock(run_dir: str | os.PathLike) -> dict[str, Any] | None:
    """The lock's record (``pid``, ``host``, ``started``), ``{}`` for an unreadable lock, ``None`` without one."""
    path = Path(run_dir) / LOCK
    if not path.is_file():
        return None
    try:
        rec = json.loads(path.read_text(encoding="utf-8"))
        return rec if isinstance(rec, dict) and isinstance(rec.get("pid"), int) else {}
    except (OSError, ValueError):
        return {}


def _holder(rec: dict[str, Any]) -> str:
    started = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(rec.get("started", 0)))
    return f"process {rec.get('pid')} on {rec.get('host')}, started {started}"


@contextlib.contextmanager
def run_lock(run_dir: str | os.PathLike) -> Iterator[Path]:
    """Hold ``run_dir/run.lock`` while inside (the folder is made if needed); released on the way out,
    also on an error or Ctrl-C.

    The file holds the owner's process id, host and start time. Where the operating system has advisory
    file locks (``fcntl``: Linux, macOS) the file is also locked with one, which the system releases when
    its process dies, so that two trainings starting at the same moment cannot both take it; a lock file
    that nobody holds is a stale one (its training was killed), reported with a warning and replaced.

    Raises:
        RunFolderBusy: a living process holds the lock.
    """
    run_dir = Path(run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    path = run_dir / LOCK
    me = {"pid": os.getpid(), "host": socket.gethostname(), "started": time.time()}
    fd = _take_flock(path, run_dir) if fcntl is not None else _take_exclusive(path, run_dir, me)
    try:
        os.ftruncate(fd, 0)
        os.write(fd, json.dumps(me).encode())
        yield path
    finally:
        if (read_lock(run_dir) or {}).get("pid") == me["pid"]:
            with contextlib.suppress(FileNotFoundError):
                path.unlink()
        os.close(fd)  # releases the advisory lock


def _busy(run_dir: Path, rec: dict[str, Any] | None) -> RunFolderBusy:
    who = _holder(rec) if rec else "a process that has not yet said which"
    return RunFolderBusy(f"{run_dir} is in use by another training ({who}): wait for it to end, or choose "
                         f"another folder")


def _warn_stale(path: Path, rec: dict[str, Any]) -> None:
    what = f"of {_holder(rec)}, which no longer runs" if rec else "that cannot be read"
    warnings.warn(f"{path}: a stale lock {what} (a training that was killed) was found and replaced",
                  stacklevel=4)


def _take_flock(path: Path, run_dir: Path) -> int:
    """Open and lock ``path`` with ``fcntl.flock``; the file must still be the one at ``path`` once
    locked (a releasing owner removes it)."""
    while True:
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as exc:
            os.close(fd)
            if exc.errno in (errno.EWOULDBLOCK, errno.EAGAIN, errno.EACCES):
                raise _busy(run_dir, read_lock(run_dir)) from None
            raise OSError(exc.errno, f"cannot lock {path} ({exc.strerror}): this file system may not support "
                                     f"file locks; train into a folder on a local disk") from None
        try:
            same = os.fstat(fd).st_ino == os.stat(path).st_ino
        except FileNotFoundError:
            same = False
        if not same:  # removed by its owner between our open and our lock: take the new one
            os.close(fd)
            continue
        old = os.read(fd, 4096)
        if old.strip():
            rec = read_lock(run_dir)
            _warn_stale(path, rec or {})
        os.lseek(fd, 0, os.SEEK_SET)
        return fd


def _take_exclusive(path: Path, run_dir: Path, me: dict[str, Any]) -> int:
    """Without ``fcntl``: create ``path`` exclusively; a lock whose process is gone is stale."""
    for _ in range(2):
        try:
            return os.open(path, os.O_CREAT | os.O_EXCL | os.O_RDWR, 0o644)
        except FileExistsError:
            rec = read_lock(run_dir)
            if rec is None:
                continue
            if not rec or (rec.get("host") == me["host"] and _alive(rec["pid"])):
                raise _busy(run_dir, rec) from None  # an empty lock may be one being written
            if rec.get("host") != me["host"]:
                raise RunFolderBusy(f"{run_dir} is in use by a training of {_holder(rec)} (another machine: it "
                                    f"cannot be checked from here); if none runs there, remove {path}") from None
            _warn_stale(path, rec)
            with contextlib.suppress(FileNotFoundError):
                path.unlink()
    raise _busy(run_dir, read_lock(run_dir))
