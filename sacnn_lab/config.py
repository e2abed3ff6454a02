"""Configuration dataclasses of sacnn-lab, with defaults, validation and a JSON round trip.

:class:`ModelConfig` describes one SACNN network (paper, section "SACNN"): the feature extractor
(a string of convolutional blocks, or a torchvision backbone) and the feature-competition head with
``1 + num_defect_types`` classes per pixel; :class:`BaselineConfig` the Grad-CAM baseline's network instead.
:class:`DataConfig` and :class:`TrainConfig` describe the data and the training, and :class:`RunConfig` holds a
run's three (its presets: :meth:`RunConfig.preset`, :meth:`RunConfig.baseline`). Every config is a plain
dataclass: a notebook changes one field with :func:`dataclasses.replace`, and :meth:`RunConfig.to_dict` is what
a run writes beside its checkpoints (``config.json``).
"""

from __future__ import annotations

import math
import numbers
import os
from dataclasses import asdict, dataclass, fields, replace
from typing import Any

from .cam_methods import CAM_METHODS

NORMS = ("none", "batch", "group")
INPUT_NORMS = ("centre", "abs_deviation")


def _check_int(name: str, value: Any, low: int) -> None:
    # bool is an int subclass: reject it explicitly, `channels=(True,)` is a bug, not a width of 1
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"{name} must be an int, not {type(value).__name__} ({value!r})")
    if value < low:
        raise ValueError(f"{name} must be >= {low}, not {value}")


def _finite(value: Any, above: float | None = None) -> bool:
    """``value`` is a real, finite number (and ``> above`` when given); NaN and infinities are not."""
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        return False
    return math.isfinite(value) and (above is None or value > above)


