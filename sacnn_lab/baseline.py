"""The Grad-CAM baseline: torchvision's VGG19 adapted to gray images and two classes, with defect maps
from the ``grad-cam`` package (the paper's Figure 11 comparison).

:class:`VGGBaseline` has torchvision's VGG19 layers under torchvision's names (``features``, ``avgpool``,
``classifier``: its ImageNet weights load as they are), with a one-channel first convolution, a two-class last layer
(0 = defect-free, 1 = defective), an optional width multiplier for CPUs, and the methods through which
the trainer and :func:`~sacnn_lab.inference.predict` use any model that is not SACNN:

- :meth:`VGGBaseline.loss` and :meth:`VGGBaseline.image_scores`: the trainer calls them on the logits
  ``(B, 2)`` instead of SACNN's competition loss and spatial maximum;
- :meth:`VGGBaseline.predict_maps`: ``predict`` hands the images to it. It runs the CAM method named in
  the config (``pytorch_grad_cam``'s ``GradCAM`` by default) on ``features[-1]`` or the named layer, for the
  defective class, inside the package's ``with`` block so that its hooks are removed afterwards. The map
  needs a backward pass per batch, unlike SACNN's, which comes with the forward pass.

Weights: ``weights="imagenet"`` looks for torchvision's file (``vgg19-dcbb9e9d.pth``) in
``torch.hub.get_dir()/checkpoints``; nothing is downloaded. When the file is absent, one warning says so and
the network starts from random weights.
"""

from __future__ import annotations

import os
import warnings
from pathlib import Path
from typing import Sequence

import torch
import torch.nn.functional as F
import torchvision
from torch import nn

from .cam_methods import CAM_METHODS
from .config import BaselineConfig
from .inference import Prediction, memory_format_of
from .model import _adapt_first_conv, normalise_input

__all__ = ["CAM_METHODS", "VGGBaseline", "cam_class", "imagenet_weights_path"]

_WEIGHTS = {"vgg19": "VGG19_Weights", "vgg19_bn": "VGG19_BN_Weights"}
_warned: set[str] = set()


def cam_class(name: str) -> type:
    """The ``pytorch_grad_cam`` class of a CAM method named as in :data:`CAM_METHODS`.

    Raises:
        ValueError: an unknown name, or one this version of ``grad-cam`` does not offer.
    """
    key = name.lower()
    if key not in CAM_METHODS:
        raise ValueError(f"unknown CAM method {name!r}; choose one of {sorted(CAM_METHODS)}")
    import pytorch_grad_cam

    cls = getattr(pytorch_grad_cam, CAM_METHODS[key], None)
    if cls is None:
        raise ValueError(f"the installed grad-cam package has no {CAM_METHODS[key]} (CAM method {name!r})")
    return cls


def imagenet_weights_path(arch: str = "vgg19") -> Path:
    """Where torchvision keeps its ImageNet weights for ``arch``: ``torch.hub.get_dir()/checkpoints/<file>``.

    The file name is the one torchvision's weights enum downloads to; this function only names the path
    (it may not exist), it never downloads.
    """
    if arch not in _WEIGHTS:
        raise ValueError(f"arch must be one of {tuple(_WEIGHTS)}, not {arch!r}")
    url = getattr(torchvision.models, _WEIGHTS[arch]).IMAGENET1K_V1.url
    return Path(torch.hub.get_dir()) / "checkpoints" / os.path.basename(url)


def _resolve_weights(config: BaselineConfig) -> Path | None:
    """The weights file to load, or ``None`` (random init). Warns once per missing ImageNet file."""
    if config.weights is None:
        return None
    if config.weights.lower() == "imagenet":
        path = imagenet_weights_path(config.arch)
        if not path.is_file():
            if str(path) not in _warned:
                _warned.add(str(path))
                warnings.warn(
                    f"ImageNet weights for {config.arch} not found at {path} (nothing is downloaded); "
                    f"the baseline trains from scratch. Put torchvision's file there, or pass its path "
                    f"as weights=...", UserWarning, stacklevel=4)
            return None
        return path
    path = Path(config.weights)
    if not path.is_file():
        raise FileNotFoundError(f"baseline weights file not found: {config.weights!r}")
    return path


def _linear(n_in: int, n_out: int) -> nn.Linear:
    layer = nn.Linear(n_in, n_out)
    nn.init.normal_(layer.weight, 0, 0.01)  # torchvision's initialisation of VGG's linear layers
    nn.init.zeros_(layer.bias)
    return layer


