"""``medssl study launch``: local submitit workers run a study to completion; on SLURM the job array submitit
submits asks for what was given (inspected through stand-ins for ``srun``/``sbatch``: there is no cluster here)."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest
from submitit.core.utils import DelayedSubmission

from medssl.cli import main
from medssl.errors import MedsslError
from medssl.study.launch import Resources, launch, parse_time, worker_job
from medssl.study.runner import register_study
from tests.study.conftest import tiny_spec, write_spec
from tests.study.test_runner import _rows

ROOT = Path(__file__).resolve().parents[2]
TINY = {"label_fractions": [1.0], "seeds": 1}  # one encoder, two fine-tunings


def test_local_workers_run_a_study_to_completion(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("PYTHONPATH", str(ROOT / "src"))  # the workers are fresh interpreters
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    spec = write_spec(tmp_path / "spec.yaml", **TINY)
    db, runs = tmp_path / "results.db", tmp_path / "runs"
    assert main(["study", "launch", str(spec), "--db", str(db), "--runs", str(runs), "--executor", "local",
                 "--workers", "2", "--time", "10"]) == 0
    assert "3/3 cells done" in capsys.readouterr().out
    assert _rows(db, "SELECT status, COUNT(*), MAX(attempts) FROM cells GROUP BY status") == [("done", 3, 1)]
    assert len(list(runs.glob("*/*/*/metrics.json"))) == 3  # under the shared run root
    assert len(list((runs / "submitit").glob("*_log.out"))) == 2  # two worker jobs
    assert main(["study", "launch", str(spec), "--db", str(db), "--runs", str(runs), "--executor", "local",
                 "--workers", "2"]) == 0
    assert "nothing to launch" in capsys.readouterr().out
    assert len(list((runs / "submitit").glob("*_log.out"))) == 2  # no worker started for a finished study


def _fake_slurm(folder: Path) -> Path:
    """``srun`` (submitit's cluster check) and an ``sbatch`` that keeps the script it is given."""
    folder.mkdir()
    (folder / "srun").write_text("#!/bin/sh\nexit 0\n")
    (folder / "sbatch").write_text(f"#!/bin/sh\ncp \"$1\" {folder}/submitted.sh\necho 'Submitted batch job 4242'\n")
    for tool in ("srun", "sbatch"):
        (folder / tool).chmod(stat.S_IRWXU)
    return folder


def test_slurm_submits_one_job_array_with_the_requested_resources(tmp_path, monkeypatch, capsys):
    bin_dir = _fake_slurm(tmp_path / "bin")
    monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}{os.environ['PATH']}")
    spec_path = write_spec(tmp_path / "spec.yaml", **TINY)
    db, runs = tmp_path / "results.db", tmp_path / "runs"
    assert main(["study", "launch", str(spec_path), "--db", str(db), "--runs", str(runs), "--executor", "slurm",
                 "--workers", "3", "--gpus-per-worker", "2", "--cpus-per-worker", "8", "--partition", "gpu",
                 "--time", "1-12:00:00"]) == 0
    out = capsys.readouterr().out
    assert "job(s) 4242" in out and "study status" in out
    script = (bin_dir / "submitted.sh").read_text().splitlines()
    for line in ("#SBATCH --array=0-2%3", "#SBATCH --gpus-per-node=2", "#SBATCH --cpus-per-task=8",
                 "#SBATCH --partition=gpu", "#SBATCH --time=2160", "#SBATCH --nodes=1",
                 "#SBATCH --ntasks-per-node=1", "#SBATCH --job-name=medssl-tiny"):
        assert line in script
    # each array task runs the worker loop on this database and study; the cells wait for them
    spec = tiny_spec(**TINY)
    pickles = sorted((runs / "submitit").glob("4242_*_submitted.pkl"))
    assert len(pickles) == 3
    for path in pickles:
        task = DelayedSubmission.load(path)
        assert task.function is worker_job and task.args == (str(db.resolve()), spec.hash, 120.0)
    assert _rows(db, "SELECT status, COUNT(*) FROM cells GROUP BY status") == [("pending", 3)]


def test_a_database_holding_another_spec_of_the_study_is_refused_before_writing(tmp_path, capsys):
    db, runs = tmp_path / "results.db", tmp_path / "runs"
    register_study(tiny_spec(**TINY), db, runs).close()  # launched before, its workers still to come
    before = _rows(db, "SELECT * FROM cells ORDER BY key"), _rows(db, "SELECT * FROM studies")
    capsys.readouterr()
    other = write_spec(tmp_path / "other.yaml", **{**TINY, "seeds": 2})
    assert main(["study", "launch", str(other), "--db", str(db), "--runs", str(runs), "--executor", "local",
                 "--workers", "1"]) == 2
    error = capsys.readouterr().err.strip()
    assert "holds study 'tiny' with another spec" in error and "\n" not in error
    assert (_rows(db, "SELECT * FROM cells ORDER BY key"), _rows(db, "SELECT * FROM studies")) == before


def test_time_limits_and_resources_are_checked():
    assert [parse_time(t) for t in ("90", "1:30", "1:30:00", "2-00:00:00", "1-2", "0:0:1")] == [90, 2, 90, 2880,
                                                                                               1560, 1]
    with pytest.raises(MedsslError, match="time limit"):
        parse_time("soon")
    with pytest.raises(MedsslError, match="workers must be >= 1"):
        launch(tiny_spec(), "unused.db", "runs", executor="local", resources=Resources(workers=0))
