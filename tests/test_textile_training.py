"""Training SACNN on textile: the DAGM-layout data source, its presets, the pointing game inside the
label ellipses, and the CLI / loader entry points. Tiny 128×128 sets in a temporary cache."""

from __future__ import annotations

import shutil

import numpy as np
import pytest
import torch

from data_gen.textile import TextileConfig, write_textile
from sacnn_lab.config import DataConfig, ModelConfig, RunConfig
from sacnn_lab.data import FolderEpochs, textile_folder
from sacnn_lab.metrics import pointing_game
from sacnn_lab.model import SACNN, receptive_field, suggest_blocks

SMALL = TextileConfig(image_size=128, defect_size=(16, 48))


@pytest.fixture()
def cache(tmp_path, monkeypatch):
    monkeypatch.setenv("SACNN_CACHE_DIR", str(tmp_path / "cache"))
    return tmp_path / "cache"


def tiny(name="fast", **kw):
    return RunConfig.preset(name, data="textile", textile=SMALL, samples_per_epoch=24, test_size=20,
                            probe_size=6, **kw)


def test_textile_presets_follow_the_paper_and_the_receptive_field():
    paper, fast = RunConfig.preset("paper", data="textile"), RunConfig.preset("fast", data="textile")
    assert paper.model.num_blocks == fast.model.num_blocks == 5
    t = paper.train
    assert (t.batch_size, t.optimizer, t.lr, t.epochs) == (16, "sgd", 0.01, 1760)
    assert paper.model.norm == "none" and paper.data.samples_per_epoch == paper.data.test_size == 575
    # the calculator agrees: the largest generated defects (140 px) need 5 blocks, whose field covers them
    assert suggest_blocks(max(TextileConfig().defect_size)) == 5
    for cfg in (paper, fast):
        assert 140 <= receptive_field(cfg.model, 512)[-1]["rf"] <= 260
        assert receptive_field(cfg.model, 512)[-1]["size"] == (16, 16)
    with pytest.raises(ValueError, match="data must be one of"):
        RunConfig.preset("fast", data="dagm")


def test_input_pool_sees_a_smaller_image_and_grows_the_field():
    base = ModelConfig(channels=(4, 4), norm="batch")
    pooled = ModelConfig(channels=(4, 4), norm="batch", input_pool=2)
    assert SACNN(pooled)(torch.rand(2, 1, 64, 64)).shape == (2, 2, 8, 8)
    assert SACNN(pooled).feature_size(64, 64) == (8, 8)
    assert receptive_field(pooled)[-1]["rf"] == 2 * receptive_field(base)[-1]["rf"]
    with pytest.raises(ValueError, match="input_pool"):
        ModelConfig(input_pool=3)


def test_folder_epochs_pass_over_every_image_once_deterministically():
    images = np.arange(10 * 4 * 4, dtype=np.uint8).reshape(10, 4, 4)
    labels = np.arange(10) % 2
    data = FolderEpochs(images, labels, batch_size=4, seed=3)
    assert data.steps_per_epoch == 3
    first = list(data.loader(1))
    again = list(FolderEpochs(images, labels, batch_size=4, seed=3).loader(1))
    idx = torch.cat([b["index"] for b in first]).numpy()
    assert sorted(idx) == list(range(10))
    for a, b in zip(first, again):
        assert torch.equal(a["image"], b["image"]) and torch.equal(a["label"], b["label"])
    assert not np.array_equal(idx, torch.cat([b["index"] for b in data.loader(2)]).numpy())
    flipped = 0
    for b in first:  # every image is itself, flipped or not; its label travels with it
        for x, i, y in zip(b["image"][:, 0], b["index"], b["label"]):
            orig = torch.from_numpy(images[int(i)]).float() / 255
            assert int(y) == labels[int(i)]
            views = [orig, orig.flip(1), orig.flip(0), orig.flip(0).flip(1)]
            assert any(torch.equal(x, v) for v in views)
            flipped += not torch.equal(x, orig)
    assert flipped > 0
    plain = FolderEpochs(images, labels, batch_size=10, augment=False)
    b = next(iter(plain.loader(1)))
    assert torch.equal(b["image"][:, 0], torch.from_numpy(images[b["index"].numpy()]).float() / 255)


