"""The ``sacnn-lab`` command line: demo, train, evaluate, predict, export, compare, gallery.

:func:`main` runs one command; :func:`build_parser` gives the parser (every command and option, with its help)
and :func:`subcommands` its commands by name, for checking a command line written elsewhere without running
it. ``sacnn-lab --help`` lists the commands with examples, ``sacnn-lab COMMAND --help`` a command's options.
"""

from __future__ import annotations

import argparse
import functools
import json
import math
import sys
import time
from typing import Any
from dataclasses import replace
from pathlib import Path

import numpy as np

from data_gen.fonts import NoUsableFontsError


def _data_source(spec: str, preset: str | None = None) -> tuple[str, str | None]:
    """``--data`` of train: ``characters``, ``textile``, a DAGM 2007 class folder (the textile presets, or
    with ``--preset auto`` the defaults chosen from the data), a class folder of one's own
    (``good/`` beside the defect folders) or a labelled folder (``labels.csv``) → (source, folder)."""
    from data_gen.folders import folder_layout

    if spec in ("characters", "textile"):
        if preset == "auto":
            raise ValueError(f"--preset auto chooses the settings from a folder's images; --data {spec} has "
                             f"presets of its own (fast, paper)")
        return spec, None
    layout = folder_layout(spec)
    if layout == "dagm":
        return ("folder" if preset == "auto" else "textile"), spec
    if layout is not None:
        return "folder", spec
    raise ValueError(f"--data {spec!r}: expected 'characters', 'textile', a DAGM 2007 class folder (one holding "
                     f"Train/ and Test/, e.g. .../Class1), a labelled folder (labels.csv and images/) or a folder "
                     f"of your own images: good/ (defect-free) beside one or more folders of defective images")


def _run_config(args: argparse.Namespace):
    """The run the flags describe, and (for a folder of one's own) what was chosen from the data and why."""
    from .config import BASELINE_PRESETS, PRESETS, RunConfig

    source, folder = _data_source(args.data, args.preset)
    if source == "folder" and args.preset not in (None, "auto"):
        raise ValueError(f"--preset {args.preset}: a folder of your own trains with the settings chosen from its "
                         f"images (--preset auto, the default there); the named presets are the generated sets' "
                         f"and DAGM's")
    if source != "characters" and args.early_epochs:
        raise ValueError(f"--early-epochs (the first epochs on smaller images) is for character runs: a {source} "
                         f"run trains on its full-size images throughout; leave --early-epochs out")
    if source == "folder" and (args.model == "baseline" or args.ratio is not None):
        raise ValueError("a class folder trains SACNN on the images as they are: --model baseline and --ratio "
                         "are for the generated sets (for now)")
    if args.model == "baseline":
        if args.preset is not None and args.preset not in BASELINE_PRESETS:
            raise ValueError(f"--preset {args.preset} is a SACNN preset; the baseline's are {BASELINE_PRESETS}")
        cfg = RunConfig.baseline(args.preset or "cpu", data=source)
        model = {k: v for k, v in (("arch", args.arch), ("width", args.width), ("weights", args.weights),
                                   ("cam", args.cam), ("target_layer", args.target_layer)) if v is not None}
        cfg.model = replace(cfg.model, **model)
    else:
        if args.preset is not None and args.preset not in (*PRESETS, "auto"):
            raise ValueError(f"--preset {args.preset} is a baseline preset; SACNN's are {PRESETS}")
        given = [f"--{k.replace('_', '-')}" for k in ("arch", "width", "weights", "cam", "target_layer")
                 if getattr(args, k) is not None]
        if given:
            raise ValueError(f"{', '.join(given)} configure the baseline: add --model baseline")
        # a folder's run is chosen from its data below
        cfg = None if source == "folder" else \
            RunConfig.preset(args.preset or "fast", data=source, **({"folder": folder} if folder else {}))
    train = {k: v for k, v in (("epochs", args.epochs), ("batch_size", args.batch_size), ("lr", args.lr),
                               ("optimizer", args.optimizer), ("device", args.device),
                               ("max_time", args.max_time), ("num_workers", args.workers),
                               ("seed", args.seed), ("grad_clip", args.grad_clip),
                               ("keep_best", args.keep_best), ("supervision", args.supervision),
                               ("compile", args.compile), ("cuda_graph", args.cuda_graph)) if v is not None}
    data = {k: v for k, v in (("samples_per_epoch", args.samples_per_epoch), ("val_size", args.val_size),
                              ("test_size", args.test_size), ("early_epochs", args.early_epochs))
            if v is not None}
    if source == "folder":  # the defaults come from the data; a flag given is kept as given
        from .autoconfig import config_for

        if args.no_resize:
            data["one_size"] = True
        # a resumed run keeps the settings its folder holds: nothing is chosen again
        return config_for(folder, args.out if getattr(args, "resume", False) else None,
                          defect_size=args.defect_size, types=args.defect_types, color=args.color,
                          progress=not args.quiet, **train, **data)
    own = [f for f, given in (("--defect-types", args.defect_types), ("--color", args.color),
                              ("--no-resize", args.no_resize)) if given]
    if own:
        raise ValueError(f"{own[0]} is for a folder of your own (--defect-types: one defective layer per defect "
                         f"folder; --color: RGB images; --no-resize: every image of one size)")
    cfg.train = replace(cfg.train, **train)
    if args.aggregation is not None:
        if cfg.is_baseline:
            raise ValueError("--aggregation pools SACNN's defective layer; the baseline has none")
        cfg.model = replace(cfg.model, aggregation=args.aggregation)
    if args.defect_size is not None:
        raise ValueError("--defect-size chooses the blocks for a folder of your own; the generated sets and "
                         "DAGM come with their presets' blocks")
    if args.ratio is not None:
        knobs = "textile" if source == "textile" else "characters"
        data[knobs] = replace(getattr(cfg.data, knobs), ratio=args.ratio)
    cfg.data = replace(cfg.data, **data)
    return RunConfig(cfg.model, cfg.data, cfg.train), []  # checks the parts together (early_epochs < epochs)


