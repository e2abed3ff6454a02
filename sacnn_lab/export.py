"""Export to ONNX, for an inspection line: one graph from [0, 1] images to the image score and the full-resolution
defect map, a small JSON beside it with what a runtime needs, and a check against PyTorch on every export.

    from sacnn_lab.export import export_run
    report = export_run("runs/fast", "model.onnx")     # writes model.onnx and model.json, verified
    report["verified"]                                 # the largest differences from PyTorch, per size

The graph (SACNN, any aggregation) has two inputs and three outputs:

- ``image``: float32 ``(B, C, H, W)`` in [0, 1] (C = 1 gray, 3 RGB); the batch, height and width are dynamic.
  The model's own input scaling is inside the graph: a runtime feeds [0, 1] pixels and nothing else.
- ``background``: float32 ``(C,)``, optional (it has a default): for a network that takes each image as its
  absolute deviation from its background gray (``input_norm="abs_deviation"``), a value ``>= 0`` is used as
  that gray instead of the image's own median. Only the tiled runtime sets it (each tile then keeps the whole
  image's background, so that the stitched map equals the single pass); the default, ``-1``, means "the
  image's own".
- ``score``: ``(B, K)``, each defect type's image probability (the competition's maximum, or the network's
  other aggregation); ``map``: ``(B, K, H, W)``, the defective layers resized bilinearly to the input (the
  defect map); ``cells``: ``(B, K, s, t)``, the layers themselves (what the tiled runtime stitches).

The Grad-CAM baseline exports its score only (``image`` → ``score`` ``(B, 1)``): its map needs the gradients
of a backward pass, which an inference graph does not have.

The JSON (``model.json`` beside ``model.onnx``) holds the input convention, the thresholds (0.5 for the image
score and the map; a validation-chosen image threshold where the run has one, else ``null``), the receptive
field, the stride and the layers' geometry (for tiling), the aggregation, the defect types, the size the
network trained on, the package and torch versions, the SHA-256 of the training config, and the verification.
"""

from __future__ import annotations

import hashlib
import json
import os
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from .competition import pool
from .model import SACNN, background_gray, block_layers, receptive_field
from .runfolder import atomic_write_bytes

__all__ = ["to_onnx", "export_run", "verify_onnx", "sidecar_path", "FORMAT"]

FORMAT = "sacnn-lab-onnx/1"
OPSET = 18
TOLERANCE = 1e-4
"""Largest difference allowed between onnxruntime's and PyTorch's scores and maps (probabilities)."""


def sidecar_path(onnx_path: str | os.PathLike) -> Path:
    """The JSON beside an exported graph: ``model.onnx`` → ``model.json``."""
    return Path(onnx_path).with_suffix(".json")


class _SacnnGraph(nn.Module):
    """SACNN from [0, 1] images to (score, map, cells), the background optional (see the module's text)."""

    def __init__(self, model: SACNN):
        super().__init__()
        self.model = model
        self.deviation = model.config.input_norm == "abs_deviation"

    def forward(self, image: torch.Tensor, background: torch.Tensor) -> tuple[torch.Tensor, ...]:
        bg = None
        if self.deviation:
            given = background.reshape(1, -1, 1, 1).to(image.dtype)
            bg = torch.where(given >= 0, given, background_gray(image))
        logits = self.model(image, background=bg)
        cells = torch.softmax(logits.float(), dim=1)[:, 1:]
        score = pool(cells, **self.model.aggregation)
        maps = F.interpolate(cells, size=image.shape[-2:], mode="bilinear", align_corners=False)
        return score, maps, cells


class _ScoreGraph(nn.Module):
    """The baseline: [0, 1] images to the defective probability ``(B, 1)``."""

    def __init__(self, model: nn.Module):
        super().__init__()
        self.model = model

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        return self.model.image_scores(self.model(image))[:, None]


def _package_version() -> str:
    try:
        return version("sacnn-lab")
    except PackageNotFoundError:  # a source tree that was never installed
        return "unknown"


def _geometry(model: SACNN) -> dict[str, Any]:
    """The receptive field, stride, first cell's centre and the layers (kernel, stride, padding) in order."""
    c = model.config
    layers = [] if c.input_pool == 1 else [[c.input_pool, c.input_pool, 0]]
    layers += [list(layer) for block in block_layers(c) for layer in block]
    last = receptive_field(c)[-1]
    return {"receptive_field": last["rf"], "stride": last["jump"], "first_centre": last["start"], "layers": layers,
            "min_side": last["jump"]}


