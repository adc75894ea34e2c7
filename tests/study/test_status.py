"""``medssl study status``: a study with cells in every state is shown as it stands, per axis, with an ETA
from the measured durations."""

from __future__ import annotations

import json
import time

import pytest

from medssl.cli import main
from medssl.errors import MedsslError
from medssl.study.runner import plan
from medssl.study.status import format_status, show, study_status
from medssl.study.store import Store
from tests.study.conftest import tiny_spec


def _finish(store: Store, key: str, kind: str, seconds: float) -> None:
    now = time.time()
    store.finish(key, {"kind": kind, "spec_hash": "h", "config": "{}", "run_dir": "/r", "started_at": now - seconds,
                       "finished_at": now, "metrics": json.dumps({"test": {"auc": 0.5}})})


@pytest.fixture
def busy_study(db_url, tmp_path):
    """2 encoders + 8 fine-tunings: one encoder done (10 s), one failed (its 2 users fail with it), a scratch
    fine-tuning done (4 s), one running, 4 waiting."""
    spec = tiny_spec()
    store = Store(db_url)
    store.register(spec.hash, spec.name, spec.to_dict(), plan(spec, tmp_path / "runs"))
    encoder = store.claim(spec.hash, "w1")
    _finish(store, encoder.key, "pretrain", 10.0)
    broken = store.claim(spec.hash, "w1")
    store.fail(broken.key, "w1", "RuntimeError: out of memory")
    scratch = store.claim(spec.hash, "w2")
    _finish(store, scratch.key, "finetune", 4.0)
    running = store.claim(spec.hash, "w3")
    yield db_url, store, running
    store.close()


def test_status_shows_every_state_per_axis_with_an_eta(busy_study):
    _, store, running = busy_study
    status = study_status(store)
    assert dict(status.counts) == {"done": 2, "failed": 3, "running": 1, "waiting": 4}
    assert dict(status.pretrain) == {"done": 1, "failed": 1}
    [shown] = status.running
    assert (shown.key, shown.worker, shown.attempt) == (running.key, "w3", 1) and 0 <= shown.for_s < 30
    errors = dict(status.failed)
    assert "RuntimeError: out of memory" in errors.values()
    assert list(errors.values()).count("its pre-training cell failed") == 2
    assert {level: dict(c) for level, c in status.axes["method"].items()} == {
        "scratch": {"done": 1, "running": 1, "waiting": 2}, "rotation": {"failed": 2, "waiting": 2}}
    assert set(status.axes) == {"method", "label_fraction", "seed"}  # the axes with more than one level
    assert status.mean_s == pytest.approx({"pretrain": 10.0, "finetune": 4.0}, abs=0.01)
    # 4 waiting fine-tunings at 4 s each + what is left of the running one, on its one worker
    assert status.eta_s == pytest.approx(4 * 4.0 + 4.0 - shown.for_s, abs=0.5)
    text = format_status(status)
    assert f"{running.key}  by w3 on {store.host}" in text and "ETA 2" in text
    assert "10 cells: 2 done, 1 running, 3 failed, 4 waiting" in text


def test_the_status_command_prints_it_and_watch_is_bounded(busy_study, capsys):
    db, _, _ = busy_study
    assert main(["study", "status", "--db", db]) == 0
    once = capsys.readouterr().out
    assert "failed:" in once and "RuntimeError: out of memory" in once and "method" in once
    started = time.monotonic()
    assert main(["study", "status", "--db", db, "--watch", "--interval", "0.05", "--times", "3"]) == 0
    assert capsys.readouterr().out.count("cells by axis") == 3 and time.monotonic() - started < 10
    assert main(["study", "status", "--db", db, "--study", "nope"]) == 2
    assert "no study nope" in capsys.readouterr().err


def test_watching_a_finished_study_stops_at_once(tmp_path):
    store = Store(tmp_path / "done.db")
    spec = tiny_spec(methods=["scratch"], label_fractions=[1.0], seeds=1)
    store.register(spec.hash, spec.name, spec.to_dict(), plan(spec, tmp_path / "runs"))
    cell = store.claim(spec.hash, "w")
    _finish(store, cell.key, "finetune", 1.0)
    store.close()
    shown: list[str] = []
    status = show(tmp_path / "done.db", watch=True, interval_s=60, emit=shown.append)
    assert status.finished and status.eta_s == 0 and len(shown) == 1 and "finished" in shown[0]
    with pytest.raises(MedsslError, match="interval"):
        show(tmp_path / "done.db", watch=True, interval_s=0)