def _add_train_args(p: argparse.ArgumentParser) -> None:
    from .config import AGGREGATIONS, BEST_METRICS, COMPILE_MODES, SUPERVISIONS

    p.add_argument("--data", default="characters", metavar="SPEC",
                   help="training data: characters (the generated character set; the default), textile (the "
                        "generated DAGM-like texture set), a DAGM 2007 class folder (.../Class1), a labelled "
                        "folder (labels.csv), or a folder of your own: good/ (defect-free images) beside one or "
                        "more folders of defective images (an optional masks/ is used only to evaluate)")
    p.add_argument("--model", choices=["sacnn", "baseline"], default="sacnn",
                   help="the network: sacnn, or baseline, the Grad-CAM / VGG19 baseline (default: %(default)s)")
    p.add_argument("--preset", choices=["fast", "paper", "cpu", "full", "auto"],
                   help="the settings to start from. SACNN: fast (the default; near the paper's accuracy "
                        "soonest on a CPU) or paper (the paper's settings); auto: chosen from a folder's images "
                        "(the default, and the only one, for your own or a labelled folder; a DAGM folder takes "
                        "the textile presets unless auto is given). Baseline: cpu (the default, a reduced "
                        "VGG19-BN) or full (torchvision's VGG19, for a GPU)")
    p.add_argument("--arch", choices=["vgg19", "vgg19_bn"],
                   help="baseline only: the torchvision architecture, vgg19 or vgg19_bn (with batch "
                        "normalisation) (default: the preset's)")
    p.add_argument("--width", type=float, metavar="FACTOR",
                   help="baseline only: multiplier of every layer's width, in (0, 1]; ImageNet weights need 1 "
                        "(default: the preset's)")
    p.add_argument("--weights", metavar="SOURCE",
                   help="baseline only: imagenet (torchvision's ImageNet weights from the local torch cache) or "
                        "the path of a state-dict file (default: the preset's)")
    p.add_argument("--cam", metavar="METHOD",
                   help="baseline only: the CAM method of the grad-cam package that draws the maps, by name "
                        "(gradcam, gradcam++, hirescam, xgradcam, layercam, ...) (default: gradcam)")
    p.add_argument("--target-layer", metavar="LAYER",
                   help="baseline only: the layer the CAM explains, as a dotted module name such as "
                        "features.34 (default: features[-1], the last feature layer)")
    p.add_argument("--defect-size", type=float, metavar="PX",
                   help="a folder of your own: a typical defect's extent in pixels, which chooses the number of "
                        "blocks by the paper's rule (default: chosen on the validation split, from the image "
                        "labels)")
    p.add_argument("--defect-types", action="store_true",
                   help="a folder of your own with several defect folders: one defective layer per folder (a "
                        "K-type head) and the figures per type (default: every defect folder is one class, "
                        "defective)")
    p.add_argument("--color", action="store_true",
                   help="a folder of your own: read the images as RGB into a network of 3 input channels "
                        "(default: gray, the paper's case)")
    p.add_argument("--no-resize", action="store_true",
                   help="a folder of your own: every image must have one size (an image of another size is an "
                        "error) instead of being resized to the most common size")
    p.add_argument("--epochs", type=int, metavar="N",
                   help="number of epochs (default: the preset's, or chosen from a folder's data)")
    p.add_argument("--samples-per-epoch", type=int, metavar="N",
                   help="generated sets: training images per epoch, freshly generated for characters; for "
                        "textile the size of the generated training split (default: the preset's)")
    p.add_argument("--early-epochs", type=int, metavar="N",
                   help="characters only: train the first N epochs on smaller images, which is faster (the fast "
                        "preset: 13 of 15 epochs at 68 px); 0: full size throughout (default: the preset's)")
    p.add_argument("--batch-size", type=int, metavar="N",
                   help="images per training step; under torchrun, per process (default: the preset's)")
    p.add_argument("--lr", type=float, metavar="RATE",
                   help="the learning rate (the peak of a one-cycle or cosine schedule) (default: the preset's)")
    p.add_argument("--grad-clip", type=float, metavar="NORM",
                   help="clip the gradients' total norm to NORM before each step (default: the preset's, no "
                        "clipping; the paper preset on a GPU needs 20)")
    p.add_argument("--keep-best", choices=BEST_METRICS, metavar="FIGURE",
                   help="also keep best.pt, the checkpoint of the epoch with the highest validation FIGURE so "
                        f"far: one of {', '.join(BEST_METRICS)}; character runs only (default: the last "
                        "epoch's checkpoint.pt only)")
    p.add_argument("--optimizer", choices=["sgd", "adam", "adamw"],
                   help="the optimiser: sgd (the paper's), adam or adamw (default: the preset's)")
    p.add_argument("--aggregation", choices=list(AGGREGATIONS),
                   help="SACNN only: how the defective layer's pixels become the image's probability: max (the "
                        "default, the paper's feature competition), mean, lse (log-sum-exp) or topk (the mean "
                        "of the 5 %% highest)")
    p.add_argument("--supervision", choices=list(SUPERVISIONS),
                   help="image (the default: SACNN, image labels only) or mask: the same network trained as a "
                        "patch classifier from the true masks as well, the supervised reference (generated sets "
                        "and DAGM folders)")
    p.add_argument("--ratio", type=float, metavar="R",
                   help="generated sets: defect-free training images per defective one, from 0.1 to 100 (1: "
                        "balanced) (default: the preset's)")
    p.add_argument("--val-size", type=int, metavar="N",
                   help="generated characters: images of the validation set measured after every epoch "
                        "(default: the preset's)")
    p.add_argument("--test-size", type=int, metavar="N",
                   help="generated sets: images of the test split (default: the preset's)")
    p.add_argument("--device", metavar="DEVICE",
                   help="where to train: auto (the default: CUDA, then Apple MPS, then the CPU), cpu, cuda, "
                        "cuda:N or mps")
    p.add_argument("--max-time", type=float, metavar="SECONDS",
                   help="stop after this many seconds of training, the epoch in progress cut short and "
                        "recorded (default: no limit)")
    p.add_argument("--workers", type=int, metavar="N",
                   help="DataLoader worker processes that prepare the images; 0: in the training process "
                        "(default: 0)")
    p.add_argument("--compile", choices=COMPILE_MODES, default=None,
                   help="torch.compile the network's forward pass in this mode: off, default, reduce-overhead "
                        "or max-autotune (default: off; the first steps then take a while to compile it)")
    p.add_argument("--cuda-graph", action="store_true", default=None,
                   help="on CUDA, capture the whole training step once as a CUDA graph and replay it (for small "
                        "networks bound by kernel launches, e.g. the paper preset; needs a constant learning "
                        "rate and one process; ignored off CUDA)")
    p.add_argument("--seed", type=int, metavar="SEED",
                   help="seed of the model's initialisation (default: 0)")
    p.add_argument("--quiet", action="store_true", help="no progress bars")


