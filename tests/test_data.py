"""Torch datasets and deterministic loading."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from sacnn_lab.data import CharacterDataset, GeneratedEpochs, make_loader


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


def test_training_batches_do_not_depend_on_chunks_or_workers(generator):
    """Composing several batches per generator call (no workers) slices the same batches as a
    DataLoader asking for one batch at a time, in any epoch; the last batch of an epoch may be short."""
    def batches(**kw):
        data = GeneratedEpochs(generator, seed=4, samples_per_epoch=22, batch_size=8, **kw)
        assert data.steps_per_epoch == 3
        return [list(data.loader(e)) for e in (1, 2)]

    ref = batches(num_workers=1)
    for chunk in (1, 12, 512):  # 12 is rounded up to 16: two batches per call
        got = batches(chunk=chunk)
        for ep_ref, ep_got in zip(ref, got):
            assert [len(b["label"]) for b in ep_got] == [8, 8, 6]
            for x, y in zip(ep_ref, ep_got):
                assert x.keys() == y.keys() and all(torch.equal(x[k], y[k]) for k in x)
    assert not torch.equal(ref[0][0]["index"], ref[1][0]["index"])
    with pytest.raises(ValueError, match="chunk"):
        GeneratedEpochs(generator, seed=4, samples_per_epoch=22, batch_size=8, chunk=0)
