"""Trainer, callbacks, history, checkpoints and resume, on tiny models and data."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest
import torch
from torch import nn

from data_gen.characters import CharacterConfig, CharacterGenerator
from sacnn_lab.callbacks import Checkpointer, NanGuard, ProgressBar, read_checkpoint
from sacnn_lab.config import DataConfig, ModelConfig, RunConfig, TrainConfig
from sacnn_lab.data import batch_to_dict
from sacnn_lab.experiment import evaluate, load_model, load_run, split, train
from sacnn_lab.history import History
from sacnn_lab.inference import predict
from sacnn_lab.metrics import pointing_game
from sacnn_lab.model import SACNN
from sacnn_lab.trainer import Callback, Trainer


def tiny_config(**train) -> RunConfig:
    chars = CharacterConfig(image_size=64, char_size=(14, 18), distractor_scales=(0.3, 3.0))
    return RunConfig(ModelConfig(channels=(4, 8, 8), norm="batch"),
                     DataConfig(characters=chars, samples_per_epoch=48, val_size=24, test_size=30, probe_size=4),
                     TrainConfig(**{"epochs": 2, "batch_size": 16, "optimizer": "adam", "lr": 3e-3,
                                    "schedule": "onecycle", "reduction": "mean", **train}))


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("run")
    return train(tiny_config(), out, progress=False)


def test_history_records_every_epoch_and_probe_maps(tiny_run):
    h = tiny_run.history
    assert [r["epoch"] for r in h.epochs] == [1, 2]
    for r in h.epochs:
        assert {"val_precision", "val_recall", "val_auroc"} <= set(r)  # precision is NaN if nothing is flagged
        for k in ("train_loss", "val_accuracy", "val_pointing_game"):
            assert r[k] == r[k]  # present and not NaN
    assert h.recorded_epochs == [0, 1, 2]
    assert h.maps(2).shape == (4, 8, 8) and h.maps_upsampled(2).shape == (4, 64, 64)
    assert not np.array_equal(h.maps(0), h.maps(2))  # training changed the maps
    assert len(h.steps["loss"]) == 2 * 3
    assert h[2]["samples"] == 48


def test_run_folder_round_trip(tiny_run):
    d = tiny_run.run_dir
    for name in ("config.json", "checkpoint.pt", "history.json", "history.npz"):
        assert (d / name).is_file()
    loaded = load_run(d)
    same = lambda a, b: a == b or (a != a and b != b)  # noqa: E731 - NaN equals NaN here
    for ra, rb in zip(loaded.history.epochs, tiny_run.history.epochs, strict=True):
        assert ra.keys() == rb.keys() and all(same(ra[k], rb[k]) for k in ra)
    assert np.array_equal(loaded.history.maps(1), tiny_run.history.maps(1))
    assert np.array_equal(loaded.history.probe_images, tiny_run.history.probe_images)
    for a, b in zip(loaded.model.state_dict().values(), tiny_run.model.state_dict().values()):
        assert torch.equal(a, b)
    assert loaded.config.to_dict() == tiny_run.config.to_dict()


def test_checkpoint_loads_with_weights_only(tiny_run):
    state = torch.load(tiny_run.run_dir / "checkpoint.pt", weights_only=True)
    assert state["epoch"] == 2 and "model" in state and "optimizer" in state


class Interrupt(Callback):
    """Stops the run as a Ctrl-C would, at the start of epoch ``at``."""

    def __init__(self, at: int = 2):
        self.at = at

    def on_epoch_start(self, trainer, epoch):
        if epoch == self.at:
            raise KeyboardInterrupt


def test_resume_equals_uninterrupted_run(tiny_run, tmp_path):
    with pytest.raises(KeyboardInterrupt):
        train(tiny_config(), tmp_path, progress=False, callbacks=[Interrupt()])
    assert read_checkpoint(tmp_path / "checkpoint.pt")["epoch"] == 1
    resumed = train(tiny_config(), tmp_path, resume=True, progress=False)
    for (k, a), b in zip(resumed.model.state_dict().items(), tiny_run.model.state_dict().values()):
        assert torch.equal(a, b), k
    drop = ("train_time", "epoch_seconds", "val_seconds")
    strip = lambda recs: [{k: v for k, v in r.items() if k not in drop and v == v} for r in recs]  # noqa: E731
    assert strip(resumed.history.epochs) == strip(tiny_run.history.epochs)
    assert np.array_equal(resumed.history.maps(2), tiny_run.history.maps(2))


def test_resume_cuts_a_history_saved_after_its_checkpoint(tiny_run, tmp_path):
    """Interrupted between the history's write and the checkpoint's: the history holds epoch 2, the
    checkpoint epoch 1. The resumed run redoes epoch 2 once and equals the uninterrupted run."""
    import shutil

    with pytest.raises(KeyboardInterrupt):
        train(tiny_config(), tmp_path, progress=False, callbacks=[Interrupt()])
    for name in ("history.json", "history.npz"):
        shutil.copy(tiny_run.run_dir / name, tmp_path / name)
    assert len(History.load(tmp_path).epochs) == 2 and read_checkpoint(tmp_path / "checkpoint.pt")["epoch"] == 1
    resumed = train(tiny_config(), tmp_path, resume=True, progress=False)
    assert [r["epoch"] for r in resumed.history.epochs] == [1, 2]
    assert len(resumed.history.steps["loss"]) == len(tiny_run.history.steps["loss"])
    assert resumed.history.steps["loss"] == tiny_run.history.steps["loss"]
    for (k, a), b in zip(resumed.model.state_dict().items(), tiny_run.model.state_dict().values()):
        assert torch.equal(a, b), k


def test_existing_run_is_not_overwritten(tiny_run):
    with pytest.raises(FileExistsError, match="resume"):
        train(tiny_config(), tiny_run.run_dir, progress=False)


def test_a_run_saved_before_a_config_field_existed_resumes(tiny_run, tmp_path):
    """Its checkpoint lacks the newer field: the default fills it, so the configs still match."""
    import shutil

    run_dir = tmp_path / "old"
    shutil.copytree(tiny_run.run_dir, run_dir)
    state = read_checkpoint(run_dir / "checkpoint.pt")
    for key in ("early_size", "early_epochs"):
        del state["config"]["data"][key]
    torch.save(state, run_dir / "checkpoint.pt")
    run = train(tiny_config(), run_dir, resume=True, progress=False)  # already done: nothing to add
    assert len(run.history.epochs) == len(tiny_run.history.epochs)


def test_resume_with_another_config_is_refused(tiny_run):
    with pytest.raises(ValueError, match="another configuration"):
        train(tiny_config(lr=1e-2), tiny_run.run_dir, resume=True, progress=False)


def test_corrupt_checkpoint_is_a_clear_error(tmp_path, tiny_run):
    bad = tmp_path / "checkpoint.pt"
    bad.write_bytes(b"\x00 not a checkpoint")
    with pytest.raises(ValueError, match="not a readable sacnn-lab checkpoint"):
        load_model(bad)
    trunc = tmp_path / "trunc.pt"
    trunc.write_bytes((tiny_run.run_dir / "checkpoint.pt").read_bytes()[:500])
    with pytest.raises(ValueError, match="trunc.pt"):
        load_model(trunc)
    with pytest.raises(FileNotFoundError):
        load_model(tmp_path / "nothing.pt")


def test_checkpoint_of_another_architecture_is_a_clear_error(tmp_path, tiny_run):
    state = torch.load(tiny_run.run_dir / "checkpoint.pt", weights_only=True)
    state["config"]["model"]["channels"] = [4, 8, 16]
    torch.save(state, tmp_path / "other.pt")
    with pytest.raises(ValueError, match="another architecture"):
        load_model(tmp_path / "other.pt")


class FixedBatches:
    """The same batches every epoch."""

    def __init__(self, batches):
        self.batches, self.steps_per_epoch = batches, len(batches)

    def loader(self, epoch):
        return iter(self.batches)


class NanModel(nn.Module):
    def __init__(self):
        super().__init__()
        self.w = nn.Parameter(torch.ones(1))

    def forward(self, x):
        out = x[:, :1, ::8, ::8].repeat(1, 2, 1, 1) * self.w
        return out * (float("nan") if self.w.grad is not None else 1.0)


def test_nan_loss_stops_with_epoch_and_step(generator):
    b = batch_to_dict(generator.generate(0, np.arange(8)))
    trainer = Trainer(NanModel(), TrainConfig(epochs=2, device="cpu", channels_last=False),
                      FixedBatches([b, b]), [NanGuard()])
    with pytest.raises(FloatingPointError, match=r"epoch 1, step 2: .*--grad-clip 20"):
        trainer.fit()


def test_grad_clip_caps_the_step(generator):
    """Plain SGD at lr 1: each step moves the weights by the gradient, so by at most the clip norm."""
    b = batch_to_dict(generator.generate(0, np.arange(16)))

    def step_size(clip):
        torch.manual_seed(0)
        model = SACNN(ModelConfig(channels=(4, 8), norm="none"))
        trainer = Trainer(model, TrainConfig(epochs=1, lr=1.0, grad_clip=clip, device="cpu", channels_last=False),
                          FixedBatches([b]))
        before = torch.cat([p.detach().flatten().clone() for p in model.parameters()])
        trainer.fit()
        return (torch.cat([p.detach().flatten() for p in model.parameters()]) - before).norm().item()

    free = step_size(None)
    assert free > 1e-3
    assert step_size(free / 10) == pytest.approx(free / 10, rel=1e-3)  # clipped to the norm asked for
    assert step_size(free * 10) == pytest.approx(free, rel=1e-6)  # a loose clip changes nothing


def test_deterministic_cudnn_flags_are_restored():
    from sacnn_lab.trainer import cudnn_determinism

    cudnn = torch.backends.cudnn
    before = cudnn.deterministic, cudnn.benchmark
    with cudnn_determinism(True):
        assert cudnn.deterministic and not cudnn.benchmark
    assert (cudnn.deterministic, cudnn.benchmark) == before
    with cudnn_determinism(False):
        assert (cudnn.deterministic, cudnn.benchmark) == before


def test_tiny_model_overfits_and_its_map_points_at_the_character(faces):
    # 64 px images, 2 blocks (visual field 22 px for ~14 px characters, the paper's rule), 1:3 so that the
    # many defect-free images push false winners down
    cfg = CharacterConfig(image_size=64, char_size=(16, 18), lines=(0, 0), distractor_prob=0.0,
                          min_contrast=100, max_defects=1, ratio=3)
    gen = CharacterGenerator(cfg, faces=faces[:4])
    data = gen.generate(0, np.arange(64))
    torch.manual_seed(0)

    model = SACNN(ModelConfig(channels=(8, 16), norm="batch", inner_relu=True))
    trainer = Trainer(model, TrainConfig(epochs=90, optimizer="adam", lr=3e-3, reduction="mean", device="cpu",
                                         channels_last=False), FixedBatches([batch_to_dict(data)]))
    trainer.fit()
    p = predict(model.eval(), data.images)
    assert ((p.score >= 0.5).numpy() == data.labels.astype(bool)).mean() == 1.0
    hits = pointing_game(p.map.numpy(), [data.boxes_of(i) for i in range(len(data))])
    assert hits.mean() >= 0.9, hits


def test_evaluate_on_a_test_split(tiny_run):
    m = evaluate(tiny_run.model, split(tiny_run.config, "test"))
    assert {"accuracy", "precision", "recall", "auroc", "pointing_game"} <= set(m)
    assert m["tp"] + m["fp"] + m["tn"] + m["fn"] == 30


class _SlowClock(Callback):
    """Sets the training clock to 1,000 s per step taken, so a time budget ends the run at a known step
    whatever the machine's speed (the real seconds of one step, data drawn included, are far fewer)."""

    def on_batch_end(self, trainer, record):
        trainer.train_time = 1000.0 * record["step"]