def _summary(metrics: dict) -> str:
    where = (f"pointing game {metrics['pointing_game']:.4f}" if math.isfinite(metrics["pointing_game"]) else
             "localisation not measured (these images come with no true boxes or masks)")
    def f(key: str) -> str:  # precision without a positive call, AUROC of one class: undefined, not 0
        return f"{metrics[key]:.4f}" if math.isfinite(metrics[key]) else "n/a"

    line = f"accuracy {f('accuracy')}, precision {f('precision')}, recall {f('recall')}, AUROC {f('auroc')}, {where}"
    if math.isfinite(metrics.get("iou_otsu", math.nan)):
        line += (f"\nthe maps against the truth (defective images): IoU {f('iou_fixed')} at 0.5, {f('iou_otsu')} at "
                 f"Otsu's threshold; Dice {f('dice_fixed')} / {f('dice_otsu')}; compactness {f('compactness_fixed')} / "
                 f"{f('compactness_otsu')} (1: as large as the defect); pixel AUROC {f('pixel_auroc')}, "
                 f"pixel AP {f('pixel_ap')}")
    if math.isfinite(metrics.get("false_alarm_area", math.nan)):
        line += f"\ndefect-free images: {100 * metrics['false_alarm_area']:.2f} % of their map above 0.5"
    types = metrics.get("types")
    if types:
        names = metrics.get("type_names") or [f"type {k}" for k in range(1, len(types["recall"]) + 1)]
        line += "\nper defect type (recall: called defective; AUROC: against the defect-free images):"
        for name, r, a in zip(names, types["recall"], types["per_type_auroc"]):
            line += f"\n  {name}: recall {r:.4f}, AUROC {a:.4f}"
        line += f"\n  the right type for {types['type_accuracy']:.4f} of the defective images; confusion " \
                f"(rows: truth, columns: call; the first is defect-free):"
        width = max(len(n) for n in ["defect-free", *names])
        for name, row in zip(["defect-free", *names], types["confusion"]):
            line += f"\n    {name:>{width}} " + " ".join(f"{v:6d}" for v in row)
    return line


def _train(args: argparse.Namespace) -> int:
    from .distributed import ranks_from_env, spread
    from .experiment import check_can_train, train
    from .trainer import resolve_device

    ranks = ranks_from_env()  # under torchrun: only rank 0 speaks (and writes)
    check_can_train(args.out, args.resume)  # a refused folder says so before anything is chosen or trained
    # under torchrun, rank 0 alone chooses a folder's settings (short trial runs) and tells the others: the
    # choice of one process, made once
    cfg, chosen = spread([("config", functools.partial(_run_config, args))],
                         resolve_device(args.device or "auto"))["config"]
    dev = resolve_device(cfg.train.device)
    what = f"the {cfg.model.name} baseline" if cfg.is_baseline else "SACNN"
    preset = "auto" if cfg.data.source == "folder" else args.preset or ("cpu" if cfg.is_baseline else "fast")
    if ranks.main:
        print(f"training {what} ({preset} preset) on {dev}"
              + (" with mixed precision" if dev.type == "cuda" and cfg.train.amp else "") + f"; run folder {args.out}"
              + (f"; {ranks.world} processes, a global batch of {ranks.world} × {cfg.train.batch_size}"
                 if ranks.distributed else ""))
        if chosen:
            print("chosen from the data:\n" + "\n".join(f"  {line}" for line in chosen))
    run = train(cfg, args.out, resume=args.resume, progress=not args.quiet and ranks.main)
    if not ranks.main:
        return 0
    if run.nothing_left is not None:
        print(f"nothing left to do: {run.nothing_left}")
        return 0
    last = run.history.epochs[-1]
    print(f"done: {last['epoch']} epochs, {last['train_time']:.0f} s of training; "
          f"validation accuracy {last.get('val_accuracy', math.nan):.4f}, "
          f"pointing game {last.get('val_pointing_game', math.nan):.4f}")
    key = cfg.train.keep_best
    if key is not None:
        best = run.history.best_epoch(key)
        print(f"best {key}: {run.history[best][key]:.4f} at epoch {best}, kept in {Path(args.out) / 'best.pt'}"
              if best is not None else f"no epoch had a {key}: no best.pt")
    return 0


def _json_ready(d: Any) -> Any:
    """NaN (not JSON) becomes null, in nested dicts and lists too."""
    if isinstance(d, dict):
        return {k: _json_ready(v) for k, v in d.items()}
    if isinstance(d, (list, tuple)):
        return [_json_ready(v) for v in d]
    return None if isinstance(d, float) and math.isnan(d) else d


