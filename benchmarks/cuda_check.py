"""The CUDA path, on a machine with a GPU: does it agree with the CPU, is it repeatable, and how fast is it?

    python benchmarks/cuda_check.py                          # everything, ~5 min on one H100/H200
    python benchmarks/cuda_check.py --paper-time 60 --textile-time 0 --json out.json
    python benchmarks/cuda_check.py --skip agreement repeat speed fast --paper-variants amp=0 grad_clip=20
    python benchmarks/cuda_check.py --device cpu --smoke     # the script itself, on tiny sizes, anywhere

Prints, on the first CUDA device:

1. agreement: the paper's character network and the ``fast`` one, same weights, on 64 generated images:
   image scores and maps on the CPU (float32) against CUDA float32 and CUDA mixed precision (bfloat16
   autocast, what training uses); and the competition loss's gradient on CUDA, which must reach one
   pixel per image (the winner) and nothing else;
2. repeatability: a short run twice, and the same run interrupted after its first epoch and resumed;
   bit-for-bit equal weights or not (cuDNN picks its algorithms per call, some of them non-deterministic),
   then the same with ``TrainConfig(deterministic=True)``; and DataLoader workers against none (the same
   batches);
3. training step throughput of both networks: float32 or mixed precision, NCHW or channels-last;
4. the ``fast`` preset trained in full on the GPU (no time budget): test accuracy, pointing game,
   samples/s, and inference images/s with the map;
5. the ``paper`` preset (3 blocks of 32/64/128, no normalisation, SGD lr 0.01, batch 64, summed loss,
   100,000 samples per epoch, 20 epochs) with mixed precision and channels-last, under a time budget,
   once per ``--paper-variants`` entry (each a list of changed fields, e.g. ``amp=0`` or
   ``seed=1,grad_clip=20``): the loss and the gradients' norm through the first epoch (the competitive
   phase; a per-step trace that costs a little speed), each epoch's validation figures and the test
   figures at the end, or where the loss became NaN;
6. optionally the textile ``paper`` preset (5 blocks, 512×512) under a short time budget.
"""

from __future__ import annotations

import argparse
import functools
import json
import math
import os
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from data_gen.characters import CharacterGenerator
from sacnn_lab.competition import competition_loss, defect_layers
from sacnn_lab.config import RunConfig
from sacnn_lab.data import GeneratedEpochs
from sacnn_lab.experiment import build_model, evaluate, split, textile_split, train
from sacnn_lab.inference import predict
from sacnn_lab.trainer import Callback, Trainer, cudnn_determinism


def _section(title: str) -> None:
    print(f"\n== {title}", flush=True)


DEVICE = torch.device("cuda")
SMOKE: dict = {}  # --smoke: tiny runs, to try the script itself on any machine


def _sync() -> None:
    if DEVICE.type == "cuda":
        torch.cuda.synchronize()


def agreement(results: dict) -> None:
    _section("1. CPU float32 against CUDA float32 and CUDA mixed precision (64 images, same weights)")
    images = CharacterGenerator().generate(123, np.arange(64)).images
    x = torch.from_numpy(images).float().div(255).unsqueeze(1)
    for name in ("paper", "fast"):
        torch.manual_seed(0)
        model = build_model(RunConfig.preset(name)).eval()
        with torch.no_grad():
            ref = defect_layers(model(x))[:, 0]
            gpu = model.to(DEVICE, memory_format=torch.channels_last)
            xc = x.to(DEVICE).contiguous(memory_format=torch.channels_last)
            f32 = defect_layers(gpu(xc).float())[:, 0].cpu()
            with torch.autocast(DEVICE.type, dtype=torch.bfloat16):
                amp = defect_layers(gpu(xc).float())[:, 0].cpu()
        row = {}
        for tag, m in (("cuda_fp32", f32), ("cuda_amp", amp)):
            same_peak = (m.flatten(1).argmax(1) == ref.flatten(1).argmax(1)).float().mean().item()
            row[tag] = {"max_abs_map": (m - ref).abs().max().item(),
                        "max_abs_score": (m.amax((1, 2)) - ref.amax((1, 2))).abs().max().item(),
                        "same_peak": same_peak}
            print(f"   {name:5s} {tag:9s}: max |Δ| map {row[tag]['max_abs_map']:.2e}, score "
                  f"{row[tag]['max_abs_score']:.2e}; same winning pixel in {same_peak:.0%} of images")
        results.setdefault("agreement", {})[name] = row

    # the gradient of the competition loss reaches only each image's winning pixel
    torch.manual_seed(1)
    logits = torch.randn(8, 2, 17, 17, device=DEVICE, requires_grad=True)
    labels = torch.tensor([0, 1] * 4, device=DEVICE)
    competition_loss(logits, labels, reduction="sum").backward()
    touched = (logits.grad.abs().sum(1) > 0).flatten(1).sum(1).tolist()
    ok = touched == [1] * 8
    print(f"   gradient on CUDA: pixels touched per image {touched} -> {'only the winner' if ok else 'WRONG'}")
    results["gradient_winner_only"] = ok


