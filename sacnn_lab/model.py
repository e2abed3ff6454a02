"""The SACNN network: a feature extractor and the feature-competition head (paper, section "SACNN").

The extractor is a string of convolutional blocks (:class:`ConvBlock`: convolution, dilated
convolution, 2×2 max pooling, ReLU), or the first layers of a torchvision model. The head is a 1×1
convolution that classifies every pixel of the last feature map into ``1 + K`` classes (0 =
defect-free). :class:`SACNN` returns these logits; the maths on them (softmax, the spatial maximum,
the loss) lives in :mod:`sacnn_lab.competition`, and maps and boxes in :mod:`sacnn_lab.inference`.

The number of blocks is chosen so that the visual field of one pixel of the last feature map is about
the size of a defect: :func:`receptive_field` computes it layer by layer, and :func:`suggest_blocks`
applies the rule.
"""

from __future__ import annotations

import math
import os
from typing import Any

import torch
from torch import nn
from torch.nn import functional as F

from .competition import competition_loss, image_scores
from .config import ModelConfig

__all__ = ["ConvBlock", "SACNN", "background_gray", "block_layers", "normalise_input", "receptive_field",
           "suggest_blocks"]

# transformer models have no convolutional prefix to cut, or keep features channels-last
_UNCUTTABLE = ("vit_", "swin_", "maxvit")


def _norm(kind: str, channels: int) -> nn.Module:
    if kind == "none":
        return nn.Identity()
    if kind == "batch":
        return nn.BatchNorm2d(channels)
    if kind == "group":
        return nn.GroupNorm(math.gcd(channels, 8), channels)
    raise ValueError(f"norm must be one of 'none', 'batch', 'group', not {kind!r}")


