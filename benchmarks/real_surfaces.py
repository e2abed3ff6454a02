"""A held-out check on real photographs: train with the defaults chosen from the data, on surfaces the
project never generated, and print the test figures.

The only real surface photographs a fresh machine has without a download are the three that scikit-image
ships inside its wheel (``skimage.data``: brick, grass and gravel, 512×512 gray, CC0). This script cuts a
class folder of 192×192 crops from them: ``good/`` holds plain crops; each defective image is a crop with one
defect whose pixels are themselves photographed, pasted by code:

- ``patch``: a blob of another of the three surfaces, its gray level and contrast matched to the host;
- ``ink``: the dark strokes of the handwriting photograph ``skimage.data.text()``, darkening the surface
  like a scratch or a stain;
- ``pit``: the relief of the lunar photograph ``skimage.data.moon()`` (high-passed), like a dent.

What is synthetic: where the crops are taken, the blob shapes, the blending and each defect's strength.
The training and test images are cut from disjoint rows of each surface photograph (the top 320 rows
train, the bottom 192 test), so no test image's surface was seen in training; the ink and the lunar relief
the defects are made of come from the whole of their two photographs in both splits. Three photographs are
few, and the crops of one split overlap each other. The masks are written too, for evaluation only.

    python benchmarks/real_surfaces.py --out data/real-surfaces            # the folder, then a run
    python benchmarks/real_surfaces.py --out data/real-surfaces --only-folder

Needs scikit-image (``pip install scikit-image``).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

SURFACES = ("brick", "grass", "gravel")
DEFECTS = ("patch", "ink", "pit")
SIZE = 192
TRAIN_ROWS = 320  # rows 0..319 of each photograph give the training crops, 320..511 the test crops


def photographs() -> dict[str, np.ndarray]:
    """The real photographs shipped inside scikit-image's wheel, as float32 gray."""
    try:
        from skimage import data
    except ImportError:
        sys.exit("this check needs scikit-image, which ships the photographs: pip install scikit-image")
    return {name: getattr(data, name)().astype(np.float32) for name in (*SURFACES, "text", "moon")}


def _crop(photo: np.ndarray, rng: np.random.Generator, rows: tuple[int, int]) -> np.ndarray:
    """A SIZE² crop whose rows lie within ``rows``, flipped left-right and upside down at random."""
    y = rng.integers(rows[0], rows[1] - SIZE + 1)
    x = rng.integers(0, photo.shape[1] - SIZE + 1)
    c = photo[y:y + SIZE, x:x + SIZE]
    if rng.random() < 0.5:
        c = c[:, ::-1]
    if rng.random() < 0.5:
        c = c[::-1]
    return np.ascontiguousarray(c)


def _blob(rng: np.random.Generator) -> np.ndarray:
    """A soft, irregular blob of 24–64 px, as an alpha map in [0, 1]."""
    from scipy import ndimage

    yy, xx = np.mgrid[:SIZE, :SIZE].astype(np.float32)
    cy, cx = rng.uniform(36, SIZE - 36, 2)
    a, b = rng.uniform(12, 32, 2)
    t = rng.uniform(0, np.pi)
    u = ((xx - cx) * np.cos(t) + (yy - cy) * np.sin(t)) / a
    v = (-(xx - cx) * np.sin(t) + (yy - cy) * np.cos(t)) / b
    wobble = ndimage.gaussian_filter(rng.standard_normal((SIZE, SIZE)).astype(np.float32), 8)
    wobble /= wobble.std() + 1e-6
    return ndimage.gaussian_filter(((u * u + v * v + 0.25 * wobble) < 1).astype(np.float32), 1.5)


def _ink(photos: dict[str, np.ndarray], rng: np.random.Generator) -> np.ndarray:
    """A window of the handwriting photograph's ink (its darkness against the paper, 0–1), placed at random."""
    from scipy import ndimage

    text = photos["text"]
    ink = np.clip((ndimage.gaussian_filter(text, 12) - text) / 60, 0, 1)
    ink[ink < 0.25] = 0
    for _ in range(50):
        h, w = rng.integers(40, 100), rng.integers(50, 140)
        y, x = rng.integers(0, text.shape[0] - h), rng.integers(0, text.shape[1] - w)
        win = ink[y:y + h, x:x + w]
        if (win > 0.3).mean() > 0.03:
            break
    win = np.rot90(win, rng.integers(4))
    out = np.zeros((SIZE, SIZE), np.float32)
    h, w = win.shape
    y, x = rng.integers(0, SIZE - h + 1), rng.integers(0, SIZE - w + 1)
    out[y:y + h, x:x + w] = win
    return out


def _pit(photos: dict[str, np.ndarray], rng: np.random.Generator) -> np.ndarray:
    """The strongest of a few 64² windows of the lunar photograph's relief, tapered at its edges."""
    from scipy import ndimage

    moon = photos["moon"] - ndimage.gaussian_filter(photos["moon"], 20)
    windows = [moon[y:y + 64, x:x + 64] for y, x in rng.integers(0, moon.shape[0] - 64, (30, 2))]
    best = max(windows, key=lambda w: w.std())
    out = np.zeros((SIZE, SIZE), np.float32)
    y, x = rng.integers(0, SIZE - 64, 2)
    out[y:y + 64, x:x + 64] = best * np.outer(np.hanning(64), np.hanning(64))
    return out


