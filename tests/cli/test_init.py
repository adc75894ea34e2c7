"""``medssl finetune --init imagenet:FILE``: a baseline initialisation from a local weights file."""

from __future__ import annotations

import torch
import torchvision
import yaml

from medssl.cli import main

COMMON = ["--data", "synthetic:lesions2d@16?n=60", "--batch-size", "16", "--epochs", "1", "--accelerator", "cpu",
          "--no-progress", "--min-samples-per-epoch", "32"]


def test_finetune_from_imagenet_weights_records_them(tmp_path):
    weights = tmp_path / "resnet18.pth"
    torch.save(torchvision.models.resnet18(weights=None).state_dict(), weights)
    out = tmp_path / "ft"
    assert main(["finetune", *COMMON, "--init", f"imagenet:{weights}", "--out", str(out)]) == 0
    config = yaml.safe_load((out / "config.yaml").read_text())
    assert config["checkpoint"] == f"imagenet:{weights}"
    assert config["backbone_spec"]["name"] == "resnet18" and config["backbone_spec"]["small_stem"] is False


def test_init_and_checkpoint_exclude_each_other_and_bad_files_are_one_line(tmp_path, capsys):
    assert main(["finetune", *COMMON, "--init", "imagenet:x.pth", "--checkpoint", "scratch",
                 "--out", str(tmp_path / "a")]) == 2
    assert "not allowed with argument" in capsys.readouterr().err
    assert main(["finetune", *COMMON, "--init", f"imagenet:{tmp_path / 'none.pth'}", "--out", str(tmp_path / "b")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "imagenet weights file not found" in err[0]
    assert not (tmp_path / "b").exists()
