"""Export to ONNX and the torch-free runtime: every aggregation, the baseline's score, tiles that equal one pass,
and ``predict --model`` where importing torch is blocked."""

from __future__ import annotations

import csv
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from data_gen.characters import CharacterConfig
from sacnn_lab.cli import main
from sacnn_lab.competition import pool
from sacnn_lab.config import BaselineConfig, DataConfig, ModelConfig, RunConfig, TrainConfig
from sacnn_lab.experiment import build_model, train
from sacnn_lab.export import sidecar_path, to_onnx
from sacnn_lab.inference import predict
from sacnn_lab.runtime import OnnxModel, pool_cells, resize_bilinear

ROOT = Path(__file__).resolve().parents[1]


def tiny(model=None, **train_kw) -> RunConfig:
    chars = CharacterConfig(image_size=64, char_size=(14, 18), distractor_scales=(0.3, 3.0))
    return RunConfig(model or ModelConfig(channels=(4, 8, 8), norm="batch", input_norm="abs_deviation"),
                     DataConfig(characters=chars, samples_per_epoch=32, val_size=16, test_size=12, probe_size=4),
                     TrainConfig(**{"epochs": 1, "batch_size": 16, "optimizer": "adam", "lr": 1e-3,
                                    "reduction": "mean", "eval_batch_size": 16, **train_kw}))


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    return train(tiny(), tmp_path_factory.mktemp("export") / "run", progress=False)


@pytest.fixture(scope="module")
def eager_run(run, tmp_path_factory):
    """The run with its head pushed towards "defective" (most images called so: boxes to compare)."""
    import shutil

    folder = tmp_path_factory.mktemp("eager") / "run"
    shutil.copytree(run.run_dir, folder)
    state = torch.load(folder / "checkpoint.pt", weights_only=True)
    state["model"]["head.bias"][1] += 2.0
    torch.save(state, folder / "checkpoint.pt")
    return folder


def test_export_writes_a_verified_graph_and_its_description(run, tmp_path):
    meta = to_onnx(run.model, tmp_path / "m.onnx", config=run.config)
    side = json.loads(sidecar_path(tmp_path / "m.onnx").read_text())
    assert side == json.loads(json.dumps(meta))
    assert side["input"]["range"] == [0.0, 1.0] and side["input"]["dynamic"] == ["batch", "height", "width"]
    assert side["thresholds"] == {"image": 0.5, "map": 0.5, "validation": None}
    assert side["receptive_field"] > 0 and side["stride"] == 8 and side["trained_size"] == [64, 64]
    assert len(side["config_sha256"]) == 64 and side["package_version"]
    v = side["verified"]
    assert len(v["sizes"]) == 2 and [64, 64] not in v["sizes"]
    assert v["score_max_diff"] <= 1e-4 and v["map_max_diff"] <= 1e-4


@pytest.mark.parametrize("aggregation", ["max", "mean", "lse", "topk"])
def test_every_aggregation_exports_and_runs_like_pytorch(tmp_path, aggregation):
    cfg = tiny(ModelConfig(channels=(4, 8), norm="batch", aggregation=aggregation))
    model = build_model(cfg).eval()
    to_onnx(model, tmp_path / "m.onnx", config=cfg)
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, (3, 72, 96), dtype=np.uint8)
    ours, theirs = OnnxModel(tmp_path / "m.onnx").predict(images), predict(model, images)
    assert np.allclose(ours.score, theirs.score.numpy(), atol=1e-5)
    assert np.allclose(ours.map, theirs.map.numpy(), atol=1e-5)
    cells = torch.from_numpy(ours.cells)
    assert np.allclose(pool_cells(ours.cells, **model.aggregation), pool(cells, **model.aggregation).numpy(),
                       atol=1e-6)


def test_resize_matches_pytorch_bilinear():
    x = torch.rand(2, 3, 5, 7)
    for size in ((5, 7), (40, 21), (3, 100)):
        ref = F.interpolate(x, size=size, mode="bilinear", align_corners=False).numpy()
        assert np.allclose(resize_bilinear(x.numpy(), *size), ref, atol=1e-6)


def test_several_types_and_colour_export(tmp_path):
    from sacnn_lab.model import SACNN

    model = SACNN(ModelConfig(channels=(4, 8), num_defect_types=2, in_channels=3)).eval()
    meta = to_onnx(model, tmp_path / "m.onnx", size=(64, 64))
    assert meta["input"]["color"] == "rgb"
    images = np.random.default_rng(1).integers(0, 256, (2, 64, 80, 3), dtype=np.uint8)
    ours, theirs = OnnxModel(tmp_path / "m.onnx").predict(images), predict(model, images)
    assert ours.types.shape == (2, 2) and np.allclose(ours.types, theirs.score.numpy(), atol=1e-5)
    assert np.allclose(ours.map, theirs.map.numpy().max(1), atol=1e-5)


