"""Kill a training subprocess (SIGKILL), run the same command again: it resumes from checkpoints/last.ckpt and
ends with the metrics of an uninterrupted run (CPU, one thread, same seed). Timing entries aside, equal:
the checkpoint carries weights, optimizer, LR schedule, every RNG state and the loader's position, and each
epoch's data order is a function of (seed, epoch)."""

from __future__ import annotations

import json
import signal
import time
from pathlib import Path

import pytest
import pytorch_lightning as pl
import torch

from medssl import api, training
from medssl.cli import main
from medssl.config import PretrainConfig
from medssl.data.sources import load_data
from medssl.runio import LAST_CHECKPOINT, comparable_metrics
from tests.reliability.helpers import TINY, spawn_cli

PRETRAIN = ["pretrain", *TINY, "--epochs", "12", "--seed", "1"]
FINETUNE = ["finetune", *TINY, "--checkpoint", "scratch", "--epochs", "5", "--seed", "1"]


def _metrics(run: Path) -> dict:
    return comparable_metrics(json.loads((run / "metrics.json").read_text()))


def _kill_after_first_checkpoint(args: list[str], run: Path, also_wait_for: str | None = None) -> dict:
    """Start the CLI, SIGKILL it as soon as a checkpoint (and ``also_wait_for``, a path under the run) exists;
    return that checkpoint's position."""
    process = spawn_cli([*args, "--out", str(run)])
    checkpoint = run / LAST_CHECKPOINT
    awaited = [checkpoint] + ([run / also_wait_for] if also_wait_for else [])
    deadline = time.monotonic() + 240
    while not all(path.exists() for path in awaited):
        assert process.poll() is None, process.communicate()[1][-2000:]
        assert time.monotonic() < deadline, "no checkpoint within 240 s"
        time.sleep(0.01)
    process.send_signal(signal.SIGKILL)
    process.communicate()
    assert not (run / "metrics.json").exists()
    state = torch.load(checkpoint, weights_only=True)
    return {"epoch": state["loops"]["fit_loop"]["epoch_progress"]["current"]["processed"],
            "batches_done": state["callbacks"]["ResumableRun"]["loader"]["batches_done"],
            "step": state["global_step"]}


@pytest.fixture(scope="module")
def uninterrupted_pretraining(tmp_path_factory) -> dict:
    run = tmp_path_factory.mktemp("ref") / "pre"
    assert main([*PRETRAIN, "--out", str(run)]) == 0
    return _metrics(run)


def test_pretraining_killed_at_an_epoch_boundary_resumes_to_identical_metrics(tmp_path, uninterrupted_pretraining):
    run = tmp_path / "pre"
    # Lightning writes an epoch's metrics row just after the epoch-end checkpoint: wait for the log too
    position = _kill_after_first_checkpoint(PRETRAIN, run, also_wait_for="logs/metrics.csv")
    assert position["step"] < 12 * 3  # killed before the end
    assert main([*PRETRAIN, "--out", str(run)]) == 0  # same command: resumes by itself
    assert _metrics(run) == uninterrupted_pretraining
    assert list((run / "logs").glob("metrics.attempt1.csv"))  # the killed attempt's log is kept


def test_pretraining_killed_mid_epoch_resumes_to_identical_metrics(tmp_path, uninterrupted_pretraining):
    args = [*PRETRAIN, "--checkpoint-every", "1"]
    run = tmp_path / "pre"
    position = _kill_after_first_checkpoint(args, run)
    assert position["epoch"] < 11  # the interrupted epoch is not the last (see the next test for that)
    assert main([*args, "--out", str(run), "--resume"]) == 0
    assert _metrics(run) == uninterrupted_pretraining


def test_finetuning_killed_resumes_to_identical_test_metrics(tmp_path):
    run = tmp_path / "ft"
    _kill_after_first_checkpoint(FINETUNE, run)
    assert main([*FINETUNE, "--out", str(run)]) == 0
    assert main([*FINETUNE, "--out", str(tmp_path / "ref")]) == 0
    resumed, reference = _metrics(run), _metrics(tmp_path / "ref")
    assert resumed == reference and resumed["test"]["auc"] == reference["test"]["auc"]


class _Killed(Exception):
    pass


class _Crash(pl.Callback):
    def __init__(self, step: int) -> None:
        self.step = step

    def on_train_batch_start(self, trainer: pl.Trainer, *args: object) -> None:
        if trainer.global_step == self.step:
            raise _Killed  # as a kill would: the checkpoint of the previous step is on disk


