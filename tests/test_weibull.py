"""The unsupervised Weibull-feature detector (Timm & Barth 2011): its fit, and that it finds a texture anomaly."""

from __future__ import annotations

import numpy as np
import pytest
from scipy.stats import weibull_min

from sacnn_lab.weibull import WeibullDetector, gradient_magnitude, patch_weibull, weibull_fit


@pytest.mark.parametrize("shape, scale", [(0.7, 0.03), (1.5, 0.2), (3.0, 2.0)])
def test_the_fit_finds_known_parameters_and_agrees_with_scipy(shape, scale):
    rng = np.random.default_rng(0)
    x = weibull_min.rvs(shape, scale=scale, size=(100, 1024), random_state=rng)
    k, lam = weibull_fit(x)
    assert k.mean() == pytest.approx(shape, rel=0.01) and lam.mean() == pytest.approx(scale, rel=0.01)
    for row in x[:3]:  # the same maximum-likelihood estimate as scipy's, row by row
        c, _, s = weibull_min.fit(row, floc=0)
        k1, lam1 = weibull_fit(row)
        assert k1 == pytest.approx(c, rel=1e-3) and lam1 == pytest.approx(s, rel=1e-3)


def test_bad_samples_are_refused():
    with pytest.raises(ValueError, match="positive"):
        weibull_fit(np.array([[0.0, 1.0, 2.0]]))
    with pytest.raises(ValueError, match="n >= 2"):
        weibull_fit(np.ones((3, 1)))


def test_patches_cover_the_image_at_half_overlap():
    img = np.random.default_rng(1).integers(0, 256, (100, 70), dtype=np.uint8)
    k, lam, rows, cols = patch_weibull(img, patch=32)
    assert rows == [0, 16, 32, 48, 64, 68] and cols == [0, 16, 32, 38] and k.shape == (6, 4)
    assert (gradient_magnitude(np.full((8, 8), 7, np.uint8)) == 1e-3).all()  # flat: the floor


def test_the_detector_finds_a_texture_anomaly_without_labels():
    rng = np.random.default_rng(2)
    good = [rng.normal(128, 12, (128, 128)).clip(0, 255).astype(np.uint8) for _ in range(6)]
    bad = good[0].copy()
    bad[40:70, 80:104] = rng.normal(128, 45, (30, 24)).clip(0, 255)  # a rougher patch of the same gray
    det = WeibullDetector(patch=16)
    with pytest.raises(RuntimeError, match="fit"):
        det.predict_maps(bad)
    det.fit(good[1:])
    pred = det.predict_maps(np.stack([good[0], bad]))
    assert pred.score.shape == (2,) and pred.map.shape == (2, 128, 128)
    assert pred.score[0] < 0.5 < pred.score[1]  # the threshold comes from unlabelled images alone
    y, x = np.unravel_index(int(pred.map[1].argmax()), (128, 128))
    assert 40 - 16 <= y < 70 + 16 and 80 - 16 <= x < 104 + 16  # within a patch of the anomaly
    assert float(pred.map.min()) >= 0 and float(pred.map.max()) <= 1
