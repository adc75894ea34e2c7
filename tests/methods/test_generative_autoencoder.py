"""Plain and denoising autoencoders: corruption, reconstruction shapes, clean targets, saved decoder."""

import pytest
import torch
import torch.nn.functional as F

from medssl.errors import MedsslError
from medssl.methods.base import Pretrainer
from medssl.methods.generative.autoencoder import Autoencoder, DenoisingAutoencoder, noise_and_drop
from medssl.methods.registry import parse_method
from medssl.models.decoder import PyramidDecoder
from medssl.models.encoder import BackboneSpec, Encoder


def test_noise_and_drop_corrupts_within_the_unit_range():
    torch.manual_seed(0)
    x = torch.rand(8, 2, 32, 32)
    corrupted = noise_and_drop(x, noise_std=0.1, drop_fraction=0.25)
    assert corrupted.min() >= 0 and corrupted.max() <= 1
    zeroed = (corrupted == 0).all(dim=1)  # a dropped pixel loses all its channels
    assert zeroed.float().mean().item() == pytest.approx(0.25, abs=0.03)
    kept = ~zeroed & (x > 0.2).all(1) & (x < 0.8).all(1)
    residual = (corrupted - x).movedim(1, -1)[kept]
    assert residual.std().item() == pytest.approx(0.1, rel=0.1)
    assert torch.equal(noise_and_drop(x, 0.0, 0.0), x)


@pytest.mark.parametrize("method", ["autoencoder", "denoising_autoencoder"])
@pytest.mark.parametrize(("spatial_dims", "size", "channels"), [(2, 28, 1), (3, 14, 2)])
def test_autoencoders_reconstruct_the_clean_input_through_a_saved_decoder(method, spatial_dims, size, channels):
    torch.manual_seed(0)
    [(cls, _)] = parse_method(method)
    encoder = Encoder(BackboneSpec("resnet10", spatial_dims, channels, width=0.125))
    task = cls(encoder).eval()
    encoder.eval()
    x = torch.rand(2, channels, *([size] * spatial_dims))
    torch.manual_seed(1)
    out = task(encoder, x)
    torch.manual_seed(1)
    restored = torch.sigmoid(task.decoder(encoder.pyramid(task.corrupt(x)), output_size=x.shape[2:]))
    assert restored.shape == x.shape
    assert out.loss.item() == pytest.approx(F.mse_loss(restored, x).item(), rel=1e-5)  # target: the clean x
    assert out.features.shape == (2, encoder.feature_dim)
    assert isinstance(task.decoder, PyramidDecoder)
    assert Pretrainer(encoder, [task], [1.0], num_classes=2).decoder() is task.decoder


def test_only_the_denoising_autoencoder_corrupts_its_input():
    encoder = Encoder(BackboneSpec("resnet10", 2, 1, width=0.125))
    x = torch.rand(2, 1, 16, 16)
    assert torch.equal(Autoencoder(encoder).corrupt(x), x)
    assert not torch.equal(DenoisingAutoencoder(encoder).corrupt(x), x)
    with pytest.raises(MedsslError, match="drop_fraction"):
        DenoisingAutoencoder(encoder, drop_fraction=1.0)
