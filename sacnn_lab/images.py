"""Reading image files, without torch: any common format as gray (or RGB) uint8, and an image's size from its
header. The training data (:mod:`sacnn_lab.data`), ``predict`` and the ONNX runtime (:mod:`sacnn_lab.runtime`)
all read images here, so that they see the same pixels.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

__all__ = ["read_image", "read_gray", "image_size_of"]


def read_gray(path: str | os.PathLike, size: tuple[int, int] | None = None) -> np.ndarray:
    """Read one image as ``(H, W)`` uint8 gray (any common format, see :func:`read_image`), which must
    have ``size`` when given.

    Raises:
        FileNotFoundError: no such file.
        ValueError: unreadable, or of the wrong size; the message names the file.
    """
    return read_image(path, size, resize=False)


def image_size_of(path: str | os.PathLike) -> tuple[int, int]:
    """``(H, W)`` of an image file, read from its header only.

    Raises:
        ValueError: not a readable image (file named).
    """
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(path) as im:
            return im.size[1], im.size[0]
    except (UnidentifiedImageError, OSError, Image.DecompressionBombError) as exc:
        raise ValueError(f"{path} is not a readable image ({exc})") from exc


def read_image(path: str | os.PathLike, size: tuple[int, int] | None = None, resize: bool = True,
               mask: bool = False, color: bool = False) -> np.ndarray:
    """Read a photograph of any common format as ``(H, W)`` uint8 gray: PNG, JPEG, BMP, TIFF; 8- or 16-bit
    (16-bit scaled to 8); gray, RGB, RGBA or palette (turned into gray by luminance), or with ``color`` as
    ``(H, W, 3)`` RGB (a gray image's three channels equal, an alpha channel dropped).

    Args:
        path: the image file.
        size: the ``(H, W)`` it must have (``None``: its own).
        resize: bring an image of another size to ``size`` (bilinear; a mask: nearest); ``False``: such an
            image is an error.
        mask: read a mask (any non-zero pixel is defect), returned as 0/255.
        color: keep three channels (not for masks).

    Raises:
        FileNotFoundError: no such file.
        ValueError: unreadable, a mode with no gray reading (floating point), or of another size without
            ``resize``; the message names the file.
    """
    from PIL import Image, UnidentifiedImageError

    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"image {path} does not exist")
    try:
        with Image.open(path) as im:
            im.load()
            if im.mode in ("I;16", "I;16B", "I;16L", "I;16N", "I"):
                a = np.asarray(im, dtype=np.float64)
                top = 65535.0 if im.mode.startswith("I;16") or a.max(initial=0) > 255 else 255.0
                im = Image.fromarray(np.clip(np.rint(a * (255.0 / top)), 0, 255).astype(np.uint8))
            elif im.mode == "F":
                raise ValueError(f"{path} holds floating-point pixels (mode F): save it as an 8- or 16-bit image")
            if color and not mask:
                im = im.convert("RGB")
            elif im.mode != "L":
                im = im.convert("L")
            if size is not None and (im.size[1], im.size[0]) != tuple(size):
                if not resize:
                    raise ValueError(f"{path} is {im.size[0]}×{im.size[1]} px, expected {size[1]}×{size[0]}")
                im = im.resize((size[1], size[0]), Image.NEAREST if mask else Image.BILINEAR)
            a = np.asarray(im, dtype=np.uint8).copy()
    except (UnidentifiedImageError, OSError, Image.DecompressionBombError) as exc:
        raise ValueError(f"{path} is not a readable image ({exc})") from exc
    return np.where(a > 0, 255, 0).astype(np.uint8) if mask else a
