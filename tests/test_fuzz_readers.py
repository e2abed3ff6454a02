"""A guard that stays: seeded random damage to every file a user hands sacnn-lab (``labels.csv``, DAGM's
``Labels.txt``, checkpoints) must end in a clear error that names the file, or in a correct read; never a
traceback of another kind, never a wrong count.

The loops are seeded, so a failure names the case that reproduces it (``seed``, ``case``).
"""

from __future__ import annotations

import csv
import io
import random
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from data_gen.folders import LabelFileError, LabelledImage, read_dagm, read_labels, write_labels

SEED = 20261130
TOKENS = ["", " ", "0", "1", "2", "-1", "x", "1.5", "1e3", "../up.png", "/abs.png", "a.png", "b.png", "é.png",
          "99999999999999999999", '"', "\x00", "\t", "a,b", "\n"]


def _mutate_bytes(rng: random.Random, data: bytes) -> bytes:
    """One random byte-level damage: truncation, flipped or inserted bytes, another encoding, a BOM."""
    kind = rng.randrange(6)
    if kind == 0:
        return data[: rng.randrange(len(data) + 1)]
    if kind == 1:
        b = bytearray(data)
        for _ in range(rng.randint(1, 4)):
            if b:
                b[rng.randrange(len(b))] = rng.randrange(256)
        return bytes(b)
    if kind == 2:
        i = rng.randrange(len(data) + 1)
        return data[:i] + bytes(rng.randrange(256) for _ in range(rng.randint(1, 5))) + data[i:]
    if kind == 3:
        # binary data (a checkpoint) is not UTF-8: its undecodable bytes become U+FFFD first
        return data.decode("utf-8", errors="replace").encode(
            rng.choice(["utf-16", "latin-1", "utf-8-sig", "cp1252"]), errors="replace")
    if kind == 4:
        return b"\xef\xbb\xbf" + data
    lines = data.split(b"\n")
    rng.shuffle(lines)
    return b"\n".join(lines)


# ---- labels.csv --------------------------------------------------------------------------------------

def _valid_labels(rng: random.Random) -> list[LabelledImage]:
    items = []
    for k in range(rng.randint(1, 6)):
        label = rng.randint(0, 1)
        boxes = [(x, y, x + rng.randint(1, 9), y + rng.randint(1, 9)) for x, y in
                 [(rng.randint(0, 50), rng.randint(0, 50)) for _ in range(rng.randint(0, 2) * label)]]
        items.append(LabelledImage(f"{k:03d}.png", label, boxes))
    return items


def _mutate_fields(rng: random.Random, text: str) -> str:
    rows = list(csv.reader(io.StringIO(text)))
    for _ in range(rng.randint(1, 3)):
        r = rows[rng.randrange(len(rows))]
        op = rng.randrange(4)
        if op == 0 and r:
            r[rng.randrange(len(r))] = rng.choice(TOKENS)
        elif op == 1:
            r.append(rng.choice(TOKENS))
        elif op == 2 and r:
            r.pop(rng.randrange(len(r)))
        else:
            rows.insert(rng.randrange(len(rows) + 1), list(rows[rng.randrange(len(rows))]))
    buf = io.StringIO()
    csv.writer(buf, lineterminator="\n").writerows(rows)
    return buf.getvalue()


def _oracle_rows(raw: bytes) -> list[list[str]] | None:
    """The data rows as Python's csv module reads the same bytes (``None`` where it cannot)."""
    try:
        rows = list(csv.reader(io.StringIO(raw.decode("utf-8-sig"), newline="")))
    except (UnicodeDecodeError, csv.Error):
        return None
    return [r for r in rows[1:] if r and any(v.strip() for v in r)]


