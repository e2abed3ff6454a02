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


def test_early_epochs_draw_smaller_images_in_batches_of_the_same_pixels(faces):
    """Progressive resizing: epochs 1..early_epochs come from the small generator, 4× the batch at half
    the side; later epochs are full size; each epoch's batch count is what steps_in says."""
    from dataclasses import replace

    from data_gen.characters import CharacterConfig, CharacterGenerator

    cfg = CharacterConfig(image_size=64, char_size=(14, 16), distractor_scales=(0.3, 3.0), centre_offset=(-4, 4))
    big = CharacterGenerator(cfg, faces=faces)
    small = CharacterGenerator(replace(cfg, image_size=32), faces=faces)
    data = GeneratedEpochs(big, seed=4, samples_per_epoch=40, batch_size=4, early_generator=small,
                           early_epochs=2)
    assert data.early_batch_size == 16
    for epoch, side, sizes in ((1, 32, [16, 16, 8]), (2, 32, [16, 16, 8]), (3, 64, [4] * 10)):
        got = list(data.loader(epoch))
        assert [len(b["label"]) for b in got] == sizes and data.steps_in(epoch) == len(sizes)
        assert {tuple(b["image"].shape[-2:]) for b in got} == {(side, side)}
    # the same indices as a full-size epoch would draw: the sample, only smaller
    assert torch.equal(next(iter(data.loader(2)))["index"][:4], torch.arange(40, 44))
    with pytest.raises(ValueError, match="go together"):
        GeneratedEpochs(big, seed=4, samples_per_epoch=40, batch_size=4, early_epochs=2)
