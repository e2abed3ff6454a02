"""The labelled-folder format: the one place where sacnn-lab reads and writes image folders.

A labelled folder holds ``images/`` and ``labels.csv``::

    filename,label,x0,y0,x1,y1
    000000.png,1,12,40,38,70      # one row per true box of a defective image
    000000.png,1,80,10,101,37     # (the filename repeats for several boxes)
    000001.png,0,,,,              # a defect-free image: empty box fields
    000002.png,1,,,,              # a defective image without box information

``filename`` is relative to ``images/`` (or to the folder itself when there is no ``images/``);
``label`` is 0 (defect-free) or 1 (defective); box coordinates are pixels, ``x1`` and ``y1`` exclusive.
"""

from __future__ import annotations

import contextlib
import csv
import json
import os
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterable, Iterator, Sequence

HEADER = ["filename", "label", "x0", "y0", "x1", "y1"]


def cache_root() -> Path:
    """sacnn-lab's cache folder: ``$SACNN_CACHE_DIR``, else ``$XDG_CACHE_HOME`` or ``~/.cache``, then
    ``sacnn-lab/`` (the font scan, generated textile sets)."""
    root = os.environ.get("SACNN_CACHE_DIR") or os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(root) / "sacnn-lab"


def check_folder_name(name: str, what: str = "folder name") -> str:
    """``name`` when it is one plain folder name (no separator, not ``.`` or ``..``), so that a path
    built from it stays inside its parent.

    Raises:
        ValueError: anything else.
    """
    if not name or name in (".", "..") or "/" in name or "\\" in name or os.sep in name or \
            (os.altsep and os.altsep in name) or "\0" in name:
        raise ValueError(f"{what} must be a plain folder name (no '/' or '..'), not {name!r}")
    return name


