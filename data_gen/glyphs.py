"""The glyph atlas: every (face, character, size) is rendered once with PIL and kept as an array.

The composer then only copies these small arrays into whole batches with numpy, which is what makes the
generator fast: PIL's text layout runs once per glyph, never once per image.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Sequence

import numpy as np
from PIL import ImageFont

from .fonts import FontFace


@dataclass(frozen=True)
class Glyph:
    """One rendered glyph, cropped to its ink.

    Attributes:
        alpha: ``(h, w)`` uint8 coverage, 255 = full ink; ``(0, 0)`` for a glyph that renders nothing.
        top: row of the first ink row relative to the baseline (negative above it), so that
            characters of one string share a baseline.
    """

    alpha: np.ndarray
    top: int
    height: int = field(init=False)
    width: int = field(init=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "height", int(self.alpha.shape[0]))
        object.__setattr__(self, "width", int(self.alpha.shape[1]))


class GlyphAtlas:
    """Lazily rendered cache of glyphs for a fixed list of faces.

    Args:
        faces: the faces glyphs are drawn from; ``face`` indices below refer to this list.

    The cache lives in the process, so each DataLoader worker fills its own; a glyph is a pure function
    of (face, character, size), so this never changes what is generated.
    """

    def __init__(self, faces: Sequence[FontFace]):
        if not faces:
            raise ValueError("GlyphAtlas needs at least one font face")
        self.faces = list(faces)
        self._fonts: dict[tuple[int, int], ImageFont.FreeTypeFont] = {}
        self.cache: dict[tuple[int, str, int], Glyph] = {}
        """Rendered glyphs by (face, character, size); read directly by the composer's hot loop."""

    def __len__(self) -> int:
        return len(self.cache)

    def font(self, face: int, size: int) -> ImageFont.FreeTypeFont:
        """The PIL font object of ``faces[face]`` at ``size`` pixels (cached)."""
        key = (face, size)
        font = self._fonts.get(key)
        if font is None:
            f = self.faces[face]
            font = ImageFont.truetype(f.path, size=size, index=f.index)
            self._fonts[key] = font
        return font

    def glyph(self, face: int, char: str, size: int) -> Glyph:
        """The glyph of ``char`` in ``faces[face]`` at font size ``size`` px, rendered on first use."""
        key = (face, char, size)
        g = self.cache.get(key)
        if g is None:
            g = self._render(face, char, size)
            self.cache[key] = g
        return g

    def _render(self, face: int, char: str, size: int) -> Glyph:
        font = self.font(face, max(1, size))
        im, (_, top) = font.getmask2(char, mode="L", anchor="ls")
        w, h = im.size
        if w == 0 or h == 0:
            return Glyph(np.zeros((0, 0), np.uint8), 0)
        a = np.frombuffer(bytes(im), np.uint8).reshape(h, w)
        rows = np.flatnonzero(a.any(axis=1))
        if rows.size == 0:
            return Glyph(np.zeros((0, 0), np.uint8), 0)
        cols = np.flatnonzero(a.any(axis=0))
        alpha = np.ascontiguousarray(a[rows[0]:rows[-1] + 1, cols[0]:cols[-1] + 1])
        return Glyph(alpha, int(rows[0]) + top)
