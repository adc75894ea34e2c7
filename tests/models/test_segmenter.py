"""The segmenter's shapes in 2D/3D, and decoder transfer: exact weights, or one clear error."""

import pytest
import torch

from medssl.errors import MedsslError
from medssl.models.encoder import BackboneSpec, Encoder
from medssl.models.segmenter import Segmenter
from medssl.runio import save_state


@pytest.mark.parametrize(("dims", "shape"), [(2, (20, 28)), (3, (12, 16, 8))])
def test_logits_have_the_input_resolution(dims, shape):
    model = Segmenter(Encoder(BackboneSpec("resnet10", dims, 2, 0.125)))
    assert model(torch.rand(2, 2, *shape)).shape == (2, 1, *shape)


def test_decoder_weights_load_exactly_except_the_output_conv(tmp_path):
    spec = BackboneSpec("resnet10", 2, 1, 0.125)
    source = Segmenter(Encoder(spec), out_channels=1)
    torch.nn.init.normal_(source.decoder.blocks[0].conv.weight)
    save_state(tmp_path / "decoder.pt", source.decoder.state_dict())
    target = Segmenter(Encoder(spec))
    head_before = target.decoder.head.weight.clone()
    loaded = target.load_pretrained_decoder(tmp_path)
    assert loaded and not any(k.startswith("head.") for k in loaded)
    for key, value in source.decoder.state_dict().items():
        if not key.startswith("head."):
            assert torch.equal(target.decoder.state_dict()[key], value), key
    assert torch.equal(target.decoder.head.weight, head_before)


def test_missing_or_mismatched_decoder_is_one_clear_error(tmp_path):
    target = Segmenter(Encoder(BackboneSpec("resnet10", 2, 1, 0.125)))
    with pytest.raises(MedsslError, match=r"no decoder\.pt"):
        target.load_pretrained_decoder(tmp_path)
    other = Segmenter(Encoder(BackboneSpec("resnet10", 2, 1, 0.25)))
    save_state(tmp_path / "decoder.pt", other.decoder.state_dict())
    with pytest.raises(MedsslError, match="does not fit this decoder"):
        target.load_pretrained_decoder(tmp_path)
