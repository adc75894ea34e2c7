"""Fine-tuning policies change training exactly as intended, and the defaults change nothing."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F
import yaml

from medssl import api
from medssl.config import FinetuneConfig
from medssl.data.dataset import Split
from medssl.errors import MedsslError
from medssl.finetune.policies import (
    LossPolicy,
    augmentation,
    balanced_sample_weights,
    class_weights,
    classification_loss,
    loss_policy,
    mixup,
    soft_targets,
)
from medssl.training import batch_loader


@pytest.fixture
def logits_labels():
    torch.manual_seed(0)
    return torch.randn(32, 3) * 2, torch.randint(0, 3, (32,))


def test_focal_loss_is_cross_entropy_at_gamma_zero_and_down_weights_easy_examples(logits_labels):
    logits, labels = logits_labels
    targets = soft_targets(labels, 3)
    ce = float(F.cross_entropy(logits, labels))
    assert classification_loss(logits, targets, focal_gamma=0.0) == pytest.approx(ce)
    easy = torch.tensor([[6.0, 0.0, 0.0]])
    one_hot = soft_targets(torch.tensor([0]), 3)
    assert classification_loss(easy, one_hot, focal_gamma=2.0) < 0.01 * classification_loss(easy, one_hot)


def test_weighted_cross_entropy_matches_torch_and_weights_are_inverse_frequency(logits_labels):
    logits, labels = logits_labels
    weights = class_weights([90, 10, 0])
    assert weights[1] / weights[0] == pytest.approx(9.0) and weights[2] == 0 and weights[:2].mean() == pytest.approx(1)
    weights = class_weights([50, 30, 20])
    expected = F.cross_entropy(logits, labels, weight=weights)
    assert classification_loss(logits, soft_targets(labels, 3), weights=weights) == pytest.approx(float(expected))


def test_label_smoothing_matches_torch(logits_labels):
    logits, labels = logits_labels
    expected = F.cross_entropy(logits, labels, label_smoothing=0.1)
    assert classification_loss(logits, soft_targets(labels, 3, 0.1)) == pytest.approx(float(expected), rel=1e-5)


def test_mixup_mixes_images_and_labels_with_the_same_coefficient_and_partner():
    torch.manual_seed(3)
    n = 8
    x = torch.arange(n, dtype=torch.float32).view(n, 1, 1, 1).expand(n, 1, 4, 4)  # image i is all i
    targets = soft_targets(torch.arange(n), n)  # class i = sample i
    mixed_x, mixed_t, lam = mixup(x, targets, alpha=0.4)
    assert 0 < lam < 1 and lam != 0.5
    assert torch.allclose(mixed_t.sum(1), torch.ones(n))
    # each mixed image's value is the target-weighted mean of the classes it mixes
    assert torch.allclose(mixed_x[:, 0, 0, 0], mixed_t @ torch.arange(n, dtype=torch.float32), atol=1e-5)
    assert (mixed_t.max(1).values < 1).any()  # labels really were mixed


def test_default_policy_is_the_classifiers_plain_cross_entropy():
    assert loss_policy("ce", [10, 10]) is None
    policy = loss_policy("weighted_ce", [30, 10], label_smoothing=0.1, mixup_alpha=0.2)
    assert isinstance(policy, LossPolicy) and policy.focal_gamma is None and policy.weights[1] == pytest.approx(1.5)
    assert loss_policy("focal", [5, 5], focal_gamma=1.0).focal_gamma == 1.0


def test_balanced_sampler_draws_classes_about_equally():
    labels = np.array([0] * 180 + [1] * 20)
    split = Split(np.zeros((200, 1, 4, 4), np.uint8), labels)
    drawn = lambda weights: np.concatenate([b[1].numpy() for b in batch_loader(  # noqa: E731
        split, 50, shuffle=True, seed=0, min_samples=4000, weights=weights)])
    balanced, plain = drawn(balanced_sample_weights(labels)), drawn(None)
    assert len(balanced) == 4000 and abs(balanced.mean() - 0.5) < 0.04
    assert abs(plain.mean() - 0.1) < 0.02


def test_augmentation_ladder_rungs_do_what_they_say():
    torch.manual_seed(0)
    x = torch.rand(64, 1, 8, 8)
    assert augmentation("none") is None
    flipped = augmentation("flips")(x)
    variants = lambda img: [img, img.flip(-1), img.flip(-2), img.flip(-1, -2)]  # noqa: E731
    assert all(any(torch.equal(f, v) for v in variants(o)) for f, o in zip(flipped, x, strict=True))
    assert not torch.equal(flipped, x)
    rotated = augmentation("rot90")(x)
    turns = lambda img: [torch.rot90(v, k, (-2, -1)) for v in variants(img) for k in range(4)]  # noqa: E731
    assert all(any(torch.equal(r, t) for t in turns(o)) for r, o in zip(rotated, x, strict=True))
    for rung in ("rotate", "scale"):  # resampled: no longer an exact flip or quarter turn of the input
        out = augmentation(rung)(x)
        assert out.shape == x.shape and out.min() >= 0 and out.max() <= 1
        assert not all(any(torch.allclose(r, t) for t in turns(o)) for r, o in zip(out, x, strict=True))
    volume = torch.rand(4, 1, 6, 6, 6)
    assert augmentation("scale")(volume).shape == volume.shape  # one code path for 3D
    assert len(augmentation("light")) == 1


def test_policy_fields_are_validated():
    for field, value, match in (("loss", "hinge", "loss must be one of"), ("label_smoothing", 1.0, "smoothing"),
                                ("mixup_alpha", -1.0, "mixup alpha"), ("augment", "wild", "augment must be")):
        with pytest.raises(MedsslError, match=match):
            FinetuneConfig(data="d", out="o", **{field: value}).validate()


def test_a_finetune_with_every_policy_stacked_runs_and_records_them(tmp_path):
    config = FinetuneConfig(data="synthetic:lesions2d@16?n=200", out=str(tmp_path / "ft"), backbone="resnet10",
                            width=0.25, epochs=1, batch_size=16, min_samples_per_epoch=32, augment="scale",
                            loss="focal", label_smoothing=0.1, mixup_alpha=0.2, balanced_sampling=True)
    result = api.finetune(config, progress=False)
    assert 0 <= result.metrics["test"]["auc"] <= 1
    recorded = yaml.safe_load((tmp_path / "ft" / "config.yaml").read_text())
    assert recorded["loss"] == "focal" and recorded["balanced_sampling"] is True and recorded["augment"] == "scale"


def test_the_classifier_trains_on_its_policy_loss():
    from medssl.methods.base import to_unit_float
    from medssl.models.encoder import BackboneSpec, Encoder
    from medssl.tasks.classify.module import Classifier

    torch.manual_seed(0)
    images, labels = torch.randint(0, 255, (8, 1, 16, 16), dtype=torch.uint8), torch.tensor([0, 0, 0, 1] * 2)
    weights = class_weights([6, 2])
    plain = Classifier(Encoder(BackboneSpec("resnet10", 2, 1, 0.25)), 2).eval()
    weighted = Classifier(plain.encoder, 2, loss=LossPolicy(2, weights=weights)).eval()
    weighted.head.load_state_dict(plain.head.state_dict())
    with torch.no_grad():
        logits = plain(to_unit_float(images))
        with pytest.warns(match="self.log"):  # outside a Trainer Lightning only warns about logging
            ce = float(plain.training_step((images, labels), 0))
            policy = float(weighted.training_step((images, labels), 0))
    assert ce == pytest.approx(float(F.cross_entropy(logits, labels)))
    assert policy == pytest.approx(float(F.cross_entropy(logits, labels, weight=weights)))
    assert policy != pytest.approx(ce)
