"""The labelled-folder format and the data_gen command line."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from data_gen.__main__ import main
from data_gen.characters import CharacterConfig, CharacterGenerator
from data_gen.folders import LabelFileError, LabelledImage, check_images, read_labels, write_labels


def test_labels_round_trip(tmp_path):
    items = [LabelledImage("a.png", 1, [(1, 2, 3, 4), (5, 6, 7, 8)]), LabelledImage("b.png", 0),
             LabelledImage("c.png", 1)]
    write_labels(tmp_path, items)
    text = (tmp_path / "labels.csv").read_text().splitlines()
    assert text[0] == "filename,label,x0,y0,x1,y1"
    assert text[1:] == ["a.png,1,1,2,3,4", "a.png,1,5,6,7,8", "b.png,0,,,,", "c.png,1,,,,"]
    assert read_labels(tmp_path) == items


@pytest.mark.parametrize("body, message", [
    ("a.png,2,,,,", "label must be 0 or 1"),
    ("a.png,1,1,2,3", "expected 6 fields"),
    ("a.png,1,1,2,,", "all empty or all filled"),
    ("a.png,1,x,2,3,4", "integers"),
    ("a.png,0,1,2,3,4", "cannot have a box"),
    ("a.png,1,5,2,3,4", "x0 < x1"),
    (",1,,,,", "empty filename"),
    ("../a.png,1,,,,", "relative"),
    ("a.png,1,1,2,3,4\na.png,0,,,,", "labelled 1 on an earlier line"),
])
def test_malformed_rows_name_the_line(tmp_path, body, message):
    path = tmp_path / "labels.csv"
    path.write_text("filename,label,x0,y0,x1,y1\nok.png,0,,,,\n" + body + "\n")
    with pytest.raises(LabelFileError, match=message) as err:
        read_labels(path)
    assert "labels.csv:3" in str(err.value) or "labels.csv:4" in str(err.value)


def test_bad_header_and_missing_file(tmp_path):
    (tmp_path / "labels.csv").write_text("name,label\n")
    with pytest.raises(LabelFileError, match=":1: header"):
        read_labels(tmp_path)
    with pytest.raises(FileNotFoundError, match="does not exist"):
        read_labels(tmp_path / "nowhere")


def test_cli_round_trip_through_the_folder_format(tmp_path, faces):
    out = tmp_path / "set"
    assert main(["characters", "--n", "40", "--out", str(out), "--seed", "11", "--ratio", "3",
                 "--masks", "--quiet"]) == 0
    items = read_labels(out)
    check_images(out, items)
    assert len(items) == 40
    gen = CharacterGenerator(CharacterConfig(ratio=3), faces=faces)
    ref = gen.generate(11, np.arange(40), masks=True)
    for i, it in enumerate(items):
        assert it.filename == f"{i:06d}.png"
        assert it.label == ref.labels[i]
        assert it.boxes == ref.boxes_of(i)
        assert np.array_equal(np.asarray(Image.open(out / "images" / it.filename)), ref.images[i])
        assert np.array_equal(np.asarray(Image.open(out / "masks" / it.filename)) > 0, ref.masks[i])
    assert sum(it.label for it in items) == 10
    assert (out / "config.json").is_file()


def test_check_images_names_a_missing_file(tmp_path):
    write_labels(tmp_path, [LabelledImage("gone.png", 0)])
    with pytest.raises(FileNotFoundError, match="gone.png"):
        check_images(tmp_path, read_labels(tmp_path))


@pytest.mark.parametrize("argv, message", [
    (["characters", "--n", "0", "--out", "x"], "--n must be at least 1"),
    (["characters", "--n", "5", "--out", "x", "--ratio", "0"], "ratio"),
    (["characters", "--n", "5", "--out", "x", "--font-dir", "/no/such/dir"], "/no/such/dir"),
])
def test_cli_bad_arguments_are_clear_errors(tmp_path, capsys, argv, message):
    argv = [a if a != "x" else str(tmp_path / "x") for a in argv]
    assert main(argv) == 2
    assert message in capsys.readouterr().err


def test_cli_fonts_lists_at_least_40_faces(capsys):
    assert main(["fonts"]) == 0
    last = capsys.readouterr().out.strip().splitlines()[-1]
    assert int(last.split()[0]) >= 40
