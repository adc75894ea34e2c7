"""Pre-train -> fine-tune through the Python API, in 2D and 3D, and the checks between them."""

import json

import numpy as np
import pytest
import torch
from monai.networks.nets import ResNet

from medssl.api import finetune, pretrain
from medssl.config import FinetuneConfig, PretrainConfig
from medssl.data.dataset import ImageData, Split
from medssl.errors import MedsslError
from medssl.models.encoder import BackboneSpec

SMALL = {"backbone": "resnet10", "width": 0.125, "batch_size": 16, "accelerator": "cpu"}


def toy_data(spatial_dims: int, n: int = 48, size: int = 12, channels: int = 1) -> ImageData:
    """Class 1 has a bright square in its centre: learnable in a few steps."""
    rng = np.random.default_rng(0)
    splits = {}
    for split in ("train", "val", "test"):
        labels = np.arange(n) % 2
        images = rng.integers(0, 80, (n, channels, *([size] * spatial_dims)), dtype=np.uint8)
        centre = (slice(None), slice(None), *([slice(size // 3, 2 * size // 3)] * spatial_dims))
        bright = images[labels == 1]
        bright[centre] = 250
        images[labels == 1] = bright
        splits[split] = Split(images, labels.astype(np.int64))
    return ImageData(f"toy{spatial_dims}d", splits, spatial_dims, 2, ["a", "b"])


@pytest.fixture(scope="module")
def pretrained_2d(tmp_path_factory):
    out = tmp_path_factory.mktemp("runs") / "pre2d"
    return pretrain(PretrainConfig(data="toy", out=str(out), method="genesis", epochs=1, **SMALL),
                    data=toy_data(2), progress=False)


def test_pretraining_run_dir_holds_config_weights_and_metrics(pretrained_2d):
    run = pretrained_2d.run_dir
    for name in ("config.yaml", "encoder.pt", "decoder.pt", "metrics.json", "checkpoints/last.ckpt"):
        assert (run / name).is_file(), name
    metrics = json.loads((run / "metrics.json").read_text())
    assert np.isfinite(metrics["train"]["loss"]) and metrics["steps"] == 3


def test_exported_encoder_loads_into_monai_resnet_with_weights_only(pretrained_2d):
    state = torch.load(pretrained_2d.run_dir / "encoder.pt", weights_only=True)
    ResNet(**BackboneSpec("resnet10", 2, 1, 0.125).monai_kwargs()).load_state_dict(state)


@pytest.mark.parametrize("linear_probe", [False, True])
def test_finetune_from_checkpoint_reports_test_and_val_metrics(pretrained_2d, tmp_path, linear_probe):
    before = torch.load(pretrained_2d.run_dir / "encoder.pt", weights_only=True)
    result = finetune(FinetuneConfig(data="toy", out=str(tmp_path / "ft"), checkpoint=str(pretrained_2d.run_dir),
                                     label_fraction=0.5, epochs=2, linear_probe=linear_probe,
                                     min_samples_per_epoch=32, **SMALL), data=toy_data(2), progress=False)
    metrics = json.loads((result.run_dir / "metrics.json").read_text())
    assert set(metrics) >= {"test", "val", "train"}
    assert metrics["train"]["class_counts"] == [12, 12]
    for key in ("auc", "acc", "balanced_acc", "per_class_recall", "confusion_matrix"):
        assert key in metrics["test"]
    assert sum(map(sum, metrics["test"]["confusion_matrix"])) == 48
    classifier = torch.load(result.run_dir / "classifier.pt", weights_only=True)
    changed = any(not torch.equal(classifier[f"encoder.net.{k}"], v) for k, v in before.items()
                  if v.dtype.is_floating_point)
    assert changed != linear_probe  # a linear probe leaves the encoder (incl. BN statistics) untouched


def test_scratch_finetune_learns_an_easy_task_in_3d(tmp_path):
    result = finetune(FinetuneConfig(data="toy", out=str(tmp_path / "ft3d"), epochs=3, min_samples_per_epoch=96,
                                     lr=3e-3, **SMALL), data=toy_data(3, size=8), progress=False)
    assert result.metrics["test"]["auc"] > 0.9


def test_checkpoint_of_other_dims_or_channels_is_rejected(pretrained_2d, tmp_path):
    config = FinetuneConfig(data="toy", out=str(tmp_path / "x"), checkpoint=str(pretrained_2d.run_dir), **SMALL)
    with pytest.raises(MedsslError, match="is 2D but the data is 3D"):
        finetune(config, data=toy_data(3, size=8), progress=False)
    with pytest.raises(MedsslError, match="expects 1 channel"):
        finetune(config, data=toy_data(2, channels=3), progress=False)
    assert not (tmp_path / "x").exists()


def test_unfinished_run_dir_is_not_accepted_as_checkpoint(pretrained_2d, tmp_path):
    unfinished = tmp_path / "unfinished"
    unfinished.mkdir()
    for name in ("config.yaml", "encoder.pt"):
        (unfinished / name).write_bytes((pretrained_2d.run_dir / name).read_bytes())
    config = FinetuneConfig(data="toy", out=str(tmp_path / "y"), checkpoint=str(unfinished), **SMALL)
    with pytest.raises(MedsslError, match="not a finished pre-training run"):
        finetune(config, data=toy_data(2), progress=False)


def test_corrupt_or_pickled_code_checkpoint_is_refused(pretrained_2d, tmp_path):
    import shutil

    evil = tmp_path / "evil"
    shutil.copytree(pretrained_2d.run_dir, evil)

    class Payload:
        def __reduce__(self):
            return (print, ("code ran",))

    torch.save({"weight": Payload()}, evil / "encoder.pt")
    config = FinetuneConfig(data="toy", out=str(tmp_path / "z"), checkpoint=str(evil), **SMALL)
    with pytest.raises(MedsslError, match="not a readable medssl weights file"):
        finetune(config, data=toy_data(2), progress=False)


def test_finished_run_is_not_overwritten_without_permission(pretrained_2d):
    config = PretrainConfig(data="toy", out=str(pretrained_2d.run_dir), epochs=1, **SMALL)
    with pytest.raises(MedsslError, match="already holds a finished run"):
        pretrain(config, data=toy_data(2), progress=False)


def test_pretraining_pool_never_contains_test_images_by_default():
    from medssl.api import pretraining_pool

    data = toy_data(2)
    data.splits["test"].images[:] = 7  # a marker no train/val image carries in full
    pool = pretraining_pool(data, ["train"])
    assert len(pool) == 48 and not (pool.images == 7).all(axis=(1, 2, 3)).any()
    assert len(pretraining_pool(data, ["train", "val"])) == 96


def test_same_seed_gives_identical_metrics_on_cpu(tmp_path):
    config = {"data": "toy", "epochs": 1, "min_samples_per_epoch": 32, "label_fraction": 0.5, **SMALL}
    first = finetune(FinetuneConfig(out=str(tmp_path / "a"), **config), data=toy_data(2), progress=False)
    second = finetune(FinetuneConfig(out=str(tmp_path / "b"), **config), data=toy_data(2), progress=False)
    assert first.metrics["test"] == second.metrics["test"]
    assert first.metrics["val"] == second.metrics["val"]