def _from_dict(cls: type, d: dict[str, Any]) -> Any:
    """``cls(**d)`` for a config dataclass, naming any key that is not one of its fields."""
    names = {f.name for f in fields(cls)}
    unknown = sorted(set(d) - names)
    if unknown:
        raise ValueError(f"unknown {cls.__name__} field(s) {unknown}; known: {sorted(names)}")
    return cls(**d)


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
        first_stride: 1 (the paper) or 2: the first block's first convolution strides by 2 and that
            block does not pool. Same output size and nearly the same visual field, about 4× cheaper at
            full resolution: a CPU-friendly variant used by the ``fast`` preset, not the paper's block.
        input_pool: 1 (the paper), 2 or 4: the input is average-pooled by this factor before the first
            block (a 512×512 textile image is seen at 256×256). Each block's visual field, in input
            pixels, grows by the same factor; maps are still returned at the input's size. About
            ``input_pool²`` times cheaper, not the paper: the ``fast`` character preset sees the
            136×136 images at 68×68 through 2 blocks (a 17×17 map, as the paper's 3 blocks give).
        input_norm: how the model scales its [0, 1] input, per image and channel: ``"centre"`` (a plain
            rescaling, ``(x - 0.5) / 0.5``: the default, and the ``paper`` preset's) or
            ``"abs_deviation"`` (``|x - median(x)| / 0.25``: how far each pixel lies from the image's
            background gray, its median over every other row and column, whichever way; a dark defect on
            a light background and a light one on a dark background then look alike). Not the paper: the
            ``fast`` character preset uses it (its backgrounds and inks are of any gray).
        aggregation: how each defective layer's pixels become the image's probability: ``"max"`` (the
            paper's feature competition), ``"mean"``, ``"lse"`` (log-sum-exp with sharpness ``lse_r``) or
            ``"topk"`` (the mean of the ``topk_k`` highest pixels: a count, or a share of the pixels when
            below 1); see :mod:`sacnn_lab.competition`. The defect map is the same layer whichever it is.
        lse_r: the sharpness of ``"lse"`` (small: near the mean; large: near the maximum).
        topk_k: ``k`` of ``"topk"``.
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
    first_stride: int = 1
    input_pool: int = 1
    input_norm: str = "centre"
    aggregation: str = "max"
    lse_r: float = 5.0
    topk_k: float = 0.05

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
        if self.first_stride not in (1, 2):
            raise ValueError(f"first_stride must be 1 (the paper) or 2, not {self.first_stride!r}")
        if self.input_pool not in (1, 2, 4):
            raise ValueError(f"input_pool must be 1 (the paper), 2 or 4, not {self.input_pool!r}")
        if self.input_norm not in INPUT_NORMS:
            raise ValueError(f"input_norm must be one of {INPUT_NORMS}, not {self.input_norm!r}")
        if not _finite(self.lse_r) or not _finite(self.topk_k):
            raise ValueError(f"lse_r and topk_k must be finite numbers, not {self.lse_r!r}, {self.topk_k!r}")
        _check_aggregation(self.aggregation, float(self.lse_r), float(self.topk_k))
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
        return _from_dict(cls, d)

    @classmethod
    def characters(cls, **overrides: Any) -> ModelConfig:
        """The paper's network for the 136×136 character set: 3 blocks."""
        return cls(**{"channels": (32, 64, 128), **overrides})

    @classmethod
    def textile(cls, **overrides: Any) -> ModelConfig:
        """The paper's network for the 512×512 textile (DAGM 2007) set: 5 blocks."""
        return cls(**{"channels": (32, 64, 96, 128, 160), **overrides})


BASELINE_ARCHS = ("vgg19", "vgg19_bn")


@dataclass
class BaselineConfig:
    """The Grad-CAM baseline: torchvision's VGG19 adapted to gray input and two classes, whose defect maps
    come from a CAM method of the ``grad-cam`` package (see :mod:`sacnn_lab.baseline`).

    Attributes:
        arch: ``"vgg19"`` (torchvision's VGG19, the paper's baseline) or ``"vgg19_bn"`` (the same with
            batch normalisation after every convolution, torchvision's ``vgg19_bn``: easier to train from
            scratch).
        width: multiplier of every layer's width (convolutions and the two hidden fully connected
            layers), in (0, 1]. 1 is torchvision's network unchanged; below 1 it is "VGG19-style,
            reduced", for CPUs. Pretrained weights need ``width=1``.
        weights: ``None`` (random initialisation), ``"imagenet"`` (torchvision's ImageNet weights from
            the local torch hub cache, ``torch.hub.get_dir()/checkpoints``; when absent, one warning and
            training from scratch; nothing is ever downloaded), or a path to a state dict of
            torchvision's model (a missing file is an error).
        cam: the CAM method of the ``grad-cam`` package, by name (``"gradcam"``, ``"gradcam++"``,
            ``"hirescam"``, ``"xgradcam"``, ``"layercam"``, ``"eigencam"``, ``"scorecam"``...; see
            :data:`sacnn_lab.cam_methods.CAM_METHODS`).
        target_layer: the layer the CAM explains, as a dotted module name (``"features.34"``);
            ``None``: ``features[-1]``, the last pooling.
        in_channels: channels of the input image (1 for gray).
        dropout: dropout of the fully connected layers (torchvision's 0.5).
        input_pool: 1 (torchvision's network) , 2 or 4: the input is average-pooled by this factor first
            (a CPU variant for 512×512 textile images; its maps are still at the input's size).
        input_norm: ``"imagenet"`` (``(x - 0.449) / 0.226``, ImageNet's gray statistics: what pretrained
            weights expect) or ``"abs_deviation"`` (as SACNN's ``ModelConfig.input_norm``: the distance of
            each pixel from the image's median gray; a comparison then gives both networks the same input).
    """

    arch: str = "vgg19"
    width: float = 1.0
    weights: str | None = None
    cam: str = "gradcam"
    target_layer: str | None = None
    in_channels: int = 1
    dropout: float = 0.5
    input_pool: int = 1
    input_norm: str = "imagenet"

    def __post_init__(self) -> None:
        if self.input_pool not in (1, 2, 4):
            raise ValueError(f"input_pool must be 1, 2 or 4, not {self.input_pool!r}")
        if self.input_norm not in ("imagenet", "abs_deviation"):
            raise ValueError(f"input_norm must be 'imagenet' or 'abs_deviation', not {self.input_norm!r}")
        if self.arch not in BASELINE_ARCHS:
            raise ValueError(f"arch must be one of {BASELINE_ARCHS}, not {self.arch!r}")
        if isinstance(self.width, bool) or not isinstance(self.width, (int, float)):
            raise TypeError(f"width must be a number in (0, 1], not {self.width!r}")
        self.width = float(self.width)
        if not 0 < self.width <= 1:
            raise ValueError(f"width must lie in (0, 1], not {self.width}")
        if isinstance(self.weights, os.PathLike):
            self.weights = os.fspath(self.weights)
        if self.weights is not None and not isinstance(self.weights, str):
            raise TypeError(f"weights must be None, 'imagenet' or a path, not {self.weights!r}")
        if self.weights is not None and self.width != 1:
            raise ValueError(f"pretrained weights fit torchvision's {self.arch} only: use width=1, "
                             f"not {self.width}")
        if not isinstance(self.cam, str):
            raise TypeError(f"cam must be a CAM method name, not {self.cam!r}")
        if self.cam.lower() not in CAM_METHODS:
            raise ValueError(f"cam must be one of {sorted(CAM_METHODS)}, not {self.cam!r}")
        self.cam = self.cam.lower()
        if self.target_layer is not None and not isinstance(self.target_layer, str):
            raise TypeError(f"target_layer must be a module name like 'features.34' or None, "
                            f"not {self.target_layer!r}")
        _check_int("in_channels", self.in_channels, 1)
        if not 0 <= self.dropout < 1:
            raise ValueError(f"dropout must lie in [0, 1), not {self.dropout}")

    @property
    def name(self) -> str:
        """How the network is named in tables and figures (honest about reductions)."""
        base = "VGG19-BN" if self.arch == "vgg19_bn" else "VGG19"
        cuts = ([f"width {self.width:g}"] if self.width != 1 else []) + (
            [f"input /{self.input_pool}"] if self.input_pool > 1 else [])
        return f"{base}-style, reduced ({', '.join(cuts)})" if cuts else base

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict of every field (``arch`` tells a baseline from a SACNN config)."""
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> BaselineConfig:
        """Rebuild a config from :meth:`to_dict` output.

        Raises:
            ValueError: ``d`` holds a key that is not a field of the config.
        """
        return _from_dict(cls, d)


OPTIMIZERS = ("sgd", "adam", "adamw")
SCHEDULES = ("constant", "onecycle", "cosine")
SUPERVISIONS = ("image", "mask")
COMPILE_MODES = ("off", "default", "reduce-overhead", "max-autotune")  # TrainConfig.compile
AGGREGATIONS = ("max", "mean", "lse", "topk")
"""How a defective layer's pixels become the image's probability (see :mod:`sacnn_lab.competition`)."""


def _check_aggregation(aggregation: str, lse_r: float, topk_k: float) -> None:
    if aggregation not in AGGREGATIONS:
        raise ValueError(f"aggregation must be one of {AGGREGATIONS}, not {aggregation!r}")
    if not lse_r > 0 or lse_r != lse_r or lse_r == float("inf"):
        raise ValueError(f"lse_r (the sharpness of log-sum-exp pooling) must be a finite number > 0, not {lse_r}")
    if not topk_k > 0 or topk_k != topk_k or (topk_k >= 1 and topk_k != int(topk_k)):
        raise ValueError(f"topk_k must be a whole count >= 1 or a share of the pixels in (0, 1), not {topk_k}")

DEVICES = ("auto", "cpu", "cuda", "mps")
BEST_METRICS = ("val_accuracy", "val_precision", "val_recall", "val_f1", "val_auroc", "val_pointing_game")


SOURCES = ("characters", "textile", "folder")
TRUTHS = ("ellipse", "mask")


@dataclass
class DataConfig:
    """Where the samples of a run come from.

    ``source="characters"``: training draws fresh samples every epoch (epoch ``e`` uses indices
    ``e*N … (e+1)*N-1`` of the training seed, like the authors' on-the-fly generator, but reproducible);
    the held-out validation set, the test set and the probe batch are fixed.

    ``source="folder"``: a user's own class folder (``folder``), read image by image from disk in every
    epoch (bounded memory), with its validation and test splits held in memory.

    ``source="textile"``: a DAGM 2007 class folder, as in the paper: a fixed ``Train`` split passed over
    once per epoch (shuffled, flipped) and a ``Test`` split. The folder is ``folder`` (the real DAGM 2007,
    or any set in its layout) or, by default, the generated textile set of ``textile``, written once
    into the cache (see :func:`sacnn_lab.data.textile_folder`). DAGM has no validation split: the
    per-epoch ``val_*`` figures of a textile run are measured on the ``Test`` split (as the paper's
    curves are) and are only recorded, never used to choose anything; the probe batch comes from it too.

    Attributes:
        source: ``"characters"`` (the generated character set) or ``"textile"`` (DAGM 2007 layout).
        characters: the character generator's knobs for training.
        textile: the textile generator's knobs (``source="textile"`` without ``folder``).
        folder: a DAGM 2007 class folder (``.../Class1``); ``None``: the generated textile set.
        truth: textile localisation truth: ``"ellipse"`` (DAGM's weak elliptical labels, what the real
            set has) or ``"mask"`` (the generator's true defect mask; generated sets only).
        train_seed / val_seed / test_seed: separate seeds, hence disjoint splits. A generated textile
            set is the one of seed ``train_seed`` (its Train and Test splits have their own seeds).
        samples_per_epoch: training samples per epoch (the paper: 100,000); textile: the size of the
            generated ``Train`` split (DAGM's 575), passed over once per epoch.
        val_size: the fixed held-out character set evaluated after every epoch (textile: unused).
        test_size: the test split (the paper's character figure is on a balanced one); textile: the
            size of the generated ``Test`` split (DAGM's 575).
        probe_size: the fixed test images whose defect maps are recorded every epoch.
        eval_ratio: defect-free per defective character image in validation, test and probe sets
            (1 = balanced); textile splits keep the generator's ``ratio``.
        early_size / early_epochs: progressive resizing (characters only): the first ``early_epochs``
            epochs train on generated images of ``early_size`` px a side (characters, lines and
            distractors at their usual sizes, so a smaller image holds the same things with less
            background around them) in batches that hold the same number of pixels
            (``batch_size · (image_size / early_size)²``); the later epochs, validation, test and probe
            sets are full size. The network is fully convolutional, so it needs no change; each early
            sample costs ``(early_size / image_size)²`` of a full one. ``early_epochs=0`` (or
            ``early_size=None``): full size throughout.
        resize / val_fraction / test_fraction: ``source="folder"`` (a user's class folder: ``good/`` beside
            one or more folders of defective images, see :func:`data_gen.folders.read_class_folder`): the
            ``(H, W)`` every image is brought to (``None``: the set's most common size), and the shares of
            each class held out for validation and test when the folder brings no ``train/`` and
            ``test/`` of its own (a split seeded by ``train_seed``, stratified by folder, written into the
            run folder as ``splits.json``).
        defect_types: ``source="folder"``: the defect folders a K-type head tells apart, in the order of
            its defective layers (``ModelConfig.num_defect_types`` must be their number); ``None``: every
            defect folder is one defective class (the paper's case).
        quarter_turns / brightness: training augmentation of a folder run, besides the flips every folder
            run draws: each image turned by a random quarter turn (square images only; a surface has no
            up), and its gray values scaled by a random gain in ``[1 - brightness, 1 + brightness]`` and
            shifted by up to ``brightness / 2`` (lighting that varies from photograph to photograph).
        one_size: ``source="folder"``: every image must have the set's one size (``resize`` unset): an image of
            another size is an error naming it, instead of being resized to the most common size.
        color: ``source="folder"``: read the images as RGB and train a network of 3 input channels
            (``ModelConfig.in_channels=3``, set together); ``False``: gray (the paper's case).
    """

    source: str = "characters"
    characters: Any = None
    textile: Any = None
    folder: str | None = None
    truth: str = "ellipse"
    train_seed: int = 0
    val_seed: int = 1
    test_seed: int = 2
    samples_per_epoch: int = 100_000
    val_size: int = 1_000
    test_size: int = 2_000
    probe_size: int = 16
    eval_ratio: float = 1.0
    early_size: int | None = None
    early_epochs: int = 0
    resize: tuple[int, int] | None = None
    val_fraction: float = 0.15
    test_fraction: float = 0.15
    defect_types: tuple[str, ...] | None = None
    quarter_turns: bool = False
    brightness: float = 0.0
    one_size: bool = False
    color: bool = False

    def __post_init__(self) -> None:
        from data_gen.characters import CharacterConfig
        from data_gen.textile import TextileConfig

        if self.source not in SOURCES:
            raise ValueError(f"data source must be one of {SOURCES}, not {self.source!r}")
        if self.characters is None:
            self.characters = CharacterConfig()
        elif isinstance(self.characters, dict):
            self.characters = CharacterConfig(**self.characters)
        if self.textile is None:
            self.textile = TextileConfig()
        elif isinstance(self.textile, dict):
            self.textile = TextileConfig(**self.textile)
        if isinstance(self.folder, os.PathLike):
            self.folder = os.fspath(self.folder)
        if self.folder is not None and (self.source == "characters" or not isinstance(self.folder, str)):
            raise ValueError(f"folder (a DAGM 2007 class folder, or your own class folder) needs source='textile' "
                             f"or 'folder' and a path, not source={self.source!r}, folder={self.folder!r}")
        if self.source == "folder" and self.folder is None:
            raise ValueError("source='folder' needs folder: the class folder (good/ beside the defect folders)")
        if self.resize is not None:
            self.resize = tuple(self.resize)
            if len(self.resize) != 2:
                raise ValueError(f"resize must be (height, width), not {self.resize}")
            for v in self.resize:
                _check_int("resize", v, 16)
        for name in ("val_fraction", "test_fraction"):
            if not (_finite(getattr(self, name)) and 0 < getattr(self, name) < 0.5):
                raise ValueError(f"{name} must lie in (0, 0.5), not {getattr(self, name)}")
        if self.defect_types is not None:
            if isinstance(self.defect_types, str) or not all(isinstance(t, str) and t for t in self.defect_types):
                raise TypeError(f"defect_types must be a sequence of defect folder names, not {self.defect_types!r}")
            self.defect_types = tuple(self.defect_types)
            if len(set(self.defect_types)) != len(self.defect_types) or len(self.defect_types) < 2:
                raise ValueError(f"defect_types must name two or more different defect folders, not "
                                 f"{self.defect_types!r}")
            if self.source != "folder" or "good" in self.defect_types:
                raise ValueError("defect_types (a head of several defect types) needs source='folder' and names "
                                 "its defect folders (good/ is the defect-free class)")
        if not isinstance(self.quarter_turns, bool):
            raise TypeError(f"quarter_turns must be a bool, not {self.quarter_turns!r}")
        if not (_finite(self.brightness) and 0 <= self.brightness < 1):
            raise ValueError(f"brightness must lie in [0, 1), not {self.brightness!r}")
        if not isinstance(self.one_size, bool) or (self.one_size and self.resize is not None):
            raise ValueError(f"one_size (every image of one size) must be a bool, and goes without resize; got "
                             f"one_size={self.one_size!r}, resize={self.resize!r}")
        if not isinstance(self.color, bool):
            raise TypeError(f"color must be a bool, not {self.color!r}")
        if self.color and self.source != "folder":
            raise ValueError("color (RGB images, 3 input channels) needs source='folder': the generated sets are gray")
        if (self.quarter_turns or self.brightness) and self.source != "folder":
            raise ValueError("quarter_turns and brightness augment a class-folder run (source='folder')")
        if self.truth not in TRUTHS:
            raise ValueError(f"truth must be one of {TRUTHS}, not {self.truth!r}")
        for name in ("samples_per_epoch", "val_size", "test_size", "probe_size"):
            _check_int(name, getattr(self, name), 1)
        for name in ("train_seed", "val_seed", "test_seed"):
            _check_int(name, getattr(self, name), 0)
        if len({self.train_seed, self.val_seed, self.test_seed}) < 3:
            raise ValueError("train_seed, val_seed and test_seed must differ (they define disjoint splits)")
        _check_int("early_epochs", self.early_epochs, 0)
        if self.early_size is None and self.early_epochs:
            raise ValueError(f"early_epochs={self.early_epochs} needs early_size (the side of the early "
                             f"epochs' images: progressive resizing)")
        if self.early_size is not None:
            if self.source != "characters":
                raise ValueError("early_size (progressive resizing) needs source='characters': a DAGM "
                                 "folder's images have one size")
            _check_int("early_size", self.early_size, 32)
            if self.early_size >= self.characters.image_size:
                raise ValueError(f"early_size must be smaller than the images ({self.characters.image_size} "
                                 f"px), not {self.early_size}")
            try:
                self.early_characters()
            except ValueError as e:
                raise ValueError(f"early_size={self.early_size} does not fit the characters: {e}") from e

    @classmethod
    def dagm(cls, **overrides: Any) -> DataConfig:
        """The textile source at DAGM 2007's sizes: 575 Train and 575 Test images (the generated set, or
        the real one with ``folder=...``)."""
        return cls(**{"source": "textile", "samples_per_epoch": 575, "test_size": 575, **overrides})

    @property
    def image_size(self) -> int:
        """Side of the images the source makes (a DAGM folder's are checked when it is read)."""
        return self.textile.image_size if self.source == "textile" else self.characters.image_size

    def eval_characters(self) -> Any:
        """The generator knobs of the validation / test / probe sets: training's, at ``eval_ratio``."""
        return replace(self.characters, ratio=self.eval_ratio)

    def early_characters(self) -> Any:
        """The generator knobs of the early epochs: training's, at ``early_size`` px a side."""
        return replace(self.characters, image_size=self.early_size)

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["characters"] = self.characters.to_dict()
        d["textile"] = self.textile.to_dict()
        return d


@dataclass
class TrainConfig:
    """How a run trains.

    Attributes:
        epochs: number of epochs.
        batch_size: samples per step (the paper: 64 for characters, 16 for textile).
        optimizer: ``"sgd"`` (the paper), ``"adam"`` or ``"adamw"``.
        lr: (peak) learning rate (the paper: 0.01).
        momentum: SGD momentum (the paper: none).
        weight_decay: L2 penalty.
        schedule: ``"constant"`` (the paper), ``"onecycle"`` or ``"cosine"`` over the whole run.
        warmup: share of the run spent warming up, for ``"onecycle"``.
        class_weights: ``(w_defect_free, w_defective)`` weights of the two terms of Eq. 3, or ``None``.
        reduction: ``"sum"`` over the batch (Eq. 4, the paper) or ``"mean"``.
        device: ``"auto"`` (CUDA, then Apple MPS, then CPU), ``"cpu"``, ``"cuda"`` or ``"mps"``.
        amp: mixed precision (bfloat16/float16 autocast) where the device is CUDA.
        channels_last: channels-last memory format (faster convolutions on CUDA and on CPU).
        num_workers: DataLoader worker processes (0 = generate in the training process).
        seed: seeds the model's initialisation.
        max_time: stop after this many seconds of training (the epoch in progress is cut short and
            recorded); ``None`` = no limit. A one-cycle or cosine schedule then follows the share of the
            budget spent when that is ahead of the share of steps done, so a run cut by its budget has
            still annealed.
        eval_batch_size: batch size for evaluation and probe maps.
        eval_localisation: the held-out evaluation also measures the maps against the truth every time
            (``val_iou_otsu``, ``val_compactness_otsu``, ``val_energy_pointing_game``, ``val_false_alarm_area``
            …, see :func:`~sacnn_lab.callbacks.evaluate_arrays`): what the aggregation study follows.
        eval_every: evaluate the held-out set every this many epochs (and after the last); probe maps
            are recorded every epoch regardless.
        threads: CPU threads for torch (``None``: torch's default).
        grad_clip: clip the gradients' total norm to this before each step (``None``: no clipping; 20
            keeps the ``paper`` preset from diverging on a GPU).
        deterministic: on CUDA, train with cuDNN's deterministic algorithms only, so that a run
            repeated, or interrupted and resumed, gives the same weights bit for bit. On our H200 runs
            were bit-identical without it too, and its speed was within 10 % either way
            (``benchmarks/cuda_check.py``); it is there for GPUs whose cuDNN picks non-deterministic
            algorithms. The CPU path is deterministic either way.
        keep_best: also keep ``best.pt`` in the run folder: the checkpoint of the epoch with the highest
            value of this validation figure so far (one of ``BEST_METRICS``, e.g. ``"val_pointing_game"``;
            ties keep the earlier epoch; epochs without an evaluation, see ``eval_every``, never count).
            ``None``: the last epoch's ``checkpoint.pt`` only. Needs a run folder; character runs only
            (a textile run's per-epoch figures come from its Test split).
        supervision: ``"image"`` (SACNN, the paper: image labels only) or ``"mask"``: the same network
            trained as a patch classifier from the true masks as well (every cell of its map against the
            cells the mask touches, :func:`~sacnn_lab.competition.mask_loss`, added to the competition
            loss on the image labels), the supervised reference of the comparison: it sees labels SACNN
            never sees. Generated sets and DAGM folders (which carry masks).
        compile: ``"off"`` (PyTorch's eager mode), or a mode of :func:`torch.compile` for the model's forward
            pass: ``"default"``, ``"reduce-overhead"`` (the forward and backward replayed as CUDA graphs) or
            ``"max-autotune"``. The first steps then take a while (compilation); see docs/results.md, "On a GPU".
        cuda_graph: on CUDA, capture the whole training step (forward, loss, backward, clipping, optimiser
            step) once as one CUDA graph and replay it for every full batch (a shorter last batch runs
            eagerly): one launch per step instead of hundreds, for small networks whose steps are bound by
            kernel launches (the ``paper`` character preset). Needs a constant learning rate, one process,
            image supervision and no float16 loss scaling; elsewhere it is refused (:class:`ValueError`).
            Ignored off CUDA.
    """

    epochs: int = 20
    batch_size: int = 64
    optimizer: str = "sgd"
    lr: float = 0.01
    momentum: float = 0.0
    weight_decay: float = 0.0
    schedule: str = "constant"
    warmup: float = 0.15
    class_weights: tuple[float, float] | None = None
    reduction: str = "sum"
    device: str = "auto"
    amp: bool = True
    channels_last: bool = True
    num_workers: int = 0
    seed: int = 0
    max_time: float | None = None
    eval_batch_size: int = 250
    eval_every: int = 1
    eval_localisation: bool = False
    threads: int | None = None
    grad_clip: float | None = None
    deterministic: bool = False
    keep_best: str | None = None
    supervision: str = "image"
    compile: str = "off"
    cuda_graph: bool = False

    def __post_init__(self) -> None:
        _check_int("epochs", self.epochs, 1)
        _check_int("batch_size", self.batch_size, 1)
        _check_int("num_workers", self.num_workers, 0)
        _check_int("eval_batch_size", self.eval_batch_size, 1)
        _check_int("eval_every", self.eval_every, 1)
        if not isinstance(self.eval_localisation, bool):
            raise TypeError(f"eval_localisation must be a bool, not {self.eval_localisation!r}")
        if self.optimizer not in OPTIMIZERS:
            raise ValueError(f"optimizer must be one of {OPTIMIZERS}, not {self.optimizer!r}")
        if self.schedule not in SCHEDULES:
            raise ValueError(f"schedule must be one of {SCHEDULES}, not {self.schedule!r}")
        if self.reduction not in ("sum", "mean"):
            raise ValueError(f"reduction must be 'sum' or 'mean', not {self.reduction!r}")
        if self.device not in DEVICES and not str(self.device).startswith("cuda:"):
            raise ValueError(f"device must be one of {DEVICES} or 'cuda:N', not {self.device!r}")
        # NaN fails every comparison, so each check asks for what is valid, finiteness included
        if self.grad_clip is not None and not _finite(self.grad_clip, 0):
            raise ValueError(f"grad_clip must be a finite number > 0 or None, not {self.grad_clip}")
        if not _finite(self.lr, 0):
            raise ValueError(f"lr must be a finite number > 0, not {self.lr}")
        if not (_finite(self.momentum) and 0 <= self.momentum < 1):
            raise ValueError(f"momentum must lie in [0, 1), not {self.momentum}")
        if not (_finite(self.weight_decay) and self.weight_decay >= 0):
            raise ValueError(f"weight_decay must be a finite number >= 0, not {self.weight_decay}")
        if not 0 < self.warmup < 1:
            raise ValueError(f"warmup must lie in (0, 1), not {self.warmup}")
        if self.class_weights is not None:
            try:
                self.class_weights = tuple(float(w) for w in self.class_weights)
            except (TypeError, ValueError):
                raise ValueError(f"class_weights must be two positive numbers, not {self.class_weights!r}") from None
            if len(self.class_weights) != 2 or not all(_finite(w, 0) for w in self.class_weights):
                raise ValueError(f"class_weights must be two finite positive numbers, not {self.class_weights}")
        if self.max_time is not None and not _finite(self.max_time, 0):
            raise ValueError(f"max_time must be a finite number > 0 of seconds, or None, not {self.max_time}")
        if self.supervision not in SUPERVISIONS:
            raise ValueError(f"supervision must be one of {SUPERVISIONS}, not {self.supervision!r}")
        if self.compile not in COMPILE_MODES:
            raise ValueError(f"compile must be one of {COMPILE_MODES}, not {self.compile!r}")
        if not isinstance(self.cuda_graph, bool):
            raise TypeError(f"cuda_graph must be a bool, not {self.cuda_graph!r}")
        if self.cuda_graph and self.schedule != "constant":
            raise ValueError("cuda_graph=True replays a captured step, whose learning rate is fixed at capture: it "
                             f"needs schedule='constant', not {self.schedule!r}")
        if self.cuda_graph and self.supervision != "image":
            raise ValueError("cuda_graph=True captures the competition loss only: it needs supervision='image'")
        if self.keep_best is not None and self.keep_best not in BEST_METRICS:
            raise ValueError(f"keep_best must be one of {BEST_METRICS} or None, not {self.keep_best!r}")

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


PRESETS = ("fast", "paper")
BASELINE_PRESETS = ("cpu", "full")


@dataclass
class RunConfig:
    """Everything that defines a run: model, data and training. ``to_dict()`` is saved with the run.

    Presets (``RunConfig.preset(name)``):

    * ``"paper"``: the paper's settings for the character set: 3 blocks (32, 64, 128), no normalisation,
      SGD lr 0.01 without momentum, batch 64, loss summed over the batch (Eq. 4), 100,000 samples per
      epoch, 20 epochs. On a GPU these settings diverged (NaN) in 2 of 3 of our runs; with
      ``grad_clip=20`` they reached 98.6 % test accuracy in 6 epochs and 99.65 % in 20 (docs/results.md, "On a GPU").
    * ``"fast"``: what comes nearest the paper's accuracy soonest on a CPU: each image taken as its
      absolute deviation from its median gray (``input_norm="abs_deviation"``: the characters' ink is
      darker or lighter than the background at random), averaged 2×2 (68×68), then 2 blocks of 16 and
      32 channels with batch normalisation and a ReLU inside each block: the same 17×17 map as the
      paper's 3 blocks, a visual field of 44 px instead of 50, and about twice the training throughput
      of 3 blocks of 8/16/32 at full resolution. Adam with a one-cycle schedule (peak 0.003), batch 16,
      mean loss, 15 epochs of 6,000 samples, the first 13 on 68×68 images in batches of 64
      (progressive resizing, ``early_size=68``: a character with less background around it, at a
      quarter of the cost), the last 2 at full size: about 2 minutes on 2 CPU cores. docs/results.md
      gives the measurements behind this choice.

    With ``data="textile"`` (DAGM 2007's layout: the generated set, or the real one with ``folder``):

    * ``"paper"``: 5 blocks (32…160 channels), no normalisation, SGD lr 0.01, batch 16, summed loss,
      one pass over the 575 training images per epoch, 1,760 epochs (test figures every 20).
    * ``"fast"``: each image taken as its absolute deviation from its median gray (as the character
      preset: the same accuracy as the plain input on textile, better-placed maps), 5 narrow blocks
      (8, 16, 32, 32, 32) with batch normalisation, the first convolution strided (``first_stride=2``:
      about the same visual field, 221 px against 218, and the same 16×16 map), Adam with a one-cycle
      schedule (peak 0.002), batch 16, mean loss, Eq. 3's defective term weighted 5 times (``class_weights``:
      DAGM's ratio of about 5 defect-free images per defective one; without them a run sat at "every image
      good" for 8 of its first 10 epochs), 12 epochs (test figures every 2): about 4 minutes on 2 CPU cores
      (99.3, 99.8 and 99.5 % test accuracy in our runs of seeds 0, 1 and 2; docs/results.md, "Textile").

    A run may also train the Grad-CAM baseline: ``model`` is then a :class:`BaselineConfig`
    (``RunConfig.baseline(name)``; the data and training settings mean the same).
    """

    model: ModelConfig | BaselineConfig
    data: DataConfig
    train: TrainConfig

    def __post_init__(self) -> None:
        self.check()

    def check(self) -> None:
        """Refuse parts that do not go together (also called by ``train``, for a config whose parts were
        replaced after it was made)."""
        if self.data.early_epochs and self.data.early_epochs >= self.train.epochs:
            raise ValueError(f"early_epochs ({self.data.early_epochs}) must be fewer than epochs "
                             f"({self.train.epochs}): the last epochs train on full-size images "
                             f"(early_epochs=0, or --early-epochs 0, switches the small images off)")
        channels = getattr(self.model, "in_channels", 1)
        if self.data.color != (channels == 3) and not self.is_baseline:
            raise ValueError(f"color={self.data.color} data needs a network of {3 if self.data.color else 1} input "
                             f"channel(s), not in_channels={channels}: give both together (--color sets both)")
        types = self.data.defect_types
        k = getattr(self.model, "num_defect_types", 1)
        if (len(types) if types else 1) != k:
            raise ValueError(f"the head has {k} defective layer(s) (num_defect_types) but the data names "
                             f"{len(types) if types else 1} defect type(s) (defect_types={types!r}): give both "
                             f"together (--defect-types sets both)")
        if self.train.supervision == "mask" and (self.is_baseline or self.data.source == "folder"):
            raise ValueError("supervision='mask' (the supervised reference) trains a SACNN network on a generated "
                             "set or a DAGM folder, whose masks it reads; "
                             + ("the Grad-CAM baseline has no per-cell map to supervise" if self.is_baseline else
                                "a class folder's training masks are not read yet: train it with image labels"))
        if self.train.keep_best is not None and self.data.source == "textile":
            raise ValueError(f"keep_best={self.train.keep_best!r} would choose an epoch by the test set: a textile "
                             f"run's per-epoch figures are measured on the Test split (DAGM has no validation "
                             f"split), so they are recorded, never used to choose")

    @classmethod
    def preset(cls, name: str = "fast", data: str = "characters", **overrides: Any) -> RunConfig:
        """A preset, with any field of its model, data or training config changed by name
        (see :meth:`updated`), e.g. ``RunConfig.preset("fast", epochs=4, early_epochs=3, samples_per_epoch=1024)``.

        Args:
            name: ``"fast"`` or ``"paper"``.
            data: ``"characters"``, ``"textile"`` (the generated DAGM-like set, or the real DAGM 2007
                with ``folder=".../Class1"``) or ``"folder"`` (your own class folder: give ``folder=``).
            overrides: fields to change, by name.
        """
        if name not in PRESETS:
            raise ValueError(f"preset must be one of {PRESETS}, not {name!r}")
        if data not in SOURCES:
            raise ValueError(f"data must be one of {SOURCES}, not {data!r}")
        if data == "textile":
            run = cls._textile(name)
        elif data == "folder":
            overrides = dict(overrides)
            run = cls._folder(name, overrides.pop("folder", None))
        elif name == "paper":
            run = cls(ModelConfig.characters(), DataConfig(samples_per_epoch=100_000),
                      TrainConfig(epochs=20, batch_size=64, optimizer="sgd", lr=0.01, reduction="sum"))
        else:
            run = cls(ModelConfig.characters(channels=(16, 32), norm="batch", inner_relu=True, input_pool=2,
                                             input_norm="abs_deviation"),
                      DataConfig(samples_per_epoch=6_000, val_size=1_000, early_size=68, early_epochs=13),
                      TrainConfig(epochs=15, batch_size=16, optimizer="adam", lr=3e-3, schedule="onecycle",
                                  reduction="mean"))
        return run.updated(**overrides) if overrides else run

    @classmethod
    def _folder(cls, name: str, folder: Any) -> RunConfig:
        # a user's photographs: the textile fast recipe at 3 blocks (a visual field of 50 px, a map of 24×24
        # on 192² images); autoconfig.suggest_config chooses blocks, class weights and epochs from the data
        if name != "fast":
            raise ValueError("a class folder trains with the 'fast' preset (the paper's settings are defined for "
                             "the character and DAGM sets only)")
        return cls(ModelConfig.textile(channels=(16, 32, 32), norm="batch", inner_relu=True,
                                       input_norm="abs_deviation"),
                   DataConfig(source="folder", folder=folder, probe_size=16, quarter_turns=True, brightness=0.1),
                   TrainConfig(epochs=20, batch_size=16, optimizer="adam", lr=2e-3, schedule="onecycle",
                               reduction="mean", eval_every=1, eval_batch_size=32))

    @classmethod
    def _textile(cls, name: str) -> RunConfig:
        # DAGM 2007's sizes: 575 Train and 575 Test images, about 5 defect-free per defective one
        data = DataConfig.dagm()
        if name == "paper":
            return cls(ModelConfig.textile(), data,
                       TrainConfig(epochs=1760, batch_size=16, optimizer="sgd", lr=0.01, reduction="sum",
                                   eval_every=20, eval_batch_size=32))
        # DAGM has about 5 defect-free images per defective one: weighting the defective term 5 times keeps the
        # run from sitting at "every image good" (8 of 20 epochs without it)
        return cls(ModelConfig.textile(channels=(8, 16, 32, 32, 32), norm="batch", inner_relu=True,
                                       first_stride=2, input_norm="abs_deviation"),
                   data,
                   TrainConfig(epochs=12, batch_size=16, optimizer="adam", lr=2e-3, schedule="onecycle",
                               reduction="mean", class_weights=(1.0, 5.0), eval_every=2, eval_batch_size=32))

    def updated(self, **changes: Any) -> RunConfig:
        """A copy with fields changed by name, each routed to the model, data or training config that
        has it (``epochs`` → train, ``samples_per_epoch`` → data, ``channels`` → model ...).

        Raises:
            ValueError: a name that none of the three configs has.
        """
        parts = {"model": self.model, "data": self.data, "train": self.train}
        routed: dict[str, dict[str, Any]] = {k: {} for k in parts}
        for key, value in changes.items():
            owner = next((p for p, c in parts.items() if key in {f.name for f in fields(c)}), None)
            if owner is None:
                raise ValueError(f"no model, data or training field is called {key!r}")
            routed[owner][key] = value
        new = {p: (replace(c, **routed[p]) if routed[p] else c) for p, c in parts.items()}
        return replace(self, **new)

    def to_dict(self) -> dict[str, Any]:
        return {"model": self.model.to_dict(), "data": self.data.to_dict(), "train": self.train.to_dict()}

    @property
    def is_baseline(self) -> bool:
        """Whether this run trains the Grad-CAM baseline rather than SACNN."""
        return isinstance(self.model, BaselineConfig)

    @classmethod
    def baseline(cls, name: str = "cpu", data: str = "characters", **overrides: Any) -> RunConfig:
        """A run that trains the Grad-CAM / VGG19 baseline on the character set.

        The paper gives no settings for its VGG19 baseline; these are ours:

        * ``"cpu"``: "VGG19-BN-style, reduced": VGG19's 16 convolutions with batch normalisation at an
          eighth of the width (8…64 channels, 512-wide hidden layers), random initialisation, Adam
          (lr 0.001) with a one-cycle schedule, batch 32, mean loss, 8 epochs of 4,096 fresh samples, on
          the same generator, held-out sets and input (``input_norm="abs_deviation"``) as SACNN's ``fast``
          preset. On 2 CPU cores it trains in about 11 minutes, evaluation included.
        * ``"full"``: torchvision's VGG19 unchanged, ImageNet weights when the local torch cache holds
          them (else from scratch, with a warning), fine-tuned with SGD (lr 0.001, momentum 0.9), batch
          64, 100,000 samples per epoch, 3 epochs: for a GPU.

        With ``data="textile"`` (the same DAGM folder as SACNN's textile presets):

        * ``"cpu"``: the same reduced VGG19-BN seeing the 512×512 images at 256×256 (``input_pool=2``),
          Adam (lr 0.001) one-cycle, batch 16, 12 passes over the 575 training images.
        * ``"full"``: torchvision's VGG19 unchanged at 512×512, ImageNet weights when cached, SGD (lr 0.001,
          momentum 0.9), batch 16, 50 epochs: for a GPU.

        Args:
            name: ``"cpu"`` or ``"full"``.
            data: ``"characters"`` or ``"textile"``.
            overrides: fields to change, by name (see :meth:`updated`), e.g. ``epochs=1``, ``width=0.125``.
        """
        if name not in BASELINE_PRESETS:
            raise ValueError(f"baseline preset must be one of {BASELINE_PRESETS}, not {name!r}")
        if data not in SOURCES:
            raise ValueError(f"data must be one of {SOURCES}, not {data!r}")
        if data == "textile":
            tex = DataConfig.dagm()
            if name == "cpu":
                run = cls(BaselineConfig(arch="vgg19_bn", width=0.125, input_pool=2), tex,
                          TrainConfig(epochs=12, batch_size=16, optimizer="adam", lr=1e-3, schedule="onecycle",
                                      reduction="mean", eval_every=4, eval_batch_size=32))
            else:
                run = cls(BaselineConfig(arch="vgg19", weights="imagenet"), tex,
                          TrainConfig(epochs=50, batch_size=16, optimizer="sgd", lr=1e-3, momentum=0.9,
                                      reduction="mean", eval_every=5, eval_batch_size=32))
        elif name == "cpu":
            run = cls(BaselineConfig(arch="vgg19_bn", width=0.125, input_norm="abs_deviation"),
                      DataConfig(samples_per_epoch=4_096, val_size=1_000),
                      TrainConfig(epochs=8, batch_size=32, optimizer="adam", lr=1e-3, schedule="onecycle",
                                  reduction="mean", eval_batch_size=100))
        else:
            run = cls(BaselineConfig(arch="vgg19", weights="imagenet"), DataConfig(samples_per_epoch=100_000),
                      TrainConfig(epochs=3, batch_size=64, optimizer="sgd", lr=1e-3, momentum=0.9,
                                  reduction="mean", eval_batch_size=100))
        return run.updated(**overrides) if overrides else run

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> RunConfig:
        """Rebuild a run config from :meth:`to_dict` output (a SACNN or a baseline run)."""
        model = d["model"]
        m = BaselineConfig.from_dict(model) if "arch" in model else ModelConfig.from_dict(model)
        return cls(m, DataConfig(**d["data"]), TrainConfig(**d["train"]))
