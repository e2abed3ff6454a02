"""Defaults chosen from the data: a run for a user's class folder that works without tuning.

:func:`suggest_config` looks at the folder (image size, classes, defect folders) and says what it chose
and why, one line each; :func:`choose_blocks` picks the number of blocks on the validation split, from
the image-level labels alone, when the user gives no defect size.

    config, reasons = suggest_config("data/fabric")
    print("\n".join(reasons))
    run = train(config, "runs/fabric")
"""

from __future__ import annotations

import os
from typing import Any

import numpy as np

from .sources import ClassFolderSource


# the training samples a class-folder run aims at (epochs = this / training images, within 10–60): on the
# generated fabric folder (580 training images of 192²) 21 epochs left the competitive phase at epoch 13 and
# reached 94.4 % test accuracy, 34 epochs 98.4 % (docs/results.md, "Your own folders")
FOLDER_SAMPLES = 20_000
# from this many px a side the first convolution strides by 2 (ModelConfig.first_stride; the textile fast
# preset's choice for DAGM's 512²)
LARGE_SIDE = 384
# the training samples of each candidate network when the blocks are chosen on the validation split
BLOCK_SAMPLES = 3_000


def block_channels(blocks: int) -> tuple[int, ...]:
    """The widths of a folder run's ``blocks`` blocks: 16, then 32 each."""
    return (16,) + (32,) * (blocks - 1)


def block_candidates(model: Any, size: tuple[int, int], most: int = 3) -> list[int]:
    """The numbers of blocks worth trying on images of ``size``: those whose visual field lies between a
    sixteenth and two thirds of the shorter side (at least 2 blocks), at most ``most`` of them, nearest a
    quarter of the side first.

    Args:
        model: the :class:`~sacnn_lab.config.ModelConfig` whose blocks are counted (its kernel, dilation,
            pooling and stride).
        size: ``(H, W)`` of the images.
    """
    from dataclasses import replace

    from .model import receptive_field

    side = min(size)
    fields = {b: receptive_field(replace(model, channels=block_channels(b)))[-1]["rf"] for b in range(2, 8)}
    ok = [b for b, f in fields.items() if side / 16 <= f <= side / 1.5] or [min(fields, key=lambda b: abs(
        fields[b] - side / 4))]
    ok.sort(key=lambda b: (abs(np.log(fields[b] / (side / 4))), b))
    return sorted(ok[:most])


def choose_blocks(config: Any, candidates: list[int], samples: int = BLOCK_SAMPLES, progress: bool = True
                  ) -> tuple[int, list[dict[str, float]]]:
    """Choose the number of blocks on the validation split, from image-level labels alone: each candidate
    network trains ``samples`` samples (the same seeds, schedule and data as the run), and the one with the
    lowest class-balanced log loss of its validation scores wins (ties: fewer blocks). Masks never take
    part: a user's masks measure the run, they never steer it.

    Args:
        config: the run (a class folder's), whose ``channels`` are replaced by each candidate's.
        candidates: numbers of blocks (see :func:`block_candidates`).
        samples: training samples per candidate.
        progress: print one line per candidate.

    Returns:
        ``(blocks, rows)``: the winner, and per candidate ``{"blocks", "field", "val_loss", "val_auroc",
        "val_accuracy", "seconds"}``.
    """
    import time

    from .experiment import train
    from .inference import predict
    from .metrics import classification
    from .model import receptive_field
    from .sources import ClassFolderSource

    source = ClassFolderSource(config)
    val = source.split("val")
    y = (val.labels > 0).astype(np.float64)
    weight = np.where(y > 0, 0.5 / max(y.mean(), 1e-9), 0.5 / max(1 - y.mean(), 1e-9))
    epochs = int(np.clip(round(samples / max(1, len(source.splits["train"]))), 2, 20))
    budget = config.train.max_time  # a run's time budget bounds the choice too: half of it, shared out
    rows = []
    for blocks in candidates:
        cfg = config.updated(channels=block_channels(blocks), epochs=epochs, eval_every=epochs, keep_best=None,
                             max_time=None if budget is None else budget / (2 * len(candidates)))
        t = time.perf_counter()
        run = train(cfg, None, progress=False)
        bs = cfg.train.eval_batch_size  # a batch of scores at a time: a streamed split is never read whole
        s = np.concatenate([predict(run.model, val.images[lo:lo + bs], batch_size=bs).any_type().score.numpy()
                            for lo in range(0, len(val.labels), bs)]).astype(np.float64)
        s = np.clip(s, 1e-6, 1 - 1e-6)
        loss = float(np.mean(-weight * (y * np.log(s) + (1 - y) * np.log(1 - s))))
        loss = loss if np.isfinite(loss) else float("inf")  # a diverged candidate never wins
        figures = classification(s, y)
        rows.append({"blocks": blocks, "field": receptive_field(run.config.model)[-1]["rf"], "val_loss": loss,
                     "val_auroc": figures["auroc"], "val_accuracy": figures["accuracy"],
                     "seconds": time.perf_counter() - t})
        if progress:
            r = rows[-1]
            print(f"  trying {blocks} blocks ({r['field']:g} px) for {epochs} epochs: validation loss "
                  f"{loss:.3f}, AUROC {r['val_auroc']:.3f}, accuracy {r['val_accuracy']:.3f} ({r['seconds']:.0f} s)",
                  flush=True)
    best = min(rows, key=lambda r: (round(r["val_loss"], 3), r["blocks"]))
    return int(best["blocks"]), rows


