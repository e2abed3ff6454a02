"""Data sources: one interface over the generated characters, DAGM class folders and labelled folders."""

from __future__ import annotations

import numpy as np
import pytest

from data_gen.__main__ import write_characters
from data_gen.characters import CharacterConfig
from sacnn_lab.config import RunConfig
from sacnn_lab.data import FolderSet
from sacnn_lab.sources import (CharacterSource, DagmSource, DataSource, LabelledFolderSource, pointing_masks,
                               source_for)
from tests.test_trainer import tiny_config


def test_source_for_picks_the_configs_kind():
    assert isinstance(source_for(tiny_config()), CharacterSource)
    assert isinstance(source_for(RunConfig.preset("fast", data="textile")), DagmSource)
    with pytest.raises(ValueError, match="needs a textile run"):
        DagmSource(tiny_config())
    with pytest.raises(ValueError, match="needs a character run"):
        CharacterSource(RunConfig.preset("fast", data="textile"))


def test_character_splits_are_fixed_and_the_probe_mixes_kinds():
    cfg = tiny_config()
    source = CharacterSource(cfg)
    val, test = source.split("val"), source.split("test")
    assert len(val) == cfg.data.val_size and len(test) == cfg.data.test_size
    assert not np.array_equal(val.images[:4], test.images[:4])  # their own seeds
    again = CharacterSource(cfg).split("test", n=5)
    assert np.array_equal(again.images, test.images[:5]) and pointing_masks(test) is None
    probe = source.probe(8)
    n_boxes = (probe.boxes[:, :, 0] >= 0).sum(1)
    assert len(probe) == 8 and (n_boxes > 1).sum() == 2 and (n_boxes == 1).sum() == 2 and (n_boxes == 0).sum() == 4
    assert source.split("probe", 8).indices.tolist() == probe.indices.tolist()
    with pytest.raises(ValueError, match="split must be"):
        source.split("train")
    faces = source.faces_record()
    assert faces["eval"] and source.faces_differ(faces) is None
    assert "differ" in source.faces_differ({"eval": faces["eval"][1:]})


def test_a_labelled_folder_is_evaluation_data_with_a_clear_refusal_to_train(tmp_path):
    write_characters(tmp_path / "set", CharacterConfig(image_size=64, char_size=(14, 18)), n=6, seed=3,
                     progress=False)
    source = LabelledFolderSource(tmp_path / "set")
    assert isinstance(source, DataSource)
    whole, first = source.split("test"), source.split("test", n=4)
    assert isinstance(whole, FolderSet) and len(whole) == 6 and len(first) == 4
    assert np.array_equal(first.images, whole.images[:4]) and source.faces_record() is None
    with pytest.raises(ValueError, match="labelled folder"):
        source.training()
