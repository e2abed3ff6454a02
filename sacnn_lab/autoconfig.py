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
# reached 94.4 % test accuracy, 34 epochs 98.4 % (README, "Your own photographs")
FOLDER_SAMPLES = 20_000


def suggest_config(folder: str | os.PathLike, defect_size: float | None = None, types: bool = False,
                   **overrides: Any) -> tuple[Any, list[str]]:
    """A run for a class folder with its defaults chosen from the data, and why, in one line each.

    - the number of blocks: the fewest whose visual field covers a defect (the paper's rule,
      :func:`~sacnn_lab.model.suggest_blocks`) of ``defect_size`` px, or without it of a quarter of the
      images' shorter side (DAGM's 512² gives 5 blocks, as in the paper; 192² gives 3);
    - class weights (Eq. 3's two terms) in the inverse ratio of the training split's classes when one
      outnumbers the other by more than 1.5 (without them a set of 1 defective in 6 sat at "all good" for
      12 of 20 epochs in our runs);
    - the epochs: about ``FOLDER_SAMPLES`` training samples, 10 to 60 passes;
    - the augmentation: flips, quarter turns (square images) and brightness changes of ±10 %;
    - with ``types``: one defective layer per defect folder (``defect_types``, ``num_defect_types``);
    - the rest from ``RunConfig.preset("fast", data="folder")`` (batch normalisation, Adam one-cycle).

    Args:
        folder: the class folder.
        defect_size: a typical defect's extent in px, when known.
        types: a K-type head, one defective layer per defect folder (two or more needed).
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
                                              ("resize", "val_fraction", "test_fraction", "train_seed")}))
    (h, w), train = probe.size, probe.splits["train"]
    bad = sum(probe.images[p].label for p in train)
    good = len(train) - bad
    reasons, chosen = [f"{len(probe.images)} images of {w}×{h} px; {len(train)} for training, {good} good and "
                       f"{bad} defective"], {}
    if "channels" not in overrides:
        size = defect_size if defect_size is not None else min(h, w) / 4
        blocks = suggest_blocks(size)
        chosen["channels"] = (16,) + (32,) * (blocks - 1)
        field = receptive_field(replace(base.model, channels=chosen["channels"]))[-1]["rf"]
        why = f"defects of {defect_size:g} px" if defect_size is not None else \
            f"defects up to a quarter of the image ({size:g} px; --defect-size sets it)"
        reasons.append(f"{blocks} blocks (a visual field of {field:g} px): the fewest that cover {why}")
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
    d = base.data
    turns = d.quarter_turns and h == w
    reasons.append("augmentation: flips" + (", quarter turns" if turns else "")
                   + (f", brightness ±{100 * d.brightness:g} %" if d.brightness else "")
                   + ("" if turns or not d.quarter_turns else " (no quarter turns: the images are not square)"))
    return base.updated(**chosen, **overrides), reasons


__all__ = ["suggest_config", "FOLDER_SAMPLES"]