class _StopAfterFirstEpoch(Callback):
    def on_epoch_start(self, trainer, epoch):
        if epoch == 2:
            raise KeyboardInterrupt


def _weights(run) -> list[torch.Tensor]:
    return [v.detach().clone() for v in run.model.state_dict().values()]


def _max_diff(a: list[torch.Tensor], b: list[torch.Tensor]) -> float:
    return max((x.float() - y.float()).abs().max().item() for x, y in zip(a, b))


def repeatability(results: dict, workers: int) -> None:
    _section("2. repeatability on CUDA (fast recipe, 2 epochs of 2,048 samples, the first at 68 px)")
    for deterministic in (False, True):
        cfg = RunConfig.preset("fast", epochs=2, early_epochs=1, device=DEVICE.type, deterministic=deterministic,
                               **{"samples_per_epoch": 2048, "val_size": 200, **SMOKE})
        a = _weights(train(cfg, progress=False))
        b = _weights(train(cfg, progress=False))
        with tempfile.TemporaryDirectory() as tmp:
            try:
                train(cfg, tmp, progress=False, callbacks=[_StopAfterFirstEpoch()])
            except KeyboardInterrupt:
                pass
            c = _weights(train(cfg, tmp, resume=True, progress=False))
        row = {"rerun_max_diff": _max_diff(a, b), "resume_max_diff": _max_diff(a, c)}
        results.setdefault("repeatability", {})[f"deterministic={deterministic}"] = row
        print(f"   deterministic={deterministic!s:5s}: run again max |Δw| {row['rerun_max_diff']:.2e}; "
              f"interrupted + resumed max |Δw| {row['resume_max_diff']:.2e}")

    gen = CharacterGenerator()
    plain = GeneratedEpochs(gen, 7, 256, 64, num_workers=0)
    pooled = GeneratedEpochs(gen, 7, 256, 64, num_workers=workers)
    same = all(torch.equal(p["image"], q["image"]) and torch.equal(p["label"], q["label"])
               for p, q in zip(plain.loader(3), pooled.loader(3), strict=True))
    print(f"   {workers} DataLoader workers against none: {'the same batches' if same else 'DIFFERENT batches'}")
    results["workers_same_batches"] = same


class _NoData:
    """An epoch source for a trainer that is only stepped by hand."""

    steps_per_epoch = 1000

    def loader(self, epoch: int):
        return iter(())


def step_speed(results: dict, seconds: float = 2.0, warm: int = 20) -> None:
    _section("3. training steps per second on synthetic batches (136×136)")
    variants = [(False, False, False), (False, True, False), (True, False, False), (True, True, False),
                (True, True, True)]  # (amp, channels_last, deterministic)
    for name, batch in (("paper", 64), ("fast", 16)):
        for amp, channels_last, deterministic in variants:
            cfg = RunConfig.preset(name, device=DEVICE.type, amp=amp, channels_last=channels_last)
            trainer = Trainer(build_model(cfg), cfg.train, data=_NoData())
            b = {"image": torch.rand(batch, 1, 136, 136), "label": torch.randint(0, 2, (batch,))}
            with cudnn_determinism(deterministic):
                for _ in range(warm):
                    trainer.train_step(b)
                _sync()
                n, t0 = 0, time.perf_counter()
                while time.perf_counter() - t0 < seconds:
                    trainer.train_step(b)
                    n += 1
                _sync()
                rate = n * batch / (time.perf_counter() - t0)
            tag = (f"{name} batch {batch}, {'bf16 autocast' if amp else 'float32'}, "
                   f"{'channels-last' if channels_last else 'NCHW'}{', deterministic' if deterministic else ''}")
            results.setdefault("step_speed", {})[tag] = rate
            print(f"   {tag:55s}: {rate:8.0f} samples/s", flush=True)