def suggest_config(folder: str | os.PathLike, defect_size: float | None = None, types: bool = False,
                   color: bool = False, blocks_by: str = "validation", progress: bool = True, **overrides: Any
                   ) -> tuple[Any, list[str]]:
    """A run for a class folder with its defaults chosen from the data, and why, in one line each.

    - the number of blocks: with ``defect_size``, the fewest whose visual field covers such a defect (the
      paper's rule, :func:`~sacnn_lab.model.suggest_blocks`); without it, chosen on the validation split
      among :func:`block_candidates` by :func:`choose_blocks` (``blocks_by="validation"``, which trains
      each candidate briefly), or, quickly, the fewest that cover a quarter of the images' shorter side
      (``blocks_by="quarter"``: DAGM's 512² gives 5 blocks, as in the paper; 192² gives 3);
    - class weights (Eq. 3's two terms) in the inverse ratio of the training split's classes when one
      outnumbers the other by more than 1.5 (without them a set of 1 defective in 6 sat at "all good" for
      12 of 20 epochs in our runs);
    - the epochs: about ``FOLDER_SAMPLES`` training samples, 10 to 60 passes;
    - images of ``LARGE_SIDE`` px a side and more: the first convolution strides by 2 (``first_stride``);
    - the augmentation: flips, quarter turns (square images) and brightness changes of ±10 %;
    - with ``types``: one defective layer per defect folder (``defect_types``, ``num_defect_types``);
    - the rest from ``RunConfig.preset("fast", data="folder")`` (batch normalisation, Adam one-cycle).

    Args:
        folder: the class folder.
        defect_size: a typical defect's extent in px, when known.
        types: a K-type head, one defective layer per defect folder (two or more needed).
        color: read the images as RGB, into a network of 3 input channels (default: gray).
        blocks_by: without ``defect_size``: ``"validation"`` or ``"quarter"`` (see above).
        progress: print each candidate's line while the blocks are chosen on the validation split.
        overrides: any field to set instead (by name, see :meth:`~sacnn_lab.config.RunConfig.updated`);
            a field given here is not chosen.

    Returns:
        ``(config, reasons)``.
    """
    from dataclasses import replace

    from .config import RunConfig
    from .model import receptive_field, suggest_blocks

    base = RunConfig.preset("fast", data="folder", folder=os.fspath(folder))
    probe = ClassFolderSource(base.updated(**{k: v for k, v in overrides.items() if k in
                                              ("resize", "one_size", "val_fraction", "test_fraction",
                                               "train_seed")}))
    (h, w), train = probe.size, probe.splits["train"]
    bad = sum(probe.images[p].label for p in train)
    good = len(train) - bad
    reasons, chosen = [f"{len(probe.images)} images of {w}×{h} px; {len(train)} for training, {good} good and "
                       f"{bad} defective"], {}
    if color:
        chosen.update(color=True, in_channels=3)
        reasons.append("colour: RGB images into 3 input channels")
    if "first_stride" not in overrides and min(h, w) >= LARGE_SIDE:
        chosen["first_stride"] = 2
        reasons.append(f"the first convolution strides by 2 (images of {min(h, w)} px and more a side: about 4× "
                       f"cheaper, the same map and nearly the same visual field)")
    if blocks_by not in ("validation", "quarter"):
        raise ValueError(f"blocks_by must be 'validation' or 'quarter', not {blocks_by!r}")
    if "class_weights" not in overrides and good and bad and max(good, bad) > 1.5 * min(good, bad):
        chosen["class_weights"] = (1.0, round(good / bad, 2)) if good > bad else (round(bad / good, 2), 1.0)
        reasons.append(f"class weights {chosen['class_weights'][0]:g} : {chosen['class_weights'][1]:g} "
                       f"(good : defective), the inverse of their ratio in training")
    if "epochs" not in overrides:
        chosen["epochs"] = int(np.clip(round(FOLDER_SAMPLES / max(1, len(train))), 10, 60))
        reasons.append(f"{chosen['epochs']} epochs: about {FOLDER_SAMPLES:,} training samples")
    if types:
        kinds = sorted({it.kind for it in probe.images.values() if it.label})
        if len(kinds) < 2:
            raise ValueError(f"--defect-types needs two or more defect folders beside good/; {folder} has "
                             f"{len(kinds)} ({', '.join(kinds) or 'none'})")
        chosen.update(defect_types=tuple(kinds), num_defect_types=len(kinds))
        reasons.append(f"{len(kinds)} defect types, one defective layer each: {', '.join(kinds)}")
    if "channels" not in overrides:
        model = base.updated(**chosen, **overrides).model
        candidates = block_candidates(model, (h, w))
        if len(candidates) == 1 and defect_size is None:
            blocks = candidates[0]
            why = f"the one number of blocks whose visual field fits images of {min(h, w)} px"
        elif defect_size is not None or blocks_by == "quarter":
            size = defect_size if defect_size is not None else min(h, w) / 4
            blocks = suggest_blocks(size)
            why = f"defects of {defect_size:g} px" if defect_size is not None else \
                f"defects up to a quarter of the image ({size:g} px; --defect-size sets it)"
            why = f"the fewest that cover {why}"
        else:
            if progress:
                print(f"choosing the number of blocks on the validation split (defect size not given; "
                      f"--defect-size PX skips this): {', '.join(map(str, candidates))}", flush=True)
            run = base.updated(**chosen, **overrides)
            blocks, rows = choose_blocks(run, candidates, progress=progress)
            why = ("the lowest validation loss of " + ", ".join(f"{r['blocks']} ({r['val_loss']:.3f})" for r in rows)
                   + f" after {BLOCK_SAMPLES:,} samples each, image labels alone (--defect-size PX sets it)")
        chosen["channels"] = block_channels(blocks)
        field = receptive_field(replace(model, channels=chosen["channels"]))[-1]["rf"]
        reasons.insert(1, f"{blocks} blocks (a visual field of {field:g} px): {why}")
    d = base.data
    turns = d.quarter_turns and h == w
    reasons.append("augmentation: flips" + (", quarter turns" if turns else "")
                   + (f", brightness ±{100 * d.brightness:g} %" if d.brightness else "")
                   + ("" if turns or not d.quarter_turns else " (no quarter turns: the images are not square)"))
    return base.updated(**chosen, **overrides), reasons


