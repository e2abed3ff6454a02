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

import csv
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable, Sequence

HEADER = ["filename", "label", "x0", "y0", "x1", "y1"]


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
        LabelFileError: a malformed header or row; the message names the file and line number.
    """
    path = Path(path)
    if path.is_dir():
        path = path / "labels.csv"
    if not path.is_file():
        raise FileNotFoundError(f"label file {path} does not exist")
    images: dict[str, LabelledImage] = {}
    with open(path, newline="", encoding="utf-8") as fh:
        reader = csv.reader(fh)
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
    tmp = path.with_name(path.name + ".tmp")
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
    return path


def image_folder(root: str | os.PathLike) -> Path:
    """The folder the filenames of ``root/labels.csv`` are relative to (``root/images`` if present)."""
    root = Path(root)
    return root / "images" if (root / "images").is_dir() else root


def check_images(root: str | os.PathLike, items: Sequence[LabelledImage]) -> None:
    """Raise ``FileNotFoundError`` naming the first image of ``items`` missing from ``root``."""
    base = image_folder(root)
    for it in items:
        if not (base / it.filename).is_file():
            raise FileNotFoundError(f"{root}/labels.csv names {it.filename}, but {base / it.filename} "
                                    f"does not exist")
