"""Torch datasets and deterministic loading."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from sacnn_lab.data import CharacterDataset, make_loader


@pytest.fixture(scope="module")
def dataset(generator):
    return CharacterDataset(seed=3, length=96, generator=generator)


def test_item_and_batched_path_agree(dataset):
    one = dataset[5]
    many = dataset.__getitems__([4, 5, 6])
    assert one["image"].shape == (1, 136, 136) and one["image"].dtype == torch.float32
    assert 0.0 <= float(one["image"].min()) and float(one["image"].max()) <= 1.0
    for k in one:
        assert torch.equal(one[k], many[k][1])
    assert len(dataset) == 96
    with pytest.raises(IndexError):
        dataset[96]


def test_loader_batches_do_not_depend_on_workers(dataset):
    a = list(make_loader(dataset, 32, shuffle=True, seed=1, num_workers=0))
    b = list(make_loader(dataset, 32, shuffle=True, seed=1, num_workers=2))
    assert len(a) == len(b) == 3
    for x, y in zip(a, b):
        assert torch.equal(x["index"], y["index"]) and torch.equal(x["image"], y["image"])
    c = list(make_loader(dataset, 32, shuffle=True, seed=2))
    assert not torch.equal(a[0]["index"], c[0]["index"])


def test_labels_without_images(dataset):
    assert np.array_equal(dataset.labels(), dataset.__getitems__(range(96))["label"].numpy())
