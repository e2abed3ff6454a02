"""Make the reference runs the notebooks read (``sacnn_lab/reference_runs/``), and record how each was made.

    python benchmarks/reference_runs.py                            # the CPU setting's runs: ~25 min on 2 cores
    python benchmarks/reference_runs.py --names characters --setting gpu     # on a GPU
    python benchmarks/reference_runs.py --names characters --out /tmp/ref    # elsewhere (e.g. to compare)

Each run is trained with :func:`sacnn_lab.course.config` into ``<out>/<setting>/<name>`` (the imbalance study: one
folder per ratio and seed), then made smaller for shipping: the optimiser's state is dropped from its checkpoint
(a reference run is finished: it is loaded, never resumed) and ``best.pt`` is removed. ``made.json`` beside the
runs records the command, the machine, the date and each run's training time.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import shutil
import sys
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from sacnn_lab import course  # noqa: E402
from sacnn_lab.callbacks import read_checkpoint  # noqa: E402
from sacnn_lab.runfolder import atomic_write_bytes  # noqa: E402


def machine() -> str:
    """The machine in a line: the processor (or GPU), cores, torch."""
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    gpu = f"{torch.cuda.get_device_name()}, " if torch.cuda.is_available() else ""
    return f"{gpu}{cpu}, {os.cpu_count()} cores, torch {torch.__version__}, Python {platform.python_version()}"


def thinned(epochs: list[int]) -> set[int]:
    """The epochs whose probe maps a long run ships: the first seven (where the competition settles), every third
    after them, and the last."""
    return {e for e in epochs if e <= epochs[0] + 6 or (e - epochs[0]) % 3 == 0 or e == epochs[-1]}


def slim(folder: Path, half: bool = False, ends_only: bool = False, thin: bool = False) -> None:
    """A finished run made smaller for shipping: no optimiser state in its checkpoint, no best.pt, no lock; with
    ``half``, its weights stored in float16 (loading casts them back to float32); with ``ends_only``, the probe
    maps of the first and the last epoch only (a run whose notebook draws no convergence); with ``thin``, those of
    :func:`thinned` epochs (a run of many epochs)."""
    if ends_only or thin:
        from sacnn_lab.history import History

        h = History.load(folder)
        epochs = list(h.recorded_epochs)
        keep = ({epochs[0], epochs[-1]} if ends_only else thinned(epochs)) if epochs else set()
        for e in [e for e in epochs if e not in keep]:
            del h.probe_maps[e], h.probe_scores[e]
        h.save(folder)
    ckpt = folder / "checkpoint.pt"
    state = read_checkpoint(ckpt)
    state["optimizer"], state["scaler"] = {}, {}
    if half:
        state["model"] = {k: v.half() if v.is_floating_point() else v for k, v in state["model"].items()}
    state.pop("scheduler", None)
    import io

    buf = io.BytesIO()
    torch.save(state, buf)
    atomic_write_bytes(ckpt, buf.getvalue())
    for extra in ("best.pt", "run.lock"):
        (folder / extra).unlink(missing_ok=True)
    compact_history(folder)


def compact_history(folder: Path) -> None:
    """``history.json`` without the indentation a run folder writes it with (a long run's per-step records: 40 %
    smaller); it loads the same."""
    path = folder / "history.json"
    atomic_write_bytes(path, json.dumps(json.loads(path.read_text()), separators=(",", ":")).encode())


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--names", nargs="+", default=list(course.REFERENCE_NAMES), choices=list(course.REFERENCE_NAMES))
    p.add_argument("--setting", default="cpu", choices=course.SETTINGS)
    p.add_argument("--out", default=str(course.REFERENCE_DIR), help="where the runs go (default: the package's)")
    p.add_argument("--quiet", action="store_true")
    p.add_argument("--compact", action="store_true", help="only rewrite the shipped runs' history.json compactly")
    args = p.parse_args()
    out = Path(args.out)
    if args.compact:
        for path in sorted(out.rglob("history.json")):
            compact_history(path.parent)
        return
    record_path = out / "made.json"
    made = json.loads(record_path.read_text()) if record_path.is_file() else {}
    command = "python benchmarks/reference_runs.py --names {name} --setting " + args.setting
    for name in args.names:
        target = (out / args.setting / name).resolve()
        if target.exists():
            shutil.rmtree(target)
        t0 = time.perf_counter()
        if name == "imbalance":
            table, runs = course.imbalance(args.setting, "train", run_dir=target, progress=not args.quiet)
            folders = sorted(p for p in target.iterdir() if p.is_dir())
            seconds = sum(r.history.epochs[-1]["train_time"] for r in runs.values())
        elif name == "methods":
            study = course.methods(args.setting, "train", run_dir=target, progress=not args.quiet)
            folders = sorted(p for p in target.iterdir() if p.is_dir())
            seconds = sum(r.history.epochs[-1]["train_time"] for r in study.runs.values())
        elif name == "own_data":  # notebook 8: the stand-in where the notebook writes it, named relative to it
            here = os.getcwd()
            os.chdir(ROOT / "notebooks")
            try:
                own = course.own_data(source="train", setting=args.setting, run_dir=target)
                run = own.run(progress=not args.quiet)
            finally:
                os.chdir(here)
            folders, seconds = [target], run.history.epochs[-1]["train_time"]
        else:
            run = course.run(name, args.setting, "train", run_dir=target, progress=not args.quiet)
            folders, seconds = [target], run.history.epochs[-1]["train_time"]
        half = name == "baseline"  # 2.2 million weights: 4 MB in float16 instead of 9
        thin = name == "own_data"  # 34 epochs of 16 maps of 48×48: 2.2 MB of maps, 1 MB thinned
        for folder in folders:
            slim(folder, half=half, ends_only=name == "methods", thin=thin)  # notebook 9 draws no convergence
        made[f"{args.setting}/{name}"] = {
            "command": command.format(name=name), "machine": machine(),
            "date": datetime.date.today().isoformat(), "train_seconds": round(seconds, 1),
            "wall_seconds": round(time.perf_counter() - t0, 1), "runs": [str(f.relative_to(out)) for f in folders],
            **({"notes": "weights stored in float16 for shipping"} if half else {}),
            **({"notes": "the probe maps of epochs 0-6, every third after them and the last, for shipping"} if thin
               else {})}
        atomic_write_bytes(record_path, (json.dumps(made, indent=1) + "\n").encode())
        print(f"{args.setting}/{name}: {len(folders)} run(s), {seconds:.0f} s of training", flush=True)


if __name__ == "__main__":
    main()
