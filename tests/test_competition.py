"""Tests of sacnn_lab.competition: Eqs. 2–4 by hand, gradients at the winner, numerical safety, K > 1."""

from __future__ import annotations

import math

import pytest
import torch

from sacnn_lab.competition import competition_loss, defect_layers, image_scores, winning_pixels


def sigmoid(z: float) -> float:
    return 1.0 / (1.0 + math.exp(-z))


@pytest.fixture
def hand_logits() -> torch.Tensor:
    """Two images, 2 classes, 2×2 pixels; class 0 logits are 0, so p_defective = sigmoid(class 1)."""
    logits = torch.zeros(2, 2, 2, 2)
    logits[0, 1] = torch.tensor([[0.0, 1.0], [2.0, -1.0]])  # winner (1, 0): l* = sigmoid(2)
    logits[1, 1] = torch.tensor([[-3.0, -0.5], [-2.0, -1.5]])  # winner (0, 1): l* = sigmoid(-0.5)
    return logits


def naive_loss(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Eqs. 2–4 written literally (float64; unsafe for extreme logits), generalised one-vs-rest."""
    p = torch.softmax(logits.double(), dim=1)
    total = torch.zeros(logits.shape[0], dtype=torch.float64)
    for k in range(1, logits.shape[1]):
        l_star = p[:, k].flatten(1).max(dim=1).values
        y = (labels == k).double()
        total -= y * torch.log(l_star) + (1 - y) * torch.log(1 - l_star)
    return total


def test_scores_and_layers_by_hand(hand_logits: torch.Tensor) -> None:
    layers = defect_layers(hand_logits)
    assert layers.shape == (2, 1, 2, 2)
    assert layers[0, 0, 0, 1].item() == pytest.approx(sigmoid(1.0))
    scores = image_scores(hand_logits)
    assert scores.shape == (2, 1)
    assert scores[:, 0].tolist() == pytest.approx([sigmoid(2.0), sigmoid(-0.5)])
    assert winning_pixels(hand_logits).tolist() == [[2], [1]]


@pytest.mark.parametrize("labels", [[1, 0], [0, 1], [1, 1], [0, 0]])
def test_loss_equals_eq3_eq4_by_hand(hand_logits: torch.Tensor, labels: list[int]) -> None:
    l_star = [sigmoid(2.0), sigmoid(-0.5)]
    per = [-(y * math.log(s) + (1 - y) * math.log(1 - s)) for y, s in zip(labels, l_star)]
    y = torch.tensor(labels)
    assert competition_loss(hand_logits, y, reduction="sum").item() == pytest.approx(sum(per), rel=1e-6)
    assert competition_loss(hand_logits, y).item() == pytest.approx(sum(per), rel=1e-6)  # Eq. 4 default
    assert competition_loss(hand_logits, y, reduction="mean").item() == pytest.approx(sum(per) / 2, rel=1e-6)
    none = competition_loss(hand_logits, y, reduction="none")
    assert none.shape == (2,) and none.tolist() == pytest.approx(per, rel=1e-6)


def test_loss_matches_literal_formula_on_random_logits() -> None:
    torch.manual_seed(0)
    logits = torch.randn(6, 2, 5, 7) * 3
    labels = torch.tensor([0, 1, 1, 0, 1, 0])
    got = competition_loss(logits, labels, reduction="none").double()
    torch.testing.assert_close(got, naive_loss(logits, labels), rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("num_types", [1, 2])
def test_gradient_only_at_the_winning_pixel(num_types: int) -> None:
    torch.manual_seed(1)
    b, s, t = 4, 5, 6
    logits = torch.randn(b, 1 + num_types, s, t, requires_grad=True)
    labels = torch.arange(b) % (1 + num_types)
    competition_loss(logits, labels).backward()
    touched = logits.grad.abs().sum(dim=1).flatten(1) > 0  # (B, s·t)
    winners = winning_pixels(logits.detach())  # (B, K)
    for i in range(b):
        expected = set(winners[i].tolist())
        assert set(torch.nonzero(touched[i]).flatten().tolist()) == expected
    # and the winner is the spatial argmax of the defective layer
    if num_types == 1:
        flat = defect_layers(logits.detach())[:, 0].flatten(1)
        assert winners[:, 0].tolist() == flat.argmax(dim=1).tolist()


def test_extreme_logits_stay_finite() -> None:
    logits = torch.full((2, 2, 3, 3), -1e4)
    logits[:, 0] = 1e4  # every pixel sure to be defect-free: l* rounds to 0
    logits[1, 1, 2, 2], logits[1, 0, 2, 2] = 1e4, -1e4  # image 1: one sure defect, l* rounds to 1
    for labels, expected in (([1, 0], [2e4, 2e4]), ([0, 1], [0.0, 0.0])):
        x = logits.clone().requires_grad_(True)
        per = competition_loss(x, torch.tensor(labels), reduction="none")
        assert torch.isfinite(per).all()
        assert per.tolist() == pytest.approx(expected, abs=1e-3)
        per.sum().backward()
        assert torch.isfinite(x.grad).all()
    # the literal formula breaks down where ours does not
    assert not torch.isfinite(naive_loss(logits, torch.tensor([1, 0]))).all()


def test_class_weights_scale_the_right_term(hand_logits: torch.Tensor) -> None:
    defect_free, defective = torch.tensor([0, 0]), torch.tensor([1, 1])
    w = (2.0, 5.0)
    base0 = competition_loss(hand_logits, defect_free)
    base1 = competition_loss(hand_logits, defective)
    weighted0 = competition_loss(hand_logits, defect_free, class_weights=w)
    weighted1 = competition_loss(hand_logits, defective, class_weights=w)
    assert weighted0.item() == pytest.approx(2 * base0.item())
    assert weighted1.item() == pytest.approx(5 * base1.item())
    mixed = torch.tensor([1, 0])
    per = competition_loss(hand_logits, mixed, reduction="none")
    weighted = competition_loss(hand_logits, mixed, class_weights=w, reduction="none")
    assert weighted.tolist() == pytest.approx([5 * per[0].item(), 2 * per[1].item()])


def test_two_defect_types() -> None:
    logits = torch.zeros(3, 3, 1, 2)
    logits[:, 1] = torch.tensor([[1.0, 0.0]])  # type 1 wins pixel 0
    logits[:, 2] = torch.tensor([[0.0, 2.0]])  # type 2 wins pixel 1
    labels = torch.tensor([0, 1, 2])
    # type 1: l*_1 at pixel 0 = e/(1+e+1); type 2: l*_2 at pixel 1 = e²/(1+1+e²)
    l1 = math.e / (2 + math.e)
    l2 = math.e**2 / (2 + math.e**2)
    expected = [
        -(math.log(1 - l1) + math.log(1 - l2)),  # defect-free: both pushed down
        -(math.log(l1) + math.log(1 - l2)),
        -(math.log(1 - l1) + math.log(l2)),
    ]
    assert image_scores(logits)[0].tolist() == pytest.approx([l1, l2])
    assert winning_pixels(logits)[0].tolist() == [0, 1]
    got = competition_loss(logits, labels, reduction="none")
    assert got.tolist() == pytest.approx(expected, rel=1e-6)
    torch.manual_seed(2)
    rand = torch.randn(5, 3, 4, 4)
    rand_labels = torch.tensor([0, 1, 2, 2, 1])
    torch.testing.assert_close(
        competition_loss(rand, rand_labels, reduction="none").double(), naive_loss(rand, rand_labels)
    )


def test_low_precision_logits_are_computed_in_float32(hand_logits: torch.Tensor) -> None:
    labels = torch.tensor([1, 0])
    loss = competition_loss(hand_logits.to(torch.bfloat16), labels)
    assert loss.dtype == torch.float32
    assert loss.item() == pytest.approx(competition_loss(hand_logits, labels).item(), rel=1e-2)


@pytest.mark.parametrize(
    ("logits", "labels", "kwargs", "error"),
    [
        (torch.zeros(2, 2, 3), torch.tensor([0, 1]), {}, ValueError),  # not 4-D
        (torch.zeros(2, 1, 3, 3), torch.tensor([0, 1]), {}, ValueError),  # no defect class
        (torch.zeros(2, 2, 3, 3, dtype=torch.long), torch.tensor([0, 1]), {}, TypeError),
        (torch.zeros(2, 2, 3, 3), torch.tensor([0.0, 1.0]), {}, TypeError),  # float labels
        (torch.zeros(2, 2, 3, 3), torch.tensor([0, 2]), {}, ValueError),  # out of range for K = 1
        (torch.zeros(2, 2, 3, 3), torch.tensor([0, 1, 1]), {}, ValueError),  # batch mismatch
        (torch.zeros(2, 2, 3, 3), torch.tensor([0, 1]), {"reduction": "max"}, ValueError),
        (torch.zeros(2, 2, 3, 3), torch.tensor([0, 1]), {"class_weights": (1.0,)}, ValueError),
        (torch.zeros(2, 2, 3, 3), torch.tensor([0, 1]), {"class_weights": (1.0, -1.0)}, ValueError),
    ],
)
def test_bad_input_raises(logits, labels, kwargs, error) -> None:
    with pytest.raises(error):
        competition_loss(logits, labels, **kwargs)


def test_bool_labels_are_accepted(hand_logits: torch.Tensor) -> None:
    a = competition_loss(hand_logits, torch.tensor([True, False]))
    b = competition_loss(hand_logits, torch.tensor([1, 0]))
    assert a.item() == b.item()


# ---------------------------------------------------------------------------------------------------
# other aggregations: mean, log-sum-exp, top-k (an ablation of the paper's maximum)

from sacnn_lab.competition import AGGREGATIONS, pool, topk_count  # noqa: E402


def naive_pooled_loss(logits: torch.Tensor, labels: torch.Tensor, aggregation: str, r: float = 5.0,
                      k: float = 0.05) -> torch.Tensor:
    """The pooled probability and its cross-entropy written literally in float64 (K = 1)."""
    p = torch.softmax(logits.double(), dim=1)[:, 1].flatten(1)  # (B, N)
    if aggregation == "max":
        s = p.max(1).values
    elif aggregation == "mean":
        s = p.mean(1)
    elif aggregation == "topk":
        s = p.topk(topk_count(k, p.shape[1]), dim=1).values.mean(1)
    else:
        s = torch.log(torch.exp(r * p).mean(1)) / r
    y = labels.double()
    return -(y * torch.log(s) + (1 - y) * torch.log(1 - s)).sum()


@pytest.mark.parametrize("aggregation", AGGREGATIONS)
def test_every_aggregation_is_its_formula_and_pool_agrees(aggregation):
    torch.manual_seed(0)
    logits = torch.randn(4, 2, 6, 5) * 2
    labels = torch.tensor([0, 1, 1, 0])
    got = competition_loss(logits, labels, aggregation=aggregation, topk_k=0.1)
    want = naive_pooled_loss(logits, labels, aggregation, k=0.1)
    assert got.item() == pytest.approx(want.item(), rel=1e-5)
    scores = image_scores(logits, aggregation=aggregation, topk_k=0.1)
    assert torch.allclose(scores, pool(defect_layers(logits), aggregation, topk_k=0.1), atol=1e-6)
    assert ((scores >= 0) & (scores <= 1)).all()


def test_the_poolings_are_ordered_and_lse_spans_mean_to_max():
    torch.manual_seed(1)
    layers = defect_layers(torch.randn(3, 2, 8, 8) * 3)
    mean, top, mx = pool(layers, "mean"), pool(layers, "topk", topk_k=4), pool(layers, "max")
    assert (mean <= top + 1e-6).all() and (top <= mx + 1e-6).all()
    for r in (0.5, 5, 50):
        lse = pool(layers, "lse", lse_r=r)
        assert (mean - 1e-6 <= lse).all() and (lse <= mx + 1e-6).all()
    assert torch.allclose(pool(layers, "lse", lse_r=1e-3), mean, atol=1e-3)
    assert torch.allclose(pool(layers, "lse", lse_r=2000), mx, atol=5e-3)
    assert topk_count(1, 64) == 1 and topk_count(0.05, 64) == 4 and topk_count(100, 64) == 64


def _pixels_with_gradient(aggregation: str, **kw) -> list[int]:
    torch.manual_seed(2)
    logits = (torch.randn(2, 2, 5, 5) * 2).requires_grad_()
    competition_loss(logits, torch.tensor([1, 0]), aggregation=aggregation, **kw).backward()
    return [int((logits.grad[b].abs().sum(0) > 0).sum()) for b in range(2)]


def test_which_pixels_learn_under_each_aggregation():
    assert _pixels_with_gradient("max") == [1, 1]  # only the winner
    assert _pixels_with_gradient("mean") == [25, 25]  # every pixel
    assert _pixels_with_gradient("topk", topk_k=3) == [3, 3]  # the three highest
    assert _pixels_with_gradient("topk", topk_k=0.2) == [5, 5]
    assert _pixels_with_gradient("lse") == [25, 25]  # every pixel, the high ones most


@pytest.mark.parametrize("aggregation", AGGREGATIONS)
def test_every_aggregation_stays_finite_at_extreme_logits(aggregation):
    logits = torch.zeros(2, 2, 4, 4)
    logits[:, 1] = 200.0  # every pixel certain of a defect: l* rounds to 1 in float32
    logits[1, 1] = -200.0  # every pixel certain of none: l* rounds to 0
    logits.requires_grad_()
    loss = competition_loss(logits, torch.tensor([0, 1]), aggregation=aggregation)  # both wrong: a large loss
    loss.backward()
    assert torch.isfinite(loss) and loss.item() > 100 and torch.isfinite(logits.grad).all()
    right = competition_loss(logits.detach(), torch.tensor([1, 0]), aggregation=aggregation)
    assert right.item() == pytest.approx(0.0, abs=1e-4)


def test_several_defect_types_under_another_aggregation():
    torch.manual_seed(3)
    logits = torch.randn(3, 3, 4, 4)
    loss = competition_loss(logits, torch.tensor([0, 1, 2]), aggregation="mean", reduction="none")
    p = torch.softmax(logits.double(), 1)[:, 1:].flatten(2).mean(2)  # (B, K)
    y = torch.nn.functional.one_hot(torch.tensor([0, 1, 2]), 3)[:, 1:].double()
    want = -(y * p.log() + (1 - y) * (1 - p).log()).sum(1)
    assert torch.allclose(loss.double(), want, rtol=1e-5)


def test_a_network_trains_with_its_aggregation_and_refuses_an_unknown_one():
    from sacnn_lab.config import ModelConfig
    from sacnn_lab.model import SACNN

    with pytest.raises(ValueError, match="aggregation must be one of"):
        ModelConfig(aggregation="median")
    with pytest.raises(ValueError, match="topk_k"):
        ModelConfig(aggregation="topk", topk_k=2.5)
    model = SACNN(ModelConfig(channels=(4, 4), aggregation="lse", lse_r=3.0))
    logits = model(torch.rand(2, 1, 32, 32))
    labels = torch.tensor([0, 1])
    assert model.loss(logits, labels).item() == pytest.approx(
        competition_loss(logits, labels, aggregation="lse", lse_r=3.0).item())
    assert torch.equal(model.image_scores(logits), image_scores(logits, aggregation="lse", lse_r=3.0))


@pytest.mark.parametrize("r", [17.0, 50.0, 500.0])
def test_a_sharp_log_sum_exp_keeps_a_finite_loss_and_gradient(r):
    # the float32 form log1p(mean(expm1(-r q))) took log(0) once r·q passed ~16 everywhere: a NaN loss
    torch.manual_seed(3)
    logits = (torch.randn(4, 2, 17, 17) * 2).requires_grad_()
    labels = torch.tensor([0, 1, 1, 0])
    loss = competition_loss(logits, labels, aggregation="lse", lse_r=r)
    loss.backward()
    assert torch.isfinite(loss) and torch.isfinite(logits.grad).all()
    want = naive_pooled_loss(logits.detach().double(), labels, "lse", r=r)  # the formula in float64
    assert loss.item() == pytest.approx(want.item(), rel=1e-4)
    untrained = torch.zeros(2, 2, 17, 17)  # q = 1/2 at every pixel, the first step's case
    assert torch.isfinite(competition_loss(untrained, torch.tensor([0, 1]), aggregation="lse", lse_r=r))