def _warn_if_faces_differ(checkpoint: str, data: str, config) -> None:
    """On stderr, when generated character images on this machine use other faces than the run's."""
    from .experiment import faces_differ

    if data == "characters" or str(data).startswith("characters:"):
        path = Path(checkpoint)
        note = faces_differ(path if path.is_dir() else path.parent, config)
        if note is not None:
            print(f"warning: {note}", file=sys.stderr)


def _evaluate(args: argparse.Namespace) -> int:
    from .experiment import evaluate, load_data, load_model, run_test_split

    model, config = load_model(args.checkpoint)
    if args.data is None:
        data = run_test_split(args.checkpoint, config, args.n)
        _warn_if_faces_differ(args.checkpoint, "characters" if config.data.source == "characters" else "", config)
    else:
        data = load_data(args.data, config, args.n)
        _warn_if_faces_differ(args.checkpoint, args.data, config)
    t = time.perf_counter()
    metrics = evaluate(model, data, tolerance=args.tolerance, localisation=True)
    if "types" in metrics:
        metrics["type_names"] = data.type_names
    metrics["images"] = len(data.labels)
    metrics["seconds"] = time.perf_counter() - t
    if args.json:
        print(json.dumps(_json_ready(metrics), indent=1))
    else:
        print(f"{len(data.labels)} images: {_summary(metrics)}")
    return 0


def _compare(args: argparse.Namespace) -> int:
    from .compare import compare
    from .experiment import load_data, load_model

    sacnn, config = load_model(args.sacnn)
    baseline, _ = load_model(args.baseline)
    data = load_data(args.data, config, args.n)
    _warn_if_faces_differ(args.sacnn, args.data, config)
    c = compare(sacnn, baseline, data, n=args.n, batch_size=args.batch_size)
    if args.out:
        out = Path(args.out)
        out.mkdir(parents=True, exist_ok=True)
        c.table.to_csv(out / "table.csv", index=False)
        c.summary.to_csv(out / "summary.csv", index_label="method")
        c.costs.to_csv(out / "costs.csv", index_label="method")
        c.figure.savefig(out / "compare_maps.png", dpi=110)
    if args.json:
        print(json.dumps({"images": len(c.table) // len(c.summary),
                          "summary": {m: _json_ready(r) for m, r in c.summary.to_dict(orient="index").items()},
                          "costs": {m: _json_ready(r) for m, r in c.costs.to_dict(orient="index").items()}},
                         indent=1))
    else:
        cols = ["accuracy", "auroc", "pointing_game", "energy_pointing_game", "iou_fixed", "iou_otsu",
                "compactness_fixed", "compactness_otsu", "pixel_auroc", "false_alarm_area"]
        print(f"{len(c.table) // len(c.summary)} images")
        print(c.summary[cols].T.to_string(float_format=lambda v: f"{v:.3f}"))
        print("map cost (ms per image):")
        print(c.costs[["forward_ms", "map_ms", "map_over_forward"]].to_string(float_format=lambda v: f"{v:.2f}"))
    if args.out and not args.json:
        print(f"table.csv, summary.csv, costs.csv and compare_maps.png written to {args.out}")
    return 0


def _output_names(paths: list[Path]) -> list[Path]:
    """Where each input's overlay goes, relative to the output folder: its path below the inputs' common
    folder, so that ``a/x.png`` and ``b/x.png`` give ``a/x_overlay.png`` and ``b/x_overlay.png`` (and
    ``x.png`` beside ``x.jpg`` keep their suffixes)."""
    import os

    full = [p.resolve() for p in paths]
    common = Path(os.path.commonpath([p.parent for p in full]))
    names = [p.relative_to(common).with_name(p.stem + "_overlay.png") for p in full]
    inputs: dict[Path, set[Path]] = {}
    for n, p in zip(names, full):
        inputs.setdefault(n, set()).add(p)
    # x.png and x.jpg side by side: each keeps its suffix (x_png_overlay.png, x_jpg_overlay.png)
    return [p.relative_to(common).with_name(f"{p.stem}_{p.suffix.lstrip('.')}_overlay.png")
            if len(inputs[n]) > 1 else n for n, p in zip(names, full)]


def _image_paths(names: list[str]) -> list[Path]:
    """The image files named: a file as given, a folder as every image below it (sorted; other files, hidden
    ones and the truth folders below it, ``masks/`` and DAGM's ``Label/`` and ``Mask/``, left out: name a
    truth folder itself to predict on it)."""
    from data_gen.folders import IMAGE_SUFFIXES

    truth = {"masks", "label", "mask"}
    paths: list[Path] = []
    for name in names:
        path = Path(name)
        if path.is_dir():
            found = sorted(p for p in path.rglob("*") if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES
                           and not any(part.startswith(".") or part.lower() in truth
                                       for part in p.relative_to(path).parts[:-1])
                           and not p.name.startswith("."))
            if not found:
                raise ValueError(f"{path} holds no image ({', '.join(IMAGE_SUFFIXES)})")
            paths += found
        else:
            paths.append(path)
    return paths


PREDICTION_COLUMNS = ("image", "overlay", "score", "defective", "type", "boxes", "error")


def _write_predictions(out: Path, results: list[dict]) -> None:
    """``predictions.json`` and ``predictions.csv`` (one row per image; ``boxes`` as
    ``x0 y0 x1 y1 score`` groups joined by ``;``), each written whole or not at all."""
    import csv
    import io

    from .runfolder import atomic_write_bytes

    atomic_write_bytes(out / "predictions.json", json.dumps(results, indent=1).encode())
    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=PREDICTION_COLUMNS, lineterminator="\n")
    w.writeheader()
    for r in results:
        row = {k: ("" if r.get(k) is None else r.get(k)) for k in PREDICTION_COLUMNS}
        if "boxes" in r:
            row["boxes"] = ";".join(" ".join(f"{v:g}" for v in b) for b in r["boxes"])
        if "score" in r:
            row["score"] = f"{r['score']:.6f}"
        w.writerow(row)
    atomic_write_bytes(out / "predictions.csv", buf.getvalue().encode())


