"""SparK: sparse masked encoding, masked-BN statistics, masked-patch loss, weight sharing, shapes."""

import copy

import pytest
import torch
from monai.networks.nets import ResNet

from medssl.errors import MedsslError
from medssl.methods.base import Pretrainer
from medssl.methods.generative.spark import SparK, masked_patch_loss
from medssl.models.decoder import PyramidDecoder
from medssl.models.encoder import BackboneSpec, Encoder
from medssl.models.sparse import SparseBatchNorm, SparseEncoder, SparseOp, random_visible_mask, upsample_mask

SIZE = {2: 28, 3: 14}


def _setup(spatial_dims: int, batch: int = 4, name: str = "resnet18") -> tuple[Encoder, SparseEncoder, torch.Tensor,
                                                                                 torch.Tensor]:
    torch.manual_seed(0)
    encoder = Encoder(BackboneSpec(name, spatial_dims, 1, width=0.125))
    sparse = SparseEncoder(encoder)
    x = torch.rand(batch, 1, *([SIZE[spatial_dims]] * spatial_dims))
    visible = random_visible_mask(batch, sparse.coarse_size(x.shape[2:]), 0.6)
    return encoder, sparse, x, visible


@pytest.mark.parametrize("spatial_dims", [2, 3])
def test_spark_masked_pixels_do_not_change_visible_features(spatial_dims):
    encoder, sparse, x, visible = _setup(spatial_dims)
    hidden = ~upsample_mask(visible, x.shape[2:])
    changed = torch.where(hidden, 1e4 * torch.randn_like(x), x)
    changed[hidden.nonzero()[0].unbind()] = float("nan")
    other = copy.deepcopy(encoder)

    outputs = []  # every conv / pool / norm output inside the encoder must be zero where masked
    for module in sparse.net.modules():
        if isinstance(module, SparseOp | SparseBatchNorm):
            module.register_forward_hook(lambda m, i, out: outputs.append(out))
    before = sparse.pyramid(x, visible)
    after = SparseEncoder(other).pyramid(changed, visible)
    assert len(outputs) > 20
    for out in outputs:
        assert (out.masked_select(~upsample_mask(visible, out.shape[2:])) == 0).all()
    for level_before, level_after in zip(before, after, strict=True):
        assert torch.equal(level_before, level_after)
        assert level_before.masked_select(upsample_mask(visible, level_before.shape[2:])).abs().sum() > 0
    for (key, a), b in zip(encoder.net.state_dict().items(), other.net.state_dict().values(), strict=True):
        assert torch.equal(a, b), key  # running statistics too
    # Not vacuous: a visible pixel does change the coarsest features.
    nudged = x.clone()
    nudged[~hidden] += 0.5
    assert not torch.equal(sparse.pyramid(nudged, visible)[-1], before[-1])


@pytest.mark.parametrize("spatial_dims", [2, 3])
def test_spark_batchnorm_statistics_ignore_masked_positions(spatial_dims):
    encoder, sparse, x, visible = _setup(spatial_dims)
    x = torch.where(upsample_mask(visible, x.shape[2:]), x, 1e6)
    inputs = {}
    norms = [m for m in sparse.net.modules() if isinstance(m, SparseBatchNorm)]
    for norm in norms:
        norm.register_forward_pre_hook(lambda m, args: inputs.__setitem__(m, args[0].detach()))
    sparse.pyramid(x, visible)
    assert len(inputs) == len(norms) == sum(isinstance(m, torch.nn.BatchNorm2d | torch.nn.BatchNorm3d)
                                            for m in encoder.modules())
    for norm, features in inputs.items():
        shown = upsample_mask(visible, features.shape[2:]).squeeze(1)
        tokens = features.movedim(1, -1)[shown]
        bn = norm.module
        assert torch.allclose(bn.running_mean, 0.1 * tokens.mean(0), rtol=1e-4, atol=1e-6)
        assert torch.allclose(bn.running_var, 0.9 + 0.1 * tokens.var(0), rtol=1e-4, atol=1e-6)
    stem = norms[0]
    all_positions = inputs[stem].transpose(0, 1).flatten(1).mean(1)
    assert not torch.allclose(stem.module.running_mean, 0.1 * all_positions, rtol=1e-2)


