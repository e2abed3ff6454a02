"""Widget logic in Python: the sliders change what is shown, from the recorded history only."""

from __future__ import annotations

import io

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


def test_defect_free_images_sit_beside_the_defective_ones(history):
    ex = ConvergenceExplorer(history, images=[0, 1], epoch=1)  # defective only: a defect-free one is added
    assert ex.indices == [0, 1, 2]
    assert "defect-free: highest p" in ex.status.value and "0/1 called defective" in ex.status.value
    assert ConvergenceExplorer(history, images="defective", defect_free=0).indices == [0, 1, 3]
    assert ConvergenceExplorer(history).indices == [0, 1, 3, 2]  # every probe image, the defective first
    ex.show(epoch=0)  # epoch 0: every map peaks at 0.9, the defect-free image too
    assert "1/1 called defective" in ex.status.value


def test_play_steps_through_the_epochs_and_a_second_epoch_sits_beside(history):
    ex = ConvergenceExplorer(history)
    ex.play.value = 0  # the play button drives the epoch slider
    assert ex.epoch == 0
    ex.play.value = 1
    assert ex.epoch == 1
    assert ex.compare_image.layout.display == "none"
    ex.show(beside=2)
    assert ex.compare_epoch == 2 and ex.compare_image.layout.display is None
    assert ex.compare_image.value != ex.image.value and "right:" in ex.status.value
    ex.show(beside=-1)
    assert ex.compare_epoch is None and ex.compare_image.layout.display == "none"


def test_opacity_and_the_raw_map_with_its_winner(history):
    ex = ConvergenceExplorer(history, epoch=0)
    before = ex.image.value
    ex.show(opacity=1.0)
    assert ex.image.value != before
    ex.show(view="raw map")
    assert ex.threshold_slider.disabled and "winners" in ex.status.value
    np.testing.assert_array_equal(ex.winners(), [[3, 3]] * 4)  # epoch 0: every map's winner is the (3, 3) corner
    np.testing.assert_array_equal(ex.winners(2), [[0, 0]] * 4)
    cell = ex._cells[0]
    x, y = cell["winner"].get_data()
    assert (x[0], y[0]) == (3.5 * 32 / 4 - 0.5, 3.5 * 32 / 4 - 0.5)  # the centre of that pixel's 8x8 block
    assert "@(3,3)" in cell["title"].get_text()
    with pytest.raises(ValueError, match="view"):
        ex.show(view="3d")


def test_grad_cam_maps_of_a_baseline_run(history):
    base = History()
    base.probe_images, base.probe_labels, base.probe_boxes = history.probe_images, history.probe_labels, \
        history.probe_boxes
    m = np.zeros((4, 2, 2), np.float16)
    m[:, 1, 0] = 1.0
    base.probe_maps[1] = m
    base.probe_scores[1] = np.full(4, 0.7, np.float32)
    ex = ConvergenceExplorer(history, baseline=base, epoch=2)
    sacnn = ex.image.value
    ex.show(maps="Grad-CAM")
    assert ex.image.value != sacnn and "Grad-CAM (baseline epoch 1)" in ex.status.value
    np.testing.assert_array_equal(ex.raw_maps(), m[ex.indices].astype(np.float32))
    ex.show(epoch=0)  # before the baseline's first recorded epoch: its first
    assert "baseline epoch 1" in ex.status.value
    with pytest.raises(ValueError, match="baseline"):
        ConvergenceExplorer(history).show(maps="Grad-CAM")
    other = History()
    other.probe_images = history.probe_images[:, ::-1].copy()
    other.probe_maps[0], other.probe_scores[0] = m, np.zeros(4, np.float32)
    with pytest.raises(ValueError, match="same probe images"):
        ConvergenceExplorer(history, baseline=other)


def test_save_the_view_as_png_and_the_epochs_as_a_gif(history, tmp_path):
    from PIL import Image

    ex = ConvergenceExplorer(history, save_dir=tmp_path, epoch=1)
    ex.save_png_button.click()
    png = tmp_path / "explorer_epoch1.png"
    assert png.is_file() and str(png) in ex.saved.value
    with Image.open(png) as im:
        assert abs(im.info["dpi"][0] - 200) < 1 and im.width > 2 * Image.open(io.BytesIO(ex.png())).width
    ex.save_gif_button.click()
    with Image.open(tmp_path / "explorer.gif") as gif:
        assert gif.n_frames == 3 and gif.info["loop"] == 0
    assert ex.epoch == 1 and "epoch 1" in ex.status.value and bytes(ex.image.value) == ex.png()  # as it was
    with pytest.raises(ValueError, match="not recorded"):
        ex.save_gif(epochs=[5])
