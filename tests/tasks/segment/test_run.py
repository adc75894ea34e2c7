"""End-to-end segmentation runs (2D and 3D) and exact transfer of pre-trained encoder and decoder."""

import json
import shutil

import numpy as np
import pytest
import torch

from medssl.api import finetune_segmentation, pretrain
from medssl.config import PretrainConfig, SegmentConfig
from medssl.data.masks import make_blobs
from medssl.errors import MedsslError
from medssl.runio import load_state
from medssl.tasks.segment.run import build_segmenter, labelled_images

TINY = {"backbone": "resnet10", "width": 0.25, "batch_size": 4, "lr": 3e-3, "accelerator": "cpu"}


def all_foreground_dice(data) -> float:
    """Dice of the trivial predictor that marks every pixel as foreground, averaged over test images."""
    fractions = (data.splits["test"].masks >= 128).reshape(len(data.splits["test"]), -1).mean(1)
    return float(np.mean(2 * fractions / (1 + fractions)))


@pytest.mark.parametrize(("dims", "size", "n", "epochs", "steps"), [(2, 32, 16, 6, 25), (3, 16, 12, 8, 15)])
def test_tiny_run_finishes_with_metrics_and_beats_a_trivial_predictor(tmp_path, dims, size, n, epochs, steps):
    spec = f"synthetic:blobs{dims}d@{size}?n={n}"
    config = SegmentConfig(data=spec, out=str(tmp_path / "run"), patch_size=size, epochs=epochs,
                           steps_per_epoch=steps, **TINY)
    result = finetune_segmentation(config, progress=False)
    metrics = json.loads((tmp_path / "run" / "metrics.json").read_text())
    trivial = all_foreground_dice(make_blobs(dims, n=n, size=size))
    assert metrics["test"]["dice"] == pytest.approx(result.metrics["test"]["dice"])
    assert metrics["test"]["dice"] > max(0.6, trivial + 0.3), (metrics["test"], trivial)
    assert len(metrics["val_history"]) == epochs and 0 <= metrics["best_epoch"] < epochs
    suffix = ".png" if dims == 2 else ".nii.gz"
    assert sorted(p.name for p in (tmp_path / "run" / "predictions").iterdir()) == \
        sorted(f"{name}{suffix}" for name in metrics["test_per_image"])


@pytest.mark.parametrize("augment", ["flips", "scale"])
def test_a_ladder_augment_reaches_the_training_step(tmp_path, monkeypatch, augment):
    """``--augment flips`` once trained without augmentation (only ``light`` switched it on)."""
    from medssl.tasks.segment import train as segment

    calls = []
    original = segment.JointAugmentation.__call__

    def spy(self, x, y):
        calls.append(self.name)
        return original(self, x, y)

    monkeypatch.setattr(segment.JointAugmentation, "__call__", spy)
    config = SegmentConfig(data="synthetic:blobs2d@16?n=8", out=str(tmp_path / "run"), patch_size=16, epochs=1,
                           steps_per_epoch=2, augment=augment, save_predictions=False, **TINY)
    finetune_segmentation(config, progress=False)
    assert calls == [augment, augment]


@pytest.fixture(scope="module")
def genesis_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("pre") / "genesis"
    data = make_blobs(2, n=8, size=16).image_data()
    pretrain(PretrainConfig(data="blobs", out=str(out), method="genesis", backbone="resnet10", width=0.125,
                            epochs=1, batch_size=4, accelerator="cpu"), data=data, progress=False)
    return out


def _config(checkpoint, transfer, out="unused") -> SegmentConfig:
    return SegmentConfig(data="synthetic:blobs2d@16?n=8", out=out, checkpoint=str(checkpoint), transfer=transfer)


def test_transfer_both_loads_exactly_the_pretrained_encoder_and_decoder(genesis_run):
    data = make_blobs(2, n=8, size=16)
    model, transfer, _ = build_segmenter(_config(genesis_run, None), data)
    assert transfer == "both"  # the default when the run saved a decoder
    for key, value in load_state(genesis_run / "encoder.pt").items():
        assert torch.equal(model.encoder.net.state_dict()[key], value), key
    decoder = load_state(genesis_run / "decoder.pt")
    for key, value in model.decoder.state_dict().items():
        if not key.startswith("head."):
            assert torch.equal(value, decoder[key]), key


def test_transfer_decoder_only_leaves_the_encoder_fresh(genesis_run):
    data = make_blobs(2, n=8, size=16)
    model, _, _ = build_segmenter(_config(genesis_run, "decoder"), data)
    pretrained = load_state(genesis_run / "encoder.pt")
    assert not torch.equal(model.encoder.net.conv1.weight, pretrained["conv1.weight"])
    decoder = load_state(genesis_run / "decoder.pt")
    assert torch.equal(model.decoder.blocks[0].conv.weight, decoder["blocks.0.conv.weight"])


def test_decoder_transfer_from_a_run_without_decoder_fails_before_writing(genesis_run, tmp_path):
    plain = tmp_path / "plain"
    shutil.copytree(genesis_run, plain)
    (plain / "decoder.pt").unlink()
    with pytest.raises(MedsslError, match=r"no decoder\.pt"):
        finetune_segmentation(_config(plain, "both", out=str(tmp_path / "out")), progress=False)
    assert not (tmp_path / "out").exists()
    _, transfer, _ = build_segmenter(_config(plain, None), make_blobs(2, n=8, size=16))
    assert transfer == "encoder"


def test_label_count_picks_a_nested_seeded_subset():
    small = labelled_images(10, SegmentConfig(data="d", out="o", label_count=3))
    large = labelled_images(10, SegmentConfig(data="d", out="o", label_count=6))
    assert len(small) == 3 and set(small) <= set(large)
    assert len(labelled_images(10, SegmentConfig(data="d", out="o", label_fraction=0.5))) == 5
    with pytest.raises(MedsslError, match="exceeds"):
        labelled_images(4, SegmentConfig(data="d", out="o", label_count=5))


@pytest.mark.parametrize(("changes", "match"), [
    ({"transfer": "both"}, "needs a pre-training run"),
    ({"checkpoint": "run", "transfer": "none"}, "pass --checkpoint scratch"),
    ({"transfer": "all"}, "transfer must be"),
    ({"label_count": 0}, "label count"),
    ({"patch_size": 4}, "patch size"),
    ({"devices": 2}, "segmentation runs on one device"),
    ({"num_nodes": 2}, "segmentation runs on one device"),
])
def test_config_rejects_inconsistent_options(changes, match):
    with pytest.raises(MedsslError, match=match):
        SegmentConfig(data="d", out="o", **changes).validate()
