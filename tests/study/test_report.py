"""The report: its numbers are the database's, its plots are real images, its findings follow the CIs."""

from __future__ import annotations

import base64
import io
import json
import re
import shutil
import sqlite3
from collections import defaultdict

import numpy as np
import pytest
from PIL import Image

from medssl.study.inference import Difference, two_level
from medssl.study.report import Context, build, findings, to_markdown, write_report
from medssl.study.stats import AUC, Comparison, judge
from medssl.study.store import Cell, Store


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
    table = _md_table(markdown, "method", "AUC mean")
    assert len(table) == len(by_condition) == 4
    for row in table:
        fraction = float(row["labels"].split()[0]) / 100
        values = by_condition[(row["method"], fraction)]
        assert int(row["seeds"]) == len(values) == 3
        assert float(row["AUC mean"]) == pytest.approx(np.mean([v[1] for v in values]), abs=5e-4)
        assert float(row["AUC sd"]) == pytest.approx(np.std([v[1] for v in values], ddof=1), abs=5e-4)
        assert float(row["minority recall mean"]) == pytest.approx(np.mean([v[2] for v in values]), abs=5e-4)
        low, high = (float(v) for v in row["AUC 95 % CI"].strip("[]").split(","))
        assert low - 5e-4 <= float(row["AUC mean"]) <= high + 5e-4
    paired = _md_table(markdown, "method", "Δ AUC")
    assert [r["method"] for r in paired] == ["rotation", "rotation"]
    for row in paired:
        fraction = float(row["labels"].split()[0]) / 100
        ssl = {s: a for s, a, _ in by_condition[("rotation", fraction)]}
        scratch = {s: a for s, a, _ in by_condition[("scratch", fraction)]}
        estimate, interval = row["Δ AUC [95 % CI]"].split(" ", 1)
        assert float(estimate) == pytest.approx(np.mean([ssl[s] - scratch[s] for s in ssl]), abs=5e-4)
        low, high = (float(v) for v in interval.strip(" ▲▼").strip("[]").split(","))
        assert low <= float(estimate) <= high
        assert row["verdict"] in ("better", "worse", "inconclusive") and row["Holm p"] != "–"
        # the runs kept predictions.csv: test-set noise is in the interval, DeLong is computed per seed
        assert row["CI covers"] == "seeds × test images" and row["DeLong p (median over seeds)"].endswith("< 0.05)")


def test_the_report_opens_with_the_answer_and_the_protocol_box(report):
    built, html, markdown, _ = report
    assert html.index("Answer") < html.index("Protocol") < html.index("<h2>synthetic")
    facts = dict(built.protocol)
    assert "full validation split" in facts["selection data"]
    assert "one pre-trained encoder per seed" in facts["encoders"]  # the tiny spec pre-trains per seed
    assert facts["fine-tuning budget"].startswith("one recipe for every arm, no per-arm tuning (batch_size 16")
    assert "split(s) train" in facts["pre-training data"] and "TEST" not in facts["pre-training data"]
    assert "2 of 2 comparisons had per-sample test outcomes" in facts["intervals"]
    assert "over the 2 comparisons of each metric" in facts["verdicts"] and "Holm" in facts["verdicts"]
    assert built.answer and ("Pre-training helps" in built.answer[0] or "No pre-trained method" in built.answer[0])
    assert any(line.startswith("Compute: rotation pre-training") for line in built.answer)
    assert "## Failed or missing cells" in markdown and "none failed" in markdown


def test_html_is_self_contained_and_every_plot_is_a_real_image(report):
    built, html, _, _ = report
    assert not re.search(r"""(src|href)=['"](?!data:)""", html)  # nothing to fetch
    pngs = re.findall(r"src='data:image/png;base64,([A-Za-z0-9+/=]+)'", html)
    captions = [caption for caption, _ in built.figures]
    assert len(pngs) == len(built.figures) == 2  # AUC vs labels, confusion matrices
    assert captions[0].startswith("Test AUC vs label fraction") and "confusion" in captions[1]  # one policy and
    # one imbalance ratio: no one-bar policy chart, no one-point recall-vs-ratio line
    for encoded in pngs:
        image = np.asarray(Image.open(io.BytesIO(base64.b64decode(encoded))).convert("L"), dtype=np.float64)
        assert min(image.shape) > 150
        assert image.std() > 10 and len(np.unique(image)) > 20  # drawn content, not a blank canvas
    for finding in built.findings:
        assert finding in html.replace("&#x27;", "'")


def test_failed_cells_are_listed_with_their_error(finished_study, tmp_path):
    _, db = finished_study
    copy = tmp_path / "copy.db"
    shutil.copy(db, copy)
    store = Store(copy)
    record = store.studies()[-1]
    extra = Cell("finetune/x/broken", "finetune", None, {}, {}, str(tmp_path / "broken"), 999)
    store.register(record["spec_hash"], record["name"], json.loads(record["spec"]), [extra])
    cell = store.claim(record["spec_hash"], "w")
    assert cell.key == extra.key
    store.fail(cell.key, "w", "MedsslError: smallest reachable ratio is 2.71")
    store.close()
    built = build(copy)
    assert built.failures == [(extra.key, "MedsslError: smallest reachable ratio is 2.71")]
    markdown = to_markdown(built)
    assert "- finetune/x/broken: MedsslError: smallest reachable ratio is 2.71" in markdown
    assert "1 failed" in dict(built.protocol)["cells"]


def _difference(per_seed: list[float]) -> Difference:
    return two_level(np.array(per_seed))


def _comparison(per_seed: list[float], fraction: float = 0.1) -> Comparison:
    condition = {"dataset": "d", "upstream": "d", "method": "simclr", "backbone": "r", "label_fraction": fraction,
                 "label_count": None, "imbalance_ratio": None, "policy": "default"}
    return Comparison(condition, {"AUC": _difference(per_seed)})


def test_findings_call_a_difference_only_when_it_survives_the_correction():
    spec = {"policies": ["default"], "backbones": [{}], "datasets": ["d"], "imbalance_ratios": [None]}
    clear = _comparison([0.05, 0.06, 0.055, 0.058, 0.052])
    unclear = _comparison([0.03, -0.01, 0.04, 0.0, 0.01])
    worse = _comparison([-0.05, -0.06, -0.055], fraction=1.0)
    context = Context("holm", judge([clear, unclear, worse]))
    lines = findings([unclear, clear, worse], spec, AUC, context)
    d = clear.score
    assert d.adjusted_p < 0.001
    assert lines[0] == (f"simclr beats scratch at 10 % labels by +0.055 AUC (95 % CI [{d.low:+.3f}, {d.high:+.3f}], "
                        "Holm p <0.001, 5 seeds).")
    assert lines[1].startswith("simclr is worse than scratch at 100 % labels by -0.055 AUC")
    assert "inconclusive" in lines[2] and "beats" not in lines[2]
    assert "this design detects" in lines[2] and "seeds" in lines[2]  # the power statement
    one = _comparison([0.2])
    judge([one])
    assert "too few for a verdict" in findings([one], spec, AUC, Context("holm", 0))[0]


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