def test_time_budget_stops_the_run(tmp_path):
    run = train(tiny_config(max_time=500, epochs=3), progress=False, callbacks=[_SlowClock()])
    assert len(run.history.epochs) == 1 and run.history.epochs[0]["partial"]
    assert run.history.epochs[0]["samples"] == 32  # the budget is seen spent at the second step


def test_progress_lines_without_bars(capsys):
    """``ProgressBar(bars=False)`` (the benchmarks' logs): one summary line per epoch and no bar."""
    train(tiny_config(), progress=False, callbacks=[ProgressBar(bars=False)])
    out = capsys.readouterr()
    lines = [line for line in out.out.splitlines() if line.startswith("epoch ")]
    assert [line.split(":")[0] for line in lines] == ["epoch 1", "epoch 2"]
    assert all("val_accuracy" in line and "s of training" in line for line in lines)
    assert "step/s" not in out.err + out.out and "it/s" not in out.err + out.out


def test_bad_train_config_is_a_clear_error():
    for bad in (dict(optimizer="rmsprop"), dict(schedule="step"), dict(epochs=0), dict(device="tpu"),
                dict(class_weights=(1.0,)), dict(max_time=0), dict(grad_clip=0),
                dict(keep_best="val_loss")):
        with pytest.raises((ValueError, TypeError)):
            TrainConfig(**bad)
    with pytest.raises(ValueError, match="preset"):
        RunConfig.preset("slow")
    with pytest.raises(ValueError, match="differ"):
        DataConfig(train_seed=1, val_seed=1)
    with pytest.raises(ValueError, match="fewer than epochs"):
        RunConfig.preset("fast", epochs=9)  # the preset's 13 small-image epochs would leave none full size
    assert RunConfig.preset("fast", epochs=9, early_epochs=0).data.early_size == 68  # off: full size throughout
    for bad, match in ((dict(early_epochs=3), "needs early_size"),
                       (dict(early_size=136, early_epochs=1), "smaller"),
                       (dict(early_size=40, early_epochs=1), "does not fit the characters"),
                       (dict(source="textile", early_size=256, early_epochs=1), "source='characters'")):
        with pytest.raises(ValueError, match=match):
            DataConfig(**bad)


