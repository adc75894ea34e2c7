"""Anomaly scorers on hand-built models: a reconstruction that ignores lesions flags them pixel by pixel; kNN
distance grows away from the normal features; SparK's masked error covers every patch."""

import numpy as np
import torch
from sklearn.metrics import roc_auc_score
from torch import nn

from medssl.data.planted import make_planted
from medssl.methods.generative.autoencoder import Autoencoder
from medssl.methods.generative.spark import SparK
from medssl.models.encoder import BackboneSpec, Encoder
from medssl.tasks.anomaly.scorers import ReconstructionError, knn_scores, reconstruction_maps


class Constant(nn.Module):
    """A 'decoder' that restores every image as flat normal tissue (logit of 0.4)."""

    def forward(self, pyramid, output_size):
        return torch.full((pyramid[0].shape[0], 1, *output_size), float(np.log(0.4 / 0.6)))


def test_reconstruction_error_maps_flag_the_planted_lesions():
    split = make_planted(2, n=40, size=32, seed=0)["train"]
    encoder = Encoder(BackboneSpec("resnet10", 2, 1, 0.125))
    task = Autoencoder(encoder)
    task.decoder = Constant()
    maps = reconstruction_maps(ReconstructionError(encoder, task), split.images)
    assert maps.shape == (len(split), 1, 32, 32)
    assert roc_auc_score(split.masks.ravel() > 0, maps.ravel()) > 0.95
    image_scores = maps.reshape(len(maps), -1).mean(1)
    assert roc_auc_score(split.has_lesion, image_scores) > 0.9


def test_knn_distance_is_zero_for_a_normal_image_and_grows_away_from_them():
    encoder = Encoder(BackboneSpec("resnet10", 2, 1, 0.125)).eval()
    normal = np.full((6, 1, 16, 16), 100, np.uint8)
    normal[::2, :, :8] = 30  # two kinds of normal images
    odd = np.random.default_rng(0).integers(0, 255, (2, 1, 16, 16), dtype=np.uint8)
    scores = knn_scores(encoder, normal, np.concatenate([normal[:1], odd]), k=1)
    assert abs(scores[0]) < 1e-6 and (scores[1:] > scores[0]).all()


def test_spark_masked_error_is_averaged_over_masks_and_fills_the_image():
    encoder = Encoder(BackboneSpec("resnet10", 2, 1, 0.125))
    task = SparK(encoder).eval()
    torch.manual_seed(0)
    x = torch.rand(3, 1, 32, 32)
    one, many = ReconstructionError(encoder, task, masks=1)(x), ReconstructionError(encoder, task, masks=16)(x)
    assert many.shape == (3, 1, 32, 32) and (many > 0).all()  # every patch was hidden by some mask
    cells = many[:, :, ::8, ::8]  # one value per 8x8 patch of the 4x4 coarse grid
    assert torch.equal(many, cells.repeat_interleave(8, 2).repeat_interleave(8, 3))
    assert not torch.equal(one, many)
