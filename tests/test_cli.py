"""The sacnn-lab command line: train → evaluate → predict round trips, and clear errors."""

from __future__ import annotations

import json

import pytest
import torch
from PIL import Image

from data_gen.__main__ import main as data_main
from sacnn_lab.cli import main

TINY = ["--epochs", "1", "--early-epochs", "0", "--samples-per-epoch", "32", "--batch-size", "16", "--val-size", "16",
        "--test-size", "24", "--grad-clip", "20", "--keep-best", "val_accuracy", "--quiet"]


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory):
    out = tmp_path_factory.mktemp("cli") / "run"
    assert main(["train", "--data", "characters", "--preset", "fast", "--out", str(out), *TINY]) == 0
    return out


def test_train_writes_a_run_folder(run_dir, capsys):
    for name in ("config.json", "checkpoint.pt", "history.json", "history.npz"):
        assert (run_dir / name).is_file()
    train_cfg = json.loads((run_dir / "config.json").read_text())["train"]
    assert train_cfg["grad_clip"] == 20 and train_cfg["keep_best"] == "val_accuracy"
    assert (run_dir / "best.pt").is_file()  # one epoch: the best is the only one


def test_evaluate_the_best_checkpoint(run_dir, capsys):
    capsys.readouterr()
    assert main(["evaluate", "--checkpoint", str(run_dir / "best.pt"), "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["images"] == 24


def test_evaluate_generated_split_as_json(run_dir, capsys):
    capsys.readouterr()
    assert main(["evaluate", "--checkpoint", str(run_dir), "--json"]) == 0
    res = json.loads(capsys.readouterr().out)
    assert res["images"] == 24
    for k in ("accuracy", "precision", "recall", "auroc", "pointing_game"):
        assert k in res
    # a tolerance as wide as the image makes every defective image a hit
    assert main(["evaluate", "--checkpoint", str(run_dir), "--json", "--tolerance", "200"]) == 0
    assert json.loads(capsys.readouterr().out)["pointing_game"] == 1.0


def test_evaluate_a_labelled_folder(run_dir, tmp_path, capsys):
    data = tmp_path / "folder"
    assert data_main(["characters", "--n", "20", "--out", str(data), "--seed", "5", "--quiet"]) == 0
    capsys.readouterr()
    assert main(["evaluate", "--checkpoint", str(run_dir / "checkpoint.pt"), "--data", str(data), "--json"]) == 0
    res = json.loads(capsys.readouterr().out)
    assert res["images"] == 20 and 0.0 <= res["accuracy"] <= 1.0


def test_predict_writes_overlays_and_boxes(run_dir, tmp_path, capsys):
    from data_gen.characters import generate

    b = generate(seed=3, n=2)
    paths = []
    for i in range(2):
        p = tmp_path / f"img{i}.png"
        Image.fromarray(b.images[i]).save(p)
        paths.append(str(p))
    out = tmp_path / "pred"
    assert main(["predict", "--checkpoint", str(run_dir), "--out", str(out), *paths]) == 0
    res = json.loads((out / "predictions.json").read_text())
    assert [r["image"] for r in res] == paths and all(0 <= r["score"] <= 1 for r in res)
    assert (out / "img0_overlay.png").is_file()
    width, height = Image.open(out / "img1_overlay.png").size
    assert width >= 480 and height >= 480  # a 136² image is drawn enlarged, with its colour bar


def test_bad_inputs_are_clear_errors(run_dir, tmp_path, capsys):
    rgb, text = tmp_path / "rgb.jpg", tmp_path / "notes.png"
    Image.new("RGB", (136, 136), (40, 90, 200)).save(rgb)  # a colour photograph is read as gray
    assert main(["predict", "--checkpoint", str(run_dir), "--out", str(tmp_path / "p"), str(rgb)]) == 0
    text.write_text("not an image")
    assert main(["predict", "--checkpoint", str(run_dir), "--out", str(tmp_path / "p"), str(text)]) == 2
    assert "notes.png is not a readable image" in capsys.readouterr().err
    assert main(["evaluate", "--checkpoint", str(run_dir), "--data", str(tmp_path / "missing")]) == 2
    assert "missing does not exist" in capsys.readouterr().err
    small = tmp_path / "small"
    assert data_main(["characters", "--n", "3", "--out", str(small), "--size", "100", "--quiet"]) == 0
    assert main(["evaluate", "--checkpoint", str(run_dir), "--data", str(small)]) == 2
    assert "expected 136×136" in capsys.readouterr().err
    bad = tmp_path / "bad.pt"
    bad.write_bytes(b"garbage")
    assert main(["evaluate", "--checkpoint", str(bad)]) == 2
    assert "bad.pt is not a readable sacnn-lab checkpoint" in capsys.readouterr().err


def test_train_refuses_to_overwrite_and_resumes(run_dir, capsys):
    assert main(["train", "--out", str(run_dir), *TINY]) == 2
    assert "--resume" in capsys.readouterr().err
    assert main(["train", "--out", str(run_dir), "--resume", *TINY]) == 0  # already done: nothing to add
    state = torch.load(run_dir / "checkpoint.pt", weights_only=True)
    assert state["epoch"] == 1


def test_demo_the_readme_main_job_trains_evaluates_and_draws(tmp_path, capsys):
    out = tmp_path / "demo"
    assert main(["demo", "--max-time", "2", "--out", str(out), "--quiet"]) == 0  # a 2-second budget
    text = capsys.readouterr().out
    assert "evaluating on 2000 test images" in text and "pointing game" in text
    metrics = json.loads((out / "test_metrics.json").read_text())
    assert 0 <= metrics["accuracy"] <= 1 and (out / "defect_maps.png").stat().st_size > 10_000
    assert main(["demo", "--max-time", "2", "--out", str(out), "--quiet"]) == 0  # a second demo replaces the first
