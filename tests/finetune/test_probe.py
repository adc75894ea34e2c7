"""The converged linear probe of ``finetune --linear-probe`` and LP-FT: the folded head reproduces the convex
solver exactly, and on BreastMNIST it no longer collapses to the majority class."""

import dataclasses
import json

import numpy as np
import pytest
import torch

from medssl.api import evaluate, finetune, pretrain
from medssl.config import FinetuneConfig, PretrainConfig
from medssl.data.sources import load_data
from medssl.evaluate.linear import fit_linear_probe
from medssl.evaluate.run import EvaluateConfig
from medssl.finetune.probe import head_state
from tests.test_api import SMALL, toy_data


@pytest.mark.parametrize("num_classes", [2, 3])
def test_folded_head_gives_the_probes_probabilities_on_raw_features(num_classes):
    rng = np.random.default_rng(0)
    labels = np.arange(60) % num_classes
    features = rng.normal(size=(60, 8)) * rng.uniform(0.1, 5, 8) + rng.normal(size=8) * 3 + labels[:, None]
    probe = fit_linear_probe(features[:40], labels[:40], features[40:], labels[40:], num_classes)
    head = torch.nn.Linear(8, num_classes)
    head.load_state_dict(head_state(probe, 8))
    with torch.no_grad():
        probs = torch.softmax(head(torch.from_numpy(features).float()), 1).numpy()
    np.testing.assert_allclose(probs, probe.predict_proba(features), atol=1e-5)


def test_a_class_absent_from_training_gets_no_probability():
    rng = np.random.default_rng(1)
    labels = np.arange(30) % 2  # classes 0 and 1 of 3
    features = rng.normal(size=(30, 4)) + labels[:, None]
    probe = fit_linear_probe(features, labels, features, labels, 3)
    state = head_state(probe, 4)
    probs = torch.softmax(torch.from_numpy(features).float() @ state["weight"].T + state["bias"], 1)
    assert float(probs[:, 2].max()) < 1e-15
    np.testing.assert_allclose(probs.numpy(), probe.predict_proba(features), atol=1e-5)


@pytest.fixture(scope="module")
def toy_encoder(tmp_path_factory):
    out = tmp_path_factory.mktemp("probe") / "pre"
    return pretrain(PretrainConfig(data="toy", out=str(out), method="rotation", epochs=1, **SMALL),
                    data=toy_data(2, n=24), progress=False).run_dir


def test_lp_ft_starts_full_finetuning_from_the_converged_probe(toy_encoder, tmp_path):
    from medssl.api import labelled_subset, load_pretrained
    from medssl.finetune.probe import fit_probe_head

    data = toy_data(2, n=24)
    common = {"data": "toy", "checkpoint": str(toy_encoder), "epochs": 1, "min_samples_per_epoch": 16, **SMALL}
    probe = finetune(FinetuneConfig(out=str(tmp_path / "lp"), linear_probe=True, **common), data=data,
                     progress=False)
    assert probe.metrics["best_epoch"] is None  # nothing trained by gradient: C was chosen on validation
    assert probe.metrics["probe"]["batchnorm"] == "as loaded"
    frozen = finetune(FinetuneConfig(out=str(tmp_path / "still"), lp_ft=True, **{**common, "lr": 1e-12}),
                      data=data, progress=False)
    moving = finetune(FinetuneConfig(out=str(tmp_path / "lpft"), lp_ft=True, encoder_lr_mult=0.1, **common),
                      data=data, progress=False)
    assert moving.metrics["probe"]["batchnorm"] == "re-estimated on the labelled training images"
    # the head LP-FT starts from: the converged probe on BatchNorm statistics of the labelled images
    config = FinetuneConfig(**common, out="")
    train = data.splits["train"].subset(labelled_subset(data, config))
    expected, _ = fit_probe_head(load_pretrained(str(toy_encoder), data), train, data.splits["val"], 2,
                                 calibrate_bn=True)
    heads = {name: torch.load(run.run_dir / "classifier.pt", weights_only=True)
             for name, run in (("still", frozen), ("lpft", moving))}
    torch.testing.assert_close(heads["still"]["head.weight"], expected["weight"], rtol=1e-4, atol=1e-6)
    assert not torch.allclose(heads["lpft"]["head.weight"], expected["weight"], rtol=1e-3)  # then trained on
    before = torch.load(toy_encoder / "encoder.pt", weights_only=True)
    assert any(not torch.allclose(heads["lpft"][f"encoder.net.{k}"], v) for k, v in before.items()
               if v.dtype.is_floating_point and "running" not in k and "num_batches" not in k)


@pytest.mark.real_data
@pytest.mark.parametrize("fraction", [0.01, 0.1])
def test_breastmnist_linear_probe_keeps_the_minority_class(breastmnist, tmp_path_factory, fraction):
    """A tiny encoder pre-trained 2 steps; the probe must find the minority class (malignant, 27 %) and match
    the validation AUC of ``evaluate``'s convex-solver probe on the same labelled images within 0.03 (it
    differs only by class-balanced weighting, which moves C's choice, not the solver)."""
    root = tmp_path_factory.mktemp("breast")
    data = load_data(str(breastmnist))
    encoder = pretrain(PretrainConfig(data=str(breastmnist), out=str(root / "pre"), method="simclr", epochs=1,
                                      max_steps=2, **SMALL), data=data, progress=False).run_dir
    run = finetune(FinetuneConfig(data=str(breastmnist), out=str(root / "lp"), checkpoint=str(encoder),
                                  label_fraction=fraction, linear_probe=True, **SMALL), data=data, progress=False)
    metrics = json.loads((run.run_dir / "metrics.json").read_text())
    minority = int(np.argmin(data.class_counts("train")))
    assert metrics["test"]["per_class_recall"][minority] > 0
    assert metrics["val"]["per_class_recall"][minority] > 0

    from medssl.api import labelled_subset

    subset = labelled_subset(data, FinetuneConfig(data="", out="", label_fraction=fraction))
    same_labels = dataclasses.replace(data, splits={**data.splits, "train": data.splits["train"].subset(subset)})
    reference = evaluate(EvaluateConfig(checkpoint=str(encoder), data=str(breastmnist), protocol="linear",
                                        out=str(root / "eval"), device="cpu"), data=same_labels)
    assert metrics["val"]["auc"] >= reference.metrics["val"]["auc"] - 0.03


def test_lp_ft_head_sees_the_features_fine_tuning_sees():
    """A random encoder's BatchNorm running statistics are uncalibrated: a head fitted to its eval-mode
    features meets very different train-mode features in the first fine-tuning step. Re-estimating them on
    the labelled images first makes both modes agree."""
    from medssl.finetune.probe import calibrate_batchnorm
    from medssl.methods.base import to_unit_float
    from medssl.models.encoder import BackboneSpec, Encoder

    images = toy_data(2, n=24).splits["train"].images
    torch.manual_seed(0)
    encoder = Encoder(BackboneSpec("resnet10", 2, 1, 0.125))
    x = to_unit_float(torch.from_numpy(images))

    def mode_gap() -> float:
        with torch.no_grad():
            eval_features = encoder.eval()(x)
            train_features = encoder.train()(x)
        return float(((eval_features - train_features).abs().mean(0) / train_features.std(0)).median())

    assert mode_gap() > 1.0  # uncalibrated: standard deviations apart
    calibrate_batchnorm(encoder, images)
    assert mode_gap() < 0.05
