"""Tests of sacnn_lab.config and sacnn_lab.model: shapes, visual fields, block rule, configs, backbones."""

from __future__ import annotations

import json

import pytest
import torch
from torch import nn

from sacnn_lab.config import ModelConfig, RunConfig
from sacnn_lab.model import SACNN, ConvBlock, normalise_input, receptive_field, suggest_blocks


@pytest.fixture(autouse=True)
def _seed() -> None:
    torch.manual_seed(0)


def tiny(blocks: int, **kw) -> ModelConfig:
    return ModelConfig(channels=(4,) * blocks, **kw)


# ----------------------------------------------------------------------------------- shapes


@pytest.mark.parametrize(
    ("size", "blocks", "out"), [(136, 3, 17), (512, 3, 64), (136, 5, 4), (512, 5, 16)]
)
def test_output_shape(size: int, blocks: int, out: int) -> None:
    model = SACNN(tiny(blocks))
    y = model(torch.rand(2, 1, size, size))
    assert y.shape == (2, 2, out, out)
    assert model.feature_size(size, size) == (out, out)


def test_presets_and_default() -> None:
    c, t = ModelConfig.characters(), ModelConfig.textile()
    assert c.num_blocks == 3 and t.num_blocks == 5
    assert ModelConfig().backbone is None and ModelConfig().backbone_weights is None
    model = SACNN(c)
    assert all(isinstance(b, ConvBlock) for b in model.extractor)
    assert len(model.extractor) == 3
    assert model(torch.rand(1, 1, 136, 136)).shape == (1, 2, 17, 17)
    assert ModelConfig.textile(norm="batch").norm == "batch"


def test_non_square_and_odd_sizes() -> None:
    model = SACNN(tiny(3))
    assert model(torch.rand(1, 1, 100, 67)).shape == (1, 2, 12, 8)
    assert model.feature_size(100, 67) == (12, 8)
    with pytest.raises(ValueError, match="too small"):
        model.feature_size(4, 4)


def test_two_defect_types_give_three_channels() -> None:
    model = SACNN(tiny(2, num_defect_types=2))
    assert model.num_classes == 3
    assert model(torch.rand(1, 1, 32, 32)).shape == (1, 3, 8, 8)


def test_forward_rejects_wrong_channels() -> None:
    with pytest.raises(ValueError, match=r"\(B, 1, H, W\)"):
        SACNN(tiny(1))(torch.rand(1, 3, 16, 16))


def test_model_centres_its_input() -> None:
    model = SACNN(tiny(1))
    x = torch.rand(1, 1, 16, 16)
    expected = model.head(model.extractor((x - 0.5) / 0.5))
    torch.testing.assert_close(model(x), expected)


def test_abs_deviation_input_ignores_polarity_and_background() -> None:
    """``input_norm="abs_deviation"``: |x - median| / 0.25 per image, so a dark mark on a light
    background and the same mark light on a dark one give the same logits."""
    x = torch.full((2, 1, 16, 16), 0.8)
    x[0, 0, 4:9, 5:7] = 0.3  # dark ink on light gray
    x[1, 0, 2:6, 9:14] = 0.1
    out = normalise_input(x, "abs_deviation")
    assert out.shape == x.shape
    torch.testing.assert_close(out[0, 0, 4, 5], torch.tensor(2.0))  # |0.3 - 0.8| / 0.25
    assert out[0, 0, 0, 0] == 0 and out.min() == 0
    torch.testing.assert_close(normalise_input(1 - x, "abs_deviation"), out)
    torch.testing.assert_close(normalise_input(x, "centre"), (x - 0.5) / 0.5)
    model = SACNN(tiny(2, input_norm="abs_deviation")).eval()
    torch.testing.assert_close(model(1 - x), model(x))
    torch.testing.assert_close(model(x), model.head(model.extractor(out)))
    centred = SACNN(tiny(2)).eval()  # the paper's input scaling keeps the polarity
    assert not torch.allclose(centred(1 - x), centred(x))
    with pytest.raises(ValueError, match="input normalisation"):
        normalise_input(x, "zscore")


# ----------------------------------------------------------------------------------- blocks


@pytest.mark.parametrize("norm", ["none", "batch", "group"])
def test_norm_variants(norm: str) -> None:
    block = ConvBlock(1, 16, norm=norm)
    kind = {"none": nn.Identity, "batch": nn.BatchNorm2d, "group": nn.GroupNorm}[norm]
    assert isinstance(block.norm, kind)
    assert (block.dilated.bias is None) == (norm != "none")
    if norm == "group":
        assert block.norm.num_groups == 8
    y = block(torch.rand(2, 1, 12, 12))
    assert y.shape == (2, 16, 6, 6)
    assert (y >= 0).all()  # ends with a ReLU


