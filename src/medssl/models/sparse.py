"""Sparse (masked) execution of a dense MONAI ResNet encoder, as in SparK (Tian et al., ICLR 2023).

A *sparse view* of an encoder is a shallow copy of ``encoder.net`` whose every convolution, pooling
and batch-norm is wrapped so that (a) positions outside the visible mask are zero after it and (b)
batch-norm statistics come from visible positions only. The wrappers hold the original modules, so
the view shares every parameter and buffer with the encoder: training the view trains the encoder,
and the encoder stays a plain MONAI ResNet. The mask is read from an explicit ``MaskContext`` that
is set for the duration of one forward; there is no global state and no MONAI class is patched.

Masks are given at the coarsest (last-stage) resolution as (B, 1, *coarse) bools, True = visible.
Every ResNet downsampling halves a size with ceil (k3/s2/p1 conv, k7/s2/p3 stem, k3/s2/p1 pool), so
a level of size n lies under coarse cells of 2^k positions each, cropped to n (``upsample_mask``).
"""

from __future__ import annotations

import copy
import math
from collections.abc import Iterator, Sequence
from contextlib import contextmanager

import torch
from torch import Tensor, nn
from torch.nn.modules.batchnorm import _BatchNorm
from torch.nn.modules.conv import _ConvNd
from torch.nn.modules.pooling import _AdaptiveAvgPoolNd, _AdaptiveMaxPoolNd, _AvgPoolNd, _MaxPoolNd

from medssl.errors import MedsslError
from medssl.models.encoder import Encoder

_POOLS = (_MaxPoolNd, _AvgPoolNd, _AdaptiveAvgPoolNd, _AdaptiveMaxPoolNd)
# Norms whose statistics would silently include masked positions; only batch-norm has a sparse version.
_UNSUPPORTED_NORMS = (nn.GroupNorm, nn.LayerNorm, nn.modules.instancenorm._InstanceNorm, nn.LocalResponseNorm)


def upsample_mask(mask: Tensor, size: Sequence[int]) -> Tensor:
    """Nearest upsampling of a (B, 1, *coarse) mask to ``size``: repeat each cell 2^k times, then crop.

    2^k is the smallest power of two covering the size, which is the true stride between the two
    resolutions of a network that halves sizes with ceil (``upsample_mask(m, m.shape[2:])`` equals ``m``).
    """
    for axis, (coarse, n) in enumerate(zip(mask.shape[2:], size, strict=True), start=2):
        factor = 1
        while coarse * factor < n:
            factor *= 2
        if factor > 1:
            mask = mask.repeat_interleave(factor, dim=axis)
        mask = mask.narrow(axis, 0, n)
    return mask


class MaskContext:
    """The visible mask of the forward pass in progress; wrappers read it at their output's resolution."""

    def __init__(self) -> None:
        self._mask: Tensor | None = None
        self._cache: dict[tuple[int, ...], Tensor] = {}

    @contextmanager
    def use(self, visible: Tensor) -> Iterator[None]:
        """Make ``visible`` (B, 1, *coarse) bool the active mask for the enclosed forward."""
        if self._mask is not None:
            raise RuntimeError("a mask is already active in this context (nested sparse forwards)")
        self._mask, self._cache = visible.bool(), {}
        try:
            yield
        finally:
            self._mask, self._cache = None, {}

    def at(self, size: Sequence[int]) -> Tensor:
        """The active mask at spatial ``size``, (B, 1, *size) bool."""
        if self._mask is None:
            raise RuntimeError("sparse module called outside MaskContext.use(mask)")
        key = tuple(size)
        if key not in self._cache:
            self._cache[key] = upsample_mask(self._mask, key)
        return self._cache[key]


class SparseOp(nn.Module):
    """A convolution or pooling whose output is zeroed at masked positions."""

    def __init__(self, module: nn.Module, context: MaskContext) -> None:
        super().__init__()
        self.module = module
        self.context = context

    def forward(self, x: Tensor) -> Tensor:
        out = self.module(x)
        # masked_fill, not a product: exact zeros even where masked values are inf/nan
        return out.masked_fill(~self.context.at(out.shape[2:]), 0.0)


