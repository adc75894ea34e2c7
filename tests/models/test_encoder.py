import pytest
import torch
from monai.networks.nets import ResNet

from medssl.errors import MedsslError
from medssl.models.decoder import PyramidDecoder
from medssl.models.encoder import BackboneSpec, Encoder


@pytest.mark.parametrize("spatial_dims", [2, 3])
@pytest.mark.parametrize("name", ["resnet10", "resnet18", "resnet50"])
def test_encoder_pyramid_halves_resolution_per_stage(name, spatial_dims):
    encoder = Encoder(BackboneSpec(name, spatial_dims, in_channels=1, width=0.125))
    x = torch.randn(2, 1, *([16] * spatial_dims))
    pyramid = encoder.pyramid(x)
    assert [f.shape[1] for f in pyramid] == encoder.pyramid_channels
    assert [f.shape[2] for f in pyramid] == [16, 16, 8, 4, 2]
    assert encoder(x).shape == (2, encoder.feature_dim)


@pytest.mark.parametrize("spatial_dims", [2, 3])
def test_exported_encoder_loads_into_plain_monai_resnet_and_gives_same_features(spatial_dims):
    spec = BackboneSpec("resnet18", spatial_dims, in_channels=2, width=0.25)
    encoder = Encoder(spec).eval()
    plain = ResNet(**spec.monai_kwargs()).eval()
    plain.load_state_dict(encoder.export_state())
    x = torch.randn(2, 2, *([12] * spatial_dims))
    assert torch.allclose(plain(x), encoder(x), atol=1e-6)


def test_weights_of_another_backbone_are_rejected_with_a_clear_error():
    small = Encoder(BackboneSpec("resnet10", 2, 1, 0.25))
    with pytest.raises(MedsslError, match="do not fit backbone resnet18"):
        Encoder(BackboneSpec("resnet18", 2, 1, 0.25)).load_exported(small.export_state())


@pytest.mark.parametrize(("kwargs", "match"), [
    ({"name": "vgg"}, "unknown backbone 'vgg'"), ({"spatial_dims": 1}, "spatial_dims"), ({"width": 0}, "width"),
])
def test_bad_backbone_specs_are_rejected(kwargs, match):
    with pytest.raises(MedsslError, match=match):
        BackboneSpec(**kwargs)


@pytest.mark.parametrize("spatial_dims", [2, 3])
def test_decoder_restores_input_resolution_even_for_odd_sizes(spatial_dims):
    encoder = Encoder(BackboneSpec("resnet10", spatial_dims, 1, 0.125))
    decoder = PyramidDecoder(encoder.pyramid_channels, spatial_dims, out_channels=1)
    x = torch.randn(2, 1, *([13] * spatial_dims))
    assert decoder(encoder.pyramid(x)).shape == x.shape
