"""Run directories: atomic writes that survive a full disk, resume decisions, refusal of hostile checkpoints."""

from __future__ import annotations

import errno
from pathlib import Path

import pytest
import torch

from medssl.errors import MedsslError
from medssl.runio import (
    LAST_CHECKPOINT,
    atomic_save,
    check_training_checkpoint,
    comparable_metrics,
    load_state,
    open_run_dir,
    save_state,
    write_bytes,
    write_json,
    write_yaml,
)


def _disk_full_after_some_bytes(monkeypatch: pytest.MonkeyPatch) -> None:
    """torch.save writes half the file, then the disk is full."""
    real_save = torch.save

    def save(obj, f, *args, **kwargs):
        real_save(obj, f, *args, **kwargs)
        data = Path(f).read_bytes()
        Path(f).write_bytes(data[: len(data) // 2])
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(torch, "save", save)


def test_full_disk_while_saving_weights_keeps_the_old_file_and_leaves_no_partial_one(tmp_path, monkeypatch):
    target = tmp_path / "encoder.pt"
    save_state(target, {"w": torch.ones(3)})
    _disk_full_after_some_bytes(monkeypatch)
    with pytest.raises(MedsslError, match="No space left on device"):
        save_state(target, {"w": torch.zeros(1000)})
    assert torch.equal(load_state(target)["w"], torch.ones(3))
    assert [p.name for p in tmp_path.iterdir()] == ["encoder.pt"]  # no temp file left behind


def test_full_disk_while_writing_a_first_checkpoint_leaves_nothing_that_reads_as_valid(tmp_path, monkeypatch):
    target = tmp_path / LAST_CHECKPOINT
    _disk_full_after_some_bytes(monkeypatch)
    with pytest.raises(MedsslError):
        atomic_save(target, {"state_dict": {}, "loops": {}, "optimizer_states": []})
    assert not target.exists() and list(target.parent.iterdir()) == []


def test_text_writes_are_atomic_on_a_full_disk(tmp_path, monkeypatch):
    target = tmp_path / "metrics.json"
    write_json(target, {"a": 1})

    def full(self, text, *args, **kwargs):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(Path, "write_text", full)
    with pytest.raises(MedsslError):
        write_json(target, {"a": 2})
    monkeypatch.undo()
    assert target.read_text().strip() == '{\n  "a": 1\n}'


class _Exploit:
    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (Path.touch, (self.marker,))


def test_checkpoint_that_would_run_code_is_refused_unexecuted(tmp_path):
    marker = tmp_path / "pwned"
    path = tmp_path / "last.ckpt"
    torch.save({"state_dict": {}, "loops": {}, "optimizer_states": [], "x": _Exploit(marker)}, path)
    with pytest.raises(MedsslError, match="not a readable training checkpoint"):
        check_training_checkpoint(path)
    with pytest.raises(MedsslError):
        load_state(path)
    assert not marker.exists()


@pytest.mark.parametrize("content", [b"", b"garbage", b"PK\x03\x04truncated"])
def test_corrupt_or_truncated_checkpoint_is_refused(tmp_path, content):
    path = tmp_path / "last.ckpt"
    path.write_bytes(content)
    with pytest.raises(MedsslError):
        check_training_checkpoint(path)


def test_foreign_checkpoint_without_training_state_is_refused(tmp_path):
    path = tmp_path / "last.ckpt"
    torch.save({"weights": torch.ones(2)}, path)
    with pytest.raises(MedsslError, match="not a medssl training checkpoint"):
        check_training_checkpoint(path)
    torch.save({"state_dict": {}, "loops": {}, "optimizer_states": [], "callbacks": {}}, path)
    with pytest.raises(MedsslError, match="without RNG and data-order state"):
        check_training_checkpoint(path)


IDENTITY = {"kind": "pretrain", "seed": 0, "lr": 0.001, "window": (1.0, 2.0), "devices": 1, "out": "x"}


def _unfinished(run: Path, identity: dict, with_checkpoint: bool = True) -> None:
    run.mkdir()
    write_yaml(run / "config.yaml", identity)
    if with_checkpoint:
        atomic_save(run / LAST_CHECKPOINT, {"state_dict": {}, "loops": {}, "optimizer_states": [],
                                            "callbacks": {"ResumableRun": {}}})


def test_fresh_dir_starts_a_new_run(tmp_path):
    assert open_run_dir(tmp_path / "new", IDENTITY, overwrite=False, resume=False) is None
    assert (tmp_path / "new").is_dir()


def test_unfinished_run_of_the_same_config_resumes_even_on_other_devices(tmp_path):
    run = tmp_path / "run"
    _unfinished(run, IDENTITY)
    other_execution = {**IDENTITY, "devices": 4, "out": "elsewhere"}
    assert open_run_dir(run, other_execution, overwrite=False, resume=False) == run / LAST_CHECKPOINT
    assert open_run_dir(run, other_execution, overwrite=False, resume=True) == run / LAST_CHECKPOINT


def test_unfinished_run_of_another_config_is_an_error_naming_the_fields(tmp_path):
    run = tmp_path / "run"
    _unfinished(run, IDENTITY)
    with pytest.raises(MedsslError, match=r"different config \(lr, seed\)"):
        open_run_dir(run, {**IDENTITY, "lr": 0.1, "seed": 3}, overwrite=False, resume=False)
    assert (run / LAST_CHECKPOINT).exists()  # nothing was discarded


def test_overwrite_discards_an_unfinished_run(tmp_path):
    run = tmp_path / "run"
    _unfinished(run, IDENTITY)
    assert open_run_dir(run, {**IDENTITY, "lr": 0.1}, overwrite=True, resume=False) is None
    assert list(run.iterdir()) == []


def test_finished_run_needs_overwrite_and_cannot_be_resumed(tmp_path):
    run = tmp_path / "run"
    _unfinished(run, IDENTITY)
    write_json(run / "metrics.json", {})
    with pytest.raises(MedsslError, match="finished run"):
        open_run_dir(run, IDENTITY, overwrite=False, resume=False)
    with pytest.raises(MedsslError, match="nothing to resume"):
        open_run_dir(run, IDENTITY, overwrite=False, resume=True)


def test_resume_without_a_checkpoint_is_an_error_but_a_plain_rerun_starts_afresh(tmp_path):
    run = tmp_path / "run"
    _unfinished(run, IDENTITY, with_checkpoint=False)
    with pytest.raises(MedsslError, match="nothing to resume"):
        open_run_dir(run, IDENTITY, overwrite=False, resume=True)
    assert open_run_dir(run, IDENTITY, overwrite=False, resume=False) is None


def test_hostile_checkpoint_in_an_unfinished_run_is_refused_before_resuming(tmp_path):
    run = tmp_path / "run"
    _unfinished(run, IDENTITY, with_checkpoint=False)
    marker = tmp_path / "pwned"
    (run / LAST_CHECKPOINT).parent.mkdir()
    torch.save({"state_dict": {}, "loops": {}, "optimizer_states": [], "x": _Exploit(marker)}, run / LAST_CHECKPOINT)
    with pytest.raises(MedsslError, match="--overwrite"):
        open_run_dir(run, IDENTITY, overwrite=False, resume=False)
    assert not marker.exists()


def test_comparable_metrics_drop_timings_at_any_depth():
    metrics = {"train": {"loss": 1.0, "duration_s": 3.0}, "images_per_second": 9.0, "steps": 4}
    assert comparable_metrics(metrics) == {"train": {"loss": 1.0}, "steps": 4}


def test_atomic_writes_get_the_mode_of_an_ordinary_file_not_the_temp_files_0600(tmp_path):
    import os

    umask = os.umask(0o022)
    try:
        write_bytes(tmp_path / "report.html", b"<html></html>")
        assert (tmp_path / "report.html").stat().st_mode & 0o777 == 0o644
    finally:
        os.umask(umask)
