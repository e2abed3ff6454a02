"""Feature competition: the maths of SACNN's head on the logits (paper, Eqs. 2–4).

Every pixel of the last feature map is classified into ``1 + K`` classes by a softmax (class 0 =
defect-free, classes 1..K = defect types). In each defective layer the pixels compete and the spatial
maximum is the image's probability (Eq. 2)::

    l* = max_{s,t} softmax(F)[k, s, t]

and a sample's loss is the binary cross-entropy of that winner against the image label (Eq. 3),
summed over the batch (Eq. 4)::

    loss = -(l · log l* + (1 - l) · log(1 - l*))

Everything is computed in log space and in float32, so it stays finite when ``l*`` rounds to 0 or 1:
``log l*`` is the maximum of the log-softmax, and ``log(1 - l*)`` is the log of the other classes'
probability mass at the winning pixel, ``logsumexp(other logits) - logsumexp(all logits)`` there. The
loss depends on each image's logits only at its winning pixel, so only that pixel gets a gradient.

All functions are pure and take logits ``(B, 1 + K, s, t)`` as :class:`~sacnn_lab.model.SACNN` returns.

**Other aggregations** (``aggregation=``, an ablation of the paper's one idea; the map is always the same
per-pixel defective layer, only the image's probability is pooled otherwise):

- ``"max"``: the paper's competition (and global max pooling, Oquab et al., CVPR 2015); only the winner
  gets a gradient;
- ``"mean"``: the mean of the layer (global average pooling, as in CAM, Zhou et al., CVPR 2016): every
  pixel gets a gradient; ``log l* = logsumexp(log p) - log N`` and ``log(1 - l*) = logsumexp(log(1 - p))
  - log N``, both exact in log space;
- ``"topk"``: the mean of the ``k`` highest pixels (WILDCAT, Durand et al., CVPR 2017), ``k`` a count
  (``>= 1``) or a share of the pixels (``< 1``); only those ``k`` get a gradient; the same log-space sums
  over them;
- ``"lse"``: log-sum-exp pooling of the probabilities with sharpness ``r`` (Pinheiro & Collobert, CVPR 2015),
  ``l* = (1/r) log mean exp(r p)``, between the mean (``r → 0``) and the maximum (``r → ∞``);
  ``1 - l* = -(1/r) log mean exp(-r (1 - p))``, each side computed with ``log1p`` / ``expm1`` near 0 so that
  neither loses its digits there, by ``logsumexp`` elsewhere so that neither overflows nor takes the log of 0
  for a large ``r``, and from the mean's log where it underflows.
"""

from __future__ import annotations

import math
from typing import Sequence

import torch

from .config import AGGREGATIONS, _check_aggregation  # noqa: F401 (AGGREGATIONS re-exported)

__all__ = ["defect_layers", "image_scores", "winning_pixels", "competition_loss", "pool", "AGGREGATIONS",
           "cell_targets", "mask_loss"]

REDUCTIONS = ("sum", "mean", "none")


def topk_count(topk_k: float, pixels: int) -> int:
    """The number of pixels ``"topk"`` averages: ``topk_k`` itself when >= 1 (at most ``pixels``), else that
    share of the ``pixels``, rounded up (at least 1)."""
    k = int(topk_k) if topk_k >= 1 else math.ceil(topk_k * pixels)
    return max(1, min(k, pixels))


def pool(layers: torch.Tensor, aggregation: str = "max", lse_r: float = 5.0, topk_k: float = 0.05) -> torch.Tensor:
    """An image's probability from its defective layer(s), by ``aggregation`` (see the module's text).

    Args:
        layers: ``(B, K, s, t)`` per-pixel probabilities in [0, 1] (:func:`defect_layers`).
        aggregation: ``"max"``, ``"mean"``, ``"lse"`` or ``"topk"``.
        lse_r: the sharpness ``r`` of ``"lse"``.
        topk_k: ``k`` of ``"topk"``: a count, or a share of the pixels.

    Returns:
        ``(B, K)`` in [0, 1]: what :func:`image_scores` gives for the same logits.
    """
    _check_aggregation(aggregation, lse_r, topk_k)
    p = layers.float().flatten(2)
    if aggregation == "max":
        return p.amax(2)
    if aggregation == "mean":
        return p.mean(2)
    if aggregation == "topk":
        return p.topk(topk_count(topk_k, p.shape[2]), dim=2).values.mean(2)
    return (_log_mean_exp(lse_r * p, 2) / lse_r).clamp(0.0, 1.0)