def test_block_layers_and_inner_relu() -> None:
    block = ConvBlock(2, 8, kernel_size=5, dilation=3)
    assert block.conv.kernel_size == (5, 5) and block.conv.padding == (2, 2)
    assert block.dilated.dilation == (3, 3) and block.dilated.padding == (6, 6)
    assert isinstance(block.inner, nn.Identity)
    assert isinstance(ConvBlock(2, 8, inner_relu=True).inner, nn.ReLU)
    assert isinstance(SACNN(tiny(2, inner_relu=True)).extractor[1].inner, nn.ReLU)


# ----------------------------------------------------------------------------------- visual field


def test_receptive_field_one_block_by_hand() -> None:
    # conv 3: rf 1 + 2 = 3; dilated conv 3, d=2 (k_eff 5): 3 + 4 = 7; pool 2: 7 + 1 = 8; jump 2
    (r,) = receptive_field(tiny(1), 9)
    assert (r["block"], r["rf"], r["jump"], r["start"], r["size"]) == (1, 8, 2, 1.0, (4, 4))
    # k 5, d 3: 1 + 4 + 12 + 1 = 18
    (r,) = receptive_field(tiny(1, kernel_size=5, dilation=3), (10, 7))
    assert (r["rf"], r["jump"], r["size"]) == (18, 2, (5, 3))


def test_receptive_field_defaults() -> None:
    rows = receptive_field(ModelConfig.textile(), 512)
    assert [r["rf"] for r in rows] == [8, 22, 50, 106, 218]
    assert [r["jump"] for r in rows] == [2, 4, 8, 16, 32]
    assert [r["size"] for r in rows][-1] == (16, 16)
    assert receptive_field(ModelConfig.characters(), 136)[-1]["size"] == (17, 17)
    assert receptive_field(ModelConfig.characters())[-1]["size"] is None


def test_receptive_field_bounds_the_dependence() -> None:
    """An output pixel changes with the pixels inside its field and ignores those outside."""
    config = tiny(2)
    model = SACNN(config).eval()
    r = receptive_field(config)[-1]  # rf 22, jump 4, start 2.0
    j = 4
    centre = r["start"] + j * r["jump"]
    lo, hi = int(centre - r["rf"] / 2), int(centre + r["rf"] / 2)
    x = torch.rand(1, 1, 40, 40)
    outside = torch.rand(1, 1, 40, 40)
    outside[..., lo:hi, lo:hi] = x[..., lo:hi, lo:hi]
    inside = x.clone()
    inside[..., lo:hi, lo:hi] = torch.rand(hi - lo, hi - lo)
    with torch.no_grad():
        y, y_out, y_in = model(x), model(outside), model(inside)
    torch.testing.assert_close(y_out[..., j, j], y[..., j, j])
    assert not torch.allclose(y_in[..., j, j], y[..., j, j])


def test_receptive_field_rejects_backbone() -> None:
    with pytest.raises(ValueError, match="block extractor"):
        receptive_field(ModelConfig(backbone="resnet18"))


def test_suggest_blocks() -> None:
    # defaults (k 3, d 2): fields 8, 22, 50, 106, 218, 442 px
    for size in (25, 28, 32):
        assert suggest_blocks(size) == 3  # the paper's 3 blocks for characters
        assert suggest_blocks(size, rule="closest") == 2  # nearest field: 22 px
    for size in (110, 125, 150):
        assert suggest_blocks(size) == 5  # the paper's 5 blocks for DAGM
        assert suggest_blocks(size, rule="closest") == 4  # nearest field: 106 px
    assert suggest_blocks(50) == 3 and suggest_blocks(218) == 5
    assert suggest_blocks(15, rule="closest") == 1  # tie between 8 and 22: fewer blocks
    assert suggest_blocks(15) == 2
    # without dilation (k 3, d 1): fields 6, 16, 36, 76, 156
    assert suggest_blocks(28, dilation=1, rule="closest") == 3
    assert suggest_blocks(125, dilation=1, rule="closest") == 5
    assert suggest_blocks(10_000, max_blocks=4, rule="closest") == 4
    assert suggest_blocks(10_000, max_blocks=4) == 4
    # the input averaged 2×2 first (the fast preset): fields 16, 44, 100 px
    for size in (25, 28, 32):
        assert suggest_blocks(size, input_pool=2) == 2
    assert suggest_blocks(45, input_pool=2) == 3
    with pytest.raises(ValueError):
        suggest_blocks(30, input_pool=3)
    with pytest.raises(ValueError):
        suggest_blocks(0)
    with pytest.raises(ValueError):
        suggest_blocks(30, rule="biggest")


# ----------------------------------------------------------------------------------- config


