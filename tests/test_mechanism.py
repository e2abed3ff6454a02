"""Why the competition converges, measured (sacnn_lab.mechanism), on a tiny network and on the shipped run."""

from __future__ import annotations

import numpy as np
import torch

from sacnn_lab import course, mechanism
from sacnn_lab.config import ModelConfig
from sacnn_lab.experiment import split
from sacnn_lab.model import SACNN


def test_only_each_images_winner_receives_a_gradient():
    torch.manual_seed(0)
    model = SACNN(ModelConfig(channels=(4, 8), norm="none"))
    images = np.random.default_rng(0).integers(0, 256, (6, 40, 40), dtype=np.uint8)
    g = mechanism.winner_gradient(model, images, np.array([0, 1, 0, 1, 1, 0]))
    assert g.gradient.shape[0] == 6 and (g.touched == 1).all() and g.on_winner.all()
    for grad, (r, c) in zip(g.gradient, g.winners):
        assert grad[r, c] > 0 and grad.sum() == grad[r, c]


def test_property_one_a_step_changes_the_map_near_the_winner():
    """On the shipped character run: the winner and its neighbours change most, the far pixels barely."""
    run = course.run("characters", "cpu")
    val = split(run.config, "val", 16)
    before = [p.detach().clone() for p in run.model.parameters()]
    table = mechanism.property_one(run.model, val.images, val.labels, lr=0.003)
    assert all(torch.equal(a, b) for a, b in zip(before, run.model.parameters()))  # the run's model is untouched
    by = table.groupby("distance").change.mean()
    assert by[0] > 10 * by[by.index >= 3].median()
    assert set(table.columns) == {"image", "label", "distance", "change"}


def test_competition_by_epoch_follows_the_probe_images():
    run = course.run("characters", "cpu")
    table = mechanism.competition_by_epoch(run.history)
    assert list(table.epoch) == run.history.recorded_epochs
    first, last = table.iloc[0], table.iloc[-1]
    assert last.off_defect <= first.off_defect and last.defective_mean > first.defective_mean
    assert ((table.free_max_mean >= 0) & (table.free_max_mean <= table.free_max_top)).all()


def test_the_competitive_phase_is_the_flat_start_at_chance():
    from sacnn_lab import plots
    from sacnn_lab.history import History

    h = History()
    h.config = {"train": {"reduction": "sum"}}
    loss = [64 * np.log(2)] * 50 + list(np.linspace(40, 5, 50))  # flat at 64·ln 2 (a batch of 64, summed), then falls
    h.steps = {"loss": loss, "tp": [16] * 100, "fp": [16] * 100, "tn": [16] * 100, "fn": [16] * 100}
    start, end = mechanism.competitive_phase(h, window=5)
    assert start == 0 and 50 <= end <= 60
    h.steps["loss"] = list(np.linspace(20, 5, 100))  # learning from the first steps: no flat start
    assert mechanism.competitive_phase(h, window=5) is None
    fig = plots.training_curves(course.run("characters", "cpu").history, x="samples")
    assert fig.axes[0].get_xlabel() == "samples seen"
