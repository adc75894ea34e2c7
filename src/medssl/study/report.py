"""The study report: one self-contained HTML file (plots embedded as base64 PNGs) and a markdown twin.

Every number comes from the database; the findings are sentences generated from the paired statistics and
claim a difference only when its 95 % bootstrap interval excludes zero.
"""

from __future__ import annotations

import html
import json
import math
from dataclasses import dataclass, field
from pathlib import Path

from medssl.runio import write_text
from medssl.study import plots
from medssl.study.stats import (
    AUC,
    CONDITION,
    MIN_PAIRS,
    Comparison,
    Metric,
    compare_to_scratch,
    conditions,
    describe,
    task_metric,
)
from medssl.study.store import Store


@dataclass
class Table:
    title: str
    columns: list[str]
    rows: list[list[str]]


@dataclass
class Report:
    title: str
    spec: dict
    tables: list[Table] = field(default_factory=list)
    figures: list[tuple[str, str]] = field(default_factory=list)  # (caption, base64 PNG)
    findings: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)


def _num(value: float | None, digits: int = 4, sign: bool = False) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "–"
    return f"{value:+.{digits}f}" if sign else f"{value:.{digits}f}"


def _ci(low: float, high: float, sign: bool = False) -> str:
    return "–" if math.isnan(low) else f"[{_num(low, sign=sign)}, {_num(high, sign=sign)}]"


def _ratio(ratio: float | None) -> str:
    return "natural" if ratio is None else f"1:{ratio:g}"


def _fraction(fraction: float) -> str:
    return f"{fraction * 100:g} %"


def _labels(condition: dict) -> str:
    """The point on the labels axis, as a phrase: '10 % labels' or '4 labelled images'."""
    count = condition.get("label_count")
    if count is not None:
        return f"{count} labelled image{'s' if count != 1 else ''}"
    return f"{_fraction(condition['label_fraction'])} labels"


def _labels_axis(spec: dict) -> str:
    return "label_count" if spec.get("label_counts") else "label_fraction"


def load(db: str | Path, study: str | None = None) -> tuple[dict, list[dict], list[dict]]:
    """(study record, fine-tuning rows, pre-training rows) of ``study`` (a spec hash; default: the latest)."""
    store = Store(db, create=False)
    try:
        chosen = store.study(study)
        return chosen, store.results(chosen["spec_hash"]), store.results(chosen["spec_hash"], kind="pretrain")
    finally:
        store.close()


# --- figures ------------------------------------------------------------------------------------------------
def _reference(spec: dict) -> dict:
    """The levels other factors are held at when a plot varies one factor."""
    labels = {"label_count": spec["label_counts"][0]} if spec.get("label_counts") else \
        {"label_fraction": spec["label_fractions"][0]}
    return {**labels, "imbalance_ratio": spec["imbalance_ratios"][0], "policy": spec["policies"][0],
            "backbone": _backbone_label(spec["backbones"][0])}


def _backbone_label(b: dict) -> str:
    return f"{b['name']}x{b['width']:g}"


# --- tables and findings ------------------------------------------------------------------------------------
SEGMENT_EXTRAS = (("iou", 4), ("sensitivity", 4), ("specificity", 4), ("hd95", 1))


def _factor_columns(segment: bool) -> list[str]:
    if segment:
        return ["dataset", "upstream", "method", "backbone", "labels"]
    return ["dataset", "upstream", "method", "backbone", "label_fraction", "imbalance_ratio", "policy"]


def _condition_cells(condition: dict, segment: bool = False) -> list[str]:
    head = [str(condition["dataset"]), str(condition["upstream"]), condition["method"], condition["backbone"]]
    if segment:
        return [*head, _labels(condition)]
    return [*head, f"{condition['label_fraction']:g}", _ratio(condition["imbalance_ratio"]), condition["policy"]]


