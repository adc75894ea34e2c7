"""``medssl study``: bad specs and databases are one line and leave the DB untouched; run + report work."""

from __future__ import annotations

import subprocess

import pytest
import yaml

from medssl.cli import main
from medssl.study.store import Store
from tests.cli.test_commands import assert_one_line_error
from tests.study.conftest import tiny_raw

SEGMENT = {"task": "segment", "datasets": ["synthetic:blobs2d@16?n=8"], "finetune": {"epochs": 1}}


def _error(capsys, args: list[str], match: str) -> None:
    code = main(args)
    captured = capsys.readouterr()
    assert_one_line_error(subprocess.CompletedProcess(args, code, captured.out, captured.err), match)


@pytest.mark.parametrize(
    ("overrides", "match"),
    [
        ({"methods": ["scratch", "magic"]}, "unknown method 'magic'"),
        ({"label_fractions": [0.1, 1.2]}, "label fraction must lie in (0, 1]"),
        ({"imbalance_ratios": [0.2]}, "imbalance ratio must be >= 1"),
        ({"label_fractions": []}, "'label_fractions' is empty"),
        ({"policies": ["karma"]}, "unknown policy 'karma'"),
        ({"datasets": ["/nowhere/data.npz"]}, "not found: /nowhere/data.npz"),
        # segmentation studies: their data are checked (as mask folders) before the DB is touched too
        ({**SEGMENT, "datasets": ["/nowhere/chase"]}, "/nowhere/chase"),
        ({**SEGMENT, "datasets": ["synthetic:lesions2d"]}, "unknown synthetic segmentation set 'lesions2d'"),
        ({**SEGMENT, "imbalance_ratios": [1, 10]}, "no imbalance axis"),
        ({**SEGMENT, "finetune": {"patch_size": 4}}, "patch size must lie in [8, 1024]"),
        ({**SEGMENT, "label_counts": [2, 50], "label_fractions": None}, "label count 50 exceeds the 5 training images"),
    ],
)
def test_bad_spec_is_one_line_and_leaves_the_db_untouched(tmp_path, capsys, overrides, match):
    existing = tmp_path / "existing.db"
    Store(existing).close()
    before = existing.read_bytes()
    spec = tmp_path / "spec.yaml"
    spec.write_text(yaml.safe_dump(tiny_raw(**overrides)))
    _error(capsys, ["study", "run", str(spec), "--db", str(existing)], match)
    assert existing.read_bytes() == before
    _error(capsys, ["study", "run", str(spec), "--db", str(tmp_path / "new.db")], match)
    assert not (tmp_path / "new.db").exists() and not (tmp_path / "new-runs").exists()


def test_unreadable_db_is_one_line_and_untouched(tmp_path, capsys):
    spec = tmp_path / "spec.yaml"
    spec.write_text(yaml.safe_dump(tiny_raw()))
    garbage = tmp_path / "garbage.db"
    garbage.write_bytes(b"\x00not a database\xff" * 64)
    _error(capsys, ["study", "run", str(spec), "--db", str(garbage)], "not a readable SQLite study database")
    assert garbage.read_bytes() == b"\x00not a database\xff" * 64
    _error(capsys, ["study", "report", "--db", str(garbage), "--out", str(tmp_path / "r.html")],
           "not a readable SQLite study database")
    _error(capsys, ["study", "report", "--db", str(tmp_path / "none.db"), "--out", str(tmp_path / "r.html")],
           "study database not found")
    assert not (tmp_path / "r.html").exists()


def test_spec_or_preset_exactly_one(tmp_path, capsys):
    _error(capsys, ["study", "run", "--db", str(tmp_path / "x.db")], "exactly one of SPEC.yaml or --preset")
    _error(capsys, ["study", "run", "s.yaml", "--preset", "quick", "--db", str(tmp_path / "x.db")], "exactly one")
    _error(capsys, ["study", "run", "--preset", "huge", "--db", str(tmp_path / "x.db")], "unknown preset")


def test_study_run_then_report(tmp_path, capsys):
    spec = tmp_path / "spec.yaml"
    spec.write_text(yaml.safe_dump(tiny_raw(label_fractions=[1.0], seeds=1)))
    db = tmp_path / "results.db"
    assert main(["study", "run", str(spec), "--db", str(db)]) == 0
    assert "3/3 cells done" in capsys.readouterr().out
    assert len(list((tmp_path / "results-runs").glob("*/*/*/metrics.json"))) == 3
    assert main(["study", "report", "--db", str(db), "--out", str(tmp_path / "report.html")]) == 0
    assert "beats scratch on AUC in any of the 1 comparison(s)" in capsys.readouterr().out  # the answer, printed
    assert (tmp_path / "report.html").read_text().startswith("<!doctype html>")
    assert "rotation vs scratch at 100 % labels" in (tmp_path / "report.md").read_text()


def test_a_preset_printed_as_yaml_is_the_same_study(capsys):
    from medssl.study.presets import preset
    from medssl.study.spec import parse_spec

    assert main(["study", "presets"]) == 0
    assert "label-fractions" in capsys.readouterr().out
    assert main(["study", "presets", "--yaml", "imbalance"]) == 0
    assert parse_spec(yaml.safe_load(capsys.readouterr().out)).hash == preset("imbalance").hash