def written_by(folder: str | os.PathLike, generator: str, meta: str, files: Iterable[str]) -> bool:
    """Whether ``folder`` holds a data set written by ``python -m data_gen GENERATOR`` and nothing else:
    its ``meta`` file (``config.json`` / ``generator.json``) says ``"generator": GENERATOR`` and every
    entry is one of ``files`` (or ``meta``)."""
    folder = Path(folder)
    try:
        info = json.loads((folder / meta).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return False
    allowed = {meta, *files}
    return isinstance(info, dict) and info.get("generator") == generator and \
        all(p.name in allowed for p in folder.iterdir())


@contextlib.contextmanager
def staged_folder(target: str | os.PathLike, overwrite: bool = False,
                  replaceable: Callable[[Path], bool] = lambda p: False) -> Iterator[Path]:
    """Write a folder so that ``target`` holds the old content or the complete new one, never a mixture.

    Yields a hidden empty folder beside ``target`` to write into; when the block ends without an error it
    takes ``target``'s place (the old content is removed only then), otherwise it is removed and
    ``target`` is left as it was (Ctrl-C included).

    Args:
        target: the folder to write.
        overwrite: replace a non-empty ``target`` (only when ``replaceable(target)``).
        replaceable: whether a non-empty ``target`` holds nothing but what this kind of writer wrote.

    Raises:
        FileExistsError: ``target`` is not empty (without ``overwrite``), holds files of another kind, or
            is a file.
    """
    target = Path(target)
    if target.exists() and not target.is_dir():
        raise FileExistsError(f"{target} is a file, not a folder")
    full = target.is_dir() and any(target.iterdir())
    if full and not overwrite:
        raise FileExistsError(f"{target} is not empty: choose a new folder, or pass --overwrite "
                              f"(overwrite=True) to replace the data set written there")
    if full and not replaceable(target):
        shown = sorted(p.name for p in target.iterdir())[:5]
        raise FileExistsError(f"{target} holds files that no data set of ours holds ({', '.join(shown)} ...): "
                              f"overwrite replaces only a data set written by python -m data_gen; choose "
                              f"a new folder")
    target.parent.mkdir(parents=True, exist_ok=True)
    stage = target.with_name(f".{target.name}.partial-{os.getpid()}")
    shutil.rmtree(stage, ignore_errors=True)
    stage.mkdir()
    try:
        yield stage
        old = None
        if target.is_dir():
            old = target.with_name(f".{target.name}.old-{os.getpid()}")
            os.replace(target, old)
        try:
            os.replace(stage, target)
        except BaseException:
            if old is not None:
                os.replace(old, target)  # the old content back in its place
            raise
        if old is not None:
            shutil.rmtree(old, ignore_errors=True)
    finally:
        shutil.rmtree(stage, ignore_errors=True)


class LabelFileError(ValueError):
    """A malformed ``labels.csv``; the message names the file and the line."""


@dataclass
class LabelledImage:
    """One image of a labelled folder.

    Attributes:
        filename: path relative to the images folder.
        label: 0 = defect-free, 1 = defective.
        boxes: true boxes ``(x0, y0, x1, y1)``, x1/y1 exclusive; empty when unknown or defect-free.
    """

    filename: str
    label: int
    boxes: list[tuple[int, int, int, int]] = field(default_factory=list)


def _parse_row(row: list[str], where: str) -> tuple[str, int, tuple[int, int, int, int] | None]:
    if len(row) != len(HEADER):
        raise LabelFileError(f"{where}: expected {len(HEADER)} fields ({','.join(HEADER)}), got {len(row)}")
    name, label, *coords = (v.strip() for v in row)
    if not name:
        raise LabelFileError(f"{where}: empty filename")
    if Path(name).is_absolute() or ".." in Path(name).parts:
        raise LabelFileError(f"{where}: filename {name!r} must be relative to the folder")
    if label not in ("0", "1"):
        raise LabelFileError(f"{where}: label must be 0 or 1, not {label!r}")
    if all(c == "" for c in coords):
        return name, int(label), None
    if any(c == "" for c in coords):
        raise LabelFileError(f"{where}: box fields must be all empty or all filled, got {coords}")
    try:
        x0, y0, x1, y1 = (int(c) for c in coords)
    except ValueError:
        raise LabelFileError(f"{where}: box coordinates must be integers, got {coords}") from None
    if label == "0":
        raise LabelFileError(f"{where}: a defect-free image (label 0) cannot have a box")
    if not (0 <= x0 < x1 and 0 <= y0 < y1):
        raise LabelFileError(f"{where}: box must satisfy 0 <= x0 < x1 and 0 <= y0 < y1, got {coords}")
    return name, int(label), (x0, y0, x1, y1)


def read_labels(path: str | os.PathLike) -> list[LabelledImage]:
    """Read a ``labels.csv`` (or the folder holding it).

    Args:
        path: the CSV file, or a labelled folder.

    Returns:
        One :class:`LabelledImage` per distinct filename, in first-appearance order.

    Raises:
        FileNotFoundError: no such file.
        LabelFileError: a malformed header or row (the message names the file and line number), or a
            file in another encoding than UTF-8 (a byte-order mark, as Excel writes, is accepted).
    """
    path = Path(path)
    if path.is_dir():
        path = path / "labels.csv"
    if not path.is_file():
        raise FileNotFoundError(f"label file {path} does not exist")
    images: dict[str, LabelledImage] = {}
    # utf-8-sig: a byte-order mark, as Excel writes one, is read as nothing
    with open(path, newline="", encoding="utf-8-sig") as fh:
        reader = csv.reader(fh)
        try:
            header = next(reader, None)
            if header is None or [h.strip().lower() for h in header] != HEADER:
                raise LabelFileError(f"{path}:1: header must be {','.join(HEADER)}, got {header}")
            for row in reader:
                if not row or all(not v.strip() for v in row):
                    continue
                where = f"{path}:{reader.line_num}"
                name, label, box = _parse_row(row, where)
                item = images.get(name)
                if item is None:
                    item = images[name] = LabelledImage(name, label)
                elif item.label != label:
                    raise LabelFileError(f"{where}: {name} was labelled {item.label} on an earlier line")
                if box is not None:
                    item.boxes.append(box)
        except UnicodeDecodeError as exc:
            raise LabelFileError(f"{path}: not a text file in UTF-8 (or ASCII); save it as UTF-8 "
                                 f"({exc.reason} at byte {exc.start})") from None
        except csv.Error as exc:
            raise LabelFileError(f"{path}:{reader.line_num}: not a well-formed CSV line ({exc})") from None
    return list(images.values())


def write_labels(path: str | os.PathLike, items: Iterable[LabelledImage]) -> Path:
    """Write ``labels.csv`` atomically (a reader never sees half a file).

    Args:
        path: the CSV file, or a folder (``labels.csv`` is written inside it).
        items: the images with their labels and boxes.

    Returns:
        The path written.
    """
    path = Path(path)
    if path.is_dir():
        path = path / "labels.csv"
    tmp = path.with_name(f"{path.name}.{os.getpid()}.tmp")
    try:
        with open(tmp, "w", newline="", encoding="utf-8") as fh:
            w = csv.writer(fh, lineterminator="\n")
            w.writerow(HEADER)
            for it in items:
                if it.boxes:
                    for b in it.boxes:
                        w.writerow([it.filename, it.label, *b])
                else:
                    w.writerow([it.filename, it.label, "", "", "", ""])
        os.replace(tmp, path)
    except BaseException:  # a full or read-only disk: the old file stays, no temporary one is left
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
    return path


def image_folder(root: str | os.PathLike) -> Path:
    """The folder the filenames of ``root/labels.csv`` are relative to (``root/images`` if present)."""
    root = Path(root)
    return root / "images" if (root / "images").is_dir() else root


def read_labelled_folder(root: str | os.PathLike) -> list[LabelledImage]:
    """The images a labelled folder's ``labels.csv`` lists, each checked to exist.

    Raises:
        FileNotFoundError: no label file, or a listed image missing (named).
        ValueError: a malformed or empty label file.
    """
    items = read_labels(root)
    if not items:
        raise ValueError(f"{root}/labels.csv lists no images")
    check_images(root, items)
    return items


def check_images(root: str | os.PathLike, items: Sequence[LabelledImage]) -> None:
    """Raise ``FileNotFoundError`` naming the first image of ``items`` missing from ``root``."""
    base = image_folder(root)
    for it in items:
        if not (base / it.filename).is_file():
            raise FileNotFoundError(f"{root}/labels.csv names {it.filename}, but {base / it.filename} "
                                    f"does not exist")


# ---------------------------------------------------------------------------------------------------
# DAGM 2007


@dataclass
class DagmImage:
    """One image of a DAGM 2007 split.

    Attributes:
        filename: the image file, relative to the split folder (``0001.PNG``).
        label: 1 = defective (the image has a label mask).
        label_file: the weak elliptical mask, relative to the split folder (``Label/0001_label.PNG``),
            or ``None``.
        mask_file: the true defect mask where the set has one (``Mask/0001_mask.PNG``, written by
            ``data_gen textile``; the real DAGM has none), else ``None``.
    """

    filename: str
    label: int
    label_file: str | None = None
    mask_file: str | None = None


def _dagm_split_folder(root: Path, split: str) -> Path:
    for cand in (root / split, root / split.lower()):
        if cand.is_dir():
            return cand
    raise FileNotFoundError(f"{root} has no {split}/ folder: a DAGM 2007 class folder holds Train/ and Test/ "
                            f"(e.g. Class1/Train/0001.PNG with Class1/Train/Label/0001_label.PNG)")


def read_dagm(class_dir: str | os.PathLike, split: str = "Train") -> list[DagmImage]:
    """Read one split of a DAGM 2007 class folder (the published layout).

    ``ClassN/Train/NNNN.PNG`` (and ``Test/``) hold the images; ``Label/NNNN_label.PNG`` beside them is the
    weak elliptical mask of each defective image, and ``Label/Labels.txt`` an index whose lines read
    ``index  flag  NNNN.PNG  0  NNNN_label.PNG|0``. A defective image is one with a mask; where the index
    exists it must agree.

    Args:
        class_dir: the class folder (``.../Class1``).
        split: ``"Train"`` or ``"Test"``.

    Returns:
        The images in file-name order.

    Raises:
        FileNotFoundError: a missing folder (``Label/`` included), or a mask named in the index that does
            not exist.
        LabelFileError: a malformed index line (too few or many fields, another encoding), or an index
            that disagrees with the masks (line named).
    """
    if split not in ("Train", "Test"):
        raise ValueError(f"split must be 'Train' or 'Test', not {split!r}")
    root = Path(class_dir)
    if not root.is_dir():
        raise FileNotFoundError(f"DAGM class folder {root} does not exist")
    folder = _dagm_split_folder(root, split)
    label_dir = folder / "Label"
    images = sorted(p.name for p in folder.iterdir() if p.is_file() and p.suffix.lower() == ".png")
    if not images:
        raise FileNotFoundError(f"{folder} holds no .PNG images")
    if not label_dir.is_dir():
        # without it every image would read as defect-free, and every figure would be wrong
        raise FileNotFoundError(f"{folder} has no Label/ folder: a DAGM 2007 split marks its defective images "
                                f"with Label/NNNN_label.PNG masks (and Label/Labels.txt)")
    masks = {p.name for p in label_dir.iterdir()}
    items = []
    for name in images:
        stem = Path(name).stem
        lab = next((m for m in (f"{stem}_label.PNG", f"{stem}_label.png") if m in masks), None)
        mask = folder / "Mask" / f"{stem}_mask.PNG"
        items.append(DagmImage(name, int(lab is not None), f"Label/{lab}" if lab else None,
                               f"Mask/{mask.name}" if mask.is_file() else None))
    index = label_dir / "Labels.txt"
    if index.is_file():
        by_name = {it.filename: it for it in items}
        try:
            text = index.read_bytes().decode("utf-8-sig")
        except UnicodeDecodeError as exc:
            raise LabelFileError(f"{index}: not a text file in UTF-8 or ASCII ({exc.reason} at byte "
                                 f"{exc.start})") from None
        for n, line in enumerate(text.splitlines(), 1):
            parts = line.split()
            if not parts or (n == 1 and len(parts) == 1):
                continue  # blank lines; the count line at the top
            where = f"{index}:{n}"
            if len(parts) != 5:
                raise LabelFileError(f"{where}: expected 5 fields (index, defect flag, image, 0, label image or "
                                     f"0), got {len(parts)}: {line.strip()!r}")
            if parts[1] not in ("0", "1"):
                raise LabelFileError(f"{where}: the defect flag must be 0 or 1, not {parts[1]!r}")
            it = by_name.get(parts[2])
            if it is None:
                raise FileNotFoundError(f"{where} names {parts[2]}, which is not in {folder}")
            if int(parts[1]) != it.label:
                what = "has no mask in Label/" if it.label == 0 else "has a mask but is flagged 0"
                raise LabelFileError(f"{where}: {parts[2]} is flagged {parts[1]} but {what}")
    return items


def is_dagm(path: str | os.PathLike) -> bool:
    """Whether ``path`` looks like a DAGM 2007 class folder (``Train/`` or ``Test/`` inside)."""
    path = Path(path)
    return (path / "Train").is_dir() or (path / "Test").is_dir()


# ---------------------------------------------------------------------------------------------------
# Class folders: a user's own images sorted into good/ and defect folders

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff")
GOOD = "good"
MASKS = "masks"
SPLIT_FOLDERS = ("train", "val", "test")
# what file browsers and operating systems leave in folders: never an image, never an error
IGNORED_FILES = frozenset({".DS_Store", "Thumbs.db", "desktop.ini"})


@dataclass
class ClassImage:
    """One image of a class folder.

    Attributes:
        path: the image file, relative to the folder's root (``scratch/017.png``, ``train/good/3.jpg``).
        label: 0 = defect-free (``good/``), 1 = defective (any other folder).
        kind: ``"good"`` or the name of its defect folder (its defect type).
        mask: its mask, relative to the root (``masks/...``), or ``None``: for evaluation only.
        boxes: its true boxes ``(x0, y0, x1, y1)`` where the layout gives boxes instead of masks (a labelled
            folder's ``labels.csv``): for evaluation only.
    """

    path: str
    label: int
    kind: str
    mask: str | None = None
    boxes: list[tuple[int, int, int, int]] = field(default_factory=list)


def is_class_folder(root: str | os.PathLike) -> bool:
    """Whether ``root`` is laid out as class folders: ``good/`` inside it, or inside its ``train/``."""
    root = Path(root)
    return (root / GOOD).is_dir() or (root / "train" / GOOD).is_dir()


def _files(folder: Path, root: Path, subfolders: bool = False) -> list[Path]:
    """The image files of one class (or masks) folder, sorted by name; anything else is an error (a
    subfolder too, unless ``subfolders``: ``masks/`` holds one per defect type)."""
    out = []
    for p in sorted(folder.iterdir()):
        if p.name in IGNORED_FILES or p.name.startswith("."):
            continue
        if p.is_dir() and subfolders:
            continue
        if p.is_dir():
            raise FileExistsError(f"{p} is a folder inside the class folder {folder.relative_to(root)}/: a class "
                                  f"folder holds image files only")
        if p.suffix.lower() not in IMAGE_SUFFIXES:
            raise ValueError(f"{p} is not an image file (sacnn-lab reads {', '.join(IMAGE_SUFFIXES)}): move it "
                             f"out of the class folder")
        out.append(p)
    return out


def _read_classes(base: Path, root: Path) -> list[ClassImage]:
    """The images of one layout level: ``base/good/``, ``base/<defect>/`` …, ``base/masks/``."""
    if not (base / GOOD).is_dir():
        raise FileNotFoundError(f"{base} has no {GOOD}/ folder: a class folder holds good/ (defect-free images) "
                                f"and one or more folders of defective images (defective/, or one per type)")
    kinds = sorted(p.name for p in base.iterdir() if p.is_dir() and p.name not in (GOOD, MASKS, *SPLIT_FOLDERS)
                   and not p.name.startswith("."))
    if not kinds:
        raise FileNotFoundError(f"{base} holds {GOOD}/ but no folder of defective images beside it (e.g. "
                                f"defective/, or scratch/, hole/ ... one per defect type)")
    items: list[ClassImage] = []
    for kind in (GOOD, *kinds):
        files = _files(base / kind, root)
        if not files:
            raise FileNotFoundError(f"{base / kind} holds no image")
        items += [ClassImage(p.relative_to(root).as_posix(), int(kind != GOOD), kind) for p in files]
    return items


def _attach_masks(items: list[ClassImage], masks_dir: Path, root: Path) -> None:
    """Pair the masks of ``masks_dir`` with their defective images: ``masks/[<type>/]NAME`` or
    ``masks/[<type>/]STEM_mask.png``. A mask that fits no defective image of ``items``, or two of them, is
    an error."""
    found = _mask_files(masks_dir, root)
    used: dict[Path, str] = {}
    for it in items:
        if not it.label:
            continue
        name, stem = Path(it.path).name, Path(it.path).stem
        for cand in (masks_dir / it.kind / name, masks_dir / it.kind / f"{stem}_mask.png",
                     masks_dir / name, masks_dir / f"{stem}_mask.png"):
            if cand in found:
                if cand in used:
                    raise FileExistsError(f"{cand} fits both {used[cand]} and {it.path}: put each defect type's "
                                          f"masks in masks/<its folder>/")
                it.mask = found[cand]
                used[cand] = it.path
                break
    _check_all_used(masks_dir, root, items)


def _mask_files(masks_dir: Path, root: Path) -> dict[Path, str]:
    found = {}
    for sub in [masks_dir, *sorted(p for p in masks_dir.iterdir() if p.is_dir())]:
        for p in _files(sub, root, subfolders=sub == masks_dir):
            found[p] = p.relative_to(root).as_posix()
    return found


def _check_all_used(masks_dir: Path, root: Path, items: list[ClassImage]) -> None:
    """A mask that fits no defective image is an error (a typo in its name would silently leave its image
    without truth)."""
    taken = {it.mask for it in items if it.mask}
    unused = sorted(str(p) for p, rel in _mask_files(masks_dir, root).items() if rel not in taken)
    if unused:
        raise FileNotFoundError(f"{unused[0]} is a mask of no defective image ({len(unused)} such mask(s)): a mask "
                                f"takes its image's name (or NAME_mask.png), in masks/ or masks/<defect folder>/")


def read_class_folder(root: str | os.PathLike) -> dict[str, list[ClassImage]]:
    """Read a class folder: ``ROOT/good/`` and one or more folders of defective images (``defective/``, or one
    per defect type, as MVTec AD and torchvision's ImageFolder arrange them), optionally ``ROOT/masks/``.

    Args:
        root: the folder. When it holds ``train/`` and ``test/`` (and optionally ``val/``), each of those is
            read as a class folder of its own: the user's splits.

    Returns:
        ``{"all": [...]}`` for one folder; ``{"train": [...], "test": [...] (, "val": [...])}`` for split
        folders. Images in file-name order, good first.

    Raises:
        FileNotFoundError: no ``good/``, no defect folder, an empty class folder, a mask of no image.
        ValueError / FileExistsError: a file that is not an image, a folder inside a class folder.
    """
    root = Path(root)
    if not root.is_dir():
        raise FileNotFoundError(f"data folder {root} does not exist")
    if (root / "train").is_dir() or (root / "test").is_dir():
        if not ((root / "train").is_dir() and (root / "test").is_dir()):
            raise FileNotFoundError(f"{root} holds only one of train/ and test/: split folders come as train/ and "
                                    f"test/ (and optionally val/), each with good/ and defect folders")
        splits = {s: _read_classes(root / s, root) for s in SPLIT_FOLDERS if (root / s).is_dir()}
        rest = []  # each split's own masks/, or failing that the root's (paired over those splits at once)
        for s, items in splits.items():
            if (root / s / MASKS).is_dir():
                _attach_masks(items, root / s / MASKS, root)
            else:
                rest += items
        if (root / MASKS).is_dir():
            _attach_masks(rest, root / MASKS, root)
        return splits
    items = _read_classes(root, root)
    if (root / MASKS).is_dir():
        _attach_masks(items, root / MASKS, root)
    return {"all": items}


LAYOUTS = ("class", "dagm", "labelled")


def folder_layout(path: str | os.PathLike) -> str | None:
    """Which of sacnn-lab's layouts a folder has: ``"class"`` (``good/`` inside it or its ``train/``),
    ``"dagm"`` (``Train/`` or ``Test/``), ``"labelled"`` (``labels.csv``), or ``None``. A class folder is
    recognised first: on a case-insensitive disk its ``train/`` also reads as DAGM's ``Train/``."""
    path = Path(path)
    if is_class_folder(path):
        return "class"
    if is_dagm(path):
        return "dagm"
    if (path / "labels.csv").is_file():
        return "labelled"
    return None


def read_folder_layout(root: str | os.PathLike) -> tuple[str, dict[str, list[ClassImage]]]:
    """Read a folder of image-level labelled images in any of the layouts sacnn-lab knows, as class-folder
    images (:class:`ClassImage`), so that one path trains and evaluates on all of them:

    - ``"class"``: ``good/`` beside the defect folders (:func:`read_class_folder`);
    - ``"dagm"``: a DAGM 2007 class folder (:func:`read_dagm`): its ``Train/`` and ``Test/`` are the
      splits (``train``, ``test``), the defective images are of kind ``"defective"``, each with its true
      mask where the set has one (``Mask/``, written by ``data_gen textile``), else DAGM's label ellipse;
    - ``"labelled"``: ``labels.csv`` + ``images/`` (:func:`read_labels`): one split, with its boxes.

    Returns:
        ``(layout, splits)``: ``splits`` as :func:`read_class_folder` gives them (``{"all": [...]}`` or
        ``{"train": [...], "test": [...]}``), paths relative to ``root``.

    Raises:
        FileNotFoundError: no such folder, or none of the layouts (what each needs is said); the errors of
            the layout's own reader (a bad file named).
    """
    root = Path(root)
    if not root.is_dir():
        raise FileNotFoundError(f"data folder {root} does not exist")
    layout = folder_layout(root)
    if layout == "class":
        return "class", read_class_folder(root)
    if layout == "dagm":
        splits = {}
        for split in ("Train", "Test"):
            try:
                folder = _dagm_split_folder(root, split)
            except FileNotFoundError:
                continue
            rel = folder.relative_to(root).as_posix()
            splits[split.lower()] = [
                ClassImage(f"{rel}/{it.filename}", it.label, "defective" if it.label else GOOD,
                           mask=f"{rel}/{it.mask_file or it.label_file}" if it.label else None)
                for it in read_dagm(root, split)]
        return "dagm", splits if len(splits) == 2 else {"all": next(iter(splits.values()))}
    if layout == "labelled":
        items = read_labelled_folder(root)
        rel = image_folder(root).relative_to(root).as_posix()
        prefix = "" if rel == "." else f"{rel}/"
        return "labelled", {"all": [ClassImage(f"{prefix}{it.filename}", int(it.label),
                                               "defective" if it.label else GOOD, boxes=list(it.boxes))
                                    for it in items]}
    raise FileNotFoundError(f"{root} is none of the folders sacnn-lab reads: good/ beside folders of defective "
                            f"images, a DAGM 2007 class folder (Train/ and Test/), or labels.csv with images/")