def _scorer(args: argparse.Namespace):
    """``(score_map, field, box_size)`` for ``predict``: ``score_map(image)`` gives ``(score, map, called
    type or None)`` of one uint8 image, from the checkpoint through PyTorch, or from the exported graph
    through onnxruntime (``--model``: torch is not imported); ``field`` the network's visual field in px
    (``None`` where unknown); ``box_size`` the NMS boxes' side; ``color`` whether images are read as RGB."""
    if (args.model is None) == (args.checkpoint is None):
        raise ValueError("give --checkpoint (a run folder or checkpoint, run through PyTorch) or --model (an "
                         "exported .onnx, run through onnxruntime), not both")
    if args.model is not None:
        from .runtime import OnnxModel

        onnx = OnnxModel(args.model)
        if not onnx.maps:
            raise ValueError(f"{args.model} gives a score only (the Grad-CAM baseline's export: its maps need "
                             f"gradients); predict needs a SACNN export")
        types = onnx.meta.get("defect_types")
        field = onnx.meta.get("receptive_field")

        def from_onnx(img: np.ndarray):
            p = onnx.predict(img, tile=args.tile)
            called = types[int(p.types[0].argmax())] if types and len(types) > 1 else None
            return float(p.score[0]), p.map[0], called

        return from_onnx, field, int(field) if field else None, onnx.channels == 3
    if args.tile is not None:
        raise ValueError("--tile cuts large images for the exported model (--model); a checkpoint runs each image "
                         "in one pass")
    from .experiment import load_model
    from .inference import predict
    from .model import SACNN, receptive_field

    model, config = load_model(args.checkpoint)
    field = None
    if isinstance(model, SACNN) and config.model.backbone is None:
        field = receptive_field(config.model)[-1]["rf"]

    def from_torch(img: np.ndarray):
        if isinstance(model, SACNN):
            model.feature_size(*img.shape[:2])  # too small for the poolings: a clear error, not torch's
        p = predict(model, img[None])
        whole = p.any_type()  # several defect types: any of them
        called = None  # a K-type run: the type whose layer scores highest
        if p.score.ndim == 2 and config.data.defect_types:
            called = config.data.defect_types[int(p.score[0].argmax())]
        return float(whole.score[0]), whole.map[0].numpy(), called

    color = getattr(config.model, "in_channels", 1) == 3 and config.data.color
    return from_torch, field, field, color


def _export(args: argparse.Namespace) -> int:
    from .export import export_run, sidecar_path

    meta = export_run(args.checkpoint, args.out, size=args.size)
    v = meta["verified"]
    sizes = ", ".join(f"{w}×{h}" for h, w in v["sizes"])
    print(f"{args.out}: {meta['model']}, {'score and map' if meta['maps'] else 'score only (no map: gradients)'}; "
          f"checked against PyTorch at {sizes}: scores within {v['score_max_diff']:.1e}, maps within "
          f"{v['map_max_diff']:.1e} (tolerance {v['tolerance']:g}); {sidecar_path(args.out)} beside it")
    return 0


def _predict(args: argparse.Namespace) -> int:
    from . import plots
    from .images import read_image
    from .localise import localise

    score_map, field, box_size, color = _scorer(args)
    paths = _image_paths(args.images)
    out = Path(args.out)
    results, failed = [], 0
    for path, rel in zip(paths, _output_names(paths)):
        try:
            img = read_image(path, color=color)  # a photograph of any common format, as gray (or RGB)
            score, m, called = score_map(img)
            if not math.isfinite(score) or not np.isfinite(m).all():
                raise FloatingPointError(f"the model gives non-finite output for {path} (its weights or this "
                                         f"image): no score to report")
        except (ValueError, FileNotFoundError, FloatingPointError) as exc:
            failed += 1
            print(f"error: {exc}", file=sys.stderr)
            results.append({"image": str(path), "error": str(exc)})
            continue
        if field is not None and min(img.shape[:2]) < field:
            print(f"warning: {path} is {img.shape[1]}×{img.shape[0]} px, smaller than the network's "
                  f"{field:g} px visual field: its score and map mean little", file=sys.stderr)
        boxes = localise(m, method=args.method, box_size=box_size) if score >= 0.5 else []
        target = out / rel
        target.parent.mkdir(parents=True, exist_ok=True)
        plots.prediction(img, m, boxes=[(b.x0, b.y0, b.x1, b.y1) for b in boxes], score=score, name=str(path),
                         path=target)
        results.append({"image": str(path), "overlay": str(rel), "score": score, "defective": score >= 0.5,
                        **({"type": called if score >= 0.5 else None} if called is not None else {}),
                        "boxes": [[b.x0, b.y0, b.x1, b.y1, round(b.score, 4)] for b in boxes]})
    out.mkdir(parents=True, exist_ok=True)
    _write_predictions(out, results)
    for r in results:
        if "error" not in r:
            print(f"{r['image']}: p={r['score']:.3f} {'defective' if r['defective'] else 'defect-free'} "
                  f"{len(r['boxes'])} box(es)")
    print(f"overlays, predictions.json and predictions.csv written to {out}"
          + (f"; {failed} of {len(paths)} image(s) could not be scored (listed there with their error)"
             if failed else ""))
    return 2 if failed == len(paths) else 1 if failed else 0