def _config_hash(config: Any) -> str | None:
    if config is None:
        return None
    text = json.dumps(config.to_dict(), sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()


def to_onnx(model: nn.Module, path: str | os.PathLike, config: Any = None, size: Sequence[int] | None = None,
            verify: bool = True, sizes: Sequence[Sequence[int]] | None = None, tolerance: float = TOLERANCE,
            threshold: float | None = None) -> dict[str, Any]:
    """Export a model to an ONNX graph and write the JSON beside it; check it against PyTorch.

    Args:
        model: a :class:`~sacnn_lab.model.SACNN` (block extractor, any aggregation) or the Grad-CAM baseline
            (its score only).
        path: the ``.onnx`` file to write (its folder is made); the JSON goes to :func:`sidecar_path`.
        config: the run's :class:`~sacnn_lab.config.RunConfig` (for the JSON: the training size, the defect
            types, the config's hash); ``None``: those stay ``null``.
        size: ``(H, W)`` of the example input the graph is traced with (default: the training size, else 128).
        verify: check the file with ``onnx.checker`` and run it in onnxruntime against PyTorch
            (:func:`verify_onnx`) on two other sizes.
        sizes: those sizes (default: the export size plus (24, -8) px, and half the height by twice the width).
        tolerance: the largest difference allowed in the scores and maps.
        threshold: a validation-chosen image threshold to record beside 0.5.

    Returns:
        The JSON's content (``verified`` holds what the check measured).

    Raises:
        ValueError: a model that does not export (a torchvision backbone), or a size too small for it.
        RuntimeError: the verification failed (nothing is written: an earlier export at ``path`` stays).
    """
    _need_exporter()
    import copy

    model = copy.deepcopy(model).cpu().eval()  # the caller's model keeps its device and mode
    is_sacnn = isinstance(model, SACNN)
    if is_sacnn and model.config.backbone is not None:
        raise ValueError(f"a SACNN on the torchvision backbone {model.config.backbone!r} is not exported: only the "
                         f"block extractor has the fixed geometry the tiled runtime needs")
    channels = int(getattr(model.config, "in_channels", 1))
    trained = None
    if config is not None and getattr(config.data, "image_size", None):
        side = config.data.image_size
        trained = [int(side), int(side)] if isinstance(side, int) else [int(v) for v in side]
    h, w = (int(v) for v in (size or trained or (128, 128)))
    geometry = _geometry(model) if is_sacnn else {}
    if is_sacnn:
        model.feature_size(h, w)  # a clear error for a size the poolings do not survive
    final = Path(path)
    final.parent.mkdir(parents=True, exist_ok=True)
    # written beside the target and moved there once verified: a failed export leaves an earlier one whole
    path = final.with_name(f".{final.stem}.{os.getpid()}.partial.onnx")
    try:
        return _export(model, final, path, config, is_sacnn, channels, trained, geometry, h, w, verify, sizes,
                       tolerance, threshold)
    finally:
        path.unlink(missing_ok=True)
        path.with_name(path.name + ".data").unlink(missing_ok=True)


def _export(model: nn.Module, final: Path, path: Path, config: Any, is_sacnn: bool, channels: int,
            trained: list[int] | None, geometry: dict[str, Any], h: int, w: int, verify: bool,
            sizes: Sequence[Sequence[int]] | None, tolerance: float, threshold: float | None) -> dict[str, Any]:
    """:func:`to_onnx`'s work, into ``path`` (a temporary name), then moved to ``final`` with its JSON."""
    example = torch.rand(2, channels, h, w, generator=torch.Generator().manual_seed(0))
    batch, height, width = torch.export.Dim("batch"), torch.export.Dim("height"), torch.export.Dim("width")
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the exporter's deprecation and tracing notes
        if is_sacnn:
            graph: nn.Module = _SacnnGraph(model).eval()
            args: tuple[torch.Tensor, ...] = (example, torch.full((channels,), -1.0))
            torch.onnx.export(graph, args, str(path), input_names=["image", "background"],
                              output_names=["score", "map", "cells"], opset_version=OPSET, dynamo=True,
                              dynamic_shapes={"image": {0: batch, 2: height, 3: width}, "background": None},
                              optimize=True, verbose=False)
        else:
            graph = _ScoreGraph(model).eval()
            torch.onnx.export(graph, (example,), str(path), input_names=["image"], output_names=["score"],
                              opset_version=OPSET, dynamo=True, dynamic_shapes={"image": {0: batch}},
                              optimize=True, verbose=False)
    _one_file(path, channels if is_sacnn else None)
    data = getattr(config, "data", None)
    meta: dict[str, Any] = {
        "format": FORMAT,
        "model": type(model).__name__,
        "input": {"name": "image", "dtype": "float32", "layout": "NCHW", "range": [0.0, 1.0], "channels": channels,
                  "color": "rgb" if channels == 3 else "gray",
                  "dynamic": ["batch", "height", "width"] if is_sacnn else ["batch"],
                  "size": None if is_sacnn else [h, w],
                  "normalisation": getattr(model.config, "input_norm", None),
                  "background": "optional (C,) grays, -1: each image's own median" if is_sacnn else None},
        "outputs": {"score": "(B, K) image probability of each defect type",
                    **({"map": "(B, K, H, W) defect map", "cells": "(B, K, s, t) defective layers"} if is_sacnn
                       else {})},
        "maps": is_sacnn,
        "thresholds": {"image": 0.5, "map": 0.5, "validation": threshold},
        "aggregation": model.aggregation if is_sacnn else None,
        "defect_types": list(data.defect_types) if data is not None and data.defect_types else None,
        "trained_size": trained,
        **geometry,
        "package_version": _package_version(),
        "torch_version": torch.__version__,
        "opset": OPSET,
        "config_sha256": _config_hash(config),
    }
    if verify:
        meta["verified"] = verify_onnx(path, model, sizes or _other_sizes(h, w, geometry), tolerance)
    os.replace(path, final)
    atomic_write_bytes(sidecar_path(final), json.dumps(meta, indent=1).encode())
    return meta


def _need_exporter() -> None:
    """Refuse clearly when the export's packages are missing (they are an extra, not a dependency)."""
    import importlib.util

    missing = [m for m in ("onnx", "onnxscript", "onnxruntime") if importlib.util.find_spec(m) is None]
    if missing:
        raise RuntimeError(f"exporting to ONNX needs {', '.join(missing)}: pip install 'sacnn-lab[export]'")


def _one_file(path: Path, background: int | None) -> None:
    """Rewrite the exported graph as one self-contained file (the exporter may put the weights in a ``.data``
    file beside it, named after the temporary file); with ``background`` channels, give the graph's
    ``background`` input a default of ``-1`` per channel (an initializer of the same name: onnxruntime then lets
    a caller leave it out, or override it)."""
    import onnx
    from onnx import numpy_helper

    m = onnx.load(str(path))  # the external weights, if any, read in
    if background and not any(t.name == "background" for t in m.graph.initializer):
        m.graph.initializer.append(numpy_helper.from_array(np.full((background,), -1.0, np.float32), "background"))
    onnx.save(m, str(path), save_as_external_data=False)
    path.with_name(path.name + ".data").unlink(missing_ok=True)


def _other_sizes(h: int, w: int, geometry: dict[str, Any]) -> list[list[int]]:
    if not geometry:  # the baseline: fixed size
        return [[h, w]]
    step = int(geometry["stride"])
    return [[h + 24, max(step, w - 8)], [max(step, h // 2), 2 * w]]


def verify_onnx(path: str | os.PathLike, model: nn.Module, sizes: Sequence[Sequence[int]],
                tolerance: float = TOLERANCE) -> dict[str, Any]:
    """Check an exported graph: ``onnx.checker``, then onnxruntime against PyTorch on seeded random images of
    each size (two images each), the scores and maps within ``tolerance``, and each image's winning cell the
    same (or one whose value ties with it within ``tolerance``).

    Returns:
        ``{"sizes": [[H, W], ...], "score_max_diff": ..., "map_max_diff": ..., "tolerance": ...}``.

    Raises:
        RuntimeError: a difference beyond ``tolerance``, or another winner.
    """
    import onnx
    import onnxruntime as ort

    onnx.checker.check_model(str(path), full_check=True)
    ort.set_default_logger_severity(3)  # the optional input's default (an initializer) is a note, not a problem
    sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    names = [i.name for i in sess.get_inputs()]
    channels = int(getattr(model.config, "in_channels", 1))
    g = torch.Generator().manual_seed(1)
    worst_score = worst_map = 0.0
    for h, w in sizes:
        x = torch.rand(2, channels, int(h), int(w), generator=g)
        feed = {"image": x.numpy()}
        with torch.inference_mode():
            if isinstance(model, SACNN):
                score_t, map_t, cells_t = (t.numpy() for t in _SacnnGraph(model)(x, torch.full((channels,), -1.0)))
            else:
                score_t = _ScoreGraph(model)(x).numpy()
        out = sess.run(None, {k: v for k, v in feed.items() if k in names})
        worst_score = max(worst_score, float(np.abs(out[0] - score_t).max()))
        if isinstance(model, SACNN):
            worst_map = max(worst_map, float(np.abs(out[1] - map_t).max()))
            cells_o = out[2].reshape(*out[2].shape[:2], -1)
            won = cells_t.reshape(*cells_t.shape[:2], -1).argmax(-1)
            at = np.take_along_axis(cells_o, won[..., None], -1)[..., 0]
            if not np.all(cells_o.max(-1) - at <= tolerance):
                raise RuntimeError(f"{path}: onnxruntime's winning cell differs from PyTorch's at {h}×{w}")
    if worst_score > tolerance or worst_map > tolerance:
        raise RuntimeError(f"{path}: onnxruntime differs from PyTorch by {max(worst_score, worst_map):.2e} "
                           f"(tolerance {tolerance:g})")
    return {"sizes": [[int(h), int(w)] for h, w in sizes], "score_max_diff": worst_score, "map_max_diff": worst_map,
            "tolerance": tolerance, "onnxruntime": ort.__version__}


def export_run(checkpoint: str | os.PathLike, out: str | os.PathLike, size: Sequence[int] | None = None,
               verify: bool = True) -> dict[str, Any]:
    """Export a run folder's (or checkpoint's) model with :func:`to_onnx`; returns the JSON's content."""
    from .experiment import load_model

    model, config = load_model(checkpoint)
    return to_onnx(model, out, config=config, size=size, verify=verify)
