"""Generator throughput: the project's batched numpy composer against a plain per-image PIL reference
that draws the same things (same faces, characters, sizes, positions, grays and lines).

    python benchmarks/generator_speed.py [--n 40000] [--batch 1024] [--ref-n 3000]
    python benchmarks/generator_speed.py --textile      # the DAGM-sized textile set only

Prints images/s for both and their ratio, and the ratio to the authors' generator (~1,800/s on our
machines, SPEC.md). The target is >= 20,000 images/s (136×136 uint8) on the 2-core machine.

``--textile`` times ``python -m data_gen textile``'s work instead: the DAGM-sized set (575 + 575 images of
512×512, PNG, with weak labels and masks) written into a temporary folder with one process per core, and
the texture synthesis alone per family (one core).
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time

import numpy as np
from PIL import Image, ImageDraw, ImageFont

from data_gen.characters import CharacterConfig, CharacterGenerator
from data_gen.malloc import keep_freed_memory
from data_gen.textile import FAMILIES, TextileConfig, TextileGenerator, write_textile


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
    p.add_argument("--textile", action="store_true", help="time the DAGM-sized textile set instead")
    args = p.parse_args()
    if args.textile:
        return textile_speed()
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


def textile_speed(n_train: int = 575, n_test: int = 575) -> None:
    """Time the DAGM-sized textile set written to disk, and each family's synthesis on one core."""
    keep_freed_memory()  # as write_textile's workers do
    for family in FAMILIES:
        gen = TextileGenerator(TextileConfig(family=family))
        gen.sample(0, 0)
        t = time.perf_counter()
        for k in range(1, 31):
            gen.sample(0, k)
        ms = (time.perf_counter() - t) / 30 * 1e3
        print(f"textile synthesis, {family:8s} (one core, 512×512): {ms:6.1f} ms/image")
    with tempfile.TemporaryDirectory() as tmp:
        t = time.perf_counter()
        write_textile(tmp, TextileConfig(), n_train=n_train, n_test=n_test, progress=False)
        dt = time.perf_counter() - t
        mb = sum(f.stat().st_size for f in os.scandir(os.path.join(tmp, "Class1", "Train"))
                 if f.is_file()) * (n_train + n_test) / n_train / 2**20
    print(f"DAGM-sized set ({n_train} + {n_test} images, {os.cpu_count()} processes): {dt:.1f} s, "
          f"{(n_train + n_test) / dt:.0f} images/s, about {mb:.0f} MB of images")


if __name__ == "__main__":
    main()
