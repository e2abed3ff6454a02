"""A user's own folder: good/ and defect folders (optionally masks/, optionally train/ and test/), images of
any common format; every bad input a clear error naming the file."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from data_gen.folders import is_class_folder, read_class_folder
from sacnn_lab.cli import main
from sacnn_lab.config import RunConfig
from sacnn_lab.data import ImageFiles, image_size_of, read_image
from sacnn_lab.sources import ClassFolderSource, source_for


def make_class_folder(root: Path, good: int = 6, kinds: dict[str, int] | None = None, size: int = 64,
                      masks: bool = False, seed: int = 0) -> Path:
    """Defect-free noise in good/; the same noise with a bright square in each defect folder (its mask
    in masks/<type>/ when ``masks``)."""
    rng = np.random.default_rng(seed)
    kinds = kinds or {"defective": 3}
    (root / "good").mkdir(parents=True)
    for k in range(good):
        Image.fromarray(rng.integers(60, 120, (size, size), dtype=np.uint8)).save(root / "good" / f"g{k:03d}.png")
    for kind, n in kinds.items():
        (root / kind).mkdir()
        for k in range(n):
            img = rng.integers(60, 120, (size, size), dtype=np.uint8)
            y, x = rng.integers(0, size - 12, 2)
            img[y:y + 10, x:x + 10] = 250
            Image.fromarray(img).save(root / kind / f"{kind[0]}{k:03d}.png")
            if masks:
                m = np.zeros((size, size), np.uint8)
                m[y:y + 10, x:x + 10] = 255
                (root / "masks" / kind).mkdir(parents=True, exist_ok=True)
                Image.fromarray(m).save(root / "masks" / kind / f"{kind[0]}{k:03d}_mask.png")
    return root


def test_a_flat_class_folder_with_types_and_masks(tmp_path):
    root = make_class_folder(tmp_path / "set", kinds={"scratch": 2, "hole": 3}, masks=True)
    (root / ".DS_Store").write_bytes(b"x")
    (root / "good" / "Thumbs.db").write_bytes(b"x")
    assert is_class_folder(root) and not is_class_folder(tmp_path)
    items = read_class_folder(root)["all"]
    assert [it.kind for it in items] == ["good"] * 6 + ["hole"] * 3 + ["scratch"] * 2
    assert [it.label for it in items] == [0] * 6 + [1] * 5
    assert items[6].path == "hole/h000.png" and items[6].mask == "masks/hole/h000_mask.png"
    assert all(it.mask is None for it in items[:6])


def test_split_folders_are_the_users_splits(tmp_path):
    for split in ("train", "test"):
        make_class_folder(tmp_path / "set" / split, good=3, kinds={"defective": 2})
    splits = read_class_folder(tmp_path / "set")
    assert sorted(splits) == ["test", "train"] and splits["test"][0].path == "test/good/g000.png"
    assert is_class_folder(tmp_path / "set")


@pytest.mark.parametrize("damage, message", [
    (lambda r: __import__("shutil").rmtree(r / "good"), "no good/ folder"),
    (lambda r: __import__("shutil").rmtree(r / "defective"), "no folder of defective images"),
    (lambda r: [p.unlink() for p in (r / "defective").iterdir()], "defective holds no image"),
    (lambda r: (r / "good" / "notes.txt").write_text("x"), "notes.txt is not an image file"),
    (lambda r: (r / "good" / "sub").mkdir(), "is a folder inside the class folder"),
    (lambda r: ((r / "masks").mkdir(), (r / "masks" / "zzz.png").write_bytes(b"x")), "zzz.png is a mask of no"),
    (lambda r: (r / "train").mkdir(), "only one of train/ and test/"),
])
def test_bad_layouts_name_what_is_wrong(tmp_path, damage, message):
    root = make_class_folder(tmp_path / "set")
    damage(root)
    with pytest.raises((FileNotFoundError, ValueError, FileExistsError), match=message):
        read_class_folder(root)


def test_images_of_any_common_format_are_read_as_gray(tmp_path):
    gray = np.tile(np.arange(0, 256, 4, dtype=np.uint8), (64, 1))
    Image.fromarray(gray).save(tmp_path / "a.bmp")
    Image.fromarray(gray).save(tmp_path / "a.tif")
    Image.fromarray((gray.astype(np.uint16) * 257)).save(tmp_path / "a16.png")  # 16-bit
    Image.fromarray(np.stack([gray] * 3, -1)).save(tmp_path / "a.jpg", quality=95)
    Image.fromarray(np.dstack([gray] * 3 + [np.full_like(gray, 255)])).save(tmp_path / "a_rgba.png")
    Image.fromarray(gray).convert("P").save(tmp_path / "a_p.png")
    for name in ("a.bmp", "a.tif", "a16.png", "a_rgba.png"):
        assert np.array_equal(read_image(tmp_path / name), gray), name
    assert np.abs(read_image(tmp_path / "a.jpg").astype(int) - gray).max() <= 3  # JPEG's rounding
    assert np.abs(read_image(tmp_path / "a_p.png").astype(int) - gray).max() <= 8
    assert image_size_of(tmp_path / "a.jpg") == (64, 64)
    assert read_image(tmp_path / "a.bmp", size=(32, 48)).shape == (32, 48)
    with pytest.raises(ValueError, match=r"a.bmp is 64×64 px, expected 48×32"):
        read_image(tmp_path / "a.bmp", size=(32, 48), resize=False)
    (tmp_path / "broken.png").write_bytes(b"\x89PNG not really")
    with pytest.raises(ValueError, match="broken.png is not a readable image"):
        read_image(tmp_path / "broken.png")
    Image.fromarray(np.zeros((4, 4), np.float32)).save(tmp_path / "f.tif")
    with pytest.raises(ValueError, match="floating-point"):
        read_image(tmp_path / "f.tif")
    m = np.zeros((64, 64), np.uint8)
    m[10:20, 10:20] = 1
    Image.fromarray(m).save(tmp_path / "m.png")
    assert set(np.unique(read_image(tmp_path / "m.png", mask=True))) == {0, 255}


# ---- training on a class folder ------------------------------------------------------------------------

def _cfg(root: Path, **changes) -> RunConfig:
    return RunConfig.preset("fast", data="folder", folder=str(root), epochs=2, batch_size=8, **changes)


def test_a_flat_folder_is_split_seeded_and_stratified(tmp_path):
    root = make_class_folder(tmp_path / "set", good=20, kinds={"scratch": 6, "hole": 6})
    splits = ClassFolderSource(_cfg(root)).splits
    assert splits == ClassFolderSource(_cfg(root)).splits  # seeded: the same split again
    every = [p for part in splits.values() for p in part]
    assert sorted(every) == sorted(read_class_folder(root)["all"][i].path for i in range(32))
    for part in ("val", "test"):  # each class folder keeps its share
        kinds = sorted(p.split("/")[0] for p in splits[part])
        assert kinds == ["good"] * 3 + ["hole"] + ["scratch"], (part, kinds)
    assert ClassFolderSource(_cfg(root, train_seed=5)).splits != splits


def test_the_users_train_and_test_folders_are_kept_and_val_is_carved_from_train(tmp_path):
    make_class_folder(tmp_path / "set" / "train", good=10, kinds={"defective": 4})
    make_class_folder(tmp_path / "set" / "test", good=3, kinds={"defective": 2}, seed=1)
    splits = ClassFolderSource(_cfg(tmp_path / "set")).splits
    assert splits["test"] == [it.path for it in read_class_folder(tmp_path / "set")["test"]]
    assert all(p.startswith("train/") for p in splits["train"] + splits["val"]) and len(splits["val"]) == 3


def test_training_streams_from_disk_a_batch_at_a_time(tmp_path, monkeypatch):
    import sacnn_lab.data as D

    root = make_class_folder(tmp_path / "set", good=20, kinds={"defective": 8})
    epochs = ClassFolderSource(_cfg(root)).training()
    assert isinstance(epochs.images, ImageFiles)  # never the whole folder in memory
    reads = []
    real = D.read_image
    monkeypatch.setattr(D, "read_image", lambda *a, **k: reads.append(a[0]) or real(*a, **k))
    batch = next(iter(epochs.loader(1)))
    assert batch["image"].shape == (8, 1, 64, 64) and len(reads) == 8
    list(epochs.loader(1)), list(epochs.loader(2))
    assert len(reads) == 20  # a set this small is kept once decoded: each file read once in all
    import sacnn_lab.sources as S

    monkeypatch.setattr(S, "CACHE_MEMORY", 1000)
    big = ClassFolderSource(_cfg(root)).training()
    list(big.loader(1)), list(big.loader(2))
    assert len(reads) == 20 + 2 * 20  # too large for the cache: every epoch reads every file


def test_images_of_other_sizes_are_brought_to_the_most_common_one(tmp_path):
    root = make_class_folder(tmp_path / "set", good=6, kinds={"defective": 3})
    Image.fromarray(np.zeros((80, 100), np.uint8)).save(root / "good" / "odd.png")
    source = ClassFolderSource(_cfg(root))
    assert source.size == (64, 64)
    assert ClassFolderSource(_cfg(root, resize=(48, 56))).size == (48, 56)
    test = source.split("test")
    assert test.images.shape[1:] == (64, 64)


def test_train_on_a_class_folder_and_evaluate_exactly_its_saved_test_files(tmp_path, capsys):
    root = make_class_folder(tmp_path / "set", good=20, kinds={"scratch": 5, "hole": 5}, masks=True)
    run = tmp_path / "run"
    assert main(["train", "--data", str(root), "--out", str(run), "--epochs", "2", "--batch-size", "8",
                 "--quiet"]) == 0
    saved = json.loads((run / "splits.json").read_text())
    assert saved["size"] == [64, 64] and len(saved["test"]) == 5
    Image.fromarray(np.zeros((64, 64), np.uint8)).save(root / "good" / "new.png")  # the folder grows later
    capsys.readouterr()
    assert main(["evaluate", "--checkpoint", str(run), "--json"]) == 0
    res = json.loads(capsys.readouterr().out)
    assert res["images"] == 5 and res["pointing_game"] is not None  # masks: localisation measured
    for key in ("iou_fixed", "iou_otsu", "dice_otsu", "compactness_otsu", "pixel_auroc", "pixel_ap"):
        assert res[key] is None or 0 <= res[key] <= (np.inf if key.startswith("compactness") else 1)
    assert res["pixel_auroc"] is not None and res["false_alarm_area"] is not None
    assert main(["evaluate", "--checkpoint", str(run)]) == 0
    assert "pixel AUROC" in capsys.readouterr().out
    config = RunConfig.from_dict(json.loads((run / "config.json").read_text()))
    assert source_for(config, run).split("test").filenames == saved["test"]
    (root / saved["test"][0]).unlink()
    assert main(["evaluate", "--checkpoint", str(run)]) == 2
    assert "no longer holds" in capsys.readouterr().err


def test_without_masks_evaluation_says_localisation_was_not_measured(tmp_path, capsys):
    root = make_class_folder(tmp_path / "set", good=10, kinds={"defective": 5})
    assert main(["train", "--data", str(root), "--out", str(tmp_path / "run"), "--epochs", "1", "--quiet"]) == 0
    capsys.readouterr()
    assert main(["evaluate", "--checkpoint", str(tmp_path / "run")]) == 0
    out = capsys.readouterr().out
    assert "localisation not measured" in out and "nan" not in out


def test_data_gen_writes_a_textile_class_folder_that_trains(tmp_path, capsys):
    from data_gen.__main__ import main as data_main

    out = tmp_path / "fabric"
    assert data_main(["textile", "--layout", "folder", "--out", str(out), "--n-train", "30", "--n-test", "12",
                      "--size", "64", "--workers", "1", "--quiet"]) == 0
    items = read_class_folder(out)["all"]
    assert len(items) == 42 and {it.kind for it in items} - {"good"} and items[0].kind == "good"
    assert all((it.mask is not None) == bool(it.label) for it in items)  # every defect has its true mask
    assert data_main(["textile", "--layout", "folder", "--out", str(out), "--n-train", "4", "--n-test", "2",
                      "--size", "64", "--quiet"]) == 2  # not over an existing set without --overwrite
    assert "not empty" in capsys.readouterr().err


def test_counts_table_and_worst_misses(tmp_path):
    from sacnn_lab.metrics import worst_misses

    root = make_class_folder(tmp_path / "set", good=20, kinds={"scratch": 6, "hole": 6})
    table = ClassFolderSource(_cfg(root)).table()
    assert list(table.columns) == ["train", "val", "test"] and table.loc["good"].tolist() == [14, 3, 3]
    assert int(table.values.sum()) == 32
    # a missed defect (0.1), a false alarm (0.8), then the closest calls
    order = worst_misses([0.9, 0.1, 0.8, 0.2, 0.45], [1, 1, 0, 0, 1], n=3)
    assert order.tolist() == [1, 2, 4]
    with pytest.raises(ValueError, match="two"):
        worst_misses([0.1, 0.2], [1])


def test_the_sample_class_folder_is_written_once(tmp_path):
    from data_gen.textile import sample_class_folder

    root = sample_class_folder(tmp_path / "f", image_size=64, n=12, progress=False)
    stamp = (root / "generator.json").stat().st_mtime_ns
    assert sample_class_folder(tmp_path / "f", image_size=64, n=12) == root
    assert (root / "generator.json").stat().st_mtime_ns == stamp and is_class_folder(root)


def test_defaults_are_chosen_from_the_data_and_said(tmp_path, capsys):
    from sacnn_lab.autoconfig import suggest_config

    root = make_class_folder(tmp_path / "set", good=30, kinds={"defective": 6}, size=80)
    cfg, why = suggest_config(root, blocks_by="quarter")
    assert cfg.model.channels == (16, 32)  # a quarter of 80 px: 20 px, covered by 2 blocks (22 px)
    assert cfg.train.class_weights == (1.0, 5.5) and "22 good and 4 defective" in why[0]
    assert cfg.train.epochs == 60 and len(why) == 5  # 26 training images: the most passes
    assert "quarter turns" in why[-1] and cfg.data.quarter_turns and cfg.data.brightness == 0.1
    big, _ = suggest_config(root, defect_size=100, epochs=3, class_weights=(1.0, 2.0))
    assert big.model.channels == (16, 32, 32, 32) and big.train.epochs == 3 and big.train.class_weights == (1.0, 2.0)
    assert main(["train", "--data", str(root), "--out", str(tmp_path / "run"), "--epochs", "1", "--quiet"]) == 0
    out = capsys.readouterr().out
    assert "chosen from the data:" in out and "class weights 1 : 5.5" in out and "epochs:" not in out
    assert main(["train", "--out", str(tmp_path / "r2"), "--defect-size", "30", "--quiet"]) == 2
    assert "--defect-size chooses the blocks for a folder" in capsys.readouterr().err


def test_a_fresh_run_makes_its_own_split_whatever_a_killed_attempt_left(tmp_path):
    from sacnn_lab.experiment import train

    root = make_class_folder(tmp_path / "set", good=12, kinds={"defective": 6})
    run = tmp_path / "run"
    run.mkdir()
    stale = ClassFolderSource(_cfg(root, train_seed=0)).split_record()
    (run / "config.json").write_text(json.dumps(_cfg(root, train_seed=0).to_dict()))
    (run / "splits.json").write_text(json.dumps(stale))  # an attempt killed before its first epoch
    cfg = _cfg(root, train_seed=5).updated(epochs=1)
    train(cfg, run, progress=False)
    assert json.loads((run / "splits.json").read_text())["test"] == ClassFolderSource(cfg).splits["test"]
    assert ClassFolderSource(cfg).splits["test"] != stale["test"]


def test_masks_one_image_each_and_the_roots_masks_serve_split_folders(tmp_path):
    root = make_class_folder(tmp_path / "set", good=3, kinds={"scratch": 2, "spot": 2})
    (root / "masks").mkdir()
    Image.fromarray(np.zeros((64, 64), np.uint8)).save(root / "masks" / "s000.png")  # scratch/ and spot/ both
    with pytest.raises(FileExistsError, match="fits both"):
        read_class_folder(root)
    split = tmp_path / "split"
    make_class_folder(split / "train", good=3, kinds={"defective": 2})
    make_class_folder(split / "test", good=3, kinds={"defective": 2}, seed=1)
    (split / "masks").mkdir()
    Image.fromarray(np.zeros((64, 64), np.uint8)).save(split / "masks" / "d001_mask.png")
    with pytest.raises(FileExistsError, match="fits both"):  # train/defective/d001 and test/defective/d001
        read_class_folder(split)
    (split / "test" / "defective" / "d001.png").rename(split / "test" / "defective" / "t001.png")
    (split / "masks" / "d001_mask.png").rename(split / "masks" / "t001_mask.png")
    layout = read_class_folder(split)
    assert [it.mask for it in layout["test"] if it.label] == [None, "masks/t001_mask.png"]  # d000, t001
    assert all(it.mask is None for it in layout["train"])


def test_evaluate_a_run_on_another_class_folder(tmp_path, capsys):
    root = make_class_folder(tmp_path / "set", good=10, kinds={"defective": 4})
    other = make_class_folder(tmp_path / "other", good=5, kinds={"scratch": 2, "hole": 2}, size=80, masks=True,
                              seed=7)
    run = tmp_path / "run"
    assert main(["train", "--data", str(root), "--out", str(run), "--epochs", "1", "--quiet"]) == 0
    capsys.readouterr()
    assert main(["evaluate", "--checkpoint", str(run), "--data", str(other), "--json"]) == 0
    res = json.loads(capsys.readouterr().out)
    assert res["images"] == 9 and res["pointing_game"] is not None  # every image, scored against its mask
    assert main(["evaluate", "--checkpoint", str(run), "--data", str(other), "--n", "3", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["images"] == 3


def test_predict_on_a_folder_keeps_relative_paths_and_writes_a_csv(tmp_path, capsys):
    import csv

    root = make_class_folder(tmp_path / "set", good=8, kinds={"scratch": 3, "hole": 3}, masks=True)
    (root / "hole" / "g000.png").write_bytes((root / "good" / "g000.png").read_bytes())  # one name, two folders
    (root / "masks" / "hole" / "g000.png").write_bytes((root / "masks" / "hole" / "h000_mask.png").read_bytes())
    run = tmp_path / "run"
    assert main(["train", "--data", str(root), "--out", str(run), "--epochs", "1", "--quiet"]) == 0
    out = tmp_path / "pred"
    assert main(["predict", "--checkpoint", str(run), "--out", str(out), str(root)]) == 0
    rows = list(csv.DictReader((out / "predictions.csv").open()))
    assert not any("masks" in r["image"] for r in rows)  # the truth below a folder is not predicted on
    assert len(rows) == 15 and [r["image"] for r in rows] == sorted(r["image"] for r in rows)
    assert (out / "good" / "g000_overlay.png").is_file() and (out / "hole" / "g000_overlay.png").is_file()
    for r in rows:
        assert 0 <= float(r["score"]) <= 1 and r["defective"] in ("True", "False") and not r["error"]
        assert all(len(b.split()) == 5 for b in r["boxes"].split(";") if b)
    assert json.loads((out / "predictions.json").read_text())[0]["image"] == rows[0]["image"]
    empty = tmp_path / "empty"
    empty.mkdir()
    assert main(["predict", "--checkpoint", str(run), "--out", str(out), str(empty)]) == 2
    assert "holds no image" in capsys.readouterr().err


def test_type_figures_count_each_type_and_the_confusion():
    from sacnn_lab.metrics import type_figures

    scores = np.array([[0.1, 0.2], [0.9, 0.3], [0.2, 0.8], [0.7, 0.6], [0.4, 0.1]])
    labels = np.array([0, 1, 2, 2, 1])
    f = type_figures(scores, labels)
    assert f["confusion"] == [[1, 0, 0], [1, 1, 0], [0, 1, 1]]
    assert f["recall"] == [0.5, 1.0] and f["type_accuracy"] == 0.5
    assert f["per_type_auroc"][1] == 1.0
    with pytest.raises(ValueError, match="0..2"):
        type_figures(scores, np.array([0, 1, 3, 2, 1]))


def test_a_head_of_several_defect_types_trains_and_is_evaluated_per_type(tmp_path, capsys):
    root = make_class_folder(tmp_path / "set", good=16, kinds={"scratch": 6, "hole": 6}, masks=True)
    run = tmp_path / "run"
    assert main(["train", "--data", str(root), "--out", str(run), "--defect-types", "--epochs", "2",
                 "--batch-size", "8", "--quiet"]) == 0
    assert "2 defect types, one defective layer each: hole, scratch" in capsys.readouterr().out
    config = RunConfig.from_dict(json.loads((run / "config.json").read_text()))
    assert config.model.num_defect_types == 2 and config.data.defect_types == ("hole", "scratch")
    test = source_for(config, run).split("test")
    assert sorted(set(test.labels.tolist())) == [0, 1, 2]  # hole = 1, scratch = 2
    assert main(["evaluate", "--checkpoint", str(run), "--json"]) == 0
    res = json.loads(capsys.readouterr().out)
    assert res["type_names"] == ["hole", "scratch"] and len(res["types"]["confusion"]) == 3
    assert sum(map(sum, res["types"]["confusion"])) == res["images"] == len(test.labels)
    assert main(["evaluate", "--checkpoint", str(run)]) == 0
    out = capsys.readouterr().out
    assert "per defect type" in out and "  hole: recall" in out and "confusion" in out
    other = make_class_folder(tmp_path / "other", good=6, kinds={"defective": 4}, seed=3)
    assert main(["evaluate", "--checkpoint", str(run), "--data", str(other), "--json"]) == 0
    res = json.loads(capsys.readouterr().out)  # another folder's defects carry no types: 0/1 figures alone
    assert res["images"] == 10 and "types" not in res and 0 <= res["accuracy"] <= 1
    assert main(["evaluate", "--checkpoint", str(run), "--data", "characters"]) == 2
    assert "2 defect types is evaluated on folders" in capsys.readouterr().err
    assert main(["predict", "--checkpoint", str(run), "--out", str(tmp_path / "p"), str(root / "hole")]) == 0
    called = {r["type"] for r in json.loads((tmp_path / "p" / "predictions.json").read_text()) if r["defective"]}
    assert called <= {"hole", "scratch"}
    one = make_class_folder(tmp_path / "one", good=6, kinds={"defective": 3})
    assert main(["train", "--data", str(one), "--out", str(tmp_path / "r1"), "--defect-types", "--quiet"]) == 2
    assert "two or more defect folders" in capsys.readouterr().err
    with pytest.raises(ValueError, match="num_defect_types"):
        RunConfig.preset("fast", data="folder", folder=str(root), defect_types=("hole", "scratch"))


def test_augmentation_turns_and_brightens_the_same_way_with_or_without_workers():
    import torch

    from sacnn_lab.data import FolderEpochs

    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, (10, 12, 12), dtype=np.uint8)
    plain = FolderEpochs(images, np.zeros(10), 4, seed=3)
    aug = FolderEpochs(images, np.zeros(10), 4, seed=3, quarter_turns=True, brightness=0.2)
    a, b = list(plain.loader(2)), list(aug.loader(2))
    assert [x["index"].tolist() for x in a] == [x["index"].tolist() for x in b]  # the order and flips draw first
    turned = 0
    for x, y in zip(a, b):
        for i in range(len(x["image"])):
            # each augmented image is a quarter turn of the flipped one, brightened: correlated with one turn
            ok = [k for k in range(4) if np.corrcoef(torch.rot90(x["image"][i], k, (1, 2)).ravel(),
                                                     y["image"][i].ravel())[0, 1] > 0.9]
            turned += ok != [0]
            assert len(ok) == 1 and y["image"][i].min() >= 0 and y["image"][i].max() <= 1
            flat = torch.rot90(x["image"][i], ok[0], (1, 2))
            assert not torch.allclose(flat, y["image"][i])  # brightened: not the same gray values
    assert turned > 0
    workers = FolderEpochs(images, np.zeros(10), 4, seed=3, quarter_turns=True, brightness=0.2, num_workers=2)
    from_workers = list(workers.loader(2))
    assert len(from_workers) == len(b) == 3
    assert all(torch.equal(x["image"], y["image"]) for x, y in zip(b, from_workers))
    wide = FolderEpochs(rng.integers(0, 256, (4, 8, 12), dtype=np.uint8), np.zeros(4), 2, quarter_turns=True)
    assert not wide.quarter_turns  # a turn would change the shape


def test_without_a_defect_size_the_blocks_are_chosen_on_the_validation_split_by_labels_alone(tmp_path, capsys,
                                                                                            monkeypatch):
    from sacnn_lab import autoconfig
    from sacnn_lab.autoconfig import block_candidates, choose_blocks, suggest_config
    from sacnn_lab.config import ModelConfig

    model = RunConfig.preset("fast", data="folder", folder="x").model
    assert block_candidates(model, (192, 192)) == [2, 3, 4] and block_candidates(model, (512, 512)) == [3, 4, 5]
    assert block_candidates(model, (64, 64)) == [2] and block_candidates(ModelConfig(), (80, 120)) == [2, 3]
    root = make_class_folder(tmp_path / "set", good=30, kinds={"defective": 12}, size=80, masks=True)
    monkeypatch.setattr(autoconfig, "BLOCK_SAMPLES", 60)
    cfg, why = suggest_config(root, epochs=1)
    out = capsys.readouterr().out
    assert "choosing the number of blocks on the validation split" in out and out.count("trying") == 2
    assert "the lowest validation loss of 2 (" in why[1] and "image labels alone" in why[1]
    blocks, rows = choose_blocks(cfg, [2, 3], samples=60, progress=False)
    losses = {r["blocks"]: round(r["val_loss"], 3) for r in rows}
    assert losses[blocks] == min(losses.values()) and all(losses[b] > losses[blocks] for b in losses if b < blocks)
    assert cfg.model.channels == (16,) + (32,) * (blocks - 1) and cfg.train.epochs == 1
    # masks never steer: the same choice when the folder's masks are gone
    import shutil

    shutil.rmtree(root / "masks")
    assert choose_blocks(cfg, [2, 3], samples=60, progress=False)[1] == [
        {**r, "seconds": pytest.approx(r["seconds"], abs=1e9)} for r in rows]


def test_dagm_and_labelled_folders_train_through_the_class_folder_path(tmp_path, capsys):
    from data_gen.__main__ import main as data_main
    from data_gen.folders import read_folder_layout

    dagm = tmp_path / "dagm"
    assert data_main(["textile", "--out", str(dagm), "--n-train", "24", "--n-test", "12", "--size", "64",
                      "--workers", "1", "--quiet"]) == 0
    kind, splits = read_folder_layout(dagm / "Class1")
    assert kind == "dagm" and sorted(splits) == ["test", "train"] and len(splits["train"]) == 24
    bad = [it for it in splits["test"] if it.label]
    assert bad and all(it.mask.startswith("Test/Mask/") and it.kind == "defective" for it in bad)
    run = tmp_path / "run"
    assert main(["train", "--data", str(dagm / "Class1"), "--preset", "auto", "--out", str(run), "--epochs", "1",
                 "--quiet"]) == 0
    config = RunConfig.from_dict(json.loads((run / "config.json").read_text()))
    assert config.data.source == "folder" and "chosen from the data" in capsys.readouterr().out
    saved = json.loads((run / "splits.json").read_text())
    assert saved["test"] == [it.path for it in splits["test"]]  # DAGM's Test split is the test split
    assert all(p.startswith("Train/") for p in saved["train"] + saved["val"])
    assert main(["evaluate", "--checkpoint", str(run), "--json"]) == 0
    res = json.loads(capsys.readouterr().out)
    assert res["images"] == 12 and res["pointing_game"] is not None and res["pixel_auroc"] is not None

    labelled = tmp_path / "labelled"
    assert data_main(["characters", "--n", "40", "--out", str(labelled), "--seed", "5", "--quiet"]) == 0
    assert read_folder_layout(labelled)[0] == "labelled"
    run2 = tmp_path / "run2"
    assert main(["train", "--data", str(labelled), "--out", str(run2), "--epochs", "1", "--quiet"]) == 0
    test = source_for(RunConfig.from_dict(json.loads((run2 / "config.json").read_text())), run2).split("test")
    assert test.masks is None and (test.boxes[test.labels > 0, 0, 0] >= 0).all()  # its boxes are its truth
    capsys.readouterr()
    assert main(["evaluate", "--checkpoint", str(run2), "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["pointing_game"] is not None
    assert main(["train", "--data", str(labelled), "--preset", "paper", "--out", str(tmp_path / "r3")]) == 2
    assert "--preset auto" in capsys.readouterr().err
    with pytest.raises(FileNotFoundError, match="none of the folders"):
        read_folder_layout(tmp_path)


def test_a_split_too_large_for_memory_is_read_a_batch_at_a_time_with_the_same_figures(tmp_path, monkeypatch):
    import torch

    from sacnn_lab import sources
    from sacnn_lab.experiment import evaluate
    from sacnn_lab.model import SACNN

    root = make_class_folder(tmp_path / "set", good=20, kinds={"scratch": 5, "hole": 5}, masks=True)
    config = _cfg(root)
    held = ClassFolderSource(config).split("test")
    monkeypatch.setattr(sources, "SPLIT_MEMORY", 1000)  # not even one image fits
    streamed = ClassFolderSource(config).split("test")
    assert isinstance(streamed.images, ImageFiles) and isinstance(streamed.masks, ImageFiles)
    assert np.array_equal(streamed.images[:], held.images) and np.array_equal(streamed.masks[2:5], held.masks[2:5])
    assert np.array_equal(streamed.boxes, held.boxes) and streamed.images[1].shape == (64, 64)
    bad = held.labels > 0
    assert np.array_equal(streamed.images[bad], held.images[bad])  # a boolean mask indexes as numpy's does
    with pytest.raises(TypeError, match="positions, a slice or a boolean mask"):
        streamed.images[..., 0]
    torch.manual_seed(0)
    model = SACNN(config.model).eval()
    a = evaluate(model, held, batch_size=2, localisation=True)
    b = evaluate(model, streamed, batch_size=2, localisation=True)
    assert a == pytest.approx(b, nan_ok=True)
    reads = []
    monkeypatch.setattr(sources.ClassFolderSource, "_loaded", lambda self, which: streamed)
    original = ImageFiles.__getitem__
    monkeypatch.setattr(ImageFiles, "__getitem__", lambda self, idx: reads.append(len(original(self, idx))) or
                        original(self, idx))
    evaluate(model, streamed, batch_size=3)
    assert max(reads) <= 3  # never more than one batch of images read at once


def test_colour_images_train_a_three_channel_network_end_to_end(tmp_path, capsys):
    from sacnn_lab.experiment import load_model

    rng = np.random.default_rng(1)
    root = tmp_path / "rgb"
    for kind, n in (("good", 16), ("stain", 8)):
        (root / kind).mkdir(parents=True)
        for k in range(n):
            img = np.repeat(rng.integers(90, 140, (64, 64, 1), dtype=np.uint8), 3, axis=2)
            if kind == "stain":  # a stain of the surface's own brightness, told apart by its colour alone
                y, x = rng.integers(0, 52, 2)
                img[y:y + 12, x:x + 12] = (160, 100, 90)
            Image.fromarray(img).save(root / kind / f"{k:03d}.png")
    run = tmp_path / "run"
    assert main(["train", "--data", str(root), "--color", "--out", str(run), "--epochs", "2", "--quiet"]) == 0
    assert "colour: RGB images into 3 input channels" in capsys.readouterr().out
    model, config = load_model(run)
    assert config.model.in_channels == 3 and config.data.color
    test = source_for(config, run).split("test")
    assert test.images.shape[1:] == (64, 64, 3) and test.images[..., 0].std() > 0
    assert main(["evaluate", "--checkpoint", str(run), "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["images"] == len(test.labels)
    out = tmp_path / "pred"
    assert main(["predict", "--checkpoint", str(run), "--out", str(out), str(root / "stain")]) == 0
    assert len(list(out.glob("*_overlay.png"))) == 8
    with pytest.raises(ValueError, match="3 input"):
        RunConfig.preset("fast", data="folder", folder=str(root), color=True)
    assert main(["train", "--data", "characters", "--color", "--out", str(tmp_path / "c")]) == 2
    assert "--color is for a folder of your own" in capsys.readouterr().err
    assert read_image(root / "stain" / "000.png", color=True).shape == (64, 64, 3)


def test_an_image_of_another_size_without_resizing_and_a_mask_of_the_wrong_size_are_errors(tmp_path, capsys):
    root = make_class_folder(tmp_path / "set", good=12, kinds={"defective": 6}, masks=True)
    Image.fromarray(np.zeros((48, 64), np.uint8)).save(root / "good" / "odd.png")
    assert ClassFolderSource(_cfg(root)).size == (64, 64)  # resized to the most common size by default
    with pytest.raises(ValueError, match=r"odd.png is 64×48 px, but most of the folder's images are 64×64"):
        ClassFolderSource(_cfg(root, one_size=True)).size
    assert main(["train", "--data", str(root), "--no-resize", "--out", str(tmp_path / "r"), "--quiet"]) == 2
    assert "odd.png is 64×48 px" in capsys.readouterr().err
    (root / "good" / "odd.png").unlink()
    mask = next((root / "masks").rglob("*.png"))
    Image.fromarray(np.zeros((32, 32), np.uint8)).save(mask)
    source = ClassFolderSource.evaluation(_cfg(root), root)  # every image a test image: the mask is read
    with pytest.raises(ValueError, match=r"is 32×32 px, but its image .* is 64×64: a mask has its image's size"):
        source.split("test")


def test_a_refused_folder_is_refused_before_the_blocks_are_chosen_and_a_resume_chooses_nothing_again(
        tmp_path, capsys, monkeypatch):
    from sacnn_lab import autoconfig

    root = make_class_folder(tmp_path / "set", good=30, kinds={"defective": 12}, size=80)
    run = tmp_path / "run"
    assert main(["train", "--data", str(root), "--out", str(run), "--defect-size", "20", "--epochs", "1",
                 "--quiet"]) == 0
    config = json.loads((run / "config.json").read_text())
    chosen = []
    monkeypatch.setattr(autoconfig, "choose_blocks", lambda *a, **k: chosen.append(1) or (3, []))
    assert main(["train", "--data", str(root), "--out", str(run), "--quiet"]) == 2  # a run there, no --resume
    assert "already holds a run" in capsys.readouterr().err and not chosen
    # an older run's settings (before quarter turns and brightness) resume as they were
    old = {**config, "data": {**config["data"], "quarter_turns": False, "brightness": 0.0}}
    (run / "config.json").write_text(json.dumps(old))
    import torch

    state = torch.load(run / "checkpoint.pt", weights_only=True)
    state["config"] = old
    torch.save(state, run / "checkpoint.pt")
    assert main(["train", "--data", str(root), "--out", str(run), "--resume", "--quiet"]) == 0
    out = capsys.readouterr().out
    assert "nothing chosen again" in out and "nothing left to do" in out and not chosen
    other = make_class_folder(tmp_path / "other", good=6, kinds={"defective": 3})
    assert main(["train", "--data", str(other), "--out", str(run), "--resume", "--quiet"]) == 2
    assert "holds a run trained on" in capsys.readouterr().err
