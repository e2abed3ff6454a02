"""Execute the notebooks at their defaults (the reference runs) and save them with their outputs, so that a reader
on GitHub sees every figure without a kernel.

    python notebooks/execute.py                      # every notebook whose defaults read the reference runs
    python notebooks/execute.py 02_why_it_works      # one
    python notebooks/execute.py --train              # time every notebook at source = "train" (saves nothing)

Each saved notebook is stamped (``metadata.sacnn_lab.stamp``) with a hash of its code and of the reference runs'
record (``sacnn_lab/reference_runs/made.json``); ``tests/test_notebooks.py`` fails when a committed notebook's
outputs hold an error or its stamp no longer matches (its code or the reference runs changed since): run this
again then. Outputs that depend on the machine (timings, paths) are what they were where it ran.

``--train`` executes each notebook with ``source = "train"`` instead (every run trained, in one scratch folder, so
that notebooks 2, 4 and 6 find notebook 3's run as a reader's would; notebook 3 goes first), saves nothing and
prints the seconds each took: the times ``notebooks/README.md`` states.
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
            "06_gradcam_baseline", "07_textile", "08_your_own_data", "09_every_method", "10_failure_cases"]


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


def execute_training(name: str, folder: Path) -> float:
    """Execute ``notebooks/<name>.ipynb`` with ``source = "train"`` (a cell after its parameters, where it has a
    ``source``) in ``folder``, saving nothing; returns the seconds it took."""
    path = HERE / f"{name}.ipynb"
    nb = nbformat.read(path, as_version=4)
    tagged = [i for i, c in enumerate(nb.cells) if "parameters" in c.get("metadata", {}).get("tags", [])]
    if tagged and "source =" in nb.cells[tagged[0]].source:
        nb.cells.insert(tagged[0] + 1, nbformat.v4.new_code_cell('source = "train"'))
    os.environ.setdefault("MPLBACKEND", "module://matplotlib_inline.backend_inline")
    t0 = time.perf_counter()
    NotebookClient(nb, timeout=3600, kernel_name="python3", resources={"metadata": {"path": str(folder)}}).execute()
    return time.perf_counter() - t0


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("names", nargs="*", help="notebooks (default: every one in EXECUTED; with --train, every one)")
    p.add_argument("--train", action="store_true", help='time the notebooks at source = "train" (saves nothing)')
    p.add_argument("--workdir", default=None, help="--train: the scratch folder (default: a new temporary one)")
    args = p.parse_args()
    if not args.train:
        for name in args.names or EXECUTED:
            seconds = execute(name)
            print(f"{name}: {seconds:.1f} s", flush=True)
        return
    import tempfile

    names = args.names or sorted(p.stem for p in HERE.glob("[0-9][0-9]_*.ipynb"))
    names.sort(key=lambda n: (n != "03_train_sacnn", n))  # notebook 3's run first: 2, 4 and 6 read it
    folder = Path(args.workdir or tempfile.mkdtemp(prefix="sacnn-notebooks-"))
    folder.mkdir(parents=True, exist_ok=True)
    print(f"training in {folder}", flush=True)
    for name in names:
        seconds = execute_training(name, folder)
        print(f"{name}: {seconds:.1f} s at source = \"train\"", flush=True)


if __name__ == "__main__":
    sys.exit(main())