class VGGBaseline(nn.Module):
    """torchvision's VGG19 for gray images and two classes, with CAM defect maps.

    The layers are torchvision's (built by ``torchvision.models.vgg.make_layers`` from VGG19's layout,
    with torchvision's initialisation) under torchvision's names, so its ImageNet state dict loads as is:
    ``features`` (16 convolutions, 5 poolings), ``avgpool`` (to 7×7), ``classifier`` (two hidden layers,
    then the two-class layer ``classifier.6``).

    Input images are float32 ``(B, in_channels, H, W)`` in [0, 1] (H, W >= 32: five poolings); the model
    normalises them itself (``config.input_norm``: ImageNet's statistics averaged over the colours, or
    the absolute deviation from the median gray that SACNN's ``fast`` preset sees). :meth:`forward` returns
    logits ``(B, 2)``; class 1 is defective.

    Args:
        config: architecture, weights and CAM method; see :class:`~sacnn_lab.config.BaselineConfig`.
        pretrained: load ``config.weights`` (set ``False`` when a checkpoint's weights follow anyway).

    Raises:
        FileNotFoundError: ``config.weights`` names a file that does not exist.
        ValueError: a weights file that is not a state dict of torchvision's ``config.arch``.

    Example:
        >>> model = VGGBaseline(BaselineConfig(width=0.25))
        >>> model(torch.rand(2, 1, 136, 136)).shape
        torch.Size([2, 2])
        >>> predict(model, images).map.shape      # Grad-CAM of the defective class, (B, H, W)
    """

    def __init__(self, config: BaselineConfig, pretrained: bool = True) -> None:
        super().__init__()
        if not isinstance(config, BaselineConfig):
            raise TypeError(f"config must be a BaselineConfig, not {type(config).__name__}")
        from torchvision.models.vgg import cfgs, make_layers

        self.config = config
        path = _resolve_weights(config) if pretrained else None
        self.weights_file: str | None = None  # the file whose weights were loaded, if any
        layout = [v if v == "M" else max(1, round(v * config.width)) for v in cfgs["E"]]
        hidden = max(1, round(4096 * config.width))
        self.features = make_layers(layout, batch_norm=config.arch == "vgg19_bn")  # first conv: 3 channels
        self.avgpool = nn.AdaptiveAvgPool2d((7, 7))
        self.classifier = nn.Sequential(
            nn.Linear(layout[-2] * 7 * 7, hidden), nn.ReLU(True), nn.Dropout(config.dropout),
            nn.Linear(hidden, hidden), nn.ReLU(True), nn.Dropout(config.dropout),
            nn.Linear(hidden, 1000 if path is not None else 2))
        if path is None:
            first = self.features[0]
            self.features[0] = nn.Conv2d(config.in_channels, first.out_channels, 3, padding=1)
        for m in self.modules():  # torchvision's initialisation of VGG
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
                nn.init.zeros_(m.bias)
            elif isinstance(m, nn.BatchNorm2d):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)
            elif isinstance(m, nn.Linear):
                nn.init.normal_(m.weight, 0, 0.01)
                nn.init.zeros_(m.bias)
        if path is not None:
            state = torch.load(path, map_location="cpu", weights_only=True)
            try:
                self.load_state_dict(state)
            except (RuntimeError, AttributeError, TypeError) as e:
                first_line = str(e).strip().splitlines()[0]
                raise ValueError(f"{path} is not a state dict of torchvision's {config.arch} ({first_line})") from e
            self.weights_file = str(path)
            _adapt_first_conv(self.features, config.in_channels)  # summed RGB kernels: same response to gray
            self.classifier[-1] = _linear(hidden, 2)
        for m in self.modules():  # in-place ReLUs would overwrite the activations a CAM hook stored
            if isinstance(m, nn.ReLU):
                m.inplace = False

    # ---- the network ---------------------------------------------------------------------------------
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Class logits.

        Args:
            x: images ``(B, in_channels, H, W)``, float in [0, 1], H and W at least 32.

        Returns:
            Logits ``(B, 2)``: column 0 defect-free, column 1 defective.
        """
        if x.dim() != 4 or x.shape[1] != self.config.in_channels:
            raise ValueError(f"expected images (B, {self.config.in_channels}, H, W), got shape {tuple(x.shape)}")
        side = 32 * self.config.input_pool  # five poolings, after the input's own
        if min(x.shape[-2:]) < side:
            raise ValueError(f"VGG19 pools five times{' after input_pool' if side > 32 else ''}: images must be "
                             f"at least {side}×{side}, got {tuple(x.shape[-2:])}")
        if self.config.input_pool > 1:
            x = F.avg_pool2d(x, self.config.input_pool)
        x = self.features(normalise_input(x, self.config.input_norm))
        return self.classifier(torch.flatten(self.avgpool(x), 1))

    # ---- what the trainer uses instead of the competition loss ---------------------------------------
    @staticmethod
    def image_scores(logits: torch.Tensor) -> torch.Tensor:
        """Probability of the defective class, ``softmax(logits)[:, 1]``: ``(B, 2)`` → ``(B,)`` float32."""
        if logits.dim() != 2 or logits.shape[1] != 2:
            raise ValueError(f"logits must have shape (B, 2), got {tuple(logits.shape)}")
        return torch.softmax(logits.float(), dim=1)[:, 1]

    @staticmethod
    def loss(logits: torch.Tensor, labels: torch.Tensor, class_weights: Sequence[float] | None = None,
             reduction: str = "sum") -> torch.Tensor:
        """Cross-entropy of the image classifier, weighted and reduced as SACNN's loss (Eqs. 3–4).

        ``loss_b = -(w1 · y · log p + w0 · (1 - y) · log(1 - p))`` with ``p`` the defective probability.

        Args:
            logits: ``(B, 2)``.
            labels: ``(B,)`` 0/1.
            class_weights: ``(w_defect_free, w_defective)``, or ``None`` for ``(1, 1)``.
            reduction: ``"sum"``, ``"mean"`` or ``"none"``.

        Returns:
            A scalar, or ``(B,)`` for ``"none"``.
        """
        if reduction not in ("sum", "mean", "none"):
            raise ValueError(f"reduction must be 'sum', 'mean' or 'none', not {reduction!r}")
        if logits.dim() != 2 or logits.shape[1] != 2 or labels.shape != logits.shape[:1]:
            raise ValueError(f"expected logits (B, 2) and labels (B,), got {tuple(logits.shape)} and "
                             f"{tuple(labels.shape)}")
        y = labels.long()
        per_sample = F.cross_entropy(logits.float(), y, reduction="none")
        if class_weights is not None:
            w = torch.as_tensor([float(v) for v in class_weights], device=logits.device)
            per_sample = per_sample * w[y]
        if reduction == "sum":
            return per_sample.sum()
        return per_sample.mean() if reduction == "mean" else per_sample

    # ---- maps ----------------------------------------------------------------------------------------
    def target_module(self) -> nn.Module:
        """The layer the CAM explains: ``config.target_layer`` (a dotted name) or ``features[-1]``.

        Raises:
            ValueError: no module of that name.
        """
        name = self.config.target_layer
        if name is None:
            return self.features[-1]
        try:
            return self.get_submodule(name)
        except AttributeError as e:
            convs = [n for n, m in self.named_modules() if isinstance(m, nn.Conv2d)]
            raise ValueError(f"no layer {name!r} in {self.config.name}; e.g. the convolutions: "
                             f"{', '.join(convs)}") from e

    def predict_maps(self, images: torch.Tensor, batch_size: int = 64,
                     device: str | torch.device | None = None) -> Prediction:
        """Image scores and CAM maps of the defective class, one forward and one backward per batch.

        The CAM comes from the ``grad-cam`` package (``config.cam``), inside its ``with`` block (its hooks
        are removed on exit). The score is the defective probability of the same forward pass. The
        model's train/eval mode and its parameters' ``.grad`` are restored afterwards. Works under
        ``torch.no_grad`` / ``inference_mode`` callers: gradients are switched on here.

        Args:
            images: ``(B, in_channels, H, W)`` float in [0, 1].
            batch_size: images per forward/backward pass.
            device: where to run; ``None``: the model's device. A given device receives the model.

        Returns:
            A :class:`~sacnn_lab.inference.Prediction` on the CPU: ``score`` ``(B,)``, ``map`` ``(B, H, W)``
            (the package's map, scaled to [0, 1] per image and resized to the input), and ``feature_map``
            ``(B, s, t)``: that map averaged down to the target layer's grid (what histories record).
        """
        from pytorch_grad_cam.utils.model_targets import ClassifierOutputTarget

        if device is not None:
            self.to(device)
        dev, fmt = next(self.parameters()).device, memory_format_of(self)
        cls = cam_class(self.config.cam)
        was_training = self.training
        saved_grads = [p.grad for p in self.parameters()]
        layer = self.target_module()
        grid: list[tuple[int, int]] = []  # the layer's spatial size, for feature_map (a shape probe, no CAM)
        probe = layer.register_forward_hook(lambda m, i, o: grid.append(tuple(o.shape[-2:])))
        scores, maps = [], []
        try:
            with (torch.inference_mode(False), torch.enable_grad(),
                  cls(model=self, target_layers=[layer]) as cam):
                for start in range(0, images.shape[0], batch_size):
                    x = images[start:start + batch_size].to(dev).contiguous(memory_format=fmt)
                    targets = [ClassifierOutputTarget(1)] * x.shape[0]
                    m = cam(input_tensor=x, targets=targets)  # (b, H, W) float32 numpy in [0, 1]
                    scores.append(self.image_scores(cam.outputs.detach()).cpu())
                    maps.append(torch.from_numpy(m).float())
        finally:
            probe.remove()
            self.train(was_training)
            for p, g in zip(self.parameters(), saved_grads):
                p.grad = g
        prob_map = torch.cat(maps) if maps else torch.empty(0)
        if prob_map.shape[0] != images.shape[0]:  # grad-cam's with block swallows an IndexError
            raise RuntimeError(f"the {self.config.cam} CAM gave maps for {prob_map.shape[0]} of "
                               f"{images.shape[0]} images")
        s, t = grid[0] if grid else prob_map.shape[-2:]
        feature_map = F.adaptive_avg_pool2d(prob_map[:, None], (s, t))[:, 0]
        return Prediction(score=torch.cat(scores), feature_map=feature_map, map=prob_map)
