"""The runs behind the notebooks (sacnn_lab.course): both settings build and train, the reference runs shipped are
the course's configurations and say how they were made, and a fresh run reproduces a reference run's first epoch."""

from __future__ import annotations

import json

import pytest
import torch

from sacnn_lab import course
from sacnn_lab.experiment import build_model, train
from sacnn_lab.trainer import Callback, Trainer


@pytest.mark.parametrize("setting", course.SETTINGS)
@pytest.mark.parametrize("name", course.NAMES)
def test_every_setting_builds_and_takes_a_step(name, setting):
    """The gpu setting, which our machines cannot train in full: its configuration is valid, and one optimiser
    step of its network, on two images of its size, runs on the CPU."""
    cfg = course.config(name, setting)
    cfg.check()
    model = build_model(cfg, pretrained=False)
    size = cfg.data.textile.image_size if cfg.data.source == "textile" else cfg.data.characters.image_size
    batch = {"image": torch.rand(2, 1, size, size), "label": torch.tensor([0, 1])}

    class Two:
        steps_per_epoch = 1

        def loader(self, epoch):
            yield batch

    trainer = Trainer(model, cfg.train.__class__(**{**cfg.train.to_dict(), "device": "cpu", "num_workers": 0}), Two())
    rec = trainer.train_step(batch)
    assert rec["batch_size"] == 2 and torch.isfinite(torch.tensor(rec["loss"]))
    if setting == "gpu" and name != "baseline" and name != "failure/paper_optimiser":  # the paper's, clipped
        assert cfg.train.optimizer == "sgd" and cfg.train.lr == 0.01 and cfg.train.grad_clip == 20


def test_the_shipped_reference_runs_are_the_courses_configurations_and_say_how_they_were_made():
    shipped = course.available()
    assert "cpu/characters" in shipped and "gpu/characters" in shipped
    assert any(s.startswith("cpu/imbalance/") for s in shipped)
    made = course.made()
    recorded = {r for m in made.values() for r in m["runs"]}
    for key in shipped:
        setting, name = key.split("/", 1)
        name = name.split("/")[0] if name.startswith(("imbalance/", "methods/")) else name
        folder = course.REFERENCE_DIR / key
        diff = course.check_reference(name, setting, folder)
        if name == "imbalance":  # one run per ratio and seed: the base's fields, but its ratio and seed
            diff = [d for d in diff if d[0] not in ("data.characters.ratio", "train.seed")]
        if name == "methods":  # one run per method: the base's fields, but its aggregation or supervision
            diff = [d for d in diff if d[0] not in ("model.aggregation", "model.lse_r", "model.topk_k",
                                                    "train.supervision", "train.eval_localisation")]
        assert diff == [], f"{key}: {diff}"
        assert key in recorded, f"{key} is not in made.json"
        assert not (folder / "run.lock").exists() and not (folder / "best.pt").exists()
    for m in made.values():
        assert m["command"] and m["machine"] and m["date"]
    # small enough to ship: the baseline's 2.2 million weights (4 MB in float16) and the rest, ~14 MB in all
    size = sum(p.stat().st_size for p in course.REFERENCE_DIR.rglob("*") if p.is_file())
    assert size < 15e6, f"the reference runs take {size / 1e6:.1f} MB"


def test_a_reference_run_loads_and_says_what_it_is():
    run = course.run("characters", "cpu")
    assert len(run.history.epochs) == run.config.train.epochs
    assert sorted(run.history.probe_maps) == list(range(run.config.train.epochs + 1))
    assert course.describe(run).startswith("reference run cpu/characters")


def test_what_is_not_shipped_or_not_asked_is_a_clear_error():
    with pytest.raises(FileNotFoundError, match="set source = 'train'"):
        course.run("textile", "gpu")
    with pytest.raises(ValueError, match="as it was made"):
        course.run("characters", "cpu", epochs=2)
    with pytest.raises(ValueError, match="setting must be one of"):
        course.run("characters", "laptop")
    with pytest.raises(ValueError, match="no course run is called"):
        course.config("fabric")


def test_a_run_trained_here_lives_in_its_settings_folder_and_is_loaded_the_second_time(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    tiny = dict(epochs=1, early_epochs=0, samples_per_epoch=32, val_size=16, test_size=16)
    first = course.run("characters", "cpu", "train", progress=False, **tiny)
    assert (tmp_path / "runs" / "cpu" / "characters" / "checkpoint.pt").is_file()
    again = course.run("characters", "cpu", "train", progress=False, **tiny)
    assert again.nothing_left is not None and again.history.epochs == first.history.epochs
    assert course.describe(again).startswith("trained here")
    with pytest.raises(ValueError, match="another configuration"):  # another recipe: another folder, or say so
        course.run("characters", "cpu", "train", progress=False, **{**tiny, "samples_per_epoch": 48})


class _FirstEpochOnly(Callback):
    def on_epoch_end(self, trainer, record):
        trainer.should_stop = True


@pytest.mark.parametrize("key", ["cpu/characters", "cpu/imbalance/ratio_7_seed1"])
def test_a_fresh_run_reproduces_a_reference_runs_first_epoch(key):
    """The command in made.json, cut after its first epoch: the same figures, within what another CPU's rounding
    gives (oneDNN picks other kernels on other processors; on this one they are equal)."""
    folder = course.REFERENCE_DIR / key
    saved = json.loads((folder / "history.json").read_text())["epochs"][0]
    cfg = course.load_config(folder)
    fresh = train(cfg, None, progress=False, callbacks=[_FirstEpochOnly()]).history.epochs[0]
    assert fresh["samples"] == saved["samples"]
    assert fresh["train_loss"] == pytest.approx(saved["train_loss"], rel=0.05)
    assert fresh["val_accuracy"] == pytest.approx(saved["val_accuracy"], abs=0.03)
    assert fresh["val_pointing_game"] == pytest.approx(saved["val_pointing_game"], abs=0.05)


def test_every_method_from_the_reference_runs_trains_nothing(tmp_path, monkeypatch):
    """Notebook 9 at its defaults: the methods' shipped runs are read (the package's files untouched), measured on
    a few test images."""
    monkeypatch.chdir(tmp_path)
    before = {p: p.stat().st_mtime for p in course.reference_path("methods").rglob("*")}
    study = course.methods("cpu", "reference", progress=False, test_size=40)
    assert {"SACNN", "SACNN (mean)", "supervised (masks)", "Weibull features"} <= set(study.summary.index)
    assert study.summary.loc["SACNN", "pointing_game"] > study.summary.loc["SACNN (mean)", "pointing_game"]
    assert {p: p.stat().st_mtime for p in course.reference_path("methods").rglob("*")} == before
    assert not (tmp_path / "runs").exists()
    with pytest.raises(ValueError, match="as it was made"):
        course.methods("cpu", "reference", epochs=1)
    with pytest.raises(FileNotFoundError, match="set source = 'train'"):
        course.methods("gpu", "reference")