class SparseBatchNorm(nn.Module):
    """Batch-norm over visible positions only (statistics and running-stat updates); masked -> 0.

    Written with masked sums rather than gathering the visible positions, so it never synchronises
    with the host; statistics are computed in float32 and are local to the device (no SyncBatchNorm).
    """

    def __init__(self, module: _BatchNorm, context: MaskContext) -> None:
        super().__init__()
        self.module = module
        self.context = context

    def forward(self, x: Tensor) -> Tensor:
        bn = self.module
        hidden = ~self.context.at(x.shape[2:])
        values = x.float().masked_fill(hidden, 0.0)
        dims = [0, *range(2, x.ndim)]
        shape = (1, -1, *([1] * (x.ndim - 2)))
        if bn.training or bn.running_mean is None:
            count = (~hidden).sum()
            mean = values.sum(dims) / count
            var = (values - mean.view(shape)).masked_fill(hidden, 0.0).square().sum(dims) / count
            if bn.training and bn.running_mean is not None:
                # The same momentum / cumulative-average rule as torch's _BatchNorm.
                bn.num_batches_tracked.add_(1)
                factor = 1.0 / float(bn.num_batches_tracked) if bn.momentum is None else bn.momentum
                with torch.no_grad():
                    bn.running_mean.lerp_(mean, factor)
                    bn.running_var.lerp_(var * count / (count - 1).clamp_min(1), factor)
        else:
            mean, var = bn.running_mean, bn.running_var
        out = (values - mean.view(shape)) * torch.rsqrt(var.view(shape) + bn.eps)
        if bn.affine:
            out = out * bn.weight.view(shape) + bn.bias.view(shape)
        return out.masked_fill(hidden, 0.0).to(x.dtype)


def sparse_view(module: nn.Module, context: MaskContext) -> nn.Module:
    """A copy of ``module``'s tree with every conv / pool / batch-norm wrapped; all leaves are shared."""
    if isinstance(module, (_ConvNd, *_POOLS)):
        return SparseOp(module, context)
    if isinstance(module, _BatchNorm):
        return SparseBatchNorm(module, context)
    if isinstance(module, _UNSUPPORTED_NORMS):
        raise NotImplementedError(f"no sparse version of {type(module).__name__}; SparK needs batch-norm encoders")
    if not module._modules:
        return module  # activations, identities, ...: shared as they are
    view = copy.copy(module)  # shares the container's own parameters/buffers dicts; children replaced below
    view.__dict__["_modules"] = {
        name: None if child is None else sparse_view(child, context) for name, child in module._modules.items()
    }
    return view


def total_stride(net: nn.Module) -> int:
    """Downsampling factor from the input to the last stage of a MONAI ResNet (8 for the small stem)."""
    stride = net.conv1.stride[0]
    if not net.no_max_pool:
        stride *= 2
    for stage in (net.layer1, net.layer2, net.layer3, net.layer4):
        stride *= max(m.stride[0] for m in stage.modules() if isinstance(m, _ConvNd))
    return stride


def _module_tree(net: nn.Module) -> tuple[int, ...]:
    # The view holds every module it wraps, so these ids cannot be reused while it lives.
    return tuple(id(m) for m in net.modules())


class SparseEncoder:
    """A sparse view of an ``Encoder``. Deliberately not an ``nn.Module``: its parameters are the
    encoder's, and registering them a second time (in a task) would duplicate them in optimizers and
    checkpoints."""

    def __init__(self, encoder: Encoder) -> None:
        self._tree = _module_tree(encoder.net)
        self.context = MaskContext()
        self.net = sparse_view(encoder.net, self.context)
        self.stride = total_stride(encoder.net)
        self.channels_last = encoder.channels_last

    def views(self, encoder: Encoder) -> bool:
        """Whether this is a view of ``encoder`` as its modules are now (not, e.g., after a module swap)."""
        return _module_tree(encoder.net) == self._tree

    def coarse_size(self, size: Sequence[int]) -> tuple[int, ...]:
        """Spatial size of the last stage for an input of spatial ``size``."""
        return tuple(math.ceil(n / self.stride) for n in size)

    def pyramid(self, x: Tensor, visible: Tensor) -> list[Tensor]:
        """Sparse features (stem, layer1..4), zero at masked positions; ``visible`` (B, 1, *coarse) bool."""
        expected = self.coarse_size(x.shape[2:])
        if tuple(visible.shape[2:]) != expected:
            raise ValueError(f"mask of spatial size {tuple(visible.shape[2:])} given; this input needs {expected}")
        with self.context.use(visible):
            x = x.masked_fill(~self.context.at(x.shape[2:]), 0.0)
            # Encoder.pyramid only touches ``self.net``: reuse it so dense and sparse paths never diverge.
            return Encoder.pyramid(self, x)


def random_visible_mask(batch: int, size: Sequence[int], mask_ratio: float,
                        device: torch.device | str | None = None) -> Tensor:
    """Per-sample random (B, 1, *size) bool mask: of its L cells, exactly ``round(L * (1 - mask_ratio))``
    are visible, clamped so that at least one cell is visible and at least one masked."""
    cells = math.prod(size)
    if cells < 2:
        raise MedsslError(f"a {'x'.join(map(str, size))} grid at the coarsest level cannot be masked; "
                          "use larger inputs or a backbone with the small stem")
    keep = min(max(1, round(cells * (1.0 - mask_ratio))), cells - 1)
    order = torch.rand(batch, cells, device=device).argsort(dim=1)
    visible = torch.zeros(batch, cells, dtype=torch.bool, device=device)
    visible.scatter_(1, order[:, :keep], True)
    return visible.reshape(batch, 1, *size)
