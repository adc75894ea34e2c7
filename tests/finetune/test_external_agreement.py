"""Agreement with the field's own scorers: the official ``medmnist`` Evaluator on a BreastMNIST run's
predictions.csv, and MONAI's DiceMetric on a segmentation run's saved masks."""

import json

import numpy as np
import pytest
import torch
from monai.metrics import DiceMetric
from PIL import Image

from medssl.api import finetune, finetune_segmentation
from medssl.config import FinetuneConfig, SegmentConfig
from medssl.data.masks import load_seg_data
from medssl.finetune.predictions import read_predictions
from tests.test_api import SMALL


@pytest.mark.real_data
def test_medmnist_evaluator_scores_breastmnist_predictions_as_medssl_does(breastmnist, tmp_path):
    medmnist = pytest.importorskip("medmnist")
    run = finetune(FinetuneConfig(data=str(breastmnist), out=str(tmp_path / "ft"), epochs=1, label_fraction=0.1,
                                  min_samples_per_epoch=32, **SMALL), progress=False)
    metrics = json.loads((run.run_dir / "metrics.json").read_text())
    test = read_predictions(run.run_dir / "predictions.csv")["test"]
    y_score = test.probs[np.argsort(test.indices)]
    evaluator = medmnist.Evaluator("breastmnist", "test", size=28, root=str(breastmnist.parent))
    assert len(y_score) == len(evaluator.labels)  # every test image, in the npz's order
    official_auc, official_acc = evaluator.evaluate(y_score)
    assert official_auc == pytest.approx(metrics["test"]["auc"], abs=1e-6)
    assert official_acc == pytest.approx(metrics["test"]["acc"], abs=1e-6)


def test_monai_dice_on_saved_masks_matches_the_runs_dice(tmp_path):
    spec = "synthetic:blobs2d@16?n=8"
    run = finetune_segmentation(SegmentConfig(data=spec, out=str(tmp_path / "seg"), patch_size=16, epochs=1,
                                              steps_per_epoch=3, backbone="resnet10", width=0.125, batch_size=4,
                                              accelerator="cpu"), progress=False)
    metrics = json.loads((run.run_dir / "metrics.json").read_text())
    test = load_seg_data(spec).splits["test"]
    dice = DiceMetric(include_background=True, ignore_empty=False, reduction="none")
    for i, name in enumerate(test.names):
        saved = np.asarray(Image.open(run.run_dir / "predictions" / f"{name}.png")) > 127
        truth = test.masks[i, 0] >= 128
        dice(torch.from_numpy(saved)[None, None].float(), torch.from_numpy(truth)[None, None].float())
    per_image = dice.aggregate().flatten().numpy()
    expected = [metrics["test_per_image"][name]["dice"] for name in test.names]
    np.testing.assert_allclose(per_image, expected, atol=1e-6)
    assert float(per_image.mean()) == pytest.approx(metrics["test"]["dice"], abs=1e-6)
