"""Running an exported model without torch: onnxruntime, numpy and the JSON beside the graph (see
:mod:`sacnn_lab.export`). This module imports neither torch nor the parts of the package that do, so that an
inspection line needs ``pip install "sacnn-lab[deploy]"``'s onnxruntime and nothing heavier at run time.

    from sacnn_lab.runtime import OnnxModel
    model = OnnxModel("model.onnx")
    pred = model.predict(images)            # uint8 (B, H, W): pred.score (B,), pred.map (B, H, W)
    pred = model.predict(strip, tile=1024)  # one large image in tiles: the same map as one pass

**Any size, in tiles.** SACNN is fully convolutional, so an image of any size is one pass when memory
allows. Otherwise :meth:`OnnxModel.predict` with ``tile`` cuts it into tiles of at most ``tile × tile``
pixels, overlapping by at least the network's receptive field and starting on multiples of its stride, runs
each, keeps from each tile the cells whose visual field lies inside it (each cell of the whole image from
exactly one tile), and resizes the stitched cells to the image as the graph does (bilinear, half-pixel
centres): the map equals the single pass up to float rounding, and the image's score is the aggregation of
the stitched cells (for the competition: the maximum over the tiles). A network that takes each image's
background gray (``abs_deviation``) is given the whole image's, so tiles see what the single pass sees.
The network's activations are bounded by the tile, not the image; the image itself, its float copy and the
full-resolution map (a few bytes per pixel each) are still held whole.
"""

from __future__ import annotations

import json
import math
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

import numpy as np

__all__ = ["OnnxModel", "RuntimePrediction", "resize_bilinear", "pool_cells", "read_sidecar"]


@dataclass
class RuntimePrediction:
    """What :meth:`OnnxModel.predict` returns (numpy, float32).

    Attributes:
        score: ``(B,)`` the image probability (any defect type); ``types``: ``(B, K)`` each type's.
        map: ``(B, H, W)`` the defect map (any type: the types' pixelwise maximum); ``None`` for a graph
            without maps (the baseline).
        cells: ``(B, K, s, t)`` the defective layers; ``None`` without maps.
    """

    score: np.ndarray
    types: np.ndarray
    map: np.ndarray | None
    cells: np.ndarray | None


def read_sidecar(onnx_path: str | os.PathLike) -> dict[str, Any]:
    """The JSON beside an exported graph (``model.onnx`` → ``model.json``).

    Raises:
        FileNotFoundError: no graph, or no JSON beside it.
        ValueError: a JSON that is not an export of this package.
    """
    path = Path(onnx_path)
    if not path.is_file():
        raise FileNotFoundError(f"no exported model at {path}")
    side = path.with_suffix(".json")
    if not side.is_file():
        raise FileNotFoundError(f"{side} (written beside {path.name} by `sacnn-lab export`) is missing: it holds "
                                f"the input convention and the thresholds")
    meta = json.loads(side.read_text())
    if not str(meta.get("format", "")).startswith("sacnn-lab-onnx/"):
        raise ValueError(f"{side} is not the description of a sacnn-lab export")
    return meta


