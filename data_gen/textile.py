"""A generated textile set in the DAGM 2007 layout: procedural fabric-like textures with defects.

DAGM 2007 (the paper's textile set) cannot be downloaded on every machine, so this generator makes the
textile story run anywhere: gray 512×512 textures of several families (``woven``, ``noisy``, ``oriented``,
``knit``), each with random parameters, and defects of several kinds (``scratch``, ``spot``, ``texture``
change, ``thread`` break) of varied size, contrast and orientation. Like DAGM, a set is one texture
family (or ``"mixed"``), defect-free images are about 5× as many as defective ones, and the labels are
weak ellipses around each defect; the true defect mask is written too.

Every sample is a pure function of ``(seed, index)``: its parameters come from counter-based draws and its
noise from a Philox generator keyed by the same pair.
"""

from __future__ import annotations

import json
import math
import os
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Sequence

import numpy as np

from .folders import check_folder_name, staged_folder, written_by
from .malloc import keep_freed_memory
from .random import Draws, ratio_labels, splitmix64

FAMILIES = ("woven", "noisy", "oriented", "knit")
DEFECTS = ("scratch", "spot", "texture", "thread")


@dataclass
class TextileConfig:
    """Knobs of the textile generator, with defaults and ranges.

    Attributes:
        image_size: side of the square image in px (64–1024; DAGM: 512).
        family: one of ``FAMILIES`` (one texture per set, like a DAGM class) or ``"mixed"``.
        defects: the defect kinds drawn from (any of ``DEFECTS``).
        defect_size: defect extent range in px, inclusive (8–image_size/2; DAGM: roughly 40–150).
        contrast: defect contrast range, as a share of the texture's standard deviation (0.1–3).
        noise: pixel noise, as a share of the texture's standard deviation (0–1).
        ratio: defect-free images per defective one (0.1–100; DAGM: about 5).
    """

    image_size: int = 512
    family: str = "woven"
    defects: tuple[str, ...] = DEFECTS
    defect_size: tuple[int, int] = (40, 140)
    contrast: tuple[float, float] = (0.8, 2.0)
    noise: float = 0.15
    ratio: float = 5.0

    def __post_init__(self) -> None:
        self.defects = tuple(self.defects)
        self.defect_size = tuple(self.defect_size)
        self.contrast = tuple(self.contrast)
        if not 64 <= self.image_size <= 1024:
            raise ValueError(f"image_size must lie in 64–1024, not {self.image_size}")
        if self.family not in (*FAMILIES, "mixed"):
            raise ValueError(f"family must be one of {FAMILIES} or 'mixed', not {self.family!r}")
        if not self.defects or any(d not in DEFECTS for d in self.defects):
            raise ValueError(f"defects must be a non-empty tuple of {DEFECTS}, not {self.defects}")
        lo, hi = self.defect_size
        if not 8 <= lo <= hi <= self.image_size // 2:
            raise ValueError(f"defect_size must satisfy 8 <= low <= high <= image_size/2, not {self.defect_size}")
        if not 0.1 <= self.contrast[0] <= self.contrast[1] <= 3:
            raise ValueError(f"contrast must satisfy 0.1 <= low <= high <= 3, not {self.contrast}")
        if not 0 <= self.noise <= 1:
            raise ValueError(f"noise must lie in 0–1, not {self.noise}")
        if not 0.1 <= self.ratio <= 100:
            raise ValueError(f"ratio must lie in 0.1–100, not {self.ratio}")

    @staticmethod
    def defects_at(image_size: int) -> tuple[int, int]:
        """The default defect sizes scaled to ``image_size`` px (they keep their share of the image)."""
        lo, hi = TextileConfig.defect_size
        return max(8, lo * image_size // 512), max(8, hi * image_size // 512)

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass
class TextileSample:
    """One generated textile image with its truth.

    Attributes:
        image: ``(S, S)`` uint8.
        label: 1 = defective.
        kind: the defect kind, or ``""``.
        family: the texture family.
        mask: ``(S, S)`` bool, the true defect pixels.
        ellipse: ``(S, S)`` bool, the weak elliptical label (DAGM style), covering the defect.
        box: ``(x0, y0, x1, y1)`` of the true mask (x1/y1 exclusive), or ``None``.
    """

    image: np.ndarray
    label: int
    kind: str
    family: str
    mask: np.ndarray
    ellipse: np.ndarray
    box: tuple[int, int, int, int] | None = field(default=None)


def _zoom(a: np.ndarray, size: int) -> np.ndarray:
    """Smooth upsampling of a small 2-D array to ``(size, size)``: separable interpolation with smoothstep
    weights (no kinks at the cell borders), rows first, numpy only."""
    def axis(n: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        pos = np.linspace(0, n - 1, size, dtype=np.float32)
        i0 = np.minimum(pos.astype(np.int32), max(n - 2, 0))
        f = np.clip(pos - i0, 0, 1)
        return i0, np.minimum(i0 + 1, n - 1), f * f * (3 - 2 * f)

    (y0, y1, fy), (x0, x1, fx) = axis(a.shape[0]), axis(a.shape[1])
    rows = a[:, x0] * (1 - fx) + a[:, x1] * fx  # (h, size)
    return (rows[y0] * (1 - fy)[:, None] + rows[y1] * fy[:, None]).astype(np.float32)


def _smooth_noise(rng: np.random.Generator, size: int, cells: int) -> np.ndarray:
    """Smooth random field: ``cells``×``cells`` normal values upsampled to ``size``; unit variance-ish."""
    return _zoom(rng.standard_normal((cells + 1, cells + 1), dtype=np.float32), size)


class TextileGenerator:
    """Generates textile samples from a :class:`TextileConfig`.

    Example:
        >>> gen = TextileGenerator(TextileConfig(image_size=256))
        >>> s = gen.sample(seed=0, index=3)
        >>> s.image.shape, s.label
    """

    def __init__(self, config: TextileConfig | None = None):
        self.config = config or TextileConfig()
        S = self.config.image_size
        yy, xx = np.mgrid[0:S, 0:S].astype(np.float32)
        self._yy, self._xx = yy, xx

    def labels(self, seed: int, indices: Sequence[int] | np.ndarray) -> np.ndarray:
        """``(B,)`` uint8 labels; integer ratios are exact in every block of ``ratio + 1`` indices."""
        return ratio_labels(seed, np.asarray(indices, dtype=np.int64), self.config.ratio)

    # ---- textures ----------------------------------------------------------------------------------
    def _texture(self, family: str, rng: np.random.Generator, u: np.ndarray) -> np.ndarray:
        """A zero-mean, unit-std texture; ``u`` holds this sample's uniform draws (parameters)."""
        S = self.config.image_size
        x, y = self._xx, self._yy
        if family == "woven":
            period = 6 + 8 * u[0]
            theta = (u[1] - 0.5) * 0.3
            xr = x * math.cos(theta) + y * math.sin(theta)
            yr = -x * math.sin(theta) + y * math.cos(theta)
            jitter = 1.5 * _smooth_noise(rng, S, 12)
            warp = np.sin(2 * np.pi * (xr + jitter) / period)
            weft = np.sin(2 * np.pi * (yr - jitter) / (period * (0.8 + 0.4 * u[2])))
            t = np.clip(1.8 * warp, -1, 1) + 0.8 * np.clip(1.8 * weft, -1, 1)  # flat-topped threads
            t = t * (1 + 0.3 * _smooth_noise(rng, S, 24))
        elif family == "noisy":
            t = (_smooth_noise(rng, S, int(8 + 24 * u[0])) + 0.7 * _smooth_noise(rng, S, int(40 + 60 * u[1]))
                 + 0.4 * rng.standard_normal((S, S), dtype=np.float32))
        elif family == "oriented":
            theta = np.pi * u[0]
            period = 5 + 10 * u[1]
            phase = (2 + 3 * u[2]) * _smooth_noise(rng, S, 8)
            t = np.sin(2 * np.pi * (x * math.cos(theta) + y * math.sin(theta)) / period + phase)
            t = t + 0.3 * _smooth_noise(rng, S, 64)
        else:  # knit: a lattice of soft loops
            period = 8 + 8 * u[0]
            jitter = 1.2 * _smooth_noise(rng, S, 16)
            t = np.abs(np.sin(np.pi * (x + jitter) / period)) * np.abs(np.sin(np.pi * (y + 0.5 * x) / period))
            t = t + 0.25 * _smooth_noise(rng, S, 32)
        t = t.astype(np.float32)
        t -= t.mean()
        t /= t.std() + 1e-6
        return t

    # ---- defects -----------------------------------------------------------------------------------
    def _defect(self, kind: str, tex: np.ndarray, family: str, rng: np.random.Generator,
                u: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Apply one defect to ``tex`` in place; returns (true mask, weak ellipse)."""
        cfg = self.config
        S = cfg.image_size
        x, y = self._xx, self._yy
        size = cfg.defect_size[0] + u[0] * (cfg.defect_size[1] - cfg.defect_size[0])
        contrast = (cfg.contrast[0] + u[1] * (cfg.contrast[1] - cfg.contrast[0])) * (1 if u[2] < 0.5 else -1)
        cx = size / 2 + u[3] * (S - size)
        cy = size / 2 + u[4] * (S - size)
        theta = np.pi * u[5]
        c, s = math.cos(theta), math.sin(theta)
        along = (x - cx) * c + (y - cy) * s
        across = -(x - cx) * s + (y - cy) * c
        if kind == "scratch":
            bend = (u[6] - 0.5) * 0.6 / max(size, 1)
            dist = np.abs(across - bend * along ** 2)
            width = 1.0 + 2.5 * u[7]
            inside = np.abs(along) <= size / 2
            weight = np.clip(1.5 - dist / width, 0, 1) * inside
        elif kind == "spot":
            a, b = size / 2, size / 2 * (0.35 + 0.65 * u[6])
            r = np.sqrt((along / a) ** 2 + (across / b) ** 2)
            weight = np.clip((1.15 - r) / 0.3, 0, 1)
        elif kind == "texture":
            a, b = size / 2, size / 2 * (0.5 + 0.5 * u[6])
            r = np.sqrt((along / a) ** 2 + (across / b) ** 2)
            weight = np.clip((1.1 - r) / 0.25, 0, 1)
            other = self._texture(FAMILIES[(FAMILIES.index(family) + 1 + int(u[7] * 3)) % 4], rng, u[8:11])
            tex += weight * (other * (0.8 + 0.5 * abs(contrast)) - tex)
            mask = weight >= 0.5
            return mask, self._ellipse(mask)
        else:  # thread: a band along one direction where the weave is missing (a smooth, shifted stripe)
            width = 3 + 5 * u[6]
            inside = (np.abs(along) <= size / 2) & (np.abs(across) <= width)
            weight = inside * np.clip(1.5 - np.abs(across) / width, 0, 1)
            tex += weight * (0.6 * contrast - tex * 0.8)
            mask = weight >= 0.5
            return mask, self._ellipse(mask)
        tex += weight * contrast
        mask = weight >= 0.5
        return mask, self._ellipse(mask)

    def _ellipse(self, mask: np.ndarray) -> np.ndarray:
        """The weak label: an axis-aligned ellipse around the mask's box, 25 % larger (DAGM style)."""
        ys, xs = np.nonzero(mask)
        if ys.size == 0:
            return np.zeros_like(mask)
        cy, cx = (ys.min() + ys.max()) / 2, (xs.min() + xs.max()) / 2
        ry, rx = max(4.0, 0.625 * (ys.max() - ys.min() + 1)), max(4.0, 0.625 * (xs.max() - xs.min() + 1))
        return ((self._yy - cy) / ry) ** 2 + ((self._xx - cx) / rx) ** 2 <= 1.0

    # ---- samples -------------------------------------------------------------------------------------
    def sample(self, seed: int, index: int) -> TextileSample:
        """The sample ``index`` of split ``seed`` (a pure function of the pair)."""
        if index < 0:
            raise ValueError("sample indices must be non-negative")
        cfg = self.config
        d = Draws(seed, np.array([index]))
        label = int(self.labels(seed, [index])[0])
        u = np.array([d.uniform("textile", k)[0] for k in range(24)])
        family = cfg.family if cfg.family != "mixed" else FAMILIES[int(u[20] * len(FAMILIES)) % len(FAMILIES)]
        key = int(splitmix64(np.array([seed * 1_000_003 + index], dtype=np.uint64))[0])
        rng = np.random.Generator(np.random.Philox(key=key))
        tex = self._texture(family, rng, u[:3])
        S = cfg.image_size
        kind = ""
        mask = np.zeros((S, S), bool)
        ellipse = np.zeros((S, S), bool)
        if label:
            kind = cfg.defects[int(u[21] * len(cfg.defects)) % len(cfg.defects)]
            mask, ellipse = self._defect(kind, tex, family, rng, u[3:20])
        tex += cfg.noise * rng.standard_normal((S, S), dtype=np.float32)
        mean, gain = 90 + 80 * u[22], 22 + 18 * u[23]
        image = np.clip(mean + gain * tex, 0, 255).round().astype(np.uint8)
        box = None
        if mask.any():
            ys, xs = np.nonzero(mask)
            box = (int(xs.min()), int(ys.min()), int(xs.max()) + 1, int(ys.max()) + 1)
        return TextileSample(image, label, kind, family, mask, ellipse, box)


def dagm_name(index: int) -> str:
    """DAGM 2007's file name of image ``index`` (1-based, 4 digits): ``0001.PNG``."""
    return f"{index:04d}.PNG"


SPLITS = ("Train", "Test")


def split_seed(seed: int, split: str) -> int:
    """The sample seed of a split of a written set: ``2·seed`` for Train, ``2·seed + 1`` for Test."""
    return 2 * int(seed) + SPLITS.index(split)


def _write_range(args: tuple) -> list[tuple[int, int, str]]:
    """Worker: generate samples ``start … stop-1`` and write each image with its truth, in one of two
    layouts: ``"dagm"`` (one split: ``NNNN.PNG``, the weak label ``Label/NNNN_label.PNG`` and the true mask
    ``Mask/NNNN_mask.PNG``) or ``"folder"`` (a class folder: ``good/`` or the defect's kind, its true mask
    under ``masks/<kind>/``)."""
    from PIL import Image

    config, seed, start, stop, folder, layout = args
    folder = Path(folder)
    gen = TextileGenerator(config)
    out = []
    for k in range(start, stop):
        s = gen.sample(seed, k)
        mask = s.mask.astype(np.uint8) * 255
        if layout == "folder":
            name, image_path = f"{k + 1:04d}.png", folder / (s.kind or "good")
            mask_path = folder / "masks" / s.kind / name
        else:
            name, image_path = dagm_name(k + 1), folder
            mask_path = folder / "Mask" / f"{name[:-4]}_mask.PNG"
            if s.label:
                Image.fromarray(s.ellipse.astype(np.uint8) * 255).save(
                    folder / "Label" / f"{name[:-4]}_label.PNG", compress_level=1)
        # stored: zlib saves only a quarter of a noisy texture's bytes and would double the time per image
        Image.fromarray(s.image).save(image_path / name, compress_level=0)
        if s.label:
            Image.fromarray(mask).save(mask_path, compress_level=1)
        out.append((k, s.label, s.kind))
    return out


def write_textile_folder(out: str | os.PathLike, config: TextileConfig | None = None, n: int = 700,
                         seed: int = 0, workers: int | None = None, progress: bool = True,
                         overwrite: bool = False) -> Path:
    """Write a generated textile set as a user's class folder would be laid out::

        out/good/0001.png ...                 defect-free images
        out/scratch/0007.png ...              one folder per defect kind (scratch, spot, texture, thread)
        out/masks/scratch/0007.png ...        the true defect mask of each defective image
        out/generator.json                    how it was made

    the layout ``sacnn-lab train --data out`` reads (see :func:`data_gen.folders.read_class_folder`).

    Args:
        out: the folder (written beside itself and moved into place when complete, as
            :func:`write_textile`; ``overwrite`` replaces a set this function wrote before).
        config: generator knobs (default: DAGM-like, 512×512, about 1:5).
        n: images in all.
        seed: the set's seed.
        workers: processes generating in parallel (default: one per CPU core).
        progress: a progress bar.

    Returns:
        The folder.
    """
    from concurrent.futures import ProcessPoolExecutor

    from tqdm.auto import tqdm

    config = config or TextileConfig()
    if n < 2:
        raise ValueError(f"n must be at least 2, not {n}")
    if workers is not None and workers < 1:
        raise ValueError(f"workers must be at least 1, not {workers}")
    workers = workers or os.cpu_count() or 1
    target = Path(out)
    folders = ("good", *config.defects, "masks")
    with staged_folder(target, overwrite, lambda p: written_by(p, "textile-folder", "generator.json", folders)) \
            as root:
        for kind in config.defects:
            (root / kind).mkdir()
            (root / "masks" / kind).mkdir(parents=True)
        (root / "good").mkdir()
        jobs = [(config, seed, a, min(a + 25, n), str(root), "folder") for a in range(0, n, 25)]
        with tqdm(total=n, desc="writing textile images", unit="img", disable=not progress) as bar, \
                ProcessPoolExecutor(min(workers, len(jobs)), initializer=keep_freed_memory) as pool:
            for res in pool.map(_write_range, jobs):
                bar.update(len(res))
        for kind in config.defects:  # a kind the seed never drew leaves no empty class folder
            if not any((root / kind).iterdir()):
                (root / kind).rmdir()
                (root / "masks" / kind).rmdir()
        (root / "generator.json").write_text(json.dumps({"generator": "textile-folder", "seed": seed, "n": n,
                                                         "config": config.to_dict()}, indent=1))
    return target


def sample_class_folder(out: str | os.PathLike, image_size: int = 192, n: int = 830, seed: int = 0,
                        progress: bool = True) -> Path:
    """A generated textile class folder standing in for a user's photographs (:func:`write_textile_folder`
    at ``image_size`` px, defects scaled with it), written on first use and reused afterwards.

    With the defaults: 830 images of 192×192, about one defective in six; split 70 / 15 / 15 % that is 580
    for training.
    """
    out = Path(out)
    if (out / "generator.json").is_file():
        return out
    config = TextileConfig(image_size=image_size, defect_size=TextileConfig.defects_at(image_size))
    return write_textile_folder(out, config, n, seed, progress=progress)


def write_textile(out: str | os.PathLike, config: TextileConfig | None = None, n_train: int = 575,
                  n_test: int = 575, seed: int = 0, class_name: str = "Class1", workers: int | None = None,
                  progress: bool = True, overwrite: bool = False) -> Path:
    """Write a generated textile set in the DAGM 2007 layout::

        out/Class1/Train/0001.PNG ...               8-bit gray images
        out/Class1/Train/Label/Labels.txt           index, defect flag, image, 0, label image
        out/Class1/Train/Label/0002_label.PNG       weak elliptical label of each defective image
        out/Class1/Train/Mask/0002_mask.PNG         the true defect mask (not in DAGM; ours)
        out/Class1/Test/...                         the same

    Args:
        out: root folder.
        config: generator knobs (default: DAGM-like, 512×512, about 1:5).
        n_train / n_test: images per split (DAGM: 575 / 575).
        seed: the set's seed (Train and Test use :func:`split_seed`).
        class_name: the class folder's name (one plain name: the set never lands outside ``out``).
        workers: processes generating in parallel (default: one per CPU core).
        progress: a progress bar.
        overwrite: replace a set this function wrote into ``out/class_name`` before; without it that
            folder must be empty or absent. The set is written beside it and moved into place when
            complete (see :func:`~data_gen.folders.staged_folder`), so it is never half old, half new.

    Returns:
        The class folder.

    Raises:
        FileExistsError: the class folder is not empty (without ``overwrite``), or holds anything but
            such a set.
    """
    config = config or TextileConfig()
    if n_train < 1 or n_test < 1:
        raise ValueError(f"n_train and n_test must be at least 1, not {n_train} and {n_test}")
    if workers is not None and workers < 1:
        raise ValueError(f"workers must be at least 1, not {workers}")
    workers = workers or os.cpu_count() or 1
    target = Path(out) / check_folder_name(class_name, "class_name")
    with staged_folder(target, overwrite, lambda p: written_by(p, "textile", "generator.json", SPLITS)) as root:
        _write_splits(root, config, n_train, n_test, seed, workers, progress)
    return target


def _write_splits(root: Path, config: TextileConfig, n_train: int, n_test: int, seed: int, workers: int,
                  progress: bool) -> None:
    from concurrent.futures import ProcessPoolExecutor

    from tqdm.auto import tqdm

    chunk = 25
    jobs = []
    for split, n in zip(SPLITS, (n_train, n_test)):
        for sub in ("Label", "Mask"):
            (root / split / sub).mkdir(parents=True, exist_ok=True)
        jobs += [(config, split_seed(seed, split), a, min(a + chunk, n), str(root / split), "dagm")
                 for a in range(0, n, chunk)]
    rows: dict[str, list[tuple[int, int, str]]] = {split: [] for split in SPLITS}
    with tqdm(total=n_train + n_test, desc="writing textile images", unit="img", disable=not progress) as bar, \
            ProcessPoolExecutor(min(workers, len(jobs)), initializer=keep_freed_memory) as pool:
        for job, res in zip(jobs, pool.map(_write_range, jobs)):
            rows[Path(job[4]).name] += res
            bar.update(len(res))
    for split in SPLITS:
        lines = ["1"] + [f"{k + 1}\t{lab}\t{dagm_name(k + 1)}\t0\t"
                         + (f"{dagm_name(k + 1)[:-4]}_label.PNG" if lab else "0") for k, lab, _ in sorted(rows[split])]
        (root / split / "Label" / "Labels.txt").write_text("\n".join(lines) + "\n")
    (root / "generator.json").write_text(json.dumps({"generator": "textile", "seed": seed, "n_train": n_train,
                                                     "n_test": n_test, "config": config.to_dict()}, indent=1))
