"""Figures: returned (never shown), the right elements drawn, clear errors on mismatched inputs."""

from __future__ import annotations

import numpy as np
import pytest
from matplotlib.patches import Rectangle

from sacnn_lab import plots
from sacnn_lab.history import History


def _detections_input():
    images = np.full((2, 32, 32), 128, np.uint8)
    maps = np.zeros((2, 32, 32), np.float32)
    maps[:, 8:16, 8:16] = 0.9
    masks = np.zeros((2, 32, 32), bool)
    masks[:, 6:18, 6:18] = True
    return images, maps, masks


def test_detections_outline_the_truth_and_box_only_what_is_called_defective():
    images, maps, masks = _detections_input()
    fig = plots.detections(images, maps, masks, scores=[0.9, 0.2], method="threshold")
    a, b = fig.axes[:2]
    boxes = [[p for p in ax.patches if isinstance(p, Rectangle)] for ax in (a, b)]
    assert len(boxes[0]) == 1 and boxes[1] == []  # the second image scored defect-free: no box
    x0, y0 = boxes[0][0].get_xy()
    assert (x0 + 0.5, y0 + 0.5, boxes[0][0].get_width()) == (8, 8, 8)
    assert a.collections and a.get_title() == "p=0.90"  # the mask's outline is a contour
    plain = plots.detections(images, masks=masks)  # the images alone, outlined
    assert not [p for p in plain.axes[0].patches if isinstance(p, Rectangle)]
    with pytest.raises(ValueError, match="same shape|must both be"):
        plots.detections(images, maps[:, :16])
    with pytest.raises(ValueError, match="masks must have"):
        plots.detections(images, maps, masks[:1])


def test_metric_curve_joins_figures_measured_every_few_epochs_against_time():
    h = History()
    h.epochs = [{"epoch": e, "train_time": 10.0 * e, **({"val_accuracy": 0.5 + e / 10} if e % 2 == 0 else {})}
                for e in range(1, 7)]
    fig = plots.metric_curve(h, ["val_accuracy"], x="train_time")
    (line,) = fig.axes[0].lines
    assert list(line.get_xdata()) == [20, 40, 60] and np.allclose(line.get_ydata(), [0.7, 0.9, 1.1])
    assert fig.axes[0].get_xlabel() == "seconds of training"
    with pytest.raises(ValueError, match="x must be"):
        plots.metric_curve(h, x="step")
