"""Configuration dataclasses of sacnn-lab, with defaults, validation and a JSON round trip.

:class:`ModelConfig` describes one SACNN network (paper, section "SACNN"): the feature extractor
(a string of convolutional blocks, or a torchvision backbone) and the feature-competition head with
``1 + num_defect_types`` classes per pixel. Every config is a plain dataclass: a notebook changes one
field with :func:`dataclasses.replace`, and :meth:`ModelConfig.to_dict` is what a run writes beside its
checkpoints. Further configs (training, data) belong in this module too.
"""

from __future__ import annotations

import os
from dataclasses import asdict, dataclass, fields
from typing import Any

NORMS = ("none", "batch", "group")


def _check_int(name: str, value: Any, low: int) -> None:
    # bool is an int subclass: reject it explicitly, `channels=(True,)` is a bug, not a width of 1
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"{name} must be an int, not {type(value).__name__} ({value!r})")
    if value < low:
        raise ValueError(f"{name} must be >= {low}, not {value}")


@dataclass
class ModelConfig:
    """The architecture of one SACNN network.

    Attributes:
        in_channels: channels of the input image (1 for gray, the paper's case).
        channels: output channels of each convolutional block (CB), one entry per block. The number of
            blocks sets the visual field of a pixel of the last feature map, which should be about the
            size of a defect (paper): 3 blocks for the 136×136 characters, 5 for the 512×512 textile.
        kernel_size: kernel of both convolutions of a block; odd, so that "same" padding is exact.
            The paper does not give it.
        dilation: dilation of the second (dilated) convolution of a block; 1 turns it into a plain
            convolution (an ablation, not the paper). The paper does not give the rate.
        norm: normalisation after the dilated convolution: ``"none"`` (the paper), ``"batch"`` or
            ``"group"`` (GroupNorm with ``gcd(channels, 8)`` groups).
        inner_relu: a ReLU between the convolution and the dilated convolution (the paper has none).
        num_defect_types: K, the number of defect types; every pixel is classified into ``1 + K``
            classes, class 0 being defect-free. The paper's case is K = 1.
        backbone: name of a torchvision classification model (``"vgg11"``, ``"resnet18"``, ...) whose
            layers replace the block extractor; ``channels``, ``kernel_size``, ``dilation``, ``norm``
            and ``inner_relu`` are then unused.
        backbone_weights: local path to a state dict of the full torchvision model (e.g. ImageNet
            weights saved beforehand). Nothing is ever downloaded; a missing file raises
            ``FileNotFoundError`` when the model is built. ``None``: random initialisation.
        backbone_stride: the backbone is cut where its total stride reaches this value (a power of 2).
    """

    in_channels: int = 1
    channels: tuple[int, ...] = (32, 64, 128)
    kernel_size: int = 3
    dilation: int = 2
    norm: str = "none"
    inner_relu: bool = False
    num_defect_types: int = 1
    backbone: str | None = None
    backbone_weights: str | None = None
    backbone_stride: int = 8

    def __post_init__(self) -> None:
        _check_int("in_channels", self.in_channels, 1)
        if isinstance(self.channels, (str, bytes)) or not hasattr(self.channels, "__iter__"):
            raise TypeError(f"channels must be a sequence of ints, one per block, not {self.channels!r}")
        self.channels = tuple(self.channels)  # lists come back from JSON
        if not self.channels:
            raise ValueError("channels must name at least one block, got an empty sequence")
        for i, c in enumerate(self.channels):
            _check_int(f"channels[{i}]", c, 1)
        _check_int("kernel_size", self.kernel_size, 1)
        if self.kernel_size % 2 == 0:
            raise ValueError(f"kernel_size must be odd (exact 'same' padding), not {self.kernel_size}")
        _check_int("dilation", self.dilation, 1)
        if self.norm not in NORMS:
            raise ValueError(f"norm must be one of {NORMS}, not {self.norm!r}")
        if not isinstance(self.inner_relu, bool):
            raise TypeError(f"inner_relu must be a bool, not {type(self.inner_relu).__name__}")
        _check_int("num_defect_types", self.num_defect_types, 1)
        _check_int("backbone_stride", self.backbone_stride, 1)
        if self.backbone_stride & (self.backbone_stride - 1):
            raise ValueError(f"backbone_stride must be a power of 2, not {self.backbone_stride}")
        if isinstance(self.backbone_weights, os.PathLike):
            self.backbone_weights = os.fspath(self.backbone_weights)
        if self.backbone is None:
            if self.backbone_weights is not None:
                raise ValueError("backbone_weights is set but backbone is None; name a torchvision model")
            return
        if not isinstance(self.backbone, str):
            raise TypeError(f"backbone must be a torchvision model name or None, not {self.backbone!r}")
        if self.backbone_weights is not None and not isinstance(self.backbone_weights, str):
            raise TypeError(f"backbone_weights must be a path or None, not {self.backbone_weights!r}")
        import torchvision  # only when a backbone is asked for: keeps the config light

        known = torchvision.models.list_models(module=torchvision.models)
        if self.backbone not in known:
            raise ValueError(
                f"backbone {self.backbone!r} is not a torchvision classification model; "
                f"choose one of: {', '.join(sorted(known))}"
            )

    @property
    def num_blocks(self) -> int:
        """Number of convolutional blocks of the block extractor (``len(channels)``)."""
        return len(self.channels)

    @property
    def num_classes(self) -> int:
        """Classes per pixel: 1 defect-free class + ``num_defect_types``."""
        return 1 + self.num_defect_types

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict of every field (tuples become lists)."""
        d = asdict(self)
        d["channels"] = list(self.channels)
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> ModelConfig:
        """Rebuild a config from :meth:`to_dict` output (or parsed JSON of it).

        Raises:
            ValueError: ``d`` holds a key that is not a field of the config.
        """
        names = {f.name for f in fields(cls)}
        unknown = sorted(set(d) - names)
        if unknown:
            raise ValueError(f"unknown ModelConfig field(s) {unknown}; known: {sorted(names)}")
        return cls(**d)

    @classmethod
    def characters(cls, **overrides: Any) -> ModelConfig:
        """The paper's network for the 136×136 character set: 3 blocks."""
        return cls(**{"channels": (32, 64, 128), **overrides})

    @classmethod
    def textile(cls, **overrides: Any) -> ModelConfig:
        """The paper's network for the 512×512 textile (DAGM 2007) set: 5 blocks."""
        return cls(**{"channels": (32, 64, 96, 128, 160), **overrides})
