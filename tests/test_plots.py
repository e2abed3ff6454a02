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


def test_a_prediction_is_drawn_for_a_person(tmp_path):
    from PIL import Image

    image = np.full((64, 96), 120, np.uint8)
    prob = np.zeros((64, 96), np.float32)
    prob[20:30, 40:50] = 0.9
    fig = plots.prediction(image, prob, boxes=[(40, 20, 50, 30, 0.9)], score=0.93, name="a/x.png",
                           path=tmp_path / "x.png")
    assert len(fig.axes) == 2  # the image and its colour bar
    title = fig.axes[0].get_title()
    assert "a/x.png" in title and "p = 0.930 ≥ 0.5: defective, 1 box" in title
    assert len(fig.axes[0].patches) == 1
    width, height = Image.open(tmp_path / "x.png").size
    assert width >= 480 and height >= 64 * 480 / 96  # enlarged: a 96-px image is no thumbnail
    with pytest.raises(ValueError, match="same"):
        plots.prediction(image, prob[:10])


def test_defect_map_titles_say_which_is_the_truth_and_which_the_call():
    images = np.full((2, 32, 32), 128, np.uint8)
    maps = np.zeros((2, 32, 32), np.float32)
    fig = plots.defect_maps(images, maps, scores=[0.9, 0.2], labels=[0, 0])
    assert fig.axes[0].get_title() == "truth: defect-free\ncalled defective (p=0.90)"  # a false alarm
    assert fig.axes[1].get_title() == "truth: defect-free\ncalled defect-free (p=0.20)"
