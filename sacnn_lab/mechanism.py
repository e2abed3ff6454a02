"""Why the competition converges, measured on a network and on a run's history.

- :func:`winner_gradient`: one backward pass of the competition loss (Eqs. 3–4 on the maximum of Eq. 2) reaches
  each image's winning pixel and no other;
- :func:`property_one`: the paper's property 1: one gradient step changes the defect map mostly near the
  winner, and less the further a pixel lies from it (the receptive fields it shares with the winner);
- :func:`competition_by_epoch`: over a run's epochs, from its probe maps: the share of defective probe images
  whose winner lies off the defect (on a distractor, a line, a huge or tiny glyph) falling, and the maxima on
  the defect-free probe images (the false winners the competition pushes down) falling;
- :func:`winner_drift` and :func:`drift_summary`: where each defective probe image's winner lies, epoch by epoch
  (how a pointing game changes).
"""

from __future__ import annotations

import copy
from dataclasses import dataclass
from typing import Any, Sequence

import numpy as np
import torch

from .competition import competition_loss, defect_layers, winning_pixels


@dataclass
class WinnerGradient:
    """What one backward pass of the competition loss gives the defective layer.

    Attributes:
        gradient: ``(B, s, t)`` the size of the loss's gradient on each pixel's logits (summed over the classes).
        winners: ``(B, 2)`` each image's winning pixel ``(row, col)`` (the maximum of its defective layer).
        touched: ``(B,)`` how many pixels of each image receive any gradient (1: the winner alone).
        on_winner: ``(B,)`` whether the pixel that receives it is the winner.
    """

    gradient: np.ndarray
    winners: np.ndarray
    touched: np.ndarray
    on_winner: np.ndarray


def _logits(model: torch.nn.Module, images: np.ndarray) -> torch.Tensor:
    x = torch.as_tensor(np.asarray(images)).float().div(255).unsqueeze(1)
    return model(x)


