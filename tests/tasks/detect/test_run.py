"""Tiny detection runs, 2D and 3D: a complete run dir that beats the trivial predictor; transfer loads the
pre-trained encoder into the RetinaNet backbone; bad input is one line."""

import json
from dataclasses import replace

import numpy as np
import pytest
import pytorch_lightning as pl
import torch

from medssl import memory
from medssl.api import pretrain
from medssl.cli import main
from medssl.config import PretrainConfig
from medssl.errors import MedsslError
from medssl.models.encoder import BackboneSpec, Encoder
from medssl.runio import comparable_metrics, load_state, read_yaml
from medssl.tasks.common import load_pretrained
from medssl.tasks.detect.config import DetectConfig
from medssl.tasks.detect.data import load_detection_data
from medssl.tasks.detect.model import build_detector
from medssl.tasks.detect.module import evaluate
from medssl.tasks.detect.run import finetune_detection
from tests.reliability.test_resume import _kill_after_first_checkpoint

# AP@IoU0.1 on the 25 test images of synthetic:boxes2d@32?n=100 that only a detector that learned reaches
LEARNED_AP_BOUND = 0.5
TINY = {"width": 0.25, "batch_size": 8, "lr": 3e-3, "accelerator": "cpu", "min_samples_per_epoch": 32}


@pytest.mark.parametrize(("spec", "epochs"), [("synthetic:boxes2d@32?n=100", 8), ("synthetic:boxes3d@16?n=16", 1)])
def test_tiny_run_writes_metrics_predictions_and_the_trivial_baseline(tmp_path, spec, epochs):
    result = finetune_detection(DetectConfig(data=spec, out=str(tmp_path / "run"), epochs=epochs, **TINY),
                                progress=False)
    metrics = json.loads((tmp_path / "run" / "metrics.json").read_text())
    for key in ("map_iou10", "map_iou50", "froc_cpm", "sensitivity_at_0.125_fp", "sensitivity_at_8_fp"):
        assert 0.0 <= metrics["test"][key] <= 1.0
        assert key in metrics["trivial_predictor"]
    predictions = json.loads((tmp_path / "run" / "predictions.json").read_text())
    assert len(predictions) == metrics["test"]["n_images"]
    dims = 2 if "2d" in spec else 3
    assert all(len(b) == 2 * dims for p in predictions.values() for b in p["boxes"])
    assert (tmp_path / "run" / "detector.pt").is_file() and result.metrics["best_epoch"] < epochs
    if dims == 2:  # a detector that learns nothing fails here (test 0.86 at seed 0 on 2 cores, 32 steps)
        pl.seed_everything(0, verbose=False)
        untrained = build_detector(Encoder(BackboneSpec("resnet10", 2, 1, TINY["width"])), 1)
        untrained_ap = evaluate(untrained, load_detection_data(spec).splits["test"], 1)[0]["map_iou10"]
        trivial_ap = metrics["trivial_predictor"]["map_iou10"]
        assert untrained_ap < 0.1 and trivial_ap < 0.3  # 0.00 and 0.16 at seed 0
        assert metrics["test"]["map_iou10"] > LEARNED_AP_BOUND > max(untrained_ap, trivial_ap)


def test_the_backbone_is_the_pretrained_encoder(tmp_path):
    data = load_detection_data("synthetic:boxes2d@32?n=20")
    run, images = tmp_path / "pre", _as_image_data(data)
    pretrain(PretrainConfig(data="x", out=str(run), method="rotation", backbone="resnet10", width=0.125, epochs=1,
                            batch_size=4, accelerator="cpu"), data=images, progress=False)
    detector = build_detector(load_pretrained(run, data), data.num_classes)  # the detection data itself
    backbone = detector.network.feature_extractor.encoder.net.state_dict()
    for key, value in load_state(run / "encoder.pt").items():
        assert torch.equal(backbone[key], value), key


def _as_image_data(data):
    from medssl.data.dataset import ImageData, Split

    train = data.splits["train"]
    return ImageData("boxes", {"train": Split(train.images, np.full(len(train), -1))}, 2, 1)


def test_training_images_without_boxes_are_refused(tmp_path):
    data = load_detection_data("synthetic:boxes2d@16?n=12")
    empty = data.splits["train"].subset(np.flatnonzero([len(b) == 0 for b in data.splits["train"].boxes]))
    data = type(data)(data.name, {**data.splits, "train": empty}, 2, data.class_names)
    with pytest.raises(MedsslError, match="carry no boxes"):
        finetune_detection(DetectConfig(data="x", out=str(tmp_path / "run"), **TINY), data=data, progress=False)


@pytest.mark.parametrize(("field", "value", "message"), [("augment", "rot90", "none, flips"),
                                                         ("anchor_size", 0.0, "anchor size"),
                                                         ("label_fraction", 0.0, "label fraction")])
def test_config_mistakes_are_one_line_errors(field, value, message):
    with pytest.raises(MedsslError, match=message):
        DetectConfig(data="x", out="y", **{field: value}).validate()


DETECT = ["finetune", "--task", "detect", "--data", "synthetic:boxes2d@32?n=40", "--checkpoint", "scratch",
          "--backbone", "resnet10", "--width", "0.125", "--batch-size", "8", "--min-samples-per-epoch", "16",
          "--epochs", "3", "--seed", "2", "--accelerator", "cpu", "--no-progress", "--checkpoint-every", "1"]


def test_a_killed_detection_run_resumes_to_identical_metrics(tmp_path):
    """The best-so-far weights and the validation history travel in the checkpoint, as in segmentation."""
    run = tmp_path / "det"
    position = _kill_after_first_checkpoint(DETECT, run)
    assert position["step"] < 3 * 2
    assert main([*DETECT, "--out", str(run)]) == 0
    assert main([*DETECT, "--out", str(tmp_path / "ref")]) == 0
    resumed = comparable_metrics(json.loads((run / "metrics.json").read_text()))
    reference = comparable_metrics(json.loads((tmp_path / "ref" / "metrics.json").read_text()))
    assert resumed == reference and len(resumed["val_history"]) == 3



def test_a_batch_over_the_memory_budget_trains_micro_batches_or_is_refused(tmp_path, monkeypatch):
    """The planner's decision reaches the run: a step of 1 GB + 1 GB per volume under a budget that holds 4
    volumes trains micro-batches of 4 accumulated to the asked 8; a budget under 2 volumes is one line, no run dir.
    (The measurement itself is tested in tests/test_memory.py; here it is fixed so the plan is deterministic.)"""
    monkeypatch.setattr(memory, "measure_step", lambda *args, **kwargs: memory.StepMemory(memory.GB, memory.GB))
    data = load_detection_data("synthetic:boxes3d@16?n=16")
    config = DetectConfig(data="x", out=str(tmp_path / "run"), epochs=1, memory_limit_gb=5.5 / memory.HEADROOM,
                          save_predictions=False, **TINY)
    result = finetune_detection(config, data=data, progress=False)
    stored = read_yaml(tmp_path / "run" / "config.yaml")
    assert (stored["batch_size"], stored["micro_batch"], stored["accumulate_grad_batches"]) == (8, 4, 2)
    assert len(result.metrics["val_history"]) == 1
    with pytest.raises(MedsslError, match="even 2 samples need"):
        finetune_detection(replace(config, out=str(tmp_path / "small"), memory_limit_gb=2.0 / memory.HEADROOM),
                           data=data, progress=False)
    assert not (tmp_path / "small").exists()
