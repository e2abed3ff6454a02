"""Tests of sacnn_lab.metrics: every figure on hand-made maps and boxes with known answers."""

from __future__ import annotations

import math

import numpy as np
import pytest

from sacnn_lab.metrics import (
    LOCALISATION_COLUMNS,
    average_precision,
    boxes_mask,
    classification,
    compactness,
    dice,
    energy_inside,
    energy_pointing_game,
    false_alarm_area,
    image_localisation,
    iou,
    localisation_table,
    pixel_auroc,
    pixel_average_precision,
    pointing_game,
    summarise,
)

BOX = (10, 20, 30, 30)  # x0, y0, x1, y1: 20 columns × 10 rows = 200 pixels


def box_map(box=BOX, value: float = 1.0, shape=(64, 64)) -> np.ndarray:
    m = np.zeros(shape, np.float32)
    x0, y0, x1, y1 = box
    m[y0:y1, x0:x1] = value
    return m


def test_boxes_mask_is_the_union_and_skips_padding():
    m = boxes_mask([BOX, (25, 25, 40, 28), (-1, -1, -1, -1)], (64, 64))
    assert m.dtype == bool and m.shape == (64, 64)
    assert m.sum() == 200 + 15 * 3 - 5 * 3  # the two boxes overlap on 5 × 3 pixels
    assert m[20, 10] and not m[30, 10] and not m[20, 30]  # x1, y1 exclusive


def test_pointing_game_inside_and_outside():
    inside, outside = box_map(), box_map((40, 40, 50, 50))
    hits = pointing_game(np.stack([inside, outside]), [[BOX], [BOX]])
    assert hits.tolist() == [True, False]
    # images without boxes are skipped
    assert pointing_game(np.stack([inside, outside]), [[BOX], []]).tolist() == [True]
    # padded (N, K, 4) box arrays, as generated batches and folders hold them: -1 rows are no boxes
    padded = np.array([[BOX, (-1, -1, -1, -1)], [(-1, -1, -1, -1)] * 2])
    assert pointing_game(np.stack([inside, outside]), padded).tolist() == [True]


def test_pointing_game_tolerance_counts_near_misses_within_the_radius():
    peak = np.zeros((1, 64, 64), np.float32)
    peak[0, 25, 36] = 1  # 7 columns right of the box's last column (29), inside its rows
    assert pointing_game(peak, [[BOX]], tolerance=6).tolist() == [False]
    assert pointing_game(peak, [[BOX]], tolerance=7).tolist() == [True]
    corner = np.zeros((1, 64, 64), np.float32)
    corner[0, 33, 33] = 1  # 4 rows and 4 columns off the corner (29, 29): distance 5.66
    assert pointing_game(corner, [[BOX]], tolerance=5).tolist() == [False]
    assert pointing_game(corner, [[BOX]], tolerance=6).tolist() == [True]
    # with a mask: the same rule, measured to the nearest true pixel
    mask = box_map().astype(bool)[None]
    assert pointing_game(corner, [[BOX]], masks=mask, tolerance=5).tolist() == [False]
    assert pointing_game(corner, [[BOX]], masks=mask, tolerance=6).tolist() == [True]
    edge = np.zeros((1, 64, 64), np.float32)
    edge[0, 0, 63] = 1  # the window is cut by the image border
    far = np.zeros((1, 64, 64), bool)
    far[0, 3, 60] = True
    assert pointing_game(edge, [[BOX]], masks=far, tolerance=4.3).tolist() == [True]
    assert pointing_game(edge, [[BOX]], masks=far, tolerance=4.2).tolist() == [False]
    with pytest.raises(ValueError, match="tolerance"):
        pointing_game(corner, [[BOX]], tolerance=-1)


def test_energy_pointing_game_known_shares():
    assert energy_inside(box_map(), [BOX]) == 1.0
    assert energy_inside(box_map((40, 40, 50, 50)), [BOX]) == 0.0
    assert energy_inside(np.ones((64, 64)), [BOX]) == pytest.approx(200 / 64**2)  # uniform: the box's share
    half = box_map() + box_map((40, 40, 60, 50))  # equal mass inside and outside
    assert energy_inside(half, [BOX]) == pytest.approx(0.5)
    assert math.isnan(energy_inside(np.zeros((64, 64)), [BOX]))
    shares = energy_pointing_game(np.stack([box_map(), half, half]), [[BOX], [BOX], []])
    np.testing.assert_allclose(shares, [1.0, 0.5])
    with pytest.raises(ValueError, match=">= 0"):
        energy_inside(-box_map(), [BOX])


def test_iou_dice_compactness_known_answers():
    truth = box_map() > 0
    assert iou(truth, truth) == 1.0 and dice(truth, truth) == 1.0 and compactness(truth, truth) == 1.0
    shifted = box_map((20, 20, 40, 30)) > 0  # half of it overlaps: 100 of 200 pixels
    assert iou(shifted, truth) == pytest.approx(100 / 300)
    assert dice(shifted, truth) == pytest.approx(200 / 400)
    assert compactness(shifted, truth) == 1.0  # same area, wrong place: compactness says nothing of position
    wide = box_map((10, 10, 30, 30)) > 0  # 400 pixels around the 200 true ones
    assert iou(wide, truth) == 0.5 and compactness(wide, truth) == 2.0
    empty = np.zeros_like(truth)
    assert iou(empty, truth) == 0.0 and dice(empty, truth) == 0.0 and compactness(empty, truth) == 0.0
    assert math.isnan(iou(empty, empty)) and math.isnan(compactness(truth, empty))
    with pytest.raises(ValueError, match="same shape"):
        iou(truth, truth[:10])


