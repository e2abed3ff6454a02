"""Several processes (torchrun's DistributedDataParallel) on the CPU with gloo: 2 ranks of batch b train what one
process of batch 2b trains; only rank 0 writes; resume; a failing rank stops the others."""

from __future__ import annotations

import json
import os
import socket
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.multiprocessing as mp

from data_gen.characters import CharacterConfig, CharacterGenerator
from sacnn_lab.config import DataConfig, ModelConfig, RunConfig, TrainConfig
from sacnn_lab.data import FolderEpochs, GeneratedEpochs
from sacnn_lab.distributed import Ranks, loss_scale, share
from sacnn_lab.trainer import Callback

CHARS = CharacterConfig(image_size=48, char_size=(12, 14), distractor_scales=(0.3, 2.0))


def paper_like(batch: int, epochs: int = 2, **train) -> RunConfig:
    """The paper's recipe in miniature: no normalisation, SGD, a summed loss."""
    return RunConfig(ModelConfig(channels=(4, 8), norm="none"),
                     DataConfig(characters=CHARS, samples_per_epoch=40, val_size=8, test_size=8, probe_size=4),
                     TrainConfig(**{"epochs": epochs, "batch_size": batch, "optimizer": "sgd", "lr": 0.01,
                                    "reduction": "sum", "eval_batch_size": 8, "device": "cpu", "threads": 1,
                                    **train}))


def test_shares_split_every_global_batch():
    assert [share(10, Ranks(r, 3)) for r in range(3)] == [slice(0, 4), slice(4, 7), slice(7, 10)]
    assert loss_scale(3, 10, 3, "sum") == 3 and loss_scale(3, 10, 3, "mean") == pytest.approx(0.9)
    gen = CharacterGenerator(CHARS)
    one = list(GeneratedEpochs(gen, 0, 40, 16).loader(1))
    two = [list(GeneratedEpochs(gen, 0, 40, 8, ranks=Ranks(r, 2)).loader(1)) for r in range(2)]
    assert len(two[0]) == len(two[1]) == len(one) == 3
    for whole, a, b in zip(one, *two):
        assert torch.equal(torch.cat([a["image"], b["image"]]), whole["image"])
        assert int(a["global_batch"]) == len(whole["label"])
    pooled = [list(GeneratedEpochs(gen, 0, 40, 8, num_workers=2, ranks=Ranks(r, 2)).loader(1)) for r in range(2)]
    for plain, workers in zip(two, pooled):  # DataLoader workers under torchrun: the same shares
        for a, b in zip(plain, workers, strict=True):
            assert torch.equal(a["image"], b["image"]) and int(a["global_batch"]) == int(b["global_batch"])
    images = np.random.default_rng(0).integers(0, 256, (11, 8, 8), dtype=np.uint8)
    labels = np.arange(11) % 2
    one = list(FolderEpochs(images, labels, 4, seed=3, quarter_turns=True, brightness=0.1).loader(2))
    two = [list(FolderEpochs(images, labels, 2, seed=3, quarter_turns=True, brightness=0.1,
                             ranks=Ranks(r, 2)).loader(2)) for r in range(2)]
    for whole, a, b in zip(one, *two):
        assert torch.equal(torch.cat([a["image"], b["image"]]), whole["image"])


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class StopAt(Callback):
    """Interrupts the run when an epoch starts (a kill, as a test can make one)."""

    def __init__(self, epoch: int):
        self.epoch = epoch

    def on_epoch_start(self, trainer, epoch):
        if epoch == self.epoch:
            raise KeyboardInterrupt


def _rank(rank: int, world: int, port: int, config: RunConfig, run_dir: str | None, resume: bool,
           stop_at: int | None, out: str) -> None:
    os.environ.update(RANK=str(rank), WORLD_SIZE=str(world), LOCAL_RANK=str(rank), MASTER_ADDR="127.0.0.1",
                      MASTER_PORT=str(port))
    import torch.distributed as dist

    from sacnn_lab.experiment import train

    try:
        run = train(config, run_dir, resume=resume, progress=False,
                    callbacks=[StopAt(stop_at)] if stop_at else [])
        torch.save({k: v.clone() for k, v in run.model.state_dict().items()}, Path(out) / f"rank{rank}.pt")
    finally:
        if dist.is_initialized():
            dist.destroy_process_group()