@pytest.mark.parametrize(
    ("kwargs", "error", "match"),
    [
        ({"channels": ()}, ValueError, "at least one block"),
        ({"channels": (32, 0)}, ValueError, r"channels\[1\]"),
        ({"channels": (True,)}, TypeError, r"channels\[0\]"),
        ({"channels": 32}, TypeError, "sequence"),
        ({"kernel_size": 4}, ValueError, "odd"),
        ({"dilation": 0}, ValueError, "dilation"),
        ({"norm": "layer"}, ValueError, "norm"),
        ({"input_norm": "zscore"}, ValueError, "input_norm"),
        ({"in_channels": 0}, ValueError, "in_channels"),
        ({"num_defect_types": 0}, ValueError, "num_defect_types"),
        ({"inner_relu": 1}, TypeError, "inner_relu"),
        ({"backbone": "not_a_net"}, ValueError, "not_a_net"),
        ({"backbone_weights": "w.pt"}, ValueError, "backbone is None"),
        ({"backbone": "resnet18", "backbone_stride": 6}, ValueError, "power of 2"),
    ],
)
def test_bad_configs_raise(kwargs: dict, error: type, match: str) -> None:
    with pytest.raises(error, match=match):
        ModelConfig(**kwargs)


def test_config_round_trip() -> None:
    config = ModelConfig.textile(norm="group", num_defect_types=3)
    d = json.loads(json.dumps(config.to_dict()))
    assert d["channels"] == [32, 64, 96, 128, 160]
    back = ModelConfig.from_dict(d)
    assert back == config and isinstance(back.channels, tuple)
    with pytest.raises(ValueError, match="unknown"):
        ModelConfig.from_dict({**d, "width": 3})
    # a run saved before input_norm existed keeps the paper's input scaling
    older = {k: v for k, v in d.items() if k != "input_norm"}
    assert ModelConfig.from_dict(older).input_norm == "centre"


# ----------------------------------------------------------------------------------- backbones


def test_backbone_missing_weights_names_the_path(tmp_path) -> None:
    missing = tmp_path / "nowhere" / "resnet18.pth"
    config = ModelConfig(backbone="resnet18", backbone_weights=str(missing))
    with pytest.raises(FileNotFoundError, match="resnet18.pth") as info:
        SACNN(config)
    assert str(missing) in str(info.value)


def test_backbone_gray_input_and_local_weights(tmp_path) -> None:
    import torchvision

    net = torchvision.models.get_model("shufflenet_v2_x0_5", weights=None)
    path = tmp_path / "shufflenet.pth"
    torch.save(net.state_dict(), path)
    model = SACNN(ModelConfig(backbone="shufflenet_v2_x0_5", backbone_weights=str(path)))
    first = next(m for m in model.extractor.modules() if isinstance(m, nn.Conv2d))
    assert first.in_channels == 1
    torch.testing.assert_close(first.weight, net.conv1[0].weight.sum(dim=1, keepdim=True))
    assert model(torch.rand(2, 1, 64, 64)).shape == (2, 2, 8, 8)
    assert model.feature_size(64, 64) == (8, 8)

    wrong = tmp_path / "wrong.pth"
    torch.save({"weight": torch.zeros(3)}, wrong)
    with pytest.raises(ValueError, match="wrong.pth"):
        SACNN(ModelConfig(backbone="shufflenet_v2_x0_5", backbone_weights=str(wrong)))


def test_backbone_stride_and_channels() -> None:
    model = SACNN(ModelConfig(backbone="shufflenet_v2_x0_5", backbone_stride=16, in_channels=2))
    assert model(torch.rand(1, 2, 64, 64)).shape == (1, 2, 4, 4)
    # squeezenet's unpadded convolutions never give an exact stride of 8
    with pytest.raises(ValueError, match="stride 8"):
        SACNN(ModelConfig(backbone="squeezenet1_1"))


def test_fast_preset_keeps_the_papers_map() -> None:
    """The fast character preset (2×2 average, 2 blocks) gives the paper's 17×17 map at stride 8, with a
    visual field near the characters' size, and its blocks are what suggest_blocks picks for them."""
    fast, paper = RunConfig.preset("fast").model, RunConfig.preset("paper").model
    f, p = receptive_field(fast, 136)[-1], receptive_field(paper, 136)[-1]
    assert f["size"] == p["size"] == (17, 17) and f["jump"] == p["jump"] == 8
    assert (f["rf"], p["rf"]) == (44, 50)
    assert fast.num_blocks == suggest_blocks(32, input_pool=fast.input_pool)
    assert paper.num_blocks == suggest_blocks(32)
    assert SACNN(fast)(torch.rand(2, 1, 136, 136)).shape == (2, 2, 17, 17)
