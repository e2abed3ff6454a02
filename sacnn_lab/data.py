"""Torch datasets over the generators and labelled folders, with deterministic loading.

Every sample is a pure function of (seed, index), so a DataLoader gives the same batches whatever its
number of workers. :class:`CharacterDataset` also implements ``__getitems__``: a DataLoader then asks
for a whole batch at once and the generator composes it in one vectorised call (the fast path).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Iterator, Sequence

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset

from data_gen.characters import CharacterBatch, CharacterConfig, CharacterGenerator

from .distributed import Ranks, positions
from .images import image_size_of, read_gray, read_image  # noqa: F401 (re-exported: the readers moved there)


def to_tensor_images(images: np.ndarray) -> torch.Tensor:
    """``(B, H, W)`` uint8 → ``(B, 1, H, W)`` float32 in [0, 1]; colour ``(B, H, W, 3)`` → ``(B, 3, H, W)``."""
    if images.dtype != np.uint8 or not (images.ndim == 3 or (images.ndim == 4 and images.shape[3] == 3)):
        raise TypeError(f"expected a (B, H, W) or (B, H, W, 3) uint8 array, got {images.dtype} with shape "
                        f"{images.shape}")
    if images.ndim == 4:
        return torch.from_numpy(np.ascontiguousarray(images)).permute(0, 3, 1, 2).float().div_(255.0).contiguous()
    return torch.from_numpy(images).unsqueeze(1).float().div_(255.0)


def batch_to_dict(batch: CharacterBatch) -> dict[str, torch.Tensor]:
    """A generated batch as tensors: ``image`` (B, 1, S, S) float in [0, 1], ``label`` (B,) int64,
    ``boxes`` (B, K, 4) int32 (-1 rows unused), ``index`` (B,) int64 and, when present, ``mask``
    (B, S, S) bool."""
    out = {"image": to_tensor_images(batch.images),
           "label": torch.from_numpy(batch.labels.astype(np.int64)),
           "boxes": torch.from_numpy(batch.boxes),
           "index": torch.from_numpy(batch.indices)}
    if batch.masks is not None:
        out["mask"] = torch.from_numpy(batch.masks)
    return out


class CharacterDataset(Dataset):
    """A map-style, sized view of the character generator: samples ``start … start+length-1`` of one
    split.

    Args:
        config: generator knobs (default: the paper's description).
        seed: the split's seed (train, validation and test use different seeds).
        length: number of samples.
        start: first sample index.
        masks: also return the truth masks.
        generator: an existing :class:`CharacterGenerator` to share its glyph cache.

    ``dataset[i]`` is a dict of one sample (``image`` (1, S, S) float32, ``label``, ``boxes`` (K, 4),
    ``index``); ``dataset.__getitems__(indices)`` the same keys for a whole batch.
    """

    def __init__(self, config: CharacterConfig | None = None, seed: int = 0, length: int = 100_000,
                 start: int = 0, masks: bool = False, generator: CharacterGenerator | None = None):
        if length < 1 or start < 0:
            raise ValueError(f"length must be >= 1 and start >= 0, got length={length}, start={start}")
        self.generator = generator or CharacterGenerator(config)
        self.config = self.generator.config
        self.seed, self.length, self.start, self.masks = int(seed), int(length), int(start), masks

    def __len__(self) -> int:
        return self.length

    def _indices(self, items: Sequence[int]) -> np.ndarray:
        idx = np.asarray(items, dtype=np.int64)
        if idx.size and (idx.min() < 0 or idx.max() >= self.length):
            raise IndexError(f"index out of range for a dataset of {self.length} samples")
        return idx + self.start

    def __getitem__(self, i: int) -> dict[str, torch.Tensor]:
        b = batch_to_dict(self.generator.generate(self.seed, self._indices([int(i)]), masks=self.masks))
        return {k: v[0] for k, v in b.items()}

    def __getitems__(self, items: Sequence[int]) -> dict[str, torch.Tensor]:
        return batch_to_dict(self.generator.generate(self.seed, self._indices(items), masks=self.masks))

    def batch(self, items: Sequence[int]) -> CharacterBatch:
        """The raw uint8 batch (numpy) of dataset positions ``items``."""
        return self.generator.generate(self.seed, self._indices(items), masks=self.masks)

    def labels(self) -> np.ndarray:
        """``(length,)`` uint8 labels of the whole dataset, without drawing images."""
        return self.generator.labels(self.seed, np.arange(self.start, self.start + self.length))


def collate(batch: Any) -> dict[str, torch.Tensor]:
    """DataLoader collate: passes through a batch made by ``__getitems__``, stacks a list of samples."""
    if isinstance(batch, dict):
        return batch
    return {k: torch.stack([s[k] for s in batch]) for k in batch[0]}


def make_loader(dataset: Dataset, batch_size: int, shuffle: bool = False, seed: int = 0,
                num_workers: int = 0, drop_last: bool = False) -> DataLoader:
    """A DataLoader whose batches depend only on (dataset, batch_size, shuffle, seed), never on the
    number of workers: shuffling uses its own seeded generator, samples are pure functions of their
    index."""
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, not {batch_size}")
    g = torch.Generator()
    g.manual_seed(int(seed))
    return DataLoader(dataset, batch_size=batch_size, shuffle=shuffle, generator=g, collate_fn=collate,
                      num_workers=num_workers, drop_last=drop_last,
                      persistent_workers=num_workers > 0, pin_memory=torch.cuda.is_available())


class GeneratedEpochs:
    """Training data for :class:`~sacnn_lab.trainer.Trainer`: epoch ``e`` (from 1) yields fresh samples
    ``(e-1)*N … e*N-1`` of the training seed, in batches. New images every epoch, like the authors'
    on-the-fly generator, yet the same images on every machine and on resume.

    With ``early_generator`` (progressive resizing, ``DataConfig.early_size``), epochs
    ``1 … early_epochs`` draw their samples from it instead, smaller images in batches of
    ``batch_size · (size / early size)²`` (the same pixels per step); :meth:`steps_in` gives each
    epoch's number of batches.

    Without workers the generator composes ``chunk`` samples per call and the batches are slices of
    them: the same batches (every sample is a pure function of its index), but a call's fixed cost is
    paid once per chunk instead of once per batch (with the glyph atlas warm, calls of 32 images ran
    at 4,300 images/s on our 2-core machine, calls of 512 at 16,100).

    Args:
        generator: the character generator (its glyph cache is shared).
        seed: the training split's seed.
        samples_per_epoch: N.
        batch_size: samples per batch (full-size epochs).
        num_workers: DataLoader worker processes.
        chunk: samples composed per generator call without workers (rounded up to whole batches).
        early_generator: the generator of the early epochs (smaller images), or ``None``.
        early_epochs: how many epochs draw from ``early_generator``.
        masks: the batches also carry the true masks (``mask``, ``(B, S, S)`` bool), for the supervised
            reference (``TrainConfig.supervision="mask"``).
        ranks: on several processes (:mod:`sacnn_lab.distributed`), each step's global batch holds
            ``world · batch_size`` samples and this rank draws its share of them (``global_batch`` in each
            batch says how many the step holds in all).
    """

    def __init__(self, generator: CharacterGenerator, seed: int, samples_per_epoch: int, batch_size: int,
                 num_workers: int = 0, chunk: int = 512, early_generator: CharacterGenerator | None = None,
                 early_epochs: int = 0, masks: bool = False, ranks: Ranks | None = None):
        if samples_per_epoch < 1:
            raise ValueError(f"samples_per_epoch must be >= 1, not {samples_per_epoch}")
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, not {batch_size}")
        if chunk < 1:
            raise ValueError(f"chunk must be >= 1, not {chunk}")
        if (early_generator is None) != (early_epochs == 0) or early_epochs < 0:
            raise ValueError(f"early_generator and early_epochs >= 1 go together, not early_epochs={early_epochs}")
        self.generator, self.seed = generator, int(seed)
        self.ranks = ranks or Ranks()
        self.samples_per_epoch, self.batch_size, self.num_workers = samples_per_epoch, batch_size, num_workers
        self.steps_per_epoch = -(-samples_per_epoch // (batch_size * self.ranks.world))
        self.chunk = chunk
        self.early_generator, self.early_epochs = early_generator, early_epochs
        self.early_batch_size = batch_size
        self.masks = bool(masks)
        if early_generator is not None:
            scale = generator.config.image_size / early_generator.config.image_size
            self.early_batch_size = max(1, round(batch_size * scale * scale))

    def _epoch_source(self, epoch: int) -> tuple[CharacterGenerator, int]:
        if epoch < 1:
            raise ValueError(f"epochs count from 1, not {epoch}")
        if epoch <= self.early_epochs:
            return self.early_generator, self.early_batch_size
        return self.generator, self.batch_size

    def steps_in(self, epoch: int) -> int:
        """Batches in epoch ``epoch`` (``steps_per_epoch`` except in the early epochs)."""
        return -(-self.samples_per_epoch // (self._epoch_source(epoch)[1] * self.ranks.world))

    def _steps(self, batch_size: int) -> list[tuple[np.ndarray, int]]:
        """Each step's positions in the epoch for this rank, and the step's global batch size."""
        g, n = batch_size * self.ranks.world, self.samples_per_epoch
        return [(positions(lo, min(g, n - lo), self.ranks), min(g, n - lo)) for lo in range(0, n, g)]

    def loader(self, epoch: int) -> DataLoader | Iterator[dict[str, torch.Tensor]]:
        """The batches of epoch ``epoch``: dicts as :func:`batch_to_dict` makes them."""
        generator, batch_size = self._epoch_source(epoch)
        ds = CharacterDataset(seed=self.seed, length=self.samples_per_epoch,
                              start=(epoch - 1) * self.samples_per_epoch, generator=generator, masks=self.masks)
        if self.ranks.distributed:  # each rank composes its share of every step
            if self.num_workers:
                return DataLoader(_RankSteps(ds, self._steps(batch_size)), batch_size=None, shuffle=False,
                                  num_workers=self.num_workers, pin_memory=torch.cuda.is_available())
            return self._sharded(ds, batch_size)
        if self.num_workers:
            return make_loader(ds, batch_size, shuffle=False, num_workers=self.num_workers)
        return self._chunked(ds, batch_size)

    def _chunked(self, ds: CharacterDataset, batch_size: int) -> Iterator[dict[str, torch.Tensor]]:
        chunk = -(-self.chunk // batch_size) * batch_size
        for lo in range(0, len(ds), chunk):
            part = ds.__getitems__(range(lo, min(lo + chunk, len(ds))))
            for b in range(0, len(part["label"]), batch_size):
                yield {k: v[b:b + batch_size] for k, v in part.items()}

    def _sharded(self, ds: CharacterDataset, batch_size: int) -> Iterator[dict[str, torch.Tensor]]:
        """This rank's share of every step, several steps composed per generator call."""
        steps = self._steps(batch_size)
        per_call = max(1, self.chunk // max(1, batch_size))
        for lo in range(0, len(steps), per_call):
            group = steps[lo:lo + per_call]
            part = ds.__getitems__(np.concatenate([p for p, _ in group]).tolist())
            at = 0
            for pos, total in group:
                out = {k: v[at:at + len(pos)] for k, v in part.items()}
                out["global_batch"] = torch.tensor(total)
                at += len(pos)
                yield out


class FolderSet:
    """A labelled folder loaded into memory.

    Attributes:
        root: the folder.
        filenames: ``(N,)`` names relative to its images folder.
        images: ``(N, H, W)`` uint8 gray images.
        labels: ``(N,)`` uint8, 1 = defective.
        boxes: ``(N, K, 4)`` int32 true boxes, -1 rows unused (K = most boxes of one image, at least 1).
        masks: ``(N, H, W)`` bool truth masks where the set has them, else ``None``.
        type_names: where the labels are defect types (``1..K``), their names; else ``None`` (0/1 labels).
    """

    def __init__(self, root: Path, filenames: list[str], images: np.ndarray, labels: np.ndarray,
                 boxes: np.ndarray, masks: np.ndarray | None = None, type_names: list[str] | None = None):
        self.root, self.filenames, self.images, self.labels, self.boxes = root, filenames, images, labels, boxes
        self.masks = masks  # (N, H, W) bool truth masks where the set has them (DAGM), else None
        self.type_names = type_names  # labels 1..K are these defect types (a K-type run's folder), else None

    def __len__(self) -> int:
        return len(self.filenames)

    def boxes_of(self, i: int) -> list[tuple[int, int, int, int]]:
        """The true boxes of image ``i`` as a list of ``(x0, y0, x1, y1)`` (as a generated batch gives them)."""
        return [tuple(int(v) for v in b) for b in self.boxes[i] if b[0] >= 0]

    def subset(self, positions: Sequence[int] | np.ndarray) -> FolderSet:
        """The images at ``positions`` (views where numpy can, copies otherwise), with their truth."""
        p = np.asarray(positions, dtype=np.int64)
        return FolderSet(self.root, [self.filenames[i] for i in p], self.images[p], self.labels[p],
                         self.boxes[p], None if self.masks is None else self.masks[p], self.type_names)


def load_folder(root: str | os.PathLike, size: tuple[int, int] | None = None) -> FolderSet:
    """Load a labelled folder (``labels.csv`` + ``images/``, see :mod:`data_gen.folders`).

    Args:
        root: the folder.
        size: the ``(H, W)`` every image must have; default: that of the first image.

    Raises:
        FileNotFoundError: a missing folder, label file or image (named).
        ValueError: a malformed label file (line named) or a bad image (file named).
    """
    from data_gen.folders import image_folder, read_labelled_folder

    root = Path(root)
    if not root.is_dir():
        raise FileNotFoundError(f"data folder {root} does not exist")
    items = read_labelled_folder(root)
    base = image_folder(root)
    first = read_gray(base / items[0].filename, size)
    size = first.shape
    images = np.empty((len(items), *size), np.uint8)
    images[0] = first
    for i, it in enumerate(items[1:], 1):
        images[i] = read_gray(base / it.filename, size)
    k = max(1, max(len(it.boxes) for it in items))
    boxes = np.full((len(items), k, 4), -1, np.int32)
    for i, it in enumerate(items):
        for j, b in enumerate(it.boxes):
            if b[2] > size[1] or b[3] > size[0]:
                raise ValueError(f"{root}/labels.csv: box {b} of {it.filename} lies outside its "
                                 f"{size[1]}×{size[0]} image")
            boxes[i, j] = b
    labels = np.asarray([it.label for it in items], np.uint8)
    return FolderSet(root, [it.filename for it in items], images, labels, boxes)


def _mask_box(mask: np.ndarray) -> tuple[int, int, int, int] | None:
    ys, xs = np.nonzero(mask)
    if ys.size == 0:
        return None
    return int(xs.min()), int(ys.min()), int(xs.max()) + 1, int(ys.max()) + 1


def load_dagm(class_dir: str | os.PathLike, split: str = "Test", size: tuple[int, int] | None = None,
              truth: str = "mask") -> FolderSet:
    """Load one split of a DAGM 2007 class folder (real, or written by ``python -m data_gen textile``).

    Args:
        class_dir: the class folder (``.../Class1``).
        split: ``"Train"`` or ``"Test"``.
        size: the ``(H, W)`` every image must have (default: that of the first image).
        truth: which mask gives the boxes and ``masks``: ``"mask"`` (the true defect mask where the set
            has one, else the label ellipse) or ``"ellipse"`` (DAGM's weak elliptical labels).

    Returns:
        A :class:`FolderSet` with ``masks`` (N, H, W) bool and one box per defective image.

    Raises:
        FileNotFoundError / ValueError: missing folders or files, malformed index, bad images (named).
    """
    from data_gen.folders import read_dagm

    if truth not in ("mask", "ellipse"):
        raise ValueError(f"truth must be 'mask' or 'ellipse', not {truth!r}")
    items = read_dagm(class_dir, split)
    folder = Path(class_dir) / split
    first = read_gray(folder / items[0].filename, size)
    size = first.shape
    images = np.empty((len(items), *size), np.uint8)
    masks = np.zeros((len(items), *size), bool)
    boxes = np.full((len(items), 1, 4), -1, np.int32)
    for i, it in enumerate(items):
        images[i] = first if i == 0 else read_gray(folder / it.filename, size)
        if it.label:
            src = it.mask_file if (truth == "mask" and it.mask_file) else it.label_file
            masks[i] = read_gray(folder / src, size) > 127
            box = _mask_box(masks[i])
            if box is None:
                raise ValueError(f"{folder / src} is empty: a defective image needs a non-empty mask")
            boxes[i, 0] = box
    labels = np.asarray([it.label for it in items], np.uint8)
    return FolderSet(Path(class_dir), [it.filename for it in items], images, labels, boxes, masks)


class ImageFiles:
    """Image files read on demand, as an ``(N, H, W)`` uint8 array would be indexed: ``files[idx]`` (positions
    or a slice) reads those images (each brought to ``size``, see :func:`read_image`) and stacks them, so a
    training set, or an evaluation split too large for memory, never needs to be held at once.

    Args:
        paths: the image files (``None`` entries: an all-zero image, e.g. a defect-free image's mask).
        size: the ``(H, W)`` every image is brought to.
        masks: the files are masks: read as ``bool`` (any non-zero pixel), resized by nearest neighbour.
        color: read ``(H, W, 3)`` RGB images (``shape`` ``(N, H, W, 3)``).
        cache: keep each image once decoded (for a set that fits in memory: later epochs read no file). In
            DataLoader workers each worker keeps its own reads, for one epoch.
    """

    def __init__(self, paths: Sequence[str | os.PathLike | None], size: tuple[int, int], masks: bool = False,
                 color: bool = False, cache: bool = False):
        self.paths = [None if p is None else Path(p) for p in paths]
        self.size, self.masks, self.color = (int(size[0]), int(size[1])), masks, color and not masks
        self.dtype = np.dtype(bool if masks else np.uint8)
        self.ndim = 4 if self.color else 3
        self.cache: dict[int, np.ndarray] | None = {} if cache else None

    @property
    def nbytes(self) -> int:
        """Bytes of all the images decoded (what a cache of every one would hold)."""
        return int(np.prod(self.shape)) * self.dtype.itemsize

    def __len__(self) -> int:
        return len(self.paths)

    @property
    def shape(self) -> tuple[int, ...]:
        return (len(self.paths), *self.size, *((3,) if self.color else ()))

    def __getitem__(self, idx: int | slice | Sequence[int] | np.ndarray) -> np.ndarray:
        if isinstance(idx, (int, np.integer)):
            return self[[idx]][0]
        if isinstance(idx, slice):
            idx = np.arange(len(self.paths))[idx]
        if isinstance(idx, tuple) or idx is Ellipsis:
            raise TypeError("ImageFiles takes positions, a slice or a boolean mask along the images only: read "
                            "them first (files[...] → files[:]) and index the array")
        idx = np.asarray(idx)
        if idx.dtype == bool:  # a mask, as numpy reads it
            if idx.shape != (len(self.paths),):
                raise IndexError(f"a boolean index must have one entry per image ({len(self.paths)}), not "
                                 f"{idx.shape}")
            idx = np.flatnonzero(idx)
        idx = idx.astype(np.int64).reshape(-1)
        out = np.zeros((len(idx), *self.shape[1:]), self.dtype)
        for k, i in enumerate(idx):
            path = self.paths[int(i)]
            if self.cache is not None and int(i) in self.cache:
                out[k] = self.cache[int(i)]
            elif path is not None:
                a = read_image(path, self.size, mask=self.masks, color=self.color)
                out[k] = a > 0 if self.masks else a
                if self.cache is not None:
                    self.cache[int(i)] = out[k].copy()
        return out


class FolderEpochs:
    """Training data from a fixed set (a DAGM 2007 ``Train`` split held in memory, or a class folder's
    training files read from disk), for :class:`~sacnn_lab.trainer.Trainer`: epoch ``e`` passes over every
    image once, in an order drawn from ``(seed, e)``, each image flipped left-right and/or upside down by
    the same draws (a flip keeps a defect a defect and a texture a texture); optionally turned by a random
    quarter turn and given a random brightness. The same batches on every machine, with any number of
    workers, and on resume.

    Args:
        images: ``(N, H, W)`` uint8, or :class:`ImageFiles` (read from disk batch by batch: bounded memory).
        labels: ``(N,)`` 0/1 (or ``0..K``: defect types).
        batch_size: images per batch.
        seed: seeds the order and the augmentation.
        augment: draw the flips (``False``: the images as they are, whatever the other options).
        quarter_turns: also turn each image by 0, 1, 2 or 3 quarter turns (square images only).
        brightness: also scale each image's gray values by a gain in ``[1 - b, 1 + b]`` and shift them by
            up to ``± b / 2`` (then clipped to [0, 1]); 0: no change.
        num_workers: processes that read and augment batches (:class:`torch.utils.data.DataLoader`); 0: the
            training process does.
        masks: ``(N, H, W)`` bool true masks: the batches then carry them (``mask``), flipped and turned with
            their images (the supervised reference, ``TrainConfig.supervision="mask"``).
        ranks: on several processes, each step's global batch holds ``world · batch_size`` images of the
            epoch's order and this rank takes its share (see :class:`GeneratedEpochs`).
    """

    def __init__(self, images: np.ndarray | ImageFiles, labels: np.ndarray, batch_size: int, seed: int = 0,
                 augment: bool = True, quarter_turns: bool = False, brightness: float = 0.0,
                 num_workers: int = 0, masks: np.ndarray | None = None, ranks: Ranks | None = None):
        colour = images.ndim == 4 and images.shape[3] == 3
        if (images.ndim != 3 and not colour) or images.dtype != np.uint8 or len(images) != len(labels) \
                or not len(images):
            raise ValueError(f"expected (N, H, W) (or colour (N, H, W, 3)) uint8 images with N labels, N >= 1; got "
                             f"{images.dtype} {images.shape} and {len(labels)} labels")
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, not {batch_size}")
        if not 0 <= brightness < 1:
            raise ValueError(f"brightness must lie in [0, 1), not {brightness}")
        if masks is not None and tuple(masks.shape) != tuple(images.shape[:3]):
            raise ValueError(f"masks must be (N, H, W) like the images {tuple(images.shape[:3])}, not "
                             f"{tuple(masks.shape)}")
        self.images, self.labels, self.masks = images, np.asarray(labels, np.int64), masks
        self.batch_size, self.seed, self.augment = batch_size, int(seed), augment
        self.quarter_turns = bool(quarter_turns) and augment and images.shape[1] == images.shape[2]
        self.brightness = float(brightness) if augment else 0.0
        self.num_workers = int(num_workers)
        self.ranks = ranks or Ranks()
        self.steps_per_epoch = -(-len(images) // (batch_size * self.ranks.world))

    def _draws(self, epoch: int) -> dict[str, np.ndarray]:
        """The epoch's order and every image's augmentation, from ``(seed, epoch)``: the flips first (the
        draws of a run without the other options are unchanged), then turns and brightness."""
        if epoch < 1:
            raise ValueError(f"epochs count from 1, not {epoch}")
        n = len(self.images)
        g = torch.Generator().manual_seed(self.seed * 1_000_003 + epoch)
        order = torch.randperm(n, generator=g).numpy()
        draws = {"order": order,
                 "flips": torch.rand(n, 2, generator=g).numpy() < (0.5 if self.augment else 0.0)}
        if self.quarter_turns:
            draws["turns"] = torch.randint(0, 4, (n,), generator=g).numpy()
        if self.brightness:
            u = torch.rand(n, 2, generator=g).numpy() * 2 - 1  # each in [-1, 1)
            draws["gain"], draws["shift"] = 1 + self.brightness * u[:, 0], self.brightness / 2 * u[:, 1]
        return draws

    def batch(self, draws: dict[str, np.ndarray], b: int) -> dict[str, torch.Tensor]:
        """Batch ``b`` of an epoch whose :meth:`_draws` are ``draws`` (this rank's share of it)."""
        g, n = self.batch_size * self.ranks.world, len(self.images)
        total = min(g, n - b * g)
        sl = positions(b * g, total, self.ranks)
        idx = draws["order"][sl]
        x = to_tensor_images(self.images[idx])
        m = None if self.masks is None else torch.from_numpy(np.asarray(self.masks[idx], bool))
        for axis, dim in ((0, 3), (1, 2)):
            f = torch.from_numpy(draws["flips"][sl, axis])
            if f.any():
                x[f] = x[f].flip(dim)
                if m is not None:
                    m[f] = m[f].flip(dim - 1)
        if "turns" in draws:
            for k in (1, 2, 3):
                t = torch.from_numpy(draws["turns"][sl] == k)
                if t.any():
                    x[t] = torch.rot90(x[t], k, dims=(2, 3))
                    if m is not None:
                        m[t] = torch.rot90(m[t], k, dims=(1, 2))
        if "gain" in draws:
            gain = torch.from_numpy(draws["gain"][sl].astype(np.float32))[:, None, None, None]
            shift = torch.from_numpy(draws["shift"][sl].astype(np.float32))[:, None, None, None]
            x = (x * gain + shift).clamp_(0.0, 1.0)
        out = {"image": x, "label": torch.from_numpy(self.labels[idx]), "index": torch.from_numpy(idx)}
        if m is not None:
            out["mask"] = m
        if self.ranks.distributed:
            out["global_batch"] = torch.tensor(total)
        return out

    def loader(self, epoch: int) -> Iterator[dict[str, torch.Tensor]] | DataLoader:
        draws = self._draws(epoch)
        if self.num_workers:
            return DataLoader(_EpochBatches(self, draws), batch_size=None, shuffle=False,
                              num_workers=self.num_workers, pin_memory=torch.cuda.is_available())
        return (self.batch(draws, b) for b in range(self.steps_per_epoch))


class _RankSteps(Dataset):
    """One rank's share of each step of a generated epoch, as a dataset of whole batches, for DataLoader workers
    under torchrun (item ``i``: step ``i``'s samples for this rank, and ``global_batch``)."""

    def __init__(self, ds: "CharacterDataset", steps: list[tuple[np.ndarray, int]]):
        self.ds, self.steps = ds, steps

    def __len__(self) -> int:
        return len(self.steps)

    def __getitem__(self, i: int) -> dict[str, torch.Tensor]:
        pos, total = self.steps[int(i)]
        out = self.ds.__getitems__(pos.tolist())
        out["global_batch"] = torch.tensor(total)
        return out


class _EpochBatches(Dataset):
    """One epoch of a :class:`FolderEpochs` as a dataset of whole batches, for DataLoader workers."""

    def __init__(self, epochs: FolderEpochs, draws: dict[str, np.ndarray]):
        self.epochs, self.draws = epochs, draws

    def __len__(self) -> int:
        return self.epochs.steps_per_epoch

    def __getitem__(self, b: int) -> dict[str, torch.Tensor]:
        return self.epochs.batch(self.draws, int(b))


def textile_folder(config: Any, progress: bool = True) -> Path:
    """The DAGM 2007 class folder of a textile :class:`~sacnn_lab.config.DataConfig`: ``config.folder``
    (the real DAGM 2007, or any set in its layout) when set, otherwise the generated set of
    ``config.textile`` (``python -m data_gen textile --seed config.train_seed`` with
    ``config.samples_per_epoch`` / ``config.test_size`` images), written once into the cache folder
    (``$SACNN_CACHE_DIR``, else ``$XDG_CACHE_HOME`` or ``~/.cache``, then ``sacnn-lab/textile/``) and
    reused afterwards.

    Raises:
        FileNotFoundError: ``config.folder`` is not a DAGM 2007 class folder.
    """
    import hashlib
    import json
    import shutil
    import tempfile

    from data_gen.folders import cache_root, is_dagm
    from data_gen.textile import write_textile

    if config.folder is not None:
        folder = Path(config.folder)
        if not is_dagm(folder):
            raise FileNotFoundError(f"{folder} is not a DAGM 2007 class folder (it needs Train/ and Test/ "
                                    f"inside, e.g. .../Class1)")
        return folder
    spec = {"textile": config.textile.to_dict(), "seed": config.train_seed,
            "n_train": config.samples_per_epoch, "n_test": config.test_size}
    key = hashlib.sha1(json.dumps(spec, sort_keys=True).encode()).hexdigest()[:12]
    root = cache_root() / "textile" / key
    if not (root / "Class1" / "generator.json").is_file():
        root.parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(dir=root.parent, prefix=f".{key}-"))
        try:
            write_textile(tmp, config.textile, n_train=spec["n_train"], n_test=spec["n_test"],
                          seed=config.train_seed, progress=progress)
            shutil.rmtree(root, ignore_errors=True)
            os.replace(tmp, root)  # atomic: a half-written set is never reused
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
    return root / "Class1"
