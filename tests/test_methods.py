"""Every method behind one interface: the supervised reference (SACNN's network trained from masks), its loss,
masks in the training batches, and compare_methods over SACNN, the reference and the Weibull detector."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from matplotlib.figure import Figure

from data_gen.characters import CharacterConfig
from data_gen.textile import TextileConfig
from sacnn_lab.compare import compare_methods
from sacnn_lab.competition import cell_targets, competition_loss, mask_loss
from sacnn_lab.config import DataConfig, ModelConfig, RunConfig, TrainConfig
from sacnn_lab.data import FolderEpochs
from sacnn_lab.experiment import split, train
from sacnn_lab.methods import method_name, method_predict, resolve_method
from sacnn_lab.weibull import WeibullDetector


def tiny(**train_kw) -> RunConfig:
    chars = CharacterConfig(image_size=64, char_size=(14, 18), distractor_scales=(0.3, 3.0))
    return RunConfig(ModelConfig(channels=(4, 8, 8), norm="batch"),
                     DataConfig(characters=chars, samples_per_epoch=32, val_size=16, test_size=12, probe_size=4),
                     TrainConfig(**{"epochs": 2, "batch_size": 16, "optimizer": "adam", "lr": 1e-3,
                                    "reduction": "mean", "eval_batch_size": 16, **train_kw}))


def test_cell_targets_mark_covered_cells_and_leave_slivers_out():
    m = torch.zeros(3, 8, 8, dtype=torch.bool)
    m[0, 0, 0] = True  # one pixel: still its cell, the image's most covered
    m[1, 4:8, 0:4] = True
    m[2, 0:4, 0:4] = True
    m[2, 0:4, 4] = True  # a sliver of the next cell: neither defective nor defect-free
    bad, good = cell_targets(m, (2, 2))
    assert bad.tolist() == [[[True, False], [False, False]], [[False, False], [True, False]],
                            [[True, False], [False, False]]]
    assert good[2].tolist() == [[False, False], [True, True]] and good[0].sum() == 3


def test_mask_loss_reaches_every_cell_and_weighs_each_image_once():
    torch.manual_seed(0)
    logits = torch.randn(3, 2, 4, 4, requires_grad=True)
    masks = torch.zeros(3, 16, 16, dtype=torch.bool)
    masks[0, :4, :4] = True  # one cell of image 0
    masks[1, :4, :4] = True  # image 1 is defect-free: its mask is not read
    labels = torch.tensor([1, 0, 1])  # image 2: defective but no known mask: left out
    per = mask_loss(logits, masks, labels, reduction="none")
    assert per.shape == (3,) and torch.isfinite(per).all()
    per.sum().backward()
    assert (logits.grad[:2].abs().sum(1) > 0).all()  # unlike the competition, every cell gets a gradient
    assert per[2] == 0 and (logits.grad[2] == 0).all()  # no truth for image 2's cells
    # image 0: its one defective cell weighs as much as its fifteen defect-free cells together
    lp = torch.log_softmax(logits.detach(), 1)
    expect = -lp[0, 1, 0, 0] - (lp[0, 0].flatten()[1:]).mean()
    assert per[0].item() == pytest.approx(expect.item(), rel=1e-5)
    assert mask_loss(logits, masks, labels).item() == pytest.approx(per.sum().item(), rel=1e-6)
    big = torch.full((1, 2, 4, 4), 200.0)
    big[:, 0] = -200
    assert torch.isfinite(mask_loss(big, torch.zeros(1, 16, 16, dtype=torch.bool), torch.tensor([0])))
    with pytest.raises(ValueError, match="masks"):
        mask_loss(logits, masks[:2], labels)


def test_folder_epochs_turn_masks_with_their_images():
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, (6, 16, 16), dtype=np.uint8)
    masks = np.zeros((6, 16, 16), bool)
    for i in range(6):
        masks[i, 2 + i:5 + i, 1:4] = True
        images[i][masks[i]] = 255
        images[i][~masks[i]] = 0
    epochs = FolderEpochs(images, np.ones(6, np.int64), 3, seed=1, quarter_turns=True, masks=masks)
    for epoch in (1, 2, 3):
        for b in epochs.loader(epoch):
            assert torch.equal(b["mask"], b["image"][:, 0] > 0.5)  # the same flips and turns
    with pytest.raises(ValueError, match="masks"):
        FolderEpochs(images, np.ones(6, np.int64), 3, masks=masks[:, :8])


def test_supervision_is_checked_with_the_rest_of_the_run():
    with pytest.raises(ValueError, match="supervision"):
        TrainConfig(supervision="boxes")
    with pytest.raises(ValueError, match="baseline"):
        RunConfig.baseline("cpu", supervision="mask")
    assert RunConfig.preset("fast", supervision="mask").train.supervision == "mask"


def test_the_supervised_reference_trains_from_generated_masks(tmp_path):
    run = train(tiny(supervision="mask"), tmp_path / "sup", progress=False)
    assert run.history.epochs[-1]["val_accuracy"] >= 0
    assert run.config.train.supervision == "mask"
    # the batches carry masks of the images' size, and the reference's loss exceeds the competition term alone
    from sacnn_lab.sources import source_for

    batch = next(iter(source_for(run.config).training().loader(1)))
    assert batch["mask"].shape == (16, 64, 64) and batch["mask"][batch["label"] == 0].sum() == 0
    logits = run.model(batch["image"])
    assert mask_loss(logits, batch["mask"], batch["label"]) > 0
    assert competition_loss(logits, batch["label"]).shape == ()


def test_the_supervised_reference_trains_on_a_dagm_folder(tmp_path, monkeypatch):
    monkeypatch.setenv("SACNN_CACHE_DIR", str(tmp_path / "cache"))
    cfg = RunConfig.preset("fast", data="textile", textile=TextileConfig(image_size=128, defect_size=(16, 48)),
                           samples_per_epoch=24, test_size=20, probe_size=6, epochs=1, supervision="mask")
    from sacnn_lab.sources import source_for

    batch = next(iter(source_for(cfg).training().loader(1)))
    assert batch["mask"].shape == (16, 128, 128)
    assert all(bool(m.any()) == bool(y) for m, y in zip(batch["mask"], batch["label"]))
    run = train(cfg, tmp_path / "run", progress=False)
    assert 0 <= run.history.epochs[-1]["val_accuracy"] <= 1


@pytest.fixture(scope="module")
def sacnn_run(tmp_path_factory):
    return train(tiny(), tmp_path_factory.mktemp("m") / "sacnn", progress=False)


def test_compare_methods_measures_models_and_map_methods_alike(sacnn_run):
    data = split(sacnn_run.config, "test")
    train_images = split(sacnn_run.config, "val").images
    weibull = WeibullDetector(patch=16).fit(train_images)
    c = compare_methods({"SACNN": sacnn_run, "Weibull": weibull}, data, batch_size=5, figure_images=3)
    assert list(c.summary.index) == ["SACNN", "Weibull"]
    for col in ("accuracy", "pointing_game", "pointing_game_tol", "iou_otsu", "compactness_otsu", "map_ms"):
        assert col in c.summary.columns
    assert (c.summary["pointing_game_tol"] >= c.summary["pointing_game"]).all()
    assert isinstance(c.figure, Figure) and len(c.figure.axes) == 3 * 3
    assert c.predictions["Weibull"].map.shape == (12, 64, 64) and c.costs.loc["Weibull", "map_ms"] > 0
    # the same figures as each method's own prediction
    direct = method_predict(resolve_method(sacnn_run), data.images)
    assert np.allclose(c.predictions["SACNN"].score.numpy(), direct.score.numpy())
    lean = compare_methods([sacnn_run.model], data, keep_predictions=False, figure_images=2)
    assert lean.predictions == {} and list(lean.summary.index) == [method_name(sacnn_run.model)] == ["SACNN"]
    with pytest.raises(TypeError, match="predict_maps"):
        compare_methods([42], data)
    with pytest.raises(ValueError, match="at least one"):
        compare_methods({}, data)


def test_methods_study_puts_every_method_on_one_table(tmp_path):
    from sacnn_lab.config import BaselineConfig
    from sacnn_lab.studies import METHOD_FIGURES, methods_study

    base = tiny()
    vgg = RunConfig(BaselineConfig(arch="vgg19_bn", width=0.0625), base.data, base.train)
    study = methods_study("characters", seeds=(0, 1), run_dir=tmp_path, aggregations=("max", "mean"), base=base,
                          baseline_config=vgg, weibull_patch=16, progress=False, figure_images=2)
    names = ["SACNN", "SACNN (mean)", "supervised (masks)", "Grad-CAM (VGG19-BN, reduced)", "Weibull features"]
    assert list(study.summary.index) == names
    assert study.summary["seeds"].tolist() == [2, 2, 2, 1, 1]
    assert study.summary.loc["supervised (masks)", "supervision"] == "image labels + masks"
    for k in METHOD_FIGURES:
        assert f"{k}_std" in study.summary.columns
    per = study.per_seed[study.per_seed["method"] == "SACNN"]
    assert study.summary.loc["SACNN", "accuracy"] == pytest.approx(per["accuracy"].mean())
    assert study.summary.loc["SACNN", "accuracy_std"] == pytest.approx(per["accuracy"].std(ddof=1))
    assert (tmp_path / "supervised_seed1" / "checkpoint.pt").is_file()
    assert isinstance(study.figure, Figure) and len(study.runs) == 7
    curves = study.epochs[study.epochs["seed"] == 0]
    assert len(curves) == 4 * 2 and set(curves["method"]) == set(names[:4])  # 4 trained methods, 2 epochs each
    assert curves["val_pointing_game"].notna().all()
    # a finished study is read back, not trained again
    again = methods_study("characters", seeds=(0, 1), run_dir=tmp_path, aggregations=("max", "mean"), base=base,
                          baseline_config=vgg, weibull=False, progress=False, figure_images=2)
    assert all(r.nothing_left for r in again.runs.values())
    assert again.summary.loc["SACNN", "accuracy"] == pytest.approx(study.summary.loc["SACNN", "accuracy"])