def _log_mean_exp(z: torch.Tensor, dim: int) -> torch.Tensor:
    """``log(mean(exp(z)))`` over ``dim``, to full float32 precision near 0 and finite for any ``z``.

    Near 0 (the mean of ``expm1(z)`` within ±1/2) it is ``log1p(mean(expm1(z)))``, which keeps the digits a
    plain ``log(mean(exp))`` loses; elsewhere ``m + log(mean(exp(z - m)))`` with ``m`` the maximum, which neither
    overflows (large ``z``) nor takes the log of a mean that rounded to 0 (``z`` far below 0 everywhere:
    ``log1p(-1)``, the NaN that log-sum-exp pooling gave for ``r`` above about 16). The first branch's input is
    clamped where the second is used, and the second is finite everywhere, so neither passes an infinite gradient
    into ``torch.where``.
    """
    u = torch.expm1(z.clamp(-30.0, 30.0)).mean(dim)  # where |u| < 1/2, no z is near either clamp
    near = u.abs() < 0.5
    small = torch.log1p(torch.where(near, u, torch.zeros_like(u)))
    # the mean of exp(z - m) is at least 1/N, so its log is finite; no math.log of the shape, which an exported
    # graph with a dynamic size would keep at the N it was traced at
    m = z.detach().amax(dim, keepdim=True)
    large = m.squeeze(dim) + torch.log(torch.exp(z - m).mean(dim))
    return torch.where(near, small, large)


def _log_pooled(logits: torch.Tensor, aggregation: str, lse_r: float, topk_k: float
                ) -> tuple[torch.Tensor, torch.Tensor]:
    """``(log l*, log(1 - l*))``, each ``(B, K)`` with gradients, for an aggregation other than ``"max"``."""
    x = logits.float().flatten(2)  # (B, C, N)
    classes, n = x.shape[1], x.shape[2]
    lse_all = torch.logsumexp(x, dim=1, keepdim=True)  # (B, 1, N)
    log_p = x[:, 1:] - lse_all  # (B, K, N)
    log_q = torch.stack([torch.logsumexp(torch.cat([x[:, :c], x[:, c + 1:]], dim=1), dim=1)
                         for c in range(1, classes)], dim=1) - lse_all  # log(1 - p), (B, K, N)
    if aggregation == "topk":
        k = topk_count(topk_k, n)
        with torch.no_grad():
            idx = log_p.topk(k, dim=2).indices
        log_p, log_q, n = log_p.gather(2, idx), log_q.gather(2, idx), k
    log_mean_p = torch.logsumexp(log_p, dim=2) - math.log(n)
    log_mean_q = torch.logsumexp(log_q, dim=2) - math.log(n)
    if aggregation in ("mean", "topk"):
        return log_mean_p, log_mean_q
    # lse: l* = (1/r) log mean exp(r p), 1 - l* = -(1/r) log mean exp(-r q); where either is too small for
    # its log, it equals the mean of p (or of q) to first order in r·p
    s = _log_mean_exp(lse_r * log_p.exp(), 2) / lse_r
    t = -_log_mean_exp(-lse_r * log_q.exp(), 2) / lse_r
    tiny = 1e-6
    log_s = torch.where(s > tiny, torch.log(s.clamp_min(tiny)), log_mean_p)
    log_t = torch.where(t > tiny, torch.log(t.clamp_min(tiny)), log_mean_q)
    return log_s, log_t


