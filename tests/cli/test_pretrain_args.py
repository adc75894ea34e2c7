"""``medssl pretrain --method-args``: recorded in config.yaml; a bad key is one line naming the valid ones."""

from __future__ import annotations

import yaml

from medssl.cli import main

TINY = ["--data", "synthetic:lesions2d@16?n=40", "--backbone", "resnet10", "--width", "0.125", "--batch-size", "16",
        "--epochs", "1", "--max-steps", "1", "--accelerator", "cpu", "--no-progress"]


def test_method_args_are_recorded_in_the_run_config(tmp_path):
    out = tmp_path / "run"
    assert main(["pretrain", *TINY, "--method", "simclr", "--out", str(out),
                 "--method-args", "temperature=0.5,crop_scale=[0.3, 1],blur_p=0"]) == 0
    config = yaml.safe_load((out / "config.yaml").read_text())
    assert config["method_args"] == {"temperature": 0.5, "crop_scale": [0.3, 1.0], "blur_p": 0.0}


def test_a_bad_method_argument_is_one_line_listing_the_valid_keys(tmp_path, capsys):
    out = tmp_path / "run"
    assert main(["pretrain", *TINY, "--method", "moco", "--out", str(out), "--method-args", "queue=8"]) == 2
    lines = [line for line in capsys.readouterr().err.splitlines() if line.strip()]
    assert len(lines) == 1 and "unknown method argument 'queue'" in lines[0]
    assert "queue_size" in lines[0] and "temperature" in lines[0] and "crop_scale" in lines[0]
    assert not out.exists()


def test_methods_args_lists_each_methods_hyperparameters_with_defaults(capsys):
    assert main(["methods", "--args"]) == 0
    out = capsys.readouterr().out.splitlines()
    simclr = out.index(next(line for line in out if line.startswith("simclr ")))
    listed = [line.strip() for line in out[simclr + 1:] if line.startswith(" ")]
    assert listed[:3] == ["temperature=0.2", "projection_dim=128", "crop_scale=[0.4, 1.0]"]
