"""MONAI's RetinaNet with the medssl encoder as backbone: MONAI's feature pyramid network over the encoder's
stages 2-4 (plus MONAI's extra max-pooled level), anchors from ``AnchorGeneratorWithAnchorShape``, ATSS
matching as in MONAI's LUNA16 nodule detector, and balanced sampling of the classification loss's anchors.

Why not LUNA16's hard-negative sampler: it draws each image's negatives from a pool of the ``20 x num_neg``
top-scoring anchors (16 negatives: a pool of 320). A 32^2 image has ~680 anchors, so the pool holds half of
them and the sampler is close to uniform; a 24^3 volume (padded to 32^3) has ~9,400, the pool is ~3 % of
them, and the background far from the hardest anchors is trained on only by chance. On
synthetic:boxes3d@24?n=120 in ~90 steps the 3D detector then learned or not by luck (validation AP@IoU0.1
0.03-0.07 in 3 of 9 runs, 0.51-0.68 in the others), while 2D reached 0.96. Balanced sampling draws the
negatives uniformly from all anchors, as the pool in effect does in 2D."""

from __future__ import annotations

from collections import OrderedDict

from monai.apps.detection.networks.retinanet_detector import RetinaNetDetector
from monai.apps.detection.networks.retinanet_network import RetinaNet
from monai.apps.detection.utils.anchor_utils import AnchorGeneratorWithAnchorShape
from monai.networks.blocks.feature_pyramid_network import FeaturePyramidNetwork, LastLevelMaxPool
from torch import Tensor, nn

from medssl.models.encoder import Encoder

PYRAMID_LEVELS = (2, 3, 4)  # encoder.pyramid indices: layer2..layer4 (strides 2, 4, 8 with the small stem)
SAMPLED_ANCHORS = 128  # anchors per image in the classification loss: up to a quarter positive, the rest negative
POSITIVE_FRACTION = 0.25


class EncoderFeaturePyramid(nn.Module):
    """RetinaNet's ``feature_extractor``: the encoder's pyramid through MONAI's FPN, finest level first."""

    def __init__(self, encoder: Encoder, out_channels: int) -> None:
        super().__init__()
        self.encoder = encoder
        self.fpn = FeaturePyramidNetwork(spatial_dims=encoder.spatial_dims,
                                         in_channels_list=[encoder.pyramid_channels[i] for i in PYRAMID_LEVELS],
                                         out_channels=out_channels, extra_blocks=LastLevelMaxPool(encoder.spatial_dims))
        self.out_channels = out_channels

    def forward(self, x: Tensor) -> OrderedDict[str, Tensor]:
        pyramid = self.encoder.pyramid(x)
        return self.fpn(OrderedDict((str(i), pyramid[level]) for i, level in enumerate(PYRAMID_LEVELS)))

    @property
    def stride(self) -> int:
        """The input size must be a multiple of the coarsest level's stride (the extra pooled level's)."""
        stem = 1 if self.encoder.spec.small_stem else 4
        return stem * 2 ** (len(PYRAMID_LEVELS) + 1)


def build_detector(encoder: Encoder, num_classes: int, *, fpn_channels: int = 32, anchor_size: float = 4.0,
                   score_threshold: float = 0.02, nms_threshold: float = 0.22,
                   detections_per_image: int = 100) -> RetinaNetDetector:
    dims = encoder.spatial_dims
    extractor = EncoderFeaturePyramid(encoder, fpn_channels)
    levels = len(PYRAMID_LEVELS) + 1
    anchors = AnchorGeneratorWithAnchorShape(
        feature_map_scales=tuple(2**k for k in range(levels)),
        base_anchor_shapes=((anchor_size,) * dims, (1.5 * anchor_size,) * dims))
    network = RetinaNet(spatial_dims=dims, num_classes=num_classes, num_anchors=2, feature_extractor=extractor,
                        size_divisible=extractor.stride)
    detector = RetinaNetDetector(network=network, anchor_generator=anchors)
    detector.set_atss_matcher(num_candidates=4, center_in_gt=False)
    detector.set_balanced_sampler(batch_size_per_image=SAMPLED_ANCHORS, positive_fraction=POSITIVE_FRACTION)
    detector.set_target_keys(box_key="boxes", label_key="labels")
    detector.set_box_selector_parameters(score_thresh=score_threshold, topk_candidates_per_level=1000,
                                         nms_thresh=nms_threshold, detections_per_img=detections_per_image)
    return detector
