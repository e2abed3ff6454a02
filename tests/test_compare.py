"""SACNN against the baseline: baseline runs through the shared trainer, compare(), and the CLI."""

from __future__ import annotations

import json
import numpy as np
import pytest
import torch
from matplotlib.figure import Figure

from data_gen.characters import CharacterConfig
from sacnn_lab.cli import main
from sacnn_lab.compare import compare
from sacnn_lab.config import BaselineConfig, DataConfig, ModelConfig, RunConfig, TrainConfig
from sacnn_lab.experiment import load_model, load_run, split, train
from sacnn_lab.trainer import Callback

CLI_TINY = ["--epochs", "1", "--early-epochs", "0", "--samples-per-epoch", "32", "--batch-size", "16",
            "--val-size", "16", "--test-size", "12", "--quiet"]


def tiny(model, **train_kw) -> RunConfig:
    chars = CharacterConfig(image_size=64, char_size=(14, 18), distractor_scales=(0.3, 3.0))
    return RunConfig(model, DataConfig(characters=chars, samples_per_epoch=32, val_size=16, test_size=12,
                                       probe_size=4),
                     TrainConfig(**{"epochs": 2, "batch_size": 16, "optimizer": "adam", "lr": 1e-3,
                                    "reduction": "mean", "eval_batch_size": 16, **train_kw}))


BASE = BaselineConfig(arch="vgg19_bn", width=0.0625)


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    root = tmp_path_factory.mktemp("cmp")
    sacnn = train(tiny(ModelConfig(channels=(4, 8, 8), norm="batch")), root / "sacnn", progress=False)
    base = train(tiny(BASE), root / "vgg", progress=False)
    return sacnn, base


def test_baseline_history_is_recorded_like_sacnn(runs):
    sacnn, base = runs
    assert base.config.is_baseline
    h = base.history
    assert [r["epoch"] for r in h.epochs] == [1, 2] and h.recorded_epochs == [0, 1, 2]
    assert set(sacnn.history.epochs[-1]) == set(h.epochs[-1])  # the same figures per epoch
    assert h.maps(2).shape == (4, 2, 2)  # Grad-CAM on features[-1]: 64 px / 32
    assert h.maps_upsampled(2).shape == (4, 64, 64)
    assert 0 <= h[2]["val_pointing_game"] <= 1 and 0 <= h[2]["val_accuracy"] <= 1


def test_baseline_run_round_trip_and_resume(runs, tmp_path):
    _, base = runs
    loaded = load_run(base.run_dir)
    assert isinstance(loaded.model, type(base.model)) and loaded.config.to_dict() == base.config.to_dict()
    for a, b in zip(loaded.model.state_dict().values(), base.model.state_dict().values()):
        assert torch.equal(a, b)

    class Interrupt(Callback):
        def on_epoch_start(self, trainer, epoch):
            if epoch == 2:
                raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        train(tiny(BASE), tmp_path, progress=False, callbacks=[Interrupt()])
    resumed = train(tiny(BASE), tmp_path, resume=True, progress=False)
    for (k, a), b in zip(resumed.model.state_dict().items(), base.model.state_dict().values()):
        assert torch.equal(a, b), k


def test_compare_returns_table_figure_and_costs(runs):
    sacnn, base = runs
    data = split(sacnn.config, "test")
    c = compare(sacnn, base.run_dir, data, batch_size=6, figure_images=3)
    assert list(c.summary.index) == ["SACNN", "Grad-CAM"]
    assert len(c.table) == 2 * 12 and set(c.table["method"]) == {"SACNN", "Grad-CAM"}
    for col in ("pointing_game", "iou_otsu", "compactness_fixed", "pixel_auroc", "false_alarm_area"):
        assert col in c.table.columns and col in c.summary.columns
    defective = int(data.labels.sum())
    assert c.summary.loc["SACNN", "defective"] == defective
    assert c.table.groupby("method")["pointing_game"].count().tolist() == [defective] * 2
    assert isinstance(c.figure, Figure) and len(c.figure.axes) == 3 * 3  # images, SACNN, Grad-CAM
    # costs are measured, never compared here: a wall-clock ratio of 12 images flakes on a busy machine
    # (benchmarks/compare_gradcam.py measures them)
    assert (c.costs["map_ms"] > 0).all() and (c.costs["forward_ms"] > 0).all()
    assert np.allclose(c.costs["map_over_forward"], c.costs["map_ms"] / c.costs["forward_ms"])
    assert c.predictions["Grad-CAM"].map.shape == (12, 64, 64)


def test_compare_rejects_bad_input(runs):
    sacnn, base = runs
    with pytest.raises(TypeError, match="model"):
        compare(42, base, split(sacnn.config, "test"))
    with pytest.raises(ValueError, match="labels"):
        compare(sacnn, base, type("D", (), {"images": np.zeros((2, 64, 64), np.uint8)})())


def test_cli_trains_the_baseline_and_compares(tmp_path, capsys):
    s_dir, b_dir, out = tmp_path / "sacnn", tmp_path / "vgg", tmp_path / "cmp"
    assert main(["train", "--out", str(s_dir), *CLI_TINY]) == 0
    assert main(["train", "--model", "baseline", "--width", "0.0625", "--out", str(b_dir), *CLI_TINY]) == 0
    assert "VGG19-BN-style, reduced (width 0.0625) baseline" in capsys.readouterr().out
    model, cfg = load_model(b_dir)
    assert cfg.is_baseline and cfg.model.width == 0.0625
    assert main(["compare", "--sacnn", str(s_dir), "--baseline", str(b_dir / "checkpoint.pt"), "--n", "6",
                 "--batch-size", "3", "--out", str(out), "--json"]) == 0
    res = json.loads(capsys.readouterr().out)
    assert res["images"] == 6 and set(res["summary"]) == {"SACNN", "Grad-CAM"}
    assert res["costs"]["Grad-CAM"]["map_ms"] > 0
    for name in ("table.csv", "summary.csv", "costs.csv", "compare_maps.png"):
        assert (out / name).is_file()
    assert main(["compare", "--sacnn", str(s_dir), "--baseline", str(b_dir), "--n", "4"]) == 0
    text = capsys.readouterr().out
    assert "pointing_game" in text and "map_ms" in text
    assert main(["train", "--preset", "cpu", "--out", str(tmp_path / "x"), *CLI_TINY]) == 2
    assert "--preset cpu is a baseline preset" in capsys.readouterr().err
    assert main(["train", "--width", "0.5", "--out", str(tmp_path / "y"), *CLI_TINY]) == 2
    assert "--model baseline" in capsys.readouterr().err


def test_table_one_puts_the_papers_figures_beside_ours():
    from sacnn_lab.compare import PAPER_TABLE_1, table_one

    t = table_one({("characters", "SACNN"): {"accuracy": 0.99, "pointing_game": 0.97, "run": "reference cpu"},
                   ("characters", "mean pooling"): {"accuracy": 0.77, "learns from": "image labels"}})
    assert len(t) == len(PAPER_TABLE_1) + 1
    row = t.loc[("characters", "SACNN")]
    assert row["paper"] == 0.984 and row["measured"] == 0.99 and row["pointing game"] == 0.97
    assert np.isnan(t.loc[("textile", "Weibull features [22]")]["measured"])
    assert np.isnan(t.loc[("characters", "mean pooling")]["paper"])
