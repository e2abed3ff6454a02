"""Data sources: where a run's images come from, one interface for every kind.

A :class:`DataSource` knows its training epochs, its fixed evaluation splits (validation and test), its
probe batch (the images whose maps are recorded every epoch) and its truth (boxes, and masks where the set
has them). :func:`source_for` picks the source a :class:`~sacnn_lab.config.RunConfig` names, so that
:mod:`sacnn_lab.experiment` wires a source, a model and a trainer without knowing which source it has.

    source = source_for(RunConfig.preset("fast"))
    data = source.training()              # an EpochSource for the Trainer
    val, probe = source.split("val"), source.probe()
    pointing_masks(val)                   # masks the pointing game scores against, or None (boxes)

Implementations: :class:`CharacterSource` (the generated character set), :class:`DagmSource` (a DAGM 2007
class folder: the generated textile set or the real one, with the textile presets),
:class:`ClassFolderSource` (a user's own folder: ``good/`` beside folders of defective images, or a DAGM or
labelled folder read the same way, with defaults chosen from the data), :class:`LabelledFolderSource`
(``images/`` + ``labels.csv`` as evaluation data of a run trained elsewhere).
"""

from __future__ import annotations

import functools
import os
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from data_gen.characters import CharacterBatch, CharacterGenerator
from data_gen.fonts import compare_faces, face_records

from .data import FolderEpochs, FolderSet, GeneratedEpochs, load_dagm, load_folder, textile_folder
from .distributed import current

if TYPE_CHECKING:
    from .trainer import EpochSource

SPLITS = ("val", "test", "probe")
# a run that draws this many character samples renders most glyphs anyway: render them all before the
# clock starts (16–19 s on our 2-core machine) rather than one by one inside the training steps
WARM_UP_SAMPLES = 20_000


def _first(data: FolderSet, n: int | None) -> FolderSet:
    """The first ``n`` images of ``data`` (all of them without ``n``)."""
    return data if n is None else data.subset(np.arange(min(n, len(data))))


class DataSource:
    """What a run's data must offer. Subclasses implement :meth:`training`, :meth:`_split` (validation and
    test) and :meth:`probe`; the rest has defaults.

    A batch is anything with ``images`` ``(N, H, W)`` uint8, ``labels`` ``(N,)`` 0/1 and ``boxes``
    ``(N, K, 4)`` int32 (-1 rows unused); a :class:`~sacnn_lab.data.FolderSet` also has ``masks``.
    """

    def training(self, progress: bool = False) -> EpochSource:
        """The training epochs (see :class:`~sacnn_lab.trainer.EpochSource`)."""
        raise NotImplementedError

    def split(self, which: str, n: int | None = None) -> Any:
        """A fixed evaluation split, ``"val"`` or ``"test"`` (``"probe"``: :meth:`probe`); the first ``n``
        images when given."""
        if which not in SPLITS:
            raise ValueError(f"split must be 'val', 'test' or 'probe', not {which!r}")
        return self.probe(n) if which == "probe" else self._split(which, n)

    def _split(self, which: str, n: int | None) -> Any:
        """``"val"`` or ``"test"``, the first ``n`` images when given."""
        raise NotImplementedError

    def probe(self, n: int | None = None) -> Any:
        """The probe batch: ``n`` (default: the config's ``probe_size``) images of the test split, about
        half of them defective."""
        raise NotImplementedError

    def faces_record(self) -> dict[str, Any] | None:
        """The font faces the source draws with, which a run folder keeps (``faces.json``), or ``None``
        for a source of image files."""
        return None

    def faces_differ(self, record: dict[str, Any]) -> str | None:
        """How this machine's faces differ from a run's :meth:`faces_record`, in words, or ``None``."""
        return None

    def split_record(self) -> dict[str, Any] | None:
        """The files of each split, which a run folder keeps (``splits.json``) so that evaluation measures
        exactly its test files, or ``None`` where the config alone fixes the splits."""
        return None


def pointing_masks(batch: Any) -> np.ndarray | None:
    """The masks the pointing game scores ``batch`` against (a set with masks: a DAGM set's label
    ellipses or true masks), or ``None`` (its boxes: the character sets)."""
    return batch.masks if isinstance(batch, FolderSet) else None


