"""Inference: image probabilities and defect probability maps from one forward pass, then boxes.

:func:`predict` runs the model once per batch; the image score (Eq. 2, the winner of the defective
layer), the defective layer itself and its bilinear resize to the input size (the paper's defect
probability map) all come from the same logits, so the map costs nothing beyond the classification.

:func:`localise` turns one map into boxes, with the paper's three methods: a fixed threshold (0.5),
Otsu's threshold, or non-maximum suppression. Thresholded maps are split into 8-connected components
by :func:`connected_components`, written here in numpy (no scipy, no OpenCV).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
import torchvision
from torch import nn

from .competition import defect_layers, pool
from .config import ModelConfig
from .model import receptive_field

__all__ = [
    "Prediction",
    "predict",
    "memory_format_of",
    "Box",
    "otsu_threshold",
    "binarise",
    "connected_components",
    "localise",
]

METHODS = ("threshold", "otsu", "nms")


@dataclass
class Prediction:
    """What :func:`predict` returns: all CPU float32 tensors, computed from the same logits.

    Convention: with one defect type (K = 1, the paper) the type axis is dropped; with K > 1 it is
    kept, right after the batch axis.

    Attributes:
        score: image probability ``l*``, the maximum of the defective layer (or the network's other
            aggregation of it): ``(B,)``; ``(B, K)`` if K > 1.
        feature_map: the defective layer of the softmax ``(B, s, t)``; ``(B, K, s, t)`` if K > 1.
        map: ``feature_map`` resized bilinearly (``align_corners=False``) to the input,
            ``(B, H, W)``; ``(B, K, H, W)`` if K > 1.
    """

    score: torch.Tensor
    feature_map: torch.Tensor
    map: torch.Tensor

    def __len__(self) -> int:
        return self.score.shape[0]

    def any_type(self) -> Prediction:
        """Defective of any type: with K > 1, each image's highest type score and the maps' pixelwise
        maximum over the types (what :func:`~sacnn_lab.callbacks.evaluate_arrays` judges); with one type,
        itself."""
        if self.score.ndim == 1:
            return self
        return Prediction(self.score.max(1).values, self.feature_map.max(1).values, self.map.max(1).values)


def _as_images(images: torch.Tensor | np.ndarray, in_channels: int | None) -> torch.Tensor:
    """Check the input and bring it to float32 (B, C, H, W) in [0, 1] on the CPU."""
    if isinstance(images, np.ndarray):
        if images.dtype != np.uint8:
            raise TypeError(
                f"numpy images must be uint8 (H, W) or (B, H, W), not {images.dtype}; "
                "pass float images as a torch tensor (B, C, H, W) in [0, 1]"
            )
        if in_channels == 3:  # a colour model: (H, W, 3) or (B, H, W, 3) RGB
            if images.ndim not in (3, 4) or images.shape[-1] != 3:
                raise ValueError(f"this model takes colour images: numpy uint8 (H, W, 3) or (B, H, W, 3), got "
                                 f"shape {images.shape}")
            x = torch.from_numpy(np.ascontiguousarray(images)).float().div_(255.0)
            return x.reshape(-1, *x.shape[-3:]).permute(0, 3, 1, 2).contiguous()
        if images.ndim not in (2, 3):
            raise ValueError(f"numpy images must be uint8 (H, W) or (B, H, W), got shape {images.shape}")
        if in_channels not in (None, 1):
            raise ValueError(f"numpy gray images need a 1-channel model, this one takes {in_channels}")
        x = torch.from_numpy(np.ascontiguousarray(images)).float().div_(255.0)
        return x.reshape(-1, 1, *x.shape[-2:])
    if not isinstance(images, torch.Tensor):
        raise TypeError(
            "images must be a float torch tensor (B, C, H, W) in [0, 1] or a uint8 numpy array "
            f"(B, H, W) / (H, W), not {type(images).__name__}"
        )
    if not images.is_floating_point():
        raise TypeError(f"tensor images must be floating point (B, C, H, W) in [0, 1], not {images.dtype}")
    if images.dim() != 4:
        raise ValueError(f"tensor images must have shape (B, C, H, W), got {tuple(images.shape)}")
    if in_channels is not None and images.shape[1] != in_channels:
        raise ValueError(
            f"tensor images must have shape (B, {in_channels}, H, W) for this model, "
            f"got {tuple(images.shape)}"
        )
    x = images.detach().to("cpu", torch.float32)
    if x.numel() and (x.min() < 0 or x.max() > 1):
        raise ValueError(
            f"tensor images must lie in [0, 1], got values in [{x.min().item():g}, {x.max().item():g}] "
            "(divide uint8 data by 255)"
        )
    return x


def memory_format_of(model: nn.Module) -> torch.memory_format:
    """``torch.channels_last`` when the model's convolution weights are stored channels-last, else
    ``torch.contiguous_format``: feed inputs in the same format to avoid a conversion per layer."""
    for p in model.parameters():
        if p.dim() == 4 and p.is_contiguous() != p.is_contiguous(memory_format=torch.channels_last):
            return torch.contiguous_format if p.is_contiguous() else torch.channels_last
    return torch.contiguous_format  # no weight tells (e.g. only 1×1 kernels on one channel)


CPU_PIXELS_PER_PASS = 2 * 512 * 512
"""On the CPU, :func:`predict` runs forward passes of at most this many input pixels (28 character images of
136², 2 textile images of 512²): small enough to stay in the cache; measured about twice as fast as batches
of 256 on our 2-core machine for both sizes."""


def pass_size(batch_size: int, height: int, width: int, device: torch.device) -> int:
    """Images per forward pass: ``batch_size``, on the CPU at most :data:`CPU_PIXELS_PER_PASS` pixels' worth
    of ``height × width`` images (see :func:`predict`)."""
    if device.type == "cpu":
        return max(1, min(batch_size, CPU_PIXELS_PER_PASS // (height * width)))
    return batch_size


def predict(
    model: nn.Module,
    images: torch.Tensor | np.ndarray,
    batch_size: int = 256,
    device: str | torch.device | None = None,
) -> Prediction:
    """Image scores and defect probability maps, one forward pass per batch.

    The model runs in eval mode under :func:`torch.inference_mode`; its previous train/eval mode is
    restored afterwards.

    A model that makes its maps another way defines ``predict_maps(images, batch_size, device) ->
    Prediction`` and receives the checked images ``(B, C, H, W)`` float in [0, 1] (e.g.
    :class:`~sacnn_lab.baseline.VGGBaseline`, whose Grad-CAM needs a backward pass, so it runs outside
    inference mode).

    Args:
        model: a :class:`~sacnn_lab.model.SACNN` (or any module returning logits ``(B, 1 + K, s, t)``,
            or one with ``predict_maps``).
        images: float tensor ``(B, C, H, W)`` in [0, 1], or uint8 numpy ``(B, H, W)`` / ``(H, W)`` (a colour
            model's: ``(B, H, W, 3)`` / ``(H, W, 3)``).
        batch_size: images per forward pass. On the CPU at most :data:`CPU_PIXELS_PER_PASS` pixels' worth
            (28 images of 136², 2 of 512²): batches that small stay in the cache and run about twice as
            fast (measured: 550–700 images/s against 298 at 256 for the earlier 3-block ``fast`` character
            network).
            Eval mode makes the result independent of the batch size.
        device: where to run; ``None``: the model's device. A given device receives the model.

    Returns:
        A :class:`Prediction` on the CPU.

    Raises:
        TypeError: images of the wrong type or dtype.
        ValueError: images of the wrong shape, channel count or range; an empty batch.
    """
    if not isinstance(model, nn.Module):
        raise TypeError(f"model must be a torch.nn.Module, not {type(model).__name__}")
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
        raise ValueError(f"batch_size must be an int >= 1, not {batch_size!r}")
    in_channels = getattr(getattr(model, "config", None), "in_channels", None)
    x = _as_images(images, in_channels if isinstance(in_channels, int) else None)
    if x.shape[0] == 0:
        raise ValueError("images hold no image (B = 0)")
    own = getattr(model, "predict_maps", None)
    if callable(own):
        pred = own(x, batch_size=batch_size, device=device)
        if not isinstance(pred, Prediction):
            raise TypeError(f"{type(model).__name__}.predict_maps must return a Prediction, "
                            f"not {type(pred).__name__}")
        return pred
    if device is None:
        param = next(model.parameters(), None)
        device = param.device if param is not None else torch.device("cpu")
    else:
        device = torch.device(device)
        model.to(device)
    height, width = x.shape[-2:]
    batch_size = pass_size(batch_size, height, width, device)
    # channels-last runs the convolutions markedly faster on CPU and CUDA; the values do not change
    model.to(memory_format=torch.channels_last)

    scores, features, maps = [], [], []
    pooling = getattr(model, "aggregation", None)
    pooling = pooling if isinstance(pooling, dict) else {}
    was_training = model.training
    model.eval()
    try:
        with torch.inference_mode():
            for start in range(0, x.shape[0], batch_size):
                chunk = x[start:start + batch_size].to(device).contiguous(memory_format=torch.channels_last)
                logits = model(chunk)  # the one forward pass
                if logits.dim() != 4 or logits.shape[1] < 2:
                    raise ValueError(
                        f"the model must return logits (B, 1 + K, s, t), got {tuple(logits.shape)}"
                    )
                probs = defect_layers(logits)  # (b, K, s, t)
                scores.append(pool(probs, **pooling).cpu())  # the competition's maximum, or another pooling
                features.append(probs.cpu())
                resized = F.interpolate(probs, size=(height, width), mode="bilinear", align_corners=False)
                maps.append(resized.cpu())
    finally:
        model.train(was_training)
    score, feature_map, prob_map = torch.cat(scores), torch.cat(features), torch.cat(maps)
    if feature_map.shape[1] == 1:
        score, feature_map, prob_map = score[:, 0], feature_map[:, 0], prob_map[:, 0]
    return Prediction(score=score, feature_map=feature_map, map=prob_map)


# ---------------------------------------------------------------------------------------------------
# from a map to boxes


@dataclass(frozen=True)
class Box:
    """An axis-aligned box in pixels: columns ``x0 <= x < x1``, rows ``y0 <= y < y1`` (ends exclusive).

    Attributes:
        x0, y0: first column and row inside the box.
        x1, y1: one past the last column and row.
        score: the map's maximum inside the component (threshold, Otsu) or at the peak (NMS).
    """

    x0: int
    y0: int
    x1: int
    y1: int
    score: float

    @property
    def width(self) -> int:
        return self.x1 - self.x0

    @property
    def height(self) -> int:
        return self.y1 - self.y0

    @property
    def area(self) -> int:
        return self.width * self.height


def _as_map(prob_map: torch.Tensor | np.ndarray) -> np.ndarray:
    if isinstance(prob_map, torch.Tensor):
        prob_map = prob_map.detach().cpu().numpy()
    if not isinstance(prob_map, np.ndarray):
        raise TypeError(f"the map must be a (H, W) tensor or numpy array, not {type(prob_map).__name__}")
    if prob_map.ndim != 2:
        raise ValueError(f"the map must have shape (H, W) (one image, one type), got {prob_map.shape}")
    if not np.issubdtype(prob_map.dtype, np.number) or np.issubdtype(prob_map.dtype, np.complexfloating):
        raise TypeError(f"the map must hold real numbers, not {prob_map.dtype}")
    m = prob_map.astype(np.float64, copy=False)
    if not np.isfinite(m).all():
        raise ValueError("the map holds NaN or infinite values")
    return m


def otsu_threshold(x: torch.Tensor | np.ndarray, bins: int = 256) -> float:
    """Otsu's threshold: the split of the histogram that maximises the between-class variance.

    The histogram spans ``[x.min(), x.max()]``. When several split points share the maximum (an
    empty gap between two modes), the middle of the first such run of points is returned, so the
    threshold sits in the middle of the gap. Binarise with ``x > threshold``.

    Args:
        x: values of any shape (e.g. a ``(H, W)`` probability map).
        bins: histogram bins.

    Returns:
        The threshold; for a constant input, that constant (so ``x > t`` is empty).
    """
    if isinstance(x, torch.Tensor):
        x = x.detach().cpu().numpy()
    v = np.asarray(x, dtype=np.float64).ravel()
    if v.size == 0:
        raise ValueError("otsu_threshold needs at least one value")
    if not np.isfinite(v).all():
        raise ValueError("otsu_threshold got NaN or infinite values")
    if bins < 2:
        raise ValueError(f"bins must be >= 2, not {bins}")
    lo, hi = float(v.min()), float(v.max())
    if hi <= lo:
        return lo
    hist, edges = np.histogram(v, bins=bins, range=(lo, hi))
    hist = hist.astype(np.float64)
    centres = (edges[:-1] + edges[1:]) / 2
    w0 = np.cumsum(hist)[:-1]  # weight of class 0 when splitting after bin i
    w1 = v.size - w0
    s0 = np.cumsum(hist * centres)[:-1]
    valid = (w0 > 0) & (w1 > 0)
    mu0 = np.divide(s0, w0, out=np.zeros_like(s0), where=valid)
    mu1 = np.divide(s0[-1] + hist[-1] * centres[-1] - s0, w1, out=np.zeros_like(s0), where=valid)
    between = np.where(valid, w0 * w1 * (mu0 - mu1) ** 2, -1.0)
    best = between.max()
    first = int(np.argmax(between >= best * (1 - 1e-9)))
    last = first
    while last + 1 < between.size and between[last + 1] >= best * (1 - 1e-9):
        last += 1
    # splitting after bin i puts the threshold on edge i + 1
    return float((edges[first + 1] + edges[last + 1]) / 2)


def binarise(
    prob_map: torch.Tensor | np.ndarray, method: str = "threshold", threshold: float = 0.5
) -> np.ndarray:
    """Defect mask of one map: ``map > threshold`` or ``map > otsu_threshold(map)``.

    Args:
        prob_map: ``(H, W)`` probabilities.
        method: ``"threshold"`` or ``"otsu"`` (NMS gives boxes, not a mask: see :func:`localise`).
        threshold: the fixed threshold of ``"threshold"``.

    Returns:
        Boolean mask ``(H, W)``.
    """
    m = _as_map(prob_map)
    if method == "threshold":
        return m > threshold
    if method == "otsu":
        return m > otsu_threshold(m)
    raise ValueError(f"binarise method must be 'threshold' or 'otsu', not {method!r}")


def _runs(mask: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Horizontal runs of True: row, first column, one-past-last column (row-major order)."""
    h, w = mask.shape
    padded = np.zeros((h, w + 2), dtype=np.int8)
    padded[:, 1:-1] = mask
    d = np.diff(padded, axis=1)
    rows, starts = np.nonzero(d == 1)
    _, ends = np.nonzero(d == -1)  # same rows, same order: every run has one start and one end
    return rows, starts, ends


def connected_components(mask: torch.Tensor | np.ndarray) -> tuple[np.ndarray, int]:
    """Label the 8-connected components of a boolean mask.

    Runs of True pixels on each row are joined with a union-find to the runs they touch (diagonals
    included) on the row above; the cost grows with the number of runs, not of pixels.

    Args:
        mask: ``(H, W)`` booleans (non-zero counts as True).

    Returns:
        ``(labels, n)``: int32 labels ``(H, W)``, 0 for background and ``1..n`` for the components in
        raster order of their first pixel; ``n`` the number of components.
    """
    if isinstance(mask, torch.Tensor):
        mask = mask.detach().cpu().numpy()
    mask = np.asarray(mask)
    if mask.ndim != 2:
        raise ValueError(f"mask must have shape (H, W), got {mask.shape}")
    mask = mask.astype(bool, copy=False)
    rows, starts, ends = _runs(mask)
    n_runs = rows.size
    labels = np.zeros(mask.shape, dtype=np.int32)
    if n_runs == 0:
        return labels, 0
    parent = list(range(n_runs))

    def find(i: int) -> int:
        while parent[i] != i:
            parent[i] = parent[parent[i]]
            i = parent[i]
        return i

    bounds = np.searchsorted(rows, np.arange(mask.shape[0] + 1))
    for r in range(1, mask.shape[0]):
        i, i_end = int(bounds[r - 1]), int(bounds[r])  # runs of the row above
        j, j_end = i_end, int(bounds[r + 1])  # runs of this row
        while i < i_end and j < j_end:
            # 8-connected: the column ranges overlap once widened by one pixel
            if starts[j] <= ends[i] and starts[i] <= ends[j]:
                a, b = find(i), find(j)
                if a != b:
                    parent[max(a, b)] = min(a, b)  # the root stays the earliest run
            if ends[i] < ends[j]:
                i += 1
            else:
                j += 1
    roots = np.fromiter((find(i) for i in range(n_runs)), dtype=np.int64, count=n_runs)
    uniq, comp = np.unique(roots, return_inverse=True)  # roots ascend in raster order
    for k in range(n_runs):
        labels[rows[k], starts[k]:ends[k]] = comp[k] + 1
    return labels, int(uniq.size)


def _component_boxes(m: np.ndarray, mask: np.ndarray, min_area: int) -> list[Box]:
    labels, n = connected_components(mask)
    if n == 0:
        return []
    ys, xs = np.nonzero(labels)
    lab = labels[ys, xs] - 1
    area = np.bincount(lab, minlength=n)
    x0 = np.full(n, mask.shape[1])
    y0 = np.full(n, mask.shape[0])
    x1 = np.zeros(n, dtype=np.int64)
    y1 = np.zeros(n, dtype=np.int64)
    score = np.full(n, -np.inf)
    np.minimum.at(x0, lab, xs)
    np.minimum.at(y0, lab, ys)
    np.maximum.at(x1, lab, xs + 1)
    np.maximum.at(y1, lab, ys + 1)
    np.maximum.at(score, lab, m[ys, xs])
    return [
        Box(int(x0[c]), int(y0[c]), int(x1[c]), int(y1[c]), float(score[c]))
        for c in range(n)
        if area[c] >= min_area
    ]


def _nms_boxes(m: np.ndarray, threshold: float, box_size: int, iou: float) -> list[Box]:
    t = torch.from_numpy(m).float()[None, None]
    peaks = (t == F.max_pool2d(t, 3, stride=1, padding=1)) & (t > threshold)
    ys, xs = torch.nonzero(peaks[0, 0], as_tuple=True)
    if ys.numel() == 0:
        return []
    scores = t[0, 0, ys, xs]
    h, w = m.shape
    x0 = (xs - box_size // 2).clamp(0, w)
    y0 = (ys - box_size // 2).clamp(0, h)
    x1 = (xs - box_size // 2 + box_size).clamp(0, w)
    y1 = (ys - box_size // 2 + box_size).clamp(0, h)
    boxes = torch.stack([x0, y0, x1, y1], dim=1)
    keep = torchvision.ops.nms(boxes.float(), scores, iou)
    return [Box(*(int(v) for v in boxes[k].tolist()), float(scores[k])) for k in keep.tolist()]


def localise(
    prob_map: torch.Tensor | np.ndarray,
    method: str = "threshold",
    threshold: float = 0.5,
    min_area: int = 1,
    box_size: int | None = None,
    iou: float = 0.3,
    max_boxes: int | None = None,
    config: ModelConfig | None = None,
) -> list[Box]:
    """Boxes around the defects of one probability map, best score first.

    Methods (paper, "testing phase"):

    - ``"threshold"``: ``map > threshold``, one box per 8-connected component, its score the map's
      maximum inside it; components smaller than ``min_area`` pixels are dropped.
    - ``"otsu"``: the same with :func:`otsu_threshold` of the map. Otsu always splits a non-constant
      map, also a defect-free one: decide *whether* there is a defect with the image score first.
    - ``"nms"``: local maxima (equal to the 3×3 maximum around them) above ``threshold``, each the
      centre of a ``box_size`` square (clipped to the map); overlapping boxes (IoU > ``iou``) are
      suppressed with :func:`torchvision.ops.nms`, keeping the higher peak.

    Args:
        prob_map: ``(H, W)`` probabilities, e.g. ``predict(...).map[i]``.
        method: ``"threshold"``, ``"otsu"`` or ``"nms"``.
        threshold: fixed threshold (``"threshold"``) or minimum peak value (``"nms"``).
        min_area: smallest component kept, in pixels (``"threshold"``, ``"otsu"``).
        box_size: side of the NMS boxes in pixels; ``None``: the visual field of a last-block pixel
            of ``config`` (see :func:`~sacnn_lab.model.receptive_field`).
        iou: NMS overlap above which the lower peak's box is dropped.
        max_boxes: keep at most this many boxes; ``None``: all.
        config: the model's config, for the default ``box_size``.

    Returns:
        A list of :class:`Box`, sorted by decreasing score; empty if nothing is found.

    Raises:
        ValueError: bad method or parameters, a map that is not ``(H, W)``, NMS without box size.
    """
    if method not in METHODS:
        raise ValueError(f"method must be one of {METHODS}, not {method!r}")
    bad_max = isinstance(max_boxes, bool) or not isinstance(max_boxes, int) or max_boxes < 0
    if max_boxes is not None and bad_max:
        raise ValueError(f"max_boxes must be None or an int >= 0, not {max_boxes!r}")
    m = _as_map(prob_map)
    if method == "nms":
        if box_size is None:
            if config is None:
                raise ValueError("method='nms' needs box_size, or config to take the receptive field from")
            box_size = receptive_field(config)[-1]["rf"]
        if isinstance(box_size, bool) or not isinstance(box_size, int) or box_size < 1:
            raise ValueError(f"box_size must be an int >= 1, not {box_size!r}")
        if not 0 <= iou <= 1:
            raise ValueError(f"iou must lie in [0, 1], not {iou}")
        boxes = _nms_boxes(m, threshold, box_size, iou)
    else:
        if isinstance(min_area, bool) or not isinstance(min_area, int) or min_area < 1:
            raise ValueError(f"min_area must be an int >= 1, not {min_area!r}")
        boxes = _component_boxes(m, binarise(m, method, threshold), min_area)
    boxes.sort(key=lambda b: -b.score)
    return boxes if max_boxes is None else boxes[:max_boxes]
