"""The character detection set of the paper: 136×136 gray images, with or without a character.

A *defective* image holds one or more characters (the "defect"); a *defect-free* image holds none. Noise
appears in both classes, so that neither lines nor a huge cropped character give the label away: random
line segments, and one distractor character at a very different size (much larger and partly cropped, or
tiny). Every sample is a pure function of ``(seed, index)`` (see :mod:`data_gen.random`), and comes with
its label, the box of every true character and, on request, a pixel mask. Distractors are never part of
the truth.

Speed: glyphs are rendered once (:class:`~data_gen.glyphs.GlyphAtlas`); a batch is composed as a uint8
coverage canvas (one ``np.maximum`` per glyph), coloured in one vectorised pass, and its lines are
scattered with one fancy-indexed assignment.
"""

from __future__ import annotations

import hashlib
import math
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field, replace
from typing import Sequence

import numpy as np

from .fonts import DEFAULT_ALPHABET, FontFace, discover_fonts, split_fonts
from .glyphs import GlyphAtlas
from .random import Draws, ratio_labels

PLACEMENTS = ("anywhere", "centre")
_CANDIDATES = 8  # placement attempts per extra defect before it is dropped (no overlaps)


def _check_range(name: str, r: Sequence[float], lo: float, hi: float) -> None:
    if len(r) != 2 or not lo <= r[0] <= r[1] <= hi:
        raise ValueError(f"{name} must be a (low, high) pair with {lo} <= low <= high <= {hi}, not {r}")


