"""Tests of sacnn_lab.inference: one forward pass per batch, input handling, and map → boxes."""

from __future__ import annotations

from collections import deque

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from sacnn_lab.competition import image_scores
from sacnn_lab.config import ModelConfig
from sacnn_lab.inference import (
    Box,
    Prediction,
    binarise,
    connected_components,
    localise,
    otsu_threshold,
    predict,
)
from sacnn_lab.model import SACNN


@pytest.fixture(scope="module")
def model() -> SACNN:
    torch.manual_seed(0)
    return SACNN(ModelConfig(channels=(4, 4, 4)))


@pytest.fixture(scope="module")
def images() -> np.ndarray:
    return np.random.default_rng(0).integers(0, 256, size=(3, 136, 136), dtype=np.uint8)


# ----------------------------------------------------------------------------------- predict


def test_predict_one_forward_per_batch(model: SACNN, images: np.ndarray) -> None:
    calls = []
    handle = model.register_forward_hook(lambda m, i, o: calls.append(o.shape))
    try:
        pred = predict(model, images)
        assert len(calls) == 1
        predict(model, images, batch_size=2)
        assert len(calls) == 3  # two more batches
    finally:
        handle.remove()
    assert isinstance(pred, Prediction) and len(pred) == 3
    assert pred.score.shape == (3,)
    assert pred.feature_map.shape == (3, 17, 17)
    assert pred.map.shape == (3, 136, 136)
    assert pred.map.device.type == "cpu" and pred.map.dtype == torch.float32
    assert not pred.map.is_inference()  # callers may edit the maps in place


def test_on_cpu_forward_passes_stay_small_and_give_the_same_result(model: SACNN) -> None:
    from sacnn_lab.inference import CPU_PIXELS_PER_PASS

    many = np.random.default_rng(1).integers(0, 256, size=(40, 136, 136), dtype=np.uint8)
    sizes = []
    handle = model.register_forward_hook(lambda m, i, o: sizes.append(o.shape[0]))
    try:
        big = predict(model, many, batch_size=256)
    finally:
        handle.remove()
    cap = CPU_PIXELS_PER_PASS // (136 * 136)
    assert sizes == [cap, 40 - cap] and 1 < cap < 40
    one_by_one = predict(model, many, batch_size=1)
    assert torch.allclose(big.map, one_by_one.map, atol=1e-6)
    assert torch.allclose(big.score, one_by_one.score, atol=1e-6)


def test_predict_is_consistent_with_the_logits(model: SACNN, images: np.ndarray) -> None:
    pred = predict(model, images)
    x = torch.from_numpy(images).float()[:, None] / 255
    with torch.no_grad():
        logits = model.eval()(x)
    torch.testing.assert_close(pred.score, image_scores(logits)[:, 0])
    torch.testing.assert_close(pred.score, pred.feature_map.flatten(1).amax(dim=1))
    expected_map = F.interpolate(
        pred.feature_map[:, None], size=(136, 136), mode="bilinear", align_corners=False
    )
    torch.testing.assert_close(pred.map, expected_map[:, 0])


def test_uint8_and_float_inputs_agree(model: SACNN, images: np.ndarray) -> None:
    from_uint8 = predict(model, images)
    from_float = predict(model, torch.from_numpy(images).float()[:, None] / 255)
    torch.testing.assert_close(from_uint8.map, from_float.map)
    torch.testing.assert_close(from_uint8.score, from_float.score)
    single = predict(model, images[1])  # (H, W)
    assert single.map.shape == (1, 136, 136)
    torch.testing.assert_close(single.score, from_uint8.score[1:2])


def test_predict_restores_training_mode(model: SACNN, images: np.ndarray) -> None:
    model.train()
    predict(model, images[:1])
    assert model.training
    model.eval()


def test_predict_two_defect_types(images: np.ndarray) -> None:
    model = SACNN(ModelConfig(channels=(4, 4), num_defect_types=2))
    pred = predict(model, images[:2])
    assert pred.score.shape == (2, 2)
    assert pred.feature_map.shape == (2, 2, 34, 34)
    assert pred.map.shape == (2, 2, 136, 136)


@pytest.mark.parametrize(
    ("bad", "error", "match"),
    [
        (np.zeros((2, 8, 8), dtype=np.float32), TypeError, "uint8"),
        (np.zeros((2, 1, 8, 8), dtype=np.uint8), ValueError, r"\(B, H, W\)"),
        (torch.zeros(2, 1, 8, 8, dtype=torch.uint8), TypeError, "floating point"),
        (torch.zeros(2, 8, 8), ValueError, r"\(B, C, H, W\)"),
        (torch.zeros(2, 3, 8, 8), ValueError, r"\(B, 1, H, W\)"),
        (torch.full((1, 1, 8, 8), 255.0), ValueError, r"\[0, 1\]"),
        ([[0, 1], [1, 0]], TypeError, "numpy"),
        (torch.zeros(0, 1, 8, 8), ValueError, "no image"),
    ],
)
def test_predict_rejects_bad_input(model: SACNN, bad, error: type, match: str) -> None:
    with pytest.raises(error, match=match):
        predict(model, bad)


# ----------------------------------------------------------------------------------- localise


def blob_map() -> np.ndarray:
    m = np.zeros((64, 64), dtype=np.float32)
    m[10:20, 20:35] = 0.9
    m[12, 25] = 0.95
    return m


