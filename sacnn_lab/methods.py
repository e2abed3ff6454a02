"""Every method that turns images into an image score and a defect map, behind one small interface.

A *method* is one of:

- a SACNN network (any aggregation; trained from image labels, or from masks as the supervised reference,
  ``TrainConfig.supervision="mask"``), the Grad-CAM baseline, or any model that
  :func:`~sacnn_lab.inference.predict` accepts; also a :class:`~sacnn_lab.experiment.Run`, or the path of a
  run folder or checkpoint;
- any object with ``predict_maps(images) -> Prediction`` that takes ``(B, H, W)`` uint8 images (the
  unsupervised :class:`~sacnn_lab.weibull.WeibullDetector`).

:func:`method_predict` gives each the same output, a :class:`~sacnn_lab.inference.Prediction` with ``score``
``(N,)`` and ``map`` ``(N, H, W)`` in [0, 1] (a model of several defect types reduced to "any type"), so that
:mod:`sacnn_lab.compare`, :mod:`sacnn_lab.metrics` and :mod:`sacnn_lab.plots` treat them alike.
"""

from __future__ import annotations

import os
from typing import Any, Protocol, runtime_checkable

import numpy as np
import torch
from torch import nn

from .inference import Prediction, predict

__all__ = ["MapMethod", "resolve_method", "method_name", "method_predict", "is_model"]


@runtime_checkable
class MapMethod(Protocol):
    """A method that is not a network: it scores and maps ``(B, H, W)`` uint8 images itself."""

    def predict_maps(self, images: np.ndarray) -> Prediction: ...


def is_model(method: Any) -> bool:
    """Whether ``method`` is a network (run through :func:`~sacnn_lab.inference.predict`)."""
    return isinstance(method, nn.Module)


def resolve_method(method: Any) -> nn.Module | MapMethod:
    """A model or a map method as it is; a :class:`~sacnn_lab.experiment.Run` as its model; the path of a
    run folder or checkpoint as the model it holds.

    Raises:
        TypeError: anything else.
    """
    if isinstance(method, nn.Module):
        return method
    if isinstance(method, (str, os.PathLike)):
        from .experiment import load_model

        return load_model(method)[0]
    inner = getattr(method, "model", None)
    if isinstance(inner, nn.Module):
        return inner
    if isinstance(method, MapMethod):
        return method
    raise TypeError(f"expected a model, a Run, the path of a run folder / checkpoint, or an object with "
                    f"predict_maps(images), not {type(method).__name__}")


def method_name(method: Any) -> str:
    """How a method is named in tables by default: ``"SACNN"`` (``"SACNN (mean)"`` for another aggregation),
    the baseline's CAM (``"Grad-CAM"``...), or the class's name (``"WeibullDetector"``)."""
    from .baseline import CAM_METHODS, VGGBaseline

    if isinstance(method, VGGBaseline):
        key = method.config.cam
        return {"gradcam": "Grad-CAM", "gradcam++": "Grad-CAM++"}.get(key, CAM_METHODS[key])
    if type(method).__name__ == "SACNN":
        agg = getattr(getattr(method, "config", None), "aggregation", "max")
        return "SACNN" if agg == "max" else f"SACNN ({agg})"
    return type(method).__name__


def method_predict(method: nn.Module | MapMethod, images: np.ndarray | torch.Tensor, batch_size: int = 50
                   ) -> Prediction:
    """Scores and maps of ``images`` under any method.

    Args:
        method: a model or a map method (:func:`resolve_method`).
        images: ``(N, H, W)`` uint8 (a model also takes ``(N, C, H, W)`` float in [0, 1]).
        batch_size: images per pass.

    Returns:
        A :class:`~sacnn_lab.inference.Prediction` with ``score`` ``(N,)`` and ``map`` ``(N, H, W)``: a model of
        several defect types gives the highest type's (:meth:`~sacnn_lab.inference.Prediction.any_type`).
    """
    if is_model(method):
        return predict(method, images, batch_size=batch_size).any_type()
    x = images.numpy() if isinstance(images, torch.Tensor) else np.asarray(images)
    parts = [method.predict_maps(x[lo:lo + batch_size]) for lo in range(0, len(x), batch_size)]
    return Prediction(score=torch.cat([p.score for p in parts]), feature_map=torch.cat([p.feature_map for p in parts]),
                      map=torch.cat([p.map for p in parts]))
