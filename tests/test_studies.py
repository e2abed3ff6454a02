"""Studies: one run per setting under one budget, gathered into a tidy table."""

from __future__ import annotations

import math

import pytest

from sacnn_lab.config import RunConfig
from sacnn_lab.studies import AGGREGATION_FIGURES, aggregation_study


def test_the_aggregation_study_trains_each_pooling_alike_and_measures_the_maps_every_epoch(tmp_path):
    base = RunConfig.preset("fast", epochs=2, early_epochs=0, samples_per_epoch=48, val_size=16, test_size=16,
                            probe_size=4)
    table, runs = aggregation_study(["max", "mean", ("lse", {"lse_r": 3.0}), ("topk", {"topk_k": 4})],
                                    base=base, run_dir=tmp_path, progress=False)
    assert list(runs) == ["max", "mean", "lse r=3", "topk k=4"]
    assert sorted({p.name for p in tmp_path.iterdir()}) == ["lse_r3", "max", "mean", "topk_k4"]
    assert len(table) == 8 and set(AGGREGATION_FIGURES) <= set(table.columns)
    for label, run in runs.items():
        model = run.config.model
        assert model.aggregation == label.split()[0] and run.config.data == base.data
        assert (model.lse_r, model.topk_k) == ((3.0 if label.startswith("lse") else 5.0),
                                               (4 if label.startswith("topk") else 0.05))
        rows = table[table["label"] == label]
        assert rows["epoch"].tolist() == [1, 2]
        assert all(0 <= v <= 1 for v in rows["val_iou_otsu"] if not math.isnan(v))  # measured every epoch
        assert not math.isnan(rows["val_accuracy"].iloc[0])
        last = rows.iloc[-1]
        assert 0 <= last["test_accuracy"] <= 1 and "test_compactness_otsu" in rows.columns
    with pytest.raises(ValueError, match="aggregation must be one of"):
        aggregation_study(["median"], base=base, progress=False)


def test_winner_drift_follows_each_probe_winner():
    import numpy as np

    from sacnn_lab.history import History
    from sacnn_lab.mechanism import drift_summary, winner_drift

    h = History()
    h.probe_images = np.zeros((3, 32, 32), np.uint8)
    h.probe_labels = np.array([1, 1, 0], np.uint8)
    h.probe_boxes = np.full((3, 1, 4), -1, np.int32)
    h.probe_boxes[0, 0] = h.probe_boxes[1, 0] = (0, 0, 8, 8)
    on, off = np.zeros((4, 4), np.float16), np.zeros((4, 4), np.float16)
    on[0, 0], off[3, 3] = 0.9, 0.9
    h.probe_maps = {1: np.stack([on, on, on]), 2: np.stack([on, off, on])}
    h.probe_scores = {1: np.full(3, 0.9, np.float32), 2: np.full(3, 0.9, np.float32)}
    d = winner_drift(h)
    assert len(d) == 4 and set(d["image"]) == {0, 1}  # the defective images with boxes only
    assert d.query("epoch == 2 and image == 1")["distance"].item() > 20
    s = drift_summary(d, 1, 2, field=10)
    assert (s["hits_early"], s["hits_late"], s["lost"], s["jumped"], s["slid"]) == (1.0, 0.5, 1.0, 1.0, 0.0)
