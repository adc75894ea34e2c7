"""The CLI answers `--help` and bad flags without importing the training stack: building the parser must not
import MONAI, lightly, Lightning, scikit-learn, matplotlib or SQLAlchemy (MONAI alone took ~10 s here)."""

from __future__ import annotations

import subprocess
import sys

from tests.reliability.helpers import cli_env

HEAVY = ("monai", "lightly", "pytorch_lightning", "sklearn", "matplotlib", "sqlalchemy")


def test_building_the_parser_imports_none_of_the_heavy_libraries():
    probe = ("import sys\nfrom medssl.cli import build_parser\nbuild_parser()\n"
             f"print(','.join(m for m in {HEAVY!r} if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", probe], env=cli_env(), capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.strip() == ""