def _summary(name: str, run, test, results: dict) -> None:
    h = run.history
    samples = sum(r["samples"] for r in h.epochs)
    secs = h.epochs[-1]["train_time"]
    model = run.model.to(DEVICE)
    m = evaluate(model, test)
    images = test.images
    predict(model, images[:1024], batch_size=1024)
    _sync()
    t0 = time.perf_counter()
    predict(model, images, batch_size=1024)
    ips = len(images) / (time.perf_counter() - t0)
    print(f"   {len(h.epochs)} epochs, {samples:,} samples in {secs:.1f} s of training "
          f"({samples / secs:,.0f} samples/s)")
    print(f"   test ({len(test.labels)} images, unseen seed): accuracy {m['accuracy']:.4f}, AUROC {m['auroc']:.4f}, "
          f"pointing game {m['pointing_game']:.4f}; inference {ips:,.0f} images/s with the map (batch 1,024)")
    print("   epoch  train s  loss     val acc  val pg")
    for r in h.epochs:
        print(f"   {r['epoch']:5d}  {r['train_time']:7.1f}  {r['train_loss']:7.4f}  "
              f"{r.get('val_accuracy', math.nan):.4f}   {r.get('val_pointing_game', math.nan):.4f}")
    results[name] = {"epochs": len(h.epochs), "samples": samples, "train_seconds": secs,
                     "samples_per_s": samples / secs, "test": m, "inference_images_per_s": ips,
                     "curve": [{k: r.get(k) for k in ("epoch", "train_time", "train_loss", "val_accuracy",
                                                      "val_pointing_game")} for r in h.epochs]}


def fast_preset(results: dict, workers: int) -> None:
    _section(f"4. the fast preset in full on CUDA ({workers} DataLoader workers, mixed precision)")
    cfg = RunConfig.preset("fast", device=DEVICE.type, num_workers=workers,
                           **({**SMOKE, "epochs": 2, "early_epochs": 1} if SMOKE else {}))
    test = split(cfg, "test")
    t0 = time.perf_counter()
    run = train(cfg, progress=False)
    print(f"   wall {time.perf_counter() - t0:.0f} s (glyph atlas, validation and probe maps included)")
    _summary("fast", run, test, results)


class _Trace(Callback):
    """Each step's loss and the gradients' total norm (still there after the step)."""

    def __init__(self):
        self.loss: list[float] = []
        self.grad: list[float] = []

    def on_batch_end(self, trainer, record):
        self.loss.append(record["loss"])
        sq = sum((p.grad.detach().float() ** 2).sum() for p in trainer.model.parameters() if p.grad is not None)
        self.grad.append(float(sq) ** 0.5)


def _overrides(variant: str) -> dict:
    """``"amp=0,seed=1,grad_clip=10"`` → ``{"amp": False, "seed": 1, "grad_clip": 10}``."""
    out: dict = {}
    for item in filter(None, variant.split(",")):
        key, text = item.split("=")
        try:
            value: float = int(text)
        except ValueError:
            value = float(text)
        out[key] = bool(value) if key in ("amp", "channels_last", "deterministic") else value
    return out


