"""A user's own folder: good/ and defect folders (optionally masks/, optionally train/ and test/), images of
any common format; every bad input a clear error naming the file."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from data_gen.folders import is_class_folder, read_class_folder
from sacnn_lab.data import image_size_of, read_image


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
