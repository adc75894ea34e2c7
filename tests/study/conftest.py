from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from medssl.study.runner import run_study
from medssl.study.spec import StudySpec, parse_spec

DATA = "synthetic:lesions2d@16?n=200"


def tiny_raw(**overrides: object) -> dict:
    """Two methods x two fractions x two seeds on tiny synthetic images: 2 pre-trainings + 8 fine-tunings."""
    raw = {
        "name": "tiny",
        "datasets": [DATA],
        "methods": ["scratch", "rotation"],
        "backbones": ["resnet10x0.25"],
        "label_fractions": [0.5, 1.0],
        "seeds": 2,
        "pretrain": {"epochs": 1, "batch_size": 32, "seed": "same"},
        "finetune": {"epochs": 1, "batch_size": 16, "min_samples_per_epoch": 32},
    }
    raw.update(overrides)
    return raw


def tiny_spec(**overrides: object) -> StudySpec:
    return parse_spec(tiny_raw(**overrides))


def write_spec(path: Path, **overrides: object) -> Path:
    path.write_text(yaml.safe_dump(tiny_raw(**overrides)))
    return path


@pytest.fixture(scope="session")
def finished_study(tmp_path_factory) -> tuple[StudySpec, Path]:
    """One tiny study run to completion, shared by the report and re-run tests (read-only for them)."""
    root = tmp_path_factory.mktemp("study")
    spec = tiny_spec(seeds=3)
    outcome = run_study(spec, root / "results.db", root / "runs")
    assert not outcome.failures, outcome.failures
    return spec, root / "results.db"


from tests.study.postgres import pg_url, postgres_server  # noqa: E402, F401  (fixtures)


@pytest.fixture(params=["sqlite", "postgresql"])
def db_url(request, tmp_path) -> str:
    """A fresh study database of each backend: a SQLite file path, then a PostgreSQL URL."""
    if request.param == "sqlite":
        return str(tmp_path / "results.db")
    return request.getfixturevalue("pg_url")
