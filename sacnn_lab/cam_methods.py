"""The CAM methods of the ``grad-cam`` package, by the names a :class:`~sacnn_lab.config.BaselineConfig` uses.

A module of its own, importing nothing: :mod:`sacnn_lab.config` checks a config's ``cam`` against
:data:`CAM_METHODS` without importing the baseline's model code, and :mod:`sacnn_lab.baseline` (which
re-exports the name) looks the classes up in ``pytorch_grad_cam`` when a map is made.
"""

from __future__ import annotations

__all__ = ["CAM_METHODS"]

#: CAM methods of the ``grad-cam`` package by the names a config uses (class names in ``pytorch_grad_cam``).
#: Only names: the classes are looked up when a map is made (:func:`sacnn_lab.baseline.cam_class`), so
#: reading this table imports neither the package nor torch.
CAM_METHODS: dict[str, str] = {
    "gradcam": "GradCAM",
    "hirescam": "HiResCAM",
    "gradcamelementwise": "GradCAMElementWise",
    "gradcam++": "GradCAMPlusPlus",
    "xgradcam": "XGradCAM",
    "layercam": "LayerCAM",
    "eigencam": "EigenCAM",
    "eigengradcam": "EigenGradCAM",
    "scorecam": "ScoreCAM",
    "ablationcam": "AblationCAM",
    "fullgrad": "FullGrad",
    "kpcacam": "KPCA_CAM",
    "shapleycam": "ShapleyCAM",
    "fem": "FEM",
    "randomcam": "RandomCAM",
}
