"""The generated textile set: determinism, truth, the DAGM 2007 layout read back, and clear errors."""

from __future__ import annotations

import numpy as np
import pytest

from data_gen.__main__ import main
from data_gen.folders import LabelFileError, read_dagm
from data_gen.textile import DEFECTS, FAMILIES, TextileConfig, TextileGenerator, split_seed, write_textile
from sacnn_lab.data import load_dagm

SMALL = dict(image_size=128, defect_size=(16, 48))


@pytest.mark.parametrize("family", FAMILIES)
def test_samples_are_deterministic_per_seed_and_index(family):
    gen = TextileGenerator(TextileConfig(family=family, ratio=1, **SMALL))
    a, b = gen.sample(3, 7), TextileGenerator(TextileConfig(family=family, ratio=1, **SMALL)).sample(3, 7)
    assert np.array_equal(a.image, b.image) and np.array_equal(a.mask, b.mask)
    assert not np.array_equal(a.image, gen.sample(4, 7).image)
    assert a.image.shape == (128, 128) and a.image.dtype == np.uint8 and a.image.std() > 5


@pytest.mark.parametrize("kind", DEFECTS)
def test_every_defect_kind_has_a_mask_inside_its_ellipse(kind):
    gen = TextileGenerator(TextileConfig(defects=(kind,), ratio=1, **SMALL))
    for i in range(6):
        s = gen.sample(0, i)
        if s.label:
            assert s.kind == kind and s.mask.any()
            assert s.mask[s.ellipse].sum() >= 0.9 * s.mask.sum()  # the weak label covers the defect
            x0, y0, x1, y1 = s.box
            assert s.mask[y0:y1, x0:x1].sum() == s.mask.sum()
        else:
            assert not s.mask.any() and s.box is None


def test_defect_changes_the_image_where_the_mask_is():
    cfg = TextileConfig(defects=("spot",), ratio=1, noise=0.0, **SMALL)
    gen = TextileGenerator(cfg)
    s = next(gen.sample(1, i) for i in range(10) if gen.sample(1, i).label)
    inside = s.image[s.mask].astype(float).mean()
    ring = s.ellipse & ~s.mask
    outside = s.image[~s.ellipse].astype(float).mean()
    assert abs(inside - outside) > 10 or not ring.any()


def test_ratio_is_exact_per_block():
    gen = TextileGenerator(TextileConfig(ratio=5, **SMALL))
    labels = gen.labels(0, np.arange(600))
    assert labels.reshape(100, 6).sum(1).tolist() == [1] * 100


def test_cli_writes_a_dagm_layout_that_the_reader_loads(tmp_path):
    assert main(["textile", "--out", str(tmp_path), "--n-train", "12", "--n-test", "6", "--size", "128",
                 "--ratio", "2", "--workers", "1", "--quiet"]) == 0
    root = tmp_path / "Class1"
    assert (root / "Train" / "0001.PNG").is_file() and (root / "Test" / "Label" / "Labels.txt").is_file()
    items = read_dagm(root, "Train")
    assert len(items) == 12 and sum(it.label for it in items) == 4
    for it in items:
        assert (it.label_file is not None) == bool(it.label) and (it.mask_file is not None) == bool(it.label)
    data = load_dagm(root, "Train")
    assert data.images.shape == (12, 128, 128) and data.masks.shape == (12, 128, 128)
    for i in np.flatnonzero(data.labels):
        x0, y0, x1, y1 = data.boxes[i, 0]
        assert data.masks[i, y0:y1, x0:x1].sum() == data.masks[i].sum() > 0
    weak = load_dagm(root, "Train", truth="ellipse")
    assert (weak.masks.sum() >= data.masks.sum())


def test_written_set_equals_the_samples_whatever_the_workers(tmp_path):
    cfg = TextileConfig(ratio=1, **SMALL)
    root = write_textile(tmp_path, cfg, n_train=30, n_test=4, seed=3, workers=2, progress=False)
    gen = TextileGenerator(cfg)
    data = load_dagm(root, "Train", truth="mask")
    for k in (0, 1, 26, 29):  # both workers' chunks (25 images each)
        s = gen.sample(split_seed(3, "Train"), k)
        assert np.array_equal(data.images[k], s.image) and np.array_equal(data.masks[k], s.mask)
    with pytest.raises(ValueError, match="workers"):
        write_textile(tmp_path / "x", cfg, n_train=2, n_test=2, workers=0)


def test_reader_names_what_is_wrong(tmp_path):
    main(["textile", "--out", str(tmp_path), "--n-train", "6", "--n-test", "3", "--size", "128", "--ratio", "2",
          "--workers", "1", "--quiet"])
    root = tmp_path / "Class1"
    with pytest.raises(FileNotFoundError, match="no Train/ folder|does not exist"):
        read_dagm(tmp_path / "Class9")
    index = root / "Train" / "Label" / "Labels.txt"
    lines = index.read_text().splitlines()
    k = next(n for n, ln in enumerate(lines) if ln.split()[1:2] == ["1"])
    label_name = lines[k].split()[4]
    (root / "Train" / "Label" / label_name).unlink()  # a flagged image loses its mask
    with pytest.raises(LabelFileError, match=f"Labels.txt:{k + 1}"):
        read_dagm(root, "Train")
    with pytest.raises(ValueError, match="Train' or 'Test"):
        read_dagm(root, "Validation")
