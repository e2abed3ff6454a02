"""Widget logic in Python: the sliders change what is shown, from the recorded history only."""

from __future__ import annotations

import numpy as np
import pytest

from sacnn_lab.history import History
from sacnn_lab.widgets import ConvergenceExplorer


@pytest.fixture()
def history():
    rng = np.random.default_rng(0)
    h = History()
    h.probe_images = rng.integers(0, 255, (4, 32, 32), dtype=np.uint8)
    h.probe_labels = np.array([1, 1, 0, 1])
    h.probe_boxes = np.full((4, 2, 4), -1, np.int32)
    h.probe_boxes[0, 0] = (0, 0, 8, 8)
    h.probe_boxes[1] = [(12, 12, 18, 18), (0, 20, 6, 30)]
    h.probe_boxes[3, 0] = (24, 0, 32, 8)
    for e in range(3):  # maps drift from a wrong corner to the true one over the epochs
        m = np.zeros((4, 4, 4), np.float16)
        m[:, 3, 3] = 0.9 if e == 0 else 0.1
        m[:, 0, 0] = 0.9 if e == 2 else 0.2
        h.probe_maps[e] = m
        h.probe_scores[e] = m.reshape(4, -1).max(1).astype(np.float32)
    return h


def test_epoch_slider_changes_the_image(history):
    ex = ConvergenceExplorer(history, cols=2)
    assert ex.epoch == 2
    last = ex.image.value
    ex.epoch_slider.value = 0
    assert ex.image.value != last
    assert np.allclose(ex.current_maps(), history.maps_upsampled(0))
    at_zero = ex.image.value
    ex.show(epoch=2)
    assert ex.image.value != at_zero
    assert np.allclose(ex.current_maps(), history.maps_upsampled(2))


def test_threshold_and_method_redraw_and_report(history):
    ex = ConvergenceExplorer(history, epoch=2)
    before = ex.image.value
    ex.threshold_slider.value = 0.05
    assert ex.image.value != before
    ex.method_dropdown.value = "otsu"
    assert ex.threshold_slider.disabled
    ex.method_dropdown.value = "nms"
    assert "nms" in ex.status.value
    assert "pointing game on these images: 1/3" in ex.status.value  # image 0 hit at epoch 2
    ex.show(epoch=0)
    assert "0/3" in ex.status.value


def test_static_fallback_and_bad_arguments(history, tmp_path):
    ex = ConvergenceExplorer(history)
    bundle = ex._repr_mimebundle_()
    assert "image/png" in bundle and "application/vnd.jupyter.widget-view+json" in bundle
    with pytest.raises(ValueError, match="recorded epochs"):
        ConvergenceExplorer(history, epoch=7)
    with pytest.raises(ValueError, match="indices"):
        ConvergenceExplorer(history, images=[9])
    with pytest.raises(TypeError):
        ConvergenceExplorer(42)
    history.save(tmp_path)
    assert ConvergenceExplorer(tmp_path).epoch == 2  # from a saved run folder
