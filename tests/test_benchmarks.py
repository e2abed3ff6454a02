"""The benchmark scripts stay runnable: each parses its arguments, and the GPU check runs end to end on the CPU.

The figures themselves are measured by hand (docs/results.md); here only the scripts' plumbing is tried,
so that a change in the package cannot leave a benchmark broken until the next time a GPU is at hand.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

BENCHMARKS = Path(__file__).resolve().parents[1] / "benchmarks"
SCRIPTS = sorted(BENCHMARKS.glob("*.py"))


def _run(*args: str, timeout: float = 300, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, *args], capture_output=True, text=True, timeout=timeout,
                          cwd=BENCHMARKS.parent, env={**os.environ, **(env or {})})


def test_every_benchmark_is_found():
    assert {p.name for p in SCRIPTS} >= {"cuda_check.py", "compare_gradcam.py", "train_characters.py",
                                         "train_textile.py", "generator_speed.py", "preset_ablation.py",
                                         "real_surfaces.py", "aggregation_study.py", "weibull_detector.py",
                                         "methods_table.py", "export_latency.py", "pointing_drift.py",
                                         "gpu_speed.py", "metrics_speed.py"}


@pytest.mark.parametrize("script", SCRIPTS, ids=lambda p: p.name)
def test_benchmark_parses_its_arguments(script):
    res = _run(str(script), "--help")
    assert res.returncode == 0, res.stderr
    assert res.stdout.startswith("usage:")


def test_cuda_check_runs_on_the_cpu(tmp_path):
    out = tmp_path / "check.json"
    res = _run("benchmarks/cuda_check.py", "--device", "cpu", "--smoke", "--skip", "repeat", "speed", "fast",
               "--paper-time", "2", "--paper-variants", "grad_clip=20,amp=0", "--textile-time", "0",
               "--json", str(out))
    assert res.returncode == 0, res.stdout[-2000:] + res.stderr[-2000:]
    assert "changed: {'grad_clip': 20, 'amp': False}" in res.stdout
    figures = json.loads(out.read_text())
    assert figures["device"] == "cpu"
    # on the CPU the "CUDA" side is the CPU again (channels-last): the same winners, the gradient's rule holds
    assert figures["agreement"]["paper"]["cuda_fp32"]["same_peak"] == 1.0
    assert figures["agreement"]["fast"]["cuda_fp32"]["max_abs_map"] < 1e-4
    assert figures["gradient_winner_only"] is True
    paper = figures["paper grad_clip=20,amp=0"]
    assert paper["epochs"] in (1, 2) and paper["samples"] > 0  # the 2 s budget may cut the second epoch
    assert 0.0 <= paper["test"]["accuracy"] <= 1.0


def test_gpu_speed_times_each_variant_of_the_step(tmp_path):
    out = tmp_path / "speed.json"
    res = _run("benchmarks/gpu_speed.py", "--device", "cpu", "--smoke", "--variants", "eager", "cuda-graph",
               "--skip", "runs", "processes", "--json", str(out))
    assert res.returncode == 0, res.stdout[-2000:] + res.stderr[-2000:]
    steps = json.loads(out.read_text())["steps"]
    assert set(steps) == {"eager", "cuda-graph"} and all(r["samples_per_s"] > 0 for r in steps.values())
    assert steps["cuda-graph"]["max_rel_weight_diff_vs_first"] == 0.0  # off CUDA: the eager step, the same weights


def test_cuda_check_refuses_without_cuda_by_default():
    res = _run("benchmarks/cuda_check.py", "--skip", "agreement", "repeat", "speed", "fast", "paper",
               "--textile-time", "0", timeout=120, env={"CUDA_VISIBLE_DEVICES": ""})  # no GPU, even on one
    assert res.returncode != 0
    assert "needs a CUDA device" in res.stderr


def test_real_surfaces_cuts_a_class_folder_from_photographs_and_trains_on_it(tmp_path):
    out = tmp_path / "real"
    res = _run("benchmarks/real_surfaces.py", "--out", str(out), "--run", str(tmp_path / "run"), "--good", "24",
               "--bad", "12", "--epochs", "1", "--quiet")
    assert res.returncode == 0, res.stderr
    made = json.loads((out / "made_by.json").read_text())
    assert made["counts"] == {"train": {"good": 18, "defective": 9}, "test": {"good": 6, "defective": 3}}
    assert "test images: accuracy" in res.stdout and "  gravel: accuracy" in res.stdout
    assert len(list((out / "test" / "masks").rglob("*.png"))) == 3


def test_aggregation_study_prints_a_row_per_aggregation_and_writes_its_table(tmp_path):
    out = tmp_path / "agg"
    res = _run("benchmarks/aggregation_study.py", "--epochs", "1", "--samples-per-epoch", "32", "--test-size", "16",
               "--out", str(out), "--quiet")
    assert res.returncode == 0, res.stderr
    lines = res.stdout.splitlines()
    assert [ln.split()[0] for ln in lines[2:6]] == ["max", "mean", "lse", "topk"]
    assert (out / "curves.png").stat().st_size > 10_000 and (out / "table.csv").is_file()
    assert len((out / "summary.csv").read_text().splitlines()) == 5


def test_weibull_detector_measures_the_unsupervised_reference_on_a_dagm_folder(tmp_path):
    from data_gen.__main__ import main as data_main

    assert data_main(["textile", "--out", str(tmp_path / "t"), "--n-train", "6", "--n-test", "6", "--size", "96",
                      "--workers", "1", "--quiet"]) == 0
    res = _run("benchmarks/weibull_detector.py", "--folder", str(tmp_path / "t" / "Class1"), "--patch", "16")
    assert res.returncode == 0, res.stderr
    assert "6 Test images" in res.stdout and "pointing game" in res.stdout and "ms per image" in res.stdout


def test_methods_table_prints_a_row_per_method_and_writes_its_table(tmp_path):
    out = tmp_path / "methods"
    res = _run("benchmarks/methods_table.py", "--epochs", "1", "--samples-per-epoch", "32", "--test-size", "16",
               "--seeds", "0", "1", "--no-baseline", "--out", str(out), "--quiet")
    assert res.returncode == 0, res.stderr
    rows = [ln.split(" | ")[0].strip("| ") for ln in res.stdout.splitlines() if ln.startswith("| ")][1:]
    assert rows == ["SACNN", "SACNN (mean)", "SACNN (lse r=5)", "SACNN (topk k=0.05)", "supervised (masks)",
                    "Weibull features"]
    assert " ± " in res.stdout  # two seeds: a spread
    assert (out / "maps.png").stat().st_size > 10_000 and (out / "table.md").is_file()
    assert len((out / "per_seed.csv").read_text().splitlines()) == 1 + 5 * 2 + 1


def test_export_latency_times_pytorch_and_onnxruntime(tmp_path):
    res = _run("benchmarks/export_latency.py", "--quick", "--repeats", "1", "--batches", "1", "--device", "cpu",
               "--out", str(tmp_path / "lat.csv"))
    assert res.returncode == 0, res.stderr
    assert "pytorch" in res.stdout and "onnxruntime" in res.stdout and "images/s" in res.stdout
    assert len((tmp_path / "lat.csv").read_text().splitlines()) == 1 + 2


def test_pointing_drift_follows_the_winners_of_each_variant(tmp_path):
    res = _run("benchmarks/pointing_drift.py", "--epochs", "2", "--samples-per-epoch", "64", "--early-epochs", "1",
               "--probe", "12", "--out", str(tmp_path))
    assert res.returncode == 0, res.stderr
    assert res.stdout.count("pointing game peaked at epoch") == 2 and "jumped" in res.stdout
    assert (tmp_path / "drift.csv").is_file() and (tmp_path / "constant" / "checkpoint.pt").is_file()


def test_metrics_speed_times_every_figure_on_small_maps():
    res = _run("benchmarks/metrics_speed.py", "--batch", "2", "--sizes", "32", "--images", "20", "--repeats", "1",
               timeout=120)
    assert res.returncode == 0, res.stderr
    rows = [ln for ln in res.stdout.splitlines() if ln.endswith(("ms per call", "ms per batch"))]
    assert len(rows) == 2 + 8  # the image-level pair, then eight rows for the one size
    assert "components, defect-free > Otsu" in res.stdout and "2×32×32" in res.stdout
