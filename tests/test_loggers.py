"""Trackers and logs: TensorBoard event files and a local MLflow run named and tagged from the config; a run whose
output goes to a file prints one line per epoch, never a carriage-return progress bar."""

from __future__ import annotations

import subprocess
import sys

import yaml

from tests.reliability.helpers import cli_env

TINY = ["--data", "synthetic:lesions2d@16?n=40", "--backbone", "resnet10", "--width", "0.125", "--batch-size", "16",
        "--accelerator", "cpu", "--method", "rotation"]


def test_tensorboard_and_mlflow_loggers_and_a_line_per_epoch_in_a_log_file(tmp_path):
    out, log = tmp_path / "run", tmp_path / "output.log"
    with log.open("w") as stream:  # stdout and stderr into a file, as under nohup or a batch scheduler
        result = subprocess.run([sys.executable, "-m", "medssl.cli", "pretrain", *TINY, "--epochs", "2",
                                 "--out", str(out), "--logger", "tensorboard,mlflow,csv"],
                                env=cli_env(), stdout=stream, stderr=subprocess.STDOUT, timeout=300)
    text = log.read_text()
    assert result.returncode == 0, text
    assert "\r" not in text
    epoch_lines = [line for line in text.splitlines() if line.startswith("epoch ")]
    assert [line.split()[1] for line in epoch_lines] == ["1/2", "2/2"] and "train/loss" in epoch_lines[0]
    assert list((out / "tensorboard").glob("events.out.tfevents.*"))
    assert (out / "logs" / "metrics.csv").is_file()
    [meta] = (out / "mlruns").glob("*/*/meta.yaml")  # one experiment, one run, in the local file store
    run = meta.parent
    assert yaml.safe_load(meta.read_text())["run_name"] == "run"
    assert (run / "tags" / "method").read_text() == "rotation"
    assert (run / "metrics" / "train" / "loss").is_file()


def test_an_unknown_logger_is_one_line(tmp_path):
    result = subprocess.run([sys.executable, "-m", "medssl.cli", "pretrain", *TINY, "--epochs", "1",
                             "--out", str(tmp_path / "run"), "--logger", "wandb"], env=cli_env(),
                            capture_output=True, text=True, timeout=300)
    assert result.returncode == 2
    assert result.stderr.strip() == "medssl: error: unknown logger 'wandb'; choose from csv, tensorboard, mlflow"
    assert not (tmp_path / "run").exists()
