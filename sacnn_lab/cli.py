"""``sacnn-lab`` command line.

    sacnn-lab gallery --out gallery.png      # generated character samples with their true boxes
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np


def _gallery(args: argparse.Namespace) -> int:
    from data_gen.characters import CharacterConfig, CharacterGenerator

    from .plots import gallery

    cfg = CharacterConfig.authors(train=False) if args.preset == "authors" else CharacterConfig()
    gen = CharacterGenerator(cfg)
    b = gen.generate(args.seed, np.arange(args.n))
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    gallery(b.images, b.labels, [b.boxes_of(i) for i in range(len(b))],
            title=f"character set ({args.preset}), seed {args.seed}: true boxes in red", path=out)
    print(f"{len(gen.faces)} font faces; {int(b.labels.sum())} of {len(b)} images defective; "
          f"gallery written to {out}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="sacnn-lab", description="Weakly supervised defect detection with SACNN.")
    sub = p.add_subparsers(dest="command", required=True)
    g = sub.add_parser("gallery", help="write a gallery of generated samples with their true boxes")
    g.add_argument("--out", default="runs/gallery.png")
    g.add_argument("--n", type=int, default=32)
    g.add_argument("--seed", type=int, default=0)
    g.add_argument("--preset", choices=["default", "authors"], default="default")
    g.set_defaults(run=_gallery)
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args.run(args)
    except (ValueError, FileNotFoundError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
