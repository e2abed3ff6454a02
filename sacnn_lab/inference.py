"""Inference: image probabilities and defect probability maps from one forward pass, then boxes.

:func:`predict` runs the model once per batch; the image score (Eq. 2, the winner of the defective
layer), the defective layer itself and its bilinear resize to the input size (the paper's defect
probability map) all come from the same logits, so the map costs nothing beyond the classification.

:func:`localise` (from :mod:`sacnn_lab.localise`, torch-free, re-exported here) turns one map into boxes,
with the paper's three methods: a fixed threshold (0.5), Otsu's threshold, or non-maximum suppression.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from .competition import defect_layers, pool
from .localise import METHODS, Box, binarise, connected_components, localise, otsu_threshold  # noqa: F401 (re-exported)

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