def winner_gradient(model: torch.nn.Module, images: np.ndarray, labels: np.ndarray) -> WinnerGradient:
    """The gradient of the competition loss on the logits of ``model`` (in eval mode) for ``images``
    ``(B, H, W)`` uint8 with image labels ``(B,)``: only each image's winner receives one.
    """
    model = model.eval()
    logits = _logits(model, images).detach().requires_grad_(True)
    competition_loss(logits, torch.as_tensor(np.asarray(labels)).long(), reduction="sum").backward()
    grad = logits.grad.abs().sum(1)  # (B, s, t)
    flat = winning_pixels(logits.detach())[:, 0]  # (B,) row-major indices into the s·t pixels
    t = grad.shape[2]
    winners = torch.stack([flat // t, flat % t], 1)  # (B, 2)
    touched = (grad > 0).flatten(1).sum(1)
    on_winner = (grad.flatten(1)[torch.arange(len(grad)), flat] > 0) & (touched == 1)
    return WinnerGradient(grad.numpy(), winners.numpy(), touched.numpy(), on_winner.numpy())


def property_one(model: torch.nn.Module, images: np.ndarray, labels: np.ndarray, lr: float = 0.01) -> Any:
    """The paper's property 1, measured: one SGD step of the competition loss on ``images`` ``(B, H, W)`` with
    ``labels`` ``(B,)`` (on a copy of ``model``, left as it was), and how much each pixel's defective probability
    changed, against its distance from its image's winner (in map cells, the larger of the row and column
    offsets).

    Returns:
        A DataFrame with one row per (image, distance): ``image``, ``label``, ``distance`` and ``change`` (the
        mean absolute change of the defective probability over the pixels at that distance); the step is
        taken on the whole batch at once, in eval mode (normalisation with its running statistics).
    """
    import pandas as pd

    net = copy.deepcopy(model).eval()
    y = torch.as_tensor(np.asarray(labels)).long()
    with torch.no_grad():
        before = defect_layers(_logits(net, images))[:, 0]
    opt = torch.optim.SGD(net.parameters(), lr=lr)
    logits = _logits(net, images)
    flat = winning_pixels(logits.detach())[:, 0].numpy()
    competition_loss(logits, y, reduction="sum").backward()
    opt.step()
    with torch.no_grad():
        change = (defect_layers(_logits(net, images))[:, 0] - before).abs().numpy()
    s, t = change.shape[1:]
    rows, cols = np.mgrid[0:s, 0:t]
    out = []
    for i, (r, c) in enumerate(zip(flat // t, flat % t)):
        dist = np.maximum(np.abs(rows - r), np.abs(cols - c))
        for d in np.unique(dist):
            out.append({"image": i, "label": int(y[i]), "distance": int(d),
                        "change": float(change[i][dist == d].mean())})
    return pd.DataFrame(out)


def competition_by_epoch(history: Any) -> Any:
    """The competition over a run's epochs, from its probe maps (``DataConfig.probe_size`` images).

    Returns:
        A DataFrame with one row per recorded epoch: ``epoch``, ``off_defect`` (the share of defective probe images
        with true boxes whose winner lies outside every box: on a distractor, a line or the background),
        ``free_max_mean`` and ``free_max_top`` (the mean and the largest probability of the defect-free probe
        images: the false winners' strength) and ``defective_mean`` (the mean probability of the defective ones).
    """
    import pandas as pd

    drift = winner_drift(history)
    free = history.probe_indices("defect-free")
    defective = history.probe_indices("defective")
    rows = []
    for e in history.recorded_epochs:
        scores = np.asarray(history.probe_scores[e], np.float64)
        d = drift[drift.epoch == e]
        rows.append({"epoch": int(e), "off_defect": float(1 - d.hit.mean()) if len(d) else float("nan"),
                     "free_max_mean": float(scores[free].mean()) if free else float("nan"),
                     "free_max_top": float(scores[free].max()) if free else float("nan"),
                     "defective_mean": float(scores[defective].mean()) if defective else float("nan")})
    return pd.DataFrame(rows)


def competitive_phase(history: Any, window: int = 20, below: float = 0.9) -> tuple[int, int] | None:
    """The competitive phase of a run (the paper's Figure 5): the steps from the start while the loss per sample
    stays at chance, i.e. until its moving average first falls below ``below`` × the loss of a network that
    knows only the share of defective images ``p`` (the binary entropy ``-(p ln p + (1 - p) ln(1 - p))``: ln 2 for
    balanced data). The training loss is per sample for ``reduction="mean"`` runs and summed over the batch for
    ``"sum"``; both are brought to per sample here.

    Returns:
        ``(first_step, last_step)`` (0-based, inclusive), or ``None`` where the loss starts below that level (no
        flat start: e.g. a run whose first steps already learn).
    """
    steps = history.steps
    n = np.asarray(steps["tp"], np.float64) + np.asarray(steps["fp"], np.float64) \
        + np.asarray(steps["tn"], np.float64) + np.asarray(steps["fn"], np.float64)
    if not len(n):
        return None
    loss = np.asarray(steps["loss"], np.float64)
    if (history.config.get("train") or {}).get("reduction", "mean") == "sum":
        loss = loss / np.maximum(n, 1)
    pos = (np.asarray(steps["tp"], np.float64) + np.asarray(steps["fn"], np.float64)).sum() / max(n.sum(), 1)
    pos = min(max(pos, 1e-6), 1 - 1e-6)
    chance = -(pos * np.log(pos) + (1 - pos) * np.log(1 - pos))
    w = max(1, min(window, len(loss)))
    ma = np.convolve(loss, np.ones(w) / w, mode="valid")
    low = np.flatnonzero(ma < below * chance)
    if not len(low) or low[0] == 0:
        return None
    return 0, int(low[0]) + w - 1


def winner_drift(history: Any, epochs: Sequence[int] | None = None) -> Any:
    """Where each defective probe image's winner lies, epoch by epoch: the material to see *how* a pointing game
    changes (which images lose their pointing, whether their winners slide off the defect or jump to another
    place, whether the maps spread).

    Args:
        history: a run's :class:`~sacnn_lab.history.History` (its probe maps; ``DataConfig.probe_size``
            sets how many images it follows).
        epochs: the recorded epochs to read (default: all).

    Returns:
        A DataFrame with one row per (defective probe image with boxes, epoch): ``image``, ``epoch``,
        ``score`` (the image's probability), ``hit`` (the map's maximum inside a true box), ``distance`` (px from
        the maximum to the nearest true box; 0 inside), ``peak`` (the map's maximum), ``area`` (share of the
        map above 0.5) and ``ties`` (share of the map within 1 % of its maximum: a saturated plateau where
        the winner is arbitrary).
    """
    import numpy as np
    import pandas as pd

    from .metrics import point_in_boxes

    epochs = list(history.recorded_epochs if epochs is None else epochs)
    boxes = history.probe_boxes
    chosen = [i for i in history.probe_indices("defective") if (boxes[i, :, 0] >= 0).any()]
    rows = []
    for e in epochs:
        maps = history.maps_upsampled(e)
        scores = history.probe_scores.get(e)
        for i in chosen:
            m = maps[i]
            flat = int(np.argmax(m))
            y, x = divmod(flat, m.shape[1])
            bx = [tuple(int(v) for v in b) for b in boxes[i] if b[0] >= 0]
            dist = min(float(np.hypot(max(b[0] - x, 0, x - (b[2] - 1)), max(b[1] - y, 0, y - (b[3] - 1))))
                       for b in bx)
            peak = float(m.max())
            rows.append({"image": i, "epoch": e, "score": float(scores[i]) if scores is not None else float("nan"),
                         "hit": bool(point_in_boxes(y, x, bx)), "distance": dist, "peak": peak,
                         "area": float((m > 0.5).mean()), "ties": float((m >= 0.99 * peak).mean())})
    return pd.DataFrame(rows)


def drift_summary(drift: Any, early: int, late: int, field: float) -> dict[str, float]:
    """How the pointing changed between two epochs of :func:`winner_drift`'s table.

    Args:
        drift: the table.
        early, late: the two epochs.
        field: the network's visual field in px: a lost winner farther than it from the defect has *jumped*
            (another place of the image won), a nearer one has *slid* off the defect's edge.

    Returns:
        ``hits_early``, ``hits_late`` (pointing games on these images), ``lost`` and ``won`` (images that
        changed), ``jumped`` and ``slid`` (of the lost), ``median_distance_lost`` (px), and the mean ``area``
        and ``ties`` at each epoch (``area_early`` ...).
    """
    import numpy as np

    a = drift[drift["epoch"] == early].set_index("image")
    b = drift[drift["epoch"] == late].set_index("image")
    lost = a.index[a["hit"] & ~b.loc[a.index, "hit"]]
    won = a.index[~a["hit"] & b.loc[a.index, "hit"]]
    far = b.loc[lost, "distance"]
    return {"images": float(len(a)), "hits_early": float(a["hit"].mean()), "hits_late": float(b["hit"].mean()),
            "lost": float(len(lost)), "won": float(len(won)), "jumped": float((far > field).sum()),
            "slid": float((far <= field).sum()),
            "median_distance_lost": float(np.median(far)) if len(far) else float("nan"),
            "area_early": float(a["area"].mean()), "area_late": float(b["area"].mean()),
            "ties_early": float(a["ties"].mean()), "ties_late": float(b["ties"].mean())}