def condition_table(rows: list[dict], metric: Metric = AUC) -> Table:
    segment = metric != AUC
    key = metric.name.lower()
    out = []
    for condition_key, group in conditions(rows).items():
        score = describe([r[metric.column] for r in group])
        cells = [*_condition_cells(dict(zip(CONDITION, condition_key, strict=True)), segment), str(len(group)),
                 _num(score.mean), _num(score.sd), _ci(score.low, score.high)]
        if segment:  # what was transferred, and the other segmentation metrics (means over seeds)
            runs = [json.loads(r["metrics"]) for r in group]
            cells.append("/".join(sorted({str(m.get("transfer", "–")) for m in runs})))
            cells += [_num(describe([m["test"].get(name) for m in runs]).mean, digits)
                      for name, digits in SEGMENT_EXTRAS]
        else:
            recall = describe([r["minority_recall"] for r in group])
            cells += [_num(recall.mean), _ci(recall.low, recall.high)]
        out.append(cells)
    columns = [*_factor_columns(segment), "n", f"{key}_mean", f"{key}_sd", f"{key}_ci95"]
    title = f"Test {metric.name} per condition (mean over seeds, 95 % bootstrap CI)"
    if segment:
        columns += ["transfer", *(f"{name}_mean" for name, _ in SEGMENT_EXTRAS)]
    else:
        columns += ["minority_recall_mean", "minority_recall_ci95"]
        title = "Test AUC and minority-class recall per condition (mean over seeds, 95 % bootstrap CI)"
    return Table(title, columns, out)


def paired_table(comparisons: list[Comparison], metric: Metric = AUC) -> Table:
    segment = metric != AUC
    key = metric.name.lower()
    out = []
    for c in comparisons:
        d = c.score
        cells = [*_condition_cells(c.condition, segment), str(d.n), _num(d.mean_diff, sign=True),
                 _ci(d.low, d.high, sign=True), _num(d.wilcoxon_p, 3), f"{d.wins}/{d.n}"]
        if c.minority_recall is not None:
            r = c.minority_recall
            cells += [_num(r.mean_diff, sign=True), _ci(r.low, r.high, sign=True)]
        out.append(cells)
    columns = [*_factor_columns(segment), "n", f"delta_{key}", f"delta_{key}_ci95", "wilcoxon_p", "wins"]
    if not segment:
        columns += ["delta_minority_recall", "delta_minority_recall_ci95"]
    return Table("Each method minus scratch, paired by seed (same nested labelled subset)", columns, out)


def _context(condition: dict, spec: dict) -> str:
    parts = [f"with {_labels(condition)}" if condition.get("label_count") is not None else f"at {_labels(condition)}"]
    if condition["imbalance_ratio"] is not None:
        parts.append(f"with {_ratio(condition['imbalance_ratio'])} imbalance")
    if len(spec["policies"]) > 1 or condition["policy"] != "default":
        parts.append(f"under policy '{condition['policy']}'")
    if len(spec["backbones"]) > 1:
        parts.append(f"on {condition['backbone']}")
    if len(spec["datasets"]) > 1 or condition["upstream"] != condition["dataset"]:
        parts.append(f"on {condition['dataset']}" + ("" if condition["upstream"] == condition["dataset"]
                                                     else f" (pre-trained on {condition['upstream']})"))
    return " ".join(parts)


MAX_FINDINGS = 40


