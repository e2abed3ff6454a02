"""Execute the notebooks at their defaults (the reference runs) and save them with their outputs, so that a reader
on GitHub sees every figure without a kernel.

    python notebooks/execute.py                      # every notebook whose defaults read the reference runs
    python notebooks/execute.py 02_why_it_works      # one

Each saved notebook is stamped (``metadata.sacnn_lab.stamp``) with a hash of its code and of the reference runs'
record (``sacnn_lab/reference_runs/made.json``); ``tests/test_notebooks.py`` fails when a committed notebook's
outputs hold an error or its stamp no longer matches (its code or the reference runs changed since): run this
again then. Outputs that depend on the machine (timings, paths) are what they were where it ran.
"""

from __future__ import annotations

import argparse
import hashlib
import os
import sys
import time
from pathlib import Path

import nbformat
from nbclient import NotebookClient

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
# the notebooks whose defaults train nothing (source = "reference"): executed and committed with their outputs
EXECUTED = ["01_character_data", "02_why_it_works", "03_train_sacnn", "04_convergence", "05_imbalance_study",
            "06_gradcam_baseline", "07_textile", "09_every_method", "10_failure_cases"]


def stamp(nb: nbformat.NotebookNode) -> str:
    """A hash of a notebook's code cells and of the reference runs' record: what its outputs were made from."""
    h = hashlib.sha256()
    for cell in nb.cells:
        if cell.cell_type == "code":
            h.update(cell.source.encode())
            h.update(b"\0")
    made = ROOT / "sacnn_lab" / "reference_runs" / "made.json"
    h.update(made.read_bytes() if made.is_file() else b"")
    return h.hexdigest()[:16]


def execute(name: str) -> float:
    """Execute ``notebooks/<name>.ipynb`` at its defaults in a scratch folder, save it with its outputs and stamp;
    returns the seconds it took."""
    path = HERE / f"{name}.ipynb"
    nb = nbformat.read(path, as_version=4)
    for cell in nb.cells:
        if cell.cell_type == "code":
            cell.outputs, cell.execution_count = [], None
    os.environ.setdefault("MPLBACKEND", "module://matplotlib_inline.backend_inline")
    os.environ.setdefault("SACNN_FIGURE_FORMAT", "jpeg")  # the package's figures as JPEG: a fifth of the size
    t0 = time.perf_counter()
    # run where a reader runs it (at its defaults it reads the reference runs and writes nothing here)
    NotebookClient(nb, timeout=600, kernel_name="python3", resources={"metadata": {"path": str(HERE)}}).execute()
    seconds = time.perf_counter() - t0
    nb.metadata["sacnn_lab"] = {"stamp": stamp(nb), "seconds": round(seconds, 1)}
    nbformat.write(nb, path)
    return seconds


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("names", nargs="*", default=EXECUTED, help="notebooks (default: every one in EXECUTED)")
    args = p.parse_args()
    for name in args.names:
        seconds = execute(name)
        print(f"{name}: {seconds:.1f} s", flush=True)


if __name__ == "__main__":
    sys.exit(main())
