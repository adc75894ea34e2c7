"""``medssl data info`` on file sources, and training runs whose data come from a manifest or an MSD folder."""

from __future__ import annotations

import json

import pytest

from medssl.cli import main
from tests.data.dicom_series import write_series
from tests.data.layouts import write_drive, write_msd, write_volume_manifest

TINY = ["--epochs", "1", "--backbone", "resnet10", "--width", "0.125", "--no-progress", "--accelerator", "cpu"]
SEGMENT = ["--task", "segment", "--checkpoint", "scratch", "--steps-per-epoch", "2", "--patch-size", "16",
           "--batch-size", "2", *TINY]


def error_lines(capsys) -> list[str]:
    return [line for line in capsys.readouterr().err.splitlines() if line.startswith("medssl: error:")]


def test_data_info_lists_series_and_every_skipped_file(tmp_path, capsys):
    import numpy as np

    write_series(tmp_path / "ct", np.zeros((4, 6, 6)) - 1000, modality="CT")
    write_series(tmp_path / "mr", np.ones((5, 6, 6)) * 300, modality="MR", spacing=(1, 1, 4))
    gap = write_series(tmp_path / "gap", np.zeros((5, 6, 6)), modality="MR")
    gap[1].unlink()
    assert main(["data", "info", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert "images: 2 readable, 1 skipped" in out and "modalities: CT 1, MR 1" in out
    assert "spacing (mm) 0.7x0.8x2.5 .. 1x1x4" in out  # column, row spacing, then the slice step
    assert "missing slice(s)" in out


@pytest.mark.parametrize("layout", ["drive", "msd"])
def test_segmentation_run_from_a_manifest_and_from_an_msd_folder(tmp_path, capsys, layout):
    data = write_drive(tmp_path / "drive") if layout == "drive" else write_msd(tmp_path / "msd", n=5)
    out = tmp_path / "run"
    assert main(["finetune", "--data", str(data), "--out", str(out), *SEGMENT]) == 0
    assert "test Dice" in capsys.readouterr().out
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["test"]["dice"] >= 0 and len(metrics["test_per_image"]) == 2


def test_classification_run_from_a_manifest_of_volumes_of_different_sizes(tmp_path, capsys):
    manifest = write_volume_manifest(tmp_path, n=8)
    out = tmp_path / "cls"
    assert main(["finetune", "--data", str(manifest), "--spacing", "2,2,2", "--size", "12", "--checkpoint",
                 "scratch", "--out", str(out), "--batch-size", "4", *TINY]) == 0
    assert "test AUC" in capsys.readouterr().out
    config = (out / "config.yaml").read_text()
    assert "spacing:" in config and "- 2.0" in config  # the preprocessing is part of the run's record


def test_pretraining_on_patches_of_an_msd_folder(tmp_path, capsys):
    root = write_msd(tmp_path / "msd", n=4)
    out = tmp_path / "pre"
    assert main(["pretrain", "--data", str(root), "--method", "simclr", "--patch", "12,12,8", "--max-steps", "2",
                 "--batch-size", "4", "--out", str(out), *TINY]) == 0
    assert (out / "encoder.pt").is_file()


def test_segmentation_rejects_classification_patch_options(tmp_path, capsys):
    data = write_drive(tmp_path / "drive")
    assert main(["finetune", "--data", str(data), "--out", str(tmp_path / "r"), "--patch", "16", *SEGMENT]) == 2
    assert error_lines(capsys) == ["medssl: error: segmentation samples its own foreground-aware patches: use"
                                   " --patch-size, not --patch/--slices"]


@pytest.fixture(scope="module")
def ct_and_mr(tmp_path_factory):
    import numpy as np

    root = tmp_path_factory.mktemp("mixed")
    write_series(root / "ct", np.zeros((4, 6, 6)) - 1000, modality="CT")
    write_series(root / "mr", np.ones((4, 6, 6)) * 300, modality="MR")
    return root


def test_bad_data_inputs_are_one_line_errors(tmp_path, capsys, ct_and_mr):
    cache = tmp_path / "cache"
    cases = [
        (["data", "prepare", str(ct_and_mr), "--out", str(cache), "--no-progress"], "mixes modalities CT and MR"),
        (["pretrain", "--data", str(ct_and_mr), "--out", str(tmp_path / "r1"), *TINY], "mixes modalities CT and MR"),
        (["data", "prepare", str(tmp_path / "none.csv"), "--out", str(cache)], "manifest not found"),
    ]
    (tmp_path / "m.csv").write_text("path,label\nscans/absent.nii.gz,1\n")
    cases.append((["finetune", "--data", str(tmp_path / "m.csv"), "--checkpoint", "scratch", "--out",
                   str(tmp_path / "r2"), *TINY], "m.csv line 2: 'scans/absent.nii.gz' not found"))
    for argv, match in cases:
        assert main(argv) == 2, argv
        lines = error_lines(capsys)
        assert len(lines) == 1 and match in lines[0], (argv, lines)
    assert not cache.exists() and not (tmp_path / "r1").exists() and not (tmp_path / "r2").exists()
    assert main(["data", "prepare", str(ct_and_mr), "--out", str(cache), "--intensity", "ct:-1000,400",
                 "--no-progress"]) == 0
    capsys.readouterr()
    assert main(["data", "prepare", str(ct_and_mr), "--out", str(cache), "--intensity", "mr", "--no-progress"]) == 2
    assert "built with other options (intensity)" in error_lines(capsys)[0]
    assert main(["pretrain", "--data", str(cache), "--intensity", "mr", "--patch", "4", "--out",
                 str(tmp_path / "r3"), *TINY]) == 2
    assert "was prepared with intensity ct:-1000,400, not mr" in error_lines(capsys)[0]
