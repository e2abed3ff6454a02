"""The character generator: determinism, ratio, truth (boxes and masks), presets, speed path."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest

from data_gen.characters import CharacterConfig, CharacterGenerator, ratio_of
from data_gen.random import Draws


def test_shapes_and_dtypes(generator):
    b = generator.generate(0, np.arange(32), masks=True)
    assert b.images.shape == (32, 136, 136) and b.images.dtype == np.uint8
    assert b.labels.shape == (32,) and set(np.unique(b.labels)) <= {0, 1}
    assert b.boxes.shape == (32, 3, 4)
    assert b.masks.shape == (32, 136, 136) and b.masks.dtype == bool


def test_same_seed_and_index_give_identical_bytes_in_any_batch(generator):
    idx = np.arange(100, 164)
    a = generator.generate(5, idx, masks=True)
    b = generator.generate(5, idx[::-1], masks=True)  # another order
    c = generator.generate(5, idx[10:20], masks=True)  # another batch
    fresh = CharacterGenerator(generator.config, faces=generator.faces).generate(5, idx, masks=True)
    assert np.array_equal(a.images, b.images[::-1])
    assert np.array_equal(a.images[10:20], c.images)
    assert np.array_equal(a.boxes[10:20], c.boxes)
    assert np.array_equal(a.masks, fresh.masks)
    assert np.array_equal(a.images, fresh.images)


def test_different_seeds_give_different_splits(generator):
    a = generator.generate(1, np.arange(16))
    b = generator.generate(2, np.arange(16))
    assert not np.array_equal(a.images, b.images)


def test_draws_are_pure_functions_of_seed_and_index():
    a = Draws(3, np.arange(10)).uniform("x")
    b = Draws(3, np.arange(5, 10)).uniform("x")
    assert np.array_equal(a[5:], b)
    assert not np.array_equal(a, Draws(4, np.arange(10)).uniform("x"))
    assert not np.array_equal(a, Draws(3, np.arange(10)).uniform("y"))
    with pytest.raises(ValueError):
        Draws(-1, np.arange(3))


@pytest.mark.parametrize("ratio", [1, 3, 7, 10])
def test_integer_ratio_is_exact_in_every_block(generator, ratio):
    gen = CharacterGenerator(replace(generator.config, ratio=ratio), faces=generator.faces)
    labels = gen.labels(9, np.arange((ratio + 1) * 200))
    assert labels.reshape(200, ratio + 1).sum(1).tolist() == [1] * 200
    assert ratio_of(labels) == ratio


def test_fractional_ratio_is_honoured_on_average(generator):
    gen = CharacterGenerator(replace(generator.config, ratio=2.5), faces=generator.faces)
    labels = gen.labels(0, np.arange(20000))
    assert abs(ratio_of(labels) - 2.5) < 0.15


def test_labels_agree_with_images(generator):
    b = generator.generate(4, np.arange(200))
    assert np.array_equal(b.labels, generator.labels(4, np.arange(200)))
    n_boxes = (b.boxes[:, :, 0] >= 0).sum(1)
    assert np.all((n_boxes > 0) == (b.labels == 1))


def test_boxes_inside_image_and_cover_all_ink(clean_generator):
    b = clean_generator.generate(0, np.arange(300), masks=True)
    S = 136
    assert (b.labels == 1).any() and ((b.boxes[:, :, 0] >= 0).sum(1) > 1).any()  # multi-character images
    for i in range(len(b)):
        inside = np.zeros((S, S), bool)
        for x0, y0, x1, y1 in b.boxes_of(i):
            assert 0 <= x0 < x1 <= S and 0 <= y0 < y1 <= S
            inside[y0:y1, x0:x1] = True
            ink = b.images[i, y0:y1, x0:x1] > 0
            # tight: ink touches all four sides of the box
            assert ink[0].any() and ink[-1].any() and ink[:, 0].any() and ink[:, -1].any()
        assert not (b.images[i][~inside] > 0).any(), f"ink outside the boxes in sample {i}"


def test_masks_consistent_with_boxes(clean_generator):
    b = clean_generator.generate(1, np.arange(200), masks=True)
    for i in range(len(b)):
        boxes = b.boxes_of(i)
        inside = np.zeros((136, 136), bool)
        for x0, y0, x1, y1 in boxes:
            inside[y0:y1, x0:x1] = True
            assert b.masks[i, y0:y1, x0:x1].any()
        assert not (b.masks[i] & ~inside).any()
        assert b.masks[i].any() == bool(b.labels[i])
        # with ink 255 on black, the mask is exactly the pixels at >= 50 % coverage
        assert np.array_equal(b.masks[i], b.images[i] >= 128)


def test_distractors_are_never_truth(generator):
    cfg = replace(generator.config, lines=(0, 0), distractor_prob=1.0, background=(0, 0), ink=(255, 255))
    gen = CharacterGenerator(cfg, faces=generator.faces)
    b = gen.generate(2, np.arange(200), masks=True)
    neg = b.labels == 0
    assert (b.images[neg] > 0).reshape(neg.sum(), -1).any(1).mean() > 0.9  # distractor ink is there ...
    assert not b.masks[neg].any() and (b.boxes[neg] == -1).all()  # ... but never in the truth
    for i in np.flatnonzero(~neg):
        inside = np.zeros((136, 136), bool)
        for x0, y0, x1, y1 in b.boxes_of(i):
            inside[y0:y1, x0:x1] = True
        assert not (b.masks[i] & ~inside).any()


def test_distractors_only_in_negatives_option(generator):
    cfg = replace(generator.config, lines=(0, 0), distractor_prob=1.0, distractors_in="negatives",
                  background=(0, 0), ink=(255, 255), max_defects=1)
    b = CharacterGenerator(cfg, faces=generator.faces).generate(0, np.arange(100), masks=True)
    pos = b.labels == 1
    assert np.array_equal(b.images[pos] >= 128, b.masks[pos])  # nothing but the true character


def test_contrast_between_ink_and_background(generator):
    cfg = replace(generator.config, lines=(0, 0), distractor_prob=0.0, min_contrast=100)
    b = CharacterGenerator(cfg, faces=generator.faces).generate(0, np.arange(200), masks=True)
    for i in np.flatnonzero(b.labels):
        bg = np.bincount(b.images[i].ravel()).argmax()
        ink = b.images[i][b.masks[i]]
        assert np.abs(ink.astype(int) - int(bg)).max() >= 100 * 0.5


def test_centre_placement_stays_near_the_centre(generator):
    cfg = replace(generator.config, placement="centre", max_defects=1)
    b = CharacterGenerator(cfg, faces=generator.faces).generate(0, np.arange(200))
    for i in np.flatnonzero(b.labels):
        (x0, y0, x1, y1), = b.boxes_of(i)
        assert abs((x0 + x1) / 2 - 68) <= 12 + 2 and abs((y0 + y1) / 2 - 68) <= 12 + 2


def test_authors_preset(generator):
    cfg = CharacterConfig.authors(train=True)
    gen = CharacterGenerator(cfg, faces=generator.faces)
    b = gen.generate(0, np.arange(400))
    assert abs(ratio_of(b.labels) - 3) < 1e-9
    assert np.all(np.bincount(b.images.reshape(len(b), -1)[0]).argmax() == 255)  # white background
    pos = np.flatnonzero(b.labels)
    assert all(len(b.boxes_of(i)) == 2 for i in pos)  # strings of two adjacent characters
    test = CharacterConfig.authors(train=False)
    assert test.ratio == 1 and test.string_length == 1


def test_multi_character_images_exist_by_default(generator):
    b = generator.generate(0, np.arange(400))
    counts = (b.boxes[:, :, 0] >= 0).sum(1)
    assert counts.max() >= 2 and (counts[b.labels == 1] >= 1).all()


@pytest.mark.parametrize("bad", [dict(image_size=8), dict(char_size=(40, 30)), dict(placement="left"),
                                 dict(ratio=0), dict(min_contrast=200), dict(lines=(3, 1)),
                                 dict(distractor_scales=()), dict(line_gray="blue"), dict(string_length=9)])
def test_bad_config_is_a_clear_error(bad):
    with pytest.raises(ValueError):
        CharacterConfig(**bad)


def test_config_round_trips_through_a_dict():
    cfg = CharacterConfig.authors()
    assert CharacterConfig(**cfg.to_dict()) == cfg


def test_negative_index_is_rejected(generator):
    with pytest.raises(ValueError, match="non-negative"):
        generator.generate(0, [-1])


def test_font_split_generators_use_disjoint_faces(faces):
    train = CharacterGenerator(CharacterConfig(font_split="train"))
    test = CharacterGenerator(CharacterConfig(font_split="test"))
    assert not {f.name for f in train.faces} & {f.name for f in test.faces}
    assert train.fingerprint != test.fingerprint
