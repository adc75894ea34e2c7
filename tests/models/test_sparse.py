"""Sparse views of MONAI ResNet encoders (SparK's sparse convolution emulated with masks)."""

import pytest
import torch
from monai.networks.nets import ResNet
from torch import nn

from medssl.errors import MedsslError
from medssl.models.encoder import BackboneSpec, Encoder
from medssl.models.sparse import (
    MaskContext,
    SparseBatchNorm,
    SparseEncoder,
    SparseOp,
    random_visible_mask,
    sparse_view,
    upsample_mask,
)


@pytest.mark.parametrize(("size", "small_stem"), [(28, True), (14, True), (30, True), (64, False), (45, False)])
def test_upsample_mask_reaches_every_pyramid_level_with_the_true_stride(size, small_stem):
    encoder = Encoder(BackboneSpec("resnet10", 2, 1, width=0.125, small_stem=small_stem))
    sparse = SparseEncoder(encoder)
    coarse = sparse.coarse_size((size, size))
    with torch.no_grad():
        sizes = [f.shape[2] for f in encoder.eval().pyramid(torch.zeros(1, 1, size, size))]
    assert coarse == (sizes[-1], sizes[-1])
    cells = torch.arange(coarse[0] * coarse[1]).reshape(1, 1, *coarse)
    for n in {size, *sizes}:
        up = upsample_mask(cells, (n, n))
        stride = 1
        while coarse[0] * stride < n:
            stride *= 2
        rows = torch.arange(n) // stride
        assert torch.equal(up[0, 0], rows[:, None] * coarse[1] + rows[None, :])
    assert torch.equal(upsample_mask(cells, coarse), cells)


def test_28px_input_masks_4x4_cells_of_8px_cropped_at_the_border():
    visible = torch.zeros(1, 1, 4, 4, dtype=torch.bool)
    visible[0, 0, 3, 3] = True
    up = upsample_mask(visible, (28, 28))
    assert up.shape == (1, 1, 28, 28)
    assert up.sum() == 4 * 4 and up[0, 0, 24:, 24:].all()


@pytest.mark.parametrize("spatial_dims", [2, 3])
def test_all_visible_sparse_forward_equals_the_dense_encoder(spatial_dims):
    torch.manual_seed(0)
    encoder = Encoder(BackboneSpec("resnet18", spatial_dims, 1, width=0.125))
    sparse = SparseEncoder(encoder)
    x = torch.rand(3, 1, *([16] * spatial_dims))
    everything = torch.ones(3, 1, *sparse.coarse_size(x.shape[2:]), dtype=torch.bool)
    for mode in (True, False):
        encoder.train(mode)
        for dense, masked in zip(encoder.pyramid(x), sparse.pyramid(x, everything), strict=True):
            assert torch.allclose(dense, masked, rtol=1e-3, atol=1e-4)  # batch stats summed in another order


def test_the_view_shares_every_parameter_and_buffer_and_leaves_the_encoder_plain():
    encoder = Encoder(BackboneSpec("resnet18", 2, 1, width=0.125))
    sparse = SparseEncoder(encoder)
    view_tensors = {id(t) for t in [*sparse.net.parameters(), *sparse.net.buffers()]}
    assert view_tensors == {id(t) for t in [*encoder.net.parameters(), *encoder.net.buffers()]}
    assert type(encoder.net) is ResNet
    assert not any(isinstance(m, SparseOp | SparseBatchNorm) for m in encoder.modules())
    wrapped = [m for m in sparse.net.modules() if isinstance(m, SparseOp | SparseBatchNorm)]
    convs_and_norms = [m for m in encoder.net.modules() if isinstance(m, nn.Conv2d | nn.BatchNorm2d | nn.MaxPool2d)]
    convs_and_norms.append(encoder.net.avgpool)
    assert {id(m.module) for m in wrapped} == {id(m) for m in convs_and_norms}


def test_sparse_batchnorm_normalises_with_visible_statistics_and_running_stats_in_eval():
    torch.manual_seed(0)
    context, bn = MaskContext(), nn.BatchNorm2d(3)
    sparse_bn = SparseBatchNorm(bn, context)
    visible = torch.rand(4, 1, 2, 2) < 0.5
    visible[0, 0, 0, 0] = True
    x = torch.randn(4, 3, 8, 8) * 3 + 1
    shown = upsample_mask(visible, (8, 8))
    x_dirty = x.masked_fill(~shown, 1e6)
    tokens = x.movedim(1, -1)[shown.squeeze(1)]
    with context.use(visible):
        out = sparse_bn(x_dirty)
    expected = (tokens - tokens.mean(0)) / (tokens.var(0, unbiased=False) + bn.eps).sqrt()
    assert torch.allclose(out.movedim(1, -1)[shown.squeeze(1)], expected, atol=1e-5)
    assert (out.masked_select(~shown) == 0).all()
    assert torch.allclose(bn.running_mean, 0.1 * tokens.mean(0), atol=1e-6)
    assert bn.num_batches_tracked.item() == 1
    bn.eval()
    with context.use(visible):
        out = sparse_bn(x_dirty)
    expected = (tokens - bn.running_mean) / (bn.running_var + bn.eps).sqrt()
    assert torch.allclose(out.movedim(1, -1)[shown.squeeze(1)], expected, atol=1e-5)


def test_sparse_modules_refuse_to_run_without_a_mask_and_contexts_do_not_nest():
    context = MaskContext()
    op = SparseOp(nn.Conv2d(1, 1, 3, padding=1), context)
    with pytest.raises(RuntimeError, match="outside"):
        op(torch.zeros(1, 1, 4, 4))
    with context.use(torch.ones(1, 1, 1, 1)), pytest.raises(RuntimeError, match="nested"), context.use(
        torch.ones(1, 1, 1, 1)
    ):
        pass
    with pytest.raises(NotImplementedError, match="GroupNorm"):
        sparse_view(nn.Sequential(nn.Conv2d(1, 4, 3), nn.GroupNorm(2, 4)), context)


@pytest.mark.parametrize(("size", "ratio", "kept"), [((4, 4), 0.6, 6), ((2, 2, 2), 0.6, 3), ((4, 4), 0.75, 4),
                                                     ((2, 2), 0.99, 1), ((2, 2), 0.01, 3)])
def test_random_visible_mask_keeps_the_same_number_of_cells_in_every_sample(size, ratio, kept):
    torch.manual_seed(0)
    visible = random_visible_mask(64, size, ratio)
    assert visible.shape == (64, 1, *size) and visible.dtype == torch.bool
    assert (visible.flatten(1).sum(1) == kept).all()
    assert len({tuple(v.flatten().tolist()) for v in visible}) > 1  # drawn per sample


def test_a_single_coarse_cell_cannot_be_masked():
    with pytest.raises(MedsslError, match="cannot be masked"):
        random_visible_mask(2, (1, 1), 0.6)