def paper_preset(results: dict, workers: int, budget: float, variant: str = "") -> None:
    changes = _overrides(variant)
    _section(f"5. the paper preset on CUDA: 20 epochs of 100,000 samples, batch 64, SGD lr 0.01, summed loss, "
             f"channels-last, {workers} workers, mixed precision unless amp=0; changed: {changes or 'nothing'}; "
             f"budget {budget:.0f} s of training")
    cfg = RunConfig.preset("paper", device=DEVICE.type, num_workers=workers, max_time=budget,
                           **{**({**SMOKE, "epochs": 2} if SMOKE else {}), **changes})
    test = split(cfg, "test")
    trace = _Trace()
    t0 = time.perf_counter()
    key = f"paper {variant}".strip()
    try:
        run = train(cfg, progress=False, callbacks=[trace])
    except FloatingPointError as err:
        run = None
        print(f"   STOPPED after {time.perf_counter() - t0:.0f} s: {err}")
        results[key] = {"stopped": str(err), "steps": len(trace.loss) + 1}
    loss, grad = np.asarray(trace.loss), np.asarray(trace.grad)
    k = max(1, min(len(loss), 1563) // 10)
    print(f"   per {k} steps (64·ln 2 = {64 * math.log(2):.1f} is chance): step: mean loss / median, max gradient norm")
    for lo in range(0, min(len(loss), 1563), k):
        print(f"     {lo + 1:6d}: {loss[lo:lo + k].mean():8.2f} / {np.median(grad[lo:lo + k]):9.2f} "
              f"{grad[lo:lo + k].max():10.2f}")
    if run is None:
        print("   the last 10 steps (loss, gradient norm):",
              " ".join(f"({a:.3g}, {b:.3g})" for a, b in zip(loss[-10:], grad[-10:])))
        results[key].update(loss=loss[-200:].tolist(), grad=grad[-200:].tolist())
        return
    print(f"   wall {time.perf_counter() - t0:.0f} s; gradient norm over the run: median {np.median(grad):.2f}, "
          f"99th percentile {np.percentile(grad, 99):.2f}, max {grad.max():.2f}")
    _summary(key, run, test, results)


def textile_paper(results: dict, budget: float, variant: str = "") -> None:
    changes = _overrides(variant)
    _section(f"6. the textile paper preset on CUDA (5 blocks, 512×512, batch 16, SGD), budget {budget:.0f} s; "
             f"changed: {changes or 'nothing'}")
    cfg = RunConfig.preset("paper", data="textile", device=DEVICE.type, max_time=budget,
                           **{**({"samples_per_epoch": 16, "test_size": 16} if SMOKE else {}), **changes})
    t0 = time.perf_counter()
    test = textile_split(cfg, "Test")
    print(f"   the generated textile set: {time.perf_counter() - t0:.0f} s")
    key = f"textile_paper {variant}".strip()
    try:
        run = train(cfg, progress=False)
    except FloatingPointError as err:
        print(f"   STOPPED after {time.perf_counter() - t0:.0f} s: {err}")
        results[key] = {"stopped": str(err)}
        return
    h = run.history
    samples = sum(r["samples"] for r in h.epochs)
    m = evaluate(run.model.to(DEVICE), test)
    print(f"   {len(h.epochs)} epochs, {samples:,} images in {h.epochs[-1]['train_time']:.1f} s "
          f"({samples / h.epochs[-1]['train_time']:.0f} images/s); test accuracy {m['accuracy']:.4f}, "
          f"AUROC {m['auroc']:.4f}, pointing game {m['pointing_game']:.4f}")
    results[key] = {"epochs": len(h.epochs), "samples": samples, "train_seconds": h.epochs[-1]["train_time"],
                    "test": m}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--workers", type=int, default=min(8, max(1, (os.cpu_count() or 2) - 2)))
    p.add_argument("--paper-time", type=float, default=150.0, help="training-time budget of the paper run (s)")
    p.add_argument("--paper-variants", nargs="*", default=[""],
                   help="paper runs, each with its changes, e.g. '' 'amp=0' 'seed=1,grad_clip=10'")
    p.add_argument("--textile-time", type=float, default=40.0, help="textile paper run budget (s); 0 skips it")
    p.add_argument("--textile-variant", default="", help="the textile paper run's changes, e.g. 'grad_clip=20'")
    p.add_argument("--skip", nargs="*", default=(), choices=("agreement", "repeat", "speed", "fast", "paper"))
    p.add_argument("--json", type=Path, help="also write the figures here")
    p.add_argument("--device", default="cuda", help="cuda (default), or cpu to try the script with --smoke")
    p.add_argument("--smoke", action="store_true", help="tiny runs: checks the script, measures nothing")
    args = p.parse_args()
    global DEVICE
    DEVICE = torch.device(args.device)
    if args.smoke:
        SMOKE.update(samples_per_epoch=256, val_size=64, test_size=100, probe_size=4)
        args.paper_time, args.textile_time = min(args.paper_time, 5), min(args.textile_time, 5)
    if DEVICE.type == "cuda":
        if not torch.cuda.is_available():
            raise SystemExit("cuda_check.py needs a CUDA device; this machine has none (--device cpu --smoke "
                             "tries the script itself)")
        props = torch.cuda.get_device_properties(DEVICE)
        name = props.name
        print(f"{name}, {props.total_memory / 2**30:.0f} GiB, {props.multi_processor_count} SMs; torch "
              f"{torch.__version__}, CUDA {torch.version.cuda}, cuDNN {torch.backends.cudnn.version()}; "
              f"bf16 {torch.cuda.is_bf16_supported()}; {os.cpu_count()} CPU cores", flush=True)
    else:
        name = str(DEVICE)
    results: dict = {"device": name, "torch": torch.__version__}
    steps = [("agreement", lambda: agreement(results)),
             ("repeat", lambda: repeatability(results, args.workers)),
             ("speed", lambda: step_speed(results, *((0.2, 1) if args.smoke else ()))),
             ("fast", lambda: fast_preset(results, args.workers)),
             *[("paper", functools.partial(paper_preset, results, args.workers, args.paper_time, v))
               for v in args.paper_variants]]
    if args.textile_time > 0:
        steps.append(("textile", lambda: textile_paper(results, args.textile_time, args.textile_variant)))
    for name, fn in steps:
        if name in args.skip:
            continue
        t0 = time.perf_counter()
        fn()
        print(f"   ({time.perf_counter() - t0:.0f} s)", flush=True)
        if args.json:  # after every step: a run cut short still leaves what it measured
            args.json.write_text(json.dumps(results, indent=1, default=float))


if __name__ == "__main__":
    main()