@dataclass
class CharacterConfig:
    """Every knob of the character generator, with its default and its allowed range.

    Attributes:
        image_size: side of the square image in px (32–1024; the paper: 136).
        alphabet: characters drawn as defects and distractors ([A-Za-z0-9]).
        char_size: font size range of a true character in px, inclusive (8–image_size/2; ~32 in the
            paper, which makes capitals about 22–26 px tall).
        placement: ``"anywhere"`` (the paper's words: any position fully inside the image) or
            ``"centre"`` (the authors' published generator: the centre offset by ``centre_offset``).
        centre_offset: offset range in px of the ``"centre"`` placement, inclusive (authors: −12…+11).
        max_defects: most character strings in one defective image (1–8).
        multi_prob: probability that a defective image holds more than one string (0–1); their
            number is then uniform in 2…``max_defects``. Strings never overlap.
        string_length: characters per string, side by side on one baseline (1–4; the authors' training
            generator: 2). Each character gets its own box.
        lines: number of random line segments per image, inclusive range (0–16; authors: 3).
        line_width: line width range in px, inclusive (1–2).
        distractor_prob: probability of one distractor character per image (0–1).
        distractor_scales: the distractor's size, as multiples of the mean character size, chosen
            uniformly from this tuple (each 0.05–8). Above 1 it is centred anywhere in the image, hence
            partly cropped; at or below 1 it lies fully inside.
        distractors_in: ``"both"`` classes (default: noise carries no label information) or only in
            ``"negatives"`` (the authors' generator).
        background: background gray range, inclusive (0–255).
        ink: ink gray range of characters, inclusive (0–255). One ink per image.
        min_contrast: least |ink − background| and |line − background| (0–127).
        line_gray: ``"random"`` (per image, with ``min_contrast``), ``"per_seed"`` (one gray for the
            whole split, as the authors' generator) or a fixed gray level 0–255.
        ratio: defect-free images per defective one (0.1–100; 1 = balanced, 3 = the authors' training,
            10 = the imbalance study). Integer ratios are exact in every block of ``ratio + 1``
            consecutive indices.
        font_split: ``"all"``, ``"train"`` or ``"test"`` faces (see :func:`data_gen.fonts.split_fonts`).
        font_test_fraction: share of faces held out for the ``"test"`` font split.
        font_dirs: extra folders of font files.
        system_fonts: also draw from the operating system's faces. Off by default: those differ from
            machine to machine (a browser's install adds some), and with them the data drawn.
    """

    image_size: int = 136
    alphabet: str = DEFAULT_ALPHABET
    char_size: tuple[int, int] = (30, 34)
    placement: str = "anywhere"
    centre_offset: tuple[int, int] = (-12, 11)
    max_defects: int = 3
    multi_prob: float = 0.2
    string_length: int = 1
    lines: tuple[int, int] = (1, 4)
    line_width: tuple[int, int] = (1, 2)
    distractor_prob: float = 0.6
    distractor_scales: tuple[float, ...] = (0.25, 3.0, 4.5, 6.0)
    distractors_in: str = "both"
    background: tuple[int, int] = (0, 255)
    ink: tuple[int, int] = (0, 255)
    min_contrast: int = 60
    line_gray: int | str = "random"
    ratio: float = 1.0
    font_split: str = "all"
    font_test_fraction: float = 0.2
    font_dirs: tuple[str, ...] = field(default_factory=tuple)
    system_fonts: bool = False

    def __post_init__(self) -> None:
        # tuples survive a JSON round trip as lists
        for name in ("char_size", "centre_offset", "lines", "line_width", "distractor_scales",
                     "background", "ink", "font_dirs"):
            setattr(self, name, tuple(getattr(self, name)))
        if not 32 <= self.image_size <= 1024:
            raise ValueError(f"image_size must lie in 32–1024, not {self.image_size}")
        if not self.alphabet:
            raise ValueError("alphabet must hold at least one character")
        _check_range("char_size", self.char_size, 8, min(128, self.image_size // 2))
        if self.placement not in PLACEMENTS:
            raise ValueError(f"placement must be one of {PLACEMENTS}, not {self.placement!r}")
        _check_range("centre_offset", self.centre_offset, -self.image_size // 4, self.image_size // 4)
        if not 1 <= self.max_defects <= 8:
            raise ValueError(f"max_defects must lie in 1–8, not {self.max_defects}")
        if not 1 <= self.string_length <= 4:
            raise ValueError(f"string_length must lie in 1–4, not {self.string_length}")
        for name in ("multi_prob", "distractor_prob"):
            if not 0.0 <= getattr(self, name) <= 1.0:
                raise ValueError(f"{name} must lie in 0–1, not {getattr(self, name)}")
        _check_range("lines", self.lines, 0, 16)
        _check_range("line_width", self.line_width, 1, 2)
        if not self.distractor_scales or not all(0.05 <= s <= 8 for s in self.distractor_scales):
            raise ValueError(f"distractor_scales must be a non-empty tuple of values in 0.05–8, "
                             f"not {self.distractor_scales}")
        if self.distractors_in not in ("both", "negatives"):
            raise ValueError(f"distractors_in must be 'both' or 'negatives', not {self.distractors_in!r}")
        _check_range("background", self.background, 0, 255)
        _check_range("ink", self.ink, 0, 255)
        if not 0 <= self.min_contrast <= 127:
            raise ValueError(f"min_contrast must lie in 0–127, not {self.min_contrast}")
        if not (self.line_gray in ("random", "per_seed")
                or (isinstance(self.line_gray, int) and 0 <= self.line_gray <= 255)):
            raise ValueError(f"line_gray must be 'random', 'per_seed' or a gray 0–255, not {self.line_gray!r}")
        if not 0.1 <= self.ratio <= 100:
            raise ValueError(f"ratio (defect-free per defective) must lie in 0.1–100, not {self.ratio}")
        if self.font_split not in ("all", "train", "test"):
            raise ValueError(f"font_split must be 'all', 'train' or 'test', not {self.font_split!r}")

    @classmethod
    def authors(cls, train: bool = True, **changes) -> "CharacterConfig":
        """The authors' published generator, for fidelity (see SPEC.md).

        White background, ink gray at most 230, three lines in one gray per split, a string centred with
        an offset of −12…+11 px, font size 30–32; defect-free images hold nothing or one character at
        0.1×, 4× or 6× the size, half the time each; defective : defect-free = 1:3 for training with
        strings of 2 adjacent characters, 1:1 for testing with single characters.
        """
        base = cls(char_size=(30, 32), placement="centre", centre_offset=(-12, 11), max_defects=1,
                   multi_prob=0.0, string_length=2 if train else 1, lines=(3, 3), line_width=(1, 1),
                   distractor_prob=0.5, distractor_scales=(0.1, 4.0, 6.0), distractors_in="negatives",
                   background=(255, 255), ink=(0, 230), min_contrast=25, line_gray="per_seed",
                   ratio=3.0 if train else 1.0)
        return replace(base, **changes)

    def to_dict(self) -> dict:
        """Plain JSON-ready dictionary (round-trips through ``CharacterConfig(**d)``)."""
        return asdict(self)


@dataclass
class CharacterBatch:
    """A batch of generated samples.

    Attributes:
        images: ``(B, S, S)`` uint8 gray images.
        labels: ``(B,)`` uint8, 1 = defective.
        boxes: ``(B, K, 4)`` int32 ``(x0, y0, x1, y1)`` of each true character, x1/y1 exclusive; unused
            rows are -1. ``K = max_defects * string_length``.
        masks: ``(B, S, S)`` bool truth masks (pixels of true characters at ≥ 50 % coverage), or
            ``None`` when not requested.
        indices: ``(B,)`` int64 sample indices.
        seed: the split's seed.
    """

    images: np.ndarray
    labels: np.ndarray
    boxes: np.ndarray
    masks: np.ndarray | None
    indices: np.ndarray
    seed: int

    def __len__(self) -> int:
        return int(self.labels.shape[0])

    def boxes_of(self, i: int) -> list[tuple[int, int, int, int]]:
        """The true boxes of sample ``i`` as a list of ``(x0, y0, x1, y1)``."""
        return [tuple(int(v) for v in b) for b in self.boxes[i] if b[0] >= 0]


def _contrasting_gray(u: np.ndarray, bg: np.ndarray, lo: int, hi: int, c: int) -> np.ndarray:
    """Grays uniform over [lo, hi] minus (bg - c, bg + c); the farthest end where that set is empty."""
    a_hi = np.minimum(hi, bg - c)
    la = np.clip(a_hi - lo + 1, 0, None)
    b_lo = np.maximum(lo, bg + c)
    lb = np.clip(hi - b_lo + 1, 0, None)
    t = np.floor(u * (la + lb)).astype(np.int64)
    gray = np.where(t < la, lo + t, b_lo + t - la)
    fallback = np.where(bg - lo >= hi - bg, lo, hi)
    return np.where(la + lb > 0, gray, fallback).astype(np.int64)


class CharacterGenerator:
    """Generates the character set from a :class:`CharacterConfig`.

    Args:
        config: the knobs; defaults reproduce the paper's description.
        faces: the font faces to draw from; default: :func:`discover_fonts` filtered by
            ``config.font_split``. The same faces give byte-identical data on every machine;
            ``fingerprint`` identifies them.
        threads: threads used for the vectorised colouring pass (numpy releases the GIL there).

    Example:
        >>> gen = CharacterGenerator(CharacterConfig(ratio=1))
        >>> batch = gen.generate(seed=1, indices=range(64))
        >>> batch.images.shape, batch.labels.mean()
        ((64, 136, 136), 0.5)
    """

    def __init__(self, config: CharacterConfig | None = None, faces: Sequence[FontFace] | None = None,
                 threads: int = 2):
        self.config = config or CharacterConfig()
        cfg = self.config
        if faces is None:
            faces = split_fonts(discover_fonts(cfg.font_dirs, cfg.alphabet, system=cfg.system_fonts),
                                cfg.font_split, cfg.font_test_fraction)
        self.faces = list(faces)
        self.atlas = GlyphAtlas(self.faces)
        self.threads = max(1, int(threads))
        self._pool: ThreadPoolExecutor | None = None

    @property
    def fingerprint(self) -> str:
        """Short hash of the face names: equal fingerprints and seeds give byte-identical data."""
        names = "\n".join(f.name for f in self.faces)
        return hashlib.sha256(names.encode()).hexdigest()[:12]

    def warm_up(self, progress: bool = False) -> int:
        """Render every glyph this configuration can draw (all faces, characters and sizes), so that
        later batches never wait on PIL. Optional: glyphs are otherwise rendered on first use.

        Returns:
            The number of glyphs in the atlas.
        """
        from tqdm.auto import tqdm

        cfg = self.config
        mean_size = 0.5 * (cfg.char_size[0] + cfg.char_size[1])
        sizes = sorted(set(range(cfg.char_size[0], cfg.char_size[1] + 1))
                       | {max(1, round(s * mean_size)) for s in cfg.distractor_scales})
        for face in tqdm(range(len(self.faces)), desc="rendering glyphs", unit="face", disable=not progress):
            for ch in cfg.alphabet:
                for size in sizes:
                    self.atlas.glyph(face, ch, size)
        return len(self.atlas)

    def __getstate__(self) -> dict:  # picklable for DataLoader workers: the pool stays behind
        state = self.__dict__.copy()
        state["_pool"] = None
        return state

    # ----------------------------------------------------------------------------------------------
    def labels(self, seed: int, indices: Sequence[int] | np.ndarray) -> np.ndarray:
        """``(B,)`` uint8 labels of the given indices, without drawing any image."""
        return ratio_labels(seed, np.asarray(indices, dtype=np.int64), self.config.ratio)

    def sample(self, seed: int, index: int, masks: bool = True) -> CharacterBatch:
        """One sample, as a batch of one."""
        return self.generate(seed, [index], masks=masks)

    def generate(self, seed: int, indices: Sequence[int] | np.ndarray, masks: bool = False) -> CharacterBatch:
        """Generate the samples ``indices`` of split ``seed``.

        Args:
            seed: the split's seed; separate seeds give independent splits.
            indices: ``(B,)`` non-negative sample indices, in any order.
            masks: also compute the ``(B, S, S)`` truth masks.

        Returns:
            A :class:`CharacterBatch`; sample ``i`` is identical whatever batch it is generated in.
        """
        idx = np.asarray(indices, dtype=np.int64).reshape(-1)
        if idx.size and idx.min() < 0:
            raise ValueError("sample indices must be non-negative")
        cfg = self.config
        S, B = cfg.image_size, idx.size
        L, J = cfg.string_length, cfg.max_defects
        d = Draws(seed, idx)
        labels = self.labels(seed, idx)

        # ---- per-image scalars --------------------------------------------------------------------
        bg = d.integers("background", *cfg.background)
        ink = _contrasting_gray(d.uniform("ink"), bg, *cfg.ink, cfg.min_contrast)
        if cfg.line_gray == "random":
            line_gray = _contrasting_gray(d.uniform("line_gray"), bg, 0, 255, cfg.min_contrast)
        elif cfg.line_gray == "per_seed":
            line_gray = np.full(B, Draws(seed, np.zeros(1)).integers("line_gray_seed", 0, 255)[0])
        else:
            line_gray = np.full(B, int(cfg.line_gray))
        multi = d.uniform("multi") < cfg.multi_prob
        n_def = np.where(multi, d.integers("n_defects", min(2, J), J), 1) * labels
        n_chars = len(cfg.alphabet)
        n_faces = len(self.faces)
        # true characters: (B, J*L) faces and characters, (B, J) sizes, (B, J, T) candidate positions
        face = np.stack([d.integers("face", 0, n_faces - 1, k) for k in range(J * L)], 1).tolist()
        char = np.stack([d.integers("char", 0, n_chars - 1, k) for k in range(J * L)], 1).tolist()
        size = np.stack([d.integers("size", *cfg.char_size, k) for k in range(J)], 1).tolist()
        gap = np.stack([d.integers("gap", 1, 3, k) for k in range(J * L)], 1).tolist()
        T = _CANDIDATES
        px = np.stack([d.uniform("pos_x", k) for k in range(J * T)], 1).tolist()
        py = np.stack([d.uniform("pos_y", k) for k in range(J * T)], 1).tolist()
        off_x = d.integers("centre_dx", *cfg.centre_offset).tolist()
        off_y = d.integers("centre_dy", *cfg.centre_offset).tolist()
        # the distractor
        allowed = labels == 0 if cfg.distractors_in == "negatives" else np.ones(B, bool)
        has_dis = ((d.uniform("distractor") < cfg.distractor_prob) & allowed).tolist()
        mean_size = 0.5 * (cfg.char_size[0] + cfg.char_size[1])
        scales = np.asarray(cfg.distractor_scales)[d.integers("dis_scale", 0, len(cfg.distractor_scales) - 1)]
        dis_size = np.maximum(1, np.round(scales * mean_size)).astype(np.int64).tolist()
        dis_face = d.integers("dis_face", 0, n_faces - 1).tolist()
        dis_char = d.integers("dis_char", 0, n_chars - 1).tolist()
        dis_x, dis_y = d.uniform("dis_x").tolist(), d.uniform("dis_y").tolist()

        # ink coverage is composed in the output array itself, then coloured in place
        cov = np.zeros((B, S, S), np.uint8)
        mask = np.zeros((B, S, S), bool) if masks else None
        box_rows: list[tuple[int, int, int, int, int, int]] = []  # (b, slot, x0, y0, x1, y1)
        cached, render = self.atlas.cache, self.atlas.glyph
        chars = list(cfg.alphabet)
        centre = cfg.placement == "centre"
        n_def_l = n_def.tolist()
        for b in range(B):
            canvas = cov[b]
            dirty = False  # does the canvas hold ink yet? (skips the free-spot test when it does not)
            # the distractor first: true strings are then placed where it left no ink
            if has_dis[b]:
                key = (dis_face[b], chars[dis_char[b]], dis_size[b])
                g = cached.get(key) or render(*key)
                if g.height:
                    if dis_size[b] > mean_size:  # centred anywhere: partly cropped
                        gx = int(dis_x[b] * S) - g.width // 2
                        gy = int(dis_y[b] * S) - g.height // 2
                    else:
                        gx = int(dis_x[b] * max(1, S - g.width + 1))
                        gy = int(dis_y[b] * max(1, S - g.height + 1))
                    x0, y0 = max(gx, 0), max(gy, 0)
                    x1, y1 = min(gx + g.width, S), min(gy + g.height, S)
                    if x1 > x0 and y1 > y0:
                        region = canvas[y0:y1, x0:x1]
                        np.maximum(region, g.alpha[y0 - gy:y1 - gy, x0 - gx:x1 - gx], out=region)
                        dirty = True
            for j in range(n_def_l[b]):
                # lay out one string of L characters on a shared baseline
                if L == 1:
                    key = (face[b][j], chars[char[b][j]], size[b][j])
                    g = cached.get(key) or render(*key)
                    gs, xs, top, width, height = (g,), (0,), g.top, g.width, g.height
                else:
                    gs, xs, x = [], [], 0
                    for m in range(j * L, j * L + L):
                        key = (face[b][m], chars[char[b][m]], size[b][j])
                        g = cached.get(key) or render(*key)
                        gs.append(g)
                        xs.append(x)
                        x += g.width + gap[b][m]
                    width = x - gap[b][j * L + L - 1]
                    top = min(g.top for g in gs)
                    height = max(g.top + g.height for g in gs) - top
                if width > S or height > S:
                    raise ValueError(f"a string of {L} characters at size {size[b][j]} does not fit a "
                                     f"{S}×{S} image: lower char_size or string_length")
                spot = None
                for t in range(T):
                    if centre and j == 0:
                        x0 = min(max(0, (S - width) // 2 + off_x[b]), S - width)
                        y0 = min(max(0, (S - height) // 2 + off_y[b]), S - height)
                    else:  # anywhere, fully inside (also the extra strings of a "centre" image)
                        x0 = int(px[b][j * T + t] * (S - width + 1))
                        y0 = int(py[b][j * T + t] * (S - height + 1))
                    # free: no ink (distractor or earlier string) within 2 px of the string
                    if not dirty or not canvas[max(0, y0 - 2):y0 + height + 2,
                                               max(0, x0 - 2):x0 + width + 2].any():
                        spot = (x0, y0)
                        break
                if spot is None and j == 0:  # the first string must show: drop the distractor instead
                    canvas[:] = 0
                    spot = (x0, y0)
                if spot is None:
                    continue  # no room for another string without overlap: the image holds fewer
                x0, y0 = spot
                dirty = True
                for m, g in enumerate(gs):
                    gx, gy = x0 + xs[m], y0 + g.top - top
                    gx1, gy1 = gx + g.width, gy + g.height
                    region = canvas[gy:gy1, gx:gx1]
                    np.maximum(region, g.alpha, out=region)
                    box_rows.append((b, j * L + m, gx, gy, gx1, gy1))
                    if mask is not None:
                        mask[b, gy:gy1, gx:gx1] |= g.alpha >= 128
        boxes = np.full((B, J * L, 4), -1, np.int32)
        if box_rows:
            rows = np.asarray(box_rows, dtype=np.int32)
            boxes[rows[:, 0], rows[:, 1]] = rows[:, 2:]

        images = self._colorize(cov, bg, ink)
        self._draw_lines(d, images, line_gray)
        return CharacterBatch(images, labels, boxes, mask, idx, int(seed))

    # ----------------------------------------------------------------------------------------------
    def _colorize(self, cov: np.ndarray, bg: np.ndarray, ink: np.ndarray) -> np.ndarray:
        """Turn coverage into gray, in place: bg + (ink - bg) * cov / 255, rounded; chunks over threads."""
        scale = ((ink - bg) / 255.0).astype(np.float32)
        offset = (bg + 0.5).astype(np.float32)
        chunk = 64  # images per task: large enough for threads to pay, small enough for the cache

        def work(start: int) -> None:
            sl = slice(start, start + chunk)
            tmp = cov[sl].astype(np.float32)
            tmp *= scale[sl, None, None]
            tmp += offset[sl, None, None]
            np.copyto(cov[sl], tmp, casting="unsafe")  # truncating x + 0.5 rounds (x >= 0)

        starts = range(0, cov.shape[0], chunk)
        if self.threads > 1 and cov.shape[0] > chunk:
            if self._pool is None:
                self._pool = ThreadPoolExecutor(self.threads)
            list(self._pool.map(work, starts))
        else:
            for s in starts:
                work(s)
        return cov

    def _draw_lines(self, d: Draws, images: np.ndarray, gray: np.ndarray) -> None:
        """Scatter random line segments (one gray per image) into ``images`` in place."""
        cfg = self.config
        B, S = images.shape[0], images.shape[1]
        n_max = cfg.lines[1]
        if n_max == 0 or B == 0:
            return
        n = d.integers("n_lines", *cfg.lines)
        valid = np.arange(n_max)[None, :] < n[:, None]  # (B, n_max)
        owner = np.broadcast_to(np.arange(B, dtype=np.int32)[:, None], valid.shape)[valid]  # (N,)
        # endpoints within [0, S-2], so that the second pixel of a 2 px line stays inside the image
        x0, y0, x1, y1 = (np.stack([d.uniform(f"line_{c}", k) for k in range(n_max)], 1)[valid]
                          .astype(np.float32) * np.float32(S - 2) for c in ("x0", "y0", "x1", "y1"))
        t = np.linspace(0.0, 1.0, S, dtype=np.float32)  # S points: no gaps, lines are < S px long
        ys = np.rint(y0[:, None] + t * (y1 - y0)[:, None])
        ys *= S
        ys += np.rint(x0[:, None] + t * (x1 - x0)[:, None])
        itype = np.int32 if B * S * S < 2**31 else np.int64
        flat = ys.astype(itype)  # (N, S) pixel index inside each image, then in the batch
        flat += (owner.astype(itype) * (S * S))[:, None]
        width = np.stack([d.integers("line_width", *cfg.line_width, k) for k in range(n_max)], 1)[valid]
        images = images.reshape(-1)
        colour = gray.astype(np.uint8)[owner][:, None]
        images[flat] = colour
        thick = width > 1
        if thick.any():  # the second pixel row/column of a 2 px line, beside the first
            steep = np.abs(y1 - y0)[thick] > np.abs(x1 - x0)[thick]
            images[flat[thick] + np.where(steep, 1, S)[:, None]] = colour[thick]

def generate(config: CharacterConfig | None = None, seed: int = 0, n: int = 64, start: int = 0,
             masks: bool = False) -> CharacterBatch:
    """Convenience: the samples ``start … start+n-1`` of split ``seed`` with a fresh generator."""
    return CharacterGenerator(config).generate(seed, np.arange(start, start + n), masks=masks)


def ratio_of(labels: np.ndarray) -> float:
    """Measured defect-free : defective ratio of a label array (``inf`` without defective images)."""
    pos = int(np.count_nonzero(labels))
    return math.inf if pos == 0 else (len(labels) - pos) / pos
