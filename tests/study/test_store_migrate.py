"""``medssl study migrate``: a finished study copied SQLite -> (SQLite | PostgreSQL) -> SQLite loses nothing;
a target that already holds the study, or an unreachable one, is refused in one line with nothing written."""

from __future__ import annotations

import shutil

from medssl.cli import main
from medssl.study import report
from medssl.study.migrate import dump
from medssl.study.store import Store


def _everything(db) -> dict[str, list]:
    store = Store(db, create=False)
    try:
        tables = dump(store, [s["spec_hash"] for s in store.studies()])
    finally:
        store.close()
    return {table.name: sorted(rows, key=lambda r: sorted((k, str(v)) for k, v in r.items()))
            for table, rows in tables.items()}


def test_a_finished_study_round_trips_without_loss(finished_study, db_url, tmp_path, capsys):
    _, source = finished_study
    back = tmp_path / "back.db"
    assert main(["study", "migrate", "--from", str(source), "--to", db_url]) == 0
    assert main(["study", "migrate", "--from", db_url, "--to", str(back)]) == 0
    original, copied = _everything(source), _everything(back)
    assert len(original["results"]) == 15 and len(original["metric_values"]) > 15 * 5
    assert copied == original
    assert report.build(back).tables == report.build(source).tables
    assert "copied 1 study(ies)" in capsys.readouterr().out


def test_a_target_holding_the_study_or_unreachable_is_refused_with_nothing_written(finished_study, tmp_path,
                                                                                   capsys):
    _, finished = finished_study
    source = tmp_path / "source.db"
    shutil.copy(finished, source)
    target = tmp_path / "target.db"
    assert main(["study", "migrate", "--from", str(source), "--to", str(target)]) == 0
    before = _everything(target)
    capsys.readouterr()
    assert main(["study", "migrate", "--from", str(source), "--to", str(target)]) == 2
    assert _everything(target) == before
    assert main(["study", "migrate", "--from", str(source), "--to", "postgresql://nobody@127.0.0.1:1/none"]) == 2
    assert main(["study", "migrate", "--from", str(tmp_path / "missing.db"), "--to", str(target)]) == 2
    errors = capsys.readouterr().err.splitlines()
    assert len(errors) == 3 and "already holds study" in errors[0] and "cannot open study database" in errors[1]
    assert "not found" in errors[2]