def findings(comparisons: list[Comparison], spec: dict, metric: Metric = AUC) -> list[str]:
    """One sentence per comparison, decided by the paired 95 % CI; significant ones first."""
    decided, open_ = [], []
    name = metric.name
    for c in comparisons:
        d = c.score
        where = _context(c.condition, spec)
        stats = f"{d.n} paired seeds, Wilcoxon p = {_num(d.wilcoxon_p, 2)}"
        if d.verdict == "better":
            text = f"{c.condition['method']} beats scratch {where} by {d.mean_diff:+.3f} {name} " \
                   f"[{d.low:+.3f}, {d.high:+.3f}] ({stats})."
        elif d.verdict == "worse":
            text = f"{c.condition['method']} is worse than scratch {where} by {d.mean_diff:+.3f} {name} " \
                   f"[{d.low:+.3f}, {d.high:+.3f}] ({stats})."
        elif d.n < MIN_PAIRS:
            text = f"{c.condition['method']} vs scratch {where}: {_num(d.mean_diff, 3, sign=True)} {name} from " \
                   f"{d.n} paired seed(s), too few for a verdict: inconclusive."
        else:
            text = f"{c.condition['method']} vs scratch {where}: inconclusive, {d.mean_diff:+.3f} {name} " \
                   f"[{d.low:+.3f}, {d.high:+.3f}] ({stats})."
        r = c.minority_recall
        if r is not None and c.condition["imbalance_ratio"] is not None and r.verdict != "inconclusive":
            text += f" Minority-class recall {r.mean_diff:+.3f} [{r.low:+.3f}, {r.high:+.3f}]."
        (decided if d.verdict != "inconclusive" else open_).append(text)
    lines = decided + open_
    if len(lines) > MAX_FINDINGS:
        lines = [*lines[:MAX_FINDINGS], f"… and {len(lines) - MAX_FINDINGS} more comparisons in the table."]
    return lines


def _classification_figures(report: Report, rows: list[dict], spec: dict, ref: dict) -> None:
    if len([r for r in spec["imbalance_ratios"] if r is not None]) >= 2:
        report.figures.append((
            f"Minority-class recall vs imbalance ratio (majority:minority; {_fraction(ref['label_fraction'])} labels, "
            f"policy '{ref['policy']}')",
            plots.line_plot(rows, spec, "imbalance_ratio", "minority_recall", {k: ref[k] for k in ("label_fraction",
                                                                                              "policy", "backbone")},
                       "imbalance ratio (majority / minority)", "minority-class recall")))
    else:
        report.notes.append("Imbalance was not varied in this study (no minority-recall-vs-ratio plot).")
    held = {k: ref[k] for k in ("label_fraction", "imbalance_ratio", "backbone")}
    report.figures.append((f"Test AUC per training policy ({_fraction(ref['label_fraction'])} labels, "
                           f"{_ratio(ref['imbalance_ratio'])} imbalance)", plots.policy_bars(rows, spec, held)))
    confusion = plots.confusions(rows, spec, {**held, "policy": ref["policy"]})
    if confusion is not None:
        report.figures.append((f"Test confusion matrices at {_fraction(ref['label_fraction'])} labels "
                               "(counts; colour = row-normalised recall)", confusion))


def build(db: str | Path, study: str | None = None) -> Report:
    import matplotlib

    matplotlib.use("Agg")
    record, rows, pretrains = load(db, study)
    spec = json.loads(record["spec"])
    report = Report(f"medssl study '{record['name']}' ({record['spec_hash']})", spec)
    if not rows:
        report.notes.append("No fine-tuning cell has finished yet.")
        return report
    metric = task_metric(spec.get("task"))
    comparisons = compare_to_scratch(rows, metric)
    report.tables = [condition_table(rows, metric), paired_table(comparisons, metric)]
    report.findings = findings(comparisons, spec, metric)
    ref = _reference(spec)
    axis = _labels_axis(spec)
    segment = spec.get("task") == "segment"
    held = {"backbone": ref["backbone"]} if segment else {k: ref[k] for k in ("imbalance_ratio", "policy", "backbone")}
    setting = ref["backbone"] if segment else \
        f"{_ratio(ref['imbalance_ratio'])} imbalance, policy '{ref['policy']}', {ref['backbone']}"
    xlabel = "labelled images" if axis == "label_count" else "label fraction"
    report.figures.append((f"Test {metric.name} vs {xlabel} per method (mean, 95 % CI; {setting})",
                           plots.line_plot(rows, spec, axis, metric.column, held, xlabel, f"test {metric.name}")))
    if not segment:
        _classification_figures(report, rows, spec, ref)
    if comparisons:
        report.figures.append((f"Upstream × downstream: mean paired Δ {metric.name} vs scratch over all conditions",
                               plots.heatmap(comparisons, spec, metric)))
    if any(c.score.n and c.score.n < 6 for c in comparisons):
        report.notes.append("With fewer than 6 paired seeds a two-sided Wilcoxon signed-rank test cannot reach "
                            "p < 0.05; verdicts use the paired bootstrap CI, which is optimistic for so few seeds.")
    seconds = sum(r["duration_s"] or 0 for r in rows + pretrains)
    versions = sorted({r["medssl_version"] for r in rows + pretrains})
    report.notes.append(f"{len(rows)} fine-tuning and {len(pretrains)} pre-training runs, {seconds / 60:.1f} "
                        f"training minutes in total; medssl {', '.join(versions)}.")
    return report