def resize_bilinear(cells: np.ndarray, height: int, width: int) -> np.ndarray:
    """``(..., s, t)`` → ``(..., height, width)``, bilinear with half-pixel centres and edges clamped (PyTorch's
    ``interpolate(mode="bilinear", align_corners=False)``, ONNX's ``Resize`` in the same mode)."""
    def axis(n_in: int, n_out: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        src = (np.arange(n_out, dtype=np.float64) + 0.5) * (n_in / n_out) - 0.5
        src = np.clip(src, 0, None)
        i0 = np.minimum(np.floor(src).astype(np.int64), n_in - 1)
        i1 = np.minimum(i0 + 1, n_in - 1)
        return i0, i1, (src - i0).astype(np.float32)

    y0, y1, wy = axis(cells.shape[-2], height)
    x0, x1, wx = axis(cells.shape[-1], width)
    c = cells.astype(np.float32, copy=False)
    rows = c[..., y0, :] * (1 - wy)[:, None] + c[..., y1, :] * wy[:, None]
    return rows[..., x0] * (1 - wx) + rows[..., x1] * wx


def pool_cells(cells: np.ndarray, aggregation: str = "max", lse_r: float = 5.0, topk_k: float = 0.05) -> np.ndarray:
    """``(B, K, s, t)`` defective layers → ``(B, K)`` image probabilities, as the network's aggregation pools
    them (see :mod:`sacnn_lab.competition`)."""
    flat = cells.reshape(*cells.shape[:2], -1).astype(np.float64)
    if aggregation == "max":
        return flat.max(-1).astype(np.float32)
    if aggregation == "mean":
        return flat.mean(-1).astype(np.float32)
    if aggregation == "lse":
        top = flat.max(-1, keepdims=True)
        return (top[..., 0] + np.log(np.exp(lse_r * (flat - top)).mean(-1)) / lse_r).astype(np.float32)
    if aggregation == "topk":
        n = flat.shape[-1]
        k = int(topk_k) if topk_k >= 1 else max(1, math.ceil(topk_k * n))
        k = min(k, n)
        return np.sort(flat, -1)[..., n - k:].mean(-1).astype(np.float32)
    raise ValueError(f"unknown aggregation {aggregation!r}")


def _out_size(n: int, layers: Sequence[Sequence[int]]) -> int:
    for k, stride, pad in layers:
        n = (n + 2 * pad - k) // stride + 1
    return n


def _background(image: np.ndarray) -> np.ndarray:
    """``(C,)`` the lower median of every other row and column of each channel of a ``(C, H, W)`` image."""
    q = image[:, ::2, ::2].reshape(image.shape[0], -1)
    mid = (q.shape[1] - 1) // 2
    return np.partition(q, mid, axis=1)[:, mid].astype(np.float32)


class OnnxModel:
    """An exported model in onnxruntime.

    Args:
        path: the ``.onnx`` file (its JSON beside it).
        providers: onnxruntime's execution providers (default: CUDA where onnxruntime has it, then the CPU).
        threads: intra-op threads (``None``: onnxruntime's default, every core).

    Attributes:
        meta: the JSON's content.
        maps: whether the graph gives maps (SACNN) or a score only (the baseline).
    """

    def __init__(self, path: str | os.PathLike, providers: Sequence[str] | None = None,
                 threads: int | None = None):
        try:
            import onnxruntime as ort
        except ImportError:
            raise RuntimeError("running an exported model needs onnxruntime: pip install 'sacnn-lab[deploy]'") from None

        self.path = Path(path)
        self.meta = read_sidecar(path)
        ort.set_default_logger_severity(3)  # the optional input's default (an initializer) is a note, not a problem
        options = ort.SessionOptions()
        if threads:
            options.intra_op_num_threads = int(threads)
        available = ort.get_available_providers()
        chosen = list(providers) if providers else [p for p in ("CUDAExecutionProvider", "CPUExecutionProvider")
                                                   if p in available]
        self.session = ort.InferenceSession(str(self.path), sess_options=options, providers=chosen)
        self.maps = bool(self.meta.get("maps"))
        self.channels = int(self.meta["input"]["channels"])
        # an input with a default (the background) is listed among the overridable initializers
        self._inputs = {i.name for i in (*self.session.get_inputs(), *self.session.get_overridable_initializers())}

    @property
    def receptive_field(self) -> float | None:
        return self.meta.get("receptive_field")

    def _as_batch(self, images: np.ndarray) -> np.ndarray:
        """uint8 ``(H, W)``, ``(B, H, W)`` (or RGB ``(..., 3)``) → float32 ``(B, C, H, W)`` in [0, 1]."""
        a = np.asarray(images)
        if a.dtype != np.uint8:
            raise TypeError(f"images must be uint8 (0–255), not {a.dtype}")
        if self.channels == 3:
            if a.ndim == 3 and a.shape[-1] == 3:
                a = a[None]
            if a.ndim != 4 or a.shape[-1] != 3:
                raise ValueError(f"this model takes RGB images (H, W, 3) or (B, H, W, 3), got {a.shape}")
            a = a.transpose(0, 3, 1, 2)
        else:
            if a.ndim == 2:
                a = a[None]
            if a.ndim != 3:
                raise ValueError(f"this model takes gray images (H, W) or (B, H, W), got {a.shape}")
            a = a[:, None]
        size = self.meta["input"].get("size")
        if size and tuple(a.shape[-2:]) != tuple(size):
            raise ValueError(f"this graph (a score-only export) takes {size[1]}×{size[0]} images, not "
                             f"{a.shape[-1]}×{a.shape[-2]}")
        side = self.meta.get("min_side") or 1
        if min(a.shape[-2:]) < side:
            raise ValueError(f"images of {a.shape[-1]}×{a.shape[-2]} px are too small for this network "
                             f"(at least {side} px a side)")
        return np.ascontiguousarray(a, dtype=np.float32) / np.float32(255.0)

    def _run(self, x: np.ndarray, background: np.ndarray | None = None) -> list[np.ndarray]:
        feed = {"image": x}
        if background is not None and "background" in self._inputs:
            feed["background"] = background.astype(np.float32)
        return self.session.run(None, feed)

    def predict(self, images: np.ndarray, batch_size: int = 8, tile: int | None = None) -> RuntimePrediction:
        """Scores and maps of uint8 images.

        Args:
            images: ``(H, W)`` / ``(B, H, W)`` gray (``(..., 3)`` RGB for a colour model), uint8.
            batch_size: images per run of the graph.
            tile: cut each image larger than ``tile × tile`` into tiles (see the module's text); ``None``: one
                pass per batch.

        Returns:
            A :class:`RuntimePrediction`.
        """
        x = self._as_batch(images)
        if tile is not None and self.maps and max(x.shape[-2:]) > tile:
            parts = [self._tiled(x[i], int(tile)) for i in range(len(x))]
        else:
            parts = []
            for lo in range(0, len(x), max(1, int(batch_size))):
                out = self._run(x[lo:lo + batch_size])
                parts.append((out[0], out[1] if self.maps else None, out[2] if self.maps else None))
        types = np.concatenate([p[0] for p in parts]).astype(np.float32)
        maps = None if parts[0][1] is None else np.concatenate([p[1] for p in parts])
        cells = None if parts[0][2] is None else np.concatenate([p[2] for p in parts])
        return RuntimePrediction(score=types.max(1), types=types, map=None if maps is None else maps.max(1),
                                 cells=cells)

    def _margin(self) -> int:
        """Pixels a tile's cells keep from its inner edges: over half the visual field, in whole strides."""
        jump, rf = int(self.meta["stride"]), float(self.meta["receptive_field"])
        return int(math.ceil((rf / 2 + jump) / jump)) * jump

    def tiles(self, height: int, width: int, tile: int) -> list[tuple[int, int, int, int]]:
        """The tiles of an ``height × width`` image: ``(row, col, rows, cols)`` of each (see the module's text).

        Raises:
            ValueError: a tile too small to hold the receptive field twice over plus a cell.
        """
        jump, rf, margin = int(self.meta["stride"]), float(self.meta["receptive_field"]), self._margin()
        tile = tile // jump * jump
        step = tile - 2 * margin
        if step < jump:
            raise ValueError(f"tile {tile} px is too small for this network's {rf:g} px visual field: use at least "
                             f"{2 * margin + jump} px")

        def starts(n: int) -> list[int]:
            if n <= tile:
                return [0]
            out = list(range(0, n - tile, step))
            return out + [out[-1] + step] if out[-1] + tile < n else out

        return [(r, c, min(tile, height - r), min(tile, width - c)) for r in starts(height) for c in starts(width)]

    def _tiled(self, image: np.ndarray, tile: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """One ``(C, H, W)`` image in tiles → ``(1, K)`` scores, ``(1, K, H, W)`` map, ``(1, K, s, t)`` cells."""
        _, h, w = image.shape
        layers, jump = self.meta["layers"], int(self.meta["stride"])
        first, margin = float(self.meta["first_centre"]), self._margin()
        s, t = _out_size(h, layers), _out_size(w, layers)
        background = _background(image) if self.meta["input"].get("normalisation") == "abs_deviation" else None
        cells: np.ndarray | None = None
        for r, c, th, tw in self.tiles(h, w, tile):
            out = self._run(image[None, :, r:r + th, c:c + tw], background)[2][0]  # (K, s', t')
            if cells is None:
                cells = np.zeros((out.shape[0], s, t), np.float32)
            rows = _kept(r, th, h, out.shape[1], first, jump, margin)
            cols = _kept(c, tw, w, out.shape[2], first, jump, margin)
            if len(rows) and len(cols):
                gr, gc = (np.asarray(rows) + r // jump), (np.asarray(cols) + c // jump)
                cells[:, gr[:, None], gc[None, :]] = out[:, np.asarray(rows)[:, None], np.asarray(cols)[None, :]]
        assert cells is not None
        agg = self.meta.get("aggregation") or {"aggregation": "max"}
        score = pool_cells(cells[None], **agg)
        return score, resize_bilinear(cells, h, w)[None], cells[None]


def _kept(start: int, length: int, total: int, n_cells: int, first: float, jump: int, margin: int) -> list[int]:
    """The local cells of a tile at ``start`` (``length`` px of ``total``) whose centre lies in its core: at
    least ``margin`` px from each edge of the tile that is not an edge of the image."""
    lo = 0 if start == 0 else start + margin
    hi = total if start + length >= total else start + length - margin
    return [j for j in range(n_cells) if lo <= start + first + j * jump < hi]