def defective(photos: dict[str, np.ndarray], surface: str, kind: str, rng: np.random.Generator,
              rows: tuple[int, int]) -> tuple[np.ndarray, np.ndarray]:
    """One defective crop of ``surface`` with a ``kind`` defect: ``(image uint8, mask bool)``."""
    base = _crop(photos[surface], rng, rows)
    if kind == "patch":
        other = _crop(photos[rng.choice([s for s in SURFACES if s != surface])], rng, rows)
        other = (other - other.mean()) / (other.std() + 1e-6) * base.std() + base.mean()
        alpha = _blob(rng)
        out = base * (1 - alpha) + other * alpha
    elif kind == "ink":
        alpha = _ink(photos, rng)
        out = base * (1 - rng.uniform(0.45, 0.8) * alpha)
    else:
        relief = _pit(photos, rng)
        alpha = (np.abs(relief) > 6).astype(np.float32)
        out = base + rng.uniform(1.5, 3.0) * relief
    return np.clip(np.rint(out), 0, 255).astype(np.uint8), alpha > 0.3


def write_folder(out: Path, good: int, bad: int, seed: int) -> dict[str, dict[str, int]]:
    """``out/train`` and ``out/test`` class folders (``good/``, one folder per defect kind, ``masks/<kind>/``),
    the test split about a third of the training one, cut from disjoint rows. Returns the counts."""
    from PIL import Image

    photos = photographs()
    rng = np.random.default_rng(seed)
    counts: dict[str, dict[str, int]] = {}
    for split, share, rows in (("train", 0.75, (0, TRAIN_ROWS)), ("test", 0.25, (TRAIN_ROWS, 512))):
        n_good, n_bad = round(good * share), round(bad * share)
        root = out / split
        for i in range(n_good):
            surface = SURFACES[i % 3]
            (root / "good").mkdir(parents=True, exist_ok=True)
            img = np.clip(np.rint(_crop(photos[surface], rng, rows)), 0, 255).astype(np.uint8)
            Image.fromarray(img).save(root / "good" / f"{surface}_{i:04d}.png")
        for i in range(n_bad):
            surface, kind = SURFACES[i % 3], DEFECTS[(i // 3) % 3]
            img, mask = defective(photos, surface, kind, rng, rows)
            for folder in (root / kind, root / "masks" / kind):
                folder.mkdir(parents=True, exist_ok=True)
            Image.fromarray(img).save(root / kind / f"{surface}_{i:04d}.png")
            Image.fromarray((mask * 255).astype(np.uint8)).save(root / "masks" / kind / f"{surface}_{i:04d}.png")
        counts[split] = {"good": n_good, "defective": n_bad}
    (out / "made_by.json").write_text(json.dumps({"script": "benchmarks/real_surfaces.py", "seed": seed,
                                                  "counts": counts}, indent=1))
    return counts


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--out", default="data/real-surfaces", help="the class folder to write (must not exist)")
    p.add_argument("--run", help="run folder (default: runs/<the folder's name>)")
    p.add_argument("--good", type=int, default=640, help="defect-free images in all (3/4 train, 1/4 test)")
    p.add_argument("--bad", type=int, default=128, help="defective images in all")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--epochs", type=int, help="instead of the epochs chosen from the data")
    p.add_argument("--only-folder", action="store_true", help="write the folder, train nothing")
    p.add_argument("--quiet", action="store_true")
    args = p.parse_args(argv)

    out = Path(args.out)
    if out.exists():
        print(f"{out} exists: reusing it")
    else:
        counts = write_folder(out, args.good, args.bad, args.seed)
        print(f"wrote {out}: {counts}")
    if args.only_folder:
        return 0

    from sacnn_lab.autoconfig import suggest_config
    from sacnn_lab.experiment import evaluate, run_test_split, train

    t0 = time.perf_counter()
    config, reasons = suggest_config(out, progress=not args.quiet,
                                     **({"epochs": args.epochs} if args.epochs else {}))
    print("chosen from the data:\n" + "\n".join(f"  {r}" for r in reasons))
    run_dir = Path(args.run or Path("runs") / out.name)
    run = train(config, run_dir, progress=not args.quiet)
    t_train = run.history.epochs[-1]["train_time"]
    test = run_test_split(run_dir, config)
    figures = evaluate(run.model, test, tolerance=8, localisation=True)
    exact = evaluate(run.model, test)["pointing_game"]
    print(f"{len(test)} test images: accuracy {figures['accuracy']:.4f}, recall {figures['recall']:.4f}, "
          f"AUROC {figures['auroc']:.4f}, pointing game {exact:.3f} exact / {figures['pointing_game']:.3f} at 8 px, "
          f"IoU (Otsu) {figures['iou_otsu']:.3f}, pixel AUROC {figures['pixel_auroc']:.3f}")
    scores = None
    from sacnn_lab.inference import predict

    scores = predict(run.model, test.images[:]).score.numpy()
    for surface in SURFACES:
        pick = np.array([Path(f).name.startswith(surface) for f in test.filenames])
        right = (scores[pick] >= 0.5) == (test.labels[pick] > 0)
        print(f"  {surface}: accuracy {right.mean():.4f} on {pick.sum()} images")
    print(f"training {t_train:.0f} s, {time.perf_counter() - t0:.0f} s in all (blocks chosen, trained, evaluated)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
