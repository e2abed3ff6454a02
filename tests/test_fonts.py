"""Font discovery and filtering."""

from __future__ import annotations

import shutil
import warnings
from pathlib import Path

import matplotlib
import pytest

from data_gen import fonts as F

MPL_TTF = Path(matplotlib.__file__).parent / "mpl-data" / "fonts" / "ttf"


def test_at_least_40_faces_after_install(faces):
    assert len(faces) >= 40, [f.name for f in faces]
    families = {f.family for f in faces}
    assert len(families) >= 15, families
    sources = {f.source.split(":")[0] for f in faces}
    assert {"package", "matplotlib"} <= sources


def test_faces_are_unique_by_family_and_style(faces):
    names = [f.name.lower() for f in faces]
    assert len(names) == len(set(names))
    assert names == sorted(names)


@pytest.mark.parametrize("name", ["cmex10.ttf", "cmsy10.ttf"])
def test_symbol_and_math_extension_faces_are_rejected(name):
    assert F.check_face(MPL_TTF / name) is None


def test_text_faces_are_accepted():
    assert F.check_face(MPL_TTF / "DejaVuSans.ttf") == ("DejaVu Sans", "Book")
    assert F.check_face(MPL_TTF / "cmr10.ttf") is not None


def test_missing_glyph_rejects_a_face():
    assert F.check_face(MPL_TTF / "DejaVuSans.ttf", alphabet="A\u4e2d") is None  # no CJK glyph


def _only(monkeypatch, folder: Path) -> None:
    monkeypatch.setattr(F, "font_dirs", lambda extra=(), system=False: [(folder, "user")])


def test_unreadable_file_is_a_warning_not_a_crash(tmp_path, monkeypatch):
    (tmp_path / "broken.ttf").write_text("<!doctype html> not a font")
    shutil.copy(MPL_TTF / "DejaVuSans.ttf", tmp_path / "DejaVuSans.ttf")
    _only(monkeypatch, tmp_path)
    with pytest.warns(UserWarning, match="broken.ttf"):
        found = F.discover_fonts(use_cache=False)
    assert [f.name for f in found] == ["DejaVu Sans Book"]


def test_zero_usable_fonts_is_a_clear_error(tmp_path, monkeypatch):
    shutil.copy(MPL_TTF / "cmex10.ttf", tmp_path / "cmex10.ttf")
    _only(monkeypatch, tmp_path)
    with pytest.raises(F.NoUsableFontsError, match="no usable font face"):
        F.discover_fonts(use_cache=False)


def test_user_folder_is_searched_and_missing_folder_named(tmp_path):
    with pytest.raises(FileNotFoundError, match="nope"):
        F.font_dirs([tmp_path / "nope"])
    assert (tmp_path, "user") in F.font_dirs([tmp_path])


def test_cache_gives_the_same_faces(tmp_path, monkeypatch):
    monkeypatch.setenv("SACNN_CACHE_DIR", str(tmp_path))
    first = F.discover_fonts()
    assert (tmp_path / "sacnn-lab" / "fonts.json").is_file()
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert F.discover_fonts() == first


def test_font_split_is_disjoint_and_complete(faces):
    train = F.split_fonts(faces, "train")
    test = F.split_fonts(faces, "test")
    assert train and test
    assert not {f.name for f in train} & {f.name for f in test}
    assert len(train) + len(test) == len(faces)
    assert F.split_fonts(faces, "test") == test  # stable
    with pytest.raises(ValueError, match="font split"):
        F.split_fonts(faces, "validation")


def test_the_default_faces_are_the_projects_own_not_the_systems(tmp_path, monkeypatch):
    # the operating system's faces change with what is installed: the default set must not depend on them
    assert all(source != "system" for _, source in F.font_dirs())
    assert {f.source.split(":")[0] for f in F.discover_fonts()} <= {"package", "matplotlib"}
    monkeypatch.setattr(F.Path, "home", lambda: tmp_path)
    (tmp_path / ".fonts").mkdir()
    assert (tmp_path / ".fonts", "system") in F.font_dirs(system=True)
    assert (tmp_path / ".fonts", "system") not in F.font_dirs()


def test_a_file_unreadable_once_is_read_again_later(tmp_path, monkeypatch):
    # an unreadable file (fontTools missing half way through an install) was cached as faceless, and
    # every later scan found no faces until the cache was deleted by hand
    monkeypatch.setenv("SACNN_CACHE_DIR", str(tmp_path / "cache"))
    shutil.copy(MPL_TTF / "DejaVuSans.ttf", tmp_path / "DejaVuSans.ttf")
    _only(monkeypatch, tmp_path)
    real = F.check_face

    def broken(*a, **k):
        raise ImportError("No module named 'fontTools'")

    monkeypatch.setattr(F, "check_face", broken)
    with pytest.warns(UserWarning, match="unreadable"), pytest.raises(F.NoUsableFontsError):
        F.discover_fonts()
    monkeypatch.setattr(F, "check_face", real)
    assert [f.name for f in F.discover_fonts()] == ["DejaVu Sans Book"]


def test_face_records_name_each_file_by_its_hash(tmp_path, faces):
    records = F.face_records(faces[:3])
    assert [r["name"] for r in records] == [f.name for f in faces[:3]]
    assert all(len(r["sha256"]) == 64 for r in records)
    assert F.compare_faces(records, records) is None
    other = [dict(records[0], sha256="0" * 64), records[1], {"name": "New Face", "sha256": "1" * 64}]
    note = F.compare_faces(records, other)
    assert "1 missing here" in note and "1 not in the run (New Face)" in note and "1 in another version" in note
