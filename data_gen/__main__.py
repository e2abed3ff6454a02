"""Command line: ``python -m data_gen fonts | characters | textile``.

Examples::

    python -m data_gen fonts                       # the usable faces, and how many
    python -m data_gen characters --n 2000 --out data/test --seed 7 --ratio 1
    python -m data_gen characters --n 1000 --out data/authors --preset authors-train --masks
    python -m data_gen textile --out data/textile          # DAGM 2007 layout: Class1/Train, Class1/Test
    python -m data_gen textile --layout folder --out data/fabric --size 192   # good/ + defect folders
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

import numpy as np

from .characters import PLACEMENTS, CharacterConfig, CharacterGenerator
from .fonts import describe, discover_fonts, face_records, split_fonts
from .folders import LabelledImage, staged_folder, write_labels, written_by

PRESETS = {
    "default": lambda: CharacterConfig(),
    "authors-train": lambda: CharacterConfig.authors(train=True),
    "authors-test": lambda: CharacterConfig.authors(train=False),
}


def _fonts(args: argparse.Namespace) -> int:
    faces = split_fonts(discover_fonts(args.font_dir, system=args.system), args.split)
    if args.json:
        print(json.dumps(describe(faces), indent=1))
        return 0
    width = max(len(f.name) for f in faces)
    for f in faces:
        print(f"{f.name:<{width}}  {f.source:<28} {f.path}" + (f" #{f.index}" if f.index else ""))
    families = len({f.family for f in faces})
    print(f"\n{len(faces)} usable font faces ({families} families), split {args.split!r}")
    return 0


CHARACTER_FILES = ("images", "masks", "labels.csv")


def write_characters(out: Path, config: CharacterConfig, n: int, seed: int, start: int = 0,
                     masks: bool = False, batch: int = 1024, progress: bool = True,
                     overwrite: bool = False) -> Path:
    """Generate ``n`` samples into a labelled folder ``out`` (images/, labels.csv, config.json).

    The set is written into a hidden folder beside ``out`` and takes its place when complete, so ``out``
    never holds images of one run under another run's labels (see :func:`~data_gen.folders.staged_folder`).

    Args:
        overwrite: replace a data set this command wrote into ``out`` before; without it a non-empty
            ``out`` is refused.

    Returns:
        The folder written.

    Raises:
        FileExistsError: ``out`` is not empty (without ``overwrite``), or holds anything but such a set.
    """
    from PIL import Image
    from tqdm.auto import tqdm

    if n < 1:
        raise ValueError(f"--n must be at least 1, not {n}")
    if start < 0:
        raise ValueError(f"--start must be at least 0, not {start}")
    gen = CharacterGenerator(config)
    digits = max(6, len(str(start + n - 1)))
    items: list[LabelledImage] = []
    with staged_folder(out, overwrite, lambda p: written_by(p, "characters", "config.json", CHARACTER_FILES)) \
            as stage:
        images_dir = stage / "images"
        images_dir.mkdir()
        if masks:
            (stage / "masks").mkdir()
        with tqdm(total=n, desc="writing images", unit="img", disable=not progress) as bar:
            for lo in range(start, start + n, batch):
                idx = np.arange(lo, min(lo + batch, start + n))
                b = gen.generate(seed, idx, masks=masks)
                for i, k in enumerate(idx):
                    name = f"{k:0{digits}d}.png"
                    Image.fromarray(b.images[i]).save(images_dir / name, compress_level=1)
                    if masks:
                        Image.fromarray(b.masks[i].astype(np.uint8) * 255).save(stage / "masks" / name,
                                                                                compress_level=1)
                    items.append(LabelledImage(name, int(b.labels[i]), b.boxes_of(i)))
                bar.update(len(idx))
        write_labels(stage / "labels.csv", items)
        meta = {"generator": "characters", "seed": seed, "start": start, "n": n,
                "fonts_fingerprint": gen.fingerprint, "n_fonts": len(gen.faces), "config": config.to_dict(),
                "faces": face_records(gen.faces)}
        (stage / "config.json").write_text(json.dumps(meta, indent=1))
    return out


def _characters(args: argparse.Namespace) -> int:
    cfg = PRESETS[args.preset]()
    changes = {k: v for k, v in (("ratio", args.ratio), ("placement", args.placement),
                                 ("font_split", args.font_split), ("image_size", args.size)) if v is not None}
    if args.font_dir:
        changes["font_dirs"] = tuple(args.font_dir)
    if args.system_fonts:
        changes["system_fonts"] = True
    cfg = CharacterConfig(**{**cfg.to_dict(), **changes})
    out = write_characters(Path(args.out), cfg, args.n, args.seed, args.start, args.masks,
                           progress=not args.quiet, overwrite=args.overwrite)
    print(f"wrote {args.n} images to {out / 'images'} and labels to {out / 'labels.csv'}")
    return 0


def _textile(args: argparse.Namespace) -> int:
    from .textile import TextileConfig, write_textile

    changes = {k: v for k, v in (("family", args.family), ("ratio", args.ratio), ("image_size", args.size))
               if v is not None}
    if args.size:  # defects keep their share of the image
        changes["defect_size"] = TextileConfig.defects_at(args.size)
    if args.layout == "folder":
        from .textile import write_textile_folder

        n = args.n_train + args.n_test
        root = write_textile_folder(Path(args.out), TextileConfig(**changes), n, args.seed, workers=args.workers,
                                    progress=not args.quiet, overwrite=args.overwrite)
        print(f"wrote {n} textile images as a class folder to {root} (good/, one folder per defect kind, masks/)")
        return 0
    root = write_textile(Path(args.out), TextileConfig(**changes), args.n_train, args.n_test, args.seed,
                         args.class_name, workers=args.workers, progress=not args.quiet,
                         overwrite=args.overwrite)
    print(f"wrote a DAGM 2007-layout textile set to {root} (Train: {args.n_train}, Test: {args.n_test} images)")
    return 0


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m data_gen", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="command", required=True)
    f = sub.add_parser("fonts", help="list the usable font faces")
    f.add_argument("--font-dir", action="append", default=[], help="extra folder of font files")
    f.add_argument("--split", choices=["all", "train", "test"], default="all")
    f.add_argument("--system", action="store_true",
                   help="also the operating system's faces (default: the faces this project installs)")
    f.add_argument("--json", action="store_true", help="print JSON instead of a table")
    f.set_defaults(run=_fonts)
    c = sub.add_parser("characters", help="write a labelled folder of character images")
    c.add_argument("--n", type=int, required=True, help="number of images")
    c.add_argument("--out", required=True, help="output folder (images/, labels.csv, config.json)")
    c.add_argument("--seed", type=int, default=0, help="split seed (default 0)")
    c.add_argument("--start", type=int, default=0, help="first sample index (default 0)")
    c.add_argument("--ratio", type=float, help="defect-free images per defective one (default 1)")
    c.add_argument("--preset", choices=sorted(PRESETS), default="default")
    c.add_argument("--placement", choices=PLACEMENTS)
    c.add_argument("--font-split", choices=["all", "train", "test"])
    c.add_argument("--font-dir", action="append", default=[], help="extra folder of font files")
    c.add_argument("--system-fonts", action="store_true",
                   help="also draw from the operating system's faces (they differ from machine to machine)")
    c.add_argument("--size", type=int, help="image side in px (default 136)")
    c.add_argument("--masks", action="store_true", help="also write masks/ (true character pixels)")
    c.add_argument("--overwrite", action="store_true",
                   help="replace a set this command wrote into --out before (otherwise --out must be empty)")
    c.add_argument("--quiet", action="store_true", help="no progress bar")
    c.set_defaults(run=_characters)
    t = sub.add_parser("textile", help="write a generated textile set in the DAGM 2007 layout")
    t.add_argument("--out", required=True, help="root folder (a ClassN/ folder is written inside)")
    t.add_argument("--n-train", type=int, default=575)
    t.add_argument("--n-test", type=int, default=575)
    t.add_argument("--seed", type=int, default=0)
    t.add_argument("--ratio", type=float, help="defect-free images per defective one (default 5, as DAGM)")
    t.add_argument("--family", choices=["woven", "noisy", "oriented", "knit", "mixed"])
    t.add_argument("--size", type=int, help="image side in px (default 512)")
    t.add_argument("--layout", choices=["dagm", "folder"], default="dagm",
                   help="dagm (default): DAGM 2007's Train/ and Test/ inside --out/CLASS_NAME; folder: a class "
                        "folder in --out, as your own photographs would be sorted (good/, one folder per defect "
                        "kind, masks/), N_TRAIN + N_TEST images in all")
    t.add_argument("--class-name", default="Class1", help="the class folder written inside --out")
    t.add_argument("--overwrite", action="store_true",
                   help="replace a set this command wrote into --out/CLASS_NAME before (otherwise it must be "
                        "empty or absent)")
    t.add_argument("--workers", type=int, help="processes (default: one per CPU core)")
    t.add_argument("--quiet", action="store_true")
    t.set_defaults(run=_textile)
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args.run(args)
    except KeyboardInterrupt:
        out = getattr(args, "out", None)
        print("interrupted" + (f": nothing was written to {out} (a set is moved into place only when complete)"
                               if out else ""), file=sys.stderr)
        return 130
    except (ValueError, OSError, RuntimeError, MemoryError) as exc:  # RuntimeError: NoUsableFontsError, a
        print(f"error: {exc}", file=sys.stderr)                      # worker pool that broke (memory)
        return 2
    except Exception as exc:  # noqa: BLE001 - a bug of ours: still one line, the traceback on request
        if os.environ.get("SACNN_DEBUG"):
            raise
        print(f"error: unexpected {type(exc).__name__}: {exc} (SACNN_DEBUG=1 shows where)", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
