"""Every notebook executed top to bottom with tiny parameters (a cell injected after the tagged
``parameters`` cell, as papermill does); any error fails the suite."""

from __future__ import annotations

from pathlib import Path

import nbformat
import pytest
from nbclient import NotebookClient

NOTEBOOKS = Path(__file__).resolve().parents[1] / "notebooks"
TINY = {
    "01_character_data": "n_gallery = 8\nn_check = 200",
    "02_train_sacnn": "epochs = 1\nearly_epochs = 0\nsamples_per_epoch = 64\nval_size = 32\ntest_size = 40\n"
                      "grad_clip = 20.0",
    "03_convergence": "run_dir = 'runs/tiny'\nepochs = 2\nearly_epochs = 1\nsamples_per_epoch = 64",
    "04_imbalance_study": "ratios = [1, 3]\nepochs = 1\nearly_epochs = 0\nsamples_per_epoch = 64\ntest_size = 40",
    "05_gradcam_baseline": "sacnn_run = 'runs/s'\nbaseline_run = 'runs/b'\nsacnn_epochs = 1\nsacnn_early_epochs = 0\n"
                           "baseline_epochs = 1\nsamples_per_epoch = 64\nval_size = 32\nn_test = 40",
    "06_textile": "epochs = 1\nimage_size = 128\ndefect_size = (16, 48)\nn_train, n_test = 48, 40\n"
                  "run_dir = 'runs/t'\nbaseline_run = 'runs/tb'\nbaseline_epochs = 1\nn_show = 3\n"
                  "supervised_run = 'runs/ts'\nn_weibull = 8",
    "08_every_method": "epochs = 2\nearly_epochs = 1\nsamples_per_epoch = 64\ntest_size = 40\nrun_dir = 'runs/m'",
    "07_your_own_data": "generated = 'data/f'\nimage_size = 64\nn_images = 80\nepochs = 1\nrun_dir = 'runs/o'\n"
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


def test_every_notebook_has_small_parameters():
    names = sorted(p.stem for p in NOTEBOOKS.glob("[0-9][0-9]_*.ipynb"))
    assert names and set(names) <= set(TINY), f"add tiny parameters for {set(names) - set(TINY)}"


@pytest.mark.parametrize("name", sorted(TINY))
def test_notebook_runs(name, tmp_path, monkeypatch):
    monkeypatch.setenv("MPLBACKEND", "module://matplotlib_inline.backend_inline")
    nb = run_notebook(NOTEBOOKS / f"{name}.ipynb", TINY[name], tmp_path)
    errors = [o for c in nb.cells if c.cell_type == "code" for o in c.get("outputs", [])
              if o.get("output_type") == "error"]
    assert not errors
    images = [o for c in nb.cells if c.cell_type == "code" for o in c.get("outputs", [])
              if "image/png" in o.get("data", {})]
    assert images, f"{name} shows no figure"
