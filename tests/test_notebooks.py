"""Every notebook executed top to bottom with tiny parameters (a cell injected after the tagged
``parameters`` cell, as papermill does), and those that read the reference runs at their defaults, as a reader
opens them; any error fails the suite."""

from __future__ import annotations

import sys
from pathlib import Path

import nbformat
import pytest
from nbclient import NotebookClient

NOTEBOOKS = Path(__file__).resolve().parents[1] / "notebooks"
TINY = {
    "01_character_data": "n_gallery = 8\nn_check = 200",
    "02_why_it_works": "source = 'train'\n"
                       "overrides = dict(epochs=2, early_epochs=1, samples_per_epoch=64, val_size=32)\nn_images = 4",
    "03_train_sacnn": "source = 'train'\n"
                      "overrides = dict(epochs=1, early_epochs=0, samples_per_epoch=64, val_size=32)\n"
                      "test_size = 40",
    "04_convergence": "source = 'train'\noverrides = dict(epochs=2, early_epochs=1, samples_per_epoch=64, val_size=32)",
    "05_imbalance_study": "source = 'train'\nratios = [1, 3]\nseeds = [0]\ntest_size = 40\n"
                          "overrides = dict(epochs=1, samples_per_epoch=64, val_size=32)",
    "06_gradcam_baseline": "source = 'train'\n"
                            "overrides = dict(epochs=1, early_epochs=0, samples_per_epoch=64, val_size=32)\n"
                            "n_test = 40",
    "07_textile": "from data_gen.textile import TextileConfig\nsource = 'train'\n"
                  "overrides = dict(epochs=1, textile=TextileConfig(image_size=128, defect_size=(16, 48)), "
                  "samples_per_epoch=48, test_size=40)\nn_show = 3\ncompare_methods = True\nbaseline_epochs = 1\n"
                  "supervised_run = 'runs/ts'\nn_weibull = 8",
    "09_every_method": "source = 'train'\ntest_size = 40\nrun_dir = 'runs/m'\n"
                       "overrides = dict(epochs=2, early_epochs=1, samples_per_epoch=64, val_size=32)",
    "10_failure_cases": "source = 'train'\ntest_size = 40\n"
                        "overrides = dict(epochs=1, early_epochs=0, samples_per_epoch=64, val_size=32)",
    "08_your_own_data": "source = 'train'\ngenerated = 'data/f'\nimage_size = 64\nn_images = 80\nepochs = 1\n"
                        "run_dir = 'runs/o'\n"
                        "n_show = 2",
}


def run_notebook(path: Path, params: str, cwd: Path) -> nbformat.NotebookNode:
    nb = nbformat.read(path, as_version=4)
    tagged = [i for i, c in enumerate(nb.cells) if "parameters" in c.get("metadata", {}).get("tags", [])]
    assert len(tagged) == 1, f"{path.name} must have exactly one cell tagged 'parameters'"
    injected = nbformat.v4.new_code_cell(params)
    injected.metadata["tags"] = ["injected-parameters"]
    nb.cells.insert(tagged[0] + 1, injected)
    NotebookClient(nb, timeout=600, kernel_name="python3", resources={"metadata": {"path": str(cwd)}}).execute()
    return nb


# notebooks whose defaults read the reference runs shipped with sacnn-lab (source = "reference"): run as they are,
# and committed executed (notebooks/execute.py)
sys.path.insert(0, str(NOTEBOOKS))
from execute import EXECUTED, stamp  # noqa: E402

REFERENCE = EXECUTED


def test_every_notebook_has_small_parameters():
    names = sorted(p.stem for p in NOTEBOOKS.glob("[0-9][0-9]_*.ipynb"))
    assert names and set(names) <= set(TINY), f"add tiny parameters for {set(names) - set(TINY)}"


@pytest.mark.parametrize("name", sorted(TINY))
def test_notebook_runs(name, tmp_path, monkeypatch):
    monkeypatch.setenv("MPLBACKEND", "module://matplotlib_inline.backend_inline")
    nb = run_notebook(NOTEBOOKS / f"{name}.ipynb", TINY[name], tmp_path)
    _check_outputs(name, nb)


def _check_outputs(name: str, nb: nbformat.NotebookNode) -> None:
    errors = [o for c in nb.cells if c.cell_type == "code" for o in c.get("outputs", [])
              if o.get("output_type") == "error"]
    assert not errors, f"{name}: {errors[0].get('ename')}: {errors[0].get('evalue')}" if errors else ""
    assert any({"image/png", "image/jpeg"} & set(o.get("data", {})) for c in nb.cells if c.cell_type == "code"
               for o in c.get("outputs", [])), f"{name} shows no figure"


@pytest.mark.parametrize("name", REFERENCE)
def test_notebook_runs_at_its_defaults_from_the_reference_runs(name, tmp_path, monkeypatch):
    monkeypatch.setenv("MPLBACKEND", "module://matplotlib_inline.backend_inline")
    nb = run_notebook(NOTEBOOKS / f"{name}.ipynb", "", tmp_path)
    _check_outputs(name, nb)
    assert not (tmp_path / "runs").exists(), f"{name} trained at its defaults instead of reading the reference runs"


def test_every_notebook_installs_sacnn_lab_only_where_it_is_missing(monkeypatch):
    """The first code cell of every notebook: nothing here, where the package is installed; a pip install from the
    repository where it is missing (a hosted kernel; the install itself is not run here)."""
    import importlib.util
    import subprocess

    calls = []
    monkeypatch.setattr(subprocess, "check_call", lambda cmd, **kw: calls.append(cmd))
    real = importlib.util.find_spec
    for path in sorted(NOTEBOOKS.glob("[0-9][0-9]_*.ipynb")):
        first = next(c for c in nbformat.read(path, as_version=4).cells if c.cell_type == "code")
        cell = compile(first.source, path.name, "exec")
        exec(cell, {"__name__": "cell"})
        assert calls == [], f"{path.name} installs although sacnn_lab is installed"
        monkeypatch.setattr(importlib.util, "find_spec",
                            lambda name, *a: None if name == "sacnn_lab" else real(name, *a))
        exec(cell, {"__name__": "cell"})
        monkeypatch.setattr(importlib.util, "find_spec", real)
        assert len(calls) == 1 and calls[0][1:4] == ["-m", "pip", "install"], path.name
        assert any(str(a).startswith("sacnn-lab[lab] @ git+https://") for a in calls[0]), path.name
        calls.clear()


@pytest.mark.parametrize("name", REFERENCE)
def test_the_committed_outputs_are_fresh_and_hold_no_error(name):
    """A reader on GitHub sees the outputs committed with the notebook: they must come from its present code and
    the present reference runs (``python notebooks/execute.py`` makes them again), without an error."""
    nb = nbformat.read(NOTEBOOKS / f"{name}.ipynb", as_version=4)
    recorded = nb.metadata.get("sacnn_lab", {}).get("stamp")
    assert recorded == stamp(nb), f"{name}'s outputs are stale or missing: run python notebooks/execute.py {name}"
    _check_outputs(name, nb)