def _demo(args: argparse.Namespace) -> int:
    from data_gen.folders import staged_folder

    from .config import RunConfig
    from .runfolder import LOCK, check_run_folder, foreign_entries, run_lock

    cfg = RunConfig.preset("fast")
    if args.max_time is not None:
        cfg.train = replace(cfg.train, max_time=args.max_time)
    out = check_run_folder(args.out, deep=True)  # a folder of other files is refused, never emptied

    def an_earlier_demo(folder: Path) -> bool:  # a demo writes test_metrics.json last; a training never does
        held = [p for p in folder.iterdir() if p.name != LOCK] if folder.is_dir() else []
        return not foreign_entries(folder, deep=True) and (not held or (folder / "test_metrics.json").is_file())

    if not an_earlier_demo(out):
        raise FileExistsError(f"{out} holds a training run, not an earlier demo: the demo replaces only its own "
                              f"runs; choose another --out")
    print("sacnn-lab demo: training SACNN (fast preset) on the generated character set, "
          "from image-level labels only")
    # the folder is locked while the demo runs (no training can start there meanwhile); the new demo is
    # made beside the old one and takes its place only when complete
    with run_lock(out), staged_folder(out, overwrite=True, replaceable=an_earlier_demo) as stage:
        test_figures = _demo_into(cfg, stage, args.quiet)
    print(f"test: {_summary(test_figures)}")
    print(f"figure of test images with their defect maps and true boxes: {out / 'defect_maps.png'}")
    return 0


def _demo_into(cfg, folder: Path, quiet: bool) -> dict:
    from .experiment import evaluate, split, train
    from .inference import predict
    from .plots import defect_maps

    run = train(cfg, folder, progress=not quiet)
    test = split(cfg, "test")
    print(f"evaluating on {len(test)} test images of an unseen seed ...")
    m = evaluate(run.model, test)
    probe = split(cfg, "probe", n=16)
    p = predict(run.model, probe.images)
    defect_maps(probe.images, p.map.numpy(), [probe.boxes_of(i) for i in range(len(probe))], p.score.numpy(),
                probe.labels, title="SACNN defect maps on test images (true boxes in white)",
                path=folder / "defect_maps.png")
    (folder / "test_metrics.json").write_text(json.dumps(m, indent=1))
    return m


def _gallery(args: argparse.Namespace) -> int:
    from data_gen.characters import CharacterConfig, CharacterGenerator

    from .plots import gallery

    cfg = CharacterConfig.authors(train=False) if args.preset == "authors" else CharacterConfig()
    gen = CharacterGenerator(cfg)
    b = gen.generate(args.seed, np.arange(args.n))
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    gallery(b.images, b.labels, [b.boxes_of(i) for i in range(len(b))],
            title=f"character set ({args.preset}), seed {args.seed}: true boxes in red", path=out)
    print(f"{len(gen.faces)} font faces; {int(b.labels.sum())} of {len(b)} images defective; "
          f"gallery written to {out}")
    return 0


class _HelpFormatter(argparse.RawDescriptionHelpFormatter):
    """Descriptions and epilogs wrapped paragraph by paragraph (a blank line between paragraphs is kept);
    a paragraph with indented lines (a list, examples) is printed as written."""

    def _fill_text(self, text: str, width: int, indent: str) -> str:
        import textwrap

        paragraphs = []
        for block in text.strip("\n").split("\n\n"):
            lines = block.splitlines()
            if any(line.startswith(" ") for line in lines):
                paragraphs.append("\n".join(indent + line for line in lines))
            else:
                paragraphs.append(textwrap.fill(" ".join(line.strip() for line in lines), width,
                                                initial_indent=indent, subsequent_indent=indent))
        return "\n\n".join(paragraphs)


#: The commands in the order ``sacnn-lab --help`` lists them, each with its one-line summary (at most 54
#: characters: one line of an 80-column help).
COMMANDS = {
    "demo": "train a small SACNN on a CPU and draw its defect maps",
    "train": "train SACNN (or the baseline) on a data set or folder",
    "evaluate": "measure a run on test images (accuracy, localisation)",
    "predict": "score images, draw their maps and boxes, write a CSV",
    "export": "export a run's model to ONNX, checked against PyTorch",
    "compare": "SACNN against the Grad-CAM baseline on the same images",
    "gallery": "draw generated images with their true defect boxes",
}

DESCRIPTION = """\
SACNN finds defects in images while learning from image labels only (defective or defect-free): for every
image it gives a probability of being defective and a map of where the defect is. This command line
trains it on the generated data sets, the DAGM 2007 texture set or a folder of your own images, measures
runs, draws maps and boxes on new images, compares SACNN with a Grad-CAM baseline and exports a run to
ONNX."""

EXAMPLES = """\
examples:
  sacnn-lab demo
  sacnn-lab train --data characters --preset fast --out runs/fast
  sacnn-lab evaluate --checkpoint runs/fast --json
  sacnn-lab predict --checkpoint runs/fast --out runs/pred img1.png images/
  sacnn-lab train --model baseline --preset cpu --out runs/vgg
  sacnn-lab compare --sacnn runs/fast --baseline runs/vgg --out runs/cmp
  sacnn-lab export --checkpoint runs/fast --out model.onnx
  sacnn-lab predict --model model.onnx --out runs/pred images/"""


def _epilog(*examples: str) -> str:
    return "examples:\n" + "\n".join(f"  sacnn-lab {e}" for e in examples)


