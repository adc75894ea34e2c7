"""DINO (Caron et al. 2021) for CNN encoders: a student matches an EMA teacher's centred, sharpened output
distribution across multi-crop views (two global crops seen by both, small local crops by the student only).

Centring and sharpening (not negatives) keep the outputs from collapsing. Under DDP lightly's centre update
all-reduces each batch's teacher mean, so every rank keeps the same centre of the global batch, as in the
reference implementation; the loss itself is a per-sample mean and needs no gather.
"""

from __future__ import annotations

import copy
import math
import warnings

import torch
from lightly.loss import DINOLoss
from lightly.models.modules import DINOProjectionHead
from lightly.models.utils import deactivate_requires_grad
from torch import Tensor, nn

from medssl.errors import MedsslError
from medssl.methods.base import TaskOutput
from medssl.methods.contrastive.momentum import MomentumTask
from medssl.methods.registry import register
from medssl.models.encoder import Encoder
from medssl.views import contrastive_view

# the reference implementation's crop sides: 224 px global, 96 px local
PAPER_LOCAL_CROP_FRACTION = 96 / 224


def _projection_head(input_dim: int, hidden_dim: int, bottleneck_dim: int, output_dim: int,
                     batch_norm: bool, norm_last_layer: bool) -> DINOProjectionHead:
    with warnings.catch_warnings():  # lightly's head still uses torch's deprecated weight_norm
        warnings.filterwarnings("ignore", message=".*weight_norm.*", category=FutureWarning)
        return DINOProjectionHead(input_dim, hidden_dim, bottleneck_dim, output_dim, batch_norm=batch_norm,
                                  norm_last_layer=norm_last_layer)


@torch.no_grad()
def collapse_monitor(teacher: Tensor, center: Tensor, temperature: float) -> dict[str, Tensor]:
    """Entropies of the teacher's centred, sharpened distributions: per sample (low when sharp) and of their
    batch mean (high while images spread over many prototypes). Both near log(K): collapse to uniform; both
    low: collapse onto one prototype."""
    probs = torch.softmax((teacher - center.reshape(1, -1)) / temperature, dim=-1)
    return {"teacher_entropy": -(probs * probs.clamp_min(1e-12).log()).sum(-1).mean(),
            "teacher_batch_entropy": _entropy(probs.mean(0))}


def _entropy(p: Tensor) -> Tensor:
    return -(p * p.clamp_min(1e-12).log()).sum()