def test_false_alarm_area():
    m = np.zeros((10, 10))
    m[:2, :5] = 0.9  # 10 of 100 pixels
    assert false_alarm_area(m) == pytest.approx(0.1)
    assert false_alarm_area(m, threshold=0.95) == 0.0
    assert false_alarm_area(np.zeros((10, 10))) == 0.0


def test_average_precision_by_hand():
    assert average_precision([0.9, 0.8, 0.7, 0.6], [1, 1, 0, 0]) == pytest.approx(1.0)
    # ranks: hit, miss, hit, miss → precisions 1 and 2/3 at recalls 1/2 and 1
    assert average_precision([0.9, 0.8, 0.7, 0.6], [1, 0, 1, 0]) == pytest.approx(0.5 * 1 + 0.5 * 2 / 3)
    # ties enter together: all scores equal → the positives' share
    assert average_precision([0.5] * 4, [1, 0, 0, 0]) == pytest.approx(0.25)
    assert math.isnan(average_precision([0.1, 0.2], [0, 0]))


def test_pixel_auroc_and_ap():
    truth = box_map() > 0
    assert pixel_auroc(box_map(), truth) == 1.0 and pixel_average_precision(box_map(), truth) == 1.0
    assert pixel_auroc(1 - box_map(), truth) == 0.0
    assert pixel_auroc(np.ones((64, 64)), truth) == 0.5  # a flat map ranks nothing


@pytest.mark.parametrize("levels", [None, 5, 2])  # continuous scores, a few tied levels, two
def test_pixel_ranking_is_scikit_learns_auroc_and_ap(levels):
    from sklearn.metrics import average_precision_score, roc_auc_score

    from sacnn_lab.metrics import pixel_ranking

    rng = np.random.default_rng(0 if levels is None else levels)
    for _ in range(20):
        truth = rng.random((17, 23)) < rng.uniform(0.02, 0.5)
        m = rng.random((17, 23)) + 0.6 * truth * rng.random()
        if levels is not None:
            m = np.round(m * (levels - 1)) / (levels - 1)  # many ties, between the classes too
        if not truth.any() or truth.all():
            continue
        a, ap = pixel_ranking(m, truth)
        assert a == pytest.approx(roc_auc_score(truth.ravel(), m.ravel()), abs=1e-12)
        assert ap == pytest.approx(average_precision_score(truth.ravel(), m.ravel()), abs=1e-12)
    only_defect = np.ones((4, 4), bool)
    a, ap = pixel_ranking(np.random.default_rng(1).random((4, 4)), only_defect)
    assert math.isnan(a) and ap == 1.0
    assert all(math.isnan(v) for v in pixel_ranking(np.ones((4, 4)), np.zeros((4, 4), bool)))


def test_otsu_binarisation_finds_a_faint_defect():
    faint = box_map(value=0.3)  # below the fixed 0.5 threshold, yet cleanly separated
    r = image_localisation(faint, [BOX])
    assert r["iou_fixed"] == 0.0 and r["compactness_fixed"] == 0.0
    assert r["iou_otsu"] == 1.0 and r["dice_otsu"] == 1.0 and r["compactness_otsu"] == 1.0
    assert r["pointing_game"] == 1.0 and r["energy_pointing_game"] == 1.0 and r["true_area"] == 200
    # a mask replaces the box union as the truth
    mask = np.zeros((64, 64), bool)
    mask[20:30, 10:20] = True  # the left half of the box
    assert image_localisation(box_map(), [BOX], mask=mask)["compactness_fixed"] == 2.0


def test_table_one_row_per_image_and_summary():
    maps = np.stack([box_map(), box_map((40, 40, 50, 50)), np.zeros((64, 64)), box_map((0, 0, 8, 8))])
    labels = np.array([1, 1, 0, 0])
    scores = np.array([0.9, 0.4, 0.2, 0.7])
    boxes = np.full((4, 1, 4), -1)
    boxes[0, 0] = boxes[1, 0] = BOX
    t = localisation_table(scores, labels, maps, boxes, method="toy")
    assert len(t) == 4 and list(t["image"]) == [0, 1, 2, 3]
    assert {"method", "label", "score", "predicted", "true_area", "false_alarm_area", *LOCALISATION_COLUMNS} \
        <= set(t.columns)
    assert t["pointing_game"].tolist()[:2] == [1.0, 0.0]
    assert t["iou_fixed"].tolist()[:2] == [1.0, 0.0]
    assert t.loc[2:, list(LOCALISATION_COLUMNS)].isna().all().all()  # defect-free rows: no localisation
    assert t["false_alarm_area"].isna().tolist() == [True, True, False, False]
    assert t["false_alarm_area"].tolist()[3] == pytest.approx(64 / 64**2)
    s = summarise(t)
    assert list(s.index) == ["toy"]
    row = s.loc["toy"]
    assert row["images"] == 4 and row["defective"] == 2
    assert row["accuracy"] == pytest.approx(0.5)  # image 0 right, 1 missed, 2 right, 3 false alarm
    assert row["pointing_game"] == pytest.approx(0.5) and row["iou_fixed"] == pytest.approx(0.5)
    assert row["false_alarm_area"] == pytest.approx(64 / 64**2 / 2)
    assert row["auroc"] == classification(scores, labels)["auroc"]


def test_table_rejects_inconsistent_input():
    maps = np.zeros((2, 8, 8))
    with pytest.raises(ValueError, match="one entry per image"):
        localisation_table([0.1, 0.2, 0.3], [0, 1, 1], maps, [[], []])
    with pytest.raises(ValueError, match=r"\(N, H, W\)"):
        localisation_table([0.1], [0], np.zeros((8, 8)), [[]])
    with pytest.raises(ValueError, match="localisation_table"):
        import pandas as pd

        summarise(pd.DataFrame({"x": [1]}))