def config_for(folder: str | os.PathLike, run_dir: str | os.PathLike | None = None, **choices: Any
               ) -> tuple[Any, list[str]]:
    """The run for a class folder: the settings a run folder already holds (``run_dir/config.json``, to
    resume or reload it: nothing is chosen again, flags given in ``choices`` that are config fields applied
    on top), else :func:`suggest_config` ``(folder, **choices)``.

    Returns:
        ``(config, reasons)``.
    """
    import json
    from pathlib import Path

    from .config import RunConfig

    saved = None if run_dir is None else Path(run_dir) / "config.json"
    if saved is None or not saved.is_file():
        return suggest_config(folder, **choices)
    try:
        config = RunConfig.from_dict(json.loads(saved.read_text(encoding="utf-8")))
    except (ValueError, TypeError, KeyError) as exc:
        raise ValueError(f"{saved} cannot be read as a run's settings ({exc})") from None
    trained_on = config.data.folder
    if trained_on is None or Path(trained_on).resolve() != Path(folder).resolve():
        raise ValueError(f"{run_dir} holds a run trained on {trained_on}, not on {folder}: resume it with its own "
                         f"folder, or choose another run folder")
    fields = {k: v for k, v in choices.items() if k not in ("defect_size", "types", "color", "blocks_by",
                                                             "progress")}
    for flag, asked, has in (("--defect-types", choices.get("types"), config.data.defect_types),
                             ("--color", choices.get("color"), config.data.color)):
        if asked and not has:
            raise ValueError(f"{run_dir} holds a run trained without {flag}: it cannot be resumed with it; "
                             f"choose another folder")
    return config.updated(**fields), [f"the settings of the run in {run_dir} (its config.json): nothing chosen again"]


__all__ = ["suggest_config", "config_for", "block_candidates", "choose_blocks", "FOLDER_SAMPLES", "BLOCK_SAMPLES"]