def test_labels_csv_survives_random_damage(tmp_path):
    rng = random.Random(SEED)
    path = tmp_path / "labels.csv"
    outcomes = {"read": 0, "refused": 0}
    for case in range(400):
        write_labels(path, _valid_labels(rng))
        text = path.read_text(encoding="utf-8")
        raw = _mutate_fields(rng, text).encode() if rng.random() < 0.5 else _mutate_bytes(rng, text.encode())
        path.write_bytes(raw)
        try:
            items = read_labels(path)
        except LabelFileError as exc:
            assert str(path) in str(exc), (case, str(exc))
            outcomes["refused"] += 1
            continue
        except Exception as exc:  # noqa: BLE001 - the point of the test
            pytest.fail(f"case {case}: {type(exc).__name__}: {exc} on {raw!r}")
        outcomes["read"] += 1
        rows = _oracle_rows(raw)
        assert rows is not None, (case, raw)
        # a correct read: one item per distinct file name, each row's label and box kept
        assert [it.filename for it in items] == list(dict.fromkeys(r[0].strip() for r in rows)), (case, raw)
        assert sum(max(1, len(it.boxes)) for it in items) <= len(rows)
        for it in items:
            assert it.label in (0, 1) and all(0 <= b[0] < b[2] and 0 <= b[1] < b[3] for b in it.boxes)
            assert not it.boxes or it.label == 1
        write_labels(tmp_path / "again.csv", items)
        assert read_labels(tmp_path / "again.csv") == items  # what was read is what the file says
    assert min(outcomes.values()) > 40, outcomes  # both outcomes were exercised


# ---- DAGM Labels.txt ------------------------------------------------------------------------------------

def _dagm_split(root: Path, labels: list[int]) -> str:
    split = root / "Train"
    (split / "Label").mkdir(parents=True)
    lines = ["1"]
    for k, lab in enumerate(labels, 1):
        Image.fromarray(np.zeros((8, 8), np.uint8)).save(split / f"{k:04d}.PNG")
        if lab:
            Image.fromarray(np.full((8, 8), 255, np.uint8)).save(split / "Label" / f"{k:04d}_label.PNG")
        lines.append(f"{k}\t{lab}\t{k:04d}.PNG\t0\t" + (f"{k:04d}_label.PNG" if lab else "0"))
    return "\n".join(lines) + "\n"


def test_dagm_labels_txt_survives_random_damage(tmp_path):
    rng = random.Random(SEED + 1)
    labels = [0, 1, 0, 0, 1, 0]
    text = _dagm_split(tmp_path, labels)
    index = tmp_path / "Train" / "Label" / "Labels.txt"
    outcomes = {"read": 0, "refused": 0}
    for case in range(300):
        if rng.random() < 0.5:
            lines = text.splitlines()
            i = rng.randrange(len(lines))
            parts = lines[i].split("\t")
            parts[rng.randrange(len(parts))] = rng.choice(TOKENS + ["0001.PNG", "0002.PNG", "9999.PNG"])
            lines[i] = "\t".join(parts[: rng.randint(1, len(parts))] if rng.random() < 0.3 else parts)
            raw = ("\n".join(lines) + "\n").encode("utf-8", errors="replace")
        else:
            raw = _mutate_bytes(rng, text.encode())
        index.write_bytes(raw)
        try:
            items = read_dagm(tmp_path, "Train")
        except (LabelFileError, FileNotFoundError) as exc:
            assert "Labels.txt" in str(exc), (case, str(exc))
            outcomes["refused"] += 1
            continue
        except Exception as exc:  # noqa: BLE001
            pytest.fail(f"case {case}: {type(exc).__name__}: {exc} on {raw!r}")
        outcomes["read"] += 1
        assert [it.label for it in items] == labels, (case, raw)  # the masks decide, the index agreed
    assert min(outcomes.values()) > 20, outcomes


# ---- checkpoints -------------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    from sacnn_lab.experiment import train
    from tests.test_trainer import tiny_config

    run = train(tiny_config(epochs=1), tmp_path_factory.mktemp("fuzz") / "run", progress=False)
    return run.run_dir / "checkpoint.pt"


def _mutate_state(rng: random.Random, state: dict) -> dict:
    state = dict(state)
    key = rng.choice(sorted(state))
    op = rng.randrange(4)
    if op == 0:
        del state[key]
    elif op == 1:
        state[key] = rng.choice([None, 0, "x", [], {}, torch.zeros(2)])
    elif op == 2 and isinstance(state.get("model"), dict) and state["model"]:
        model = dict(state["model"])
        name = rng.choice(sorted(model))
        model[name] = rng.choice([torch.zeros(1), model[name].double(), model[name] * float("nan"), "w"])
        state["model"] = model
    elif isinstance(state.get("config"), dict):
        cfg = {k: dict(v) if isinstance(v, dict) else v for k, v in state["config"].items()}
        part = rng.choice(sorted(cfg))
        if isinstance(cfg[part], dict) and cfg[part]:
            cfg[part][rng.choice(sorted(cfg[part]))] = rng.choice([None, -1, "x", 1e9, [1, 2]])
        else:
            cfg[part] = None
        state["config"] = cfg
    return state