def test_pointing_game_scores_inside_masks_when_given():
    maps = np.zeros((2, 8, 8), np.float32)
    maps[0, 1, 1] = maps[1, 6, 6] = 1
    masks = np.zeros((2, 8, 8), bool)
    masks[0, 0:3, 0:3] = True  # the first map peaks inside its mask
    masks[1, 0:3, 0:3] = True  # the second outside, though inside its (large) box
    boxes = [[(0, 0, 8, 8)], [(0, 0, 8, 8)]]
    assert pointing_game(maps, boxes).tolist() == [True, True]
    assert pointing_game(maps, boxes, masks).tolist() == [True, False]


def test_generated_set_is_cached_and_a_run_trains_and_evaluates(cache, tmp_path):
    from sacnn_lab.experiment import evaluate, load_data, load_run, split, textile_split, train

    cfg = tiny(epochs=2, eval_every=2)
    folder = textile_folder(cfg.data, progress=False)
    assert folder.is_relative_to(cache) and (folder / "Train" / "Label" / "Labels.txt").is_file()
    assert textile_folder(cfg.data, progress=False) == folder  # reused, not rewritten
    train_set, test = textile_split(cfg, "Train"), split(cfg, "test")
    assert (len(train_set), len(test)) == (24, 20) and test.masks.shape == (20, 128, 128)
    probe = split(cfg, "probe")
    assert len(probe) == 6 and 0 < probe.labels.sum() <= 3
    run = train(cfg, tmp_path / "run", progress=False)
    first, last = run.history.epochs
    assert "val_accuracy" not in first and 0 <= last["val_accuracy"] <= 1  # evaluated every 2 epochs
    assert run.history.maps(1).shape == (6, 4, 4)
    res = evaluate(run.model, test)
    assert 0 <= res["pointing_game"] <= 1 and res["accuracy"] == pytest.approx(last["val_accuracy"])
    again = load_run(tmp_path / "run")
    assert again.config.data.source == "textile" and again.config.data.textile == SMALL
    assert len(load_data("textile", cfg).labels) == 20
    assert len(load_data(str(folder), cfg).labels) == 20  # a DAGM folder by path: its Test split


def test_a_real_dagm_folder_is_one_parameter(cache, tmp_path):
    from sacnn_lab.experiment import split

    root = write_textile(tmp_path / "dagm", SMALL, n_train=12, n_test=10, seed=5, progress=False, workers=1)
    cfg = tiny(folder=root)
    assert textile_folder(cfg.data) == root
    assert len(split(cfg, "test")) == 10 and not (cache / "sacnn-lab" / "textile").exists()
    shutil.rmtree(root)  # the same folder written again, smaller: read again, not served from memory
    write_textile(tmp_path / "dagm", SMALL, n_train=12, n_test=8, seed=6, progress=False, workers=1)
    assert len(split(cfg, "test")) == 8
    with pytest.raises(FileNotFoundError, match="not a DAGM 2007 class folder"):
        textile_folder(tiny(folder=tmp_path).data)
    with pytest.raises(ValueError, match="needs source='textile'"):
        DataConfig(folder=str(root))


def test_baseline_textile_preset_pools_its_input_and_says_so():
    from sacnn_lab.baseline import VGGBaseline

    cfg = RunConfig.baseline("cpu", data="textile")
    assert cfg.model.input_pool == 2 and "input /2" in cfg.model.name
    assert cfg.data.source == "textile"
    net = VGGBaseline(cfg.model)
    assert net(torch.rand(1, 1, 64, 64)).shape == (1, 2)
    with pytest.raises(ValueError, match="at least 64×64"):
        net(torch.rand(1, 1, 48, 48))


def test_cli_trains_on_textile_and_rejects_unknown_data(cache, tmp_path, capsys):
    from sacnn_lab.cli import main

    root = write_textile(tmp_path / "dagm", SMALL, n_train=12, n_test=10, progress=False, workers=1)
    assert main(["train", "--data", str(root), "--epochs", "1", "--out", str(tmp_path / "r"), "--quiet"]) == 0
    assert "SACNN" in capsys.readouterr().out
    assert main(["evaluate", "--checkpoint", str(tmp_path / "r"), "--data", str(root), "--json"]) == 0
    assert '"images": 10' in capsys.readouterr().out
    assert main(["train", "--data", str(tmp_path / "nowhere"), "--out", str(tmp_path / "x")]) == 2
    assert "DAGM 2007 class folder" in capsys.readouterr().err