# --- rendering ----------------------------------------------------------------------------------------------
def to_markdown(report: Report) -> str:
    out = [f"# {report.title}", "", "## Findings", ""]
    out += [f"- {line}" for line in report.findings] or ["- (none yet)"]
    for table in report.tables:
        out += ["", f"## {table.title}", "", "| " + " | ".join(table.columns) + " |",
                "|" + "---|" * len(table.columns)]
        out += ["| " + " | ".join(row) + " |" for row in table.rows]
    out += ["", "## Figures", ""] + [f"- {caption} (in the HTML report)" for caption, _ in report.figures]
    out += ["", "## Notes", ""] + [f"- {note}" for note in report.notes]
    return "\n".join(out) + "\n"


STYLE = """body{font-family:system-ui,sans-serif;max-width:1100px;margin:2em auto;padding:0 1em;color:#222}
table{border-collapse:collapse;font-size:12px;margin:1em 0}td,th{border:1px solid #ccc;padding:3px 6px;text-align:right}
th{background:#f2f2f2}td:nth-child(-n+7){text-align:left}figure{margin:1.5em 0}img{max-width:100%}
figcaption{font-size:13px;color:#555}li{margin:.3em 0}"""


def to_html(report: Report) -> str:
    e = html.escape
    parts = [f"<!doctype html><html><head><meta charset='utf-8'><title>{e(report.title)}</title>"
             f"<style>{STYLE}</style></head><body><h1>{e(report.title)}</h1><h2>Findings</h2><ul>"]
    parts += [f"<li>{e(line)}</li>" for line in report.findings] or ["<li>(none yet)</li>"]
    parts.append("</ul>")
    for caption, png in report.figures:
        parts.append(f"<figure><img alt='{e(caption)}' src='data:image/png;base64,{png}'>"
                     f"<figcaption>{e(caption)}</figcaption></figure>")
    for table in report.tables:
        parts.append(f"<h2>{e(table.title)}</h2><table><tr>" + "".join(f"<th>{e(c)}</th>" for c in table.columns)
                     + "</tr>")
        parts += ["<tr>" + "".join(f"<td>{e(v)}</td>" for v in row) + "</tr>" for row in table.rows]
        parts.append("</table>")
    parts.append("<h2>Notes</h2><ul>" + "".join(f"<li>{e(n)}</li>" for n in report.notes) + "</ul>")
    parts.append(f"<details><summary>Study spec</summary><pre>{e(json.dumps(report.spec, indent=2))}</pre>"
                 "</details></body></html>")
    return "\n".join(parts) + "\n"


def write_report(db: str | Path, out: str | Path, *, study: str | None = None, markdown: str | Path | None = None
                 ) -> Report:
    """Write ``out`` (HTML) and ``markdown`` (default: ``out`` with a .md suffix)."""
    out = Path(out)
    report = build(db, study)
    write_text(Path(markdown) if markdown else out.with_suffix(".md"), to_markdown(report))
    write_text(out, to_html(report))
    return report
