"""Anomaly runs: fitted on normal images only, every supported scorer reported, maps written; pre-training runs
as scorers' models; bad input is one line."""

import json

import numpy as np
import pytest

from medssl import memory
from medssl.api import pretrain
from medssl.cli import main
from medssl.config import PretrainConfig
from medssl.data.dataset import ImageData, Split
from medssl.data.planted import make_planted
from medssl.errors import MedsslError
from medssl.runio import read_yaml
from medssl.tasks.anomaly.config import AnomalyConfig
from medssl.tasks.anomaly.data import AnomalyData, load_anomaly_data
from medssl.tasks.anomaly.run import detect_anomalies

PLANTED = "synthetic:planted2d@32?n=100"
TINY = {"backbone": "resnet10", "width": 0.25, "batch_size": 16, "lr": 3e-3, "accelerator": "cpu"}


def test_a_scratch_autoencoder_separates_planted_lesions_and_writes_every_scorer(tmp_path):
    result = detect_anomalies(AnomalyConfig(data=PLANTED, out=str(tmp_path / "run"), normal_class=[0], epochs=4,
                                            **TINY), progress=False)
    metrics = json.loads((tmp_path / "run" / "metrics.json").read_text())
    test = metrics["test"]
    assert set(test["scorers"]) == {"reconstruction", "knn"} and metrics["primary_scorer"] == "reconstruction"
    assert test["auroc"] == test["scorers"]["reconstruction"]["auroc"] and "auprc" in test
    assert 0.0 <= test["scorers"]["reconstruction"]["pixel_auroc"] <= 1.0
    assert test["scorers"]["knn"]["auroc"] > 0.7  # chance is 0.5 (seed 0, 4 epochs on 2 cores: ~0.8)
    assert len(list((tmp_path / "run" / "anomaly_maps").glob("*.png"))) == test["n"]
    lines = (tmp_path / "run" / "scores.csv").read_text().splitlines()
    assert lines[0] == "image,anomalous,reconstruction,knn" and len(lines) == test["n"] + 1
    assert result.metrics["train"]["n_normal"] < 60  # the lesion images of train were left out


def test_only_normal_training_images_are_fitted_on():
    data = load_anomaly_data("synthetic:planted2d@16?n=40", [0])
    train = make_planted(2, n=40, size=16)["train"]
    assert np.array_equal(data.normal_train, train.images[~train.has_lesion])


def _tiny_images(n=16):
    rng = np.random.default_rng(0)
    labels = np.arange(n) % 2
    split = Split(rng.integers(0, 255, (n, 1, 16, 16), dtype=np.uint8), labels)
    return ImageData("tiny", {"train": split, "val": split, "test": split}, 2, 2)


def load_tiny():
    images = _tiny_images()
    test = images.splits["test"]
    return AnomalyData("tiny", images.splits["train"].images[::2], test.images, test.labels == 1, None, 2, [])


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    root = tmp_path_factory.mktemp("pre")
    for method in ("spark", "rotation"):
        pretrain(PretrainConfig(data="x", out=str(root / method), method=method, backbone="resnet10", width=0.125,
                                epochs=1, batch_size=8, accelerator="cpu"), data=_tiny_images(), progress=False)
    return root


def test_a_spark_run_scores_by_masked_reconstruction_without_further_training(runs, tmp_path):
    config = AnomalyConfig(data="x", out=str(tmp_path / "run"), normal_class=[0], checkpoint=str(runs / "spark"),
                           accelerator="cpu", masks=2, save_maps=False)
    metrics = detect_anomalies(config, data=load_tiny(), progress=False).metrics
    assert metrics["fit_epochs"] == 0 and metrics["method"] == "spark"
    assert set(metrics["test"]["scorers"]) == {"reconstruction", "knn"}


def test_a_run_without_a_decoder_falls_back_to_knn_or_refuses_reconstruction(runs, tmp_path):
    config = AnomalyConfig(data="x", out=str(tmp_path / "knn"), normal_class=[0], checkpoint=str(runs / "rotation"),
                           accelerator="cpu")
    assert set(detect_anomalies(config, data=load_tiny(), progress=False).metrics["test"]["scorers"]) == {"knn"}
    config.scorers, config.out = ["reconstruction"], str(tmp_path / "rec")
    with pytest.raises(MedsslError, match="'rotation' does not reconstruct images"):
        detect_anomalies(config, data=load_tiny(), progress=False)
    assert not (tmp_path / "rec").exists()


def test_cli_bad_inputs_are_one_line(tmp_path, capsys):
    args = ["anomaly", "--data", "synthetic:planted2d@16?n=20", "--checkpoint", "scratch", "--out", str(tmp_path / "r")]
    assert main([*args, "--normal-class", "3"]) == 2
    assert capsys.readouterr().err.strip() == \
        "medssl: error: normal class 3 is not a label of synthetic:planted2d@16?n=20 (labels: 0, 1)"
    assert main(args) == 2
    assert "--normal-class is required" in capsys.readouterr().err
    assert main([*args, "--normal-class", "0", "--scorers", "pixels"]) == 2
    assert "scorers must be among reconstruction, knn" in capsys.readouterr().err



def test_the_fitting_batch_goes_through_the_memory_planner(tmp_path, monkeypatch):
    """A fixed step (1 GB + 1 GB per image) under a budget for 4 images: micro-batches of 4 accumulated to the
    8 normal images asked for; a contrastive method under the same budget is refused in one line (accumulation
    would change its loss) and writes nothing."""
    monkeypatch.setattr(memory, "measure_step", lambda *args, **kwargs: memory.StepMemory(memory.GB, memory.GB))
    config = AnomalyConfig(data="x", out=str(tmp_path / "run"), normal_class=[0], epochs=1, save_maps=False,
                           memory_limit_gb=5.5 / memory.HEADROOM, **TINY)
    detect_anomalies(config, data=load_tiny(), progress=False)
    stored = read_yaml(tmp_path / "run" / "config.yaml")
    assert (stored["micro_batch"], stored["accumulate_grad_batches"]) == (4, 2)  # 16 asked, 8 images there
    config.out, config.method = str(tmp_path / "simclr"), "simclr"
    with pytest.raises(MedsslError, match="simclr contrasts each image with the rest of its batch"):
        detect_anomalies(config, data=load_tiny(), progress=False)
    assert not (tmp_path / "simclr").exists()