@pytest.mark.parametrize(("spatial_dims", "ratio", "kept"), [(2, 0.6, 6), (2, 0.75, 4), (3, 0.6, 3)])
def test_spark_honours_the_mask_ratio_at_the_coarsest_level(spatial_dims, ratio, kept):
    encoder, _, x, _ = _setup(spatial_dims, batch=16, name="resnet10")
    _, visible, pyramid = SparK(encoder, mask_ratio=ratio).reconstruct(encoder, x)
    assert visible.shape[2:] == pyramid[-1].shape[2:]
    assert (visible.flatten(1).sum(1) == kept).all()
    with pytest.raises(MedsslError, match="mask_ratio"):
        SparK(encoder, mask_ratio=1.0)


def test_spark_loss_counts_only_masked_patches_of_per_patch_normalised_pixels():
    torch.manual_seed(0)
    x = torch.rand(3, 2, 28, 28)
    visible = random_visible_mask(3, (4, 4), 0.6)
    prediction = torch.randn_like(x)
    loss = masked_patch_loss(prediction, x, visible)
    shown = upsample_mask(visible, (28, 28))
    assert masked_patch_loss(torch.where(shown, 100.0, prediction), x, visible) == loss
    assert masked_patch_loss(torch.where(shown, prediction, 0.0), x, visible) != loss

    expected, masked = 0.0, 0  # reference: loop over the 8-px patches, cropped to 4 px at the border
    for b in range(3):
        for i in range(4):
            for j in range(4):
                if visible[b, 0, i, j]:
                    continue
                window = (b, slice(None), slice(8 * i, 8 * i + 8), slice(8 * j, 8 * j + 8))
                target = x[window]
                target = (target - target.mean()) / (target.var(unbiased=False) + 1e-6).sqrt()
                expected += ((prediction[window] - target) ** 2).mean()
                masked += 1
    assert loss.item() == pytest.approx(expected.item() / masked, rel=1e-5)


def test_training_the_sparse_view_trains_the_plain_monai_encoder():
    encoder, _, x, _ = _setup(2, name="resnet10")
    task = SparK(encoder)
    encoder_params = {id(p) for p in encoder.parameters()}
    assert not encoder_params & {id(p) for p in task.parameters()}  # registered once, in the encoder only
    assert all(key.startswith(("decoder.", "mask_tokens.")) for key in task.state_dict())
    before = {k: v.clone() for k, v in encoder.net.state_dict().items()}
    optimizer = torch.optim.SGD([*encoder.parameters(), *task.parameters()], lr=0.1)
    task(encoder, x).loss.backward()
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in encoder.parameters())
    optimizer.step()
    after = encoder.net.state_dict()
    assert not torch.equal(before["conv1.weight"], after["conv1.weight"])
    assert not torch.equal(before["layer4.0.bn2.running_mean"], after["layer4.0.bn2.running_mean"])
    assert type(encoder.net) is ResNet and not any(isinstance(m, SparseOp) for m in encoder.modules())
    plain = ResNet(**encoder.spec.monai_kwargs())
    plain.load_state_dict(encoder.export_state())

    clone, fresh = copy.deepcopy(task), Encoder(encoder.spec)  # a copy rebuilds its view for the encoder given
    clone(fresh, x).loss.backward()
    assert fresh.net.conv1.weight.grad is not None
    width = encoder.pyramid_channels[1]
    swapped = encoder.net.layer1[0].bn1 = torch.nn.BatchNorm2d(width)
    task(encoder, x)  # so does a view of an encoder whose modules were replaced (e.g. SyncBatchNorm conversion)
    assert not torch.equal(swapped.running_mean, torch.zeros(width))


@pytest.mark.parametrize(("spatial_dims", "size", "channels", "small_stem"),
                         [(2, 28, 1, True), (2, 32, 2, True), (2, 64, 1, False), (3, 14, 1, True), (3, 16, 2, True)])
def test_spark_decoder_reconstructs_at_input_shape(spatial_dims, size, channels, small_stem):
    torch.manual_seed(0)
    encoder = Encoder(BackboneSpec("resnet10", spatial_dims, channels, width=0.125, small_stem=small_stem))
    task = SparK(encoder, decoder_width=0.25)
    x = torch.rand(2, channels, *([size] * spatial_dims))
    prediction, _, _ = task.reconstruct(encoder, x)
    assert prediction.shape == x.shape
    out = task(encoder, x)
    assert out.loss.ndim == 0 and torch.isfinite(out.loss)
    assert out.features.shape == (2, encoder.feature_dim)
    assert isinstance(task.decoder, PyramidDecoder)
    assert Pretrainer(encoder, [task], [1.0], num_classes=2).decoder() is task.decoder