def test_the_baseline_exports_its_score_only(tmp_path):
    cfg = tiny(BaselineConfig(arch="vgg19_bn", width=0.0625))
    model = build_model(cfg, pretrained=False).eval()
    meta = to_onnx(model, tmp_path / "b.onnx", config=cfg)
    assert meta["maps"] is False and meta["input"]["size"] == [64, 64]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["b.json", "b.onnx"]  # one self-contained graph
    images = np.random.default_rng(2).integers(0, 256, (2, 64, 64), dtype=np.uint8)
    ours = OnnxModel(tmp_path / "b.onnx").predict(images)
    assert ours.map is None and np.allclose(ours.score, predict(model, images).score.numpy(), atol=1e-5)
    with pytest.raises(ValueError, match="takes 64×64"):
        OnnxModel(tmp_path / "b.onnx").predict(images[:, :32])


@pytest.mark.parametrize("norm", ["abs_deviation", "centre"])
def test_tiles_give_the_single_pass_map(tmp_path, norm):
    cfg = tiny(ModelConfig(channels=(4, 8, 8), norm="batch", input_norm=norm, first_stride=2))
    model = build_model(cfg).eval()
    to_onnx(model, tmp_path / "m.onnx", size=(64, 64))
    m = OnnxModel(tmp_path / "m.onnx")
    rng = np.random.default_rng(3)
    image = rng.integers(0, 200, (150, 530), dtype=np.uint8)
    image[60:80, 300:330] = 255
    whole, tiled = m.predict(image), m.predict(image, tile=128)
    assert len(m.tiles(150, 530, 128)) > 4  # several tiles in both directions
    assert np.abs(whole.cells - tiled.cells).max() < 1e-5 and np.abs(whole.map - tiled.map).max() < 1e-5
    assert tiled.score == pytest.approx(whole.score, abs=1e-6)
    with pytest.raises(ValueError, match="too small"):
        m.predict(image, tile=32)


BLOCK_TORCH = """
import sys
class _Block:
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in ("torch", "torchvision"):
            raise ImportError(f"importing {name} is blocked in this test")
sys.meta_path.insert(0, _Block())
from sacnn_lab.cli import main
code = main(sys.argv[1:])
assert "torch" not in sys.modules
sys.exit(code)
"""


def _rows(path: Path) -> list[dict]:
    with open(path, newline="") as fh:
        return list(csv.DictReader(fh))


def test_predict_through_onnx_needs_no_torch_and_gives_the_same_files(eager_run, tmp_path, capsys):
    from PIL import Image

    folder = tmp_path / "images"
    folder.mkdir()
    rng = np.random.default_rng(4)
    for i in range(3):
        Image.fromarray(rng.integers(0, 256, (100, 180 + 16 * i), dtype=np.uint8)).save(folder / f"im{i}.png")
    assert main(["export", "--checkpoint", str(eager_run), "--out", str(tmp_path / "m.onnx")]) == 0
    assert "checked against PyTorch" in capsys.readouterr().out
    for method, tile in (("threshold", None), ("otsu", "96")):
        torch_out, onnx_out = tmp_path / f"torch-{method}", tmp_path / f"onnx-{method}"
        assert main(["predict", "--checkpoint", str(eager_run), "--out", str(torch_out), "--method", method,
                     str(folder)]) == 0
        res = subprocess.run([sys.executable, "-c", BLOCK_TORCH, "predict", "--model", str(tmp_path / "m.onnx"),
                              "--out", str(onnx_out), "--method", method, *(["--tile", tile] if tile else []),
                              str(folder)], capture_output=True, text=True, cwd=ROOT, timeout=300)
        assert res.returncode == 0, res.stderr
        names = sorted(p.relative_to(torch_out) for p in torch_out.rglob("*"))
        assert names == sorted(p.relative_to(onnx_out) for p in onnx_out.rglob("*"))
        ours, theirs = _rows(onnx_out / "predictions.csv"), _rows(torch_out / "predictions.csv")
        assert any(r["boxes"] for r in theirs)  # boxes were found, and are compared
        for a, b in zip(ours, theirs):
            assert a["image"] == b["image"] and a["defective"] == b["defective"] and a["boxes"] == b["boxes"]
            assert float(a["score"]) == pytest.approx(float(b["score"]), abs=1e-4)
    # NMS peaks on a map's near-flat stretches move with float rounding: it runs, its boxes are not compared
    res = subprocess.run([sys.executable, "-c", BLOCK_TORCH, "predict", "--model", str(tmp_path / "m.onnx"),
                          "--out", str(tmp_path / "nms"), "--method", "nms", str(folder)],
                         capture_output=True, text=True, cwd=ROOT, timeout=300)
    assert res.returncode == 0 and any(r["boxes"] for r in _rows(tmp_path / "nms" / "predictions.csv")), res.stderr
    assert main(["predict", "--checkpoint", str(eager_run), "--model", str(tmp_path / "m.onnx"), str(folder)]) == 2
    assert "not both" in capsys.readouterr().err


def test_a_failed_verification_leaves_an_earlier_export_whole(run, tmp_path):
    to_onnx(run.model, tmp_path / "m.onnx", config=run.config)
    before = (tmp_path / "m.onnx").read_bytes(), sidecar_path(tmp_path / "m.onnx").read_text()
    with pytest.raises(RuntimeError, match="differs from PyTorch"):
        to_onnx(run.model, tmp_path / "m.onnx", config=run.config, tolerance=-1.0)  # no difference passes
    assert ((tmp_path / "m.onnx").read_bytes(), sidecar_path(tmp_path / "m.onnx").read_text()) == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m.json", "m.onnx"]  # no partial file left
