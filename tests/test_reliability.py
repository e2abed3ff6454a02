"""Nothing lost, nothing silently wrong: folders of the user's are never eaten, interrupted writes leave the
old content whole, and wrong input ends in one clear ``error:`` line instead of a traceback or a figure
that was never measured."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from data_gen.__main__ import main as data_main
from data_gen.__main__ import write_characters
from data_gen.characters import CharacterConfig
from data_gen.folders import read_labels
from sacnn_lab.cli import main
from sacnn_lab.config import RunConfig
from sacnn_lab.experiment import train
from sacnn_lab.runfolder import LOCK, RunFolderBusy, run_lock
from tests.test_cli import TINY
from tests.test_trainer import tiny_config


def _tree(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


# ---- data sets: python -m data_gen characters | textile ------------------------------------------------

def test_characters_into_a_non_empty_folder_is_refused_and_leaves_it_whole(tmp_path, capsys):
    out = tmp_path / "set"
    assert data_main(["characters", "--n", "6", "--out", str(out), "--seed", "1", "--quiet"]) == 0
    before = _tree(out)
    assert data_main(["characters", "--n", "4", "--out", str(out), "--seed", "2", "--quiet"]) == 2
    assert "not empty" in capsys.readouterr().err and _tree(out) == before
    # --overwrite replaces the whole set: no image of the first seed is left under the new labels
    assert data_main(["characters", "--n", "4", "--out", str(out), "--seed", "2", "--quiet", "--overwrite"]) == 0
    assert sorted(p.name for p in (out / "images").iterdir()) == [f"{k:06d}.png" for k in range(4)]
    assert len(read_labels(out)) == 4 and json.loads((out / "config.json").read_text())["seed"] == 2
    assert [p.name for p in tmp_path.iterdir()] == ["set"]  # no staging folder left behind


def test_overwrite_never_replaces_a_folder_of_other_files(tmp_path, capsys):
    out = tmp_path / "thesis"
    out.mkdir()
    (out / "chapter1.tex").write_text("my work")
    assert data_main(["characters", "--n", "2", "--out", str(out), "--quiet", "--overwrite"]) == 2
    assert "chapter1.tex" in capsys.readouterr().err
    assert (out / "chapter1.tex").read_text() == "my work" and len(list(out.iterdir())) == 1


def test_a_set_interrupted_half_way_leaves_the_previous_one_as_it_was(tmp_path, monkeypatch):
    from data_gen.characters import CharacterGenerator

    out = tmp_path / "set"
    cfg = CharacterConfig()
    write_characters(out, cfg, n=6, seed=1, progress=False)
    before = _tree(out)
    real = CharacterGenerator.generate
    calls = []

    def dies_on_the_second_batch(self, *a, **k):
        calls.append(1)
        if len(calls) == 2:
            raise KeyboardInterrupt
        return real(self, *a, **k)

    monkeypatch.setattr(CharacterGenerator, "generate", dies_on_the_second_batch)
    with pytest.raises(KeyboardInterrupt):
        write_characters(out, cfg, n=8, seed=2, batch=4, progress=False, overwrite=True)
    assert _tree(out) == before and [p.name for p in tmp_path.iterdir()] == ["set"]


def test_the_cli_says_what_an_interruption_left(tmp_path, monkeypatch, capsys):
    import data_gen.__main__ as cli

    def interrupted(*a, **k):
        raise KeyboardInterrupt

    monkeypatch.setattr(cli, "write_characters", interrupted)
    assert data_main(["characters", "--n", "2", "--out", str(tmp_path / "x"), "--quiet"]) == 130
    assert "nothing was written" in capsys.readouterr().err


def test_textile_stages_refuses_and_keeps_inside_out(tmp_path, capsys):
    from data_gen.textile import TextileConfig, write_textile

    small = TextileConfig(image_size=64, defect_size=(10, 20))
    root = write_textile(tmp_path / "dagm", small, n_train=3, n_test=2, seed=1, workers=1, progress=False)
    (tmp_path / "dagm" / "Class2").mkdir()
    (tmp_path / "dagm" / "Class2" / "mine.txt").write_text("keep")
    before = _tree(root)
    with pytest.raises(FileExistsError, match="not empty"):
        write_textile(tmp_path / "dagm", small, n_train=2, n_test=2, seed=2, workers=1, progress=False)
    assert _tree(root) == before
    again = write_textile(tmp_path / "dagm", small, n_train=2, n_test=2, seed=2, workers=1, progress=False,
                          overwrite=True)
    assert again == root and len(list((root / "Train").glob("*.PNG"))) == 2
    with pytest.raises(FileExistsError, match="mine.txt"):
        write_textile(tmp_path / "dagm", small, n_train=2, n_test=2, workers=1, progress=False,
                      class_name="Class2", overwrite=True)
    assert data_main(["textile", "--out", str(tmp_path / "dagm" / "sub"), "--class-name", "../../escape",
                      "--n-train", "2", "--n-test", "2", "--size", "64", "--quiet"]) == 2
    assert "plain folder name" in capsys.readouterr().err
    assert not (tmp_path / "escape").exists() and not (tmp_path / "dagm" / "sub").exists()


# ---- run folders: train, demo -------------------------------------------------------------------------

@pytest.fixture(scope="module")
def run(tmp_path_factory):
    """A finished two-epoch tiny character run."""
    return train(tiny_config(), tmp_path_factory.mktemp("rel") / "run", progress=False)


def _copy_run(run, to: Path) -> Path:
    import shutil

    shutil.copytree(run.run_dir, to)
    return to


def test_demo_never_deletes_a_folder_it_did_not_write(tmp_path, capsys):
    out = tmp_path / "work"
    (out / ".git").mkdir(parents=True)
    (out / "thesis.tex").write_text("three years of work")
    (out / "checkpoint.pt").write_text("not a checkpoint")
    before = _tree(out)
    assert main(["demo", "--max-time", "1", "--out", str(out), "--quiet"]) == 2
    assert "not part of a sacnn-lab run" in capsys.readouterr().err and _tree(out) == before


def test_an_interrupted_demo_leaves_the_previous_demo_whole(run, tmp_path, monkeypatch, capsys):
    import sacnn_lab.cli as cli

    out = _copy_run(run, tmp_path / "demo")  # an earlier demo: a run with its figure and test figures
    (out / "defect_maps.png").write_bytes(b"\x89PNG\r\n\x1a\n the last demo's figure")
    (out / "test_metrics.json").write_text('{"accuracy": 0.98}')
    before = _tree(out)

    def interrupted(cfg, folder, quiet):
        (folder / "config.json").write_text("{}")  # half a new demo
        raise KeyboardInterrupt

    monkeypatch.setattr(cli, "_demo_into", interrupted)
    assert main(["demo", "--out", str(out), "--quiet"]) == 130
    assert "is as it was" in capsys.readouterr().err
    assert _tree(out) == before and [p.name for p in tmp_path.iterdir()] == ["demo"]

    def completes(cfg, folder, quiet):
        (folder / "defect_maps.png").write_bytes(b"the new one")
        return {k: 1.0 for k in ("accuracy", "precision", "recall", "auroc", "pointing_game")}

    monkeypatch.setattr(cli, "_demo_into", completes)
    assert main(["demo", "--out", str(out), "--quiet"]) == 0  # a complete demo replaces the old one
    assert _tree(out) == {"defect_maps.png": b"the new one"}


def test_train_refuses_a_folder_of_the_users_files(tmp_path, capsys):
    out = tmp_path / "mine"
    out.mkdir()
    (out / "config.json").write_text('{"my": "settings"}')  # a config.json that is not a run's
    (out / "history.json").write_text("[1, 2, 3]")
    before = _tree(out)
    assert main(["train", "--out", str(out), *TINY]) == 2
    err = capsys.readouterr().err
    assert "config.json" in err and "history.json" in err and _tree(out) == before


def test_a_living_trainings_lock_refuses_a_stale_one_is_replaced(run, tmp_path):
    import socket

    out = tmp_path / "r"
    holder = subprocess.Popen([sys.executable, "-c", "import sys, time\nfrom sacnn_lab.runfolder import run_lock\n"
                               f"with run_lock({str(out)!r}):\n    print('held', flush=True)\n    time.sleep(60)"],
                              stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "held"
        with pytest.raises(RunFolderBusy, match=f"process {holder.pid}"):
            train(tiny_config(), out, progress=False)
    finally:
        holder.kill()
        holder.wait()
    # killed while holding it: the lock file stays, its process is gone; recognised as stale, explained,
    # replaced, and released at the end
    assert json.loads((out / LOCK).read_text())["pid"] == holder.pid
    with pytest.warns(UserWarning, match=f"stale lock of process {holder.pid} on {socket.gethostname()}"):
        again = train(tiny_config(epochs=1), out, progress=False)
    assert again.history.epochs and not (out / LOCK).exists()
    with run_lock(out):
        assert json.loads((out / LOCK).read_text())["pid"] == os.getpid()
    assert not (out / LOCK).exists()


def test_two_trainings_into_one_new_folder_one_is_refused(tmp_path):
    out = tmp_path / "same"
    cmd = [sys.executable, "-m", "sacnn_lab.cli", "train", "--out", str(out), *TINY]
    procs = [subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for _ in range(2)]
    results = [(p.wait(timeout=300), p.stderr.read()) for p in procs]
    assert sorted(rc for rc, _ in results) == [0, 2], results
    refused = next(err for rc, err in results if rc == 2)
    assert "in use by another training" in refused or "already holds a run" in refused
    assert "Traceback" not in refused


def test_resuming_a_budget_stopped_run_adds_nothing(tmp_path, capsys):
    out = tmp_path / "budget"
    args = ["train", "--out", str(out), *TINY, "--epochs", "3", "--samples-per-epoch", "6000", "--max-time", "0.2"]
    assert main(args) == 0
    history = json.loads((out / "history.json").read_text())
    assert len(history["epochs"]) == 1 and history["epochs"][0]["partial"]
    capsys.readouterr()
    for _ in range(2):
        assert main([*args, "--resume"]) == 0
        assert "nothing left to do" in capsys.readouterr().out
    assert json.loads((out / "history.json").read_text()) == history


def test_resume_with_another_config_names_the_fields(run, tmp_path):
    with pytest.raises(ValueError, match=r"train\.lr: 0\.003 in the run, 0\.01 now"):
        train(tiny_config(lr=1e-2), run.run_dir, resume=True, progress=False)


def test_ctrl_c_says_what_was_saved_and_how_to_resume(tmp_path, monkeypatch, capsys):
    from sacnn_lab.trainer import Trainer

    out = tmp_path / "cc"
    real, calls = Trainer.train_step, []

    def interrupted_in_epoch_2(self, batch):
        calls.append(1)
        if self.epoch == 1:
            raise KeyboardInterrupt
        return real(self, batch)

    monkeypatch.setattr(Trainer, "train_step", interrupted_in_epoch_2)
    args = ["train", "--out", str(out), *TINY, "--epochs", "2"]
    assert main(args) == 130
    err = capsys.readouterr().err
    assert "epochs 1–1 are saved" in err and "--resume" in err and "Traceback" not in err
    assert not (out / LOCK).exists()
    monkeypatch.setattr(Trainer, "train_step", real)
    assert main([*args, "--resume"]) == 0


# ---- silently wrong figures ------------------------------------------------------------------------------

def test_a_dagm_split_without_label_folder_or_with_short_index_lines_is_an_error(tmp_path):
    import shutil

    from data_gen.folders import LabelFileError, read_dagm
    from data_gen.textile import TextileConfig, write_textile

    root = write_textile(tmp_path, TextileConfig(image_size=64, defect_size=(10, 20)), n_train=6, n_test=2,
                         seed=1, workers=1, progress=False)
    index = root / "Train" / "Label" / "Labels.txt"
    lines = index.read_text().splitlines()
    index.write_text("\n".join([*lines[:2], "3\t1", *lines[3:]]) + "\n")
    with pytest.raises(LabelFileError, match="Labels.txt:3: expected 5 fields"):
        read_dagm(root, "Train")
    shutil.rmtree(root / "Train" / "Label")
    with pytest.raises(FileNotFoundError, match="no Label/ folder"):
        read_dagm(root, "Train")


def _nan_checkpoint(run, to: Path) -> Path:
    state = torch.load(run.run_dir / "checkpoint.pt", weights_only=True)
    name = next(k for k, v in state["model"].items() if v.is_floating_point())
    state["model"][name] = torch.full_like(state["model"][name], float("nan"))
    torch.save(state, to)
    return to


def test_non_finite_weights_or_scores_are_errors_not_figures(run, tmp_path, capsys):
    from sacnn_lab.experiment import evaluate, split

    nan = _nan_checkpoint(run, tmp_path / "nan.pt")
    assert main(["evaluate", "--checkpoint", str(nan)]) == 2
    assert "non-finite weights" in capsys.readouterr().err
    img = tmp_path / "x.png"
    Image.fromarray(np.zeros((64, 64), np.uint8)).save(img)
    assert main(["predict", "--checkpoint", str(nan), "--out", str(tmp_path / "p"), str(img)]) == 2
    assert not (tmp_path / "p").exists()
    model = run.model
    with torch.no_grad():
        next(model.parameters()).fill_(float("nan"))
    try:
        with pytest.raises(FloatingPointError, match="non-finite scores"):
            evaluate(model, split(run.config, "test", n=8))
    finally:
        model.load_state_dict(torch.load(run.run_dir / "checkpoint.pt", weights_only=True)["model"])


def test_predict_keeps_relative_paths_and_reports_a_bad_file_without_losing_the_rest(run, tmp_path, capsys,
                                                                                     monkeypatch):
    monkeypatch.chdir(tmp_path)
    for folder, gray in (("a", 0), ("b", 255)):
        Path(folder).mkdir()
        Image.fromarray(np.full((64, 64), gray, np.uint8)).save(f"{folder}/x.png")
    Path("bad.png").write_bytes(b"not an image")
    rc = main(["predict", "--checkpoint", str(run.run_dir), "--out", "out", "a/x.png", "bad.png", "b/x.png"])
    assert rc == 1
    assert "bad.png is not a readable image" in capsys.readouterr().err
    assert Path("out/a/x_overlay.png").is_file() and Path("out/b/x_overlay.png").is_file()
    results = json.loads(Path("out/predictions.json").read_text())
    assert [r["image"] for r in results] == ["a/x.png", "bad.png", "b/x.png"]
    assert "error" in results[1] and results[2]["overlay"] == "b/x_overlay.png"


def test_images_too_small_for_the_network_warn_or_fail_clearly(run, tmp_path, capsys):
    small, tiny = tmp_path / "s.png", tmp_path / "t.png"
    Image.fromarray(np.zeros((16, 16), np.uint8)).save(small)
    Image.fromarray(np.zeros((1, 1), np.uint8)).save(tiny)
    assert main(["predict", "--checkpoint", str(run.run_dir), "--out", str(tmp_path / "p"), str(small)]) == 0
    assert "smaller than the network's" in capsys.readouterr().err
    assert main(["predict", "--checkpoint", str(run.run_dir), "--out", str(tmp_path / "p"), str(tiny)]) == 2
    err = capsys.readouterr().err
    assert "too small" in err and "Traceback" not in err


@pytest.mark.parametrize("args, message", [
    (["evaluate", "--n", "0"], "must be a whole number >= 1"),
    (["evaluate", "--n", "-3"], "must be a whole number >= 1"),
    (["demo", "--max-time", "0"], "max_time must be a finite number > 0"),
])
def test_zero_or_negative_sizes_are_refused_not_read_as_all(run, tmp_path, args, message, capsys):
    where = ["--checkpoint", str(run.run_dir)] if args[0] == "evaluate" else ["--out", str(tmp_path / "d")]
    assert main([*args, *where]) == 2
    assert message in capsys.readouterr().err and not (tmp_path / "d").exists()


# ---- the same data on every machine ---------------------------------------------------------------------

def test_a_run_records_its_faces_and_evaluation_elsewhere_says_so(run, tmp_path, capsys):
    out = _copy_run(run, tmp_path / "run")
    faces = json.loads((out / "faces.json").read_text())
    assert faces["eval"] and all(len(f["sha256"]) == 64 for f in faces["train"])
    assert main(["evaluate", "--checkpoint", str(out), "--n", "8"]) == 0
    assert "warning" not in capsys.readouterr().err
    faces["eval"][0]["sha256"] = "0" * 64  # as if that face were another version on this machine
    faces["eval"].append({"name": "Some System Face", "sha256": "1" * 64})
    (out / "faces.json").write_text(json.dumps(faces))
    assert main(["evaluate", "--checkpoint", str(out), "--n", "8"]) == 0
    err = capsys.readouterr().err
    assert "font faces differ" in err and "Some System Face" in err


# ---- clear errors instead of tracebacks -------------------------------------------------------------------

class Pickled:
    """An object a checkpoint of ours never holds."""


def test_a_checkpoint_without_weights_or_not_ours_is_named_plainly(run, tmp_path, capsys):
    state = torch.load(run.run_dir / "checkpoint.pt", weights_only=True)
    del state["model"]
    torch.save(state, tmp_path / "nomodel.pt")
    assert main(["evaluate", "--checkpoint", str(tmp_path / "nomodel.pt")]) == 2
    assert "has no model entry" in capsys.readouterr().err

    torch.save({"obj": Pickled()}, tmp_path / "pickled.pt")  # torch refuses it with weights_only=True
    assert main(["evaluate", "--checkpoint", str(tmp_path / "pickled.pt")]) == 2
    err = capsys.readouterr().err
    assert "not a file this toolkit wrote" in err and "weights_only" not in err


@pytest.fixture(scope="module")
def cli_run(tmp_path_factory):
    """A one-epoch run trained by the command line with ``TINY``."""
    out = tmp_path_factory.mktemp("cli") / "run"
    assert main(["train", "--out", str(out), *TINY]) == 0
    return out


@pytest.mark.parametrize("damage", ["empty json", "truncated json", "truncated npz", "empty npz"])
def test_a_damaged_history_on_resume_is_one_error_line(cli_run, tmp_path, damage, capsys):
    import shutil

    out = shutil.copytree(cli_run, tmp_path / "run")
    name = "history.json" if "json" in damage else "history.npz"
    data = (out / name).read_bytes()
    (out / name).write_bytes(b"" if "empty" in damage else data[: len(data) // 2])
    assert main(["train", "--out", str(out), *TINY, "--resume"]) == 2
    err = capsys.readouterr().err
    assert "unreadable or damaged history" in err and err.count("\n") == 1


@pytest.mark.parametrize("errno_name, text", [("ENOSPC", "No space left on device"),
                                              ("EROFS", "Read-only file system")])
def test_a_full_or_read_only_disk_is_an_error_line_and_leaves_no_temporary_file(tmp_path, monkeypatch, capsys,
                                                                                   errno_name, text):
    import errno

    import sacnn_lab.history as H

    def fails(fd):  # the disk refuses the first checkpoint or history write (tests run as root: no chmod)
        raise OSError(getattr(errno, errno_name), text)

    monkeypatch.setattr(H.os, "fsync", fails)
    out = tmp_path / "full"
    assert main(["train", "--out", str(out), *TINY]) == 2
    err = capsys.readouterr().err
    assert "cannot write" in err and text in err and err.count("\n") == 1
    assert not out.exists()  # the first write failed: no temporary file, no lock, no empty folder left


def test_out_under_a_file_is_an_error_line(tmp_path, capsys):
    (tmp_path / "file").write_text("x")
    assert main(["train", "--out", str(tmp_path / "file" / "run"), *TINY]) == 2
    assert main(["demo", "--out", str(tmp_path / "file"), "--max-time", "1"]) == 2
    err = capsys.readouterr().err
    assert err.count("error:") == 2 and "Traceback" not in err


def test_labels_csv_with_a_byte_order_mark_is_read_another_encoding_is_named(tmp_path):
    from data_gen.folders import LabelFileError

    (tmp_path / "labels.csv").write_bytes("filename,label,x0,y0,x1,y1\na.png,1,1,2,3,4\n".encode("utf-8-sig"))
    assert read_labels(tmp_path)[0].boxes == [(1, 2, 3, 4)]
    (tmp_path / "labels.csv").write_bytes("filename,label,x0,y0,x1,y1\nbild_ä.png,0,,,,\n".encode("latin-1"))
    with pytest.raises(LabelFileError, match="labels.csv: not a text file in UTF-8"):
        read_labels(tmp_path)


@pytest.mark.parametrize("args, message", [
    (["--data", "textile", "--early-epochs", "3"], "--early-epochs"),
    (["--batch-size", "0"], "batch_size must be >= 1"),
    (["--lr", "inf"], "lr must be a finite number > 0"),
    (["--lr", "nan"], "lr must be a finite number > 0"),
])
def test_bad_training_flags_are_refused_with_a_flag_or_field_that_exists(tmp_path, args, message, capsys):
    assert main(["train", "--out", str(tmp_path / "r"), *args, "--quiet"]) == 2
    assert message in capsys.readouterr().err and not (tmp_path / "r").exists()


@pytest.mark.parametrize("field, value", [("lr", float("inf")), ("momentum", -0.5), ("weight_decay", -1e-4),
                                          ("class_weights", (1.0, float("nan"))), ("grad_clip", float("nan")),
                                          ("max_time", float("inf"))])
def test_config_values_that_cannot_work_are_refused_when_the_config_is_made(field, value):
    from sacnn_lab.config import TrainConfig

    with pytest.raises(ValueError, match=field):
        TrainConfig(**{field: value})


def test_a_run_that_fails_before_writing_leaves_no_folder_and_browser_litter_is_no_reason_to_refuse(tmp_path):
    cfg = RunConfig.preset("fast", data="textile").updated(folder=str(tmp_path / "no-dagm-here"))
    with pytest.raises(FileNotFoundError, match="not a DAGM 2007 class folder"):
        train(cfg, tmp_path / "run", progress=False)
    assert not (tmp_path / "run").exists()
    shown = tmp_path / "browsed"
    shown.mkdir()
    (shown / ".DS_Store").write_bytes(b"\0\0\0\1Bud1")
    assert train(tiny_config(epochs=1), shown, progress=False).history.epochs


# ---- found in review -------------------------------------------------------------------------------------

def test_demo_replaces_only_an_earlier_demo_never_a_training_run(run, tmp_path, capsys):
    out = _copy_run(run, tmp_path / "mine")  # a complete training run: no test_metrics.json
    before = _tree(out)
    assert main(["demo", "--out", str(out), "--max-time", "1", "--quiet"]) == 2
    assert "holds a training run, not an earlier demo" in capsys.readouterr().err and _tree(out) == before


def test_files_a_run_writes_count_as_a_runs_only_by_their_content(tmp_path, capsys):
    out = tmp_path / "mine"
    out.mkdir()
    (out / "best.pt").write_text("my own best model")
    (out / "history.npz").write_bytes(b"PK not a history")
    assert main(["train", "--out", str(out), *TINY]) == 2
    err = capsys.readouterr().err
    assert "best.pt" in err and "history.npz" in err and (out / "best.pt").read_text() == "my own best model"


def test_a_data_gen_failure_of_any_kind_is_one_line(tmp_path, monkeypatch, capsys):
    from concurrent.futures.process import BrokenProcessPool

    import data_gen.__main__ as cli

    def broken(*a, **k):
        raise BrokenProcessPool("a worker was killed (out of memory?)")

    monkeypatch.setattr(cli, "write_characters", broken)
    assert data_main(["characters", "--n", "2", "--out", str(tmp_path / "x"), "--quiet"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: a worker was killed") and err.count("\n") == 1


def test_predict_keeps_x_png_and_x_jpg_apart(run, tmp_path, capsys):
    for suffix in ("png", "jpg"):
        Image.fromarray(np.zeros((64, 64), np.uint8)).save(tmp_path / f"x.{suffix}")
    assert main(["predict", "--checkpoint", str(run.run_dir), "--out", str(tmp_path / "p"),
                 str(tmp_path / "x.png"), str(tmp_path / "x.jpg")]) == 0
    assert sorted(p.name for p in (tmp_path / "p").glob("*.png")) == ["x_jpg_overlay.png", "x_png_overlay.png"]
