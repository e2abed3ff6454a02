"""Latency of an exported model: PyTorch eager against onnxruntime, the defect map included, at 136², 512² and a
4096 × 1024 line-scan strip, batch 1 and the best batch, on the CPU (and on CUDA where both have it).

    python benchmarks/export_latency.py                       # the fast networks, untrained weights, ~3 min
    python benchmarks/export_latency.py --repeats 50 --out runs/latency.csv

The character ``fast`` network runs at 136² (its training size); the textile ``fast`` network at 512² and on
the 4096 × 1024 strip. Each row: the framework, the size, the batch, the median (p50) and 99th-percentile
(p99) milliseconds per image over ``--repeats`` timed runs after warm-up runs, and images per second. PyTorch
runs ``sacnn_lab.inference.predict`` (score and map from one forward pass); onnxruntime runs the graph
``sacnn-lab export`` writes (score and map). Weights do not change the cost of a convolution: the networks
are initialised, not trained (``--checkpoint`` times a run's own).
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from sacnn_lab.config import RunConfig
from sacnn_lab.experiment import build_model, load_model
from sacnn_lab.export import to_onnx
from sacnn_lab.inference import predict
from sacnn_lab.runtime import OnnxModel

CASES = [("characters", (136, 136)), ("textile", (512, 512)), ("textile", (1024, 4096))]


def timed(fn, repeats: int, warm: int = 2, sync=None) -> np.ndarray:
    for _ in range(warm):
        fn()
    out = []
    for _ in range(repeats):
        if sync:
            sync()
        t = time.perf_counter()
        fn()
        if sync:
            sync()
        out.append(time.perf_counter() - t)
    return np.asarray(out)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--repeats", type=int, default=20, help="timed runs per row (default 20)")
    p.add_argument("--batches", type=int, nargs="+", default=[1, 4, 16], help="batches tried (default 1 4 16)")
    p.add_argument("--checkpoint", help="time this run's network instead of the fast presets' (its size only)")
    p.add_argument("--device", choices=["cpu", "cuda", "all"], default="all",
                   help="cpu, cuda, or all the machine has (default)")
    p.add_argument("--quick", action="store_true", help="the character network at 136² only")
    p.add_argument("--out", help="also write the rows as CSV")
    args = p.parse_args(argv)

    devices = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])
    if args.device != "all":
        devices = [args.device]
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        nets = {}
        if args.checkpoint:
            model, cfg = load_model(args.checkpoint)
            side = cfg.data.image_size
            cases = [("run", (side, side) if isinstance(side, int) else tuple(side))]
            nets["run"] = (model, cfg)
        else:
            cases = CASES[:1] if args.quick else CASES
            for data in {c[0] for c in cases}:
                cfg = RunConfig.preset("fast", data=data)
                nets[data] = (build_model(cfg).eval(), cfg)
        for name, (model, cfg) in nets.items():
            to_onnx(model, Path(tmp) / f"{name}.onnx", config=cfg)
        for device in devices:
            providers = ["CUDAExecutionProvider"] if device == "cuda" else ["CPUExecutionProvider"]
            sync = torch.cuda.synchronize if device == "cuda" else None
            for name, (h, w) in cases:
                model = nets[name][0].to(device)
                try:
                    onnx = OnnxModel(Path(tmp) / f"{name}.onnx", providers=providers)
                except Exception as exc:  # noqa: BLE001 - e.g. onnxruntime without its CUDA build
                    print(f"onnxruntime on {device}: {exc}")
                    onnx = None
                for batch in args.batches:
                    if h * w * batch > 4096 * 1024 * 4:  # a few strips at most: memory, and minutes
                        continue
                    images = np.random.default_rng(0).integers(0, 256, (batch, h, w), dtype=np.uint8)
                    x = torch.from_numpy(images).float().div(255).unsqueeze(1)
                    runs = {"pytorch": lambda: predict(model, x, batch_size=batch, device=device)}
                    if onnx is not None:
                        runs["onnxruntime"] = lambda: onnx.predict(images, batch_size=batch)
                    for framework, fn in runs.items():
                        t = timed(fn, args.repeats, sync=sync) / batch * 1e3
                        rows.append({"device": device, "network": name, "size": f"{w}×{h}", "batch": batch,
                                     "framework": framework, "p50_ms": float(np.percentile(t, 50)),
                                     "p99_ms": float(np.percentile(t, 99)),
                                     "images_per_s": 1e3 / float(np.median(t))})
                        r = rows[-1]
                        print(f"{device:4s} {name:10s} {r['size']:>9s} batch {batch:3d} {framework:11s} "
                              f"p50 {r['p50_ms']:8.2f} ms  p99 {r['p99_ms']:8.2f} ms  "
                              f"{r['images_per_s']:8.1f} images/s",
                              flush=True)
                model.cpu()
    if args.out:
        import pandas as pd

        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        pd.DataFrame(rows).to_csv(args.out, index=False)
    print(f"threads: torch {torch.get_num_threads()}, cores {os.cpu_count()}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