def _check_logits(logits: torch.Tensor) -> None:
    if not isinstance(logits, torch.Tensor):
        raise TypeError(f"logits must be a torch.Tensor (B, 1 + K, s, t), not {type(logits).__name__}")
    if logits.dim() != 4 or logits.shape[1] < 2:
        raise ValueError(f"logits must have shape (B, 1 + K, s, t) with K >= 1, got {tuple(logits.shape)}")
    if not logits.is_floating_point():
        raise TypeError(f"logits must be floating point, not {logits.dtype}")


def defect_layers(logits: torch.Tensor) -> torch.Tensor:
    """Per-pixel probability of each defect type: the softmax's layers 1..K.

    Args:
        logits: ``(B, 1 + K, s, t)``.

    Returns:
        Probabilities ``(B, K, s, t)`` in float32 (for K = 1, layer 0 is the paper's defective layer).
    """
    _check_logits(logits)
    return torch.softmax(logits.float(), dim=1)[:, 1:]


def _winners(logits: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Winning flat pixel per (image, defect type), and the log-softmax of its defect class there."""
    log_p = torch.log_softmax(logits.float(), dim=1)[:, 1:].flatten(2)  # (B, K, s·t)
    best, idx = log_p.max(dim=2)  # (B, K) each
    return idx, best


def winning_pixels(logits: torch.Tensor) -> torch.Tensor:
    """The pixel that wins the competition in each defective layer.

    Args:
        logits: ``(B, 1 + K, s, t)``.

    Returns:
        Flat indices ``(B, K)`` (int64) into the ``s · t`` pixels, row-major: ``row = i // t``,
        ``col = i % t``.
    """
    _check_logits(logits)
    return _winners(logits)[0]


def image_scores(logits: torch.Tensor, aggregation: str = "max", lse_r: float = 5.0, topk_k: float = 0.05
                 ) -> torch.Tensor:
    """Image-level probability of each defect type: the spatial maximum of its layer (Eq. 2), or another
    ``aggregation`` of it (see the module's text and :func:`pool`).

    Args:
        logits: ``(B, 1 + K, s, t)``.
        aggregation, lse_r, topk_k: how the layer is pooled (default: the paper's maximum).

    Returns:
        ``l*`` of shape ``(B, K)``, float32 in [0, 1].
    """
    _check_logits(logits)
    _check_aggregation(aggregation, lse_r, topk_k)
    if aggregation == "max":
        return _winners(logits)[1].exp()
    return _log_pooled(logits, aggregation, lse_r, topk_k)[0].exp().clamp(0.0, 1.0)


def _check_labels(labels: torch.Tensor, batch: int, num_types: int) -> None:
    if not isinstance(labels, torch.Tensor):
        raise TypeError(f"labels must be a torch.Tensor (B,) of ints, not {type(labels).__name__}")
    if labels.is_floating_point() or labels.is_complex():
        raise TypeError(f"labels must be an integer or bool tensor (0 = defect-free), not {labels.dtype}")
    if labels.shape != (batch,):
        raise ValueError(f"labels must have shape ({batch},) to match the logits, got {tuple(labels.shape)}")
    if not batch:
        return
    if labels.device.type != "cpu":  # no synchronisation (nor a read, which a CUDA graph's capture forbids):
        torch._assert_async(((labels >= 0) & (labels <= num_types)).all())  # a device-side assert instead
    elif bool(((labels < 0) | (labels > num_types)).any()):
        raise ValueError(f"labels must lie in 0..{num_types} (0 = defect-free), got {labels.tolist()}")


def competition_loss(
    logits: torch.Tensor,
    labels: torch.Tensor,
    class_weights: Sequence[float] | None = None,
    reduction: str = "sum",
    aggregation: str = "max",
    lse_r: float = 5.0,
    topk_k: float = 0.05,
) -> torch.Tensor:
    """The SACNN loss: cross-entropy between each defective layer's winner and the image label.

    For K = 1 this is exactly Eqs. 3–4 of the paper. For K > 1 each defect type ``k`` is a
    one-vs-rest problem on its own layer's winner, ``y_k = [label == k]``, and the K binary
    cross-entropies are summed per sample::

        loss_b = -Σ_k ( w1 · y_k · log l*_k + w0 · (1 - y_k) · log(1 - l*_k) )

    Args:
        logits: ``(B, 1 + K, s, t)``, any float dtype (computed in float32).
        labels: ``(B,)`` integers in ``0..K``; 0 is defect-free, ``k`` is defect type ``k``.
        class_weights: ``(w_defect_free, w_defective)`` = ``(w0, w1)`` weighting the two terms of
            Eq. 3, e.g. against class imbalance; ``None`` is ``(1, 1)``, the paper.
        reduction: ``"sum"`` over the batch (Eq. 4, the paper), ``"mean"`` over the batch, or
            ``"none"`` for the per-sample losses ``(B,)``.
        aggregation, lse_r, topk_k: how each layer's pixels become ``l*`` (default: the paper's maximum;
            see the module's text): the same cross-entropy on another pooling.

    Returns:
        A scalar (``"sum"``, ``"mean"``) or ``(B,)`` (``"none"``).

    Raises:
        TypeError: logits or labels of the wrong kind.
        ValueError: shapes that do not match, labels out of range, bad weights or reduction.
    """
    _check_logits(logits)
    if reduction not in REDUCTIONS:
        raise ValueError(f"reduction must be one of {REDUCTIONS}, not {reduction!r}")
    batch, classes = logits.shape[:2]
    num_types = classes - 1
    _check_labels(labels, batch, num_types)
    if class_weights is None:
        w0, w1 = 1.0, 1.0
    else:
        if len(class_weights) != 2:
            raise ValueError(f"class_weights must be (w_defect_free, w_defective), got {class_weights!r}")
        w0, w1 = (float(w) for w in class_weights)
        if w0 < 0 or w1 < 0:
            raise ValueError(f"class_weights must be >= 0, got {class_weights!r}")

    _check_aggregation(aggregation, lse_r, topk_k)
    x = logits.float().flatten(2)  # (B, C, N)
    own = torch.arange(1, classes, device=x.device)  # class of layer k
    if aggregation == "max":
        with torch.no_grad():
            idx, _ = _winners(logits)  # (B, K): the argmax carries no gradient anyway
        # at_win[b, c, k]: logit of class c at the pixel that wins defect layer k of image b
        at_win = x.gather(2, idx[:, None, :].expand(batch, classes, num_types))
        lse_all = torch.logsumexp(at_win, dim=1)  # (B, K)
        is_own = torch.arange(classes, device=x.device)[:, None] == own[None, :]  # (C, K)
        log_l = at_win.gather(1, own.view(1, 1, -1).expand(batch, 1, num_types)).squeeze(1) - lse_all
        log_not_l = torch.logsumexp(at_win.masked_fill(is_own, float("-inf")), dim=1) - lse_all
    else:
        log_l, log_not_l = _log_pooled(logits, aggregation, lse_r, topk_k)

    y = (labels.to(x.device).long()[:, None] == own[None, :]).float()  # (B, K)
    per_sample = -(w1 * y * log_l + w0 * (1 - y) * log_not_l).sum(dim=1)  # (B,)
    if reduction == "sum":
        return per_sample.sum()
    if reduction == "mean":
        return per_sample.mean()
    return per_sample


def cell_targets(masks: torch.Tensor, size: tuple[int, int], cover: float = 0.5) -> tuple[torch.Tensor, torch.Tensor]:
    """The supervised reference's patch labels: which cells of an ``s × t`` map a true mask covers.

    The defect map is the ``s × t`` layer stretched over the image, so cell ``(i, j)`` stands for the
    image's ``(i, j)``-th block of an even ``s × t`` grid. A cell is defective when the mask covers at least
    ``cover`` of its block, or when it is its image's most covered cell (a defect smaller than a cell still
    marks one); defect-free when the mask misses its block; and left out of the loss in between (a patch
    that shows a sliver of a defect is neither, as patch classifiers usually treat it).

    Args:
        masks: ``(B, H, W)`` bool (or 0/1) truth masks.
        size: ``(s, t)``, the logits' spatial size.
        cover: the share of a cell's block the mask must cover for the cell to be defective.

    Returns:
        ``(defective, defect_free)``, each ``(B, s, t)`` bool (an image with an empty mask: all defect-free).
    """
    if masks.dim() != 3:
        raise ValueError(f"masks must be (B, H, W), got shape {tuple(masks.shape)}")
    size = tuple(int(v) for v in size)
    m = masks.float()[:, None]
    share = torch.nn.functional.adaptive_avg_pool2d(m, size)[:, 0]  # (B, s, t) covered share of each block
    touched = torch.nn.functional.adaptive_max_pool2d(m, size)[:, 0] > 0.5
    flat = share.flatten(1)
    top = torch.zeros_like(flat, dtype=torch.bool).scatter_(1, flat.argmax(1, keepdim=True), True).view_as(share)
    defective = touched & ((share >= cover) | top)
    return defective, ~touched


def mask_loss(logits: torch.Tensor, masks: torch.Tensor, labels: torch.Tensor,
              class_weights: Sequence[float] | None = None, reduction: str = "sum") -> torch.Tensor:
    """The supervised reference's loss: every cell of the map classified against the true mask.

    Each cell's target is its image's class (``label``, a defect type for ``K > 1``) where the mask covers
    it, defect-free where the mask misses it, none where it shows only a sliver (:func:`cell_targets`); the
    cross-entropy of its softmax is averaged over an image's defective cells and, separately, over its
    defect-free cells, and the two means are added (weighted by ``class_weights``): however small its defect,
    an image's defective cells weigh as much as the rest of it. An image labelled defective whose mask is
    empty (its defect not known) is left out: its cells' truth is unknown. A cell is a patch of the image (its
    receptive field), so this is a patch classifier trained from the labels SACNN never sees; its image score is
    still the highest cell's.

    Args:
        logits: ``(B, 1 + K, s, t)``.
        masks: ``(B, H, W)`` truth masks (any size: they are pooled onto the ``s × t`` cells); an image with
            an empty mask counts as defect-free wherever its label says.
        labels: ``(B,)`` in ``0..K``.
        class_weights: ``(w_defect_free, w_defective)`` weighting the two means; ``None``: ``(1, 1)``.
        reduction: ``"sum"`` over the batch (as Eq. 4), ``"mean"``, or ``"none"`` (``(B,)``).

    Returns:
        A scalar, or ``(B,)`` for ``"none"``.
    """
    _check_logits(logits)
    if reduction not in REDUCTIONS:
        raise ValueError(f"reduction must be one of {REDUCTIONS}, not {reduction!r}")
    batch, classes = logits.shape[:2]
    _check_labels(labels, batch, classes - 1)
    if masks.shape[0] != batch:
        raise ValueError(f"masks must hold {batch} masks to match the logits, got {masks.shape[0]}")
    w0, w1 = (1.0, 1.0) if class_weights is None else (float(w) for w in class_weights)
    bad = (labels.to(logits.device) > 0)[:, None]  # a defect-free image has no defective cell
    cells, free = (c.flatten(1) for c in cell_targets(masks.to(logits.device), logits.shape[2:]))  # (B, s·t)
    cells, free = cells & bad, free | ~bad
    known = (cells.any(1) | ~bad[:, 0]).float()  # a defective image without a mask: no truth for its cells
    target = torch.where(cells, labels.to(logits.device).long()[:, None], 0)  # (B, s·t) class per cell
    ce = -torch.log_softmax(logits.float().flatten(2), dim=1).gather(1, target[:, None]).squeeze(1)  # (B, s·t)
    pos, neg = cells.float(), free.float()
    per_sample = known * (w1 * (ce * pos).sum(1) / pos.sum(1).clamp(min=1)
                          + w0 * (ce * neg).sum(1) / neg.sum(1).clamp(min=1))
    if reduction == "sum":
        return per_sample.sum()
    if reduction == "mean":
        return per_sample.mean()
    return per_sample
