"""Baseline initialisations from locally built weight files in torchvision's and MedicalNet's formats: every
tensor lands, and the converted encoder computes what the source network computes."""

from __future__ import annotations

import pytest
import torch
import torchvision
from monai.networks.nets import ResNet
from monai.networks.nets.resnet import get_medicalnet_pretrained_resnet_args

from medssl.errors import MedsslError
from medssl.models.init import adapt_first_conv, init_backbone, init_scheme, load_init


@pytest.fixture(scope="module")
def imagenet_file(tmp_path_factory):
    torch.manual_seed(0)
    model = torchvision.models.resnet18(weights=None)
    # non-trivial BatchNorm statistics, so that a mis-mapped running_mean/var would show
    for module in model.modules():
        if isinstance(module, torch.nn.BatchNorm2d):
            module.running_mean.uniform_(-0.1, 0.1)
            module.running_var.uniform_(0.5, 1.5)
    path = tmp_path_factory.mktemp("w") / "resnet18.pth"
    torch.save(model.state_dict(), path)
    return path, model


def test_imagenet_weights_give_torchvisions_features_for_a_grey_image(imagenet_file):
    path, model = imagenet_file
    encoder = load_init(f"imagenet:{path}", spatial_dims=2, channels=1).eval()
    assert encoder.spec.name == "resnet18" and not encoder.spec.small_stem and encoder.spec.width == 1.0
    model.fc = torch.nn.Identity()
    x = torch.rand(2, 1, 32, 32)
    with torch.no_grad():
        # a grey image is an RGB image with three equal channels; summing conv1 over RGB gives the same response
        assert torch.allclose(encoder(x), model.eval()(x.repeat(1, 3, 1, 1)), atol=1e-4)


def test_every_imagenet_tensor_lands(imagenet_file):
    path, _ = imagenet_file
    source = {k: v for k, v in torch.load(path, weights_only=True).items() if not k.startswith("fc.")}
    state = load_init(f"imagenet:{path}", 2, 1).export_state()
    assert set(state) == set(source)
    assert all(torch.equal(state[k], v) for k, v in source.items() if k != "conv1.weight")
    assert torch.allclose(state["conv1.weight"], source["conv1.weight"].sum(1, keepdim=True))


def test_first_conv_adapts_to_any_channel_count():
    weight = torch.randn(4, 3, 3, 3)
    assert adapt_first_conv(weight, 3) is weight
    two = adapt_first_conv(weight, 2)
    assert two.shape == (4, 2, 3, 3) and torch.allclose(two.sum(1), weight.sum(1), atol=1e-6)


@pytest.mark.parametrize("depth", [10, 18])
def test_medicalnet_checkpoints_load_through_monais_arguments(tmp_path, depth):
    torch.manual_seed(0)
    bias, shortcut = get_medicalnet_pretrained_resnet_args(depth)
    layers = [1, 1, 1, 1] if depth == 10 else [2, 2, 2, 2]
    # MedicalNet's network: a 7^3 stride-2 stem and max-pool
    net = ResNet("basic", layers, [64, 128, 256, 512], spatial_dims=3, n_input_channels=1, conv1_t_stride=2,
                 shortcut_type=shortcut, bias_downsample=bias, feed_forward=False)
    # MedicalNet's format: DataParallel 'module.' prefixes under 'state_dict', a segmentation head beside
    state = {f"module.{k}": v for k, v in net.state_dict().items()}
    state["module.conv_seg.0.weight"] = torch.zeros(2, 512, 1, 1, 1)
    path = tmp_path / f"resnet_{depth}.pth"
    torch.save({"state_dict": state}, path)
    encoder = load_init(f"medicalnet:{path}", spatial_dims=3, channels=1).eval()
    assert encoder.spec.name == f"resnet{depth}" and encoder.spec.shortcut_type == shortcut
    x = torch.rand(2, 1, 16, 16, 16)
    with torch.no_grad():
        assert torch.allclose(encoder(x), net.eval()(x), atol=1e-4)
    assert init_backbone(f"medicalnet:{path}") == (f"resnet{depth}", 1.0)


def test_bad_initialisations_are_one_line_errors(imagenet_file, tmp_path):
    path, _ = imagenet_file
    with pytest.raises(MedsslError, match="ImageNet weights are 2D but the data is 3D"):
        load_init(f"imagenet:{path}", 3, 1)
    with pytest.raises(MedsslError, match="weights file not found"):
        load_init(f"imagenet:{tmp_path / 'none.pth'}", 2, 1)
    partial = {k: v for k, v in torch.load(path, weights_only=True).items() if not k.startswith("layer4.1.bn2")}
    torch.save(partial, tmp_path / "partial.pth")
    with pytest.raises(MedsslError, match=r"do not fit a MONAI resnet18 \(5 missing"):
        load_init(f"imagenet:{tmp_path / 'partial.pth'}", 2, 1)
    (tmp_path / "junk.pth").write_bytes(b"junk")
    with pytest.raises(MedsslError, match="not a readable imagenet weights file"):
        load_init(f"imagenet:{tmp_path / 'junk.pth'}", 2, 1)
    assert init_scheme("imagenet:x") == "imagenet" and init_scheme("runs/simclr") is None
    assert init_scheme("scratch") is None
