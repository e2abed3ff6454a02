"""The ``paper`` character preset's training speed on a GPU: PyTorch's eager step, ``torch.compile`` and the whole
step captured as one CUDA graph; then whole runs with their data, and the same run on 1 and on 2 processes
(torchrun).

    python benchmarks/gpu_speed.py                               # ~4 min on one H200
    python benchmarks/gpu_speed.py --skip compile runs --json out.json
    python benchmarks/gpu_speed.py --device cpu --smoke          # the script itself, on tiny sizes, anywhere

Prints, on the first CUDA device (or ``--device``):

1. **steps**: the trainer's own step (``Trainer.train_step``: the batch moved to the device, forward, loss,
   backward, clipping, the optimiser's step and the step's figures read back) on batches of generated images
   held in memory, so that nothing but the step is timed: samples/s for each variant
   (``TrainConfig.compile`` / ``cuda_graph``), the seconds its first steps took (compilation, capture), and how
   far its weights are from the eager variant's after the same steps from the same initialisation;
2. **runs**: ``train()`` with the generated data and its DataLoader workers under a time budget, eager and with
   the captured step: samples/s of training, as a user's run sees it;
3. **processes**: ``torchrun --nproc_per_node N -m sacnn_lab train`` for N = 1 and 2 with the same global batch
   (64 = N × 64/N) under a time budget (samples/s), and a fixed number of steps on 1 and on 2 processes from
   the same initialisation (the largest weight difference). With one GPU the 2 processes share it (gloo:
   NCCL refuses two ranks on one GPU); say so beside the figures.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from data_gen.characters import CharacterConfig, CharacterGenerator  # noqa: E402
from sacnn_lab.config import RunConfig  # noqa: E402
from sacnn_lab.experiment import build_model, train  # noqa: E402
from sacnn_lab.history import History  # noqa: E402
from sacnn_lab.trainer import Trainer  # noqa: E402

VARIANTS = {"eager": {}, "compile": {"compile": "default"}, "reduce-overhead": {"compile": "reduce-overhead"},
            "cuda-graph": {"cuda_graph": True}, "compile+cuda-graph": {"compile": "default", "cuda_graph": True}}


class _Held:
    """Batches held in memory, cycled: ``steps_per_epoch`` of them per epoch."""

    def __init__(self, batches: list[dict], steps: int):
        self.batches, self.steps_per_epoch = batches, steps

    def loader(self, epoch: int):
        for i in range(self.steps_per_epoch):
            yield self.batches[i % len(self.batches)]


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def steps(args, results: dict) -> None:
    print(f"\n== 1. the training step alone (paper preset, batch {args.batch}, {args.steps} timed steps)", flush=True)
    tiny = CharacterConfig(image_size=48, char_size=(12, 14), distractor_scales=(0.3, 2.0))
    gen = CharacterGenerator(tiny if args.smoke else None)
    n = args.batch * 8
    data = gen.generate(11, np.arange(n))
    x = torch.from_numpy(data.images).float().div(255).unsqueeze(1)
    y = torch.from_numpy(np.asarray(data.labels)).long()
    batches = [{"image": x[i:i + args.batch].pin_memory() if args.device == "cuda" else x[i:i + args.batch],
                "label": y[i:i + args.batch]} for i in range(0, n, args.batch)]
    reference = None
    for name in args.variants:
        try:
            cfg = RunConfig.preset("paper", grad_clip=20, device=args.device, batch_size=args.batch, **VARIANTS[name])
            torch.manual_seed(0)
            trainer = Trainer(build_model(cfg), cfg.train, _Held(batches, args.warm + args.steps))
            device = trainer.device
            t0 = time.perf_counter()
            for i in range(args.warm):
                trainer.train_step(batches[i % len(batches)])
            _sync(device)
            t1 = time.perf_counter()
            for i in range(args.warm, args.warm + args.steps):
                trainer.train_step(batches[i % len(batches)])
            _sync(device)
            t2 = time.perf_counter()
        except Exception as exc:  # a variant this machine cannot run: say why, and go on with the others
            print(f"   {name:20s} FAILED: {type(exc).__name__}: {str(exc).splitlines()[0][:300]}", flush=True)
            results.setdefault("steps", {})[name] = {"error": f"{type(exc).__name__}: {exc}"[:2000]}
            continue
        weights = [p.detach().float().cpu() for p in trainer.model.parameters()]
        if reference is None:
            reference = weights
        rel = max(float((a - b).abs().max() / b.abs().max().clamp_min(1e-12)) for a, b in zip(weights, reference))
        row = {"samples_per_s": args.steps * args.batch / (t2 - t1), "first_steps_s": t1 - t0,
               "ms_per_step": 1000 * (t2 - t1) / args.steps, "max_rel_weight_diff_vs_first": rel}
        results.setdefault("steps", {})[name] = row
        print(f"   {name:20s} {row['samples_per_s']:9,.0f} samples/s ({row['ms_per_step']:.2f} ms a step); first "
              f"{args.warm} steps {row['first_steps_s']:.1f} s; weights vs {args.variants[0]}: max rel Δ {rel:.1e}",
              flush=True)


def runs(args, results: dict) -> None:
    print(f"\n== 2. whole runs with their data ({args.run_time:g} s of training each, {args.workers} workers)",
          flush=True)
    for name in args.run_variants:
        over = {"samples_per_epoch": 2048, "val_size": 64, "test_size": 64, "epochs": 2} if args.smoke else \
            {"val_size": 500, "test_size": 500}
        try:
            cfg = RunConfig.preset("paper", grad_clip=20, device=args.device, max_time=args.run_time,
                                   num_workers=args.workers, **over, **VARIANTS[name])
            run = train(cfg, progress=False)
        except Exception as exc:
            print(f"   {name:20s} FAILED: {type(exc).__name__}: {str(exc).splitlines()[0][:300]}", flush=True)
            results.setdefault("runs", {})[name] = {"error": f"{type(exc).__name__}: {exc}"[:2000]}
            continue
        last = run.history.epochs[-1]
        row = {"samples": int(sum(e["samples"] for e in run.history.epochs)), "train_time": last["train_time"],
               "epochs": len(run.history.epochs), "val_accuracy": last.get("val_accuracy")}
        row["samples_per_s"] = row["samples"] / max(row["train_time"], 1e-9)
        results.setdefault("runs", {})[name] = row
        print(f"   {name:20s} {row['samples_per_s']:9,.0f} samples/s ({row['samples']:,} samples in "
              f"{row['train_time']:.1f} s, {row['epochs']} epoch(s)); validation accuracy {row['val_accuracy']}",
              flush=True)


def _torchrun(n: int, out: Path, extra: list[str], timeout: float) -> float:
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={n}", "-m",
           "sacnn_lab", "train", "--preset", "paper", "--grad-clip", "20", "--quiet", "--out", str(out), *extra]
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")])}
    t0 = time.perf_counter()
    done = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=timeout)
    if done.returncode:
        raise RuntimeError(f"torchrun with {n} process(es) failed: {done.stderr[-1500:]}")
    return time.perf_counter() - t0


def processes(args, results: dict) -> None:
    print(f"\n== 3. torchrun: 1 and 2 processes, global batch 64 ({args.run_time:g} s of training each)", flush=True)
    gpus = torch.cuda.device_count() if args.device == "cuda" else 0
    results["processes"] = {"gpus": gpus, "note": "2 processes share the one GPU (gloo)" if gpus == 1 else ""}
    small = ["--samples-per-epoch", "2048", "--epochs", "2"] if args.smoke else []
    with tempfile.TemporaryDirectory() as tmp:
        for n in (1, 2):
            out = Path(tmp) / f"time{n}"
            try:
                wall = _torchrun(n, out, ["--batch-size", str(64 // n), "--max-time", str(args.run_time),
                                          "--val-size", "200", "--test-size", "200", "--workers",
                                          str(max(1, args.workers // n)), "--device", args.device, *small],
                                 timeout=args.run_time * 4 + 120)
            except Exception as exc:
                print(f"   {n} process(es) FAILED: {str(exc)[-600:]}", flush=True)
                results["processes"][f"n{n}"] = {"error": str(exc)[-2000:]}
                continue
            h = History.load(out)
            samples = sum(e["samples"] for e in h.epochs)
            row = {"samples": samples, "train_time": h.epochs[-1]["train_time"], "wall_s": wall,
                   "samples_per_s": samples / h.epochs[-1]["train_time"]}
            results["processes"][f"n{n}"] = row
            print(f"   {n} process(es), batch {64 // n} each: {row['samples_per_s']:9,.0f} samples/s "
                  f"({samples:,} samples in {row['train_time']:.1f} s; {wall:.0f} s with start and evaluation)",
                  flush=True)
        # the same steps on 1 and 2 processes, from the same initialisation (seed 0): the weights
        weights = []
        for n in (1, 2):
            out = Path(tmp) / f"same{n}"
            try:
                _torchrun(n, out, ["--batch-size", str(64 // n), "--samples-per-epoch", str(args.same_samples),
                                   "--epochs", "1",
                                   "--val-size", "64", "--test-size", "64", "--device", args.device],
                          timeout=600)
                weights.append(torch.load(out / "checkpoint.pt", map_location="cpu", weights_only=False)["model"])
            except Exception as exc:
                print(f"   equality run on {n} FAILED: {str(exc)[-600:]}", flush=True)
                return
        diff = max(float((weights[0][k].float() - weights[1][k].float()).abs().max()) for k in weights[0])
        size = max(float(v.float().abs().max()) for v in weights[0].values())
        results["processes"]["same_steps_max_abs_diff"] = diff
        results["processes"]["same_steps_max_abs_weight"] = size
        print(f"   {args.same_samples // 64} steps, 1 process × 64 against 2 × 32: max |Δw| {diff:.2e} (weights up "
              f"to {size:.2f})", flush=True)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--device", default="cuda")
    p.add_argument("--batch", type=int, default=64)
    p.add_argument("--warm", type=int, default=30, help="steps before the timed ones (compilation, capture)")
    p.add_argument("--steps", type=int, default=600, help="timed steps")
    p.add_argument("--variants", nargs="+", default=list(VARIANTS), choices=list(VARIANTS))
    p.add_argument("--run-variants", nargs="+", default=["eager", "cuda-graph"], choices=list(VARIANTS))
    p.add_argument("--run-time", type=float, default=20.0, help="seconds of training of each whole run")
    p.add_argument("--workers", type=int, default=8)
    p.add_argument("--same-samples", type=int, default=2560, help="samples of the 1-against-2-processes run")
    p.add_argument("--skip", nargs="*", default=[], choices=["steps", "runs", "processes"])
    p.add_argument("--smoke", action="store_true", help="tiny sizes: the script itself, anywhere")
    p.add_argument("--json", help="write the figures here")
    args = p.parse_args()
    if args.smoke:
        args.steps, args.warm, args.run_time = min(args.steps, 6), min(args.warm, 4), min(args.run_time, 3)
        args.batch, args.same_samples = min(args.batch, 8), 128
    results: dict = {"device": args.device, "torch": torch.__version__,
                     "gpu": torch.cuda.get_device_name() if args.device == "cuda" else None}
    print(f"torch {torch.__version__}, {results['gpu'] or args.device}", flush=True)
    for name, section in (("steps", steps), ("runs", runs), ("processes", processes)):
        if name not in args.skip:
            section(args, results)
            if args.json:
                Path(args.json).write_text(json.dumps(results, indent=1))


if __name__ == "__main__":
    main()