def build_parser() -> argparse.ArgumentParser:
    """The ``sacnn-lab`` argument parser: every command of :data:`COMMANDS` as a subparser, every option with
    its help; :func:`main` parses with it.

    Parsing runs nothing, so the parser also checks a command line written elsewhere (a README, a notebook)::

        args = build_parser().parse_args(shlex.split("sacnn-lab train --preset fast --out runs/x")[1:])
        args.command, args.preset, args.out   # 'train', 'fast', 'runs/x'

    An unknown command or flag, or a missing required option, raises :class:`SystemExit` (status 2, the
    reason on stderr), as ``--help`` does (status 0). :func:`subcommands` gives the commands' own parsers.
    """
    p = argparse.ArgumentParser(
        prog="sacnn-lab", description=DESCRIPTION, formatter_class=_HelpFormatter,
        epilog=f"Run 'sacnn-lab COMMAND --help' for a command's options and examples.\n\n{EXAMPLES}")
    sub = p.add_subparsers(dest="command", required=True, title="commands",
                           help="the command to run, one of:")

    def command(name: str, description: str, epilog: str) -> argparse.ArgumentParser:
        return sub.add_parser(name, help=COMMANDS[name], description=description, epilog=epilog,
                              formatter_class=_HelpFormatter)

    d = command("demo", "Train SACNN with the fast preset on the generated character set, from image labels only "
                        "(a few minutes on a CPU), then report its figures on test images of an unseen seed and "
                        "draw the defect maps of 16 test images with their true boxes (defect_maps.png in the run "
                        "folder, beside test_metrics.json).\n\n"
                        "The run folder is replaced only when it holds an earlier demo, and only once the new "
                        "demo is complete; a folder holding a training run or other files is refused.",
                _epilog("demo", "demo --out runs/demo2 --max-time 60"))
    d.add_argument("--out", default="runs/demo", metavar="DIR",
                   help="the demo's run folder (default: %(default)s)")
    d.add_argument("--max-time", type=float, metavar="SECONDS",
                   help="stop training after this many seconds (default: no limit, the preset's epochs)")
    d.add_argument("--quiet", action="store_true", help="no progress bars")
    d.set_defaults(run=_demo)

    t = command("train", "Train SACNN, or the Grad-CAM / VGG19 baseline (--model baseline), on a generated set "
                         "(characters, textile), a DAGM 2007 class folder, a labelled folder or a folder of your "
                         "own images. The run folder receives the configuration (config.json), the checkpoint "
                         "after every epoch (checkpoint.pt) and the training history; an interrupted run "
                         "continues with the same command and --resume.\n\n"
                         "An option left out takes the preset's value; for a folder of your own the settings are "
                         "chosen from its images (and printed). Under torchrun the same command trains on "
                         "several processes.",
                _epilog("train --data characters --preset fast --out runs/fast",
                        "train --data textile --out runs/textile",
                        "train --data my_photos --defect-types --out runs/types",
                        "train --model baseline --preset cpu --out runs/vgg"))
    t.add_argument("--out", required=True, metavar="DIR",
                   help="run folder to write (required): config.json, checkpoint.pt after every epoch, the "
                        "history, best.pt with --keep-best. A new or empty folder, or one holding a run (then "
                        "with --resume); a folder holding other files is refused")
    t.add_argument("--resume", action="store_true",
                   help="continue the run in --out from its last checkpoint, with the same options it was "
                        "started with")
    _add_train_args(t)
    t.set_defaults(run=_train)

    e = command("evaluate", "Measure a trained run on test images: accuracy, precision, recall and AUROC of the "
                            "image scores, and how well the defect maps find the defects (the pointing game; with "
                            "true masks also IoU, Dice, compactness, pixel AUROC and AP, and the false alarms on "
                            "defect-free images). By default the run's own test split; --data names other "
                            "images. Prints a summary, or every figure as JSON with --json.",
                _epilog("evaluate --checkpoint runs/fast --json",
                        "evaluate --checkpoint runs/fast --data characters:7 --n 500",
                        "evaluate --checkpoint runs/mine --data other_photos --tolerance 8"))
    e.add_argument("--checkpoint", required=True, metavar="PATH",
                   help="the run to measure (required): a run folder (its checkpoint.pt) or a checkpoint file "
                        "(e.g. a run's best.pt)")
    e.add_argument("--data", metavar="SPEC",
                   help="the test images: characters (the run's test split) or characters:SEED (the generator "
                        "at another seed), textile, a DAGM 2007 class folder (its Test split), a folder of your "
                        "own (all its images) or a labelled folder (labels.csv). Default: the run's own test "
                        "split (a folder run: exactly the test files it held out)")
    e.add_argument("--n", type=int, metavar="N",
                   help="measure the first N images only (default: the run's test_size for a generated split, "
                        "all images of a folder)")
    e.add_argument("--tolerance", type=float, default=0.0, metavar="PX",
                   help="pointing game: a map's maximum within PX pixels of the true defect also counts as a "
                        "hit (default: %(default)s, exact; Zhang et al. 2016 use 15)")
    e.add_argument("--json", action="store_true", help="print every figure as JSON instead of the summary")
    e.set_defaults(run=_evaluate)

    r = command("predict", "Score image files with a trained run and draw their defect maps and boxes: an "
                           "overlay per image (its path below the images' common folder kept), predictions.json "
                           "and predictions.csv (image, overlay, score, defective, the type a run of several "
                           "defect types calls, boxes, error). An image is called defective when its score is "
                           "at least 0.5; only defective images get boxes.\n\n"
                           "An image that cannot be scored is reported and listed there with its error, and the "
                           "others go on; the exit status is 1 when some could not be scored, 2 when none could.",
                _epilog("predict --checkpoint runs/fast --out runs/pred img1.png img2.png",
                        "predict --checkpoint runs/mine --method otsu my_photos",
                        "predict --model model.onnx --tile 1024 --out runs/pred strips/"))
    r.add_argument("--checkpoint", metavar="PATH",
                   help="the run to use, run through PyTorch: a run folder or a checkpoint file; give this or "
                        "--model")
    r.add_argument("--model", metavar="ONNX",
                   help="a model.onnx written by 'sacnn-lab export' (its JSON beside it), run through "
                        "onnxruntime without PyTorch; give this or --checkpoint")
    r.add_argument("--tile", type=int, metavar="PX",
                   help="with --model: cut images larger than PX × PX pixels into overlapping tiles (the map "
                        "equals one pass; memory bounded by the tile); default: each image in one pass")
    r.add_argument("--out", default="runs/predict", metavar="DIR",
                   help="folder for the overlays, predictions.json and predictions.csv (default: %(default)s)")
    r.add_argument("--method", choices=["threshold", "otsu", "nms"], default="threshold",
                   help="how a defective image's map becomes boxes: threshold, the regions above 0.5; otsu, the "
                        "regions above Otsu's threshold of the map; nms, the peaks, with non-maximum suppression "
                        "(default: %(default)s)")
    r.add_argument("images", nargs="+", metavar="IMAGE",
                   help="image files (PNG, JPEG, BMP, TIFF, ...) or folders: every image below a folder, sorted "
                        "(hidden files and the truth folders masks/, Label/ and Mask/ left out)")
    r.set_defaults(run=_predict)

    x = command("export", "Export a run's model to one ONNX graph (dynamic batch, height and width; the input "
                          "scaling inside: feed images scaled to [0, 1]) with a JSON file beside it (the input "
                          "convention, thresholds, receptive field and stride, versions, the configuration's "
                          "hash). Every export is checked: the ONNX checker, then onnxruntime against PyTorch at "
                          "two other sizes. The Grad-CAM baseline exports its score only (its maps need "
                          "gradients).",
                _epilog("export --checkpoint runs/fast --out model.onnx",
                        "export --checkpoint runs/textile --out textile.onnx --size 512 512"))
    x.add_argument("--checkpoint", required=True, metavar="PATH",
                   help="the run to export (required): a run folder or a checkpoint file")
    x.add_argument("--out", default="model.onnx", metavar="FILE",
                   help="the .onnx file to write, the JSON beside it under the same name (default: "
                        "%(default)s, with model.json)")
    x.add_argument("--size", type=int, nargs=2, metavar=("H", "W"),
                   help="height and width in pixels of the example input the graph is traced with (default: "
                        "the run's training size); the graph takes any size")
    x.set_defaults(run=_export)

    c = command("compare", "Run a SACNN run and a Grad-CAM baseline run on the same images and measure both the "
                           "same way: the image figures (accuracy, AUROC), the localisation figures (pointing "
                           "game, IoU, compactness, pixel AUROC, false alarms) and what a map costs (milliseconds "
                           "per image, for the forward pass and for the map). Prints the summary and the costs, "
                           "or JSON with --json.",
                _epilog("compare --sacnn runs/fast --baseline runs/vgg --out runs/cmp",
                        "compare --sacnn runs/fast --baseline runs/vgg --n 500 --json"))
    c.add_argument("--sacnn", required=True, metavar="PATH",
                   help="the SACNN run (required): a run folder or a checkpoint file")
    c.add_argument("--baseline", required=True, metavar="PATH",
                   help="the Grad-CAM baseline run (required): a run folder or a checkpoint file")
    c.add_argument("--data", default="characters", metavar="SPEC",
                   help="the images: characters (the SACNN run's test split), characters:SEED (the generator at "
                        "another seed), or a folder, as evaluate --data takes them (default: %(default)s)")
    c.add_argument("--n", type=int, metavar="N",
                   help="use the first N images only (default: the run's test_size, or the whole folder)")
    c.add_argument("--batch-size", type=int, default=50, metavar="N",
                   help="images per pass, the same for both methods (default: %(default)s)")
    c.add_argument("--out", metavar="DIR",
                   help="also write table.csv (per image), summary.csv, costs.csv and compare_maps.png (the "
                        "maps side by side) into this folder (default: nothing written)")
    c.add_argument("--json", action="store_true", help="print the summary and costs as JSON instead of tables")
    c.set_defaults(run=_compare)

    g = command("gallery", "Draw generated character images in a grid with their true defect boxes, to see what "
                           "the generator makes, as one PNG. Prints how many font faces were found and how many "
                           "of the images are defective.",
                _epilog("gallery --out runs/gallery.png", "gallery --preset authors --n 64 --seed 3"))
    g.add_argument("--out", default="runs/gallery.png", metavar="PNG",
                   help="the PNG file to write (default: %(default)s)")
    g.add_argument("--n", type=int, default=32, metavar="N", help="images shown (default: %(default)s)")
    g.add_argument("--seed", type=int, default=0,
                   help="the generator's seed: the same seed gives the same images (default: %(default)s)")
    g.add_argument("--preset", choices=["default", "authors"], default="default",
                   help="the generator's settings: default, this project's; authors, the generator the paper's "
                        "authors published, with its test-split settings (default: %(default)s)")
    g.set_defaults(run=_gallery)
    return p