def test_checkpoints_survive_random_damage(checkpoint, tmp_path):
    from sacnn_lab.experiment import load_model

    rng = random.Random(SEED + 2)
    data = checkpoint.read_bytes()
    state = torch.load(checkpoint, weights_only=True)
    path = tmp_path / "damaged.pt"
    outcomes = {"read": 0, "refused": 0}
    for case in range(80):
        if rng.random() < 0.5:
            path.write_bytes(_mutate_bytes(rng, data) if rng.random() < 0.3 else
                             data[: rng.randrange(len(data))])
        else:
            torch.save(_mutate_state(rng, state), path)
        try:
            model, config = load_model(path)
        except (ValueError, FileNotFoundError) as exc:
            assert str(path) in str(exc) and "weights_only" not in str(exc), (case, str(exc))
            outcomes["refused"] += 1
            continue
        except Exception as exc:  # noqa: BLE001
            pytest.fail(f"case {case}: {type(exc).__name__}: {exc}")
        outcomes["read"] += 1
        assert all(torch.isfinite(p).all() for p in model.parameters()), case
    assert outcomes["refused"] > 20, outcomes


# ---- class folders -------------------------------------------------------------------------------------------

def _damage_folder(rng: random.Random, root: Path) -> None:
    files = sorted(p for p in root.rglob("*") if p.is_file())
    kind = rng.randrange(5)
    target = rng.choice(files)
    if kind == 0:  # a truncated or overwritten image
        data = target.read_bytes()
        target.write_bytes(_mutate_bytes(rng, data) if rng.random() < 0.5 else data[: rng.randrange(len(data))])
    elif kind == 1:  # a stray file
        (target.parent / rng.choice(["notes.txt", "x.PNG", "y.jpeg", ".hidden", "Thumbs.db"])).write_bytes(
            bytes(rng.randrange(256) for _ in range(rng.randint(0, 40))))
    elif kind == 2:  # a class folder emptied
        for p in target.parent.iterdir():
            p.unlink()
    elif kind == 3:  # a mask of another size, or of no image
        (root / "masks").mkdir(exist_ok=True)
        Image.fromarray(np.full((rng.randint(4, 40),) * 2, 255, np.uint8)).save(
            root / "masks" / rng.choice(["d000.png", "d001_mask.png", "zz.png"]))
    else:  # an image of another size or mode
        Image.fromarray(np.full((rng.randint(1, 50), rng.randint(1, 50), 3), 90, np.uint8)).save(target)


def test_class_folders_survive_random_damage(tmp_path):
    from data_gen.folders import read_class_folder
    from sacnn_lab.config import RunConfig
    from sacnn_lab.sources import ClassFolderSource
    from tests.test_class_folders import make_class_folder

    rng = random.Random(SEED + 3)
    outcomes = {"read": 0, "refused": 0}
    for case in range(40):
        root = make_class_folder(tmp_path / f"c{case}", good=6, kinds={"defective": 4}, size=32, masks=case % 2 == 0)
        _damage_folder(rng, root)
        try:
            layout = read_class_folder(root)
            source = ClassFolderSource(RunConfig.preset("fast", data="folder", folder=str(root), batch_size=4))
            test, batch = source.split("test"), next(iter(source.training().loader(1)))
        except (ValueError, FileNotFoundError, FileExistsError) as exc:
            assert str(root) in str(exc), (case, str(exc))
            outcomes["refused"] += 1
            continue
        except Exception as exc:  # noqa: BLE001
            pytest.fail(f"case {case}: {type(exc).__name__}: {exc}")
        outcomes["read"] += 1
        assert len(layout["all"]) == sum(len(v) for v in source.splits.values()), case  # nothing dropped
        assert test.images.shape[1:] == source.size and batch["image"].shape[-2:] == source.size
    assert min(outcomes.values()) > 5, outcomes