def spawn(world: int, config: RunConfig, run_dir: Path | None, out: Path, resume: bool = False,
          stop_at: int | None = None) -> list[dict]:
    out.mkdir(parents=True, exist_ok=True)
    mp.spawn(_rank, args=(world, _free_port(), config, None if run_dir is None else str(run_dir), resume, stop_at,
                          str(out)), nprocs=world, join=True)
    return [torch.load(out / f"rank{r}.pt") for r in range(world)]


def _close(a: dict, b: dict) -> None:
    for k in a:
        assert torch.allclose(a[k], b[k], rtol=1e-4, atol=1e-6), k


def test_two_ranks_of_batch_b_train_one_process_of_batch_2b(tmp_path):
    from sacnn_lab.experiment import load_run, train

    single = train(paper_like(16, eval_localisation=True), tmp_path / "one", progress=False)
    ranks = spawn(2, paper_like(8, eval_localisation=True), tmp_path / "two", tmp_path / "w")
    _close(ranks[0], single.model.state_dict())
    _close(ranks[1], ranks[0])
    # rank 0 wrote the run, with the global batch's figures; rank 1 wrote nothing beside it
    run = load_run(tmp_path / "two")
    assert sorted(p.name for p in (tmp_path / "two").iterdir()) == sorted(p.name for p in (tmp_path / "one").iterdir())
    mine, theirs = run.history.epochs[-1], single.history.epochs[-1]
    assert mine["samples"] == theirs["samples"] == 40 and mine["steps"] == theirs["steps"] == 6
    assert mine["train_loss"] == pytest.approx(theirs["train_loss"], rel=1e-4)
    assert mine["train_accuracy"] == theirs["train_accuracy"]
    # the validation set evaluated in two shares and gathered: the figures of one process evaluating it whole
    for k in ("val_accuracy", "val_tp", "val_fp", "val_pointing_game", "val_auroc", "val_iou_otsu",
              "val_compactness_otsu"):
        assert mine[k] == pytest.approx(theirs[k], rel=1e-4, nan_ok=True), k


def test_a_run_killed_and_resumed_under_two_ranks_equals_an_uninterrupted_one(tmp_path):
    from sacnn_lab.experiment import train

    uninterrupted = spawn(2, paper_like(8, epochs=3), tmp_path / "a", tmp_path / "wa")[0]
    with pytest.raises(Exception):
        spawn(2, paper_like(8, epochs=3), tmp_path / "b", tmp_path / "wb", stop_at=3)
    resumed = spawn(2, paper_like(8, epochs=3), tmp_path / "b", tmp_path / "wc", resume=True)[0]
    for k in uninterrupted:
        assert torch.equal(uninterrupted[k], resumed[k]), k
    # one process cannot resume a run of two: its batch would change
    with pytest.raises(ValueError, match="trained on 2 process"):
        train(paper_like(8, epochs=3), tmp_path / "b", resume=True, progress=False)


def test_a_rank_that_fails_stops_the_others_with_its_reason(tmp_path):
    folder = tmp_path / "taken"
    folder.mkdir()
    (folder / "notes.txt").write_text("not a run's")
    with pytest.raises(Exception) as info:
        spawn(2, paper_like(8), folder, tmp_path / "w")
    assert "notes.txt" in str(info.value) or "not a run" in str(info.value)
    assert not (tmp_path / "w" / "rank1.pt").exists()


def test_torchrun_trains_one_run_from_the_command_line(tmp_path):
    import subprocess
    import sys

    out = tmp_path / "run"
    res = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
                          "-m", "sacnn_lab", "train", "--out", str(out), "--epochs", "1", "--early-epochs", "0",
                          "--samples-per-epoch", "32", "--batch-size", "8", "--val-size", "16", "--test-size", "12",
                          "--device", "cpu", "--quiet"],
                         capture_output=True, text=True, timeout=300, cwd=Path(__file__).resolve().parents[1],
                         env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert res.returncode == 0, res.stderr[-3000:]
    assert res.stdout.count("training SACNN") == 1 and "2 processes, a global batch of 2 × 8" in res.stdout
    assert res.stdout.count("done: 1 epochs") == 1 and (out / "checkpoint.pt").is_file()