class CharacterSource(DataSource):
    """The generated character set of a run: fresh samples every epoch from the training seed, validation
    and test splits of their own seeds (the test split's never seen in training), a probe batch of test
    images (about half defective, a quarter of those with several characters, the paper's Figures 7–8)."""

    def __init__(self, config: Any):
        if config.data.source != "characters":
            raise ValueError(f"CharacterSource needs a character run, not source={config.data.source!r}")
        self.config = config

    @functools.cached_property
    def generators(self) -> tuple[CharacterGenerator, CharacterGenerator]:
        """The training and evaluation generators (one glyph cache where their faces are the same)."""
        chars, ev_cfg = self.config.data.characters, self.config.data.eval_characters()
        train = CharacterGenerator(chars)
        same_faces = (ev_cfg.font_split, ev_cfg.font_dirs, ev_cfg.system_fonts) == (
            chars.font_split, chars.font_dirs, chars.system_fonts)
        ev = CharacterGenerator(ev_cfg, faces=train.faces if same_faces else None)
        if same_faces:
            ev.atlas = train.atlas  # share rendered glyphs
        return train, ev

    def training(self, progress: bool = False) -> GeneratedEpochs:
        """New samples every epoch; the early epochs (``early_epochs``) on smaller images; the glyphs of a
        long run rendered first (see ``WARM_UP_SAMPLES``)."""
        t, d = self.config.train, self.config.data
        gen_train = self.generators[0]
        early = None
        if d.early_epochs:
            early = CharacterGenerator(d.early_characters(), faces=gen_train.faces)
            early.atlas = gen_train.atlas  # the same glyphs at the same sizes
        if t.epochs * d.samples_per_epoch >= WARM_UP_SAMPLES:
            gen_train.warm_up(progress=progress)
        return GeneratedEpochs(gen_train, d.train_seed, d.samples_per_epoch, t.batch_size, t.num_workers,
                               early_generator=early, early_epochs=d.early_epochs, masks=t.supervision == "mask",
                               ranks=current())

    def _split(self, which: str, n: int | None) -> CharacterBatch:
        d = self.config.data
        seed, size = (d.val_seed, d.val_size) if which == "val" else (d.test_seed, d.test_size)
        return self.generators[1].generate(seed, np.arange(n or size), masks=False)

    def probe(self, n: int | None = None) -> CharacterBatch:
        gen, d = self.generators[1], self.config.data
        size = n or d.probe_size
        pool = gen.generate(d.test_seed, np.arange(max(256, 16 * size)))
        n_boxes = (pool.boxes[:, :, 0] >= 0).sum(1)
        multi = np.flatnonzero(n_boxes > 1)[: size // 4]
        single = np.flatnonzero(n_boxes == 1)[: (size + 1) // 2 - len(multi)]
        free = np.flatnonzero(n_boxes == 0)[: size - len(multi) - len(single)]
        return gen.generate(d.test_seed, np.sort(np.concatenate([multi, single, free])))

    def faces_record(self) -> dict[str, Any]:
        """The font faces of the training and evaluation generators (:func:`data_gen.fonts.face_records`)."""
        train, ev = self.generators
        return {"train": face_records(train.faces), "eval": face_records(ev.faces)}

    def faces_differ(self, record: dict[str, Any]) -> str | None:
        try:
            recorded = record["eval"]
        except (KeyError, TypeError):
            return "the run's record of its font faces cannot be read"
        diff = compare_faces(recorded, face_records(self.generators[1].faces))
        return None if diff is None else f"this machine's font faces differ from the run's ({diff})"


class DagmSource(DataSource):
    """A DAGM 2007 class folder (``config.data.folder``, or the generated textile set written into the
    cache on first use): its ``Train`` split trains, one pass per epoch with random flips; its ``Test``
    split serves validation, test and probe (DAGM has no validation split); masks from
    ``config.data.truth``."""

    def __init__(self, config: Any):
        if config.data.source != "textile":
            raise ValueError(f"DagmSource needs a textile run, not source={config.data.source!r}")
        self.config = config

    def folder_split(self, which: str = "Test") -> FolderSet:
        """The ``"Train"`` or ``"Test"`` split of the class folder, with masks and boxes."""
        d = self.config.data
        folder = textile_folder(d)
        return _load_dagm_cached(str(folder.resolve()), which, d.truth,
                                 d.image_size if d.folder is None else None, _split_stamp(folder / which))

    def training(self, progress: bool = False) -> FolderEpochs:
        train = self.folder_split("Train")
        masks = None
        if self.config.train.supervision == "mask":
            if train.masks is None:
                raise ValueError(f"supervision='mask' needs the Train split's true masks; "
                                 f"{textile_folder(self.config.data) / 'Train'} has none")
            masks = train.masks
        return FolderEpochs(train.images, train.labels, self.config.train.batch_size,
                            seed=self.config.data.train_seed, masks=masks, ranks=current())

    def _split(self, which: str, n: int | None) -> FolderSet:
        return _first(self.folder_split("Test"), n)

    def probe(self, n: int | None = None) -> FolderSet:
        return half_defective(self.folder_split("Test"), n or self.config.data.probe_size)


def half_defective(data: FolderSet, size: int) -> FolderSet:
    """A probe batch of ``size`` images of ``data``: about half defective, the rest defect-free, in order."""
    bad, good = np.flatnonzero(data.labels > 0), np.flatnonzero(data.labels == 0)
    k = min(len(bad), (size + 1) // 2)
    return data.subset(np.sort(np.concatenate([bad[:k], good[: size - k]])))


def _split_stamp(split_dir: Path) -> tuple[int, ...]:
    """Modification times of a DAGM split folder and of its label index: they change when the folder is
    written again, so that a rewritten folder is read again."""
    return tuple(p.stat().st_mtime_ns for p in (split_dir, split_dir / "Label" / "Labels.txt") if p.exists())


@functools.lru_cache(maxsize=2)
def _load_dagm_cached(folder: str, which: str, truth: str, size: int | None, stamp: tuple[int, ...]) -> FolderSet:
    # a textile run reads its Test split for validation, probe and test: read the PNGs once per process
    # (``stamp`` is only part of the cache's key)
    return load_dagm(folder, which, size=None if size is None else (size, size), truth=truth)


class LabelledFolderSource(DataSource):
    """A labelled folder (``images/`` + ``labels.csv``, see :mod:`data_gen.folders`) as evaluation data of a
    character or textile run: every split is the whole folder (its first ``n`` images), of the size
    ``size`` where given. A run trains on such a folder, and a folder run evaluates on it, through
    :class:`ClassFolderSource` (``source="folder"``)."""

    def __init__(self, root: str | os.PathLike, size: tuple[int, int] | None = None):
        self.root, self.size = Path(root), size

    @functools.cached_property
    def images(self) -> FolderSet:
        return load_folder(self.root, size=self.size)

    def training(self, progress: bool = False) -> EpochSource:
        raise ValueError(f"{self.root} is a labelled folder read as evaluation data: to train on it, use "
                         f"source='folder' (sacnn-lab train --data {self.root})")

    def _split(self, which: str, n: int | None) -> FolderSet:
        return _first(self.images, n)

    def probe(self, n: int | None = None) -> FolderSet:
        return _first(self.images, n or 16)


SPLITS_FILE = "splits.json"
# a class folder's validation or test split is held in memory up to this many bytes of images and masks
# (4,000 images of 512² with masks); a larger one is read from disk a batch at a time at every evaluation
SPLIT_MEMORY = 2 << 30
# a class folder's training images are kept once decoded when they fit in this many bytes (and no DataLoader
# workers read them): later epochs then read no file; a larger set is read from disk in every epoch
CACHE_MEMORY = 1 << 30


class ClassFolderSource(DataSource):
    """A user's class folder (``config.data.folder``: ``good/`` beside one or more folders of defective
    images, optionally ``masks/``; see :func:`data_gen.folders.read_class_folder`), or a folder of another
    layout read as one (a DAGM 2007 class folder, whose ``Train/`` and ``Test/`` are the splits; a labelled
    folder, whose boxes are its truth; see :func:`data_gen.folders.read_folder_layout`).

    Its ``train/`` / ``val/`` / ``test/`` folders are the splits where it has them (a missing ``val/`` is
    carved out of ``train/``); otherwise each class folder is split, seeded by ``train_seed``, into
    ``test_fraction`` and ``val_fraction`` held out and the rest for training. :meth:`split_record` is what a
    run folder keeps (``splits.json``), and ``splits`` given back reproduces exactly those files. Training
    reads its images from disk batch by batch (:class:`~sacnn_lab.data.ImageFiles`), keeping them once
    decoded where they fit in ``CACHE_MEMORY``; the validation and test splits are read into memory where
    they fit in ``SPLIT_MEMORY`` (else a batch at a time), with masks (evaluation only) where the folder
    has them.

    Args:
        config: the run (``source="folder"``).
        splits: a saved :meth:`split_record` (``{"size": [H, W], "train": [...], "val": [...], "test": [...]}``,
            paths relative to the folder), or ``None`` to make the split.
    """

    def __init__(self, config: Any, splits: dict[str, Any] | None = None):
        if config.data.source != "folder":
            raise ValueError(f"ClassFolderSource needs source='folder', not {config.data.source!r}")
        self.config, self.root = config, Path(config.data.folder)
        self._saved = splits

    @classmethod
    def evaluation(cls, config: Any, root: str | os.PathLike) -> ClassFolderSource:
        """Every image of the class folder ``root`` as test data (its ``train/``, ``val/`` and ``test/``
        included), for a model trained elsewhere: the run's image size where it is a folder run with
        ``resize``, else the folder's most common size."""
        from dataclasses import replace

        from .config import DataConfig

        if config.data.source == "folder":
            data = replace(config.data, folder=os.fspath(root))
        else:
            data = DataConfig(source="folder", folder=os.fspath(root))
        run = replace(config, data=data)
        whole = cls(run)
        return cls(run, {"size": list(whole.size), "train": [], "val": [], "test": sorted(whole.images)})

    @functools.cached_property
    def layout(self) -> tuple[str, dict[str, list[Any]]]:
        """``(kind, splits)`` of the folder (:func:`data_gen.folders.read_folder_layout`): a class folder, a
        DAGM 2007 class folder or a labelled folder, each as class-folder images."""
        from data_gen.folders import read_folder_layout

        return read_folder_layout(self.root)

    @functools.cached_property
    def images(self) -> dict[str, Any]:
        """Every :class:`~data_gen.folders.ClassImage` of the folder by its relative path."""
        return {it.path: it for part in self.layout[1].values() for it in part}

    @functools.cached_property
    def size(self) -> tuple[int, int]:
        """The ``(H, W)`` images are brought to: ``config.data.resize``, the saved split's, or the set's most
        common size."""
        from collections import Counter

        from .images import image_size_of

        d = self.config.data
        if d.resize is not None:
            return tuple(d.resize)
        if self._saved is not None:
            return tuple(self._saved["size"])
        of = {p: image_size_of(self.root / p) for p in self.images}
        size = Counter(of.values()).most_common(1)[0][0]
        if d.one_size:
            odd = [p for p, s in of.items() if s != size]
            if odd:
                h, w = of[odd[0]]
                raise ValueError(f"{self.root / odd[0]} is {w}×{h} px, but most of the folder's images are "
                                 f"{size[1]}×{size[0]} ({len(odd)} image(s) of other sizes): with one_size "
                                 f"(--no-resize) every image must have one size; leave it out to resize them")
        return size

    @functools.cached_property
    def splits(self) -> dict[str, list[str]]:
        """``{"train": [...], "val": [...], "test": [...]}``: relative paths of each split."""
        if self._saved is not None:
            missing = [p for k in ("train", "val", "test") for p in self._saved[k] if p not in self.images]
            if missing:
                raise FileNotFoundError(f"{self.root} no longer holds {missing[0]} ({len(missing)} file(s) of the "
                                        f"run's saved split): the folder changed since the run")
            return {k: list(self._saved[k]) for k in ("train", "val", "test")}
        d = self.config.data
        layout = self.layout[1]
        if "all" in layout:
            train, val, test = self._carve(layout["all"], d.test_fraction, d.val_fraction)
        else:
            train, val, _ = self._carve(layout["train"], 0.0, 0.0 if "val" in layout else d.val_fraction)
            val = [it.path for it in layout["val"]] if "val" in layout else val
            test = [it.path for it in layout["test"]]
        for name, part in (("training", train), ("validation", val), ("test", test)):
            if not part:
                raise ValueError(f"{self.root}: the {name} split is empty: the folder holds too few images "
                                 f"({len(self.images)})")
        return {"train": train, "val": val, "test": test}

    def _carve(self, items: list[Any], test_fraction: float, val_fraction: float
               ) -> tuple[list[str], list[str], list[str]]:
        """A seeded split of ``items`` that keeps each class folder's share in every part."""
        rng = np.random.default_rng(self.config.data.train_seed)
        train, val, test = [], [], []
        for kind in sorted({it.kind for it in items}):
            paths = [it.path for it in items if it.kind == kind]
            order = [paths[i] for i in rng.permutation(len(paths))]
            n_test = int(round(len(order) * test_fraction))
            n_val = int(round(len(order) * val_fraction))
            if test_fraction and len(order) >= 3:
                n_test = max(1, n_test)
            if val_fraction and len(order) >= 3:
                n_val = max(1, n_val)
            test += order[:n_test]
            val += order[n_test:n_test + n_val]
            train += order[n_test + n_val:]
        return sorted(train), sorted(val), sorted(test)

    def table(self) -> Any:
        """A ``pandas.DataFrame`` of image counts: one row per class folder, one column per split."""
        import pandas as pd

        rows = [{"folder": self.images[p].kind, "split": split} for split, paths in self.splits.items() for p in paths]
        counts = pd.DataFrame(rows).value_counts().unstack(fill_value=0)
        return counts.reindex(columns=["train", "val", "test"], fill_value=0)

    def split_record(self) -> dict[str, Any]:
        """What a run folder keeps so that evaluation measures exactly its test files."""
        return {"root": str(self.root.resolve()), "size": list(self.size), **self.splits}

    @functools.cached_property
    def typed(self) -> bool:
        """Whether the images carry the run's defect types: ``defect_types`` set, and every defect folder of
        the data one of them (another folder's images are then only defective: 0/1 labels)."""
        types = self.config.data.defect_types
        return bool(types) and all(it.kind in types for it in self.images.values() if it.label)

    def label_of(self, path: str) -> int:
        """The label of an image: 0 defect-free, 1 defective, or where the data carries the run's defect
        types (:attr:`typed`) the number (from 1) of its defect folder's type."""
        it = self.images[path]
        if not self.typed or not it.label:
            return int(it.label)
        return 1 + self.config.data.defect_types.index(it.kind)

    def training(self, progress: bool = False) -> FolderEpochs:
        from .data import ImageFiles

        paths, d = self.splits["train"], self.config.data
        if d.defect_types and not self.typed:
            odd = next(it for it in self.images.values() if it.label and it.kind not in d.defect_types)
            raise ValueError(f"{self.root / odd.path} lies in the defect folder {odd.kind!r}, which is none of the "
                             f"run's defect types {list(d.defect_types)}")
        labels = np.asarray([self.label_of(p) for p in paths], np.int64)
        files = ImageFiles([self.root / p for p in paths], self.size, color=d.color)
        files.cache = {} if files.nbytes <= CACHE_MEMORY and not self.config.train.num_workers else None
        return FolderEpochs(files, labels,
                            self.config.train.batch_size, seed=d.train_seed, quarter_turns=d.quarter_turns,
                            brightness=d.brightness, num_workers=self.config.train.num_workers, ranks=current())

    def _loaded(self, which: str) -> FolderSet:
        """The ``"val"`` or ``"test"`` split read into memory (once per source)."""
        cache = self.__dict__.setdefault("_read", {})
        if which not in cache:
            cache[which] = self._read_split(which)
        return cache[which]

    def _read_split(self, which: str) -> FolderSet:
        """The split with its truth: in memory where its images and masks fit in ``SPLIT_MEMORY`` bytes,
        else as :class:`~sacnn_lab.data.ImageFiles` read a batch at a time (its boxes read once, now)."""
        from .data import ImageFiles, image_size_of, read_image

        paths, color = self.splits[which], self.config.data.color
        n, (h, w) = len(paths), self.size
        has_masks = any(self.images[p].mask is not None for p in paths)
        in_memory = n * h * w * ((3 if color else 1) + has_masks) <= SPLIT_MEMORY
        images = np.empty((n, h, w, *((3,) if color else ())), np.uint8) if in_memory else \
            ImageFiles([self.root / p for p in paths], self.size, color=color)
        masks = np.zeros((n, h, w), bool) if in_memory and has_masks else None
        boxes = np.full((n, max([1] + [len(self.images[p].boxes) for p in paths]), 4), -1, np.int32)
        for i, path in enumerate(paths):
            if in_memory:
                images[i] = read_image(self.root / path, self.size, resize=not self.config.data.one_size,
                                       color=color)
            mask = self.images[path].mask
            sizes = None if mask is None else (image_size_of(self.root / mask), image_size_of(self.root / path))
            if sizes is not None and sizes[0] != sizes[1]:
                (mh, mw), (ih, iw) = sizes
                raise ValueError(f"{self.root / mask} is {mw}×{mh} px, but its image {path} is {iw}×{ih}: a mask "
                                 f"has its image's size")
            if self.images[path].boxes:  # a labelled folder's boxes, brought to the size read
                boxes[i, :len(self.images[path].boxes)] = self._scaled(path, self.images[path].boxes)
            if mask is not None:
                m = read_image(self.root / mask, self.size, mask=True) > 0
                if masks is not None:
                    masks[i] = m
                ys, xs = np.nonzero(m)
                if ys.size:
                    boxes[i, 0] = (xs.min(), ys.min(), xs.max() + 1, ys.max() + 1)
        if has_masks and masks is None:
            masks = ImageFiles([None if self.images[p].mask is None else self.root / self.images[p].mask
                                for p in paths], self.size, masks=True)
        labels = np.asarray([self.label_of(p) for p in paths], np.uint8)
        return FolderSet(self.root, paths, images, labels, boxes, masks,
                         type_names=list(self.config.data.defect_types) if self.typed else None)

    def _scaled(self, path: str, boxes: list[tuple[int, int, int, int]]) -> np.ndarray:
        """``boxes`` of the image ``path`` in the coordinates of its image brought to :attr:`size`."""
        from .images import image_size_of

        (h0, w0), (h, w) = image_size_of(self.root / path), self.size
        b = np.asarray(boxes, np.float64) * [w / w0, h / h0, w / w0, h / h0]
        return np.clip(np.rint(b), 0, [w, h, w, h]).astype(np.int32)

    def _split(self, which: str, n: int | None) -> FolderSet:
        return _first(self._loaded(which), n)

    def probe(self, n: int | None = None) -> FolderSet:
        return half_defective(self._loaded("test"), n or self.config.data.probe_size)


def source_for(config: Any, run_dir: str | os.PathLike | None = None) -> DataSource:
    """The data source a run's config names (``config.data.source``); a class folder's run keeps its split
    in ``run_dir/splits.json``, which is used where it exists."""
    import json

    if config.data.source == "folder":
        saved = Path(run_dir) / SPLITS_FILE if run_dir is not None else None
        if saved is not None and saved.is_file():
            try:
                record = json.loads(saved.read_text(encoding="utf-8"))
                if not all(isinstance(record.get(k), list) for k in ("size", "train", "val", "test")):
                    raise ValueError("it lacks the size or a split's list of files")
            except (ValueError, AttributeError) as exc:
                raise ValueError(f"{saved} cannot be read ({exc})") from None
            return ClassFolderSource(config, record)
        return ClassFolderSource(config)
    kinds = {"characters": CharacterSource, "textile": DagmSource}
    if config.data.source not in kinds:
        raise ValueError(f"no data source for source={config.data.source!r}; known: {sorted(kinds)}")
    return kinds[config.data.source](config)


__all__ = ["DataSource", "CharacterSource", "DagmSource", "LabelledFolderSource", "ClassFolderSource", "source_for",
           "pointing_masks", "WARM_UP_SAMPLES"]