def test_progressive_resizing_trains_and_its_schedule_counts_every_step(tmp_path):
    """Early epochs on 36 px images (batches of round(16 · (64 / 36)²) = 51) then full size; the one-cycle
    schedule spans the steps of both, so it ends annealed at the last step."""
    cfg = tiny_config(epochs=3)
    chars = replace(cfg.data.characters, centre_offset=(-4, 4))  # within a quarter of 36 px
    cfg = cfg.updated(characters=chars, early_size=36, early_epochs=2, samples_per_epoch=128)
    run = train(cfg, progress=False)
    steps = [r["steps"] for r in run.history.epochs]
    assert steps == [3, 6, 14] and all(r["samples"] == 128 for r in run.history.epochs)
    assert run.history.epochs[-1]["lr"] < 1e-3 * cfg.train.lr
    assert not any(r["partial"] for r in run.history.epochs)


def test_long_character_runs_render_their_glyphs_before_the_clock_starts(monkeypatch):
    from sacnn_lab.sources import WARM_UP_SAMPLES, CharacterSource

    calls = []
    monkeypatch.setattr(CharacterGenerator, "warm_up", lambda self, progress=False: calls.append(self) or 0)
    CharacterSource(tiny_config()).training()
    assert calls == []
    CharacterSource(tiny_config(epochs=WARM_UP_SAMPLES // 48 + 1)).training()
    assert len(calls) == 1


def test_history_load_names_a_missing_folder(tmp_path):
    with pytest.raises(FileNotFoundError, match="not a sacnn-lab run folder"):
        History.load(tmp_path)


def test_run_config_round_trip():
    cfg = RunConfig.preset("paper")
    assert RunConfig.from_dict(cfg.to_dict()).to_dict() == cfg.to_dict()
    assert cfg.train.optimizer == "sgd" and cfg.train.lr == 0.01 and cfg.train.batch_size == 64
    assert cfg.data.samples_per_epoch == 100_000 and cfg.model.norm == "none" and cfg.model.num_blocks == 3
    fast = RunConfig.preset("fast", epochs=1, early_epochs=0)
    assert fast.train.epochs == 1 and replace(fast.train, lr=1.0).lr == 1.0


class _Batches:
    """A fixed batch, ``steps`` times per epoch."""

    def __init__(self, steps: int):
        self.steps_per_epoch = steps

    def loader(self, epoch):
        g = torch.Generator().manual_seed(epoch)
        for _ in range(self.steps_per_epoch):
            yield {"image": torch.rand(4, 1, 16, 16, generator=g), "label": torch.tensor([0, 1, 0, 1])}


@pytest.mark.parametrize("schedule", ["onecycle", "cosine"])
def test_a_time_budget_moves_the_schedule_on_so_it_still_anneals(schedule):

    cfg = TrainConfig(epochs=1, batch_size=4, optimizer="adam", lr=1e-2, schedule=schedule, max_time=100.0)
    free = Trainer(SACNN(ModelConfig(channels=(4,))), replace(cfg, max_time=None), _Batches(10))
    timed = Trainer(SACNN(ModelConfig(channels=(4,))), cfg, _Batches(10))
    batch = next(iter(_Batches(1).loader(1)))
    free.train_step(batch)
    timed.train_time = 90.0  # 90 % of the budget spent at the first step
    timed.train_step(batch)
    assert timed.schedule_position() == 9 and free.schedule_position() == 2
    lr_timed, lr_free = timed.optimizer.param_groups[0]["lr"], free.optimizer.param_groups[0]["lr"]
    assert lr_timed < 0.1 * cfg.lr < lr_free  # annealed, where the step count alone is still warming up
    reference = Trainer(SACNN(ModelConfig(channels=(4,))), replace(cfg, max_time=None), _Batches(10))
    for _ in range(9):  # the same rate as an untimed schedule after 9 steps
        reference.train_step(batch)
    assert lr_timed == pytest.approx(reference.optimizer.param_groups[0]["lr"])


class _Scripted(Callback):
    """Sets ``val_accuracy`` of each epoch from a script (None: not evaluated that epoch), standing in for
    the Evaluator; and keeps a copy of the weights after every epoch."""

    def __init__(self, values):
        self.values, self.weights = values, {}

    def on_epoch_end(self, trainer, record):
        if self.values[record["epoch"] - 1] is not None:
            record["val_accuracy"] = self.values[record["epoch"] - 1]
        self.weights[record["epoch"]] = {k: v.clone() for k, v in trainer.model.state_dict().items()}


def _scripted_trainer(run_dir, epochs: int, script: _Scripted, history=None, extra=()) -> Trainer:
    """A tiny trainer whose ``val_accuracy`` comes from ``script``, keeping its best in ``run_dir``."""
    cfg = TrainConfig(epochs=epochs, batch_size=4, optimizer="adam", lr=1e-2, device="cpu",
                      keep_best="val_accuracy")
    return Trainer(SACNN(ModelConfig(channels=(4,))), cfg, _Batches(3),
                   [script, Checkpointer(run_dir, {"train": cfg.to_dict()}, best=cfg.keep_best), *extra], history)


def test_history_best_epoch():
    h = History(epochs=[{"epoch": 1, "val_accuracy": 0.5}, {"epoch": 2}, {"epoch": 3, "val_accuracy": 0.9},
                        {"epoch": 4, "val_accuracy": float("nan")}, {"epoch": 5, "val_accuracy": 0.9}])
    assert h.best_epoch("val_accuracy") == 3  # the earliest of ties; missing and NaN never count
    assert h.best_epoch("val_pointing_game") is None and History().best_epoch("val_accuracy") is None


def test_keep_best_keeps_the_best_epochs_checkpoint(tmp_path):
    """best.pt holds epoch 2 (0.8), not the later tie (epoch 4), the unevaluated epoch 3 or the last."""
    script = _Scripted([0.6, 0.8, None, 0.8, 0.7])
    trainer = _scripted_trainer(tmp_path, 5, script)
    trainer.fit()
    best, last = read_checkpoint(tmp_path / "best.pt"), read_checkpoint(tmp_path / "checkpoint.pt")
    assert best["epoch"] == 2 and last["epoch"] == 5 and trainer.history.best_epoch("val_accuracy") == 2
    for k, v in best["model"].items():
        assert torch.equal(v, script.weights[2][k]), k
    assert not all(torch.equal(v, script.weights[5][k]) for k, v in best["model"].items())


def test_keep_best_survives_an_interruption(tmp_path):
    """The best (epoch 1) comes before the interruption (at epoch 3): the resumed run reads it from the
    history and keeps it, against the later 0.5 / 0.4 / 0.6."""
    first = _Scripted([0.9, 0.5, 0.4, 0.6])
    with pytest.raises(KeyboardInterrupt):
        _scripted_trainer(tmp_path, 4, first, extra=[Interrupt(at=3)]).fit()
    again = _scripted_trainer(tmp_path, 4, _Scripted([0.9, 0.5, 0.4, 0.6]), History.load(tmp_path))
    again.load_state_dict(read_checkpoint(tmp_path / "checkpoint.pt"))
    again.fit()
    assert read_checkpoint(tmp_path / "checkpoint.pt")["epoch"] == 4
    assert read_checkpoint(tmp_path / "best.pt")["epoch"] == 1 and again.history.best_epoch("val_accuracy") == 1
    for k, v in read_checkpoint(tmp_path / "best.pt")["model"].items():
        assert torch.equal(v, first.weights[1][k]), k


def test_keep_best_through_train_resume_and_load_run(tmp_path):
    with pytest.raises(ValueError, match="Test split"):  # textile's per-epoch figures are test figures
        RunConfig.preset("fast", data="textile", keep_best="val_accuracy")
    textile = RunConfig.preset("fast", data="textile")
    textile.train = replace(textile.train, keep_best="val_accuracy")  # around the constructor's check
    with pytest.raises(ValueError, match="Test split"):
        train(textile, tmp_path / "textile", progress=False)
    assert not (tmp_path / "textile").exists()
    cfg = tiny_config(epochs=3, keep_best="val_pointing_game")
    with pytest.raises(ValueError, match="run folder"):
        train(cfg, progress=False)
    with pytest.raises(KeyboardInterrupt):
        train(cfg, tmp_path / "resumed", progress=False, callbacks=[Interrupt()])
    resumed = train(cfg, tmp_path / "resumed", resume=True, progress=False)
    whole = train(cfg, tmp_path / "whole", progress=False)
    best = whole.history.best_epoch("val_pointing_game")
    assert best == resumed.history.best_epoch("val_pointing_game") and best is not None
    a, b = load_run(tmp_path / "whole", "best.pt"), load_run(tmp_path / "resumed", "best.pt")
    assert read_checkpoint(tmp_path / "whole" / "best.pt")["epoch"] == best
    assert read_checkpoint(tmp_path / "resumed" / "best.pt")["epoch"] == best
    for (k, v), w in zip(a.model.state_dict().items(), b.model.state_dict().values()):
        assert torch.equal(v, w), k


def test_compiled_forward_trains_the_same_weights_as_eager():
    """TrainConfig.compile: torch.compile's forward pass on the CPU trains what the eager one trains; the checkpoint
    keeps the model's own keys."""
    weights = {}
    for mode in ("off", "default"):
        # SGD: the rounding of a compiled kernel moves a weight by lr × its size (Adam would scale it up to lr)
        run = train(tiny_config(compile=mode, epochs=1, device="cpu", optimizer="sgd", lr=0.01), progress=False)
        weights[mode] = run.model.state_dict()
    assert weights["off"].keys() == weights["default"].keys()
    for k, v in weights["off"].items():
        assert torch.allclose(v.float(), weights["default"][k].float(), atol=1e-4), k


def test_cuda_graph_settings_are_checked():
    with pytest.raises(ValueError, match="schedule='constant'"):
        TrainConfig(cuda_graph=True, schedule="onecycle")
    with pytest.raises(ValueError, match="supervision='image'"):
        TrainConfig(cuda_graph=True, supervision="mask")
    with pytest.raises(ValueError, match="compile must be one of"):
        TrainConfig(compile="fast")
    # off CUDA the setting is ignored: the run trains as it would without it
    a = train(tiny_config(cuda_graph=True, schedule="constant", epochs=1, device="cpu"), progress=False)
    b = train(tiny_config(schedule="constant", epochs=1, device="cpu"), progress=False)
    assert all(torch.equal(x, y) for x, y in zip(a.model.state_dict().values(), b.model.state_dict().values()))