def test_an_evaluation_in_consecutive_shares_gives_the_whole_sets_figures():
    from sacnn_lab.callbacks import evaluate_arrays, evaluation_figures, evaluation_parts, join_parts
    from sacnn_lab.experiment import build_model, split

    cfg = paper_like(8)
    torch.manual_seed(0)
    model = build_model(cfg).eval()
    val = split(cfg, "val", 9)
    whole = evaluate_arrays(model, val.images, val.labels, val.boxes, batch_size=4, localisation=True)
    parts = [evaluation_parts(model, val.images[sl], val.labels[sl], val.boxes[sl], batch_size=4, localisation=True)
             for sl in (share(9, Ranks(r, 3)) for r in range(3))]
    joined = evaluation_figures(join_parts(parts), val.labels, localisation=True)
    assert joined.keys() == whole.keys()
    for k, v in whole.items():
        assert joined[k] == pytest.approx(v, rel=1e-5, nan_ok=True), k


def _study_rank(rank: int, world: int, port: int, base: RunConfig, run_dir: str, out: str) -> None:
    os.environ.update(RANK=str(rank), WORLD_SIZE=str(world), LOCAL_RANK=str(rank), MASTER_ADDR="127.0.0.1",
                      MASTER_PORT=str(port))
    import torch.distributed as dist

    from sacnn_lab import distributed
    from sacnn_lab.studies import imbalance_study

    trained = []
    real = distributed.alone

    def counting_alone():  # which rank trains which run: alone() is entered once per rank, around its own jobs
        trained.append(rank)
        return real()

    distributed.alone = counting_alone
    try:
        table, runs = imbalance_study((1, 3), base=base, run_dir=run_dir, progress=False, test_size=8)
        table.to_json(Path(out) / f"table{rank}.json")
        assert dist.get_world_size() == 2 and trained == [rank] and sorted(runs) == [1, 3]
    finally:
        if dist.is_initialized():
            dist.destroy_process_group()


def test_a_study_under_torchrun_spreads_its_runs_over_the_ranks(tmp_path):
    """Each of 2 ranks trains one of the 2 runs alone; both get the whole table, the one process's table."""
    import pandas as pd

    from sacnn_lab.studies import imbalance_study

    base = paper_like(8, epochs=1)
    single, _ = imbalance_study((1, 3), base=base, run_dir=tmp_path / "one", progress=False, test_size=8)
    mp.spawn(_study_rank, args=(2, _free_port(), base, str(tmp_path / "two"), str(tmp_path)), nprocs=2, join=True)
    assert sorted(p.name for p in (tmp_path / "two").iterdir()) == ["ratio_1", "ratio_3"]
    for r in range(2):
        table = pd.read_json(tmp_path / f"table{r}.json")
        cols = ["ratio", "epoch", "samples", "train_loss", "val_accuracy", "test_accuracy"]
        pd.testing.assert_frame_equal(table[cols].reset_index(drop=True), single[cols].reset_index(drop=True),
                                      check_dtype=False, rtol=1e-5)


def test_torchrun_trains_a_class_folder_with_the_settings_one_process_chooses(tmp_path):
    """A folder of one's own under torchrun: rank 0 alone chooses the settings (its trial runs are one process's)
    and both ranks train with them."""
    import subprocess
    import sys

    from tests.test_class_folders import make_class_folder

    root = make_class_folder(tmp_path / "set", good=16, kinds={"defective": 8}, masks=True)
    common = ["train", "--data", str(root), "--epochs", "1", "--batch-size", "4", "--device", "cpu", "--quiet"]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    cwd = Path(__file__).resolve().parents[1]
    one = subprocess.run([sys.executable, "-m", "sacnn_lab", *common, "--out", str(tmp_path / "one")],
                         capture_output=True, text=True, timeout=300, cwd=cwd, env=env)
    assert one.returncode == 0, one.stderr[-3000:]
    two = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
                          "-m", "sacnn_lab", *common, "--out", str(tmp_path / "two")],
                         capture_output=True, text=True, timeout=300, cwd=cwd, env=env)
    assert two.returncode == 0, two.stderr[-3000:]
    chosen = [line for line in two.stdout.splitlines() if line.startswith("  ")]
    assert chosen and chosen == [line for line in one.stdout.splitlines() if line.startswith("  ")]
    assert two.stdout.count("chosen from the data") == 1
    a = json.loads((tmp_path / "one" / "config.json").read_text())
    b = json.loads((tmp_path / "two" / "config.json").read_text())
    assert a == b