def test_single_blob_gives_one_box() -> None:
    boxes = localise(blob_map())
    assert boxes == [Box(20, 10, 35, 20, pytest.approx(0.95))]
    assert boxes[0].width == 15 and boxes[0].height == 10 and boxes[0].area == 150
    assert localise(torch.from_numpy(blob_map())) == boxes  # tensors work too


def test_two_separated_blobs_give_two_boxes() -> None:
    m = blob_map()
    m[40:50, 5:12] = 0.7
    boxes = localise(m, method="threshold")
    assert [(b.x0, b.y0, b.x1, b.y1) for b in boxes] == [(20, 10, 35, 20), (5, 40, 12, 50)]  # by score
    assert boxes[1].score == pytest.approx(0.7)
    assert len(localise(m, max_boxes=1)) == 1
    assert len(localise(m, min_area=100)) == 1  # the 70-pixel blob is dropped
    assert localise(m, threshold=0.8) == boxes[:1]


def test_components_are_8_connected() -> None:
    mask = np.zeros((6, 6), dtype=bool)
    mask[1, 1] = mask[2, 2] = mask[3, 3] = True  # a diagonal line: one component
    mask[1, 4] = True  # alone
    labels, n = connected_components(mask)
    assert n == 2
    assert labels[1, 1] == labels[2, 2] == labels[3, 3] == 1 and labels[1, 4] == 2
    assert (labels[~mask] == 0).all()


def _reference_components(mask: np.ndarray) -> int:
    """Breadth-first flood fill, 8-connectivity."""
    seen = np.zeros_like(mask)
    n = 0
    for y, x in zip(*np.nonzero(mask)):
        if seen[y, x]:
            continue
        n += 1
        seen[y, x] = True
        queue = deque([(y, x)])
        while queue:
            cy, cx = queue.popleft()
            for dy in (-1, 0, 1):
                for dx in (-1, 0, 1):
                    ny, nx = cy + dy, cx + dx
                    inside = 0 <= ny < mask.shape[0] and 0 <= nx < mask.shape[1]
                    if inside and mask[ny, nx] and not seen[ny, nx]:
                        seen[ny, nx] = True
                        queue.append((ny, nx))
    return n


@pytest.mark.parametrize("density", [0.2, 0.45, 0.6])
def test_components_match_a_flood_fill(density: float) -> None:
    rng = np.random.default_rng(int(density * 100))
    mask = rng.random((40, 50)) < density
    labels, n = connected_components(mask)
    assert n == _reference_components(mask)
    assert set(np.unique(labels[mask])) == set(range(1, n + 1))
    # every label is one connected piece: relabelling a single component finds one component
    for c in range(1, n + 1):
        assert connected_components(labels == c)[1] == 1


def test_otsu_on_a_bimodal_map() -> None:
    rng = np.random.default_rng(0)
    m = np.clip(rng.normal(0.1, 0.03, size=(64, 64)), 0, 1)
    m[30:40, 30:45] = np.clip(rng.normal(0.8, 0.03, size=(10, 15)), 0, 1)
    t = otsu_threshold(m)
    assert 0.25 < t < 0.65
    assert otsu_threshold(np.array([0.1] * 50 + [0.9] * 50)) == pytest.approx(0.5, abs=0.01)
    assert (binarise(m, "otsu") == (m > t)).all()
    assert [(b.x0, b.y0, b.x1, b.y1) for b in localise(m, method="otsu")] == [(30, 30, 45, 40)]


def test_nms_gives_peak_centred_boxes_and_suppresses_duplicates() -> None:
    yy, xx = np.mgrid[0:64, 0:64]

    def bump(cy: int, cx: int, a: float) -> np.ndarray:
        return a * np.exp(-((yy - cy) ** 2 + (xx - cx) ** 2) / (2 * 1.0**2))

    m = np.maximum.reduce([bump(20, 20, 0.9), bump(24, 23, 0.7), bump(45, 48, 0.8)])
    boxes = localise(m, method="nms", box_size=15, iou=0.3)
    assert [(b.x0, b.y0, b.x1, b.y1) for b in boxes] == [(13, 13, 28, 28), (41, 38, 56, 53)]
    assert [b.score for b in boxes] == pytest.approx([0.9, 0.8])
    # with no suppression the duplicate peak survives
    assert len(localise(m, method="nms", box_size=15, iou=1.0)) == 3
    # a peak below the threshold is not a defect
    assert len(localise(m, method="nms", box_size=15, threshold=0.85)) == 1
    # the default box is the visual field of the config's last block (50 px for the characters)
    (big, _) = localise(m, method="nms", config=ModelConfig.characters())
    assert (big.x0, big.y0, big.x1, big.y1) == (0, 0, 45, 45)  # 20 - 25 clipped to 0, 20 + 25


@pytest.mark.parametrize("method", ["threshold", "otsu", "nms"])
def test_all_zero_map_gives_no_boxes(method: str) -> None:
    assert localise(np.zeros((32, 32)), method=method, box_size=9) == []


def test_localise_rejects_bad_input() -> None:
    with pytest.raises(ValueError, match=r"\(H, W\)"):
        localise(np.zeros((2, 8, 8)))
    with pytest.raises(ValueError, match="method"):
        localise(np.zeros((8, 8)), method="watershed")
    with pytest.raises(ValueError, match="box_size"):
        localise(np.zeros((8, 8)), method="nms")
    with pytest.raises(ValueError, match="NaN"):
        localise(np.full((8, 8), np.nan))
    with pytest.raises(ValueError, match="binarise"):
        binarise(np.zeros((8, 8)), method="nms")
