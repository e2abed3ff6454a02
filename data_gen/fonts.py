"""Font discovery for the character generator.

The paper draws each character from one of "about 40 font faces" installed in the operating system. A
fresh Linux machine has one family (DejaVu), and what else the operating system holds changes with what is
installed (a browser brings fonts), so the default faces are the ones this project installs itself: the
same data on every machine. Faces are gathered from:

1. font packages installed from PyPI with this project (``FONT_PACKAGES``: hand-drawn, display, serif
   and sans faces),
2. the faces that ship with matplotlib,
3. only when asked (``system=True``, ``CharacterConfig.system_fonts``), the operating system's font folders,
4. any folder the user names (argument ``extra_dirs`` or the ``SACNN_FONT_DIRS`` environment variable,
   ``os.pathsep``-separated).

:func:`face_records` names the faces of a set with a hash of each file; a run folder keeps them
(``faces.json``), so that evaluation on a machine with other faces can say so.

Every candidate file is checked with fontTools: a face is *usable* only if it maps every character of
the alphabet to a glyph that has an outline, and if those glyphs are not all the same shape (symbol,
math-extension and last-resort faces fail this and would render boxes or nothing). Faces are
de-duplicated by (family, style). A file that cannot be read is skipped with a warning. The result of
the scan is cached on disk (keyed by path, size and modification time), so a second call is instant.
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
import logging
import os
import re
import string
import sys
import warnings
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Iterable, Sequence

DEFAULT_ALPHABET = string.ascii_uppercase + string.ascii_lowercase + string.digits
FONT_SUFFIXES = (".ttf", ".otf", ".ttc", ".otc")
FONT_PACKAGES = ("font_amatic_sc", "font_intuitive", "font_fredoka_one", "font_fjallaone", "font_caladea",
                 "font_source_serif_pro", "font_source_sans_pro", "font_hanken_grotesk", "font_lato",
                 "font_manrope", "font_rhd", "ttf_opensans")
_CACHE_VERSION = 1


_GENERIC_NAME = re.compile(r"(glyph|gid|cid|index|g)?\d+|uni[0-9A-Fa-f]{4,}|u[0-9A-Fa-f]{4,6}|\.notdef")


def _name_contradicts(glyph_name: str, ch: str) -> bool:
    """True when a glyph has a meaningful name that denotes another character (e.g. math extension
    faces map 'A' to 'parenrightbt')."""
    from fontTools.agl import UV2AGL

    base = re.split(r"[._]", glyph_name, maxsplit=1)[0] or glyph_name
    if _GENERIC_NAME.fullmatch(base):
        return False
    expected = (ch, UV2AGL.get(ord(ch), ch), f"uni{ord(ch):04X}", f"u{ord(ch):04X}")
    return not any(base.startswith(e) for e in expected)


class NoUsableFontsError(RuntimeError):
    """Raised when no usable font face is found."""


@dataclass(frozen=True)
class FontFace:
    """One usable font face.

    Attributes:
        path: file holding the face.
        index: face index inside a collection file (``.ttc``); 0 otherwise.
        family: family name from the font's name table.
        style: style name (``Regular``, ``Bold Italic`` ...).
        source: where it was found: ``package:<name>``, ``matplotlib``, ``system`` or ``user``.
    """

    path: str
    index: int
    family: str
    style: str
    source: str

    @property
    def name(self) -> str:
        """``"Family Style"``, the key faces are de-duplicated and split by."""
        return f"{self.family} {self.style}"


def font_dirs(extra_dirs: Iterable[str | os.PathLike] = (), system: bool = False) -> list[tuple[Path, str]]:
    """List the folders that are searched for fonts, each with its source label.

    Args:
        extra_dirs: user folders, searched in addition to ``SACNN_FONT_DIRS``.
        system: also the operating system's font folders (their faces differ from machine to machine).

    Returns:
        ``[(folder, source), ...]`` for the folders that exist, in search order.
    """
    dirs: list[tuple[Path, str]] = []
    for pkg in FONT_PACKAGES:
        spec = importlib.util.find_spec(pkg)
        if spec is not None and spec.submodule_search_locations:
            for loc in spec.submodule_search_locations:
                dirs.append((Path(loc), f"package:{pkg}"))
    mpl = importlib.util.find_spec("matplotlib")
    if mpl is not None and mpl.submodule_search_locations:
        for loc in mpl.submodule_search_locations:
            dirs.append((Path(loc) / "mpl-data" / "fonts" / "ttf", "matplotlib"))
    home = Path.home()
    system_dirs = [Path("/usr/share/fonts"), Path("/usr/local/share/fonts"), home / ".fonts",
                   home / ".local/share/fonts"]
    if sys.platform == "darwin":
        system_dirs += [Path("/Library/Fonts"), Path("/System/Library/Fonts"), home / "Library/Fonts"]
    if sys.platform == "win32":
        system_dirs += [Path(os.environ.get("WINDIR", "C:/Windows")) / "Fonts",
                   Path(os.environ.get("LOCALAPPDATA", "")) / "Microsoft/Windows/Fonts"]
    if system:
        dirs += [(d, "system") for d in system_dirs]
    env = [p for p in os.environ.get("SACNN_FONT_DIRS", "").split(os.pathsep) if p]
    for d in [*env, *extra_dirs]:
        path = Path(d).expanduser()
        if not path.is_dir():
            raise FileNotFoundError(f"font folder {path} does not exist or is not a folder")
        dirs.append((path, "user"))
    return [(d, s) for d, s in dirs if d.is_dir()]


def check_face(path: str | os.PathLike, index: int = 0,
               alphabet: str = DEFAULT_ALPHABET) -> tuple[str, str] | None:
    """Check with fontTools that one face can draw every character of ``alphabet``.

    Args:
        path: font file.
        index: face index in a collection.
        alphabet: the characters the generator will draw.

    Returns:
        ``(family, style)`` when usable, ``None`` when the face lacks a glyph, has empty glyphs or draws
        every character with the same shape (symbol, math-extension and last-resort faces).

    Raises:
        Any fontTools / OS error for an unreadable file (callers turn it into a warning).
    """
    from fontTools.pens.boundsPen import BoundsPen
    from fontTools.ttLib import TTFont

    with TTFont(str(path), fontNumber=index, lazy=True) as font:
        cmap = font.getBestCmap() or {}
        names = [cmap.get(ord(ch)) for ch in alphabet]
        if any(n is None for n in names):
            return None
        # last-resort faces map everything to a handful of shared glyphs
        if len(set(names)) < 0.9 * len(set(alphabet)):
            return None
        # symbol and math-extension faces put other shapes at the letters' code points
        if sum(_name_contradicts(n, ch) for n, ch in zip(names, alphabet)) > 0.1 * len(alphabet):
            return None
        glyphs = font.getGlyphSet()
        shapes = set()
        for n in names:
            pen = BoundsPen(glyphs)
            glyphs[n].draw(pen)
            if pen.bounds is None:
                return None
            shapes.add(pen.bounds)
        if len(shapes) < 0.5 * len(set(names)):
            return None
        name = font["name"]
        family = (name.getDebugName(16) or name.getDebugName(1) or Path(path).stem).strip()
        style = (name.getDebugName(17) or name.getDebugName(2) or "Regular").strip()
        return family, style


def _collection_size(path: Path) -> int:
    if path.suffix.lower() not in (".ttc", ".otc"):
        return 1
    from fontTools.ttLib import TTCollection

    with TTCollection(str(path), lazy=True) as coll:
        return len(coll.fonts)


def _cache_file() -> Path:
    from .folders import cache_root

    return cache_root() / "fonts.json"


def _load_cache(alphabet: str) -> dict:
    try:
        data = json.loads(_cache_file().read_text())
    except (OSError, ValueError):
        return {}
    if data.get("version") != _CACHE_VERSION or data.get("alphabet") != alphabet:
        return {}
    return data.get("files", {})


def _save_cache(alphabet: str, files: dict) -> None:
    path = _cache_file()
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(f".{os.getpid()}.tmp")
        tmp.write_text(json.dumps({"version": _CACHE_VERSION, "alphabet": alphabet, "files": files}))
        os.replace(tmp, path)
    except OSError:  # a read-only home is fine: the scan is only slower next time
        pass


def discover_fonts(extra_dirs: Iterable[str | os.PathLike] = (), alphabet: str = DEFAULT_ALPHABET,
                   use_cache: bool = True, system: bool = False) -> list[FontFace]:
    """Find every usable face, de-duplicated by (family, style), sorted by name.

    Args:
        extra_dirs: user folders searched in addition to the packages and matplotlib.
        alphabet: characters every face must draw.
        use_cache: reuse the on-disk scan cache for files that have not changed (a file that could not
            be read is not remembered: it is read again next time).
        system: also the operating system's faces (default: only the faces this project installs, the
            same on every machine).

    Returns:
        The usable faces, sorted by ``name`` so that the order is the same on every machine that has
        the same faces.

    Raises:
        NoUsableFontsError: when no usable face is found.
    """
    if not alphabet:
        raise ValueError("alphabet must hold at least one character")
    logging.getLogger("fontTools").setLevel(logging.ERROR)  # silence harmless timestamp notices
    cache = _load_cache(alphabet) if use_cache else {}
    fresh: dict = {}
    found: dict[str, FontFace] = {}
    unreadable: list[str] = []
    for folder, source in font_dirs(extra_dirs, system):
        for path in sorted(folder.rglob("*")):
            if path.suffix.lower() not in FONT_SUFFIXES or not path.is_file():
                continue
            st = path.stat()
            key = str(path.resolve())
            stamp = [st.st_size, int(st.st_mtime)]
            entry = cache.get(key)
            if entry is None or entry["stamp"] != stamp:
                faces = []
                try:
                    for i in range(_collection_size(path)):
                        res = check_face(path, i, alphabet)
                        faces.append(None if res is None else list(res))
                except Exception as exc:  # noqa: BLE001 - any unreadable file is skipped, never fatal
                    # not cached: the cause may pass (fontTools missing during an install, a file
                    # being written)
                    unreadable.append(f"{path} ({exc})")
                    continue
                entry = {"stamp": stamp, "faces": faces}
            fresh[key] = entry
            for i, res in enumerate(entry["faces"]):
                if res is None:
                    continue
                face = FontFace(str(path), i, res[0], res[1], source)
                found.setdefault(face.name.lower(), face)
    if unreadable:
        shown = "; ".join(unreadable[:5]) + (f"; and {len(unreadable) - 5} more" if len(unreadable) > 5 else "")
        warnings.warn(f"skipped {len(unreadable)} unreadable font file(s): {shown}", stacklevel=2)
    if use_cache and fresh != cache:
        _save_cache(alphabet, {**cache, **fresh})
    if not found:
        dirs = ", ".join(str(d) for d, _ in font_dirs(extra_dirs, system)) or "none"
        raise NoUsableFontsError(
            f"no usable font face was found (searched: {dirs}). Install the project with "
            "`pip install -e .` (it brings font packages) or name a folder of .ttf/.otf files "
            "with SACNN_FONT_DIRS.")
    return sorted(found.values(), key=lambda f: f.name.lower())


def split_fonts(faces: Sequence[FontFace], split: str = "all", test_fraction: float = 0.2) -> list[FontFace]:
    """Select the faces of one split, so that test images can use faces training never saw.

    The split is a pure function of each face's name (a hash), so it is the same on every machine and
    does not move when faces are added or removed.

    Args:
        faces: faces from :func:`discover_fonts`.
        split: ``"all"``, ``"train"`` (about ``1 - test_fraction`` of the faces) or ``"test"`` (the rest).
        test_fraction: share of faces held out for ``"test"``, in (0, 1).

    Returns:
        The selected faces, in the input order.
    """
    if split not in ("all", "train", "test"):
        raise ValueError(f"font split must be 'all', 'train' or 'test', not {split!r}")
    if not 0.0 < test_fraction < 1.0:
        raise ValueError(f"test_fraction must lie in (0, 1), not {test_fraction}")
    if split == "all":
        return list(faces)

    def is_test(face: FontFace) -> bool:
        h = int.from_bytes(hashlib.sha256(face.name.lower().encode()).digest()[:8], "little")
        return h / 2**64 < test_fraction

    chosen = [f for f in faces if is_test(f) == (split == "test")]
    if not chosen:
        raise NoUsableFontsError(f"the {split!r} font split is empty ({len(faces)} faces in all)")
    return chosen


def face_records(faces: Sequence[FontFace]) -> list[dict]:
    """What identifies a set of faces on any machine: each face's name, source, file name, collection index
    and the SHA-256 of its file (a face of the same name in another version draws other glyphs)."""
    digests: dict[str, str] = {}
    out = []
    for f in faces:
        if f.path not in digests:
            digests[f.path] = hashlib.sha256(Path(f.path).read_bytes()).hexdigest()
        out.append({"name": f.name, "source": f.source, "file": Path(f.path).name, "index": f.index,
                    "sha256": digests[f.path]})
    return out


def compare_faces(recorded: Sequence[dict], current: Sequence[dict]) -> str | None:
    """How two :func:`face_records` differ, in words (``None`` when they are the same faces)."""
    def keyed(records: Sequence[dict]) -> dict[str, str]:
        return {r.get("name", "?"): r.get("sha256", "") for r in records}

    a, b = keyed(recorded), keyed(current)
    missing, new = sorted(set(a) - set(b)), sorted(set(b) - set(a))
    changed = sorted(n for n in set(a) & set(b) if a[n] != b[n])
    if not (missing or new or changed):
        return None

    def some(names: list[str]) -> str:
        return ", ".join(names[:3]) + (" ..." if len(names) > 3 else "")

    parts = [f"{len(missing)} missing here ({some(missing)})" if missing else "",
             f"{len(new)} not in the run ({some(new)})" if new else "",
             f"{len(changed)} in another version ({some(changed)})" if changed else ""]
    return "; ".join(p for p in parts if p)


def describe(faces: Sequence[FontFace]) -> list[dict]:
    """Faces as plain dictionaries (for JSON and tables)."""
    return [asdict(f) | {"name": f.name} for f in faces]