def subcommands(parser: argparse.ArgumentParser | None = None) -> dict[str, argparse.ArgumentParser]:
    """The commands of ``parser`` (default: a new :func:`build_parser`), name → the command's own parser,
    in the order ``--help`` lists them."""
    parser = build_parser() if parser is None else parser
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            return dict(action.choices)
    return {}


def _interrupted(args: argparse.Namespace) -> str:
    """What a Ctrl-C left behind, and how to go on."""
    if args.command == "train":
        ckpt = Path(args.out) / "checkpoint.pt"
        try:
            from .callbacks import read_checkpoint

            epoch = int(read_checkpoint(ckpt)["epoch"])
        except (OSError, ValueError, KeyError):
            return f"interrupted before the first epoch ended: nothing was saved in {args.out}"
        return (f"interrupted: epochs 1–{epoch} are saved in {ckpt}; continue with the same command and "
                f"--resume")
    if args.command == "demo":
        return f"interrupted: {args.out} is as it was before this demo"
    return "interrupted"


def main(argv: list[str] | None = None) -> int:
    """Run one command; every failure ends in one ``error: ...`` line on stderr and exit status 2 (130 after
    Ctrl-C), never a traceback (``SACNN_DEBUG=1`` shows the traceback of an unexpected error)."""
    import os

    args = build_parser().parse_args(argv)
    try:
        return args.run(args)
    except KeyboardInterrupt:
        print(_interrupted(args), file=sys.stderr)
        return 130
    except (ValueError, OSError, NoUsableFontsError, FloatingPointError, RuntimeError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except Exception as exc:  # noqa: BLE001 - a bug of ours: still one line, the traceback on request
        if os.environ.get("SACNN_DEBUG"):
            raise
        print(f"error: unexpected {type(exc).__name__}: {exc} (SACNN_DEBUG=1 shows where)", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
