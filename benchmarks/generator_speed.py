"""Generator throughput: the project's batched numpy composer against a plain per-image PIL reference
that draws the same things (same faces, characters, sizes, positions, grays and lines).

    python benchmarks/generator_speed.py [--n 40000] [--batch 1024] [--ref-n 3000]

Prints images/s for both and their ratio, and the ratio to the authors' generator (~1,800/s on our
machines, SPEC.md). The target is >= 20,000 images/s (136×136 uint8) on the 2-core machine.
"""

from __future__ import annotations

import argparse
import os
import time

import numpy as np
from PIL import Image, ImageDraw, ImageFont

from data_gen.characters import CharacterConfig, CharacterGenerator


def pil_reference(gen: CharacterGenerator, seed: int, indices: np.ndarray) -> list[np.ndarray]:
    """Draw each image on its own with PIL: the straightforward way, as the authors' script does."""
    cfg, S = gen.config, gen.config.image_size
    batch = gen.generate(seed, indices[:1])  # warm any lazily built state
    fonts: dict[tuple[int, int], ImageFont.FreeTypeFont] = {}
    rng = np.random.default_rng(seed)
    out = []
    del batch
    for _ in indices:
        bg, ink, line = (int(v) for v in rng.integers(0, 256, 3))
        im = Image.new("L", (S, S), bg)
        draw = ImageDraw.Draw(im)
        if rng.random() < cfg.distractor_prob:  # the distractor
            face = int(rng.integers(len(gen.faces)))
            size = int(round(float(rng.choice(cfg.distractor_scales)) * 32))
            font = fonts.get((face, size)) or fonts.setdefault(
                (face, size), ImageFont.truetype(gen.faces[face].path, size, index=gen.faces[face].index))
            draw.text((int(rng.integers(-size // 2, S)), int(rng.integers(-size // 2, S))),
                      cfg.alphabet[int(rng.integers(len(cfg.alphabet)))], fill=ink, font=font)
        if rng.random() < 0.5:  # a true character, fully inside
            face, size = int(rng.integers(len(gen.faces))), int(rng.integers(*cfg.char_size))
            font = fonts.get((face, size)) or fonts.setdefault(
                (face, size), ImageFont.truetype(gen.faces[face].path, size, index=gen.faces[face].index))
            ch = cfg.alphabet[int(rng.integers(len(cfg.alphabet)))]
            x, y = int(rng.integers(0, S - size)), int(rng.integers(0, S - size))
            draw.text((x, y), ch, fill=ink, font=font)
            draw.textbbox((x, y), ch, font=font)  # the box the truth needs
        for _ in range(int(rng.integers(cfg.lines[0], cfg.lines[1] + 1))):
            draw.line([tuple(int(v) for v in rng.integers(0, S, 2)), tuple(int(v) for v in rng.integers(0, S, 2))],
                      fill=line, width=int(rng.integers(1, 3)))
        out.append(np.asarray(im))
    return out


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--n", type=int, default=40_000, help="images timed for the project's generator")
    p.add_argument("--batch", type=int, default=1024)
    p.add_argument("--ref-n", type=int, default=3_000, help="images timed for the PIL reference")
    args = p.parse_args()
    cfg = CharacterConfig()
    print(f"cores: {os.cpu_count()}, image {cfg.image_size}x{cfg.image_size} uint8")

    gen = CharacterGenerator(cfg)
    t = time.perf_counter()
    n_cold = 0
    while n_cold < 8192:
        gen.generate(1, np.arange(n_cold, n_cold + args.batch))
        n_cold += args.batch
    cold = n_cold / (time.perf_counter() - t)
    t = time.perf_counter()
    glyphs = gen.warm_up()
    print(f"faces: {len(gen.faces)}; glyph atlas: {glyphs} glyphs rendered in {time.perf_counter() - t:.1f} s "
          f"(once per process)")
    t = time.perf_counter()
    for lo in range(0, args.n, args.batch):
        gen.generate(2, np.arange(lo, min(lo + args.batch, args.n)))
    ours = args.n / (time.perf_counter() - t)

    t = time.perf_counter()
    pil_reference(gen, 3, np.arange(args.ref_n))
    ref = args.ref_n / (time.perf_counter() - t)

    print(f"sacnn-lab generator, cold (glyphs rendered on first use): {cold:10,.0f} images/s")
    print(f"sacnn-lab generator, warm (batch {args.batch}):                {ours:10,.0f} images/s")
    print(f"per-image PIL reference:                                {ref:10,.0f} images/s")
    print(f"ratio warm / PIL reference:                             {ours / ref:10.1f} x")
    print(f"ratio warm / the authors' generator (~1,800 images/s, SPEC.md):  {ours / 1800:10.1f} x")
    print("target (issue 3): >= 20,000 images/s, i.e. over 10x the authors' ~1,800/s:",
          "MET" if ours >= 20_000 else "NOT MET")


if __name__ == "__main__":
    main()