def _pretrain_crashing_at(step: int | None, out: Path, monkeypatch: pytest.MonkeyPatch) -> dict:
    make = training.make_trainer
    crash = [] if step is None else [_Crash(step)]
    monkeypatch.setattr(api, "make_trainer", lambda *a, callbacks=(), **k: make(*a, callbacks=[*crash, *callbacks],
                                                                                  **k))
    config = PretrainConfig(data="synthetic", out=str(out), backbone="resnet10", width=0.25, batch_size=32,
                            epochs=3, accelerator="cpu", checkpoint_every_n_steps=1, seed=2)
    return api.pretrain(config, data=load_data("synthetic:lesions2d@16?n=200"), progress=False).metrics


def test_mid_epoch_resume_in_the_last_epoch_reproduces_all_but_that_epochs_logged_mean(tmp_path, monkeypatch):
    """Lightning keeps no running epoch means in a checkpoint: when the interrupted epoch is the last one,
    its logged train means cover only the batches after the resume. Weights, steps and the data seen are
    still those of the uninterrupted run (here 3 steps per epoch, crash before step 7 of 9: the last epoch's
    mean covers 2 of its 3 batches; measured loss 4.503 against 4.444, i.e. within the batch-to-batch spread)."""
    reference = _pretrain_crashing_at(None, tmp_path / "ref", monkeypatch)
    with pytest.raises(_Killed):
        _pretrain_crashing_at(7, tmp_path / "run", monkeypatch)
    resumed = _pretrain_crashing_at(None, tmp_path / "run", monkeypatch)
    assert resumed["steps"] == reference["steps"]
    ref_encoder = torch.load(tmp_path / "ref" / "encoder.pt", weights_only=True)
    run_encoder = torch.load(tmp_path / "run" / "encoder.pt", weights_only=True)
    assert all(torch.equal(ref_encoder[k], run_encoder[k]) for k in ref_encoder)
    assert resumed["train"]["loss"] == pytest.approx(reference["train"]["loss"], rel=0.05)


def test_two_runs_with_one_seed_give_identical_metrics(tmp_path, uninterrupted_pretraining):
    assert main([*PRETRAIN, "--out", str(tmp_path / "again")]) == 0
    assert _metrics(tmp_path / "again") == uninterrupted_pretraining


def test_resume_of_a_finished_run_or_with_another_config_is_one_clear_line(tmp_path, capsys):
    run = tmp_path / "pre"
    args = ["pretrain", *TINY, "--epochs", "1"]
    assert main([*args, "--out", str(run)]) == 0
    capsys.readouterr()
    assert main([*args, "--out", str(run), "--resume"]) == 2
    assert "nothing to resume" in capsys.readouterr().err
    (run / "metrics.json").unlink()  # as if killed after its last checkpoint
    assert main([*args, "--out", str(run), "--lr", "0.1"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "different config (lr)" in err
    assert main([*args, "--out", str(run)]) == 0  # the last checkpoint completes the run
    assert json.loads((run / "metrics.json").read_text())["train"]["loss"] > 0


SEGMENT = ["finetune", "--task", "segment", "--data", "synthetic:blobs2d@32?n=20", "--checkpoint", "scratch",
           "--backbone", "resnet10", "--width", "0.25", "--batch-size", "8", "--patch-size", "32", "--epochs", "4",
           "--steps-per-epoch", "10", "--lr", "0.003", "--seed", "3", "--accelerator", "cpu", "--no-progress"]


@pytest.mark.parametrize("mid_epoch", [False, True], ids=["epoch-boundary", "mid-epoch"])
def test_segmentation_killed_resumes_to_identical_metrics(tmp_path, mid_epoch):
    """The patch sampler's generator, the best-so-far weights and the validation history travel in the
    checkpoint: a killed segmentation run finishes exactly as an uninterrupted one."""
    args = [*SEGMENT, "--checkpoint-every", "2"] if mid_epoch else SEGMENT
    run = tmp_path / "seg"
    position = _kill_after_first_checkpoint(args, run)
    assert position["step"] < 4 * 10
    if mid_epoch:
        assert position["step"] == 2 and position["batches_done"] == 2  # inside the first epoch
    assert main([*args, "--out", str(run)]) == 0
    assert main([*args, "--out", str(tmp_path / "ref")]) == 0
    resumed, reference = _metrics(run), _metrics(tmp_path / "ref")
    assert resumed == reference and len(resumed["val_history"]) == 4
    assert resumed["test"]["dice"] > 0.4  # it learned something (an all-foreground guess scores ~0.2)
    weights = [torch.load(r / "segmenter.pt", weights_only=True) for r in (run, tmp_path / "ref")]
    assert all(torch.equal(weights[0][k], weights[1][k]) for k in weights[0])