@register
class DINO(MomentumTask):
    """Every default is the paper's (reference implementation, ViT-S/16 recipe): a 2048-2048-256 head without
    BatchNorm into 65536 weight-normalised prototypes, EMA 0.996 -> 1 (cosine), centre momentum 0.9, student
    temperature 0.1, teacher temperature 0.04 -> 0.07 over the first 10 % of training (30 of 300 epochs),
    last layer frozen for the first 1 % (1 of 100 epochs), 2 global crops of 40-100 % and 8 local crops of
    5-40 % of the image at 96/224 of its side. Schedules are fractions of this run's steps, so a short run
    goes through them all. Small data and CPUs call for a smaller ``output_dim``/``hidden_dim`` and fewer
    local crops. The learning rate follows the paper's 5e-4 x batch / 256 (AdamW; ``recommended_lr``, used when
    a run sets none): on BreastMNIST at batch 32, 1e-3 made the teacher collapse to the uniform distribution
    within 40 steps (measured), 6.25e-5 did not. ``teacher_entropy`` and ``teacher_batch_entropy`` are logged to
    spot collapse."""

    name = "dino"
    family = "contrastive"

    @classmethod
    def recommended_lr(cls, batch_size: int) -> float:
        return 5e-4 * batch_size / 256

    def __init__(self, encoder: Encoder, momentum: float = 0.996, output_dim: int = 65536, hidden_dim: int = 2048,
                 bottleneck_dim: int = 256, head_batch_norm: bool = False, norm_last_layer: bool = True,
                 freeze_last_layer_fraction: float = 0.01, student_temp: float = 0.1, teacher_temp: float = 0.07,
                 warmup_teacher_temp: float = 0.04, warmup_teacher_temp_fraction: float = 0.1,
                 center_momentum: float = 0.9, n_local_crops: int = 8,
                 local_crop_fraction: float = PAPER_LOCAL_CROP_FRACTION,
                 global_crop_scale: tuple[float, float] = (0.4, 1.0),
                 local_crop_scale: tuple[float, float] = (0.05, 0.4),
                 blur_sigma: tuple[float, float] = (0.1, 1.0), blur_p: float = 0.3,
                 noise_std: tuple[float, float] = (0.0, 0.05), noise_p: float = 0.5) -> None:
        super().__init__(encoder)
        if n_local_crops < 0 or not 0 < local_crop_fraction <= 1:
            raise MedsslError("dino: n_local_crops must be >= 0 and local_crop_fraction lie in (0, 1]")
        if not (0 <= warmup_teacher_temp_fraction <= 1 and 0 <= freeze_last_layer_fraction <= 1):
            raise MedsslError("dino: warmup_teacher_temp_fraction and freeze_last_layer_fraction must lie in [0, 1]")
        self.momentum = momentum
        self.teacher_temp = teacher_temp
        self.warmup_teacher_temp = warmup_teacher_temp
        self.warmup_teacher_temp_fraction = warmup_teacher_temp_fraction
        self.freeze_last_layer_fraction = freeze_last_layer_fraction
        self.n_local_crops = n_local_crops
        self.local_crop_fraction = local_crop_fraction
        self.local_crop_scale = local_crop_scale
        self.intensity = {"blur_sigma": blur_sigma, "blur_p": blur_p, "noise_std": noise_std, "noise_p": noise_p}
        self.global_view = contrastive_view(crop_scale=global_crop_scale, **self.intensity)
        head_args = (encoder.feature_dim, hidden_dim, bottleneck_dim, output_dim, head_batch_norm, norm_last_layer)
        self.head = _projection_head(*head_args)
        # the paper keeps the prototypes fixed while the rest of the (random) network settles; a module hook (not
        # a tensor hook, which pickling drops: ddp_spawn) runs after the weight norm has computed the weight
        self.head.last_layer.register_forward_pre_hook(self._freeze_last_layer)
        self.teacher_encoder = copy.deepcopy(encoder)
        # a weight-normalised layer cannot be deep-copied: a second head starts from the student's weights
        self.teacher_head = _projection_head(*head_args)
        self.teacher_head.load_state_dict(self.head.state_dict())
        deactivate_requires_grad(self.teacher_encoder)
        deactivate_requires_grad(self.teacher_head)
        self.criterion = DINOLoss(output_dim, teacher_temp=teacher_temp, student_temp=student_temp,
                                  center_momentum=center_momentum)
        # training progress in [0, 1] for the schedules; a buffer, so a resumed run continues from it
        self.progress: Tensor
        self.register_buffer("progress", torch.zeros(()))

    def local_size(self, spatial: torch.Size) -> tuple[int, ...]:
        return tuple(max(4, math.ceil(s * self.local_crop_fraction)) for s in spatial)

    def current_teacher_temp(self) -> float:
        if self.warmup_teacher_temp_fraction <= 0:
            return self.teacher_temp
        ramp = min(1.0, float(self.progress) / self.warmup_teacher_temp_fraction)
        return self.warmup_teacher_temp + ramp * (self.teacher_temp - self.warmup_teacher_temp)

    def last_layer_frozen(self) -> bool:
        return float(self.progress) < self.freeze_last_layer_fraction

    def _freeze_last_layer(self, last_layer: nn.Module, inputs: tuple[Tensor, ...]) -> None:
        if self.last_layer_frozen() and torch.is_grad_enabled():
            # a zero gradient rather than none: DDP expects a gradient for every parameter in every step
            last_layer.weight = last_layer.weight.detach() + 0.0 * last_layer.weight

    def forward(self, encoder: Encoder, x: Tensor) -> TaskOutput:
        batch = len(x)
        global_views = torch.cat([self.global_view(x), self.global_view(x)])
        features = encoder(global_views)
        student = list(self.head(features).chunk(2))
        if self.n_local_crops:
            local_view = contrastive_view(crop_scale=self.local_crop_scale, size=self.local_size(x.shape[2:]),
                                          **self.intensity)
            local_views = torch.cat([local_view(x) for _ in range(self.n_local_crops)])
            student += list(self.head(encoder(local_views)).chunk(self.n_local_crops))
        with torch.no_grad():
            teacher = list(self.teacher_head(self.teacher_encoder(global_views)).chunk(2))
        center = self.criterion.center.clone()
        temperature = self.current_teacher_temp()
        loss = self.criterion(teacher, student, teacher_temp=temperature)
        if not self.training:  # the loss moves the centre; evaluation must not
            self.criterion.center.copy_(center)
        return TaskOutput(loss, features[:batch], collapse_monitor(torch.cat(teacher), center, temperature))

    def ema_pairs(self, encoder: Encoder) -> list[tuple[nn.Module, nn.Module]]:
        return [(encoder, self.teacher_encoder), (self.head, self.teacher_head)]

    def on_step_end(self, encoder: Encoder, progress: float) -> None:
        self.progress.fill_(progress)
        super().on_step_end(encoder, progress)
