"""Tests of sacnn_lab.baseline: the VGG19 baseline, its CAM maps, hooks, weights, and runs."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
import torch
import torchvision

from sacnn_lab.baseline import CAM_METHODS, VGGBaseline, imagenet_weights_path
from sacnn_lab.config import BaselineConfig, RunConfig, TrainConfig
from sacnn_lab.data import batch_to_dict
from sacnn_lab.inference import predict
from sacnn_lab.model import normalise_input
from sacnn_lab.trainer import Trainer

TINY = 0.0625  # 4…32 channels: seconds on a CPU


@pytest.fixture(scope="module")
def model() -> VGGBaseline:
    torch.manual_seed(0)
    return VGGBaseline(BaselineConfig(width=TINY)).eval()


@pytest.fixture(scope="module")
def images(generator) -> np.ndarray:
    return generator.generate(0, np.arange(4)).images


def _hooks(module: torch.nn.Module) -> int:
    return sum(len(m._forward_hooks) + len(m._forward_pre_hooks) + len(m._backward_hooks)
               for m in module.modules())


def test_torchvision_layout_and_shapes(model):
    with torch.device("meta"):  # torchvision's own VGG19, without allocating its weights
        reference = torchvision.models.vgg19()
    assert list(model.state_dict()) == list(reference.state_dict())  # the same layers, the same names
    convs = [m for m in model.features if isinstance(m, torch.nn.Conv2d)]
    assert len(convs) == 16 and convs[0].in_channels == 1  # VGG19: 16 convolutions, gray input
    assert [c.out_channels for c in convs[::4]] == [4, 16, 32, 32]
    assert model(torch.rand(2, 1, 136, 136)).shape == (2, 2)
    assert model(torch.rand(1, 1, 512, 512)).shape == (1, 2)  # the textile size
    with pytest.raises(ValueError, match=r"\(B, 1, H, W\)"):
        model(torch.rand(1, 3, 136, 136))
    with pytest.raises(ValueError, match="32"):
        model(torch.rand(1, 1, 16, 16))


def test_trains_one_step_and_yields_a_map_at_input_resolution(generator):
    torch.manual_seed(0)
    net = VGGBaseline(BaselineConfig(arch="vgg19_bn", width=TINY))
    batch = batch_to_dict(generator.generate(1, np.arange(8)))

    class OneBatch:
        steps_per_epoch = 1

        def loader(self, epoch):
            return iter([batch])

    before = [p.detach().clone() for p in net.parameters()]
    trainer = Trainer(net, TrainConfig(epochs=1, optimizer="adam", lr=1e-3, reduction="mean", device="cpu"),
                      OneBatch())
    trainer.fit()
    rec = trainer.history.epochs[0]
    assert np.isfinite(rec["train_loss"]) and rec["samples"] == 8
    assert any(not torch.equal(a, b) for a, b in zip(before, net.parameters()))
    p = predict(net, generator.generate(2, np.arange(3)).images)
    assert p.map.shape == (3, 136, 136) and p.score.shape == (3,) and p.feature_map.shape == (3, 4, 4)
    assert float(p.map.min()) >= 0 and float(p.map.max()) <= 1
    assert ((p.score >= 0) & (p.score <= 1)).all()


def test_score_is_the_defective_probability_of_the_same_forward(model, images):
    p = predict(model, images)
    x = torch.from_numpy(images).float()[:, None] / 255
    with torch.no_grad():
        expected = torch.softmax(model(x), 1)[:, 1]
    torch.testing.assert_close(p.score, expected)


def test_hooks_are_released_and_state_restored(model, images):
    model.train()
    net = model
    for p in net.parameters():
        p.grad = None
    assert _hooks(net) == 0
    predict(net, images, batch_size=2)
    layer = net.target_module()
    assert layer is net.features[-1]
    assert not layer._forward_hooks and not layer._backward_hooks
    assert _hooks(net) == 0  # no hook anywhere in the model
    assert net.training  # mode restored
    assert all(p.grad is None for p in net.parameters())  # the CAM's backward left no gradients
    net.eval()


def test_maps_under_no_grad_and_inference_mode(model, images):
    with torch.no_grad():
        a = predict(model, images[:2])
    with torch.inference_mode():
        b = predict(model, images[:2])
    torch.testing.assert_close(a.map, b.map)


@pytest.mark.parametrize("cam", ["gradcam++", "layercam", "eigencam", "hirescam"])
def test_other_cam_methods_by_name(images, cam):
    torch.manual_seed(0)
    net = VGGBaseline(BaselineConfig(width=TINY, cam=cam, target_layer="features.34"))
    p = predict(net, images[:2])
    assert p.map.shape == (2, 136, 136) and p.feature_map.shape == (2, 8, 8)  # features.34: before pool 5
    assert _hooks(net) == 0


def test_cam_names_and_layers_are_checked():
    assert "gradcam" in CAM_METHODS
    with pytest.raises(ValueError, match="cam must be one of"):
        BaselineConfig(cam="bestcam")
    net = VGGBaseline(BaselineConfig(width=TINY, target_layer="features.99"))
    with pytest.raises(ValueError, match="no layer 'features.99'"):
        net.target_module()


def test_bad_configs_are_clear_errors():
    for bad, err in ((dict(width=0), ValueError), (dict(width=1.5), ValueError), (dict(arch="resnet"), ValueError),
                     (dict(width=0.5, weights="imagenet"), ValueError), (dict(width="wide"), TypeError),
                     (dict(dropout=1.0), ValueError), (dict(input_norm="centre"), ValueError)):
        with pytest.raises(err):
            BaselineConfig(**bad)
    with pytest.raises(TypeError, match="BaselineConfig"):
        VGGBaseline(RunConfig.preset("fast").model)


def test_missing_imagenet_weights_warn_once_and_train_from_scratch(monkeypatch, tmp_path):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    monkeypatch.setattr(torch.hub, "_hub_dir", None)
    path = imagenet_weights_path("vgg19")
    assert path == tmp_path / "hub" / "checkpoints" / "vgg19-dcbb9e9d.pth" and not path.exists()
    cfg = BaselineConfig(weights="imagenet")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        net = VGGBaseline(cfg)
        VGGBaseline(cfg)  # once per missing file, not per model
    msgs = [str(w.message) for w in caught if issubclass(w.category, UserWarning)]
    assert len(msgs) == 1 and "not found" in msgs[0] and "from scratch" in msgs[0] and str(path) in msgs[0]
    assert net.weights_file is None
    assert net.classifier[-1].out_features == 2 and net.features[0].in_channels == 1
    assert not list(tmp_path.rglob("*.pth"))  # nothing was downloaded


def test_weights_from_a_file(tmp_path):
    with pytest.raises(FileNotFoundError, match="not found"):
        VGGBaseline(BaselineConfig(weights=str(tmp_path / "none.pth")))
    bad = tmp_path / "bad.pth"
    torch.save({"x": torch.zeros(1)}, bad)
    with pytest.raises(ValueError, match="not a state dict of torchvision's vgg19"):
        VGGBaseline(BaselineConfig(weights=str(bad)))


def test_abs_deviation_input_is_the_one_sacnn_sees(images):
    """With ``input_norm="abs_deviation"`` the baseline's features see ``normalise_input(x)``, so an
    inverted image scores the same; the CPU character preset uses it, like SACNN's ``fast`` preset."""
    net = VGGBaseline(BaselineConfig(width=TINY, input_norm="abs_deviation")).eval()
    x = torch.from_numpy(images[:2]).float()[:, None] / 255
    with torch.no_grad():
        torch.testing.assert_close(net(1 - x), net(x))
        expected = net.classifier(torch.flatten(net.avgpool(net.features(normalise_input(x, "abs_deviation"))), 1))
        torch.testing.assert_close(net(x), expected)
    assert RunConfig.baseline("cpu").model.input_norm == RunConfig.preset("fast").model.input_norm
    assert RunConfig.baseline("full").model.input_norm == "imagenet"  # what ImageNet weights expect


def test_baseline_run_config_round_trip():
    cfg = RunConfig.baseline("cpu")
    assert cfg.is_baseline and not RunConfig.preset("fast").is_baseline
    assert RunConfig.from_dict(cfg.to_dict()).to_dict() == cfg.to_dict()
    assert "reduced" in cfg.model.name and RunConfig.baseline("full").model.name == "VGG19"
    with pytest.raises(ValueError, match="baseline preset"):
        RunConfig.baseline("huge")
