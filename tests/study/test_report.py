"""The report: its numbers are the database's, its plots are real images, its findings follow the CIs."""

from __future__ import annotations

import base64
import io
import math
import re
import sqlite3
from collections import defaultdict

import numpy as np
import pytest
from PIL import Image

from medssl.study.report import findings, write_report
from medssl.study.stats import Comparison, Paired


@pytest.fixture(scope="module")
def report(finished_study, tmp_path_factory):
    _, db = finished_study
    out = tmp_path_factory.mktemp("report") / "report.html"
    built = write_report(db, out)
    return built, out.read_text(), out.with_suffix(".md").read_text(), db


def _md_table(markdown: str, first_column: str, marker: str) -> list[dict]:
    lines = markdown.splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith(f"| {first_column} |") and marker in line)
    header = [c.strip() for c in lines[start].strip("|").split("|")]
    rows = []
    for line in lines[start + 2:]:
        if not line.startswith("|"):
            break
        rows.append(dict(zip(header, [c.strip() for c in line.strip("|").split("|")], strict=True)))
    return rows


def test_report_numbers_match_the_database(report):
    _, _, markdown, db = report
    conn = sqlite3.connect(db)
    by_condition = defaultdict(list)
    for method, fraction, seed, auc, recall in conn.execute(
            "SELECT method, label_fraction, seed, test_auc, minority_recall FROM results WHERE kind='finetune'"):
        by_condition[(method, fraction)].append((seed, auc, recall))
    conn.close()
    table = _md_table(markdown, "dataset", "auc_mean")
    assert len(table) == len(by_condition) == 4
    for row in table:
        values = by_condition[(row["method"], float(row["label_fraction"]))]
        assert int(row["n"]) == len(values) == 3
        assert float(row["auc_mean"]) == pytest.approx(np.mean([v[1] for v in values]), abs=5e-5)
        assert float(row["auc_sd"]) == pytest.approx(np.std([v[1] for v in values], ddof=1), abs=5e-5)
        assert float(row["minority_recall_mean"]) == pytest.approx(np.mean([v[2] for v in values]), abs=5e-5)
        low, high = (float(v) for v in row["auc_ci95"].strip("[]").split(","))
        assert low - 5e-5 <= float(row["auc_mean"]) <= high + 5e-5
    paired = _md_table(markdown, "dataset", "delta_auc")
    assert [r["method"] for r in paired] == ["rotation", "rotation"]
    for row in paired:
        fraction = float(row["label_fraction"])
        ssl = {s: a for s, a, _ in by_condition[("rotation", fraction)]}
        scratch = {s: a for s, a, _ in by_condition[("scratch", fraction)]}
        assert float(row["delta_auc"]) == pytest.approx(np.mean([ssl[s] - scratch[s] for s in ssl]), abs=5e-5)
        assert row["wins"] == f"{sum(ssl[s] > scratch[s] for s in ssl)}/3"


def test_html_is_self_contained_and_every_plot_is_a_real_image(report):
    built, html, _, _ = report
    assert not re.search(r"""(src|href)=['"](?!data:)""", html)  # nothing to fetch
    pngs = re.findall(r"src='data:image/png;base64,([A-Za-z0-9+/=]+)'", html)
    assert len(pngs) == len(built.figures) >= 4
    for encoded in pngs:
        image = np.asarray(Image.open(io.BytesIO(base64.b64decode(encoded))).convert("L"), dtype=np.float64)
        assert min(image.shape) > 150
        assert image.std() > 10 and len(np.unique(image)) > 20  # drawn content, not a blank canvas
    for finding in built.findings:
        assert finding in html.replace("&#x27;", "'")


def _comparison(diff: float, low: float, high: float, n: int = 5, fraction: float = 0.1) -> Comparison:
    condition = {"dataset": "d", "upstream": "d", "method": "simclr", "backbone": "r", "label_fraction": fraction,
                 "imbalance_ratio": None, "policy": "default"}
    auc = Paired(n, diff, low, high, 0.06, n)
    return Comparison(condition, auc, Paired(n, 0.0, math.nan, math.nan, math.nan, 0))


def test_findings_claim_a_difference_only_when_the_interval_excludes_zero():
    spec = {"policies": ["default"], "backbones": [{}], "datasets": ["d"]}
    lines = findings([_comparison(0.01, -0.02, 0.04), _comparison(0.04, 0.01, 0.07)], spec)
    assert lines[0] == "simclr beats scratch at 10 % labels by +0.040 AUC [+0.010, +0.070] " \
                       "(5 paired seeds, Wilcoxon p = 0.06)."
    assert "inconclusive" in lines[1] and "beats" not in lines[1]
    worse = findings([_comparison(-0.05, -0.08, -0.02, fraction=1.0)], spec)
    assert worse[0].startswith("simclr is worse than scratch at 100 % labels by -0.050 AUC")
    few = findings([_comparison(0.2, 0.1, 0.3, n=2)], spec)
    assert "too few for a verdict" in few[0]


def test_plots_render_in_a_headless_browser(report, tmp_path):
    """Needs Chromium (apt-get install chromium); the PIL check above runs everywhere."""
    import subprocess
    import sys
    from pathlib import Path

    script = Path(__file__).resolve().parents[2] / "benchmarks" / "study_report_screenshot.py"
    _, html, _, _ = report
    page = tmp_path / "report.html"
    page.write_text(html)
    result = subprocess.run([sys.executable, str(script), str(page), "--png", str(tmp_path / "shot.png")],
                            capture_output=True, text=True, timeout=300)
    if result.returncode == 3:
        pytest.skip("no headless chromium installed (apt-get install chromium)")
    assert result.returncode == 0, result.stdout + result.stderr
    assert "rendered" in result.stdout