class ConvBlock(nn.Module):
    """One convolutional block (CB): conv → [ReLU] → dilated conv → [norm] → max pool → ReLU.

    Both convolutions keep the size ("same" padding); the 2×2 max pooling halves it (floor), so
    ``(B, in_ch, H, W) → (B, out_ch, H // 2, W // 2)``.

    Args:
        in_ch: input channels.
        out_ch: output channels of both convolutions.
        kernel_size: odd kernel size of both convolutions.
        dilation: dilation of the second convolution.
        norm: ``"none"``, ``"batch"`` or ``"group"``, applied after the dilated convolution.
        inner_relu: put a ReLU between the two convolutions (the paper has none).
        stride: 1 (the paper: pool halves the size) or 2 (the first convolution strides and the block
            does not pool: the same output size at about a quarter of the cost).
    """

    def __init__(
        self,
        in_ch: int,
        out_ch: int,
        kernel_size: int = 3,
        dilation: int = 2,
        norm: str = "none",
        inner_relu: bool = False,
        stride: int = 1,
    ) -> None:
        super().__init__()
        if stride not in (1, 2):
            raise ValueError(f"stride must be 1 or 2, not {stride}")
        if kernel_size < 1 or kernel_size % 2 == 0:
            raise ValueError(f"kernel_size must be odd and >= 1, not {kernel_size}")
        if dilation < 1:
            raise ValueError(f"dilation must be >= 1, not {dilation}")
        pad = kernel_size // 2
        self.conv = nn.Conv2d(in_ch, out_ch, kernel_size, padding=pad, stride=stride)
        self.inner = nn.ReLU(inplace=True) if inner_relu else nn.Identity()
        # a bias before a normalisation is cancelled by it
        self.dilated = nn.Conv2d(
            out_ch, out_ch, kernel_size, padding=dilation * pad, dilation=dilation, bias=norm == "none"
        )
        self.norm = _norm(norm, out_ch)
        self.pool = nn.MaxPool2d(2) if stride == 1 else nn.Identity()
        self.act = nn.ReLU(inplace=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(B, in_ch, H, W) → (B, out_ch, H // 2, W // 2)."""
        return self.act(self.pool(self.norm(self.dilated(self.inner(self.conv(x))))))


# ImageNet statistics of torchvision's weights, averaged over R, G, B for a gray image
_GRAY_MEAN, _GRAY_STD = 0.449, 0.226


def background_gray(x: torch.Tensor) -> torch.Tensor:
    """``(B, C, 1, 1)``: the lower median of every other row and column of each image and channel of ``(B, C, H, W)``
    images, what ``"abs_deviation"`` takes as their background gray (the same value inside an exported graph,
    where ONNX has no median, from a sort)."""
    quarter = x[..., ::2, ::2].flatten(2)
    if torch.compiler.is_exporting():  # the k-th smallest, k = the lower middle: a partial sort (ONNX TopK)
        k = (quarter.shape[-1] - 1) // 2 + 1
        return quarter.topk(k, dim=-1, largest=False).values[..., -1][..., None, None]
    return quarter.median(dim=-1).values[..., None, None]


def normalise_input(x: torch.Tensor, how: str = "centre", background: torch.Tensor | None = None) -> torch.Tensor:
    """Scale images ``(B, C, H, W)`` in [0, 1] for the network (see ``ModelConfig.input_norm`` and
    ``BaselineConfig.input_norm``).

    ``"centre"``: ``(x - 0.5) / 0.5``, in [-1, 1]. ``"abs_deviation"``: ``|x - m| / 0.25`` with ``m`` the
    median of each image and channel (its background gray), in [0, 4]: the polarity of a defect is gone.
    The median is taken over every other row and column (a quarter of the pixels: 4× cheaper, and a
    background estimate as good). ``"imagenet"``: ``(x - 0.449) / 0.226``, ImageNet's statistics averaged
    over the colours (what pretrained torchvision weights expect). Returns a tensor of the same shape.

    ``background``: ``(B, C, 1, 1)`` (or broadcastable) grays that ``"abs_deviation"`` takes instead of each
    image's own median (:func:`background_gray`): a large image cut into tiles keeps the whole image's.
    """
    if how == "centre":
        return (x - 0.5) / 0.5
    if how == "abs_deviation":
        if background is None:
            background = background_gray(x)
        return (x - background).abs_().mul_(4.0)
    if how == "imagenet":
        return (x - _GRAY_MEAN) / _GRAY_STD
    raise ValueError(f"unknown input normalisation {how!r}; expected 'centre', 'abs_deviation' or 'imagenet'")


class SACNN(nn.Module):
    """Spatial adversarial CNN: feature extractor + 1×1 competition head.

    Input images are float32 ``(B, in_channels, H, W)`` with values in [0, 1]; the model scales them
    itself (:func:`normalise_input`, by ``config.input_norm``), so callers never normalise.
    :meth:`forward` returns the per-pixel class logits ``(B, 1 + K, s, t)``; with the block extractor
    ``s = H // 2**blocks``.

    Args:
        config: the architecture; see :class:`~sacnn_lab.config.ModelConfig`.

    Raises:
        FileNotFoundError: ``config.backbone_weights`` names a file that does not exist.
        ValueError: the backbone cannot be cut at ``config.backbone_stride``, or the weights do not fit.

    Example:
        >>> model = SACNN(ModelConfig.characters())
        >>> model(torch.rand(2, 1, 136, 136)).shape
        torch.Size([2, 2, 17, 17])
    """

    def __init__(self, config: ModelConfig) -> None:
        super().__init__()
        if not isinstance(config, ModelConfig):
            raise TypeError(f"config must be a ModelConfig, not {type(config).__name__}")
        self.config = config
        if config.backbone is None:
            blocks, ch = [], config.in_channels
            for b, out in enumerate(config.channels):
                stride = config.first_stride if b == 0 else 1
                blocks.append(
                    ConvBlock(ch, out, config.kernel_size, config.dilation, config.norm, config.inner_relu, stride)
                )
                ch = out
            self.extractor = nn.Sequential(*blocks)
        else:
            self.extractor, ch = _cut_backbone(config)
        self.head = nn.Conv2d(ch, config.num_classes, kernel_size=1)

    @property
    def num_classes(self) -> int:
        """Classes per pixel, ``1 + K``."""
        return self.config.num_classes

    @property
    def aggregation(self) -> dict[str, Any]:
        """How the head pools each defective layer into the image's probability (``ModelConfig.aggregation``
        with its ``lse_r`` and ``topk_k``), as keyword arguments of :mod:`sacnn_lab.competition`'s functions."""
        c = self.config
        return {"aggregation": c.aggregation, "lse_r": float(c.lse_r), "topk_k": float(c.topk_k)}

    def loss(self, logits: torch.Tensor, labels: torch.Tensor, class_weights: Any = None,
             reduction: str = "sum") -> torch.Tensor:
        """The competition loss (:func:`~sacnn_lab.competition.competition_loss`) under this network's
        aggregation (the paper's maximum by default)."""
        return competition_loss(logits, labels, class_weights=class_weights, reduction=reduction,
                                **self.aggregation)

    def image_scores(self, logits: torch.Tensor) -> torch.Tensor:
        """``(B, K)`` image probabilities under this network's aggregation
        (:func:`~sacnn_lab.competition.image_scores`)."""
        return image_scores(logits, **self.aggregation)

    def forward(self, x: torch.Tensor, background: torch.Tensor | None = None) -> torch.Tensor:
        """Per-pixel class logits.

        Args:
            x: images ``(B, in_channels, H, W)``, float, values in [0, 1].
            background: with ``input_norm="abs_deviation"``, the background grays ``(B, C, 1, 1)`` to take
                instead of each image's own (see :func:`normalise_input`); ``None``: their own.

        Returns:
            Logits ``(B, 1 + K, s, t)``; channel 0 is defect-free, channels 1..K the defect types.
        """
        if x.dim() != 4 or x.shape[1] != self.config.in_channels:
            raise ValueError(
                f"expected images (B, {self.config.in_channels}, H, W), got shape {tuple(x.shape)}"
            )
        x = normalise_input(x, self.config.input_norm, background)
        if self.config.input_pool > 1:
            x = F.avg_pool2d(x, self.config.input_pool)
        return self.head(self.extractor(x))

    def feature_size(self, height: int, width: int) -> tuple[int, int]:
        """Size ``(s, t)`` of the logits for an ``height × width`` input.

        Raises:
            ValueError: the input is too small to survive the poolings.
        """
        q = self.config.input_pool
        if self.config.backbone is None:
            s, t = height // q, width // q
            for _ in self.config.channels:
                s, t = s // 2, t // 2
        else:
            p = next(self.parameters())
            with torch.no_grad():
                try:
                    out = self.extractor(torch.zeros(1, self.config.in_channels, height // q, width // q,
                                                     dtype=p.dtype, device=p.device))
                except RuntimeError as e:
                    raise ValueError(f"input {height}×{width} is too small for this backbone: {e}") from e
            s, t = out.shape[-2:]
        if s < 1 or t < 1:
            raise ValueError(
                f"input {height}×{width} is too small: {self.config.num_blocks} poolings leave {s}×{t}"
            )
        return int(s), int(t)


# ---------------------------------------------------------------------------------------------------
# torchvision backbones


def _flatten(module: nn.Module) -> list[nn.Module]:
    """Plain ``nn.Sequential`` containers expanded into their layers, recursively."""
    if isinstance(module, nn.Sequential) and type(module).forward is nn.Sequential.forward:
        return [m for child in module for m in _flatten(child)]
    return [module]


def _backbone_layers(net: nn.Module) -> list[nn.Module]:
    """The layers of a torchvision classifier in forward order, without its pooling and classifier."""
    features = getattr(net, "features", None)
    if isinstance(features, nn.Module):
        return _flatten(features)
    layers: list[nn.Module] = []
    for child in net.children():
        if isinstance(child, (nn.AdaptiveAvgPool2d, nn.AdaptiveMaxPool2d, nn.Linear, nn.Flatten, nn.Dropout)):
            break
        layers.extend(_flatten(child))
    return layers


def _adapt_first_conv(extractor: nn.Sequential, in_channels: int) -> None:
    """Give the first convolution ``in_channels`` inputs, keeping the response to a gray image.

    One channel: the RGB kernels are summed, so a gray image gives the activations that the same gray
    repeated in R, G and B gave. Otherwise the kernels are repeated cyclically and scaled by
    ``3 / in_channels``.
    """
    for name, conv in extractor.named_modules():
        if isinstance(conv, nn.Conv2d):
            break
    else:
        raise ValueError("the backbone has no Conv2d to adapt to in_channels")
    if conv.in_channels == in_channels:
        return
    if conv.groups != 1:
        raise ValueError(
            f"cannot adapt a grouped first convolution ({conv.groups} groups) to {in_channels} channels"
        )
    w = conv.weight.detach()
    if in_channels == 1:
        new_w = w.sum(dim=1, keepdim=True)
    else:
        reps = math.ceil(in_channels / w.shape[1])
        new_w = w.repeat(1, reps, 1, 1)[:, :in_channels] * (w.shape[1] / in_channels)
    new = nn.Conv2d(
        in_channels, conv.out_channels, conv.kernel_size, conv.stride, conv.padding, conv.dilation,
        bias=conv.bias is not None, padding_mode=conv.padding_mode,
    )
    with torch.no_grad():
        new.weight.copy_(new_w)
        if conv.bias is not None:
            new.bias.copy_(conv.bias)
    parent_name, _, attr = name.rpartition(".")
    parent = extractor.get_submodule(parent_name) if parent_name else extractor
    setattr(parent, attr, new)


def _cut_backbone(config: ModelConfig) -> tuple[nn.Sequential, int]:
    """Build the torchvision model, load local weights, keep the layers up to ``backbone_stride``.

    The kept prefix is the longest one whose total stride is ``backbone_stride`` (for VGG at stride 8:
    up to the last ReLU before the fourth pooling; for ResNet: through ``layer2``).

    Returns:
        The extractor and its number of output channels.
    """
    import torchvision

    name = config.backbone
    assert name is not None
    if name.startswith(_UNCUTTABLE):
        raise ValueError(f"backbone {name!r} is a transformer; only convolutional backbones can be cut")
    path = config.backbone_weights
    if path is not None and not os.path.isfile(path):  # before building anything
        raise FileNotFoundError(f"backbone_weights file not found: {path!r}")
    net = torchvision.models.get_model(name, weights=None)
    if path is not None:
        state = torch.load(path, map_location="cpu", weights_only=True)
        if isinstance(state, dict) and isinstance(state.get("state_dict"), dict):
            state = state["state_dict"]
        try:
            net.load_state_dict(state)
        except RuntimeError as e:
            raise ValueError(f"{path!r} is not a state dict of torchvision's {name!r}: {e}") from e

    was_training = net.training
    net.eval()  # the probe runs one image: batch statistics would fail or be meaningless
    size = max(64, 8 * config.backbone_stride)
    x = torch.zeros(1, 3, size, size)
    kept: list[nn.Module] = []
    strides: list[int] = []
    channels = 3
    with torch.no_grad():
        for layer in _backbone_layers(net):
            try:
                y = layer(x)
            except Exception as e:  # noqa: BLE001 - any failure means: not a plain layer chain
                raise ValueError(
                    f"backbone {name!r} is not a plain chain of layers; cannot cut it ({e})"
                ) from e
            if not isinstance(y, torch.Tensor) or y.dim() != 4 or y.shape[2] != y.shape[3]:
                raise ValueError(f"backbone {name!r} does not keep (B, C, H, W) features; cannot cut it")
            stride = round(size / y.shape[2])
            if stride > config.backbone_stride:
                break
            kept.append(layer)
            x, channels = y, y.shape[1]
            if not strides or strides[-1] != stride:
                strides.append(stride)
    if not strides or strides[-1] != config.backbone_stride:
        raise ValueError(
            f"backbone {name!r} never has stride {config.backbone_stride} "
            f"(strides reached below it: {strides}); choose another backbone_stride"
        )
    extractor = nn.Sequential(*kept)
    extractor.train(was_training)
    _adapt_first_conv(extractor, config.in_channels)
    return extractor, int(channels)


# ---------------------------------------------------------------------------------------------------
# visual field


def _as_size(input_size: int | tuple[int, int] | None) -> tuple[int, int] | None:
    if input_size is None:
        return None
    if isinstance(input_size, int):
        return input_size, input_size
    h, w = input_size
    return int(h), int(w)


def block_layers(config: ModelConfig) -> list[list[tuple[int, int, int]]]:
    """Each block's layers as ``(effective kernel, stride, padding)``, in order: the geometry
    :func:`receptive_field` and the ONNX export's tiling (:mod:`sacnn_lab.export`) follow (the ``input_pool``
    before the first block not included)."""
    k, d = config.kernel_size, config.dilation
    # padding keeps the size for odd kernels
    layers = [(k, 1, k // 2), (d * (k - 1) + 1, 1, d * (k // 2)), (2, 2, 0)]
    strided = [(k, 2, k // 2), (d * (k - 1) + 1, 1, d * (k // 2))]  # first_stride=2: no pooling
    return [strided if b == 0 and config.first_stride == 2 else layers for b in range(config.num_blocks)]


def receptive_field(
    config: ModelConfig, input_size: int | tuple[int, int] | None = None
) -> list[dict]:
    """Visual field of one pixel of each block's output, computed layer by layer.

    The standard recurrence over the layers of every block (conv, dilated conv, 2×2 pool): with
    ``k_eff = d·(k − 1) + 1``, ``rf += (k_eff − 1)·jump``, ``start += ((k_eff − 1)/2 − pad)·jump``,
    ``jump *= stride``; the output size is ``(n + 2·pad − k_eff) // stride + 1``.

    Args:
        config: a block-extractor config (``backbone=None``).
        input_size: ``H`` or ``(H, W)`` of the input, to report each block's output size; optional.

    Returns:
        One dict per block, in order: ``block`` (1-based), ``rf`` (side of the visual field in input
        pixels), ``jump`` (input pixels between neighbouring output pixels, i.e. the stride),
        ``start`` (centre of output pixel 0 in continuous input coordinates, pixel ``i`` spanning
        ``[i, i + 1)``; output pixel ``j`` is centred at ``start + j·jump``) and ``size``
        (``(h, w)`` of the block's output, or ``None`` without ``input_size``).

    Raises:
        ValueError: the config uses a torchvision backbone (no analytic field is computed for it).
    """
    if config.backbone is not None:
        raise ValueError(
            f"receptive_field is computed for the block extractor only, not backbone {config.backbone!r}"
        )
    size = _as_size(input_size)
    q = config.input_pool  # an average pooling of q×q, stride q, before the first block
    rf, jump, start = q, q, q / 2
    if size is not None:
        size = tuple(n // q for n in size)  # type: ignore[assignment]
    out = []
    for b, block in enumerate(block_layers(config)):
        for k_eff, stride, pad in block:
            rf += (k_eff - 1) * jump
            start += ((k_eff - 1) / 2 - pad) * jump
            jump *= stride
            if size is not None:
                size = tuple((n + 2 * pad - k_eff) // stride + 1 for n in size)  # type: ignore[assignment]
        out.append({"block": b + 1, "rf": rf, "jump": jump, "start": start, "size": size})
    return out


def suggest_blocks(
    defect_size: float,
    kernel_size: int = 3,
    dilation: int = 2,
    max_blocks: int = 8,
    rule: str = "cover",
    input_pool: int = 1,
) -> int:
    """Number of blocks whose last visual field fits a defect of ``defect_size`` pixels.

    The paper: "the visual field of a pixel in the last CB's feature map should be approximately equal
    to the size of the actual defect".

    Args:
        defect_size: typical side of a defect in input pixels.
        kernel_size: kernel size of the blocks.
        dilation: dilation of the blocks' second convolution.
        max_blocks: the largest number of blocks considered.
        rule: ``"cover"`` (default): the fewest blocks whose visual field is at least
            ``defect_size`` (or ``max_blocks``); ``"closest"``: the visual field nearest to
            ``defect_size`` (ties: fewer blocks). With the defaults (fields 8, 22, 50, 106, 218 px for 1–5 blocks),
            ``"cover"`` reproduces the paper's choices (3 blocks for ~25–32 px characters, 5 for
            DAGM defects of 107–218 px), while ``"closest"`` picks one block fewer for both.
        input_pool: the input's average pooling before the first block (see
            :class:`~sacnn_lab.config.ModelConfig`); at 2 the fields are 16, 44, 100 … px, and
            ``"cover"`` picks 2 blocks for the characters (the ``fast`` preset).

    Returns:
        The number of blocks, in ``1..max_blocks``.
    """
    if not defect_size > 0:
        raise ValueError(f"defect_size must be > 0, not {defect_size}")
    if isinstance(max_blocks, bool) or not isinstance(max_blocks, int) or max_blocks < 1:
        raise ValueError(f"max_blocks must be an int >= 1, not {max_blocks!r}")
    if rule not in ("closest", "cover"):
        raise ValueError(f"rule must be 'closest' or 'cover', not {rule!r}")
    config = ModelConfig(channels=(1,) * max_blocks, kernel_size=kernel_size, dilation=dilation,
                         input_pool=input_pool)
    fields = [r["rf"] for r in receptive_field(config)]
    if rule == "cover":
        return next((i + 1 for i, rf in enumerate(fields) if rf >= defect_size), max_blocks)
    return min(range(max_blocks), key=lambda i: (abs(fields[i] - defect_size), i)) + 1
