"""The study report: one self-contained HTML file (plots embedded as base64 PNGs) and a markdown twin.

It opens with the answer (where pre-training helps, by how much, how sure, at what compute cost) and a protocol
box (what was selected on which data, how encoders relate to seeds, the statistics and their correction), then
one section per dataset. Every number comes from the database; a difference is called only when its interval
(seeds x test images, ``study.inference``) excludes 0 and it survives the correction over all comparisons.
"""

from __future__ import annotations

import html
import json
import math
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path

from medssl.runio import write_text
from medssl.study import plots
from medssl.study.axes import get_axis, setting_axes, shown
from medssl.study.inference import ALPHA, RESAMPLES, Difference, Power, power_analysis
from medssl.study.stats import (
    AUC,
    Comparison,
    Metric,
    compare_to_scratch,
    condition_keys,
    conditions,
    describe,
    judge,
    task_metric,
)
from medssl.study.store import Store
from medssl.study.tasks import ReportColumn, study_task

CORRECTION_NAMES = {"holm": "Holm (family-wise error)", "bh": "Benjamini-Hochberg (false discovery rate)"}


@dataclass
class Table:
    title: str
    columns: list[str]
    rows: list[list[str]]


@dataclass
class Section:
    """One dataset: its findings, tables and figures."""

    title: str
    findings: list[str] = field(default_factory=list)
    tables: list[Table] = field(default_factory=list)
    figures: list[tuple[str, str]] = field(default_factory=list)  # (caption, base64 PNG)


@dataclass
class Report:
    title: str
    spec: dict
    answer: list[str] = field(default_factory=list)
    protocol: list[tuple[str, str]] = field(default_factory=list)  # (fact, value)
    sections: list[Section] = field(default_factory=list)
    failures: list[tuple[str, str]] = field(default_factory=list)  # (cell, error)
    notes: list[str] = field(default_factory=list)
    overview: list[tuple[str, str]] = field(default_factory=list)  # figures across datasets
    counts: dict[str, int] = field(default_factory=dict)  # cells per status

    @property
    def findings(self) -> list[str]:
        return [line for section in self.sections for line in section.findings]

    @property
    def unfinished(self) -> list[str]:
        """Cells neither done nor failed (not run yet, or their worker is still at them)."""
        return [f"{n} cell(s) {status}: no result yet" for status, n in sorted(self.counts.items())
                if status not in ("done", "failed") and n]

    @property
    def tables(self) -> list[Table]:
        return [table for section in self.sections for table in section.tables]

    @property
    def figures(self) -> list[tuple[str, str]]:
        return [*self.overview, *(figure for section in self.sections for figure in section.figures)]


def _num(value: float | None, digits: int = 3, sign: bool = False) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "–"
    return f"{value:+.{digits}f}" if sign else f"{value:.{digits}f}"


def _p(value: float) -> str:
    if math.isnan(value):
        return "–"
    return "<0.001" if value < 0.001 else f"{value:.3f}"


def _ci(low: float, high: float, sign: bool = False, digits: int = 3) -> str:
    return "–" if math.isnan(low) else f"[{_num(low, digits, sign)}, {_num(high, digits, sign)}]"


def _labels(condition: dict) -> str:
    """The point on the labels axis, as a phrase: '10 % labels' or '4 labelled images'."""
    return get_axis("labels").words(condition)


def _labels_axis(spec: dict) -> str:
    return "label_count" if spec.get("label_counts") else "label_fraction"


def load(db: str | Path, study: str | None = None) -> tuple[dict, list[dict], list[dict]]:
    """(study record, fine-tuning rows, pre-training rows) of ``study`` (a spec hash; default: the latest)."""
    store = Store(db, create=False)
    try:
        chosen = store.study(study)
        spec_hash = chosen["spec_hash"]
        # a cell's labels carry every axis, also those the results table has no column for
        labels = {c["key"]: json.loads(c["labels"]) for c in store.cell_states(spec_hash)}
        rows = [{**labels.get(r["cell_key"], {}), **{k: v for k, v in r.items() if v is not None or k not in
                                                    labels.get(r["cell_key"], {})}} for r in store.results(spec_hash)]
        return chosen, rows, store.results(spec_hash, kind="pretrain")
    finally:
        store.close()


def cell_status(db: str | Path, spec_hash: str) -> tuple[dict[str, int], list[tuple[str, str]]]:
    """(cells per status, (cell, error) of each failed cell) of one study."""
    store = Store(db, create=False)
    try:
        failures = [(key, error or "no error recorded") for key, error in store.failures(spec_hash)]
        return store.counts(spec_hash), failures
    finally:
        store.close()


# --- conditions as words -------------------------------------------------------------------------------------
def _backbone_label(b: dict) -> str:
    return f"{b['name']}x{b['width']:g}"


def _task_axes(spec: dict) -> list:
    """The paired axes that apply to the study's task (the others sit at their defaults and say nothing)."""
    fields = study_task(spec.get("task")).config_fields()
    return [axis for axis in setting_axes() if axis.applies(fields)]


def _setting(condition: dict, spec: dict) -> str:
    """The condition's levels that the study varies or sets (the dataset and method have their own columns)."""
    return ", ".join(axis.words(condition) for axis in _task_axes(spec) if shown(axis, spec, condition))


def _setting_columns(conditions_: list[dict], spec: dict) -> list:
    """The axes a table gives a column: those the report names in any of its conditions."""
    return [axis for axis in _task_axes(spec) if any(shown(axis, spec, c) for c in conditions_)]


def _upstream(condition: dict) -> str:
    up = condition.get("upstream")
    return "–" if up in (None, "-") else "same data" if up == condition["dataset"] else str(up)


def _where(condition: dict, spec: dict) -> str:
    """The setting with its preposition and a leading space: ' at 10 % labels, ...' or ' with 4 labelled
    images, ...'; empty when the condition has nothing to name."""
    setting = _setting(condition, spec)
    where = (("with " if condition.get("label_count") is not None else "at ") + setting) if setting else ""
    if _upstream(condition) not in ("–", "same data"):
        where += f"{', ' if where else ''}pre-trained on {condition['upstream']}"
    return f" {where}" if where else ""


# --- the statistics as words ---------------------------------------------------------------------------------
@dataclass
class Context:
    correction: str
    comparisons: int  # size of the corrected family
    alpha: float = ALPHA

    @property
    def power_alpha(self) -> float:
        """The per-comparison level the correction asks of the first (strictest) step: alpha / m."""
        return self.alpha / max(self.comparisons, 1)

    @property
    def p_name(self) -> str:
        return "Holm p" if self.correction == "holm" else "BH q"


def _power(d: Difference, context: Context) -> Power | None:
    return power_analysis(d, alpha=context.power_alpha) if d.verdict == "inconclusive" else None


def _power_phrase(d: Difference, context: Context, name: str) -> str:
    power = _power(d, context)
    if power is None:
        return "one seed: no seed variance, no verdict" if d.seeds < 2 else ""
    text = f"this design detects {power.detectable:.3f} {name} or more at 80 % power"
    needs = []
    if power.seeds_needed is not None:
        needs.append(f"~{power.seeds_needed} seeds")
    if power.test_images_needed is not None:
        needs.append(f"~{power.test_images_needed} test images")
    if abs(d.estimate) > 0:
        text += f"; {d.estimate:+.3f} would need " + (" or ".join(needs) if needs else
                                                       "more seeds and more test images together")
    return text


def _sentence(c: Comparison, spec: dict, metric: Metric, context: Context) -> str:
    d, method = c.score, c.condition["method"]
    where = _where(c.condition, spec)
    name = metric.name
    stats = f"95 % CI [{d.low:+.3f}, {d.high:+.3f}], {context.p_name} {_p(d.adjusted_p)}, {d.seeds} seeds"
    if d.verdict == "better":
        text = f"{method} beats scratch{where} by {d.estimate:+.3f} {name} ({stats})."
    elif d.verdict == "worse":
        text = f"{method} is worse than scratch{where} by {d.estimate:+.3f} {name} ({stats})."
    elif d.seeds < 2:
        text = f"{method} vs scratch{where}: {_num(d.estimate, sign=True)} {name} from {d.seeds} seed, " \
               "too few for a verdict: inconclusive."
    else:
        text = f"{method} vs scratch{where}: inconclusive, {d.estimate:+.3f} {name} ({stats}); " \
               f"{_power_phrase(d, context, name)}."
    recall = c.minority_recall
    if recall is not None and recall.verdict != "inconclusive":
        text += f" Minority-class recall {recall.estimate:+.3f} [{recall.low:+.3f}, {recall.high:+.3f}] " \
                f"({recall.verdict})."
    if c.note:
        text += f" ({c.note}.)"
    return text


MAX_FINDINGS = 30


def findings(comparisons: list[Comparison], spec: dict, metric: Metric, context: Context) -> list[str]:
    """One sentence per comparison; called differences first, then the rest by |difference|."""
    ordered = sorted(comparisons, key=lambda c: (c.score.verdict == "inconclusive",
                                                 -abs(c.score.estimate) if math.isfinite(c.score.estimate) else 0))
    lines = [_sentence(c, spec, metric, context) for c in ordered]
    if len(lines) > MAX_FINDINGS:
        lines = [*lines[:MAX_FINDINGS], f"… and {len(lines) - MAX_FINDINGS} more comparisons in the table."]
    return lines


# --- tables --------------------------------------------------------------------------------------------------
def _column_cell(column: ReportColumn, group: list[dict]) -> str:
    values = [column.value(r) for r in group]
    if column.digits is None:
        return "/".join(sorted({str(v) for v in values if v is not None})) or "–"
    return _num(describe([v if isinstance(v, int | float) else None for v in values]).mean, column.digits)


def condition_table(rows: list[dict], spec: dict, metric: Metric = AUC) -> Table:
    name = metric.name
    extras = study_task(spec.get("task")).report_columns
    out = []
    grouped = conditions(rows)
    keys = condition_keys()
    setting = _setting_columns([dict(zip(keys, key, strict=True)) for key in grouped], spec)
    for condition_key, group in grouped.items():
        condition = dict(zip(keys, condition_key, strict=True))
        score = describe([metric.value(r) for r in group])
        cells = [condition["method"], _upstream(condition), *(axis.cell(condition) for axis in setting),
                 str(score.n), _num(score.mean), _num(score.sd), _ci(score.low, score.high)]
        out.append(cells + [_column_cell(column, group) for column in extras])
    columns = ["method", "upstream", *(axis.title for axis in setting), "seeds", f"{name} mean", f"{name} sd",
               f"{name} 95 % CI", *(column.title for column in extras)]
    return Table(f"Test {name} per arm (over seeds; t interval)", columns, out)


def _difference_cell(d: Difference | None) -> str:
    if d is None:
        return "–"
    mark = {"better": " ▲", "worse": " ▼"}.get(d.verdict, "")
    return f"{_num(d.estimate, sign=True)} {_ci(d.low, d.high, sign=True)}{mark}"


def _delong_cell(d: Difference) -> str:
    if not d.delong_p:
        return "–"
    below = sum(p < 0.05 for p in d.delong_p)
    return f"{_p(sorted(d.delong_p)[len(d.delong_p) // 2])} ({below}/{len(d.delong_p)} < 0.05)"


def _power_cell(d: Difference, context: Context) -> str:
    power = _power(d, context)
    if power is None:
        return "–"
    seeds = f"; {power.seeds_needed} seeds" if power.seeds_needed is not None else ""
    return f"≥{power.detectable:.3f}{seeds}"


def paired_table(comparisons: list[Comparison], spec: dict, metric: Metric, context: Context) -> Table:
    name = metric.name
    secondary = list(dict.fromkeys(k for c in comparisons for k in c.metrics if k != name))
    delong = any(c.score.delong_p for c in comparisons)
    out = []
    setting = _setting_columns([c.condition for c in comparisons], spec)
    for c in comparisons:
        d = c.score
        cells = [c.condition["method"], _upstream(c.condition), *(axis.cell(c.condition) for axis in setting),
                 str(d.seeds), _difference_cell(d), _p(d.adjusted_p), d.verdict]
        cells += [_delong_cell(d)] if delong else []
        cells += [_difference_cell(c.metrics.get(k)) for k in secondary]
        cells += [_p(d.permutation_p), _power_cell(d, context), d.sources]
        out.append(cells)
    columns = ["method", "upstream", *(axis.title for axis in setting), "seeds", f"Δ {name} [95 % CI]",
               context.p_name, "verdict"]
    columns += ["DeLong p (median over seeds)"] if delong else []
    columns += [f"Δ {k}" for k in secondary]
    columns += ["sign-flip p", "detectable Δ (80 % power); seeds needed", "CI covers"]
    return Table(f"Each method minus scratch, paired by seed (▲/▼: called after {context.p_name.split()[0]} "
                 "correction)", columns, out)


# --- the answer and the protocol -----------------------------------------------------------------------------
def _minutes(rows: list[dict]) -> float:
    return sum(r.get("duration_s") or 0 for r in rows) / 60


def answer(comparisons: list[Comparison], rows: list[dict], pretrains: list[dict], spec: dict, metric: Metric,
           context: Context) -> list[str]:
    name = metric.name
    called = [c for c in comparisons if c.score.verdict != "inconclusive"]
    better = [c for c in called if c.score.verdict == "better"]
    worse = [c for c in called if c.score.verdict == "worse"]
    lines = []
    if not comparisons:
        return ["No method has a scratch partner with the same seed yet: nothing to compare."]
    if better:
        best = max(better, key=lambda c: c.score.estimate)
        d = best.score
        lines.append(f"Pre-training helps in {len(better)} of {len(comparisons)} comparisons. Largest: "
                     f"{best.condition['method']} on {best.condition['dataset']}{_where(best.condition, spec)}, "
                     f"{d.estimate:+.3f} {name} (95 % CI [{d.low:+.3f}, {d.high:+.3f}], {context.p_name} "
                     f"{_p(d.adjusted_p)}).")
    else:
        lines.append(f"No pre-trained method beats scratch on {name} in any of the {len(comparisons)} comparison(s) "
                     f"after {CORRECTION_NAMES[context.correction]} correction.")
    if worse:
        lines.append(f"It hurts in {len(worse)}: " + "; ".join(
            f"{c.condition['method']} on {c.condition['dataset']}{_where(c.condition, spec)} "
            f"({c.score.estimate:+.3f} {name})" for c in worse[:5]) + ".")
    recall = [c for c in comparisons if c.minority_recall is not None and c.minority_recall.verdict == "better"]
    if recall:
        lines.append(f"Minority-class recall improves in {len(recall)} comparison(s), e.g. "
                     f"{recall[0].condition['method']}{_where(recall[0].condition, spec)} "
                     f"({recall[0].minority_recall.estimate:+.3f}).")
    open_ = [c for c in comparisons if c.score.verdict == "inconclusive" and c.score.seeds >= 2]
    powers = [p for c in open_ if (p := _power(c.score, context)) is not None]
    if powers:
        detectable = sorted(p.detectable for p in powers)
        lines.append(f"{len(open_)} comparison(s) are inconclusive; at this design's seeds and test set, differences "
                     f"below {detectable[0]:.3f}–{detectable[-1]:.3f} {name} go undetected (80 % power at the "
                     f"corrected level).")
    if pretrains:
        per_method: dict[str, list[dict]] = defaultdict(list)
        for r in pretrains:
            per_method[r["method"]].append(r)
        finetune_minutes = _minutes(rows) / max(len(rows), 1)
        lines.append("Compute: " + "; ".join(f"{m} pre-training {_minutes(rs):.1f} min ({len(rs)} encoder"
                                            f"{'s' if len(rs) != 1 else ''})" for m, rs in per_method.items())
                     + f"; a fine-tuning run takes {finetune_minutes:.1f} min on average.")
    return lines


TUNING_KEYS = ("grid", "tuning", "tune", "search")


def _tuning(spec: dict) -> str:
    """The fine-tuning recipe, and any per-arm tuning grid the spec declares (read defensively: older specs have
    none)."""
    finetune = spec.get("finetune") or {}
    grid = {k: v for k, v in finetune.items() if any(word in k for word in TUNING_KEYS)}
    grid.update({k: v for k, v in spec.items() if k in TUNING_KEYS or k.endswith("_grid")})
    recipe = ", ".join(f"{k} {v}" for k, v in finetune.items() if k not in grid) or "defaults"
    if grid:
        return f"each arm picks its setting on validation from the same grid {json.dumps(grid, sort_keys=True)}; " \
               f"otherwise {recipe}"
    return f"one recipe for every arm, no per-arm tuning ({recipe})"


def protocol(spec: dict, rows: list[dict], pretrains: list[dict], comparisons: list[Comparison],
             context: Context, counts: dict[str, int], resamples: int) -> list[tuple[str, str]]:
    task = study_task(spec.get("task"))
    finetune, pretrain = spec.get("finetune") or {}, spec.get("pretrain") or {}
    selection = finetune.get("val_labels", "full")
    facts = [("task", f"{spec.get('task', 'classify')} on {', '.join(map(str, spec.get('datasets', [])))}")]
    facts.append(("selection data", (
        task.selection if task.selection else
        "the best epoch and threshold are chosen on the full validation split, at every label level"
        if selection in (None, "full") else f"the best epoch and threshold are chosen on validation labels "
                                            f"'{selection}'") + "; the test split is used only for the numbers here"))
    seed = pretrain.get("seed", "same")
    facts.append(("encoders", "one pre-trained encoder per seed (seeds measure pre-training and fine-tuning noise)"
                  if seed == "same" else f"one encoder (pre-training seed {seed}) shared by every seed: the seeds "
                                          "measure fine-tuning noise only"))
    splits = sorted({s for r in pretrains for s in json.loads(r.get("config") or "{}").get("pretrain_splits", [])}) \
        or pretrain.get("pretrain_splits") or ["train"]
    pool = f"; with upstream 'same': {task.pretrain_pool}" if task.pretrain_pool else ""
    facts.append(("pre-training data", f"split(s) {', '.join(splits)}{pool}"
                  + ("; includes TEST images" if "test" in splits else "")))
    facts.append(("fine-tuning budget", _tuning(spec)))
    seeds = spec.get("seeds") or []
    facts.append(("seeds", f"{len(seeds)} ({', '.join(map(str, seeds))}); arms paired by seed (same labelled "
                           "subset)"))
    with_images = sum(c.note is None for c in comparisons)
    facts.append(("intervals", f"95 % t intervals (Satterthwaite df) on seed variance + paired test-image "
                               f"bootstrap variance ({resamples} resamples; the same image indices for both arms and "
                               f"every seed); {with_images} of {len(comparisons)} comparisons had per-sample test "
                               "outcomes, the rest use seed noise only"))
    metric = task_metric(spec.get("task"))
    secondary = list(dict.fromkeys(k for c in comparisons for k in c.metrics if k != metric.name))
    metrics = metric.name + (f"; {' and '.join(secondary)} are families of their own" if secondary else "")
    direction = "" if metric.higher_is_better else f"; lower {metric.name} is better"
    delong = "DeLong (binary AUC, per seed) and " if any(c.score.delong_p for c in comparisons) else ""
    verb = "are" if delong else "is"
    facts.append(("verdicts", f"called only when the CI excludes 0 and the {CORRECTION_NAMES[context.correction]}"
                              f"-corrected p < {context.alpha:g}, correcting over the {context.comparisons} "
                              f"comparisons of each metric ({metrics}{direction}); {delong}the exact "
                              f"sign-flip test over seeds {verb} reported beside them"))
    facts.append(("cells", ", ".join(f"{n} {status}" for status, n in sorted(counts.items())) or "none"))
    return facts


# --- figures -------------------------------------------------------------------------------------------------
def _reference(spec: dict) -> dict:
    """The levels other factors are held at when a plot varies one factor."""
    labels = {"label_count": spec["label_counts"][0]} if spec.get("label_counts") else \
        {"label_fraction": spec["label_fractions"][0]}
    return {**labels, "imbalance_ratio": spec["imbalance_ratios"][0], "policy": spec["policies"][0],
            "backbone": _backbone_label(spec["backbones"][0])}


def _figures(section: Section, rows: list[dict], spec: dict, metric: Metric, comparisons: list[Comparison]) -> None:
    """Only plots that carry information: a line needs two levels, bars two policies, a heatmap two cells."""
    ref = _reference(spec)
    axis = _labels_axis(spec)
    levels = {r[axis] for r in rows if r.get(axis) is not None}
    held = {k: ref[k] for k in ("imbalance_ratio", "policy", "backbone")}  # an axis a task lacks sits at its default
    fields = study_task(spec.get("task")).config_fields()
    setting = ", ".join(axis.words(ref) for axis in setting_axes() if axis.name != "labels" and axis.applies(fields)
                        and all(k in ref for k in axis.label_names()))
    xlabel = "labelled images" if axis == "label_count" else "label fraction"
    if len(levels) >= 2:
        section.figures.append((f"Test {metric.name} vs {xlabel} per method (mean, 95 % t interval over seeds; "
                                f"{setting})", plots.line_plot(rows, spec, axis, metric.value, held, xlabel,
                                                               f"test {metric.name}")))
    label_level = {axis: ref[axis]}
    if len([r for r in spec["imbalance_ratios"] if r is not None]) >= 2:
        section.figures.append((
            f"Minority-class recall vs imbalance ratio (majority:minority; {_labels(ref)}, "
            f"policy '{ref['policy']}')",
            plots.line_plot(rows, spec, "imbalance_ratio", lambda r: r.get("minority_recall"),
                            {**label_level, "policy": ref["policy"], "backbone": ref["backbone"]},
                            "imbalance ratio (majority / minority)", "minority-class recall")))
    fixed = {**label_level, "imbalance_ratio": ref["imbalance_ratio"], "backbone": ref["backbone"]}
    if len(spec["policies"]) >= 2:
        section.figures.append((f"Test {metric.name} per training policy ({_labels(ref)}, "
                                f"{get_axis('imbalance_ratio').words(ref)})",
                                plots.policy_bars(rows, spec, fixed, metric)))
    confusion = plots.confusions(rows, spec, {**fixed, "policy": ref["policy"]})
    if confusion is not None:
        section.figures.append((f"Test confusion matrices at {_labels(ref)} (counts summed over seeds; "
                                "colour = row-normalised recall)", confusion))


# --- build ---------------------------------------------------------------------------------------------------
def build(db: str | Path, study: str | None = None, *, correction: str = "holm",
          resamples: int = RESAMPLES) -> Report:
    import matplotlib

    matplotlib.use("Agg")
    record, rows, pretrains = load(db, study)
    spec = json.loads(record["spec"])
    report = Report(f"medssl study '{record['name']}' ({record['spec_hash']})", spec)
    counts, report.failures = cell_status(db, record["spec_hash"])
    report.counts = counts
    if not rows:
        report.answer.append("No fine-tuning cell has finished yet.")
        report.protocol = protocol(spec, rows, pretrains, [], Context(correction, 0), counts, resamples)
        return report
    metric = task_metric(spec.get("task"))
    comparisons = compare_to_scratch(rows, metric, resamples=resamples)
    lower = () if metric.higher_is_better else (metric.name,)
    context = Context(correction, judge(comparisons, correction, lower_is_better=lower))
    report.answer = answer(comparisons, rows, pretrains, spec, metric, context)
    report.protocol = protocol(spec, rows, pretrains, comparisons, context, counts, resamples)
    datasets = list(dict.fromkeys([*spec.get("datasets", []), *(r["dataset"] for r in rows)]))
    arms = {(c.condition["method"], c.condition["upstream"]) for c in comparisons}
    if len(datasets) >= 2 and len(arms) >= 2:  # a heatmap needs rows and columns to compare
        report.overview.append((f"Method @ upstream × downstream: mean paired Δ {metric.name} vs scratch over "
                                "the conditions", plots.heatmap(comparisons, spec, metric)))
    for dataset in datasets:
        mine = [r for r in rows if r["dataset"] == dataset]
        if not mine:
            continue
        theirs = [c for c in comparisons if c.condition["dataset"] == dataset]
        section = Section(str(dataset), findings(theirs, spec, metric, context))
        section.tables.append(condition_table(mine, spec, metric))
        if theirs:
            section.tables.append(paired_table(theirs, spec, metric, context))
        _figures(section, mine, {**spec, "datasets": [dataset]}, metric, theirs)
        report.sections.append(section)
    if any(c.note for c in comparisons):
        report.notes.append("Comparisons marked 'seeds only' lack per-sample test predictions in some run "
                            "(runs from before predictions.csv existed): their intervals leave out test-set noise.")
    versions = sorted({r["medssl_version"] for r in rows + pretrains if r.get("medssl_version")})
    report.notes.append(f"{len(rows)} fine-tuning and {len(pretrains)} pre-training runs, "
                        f"{_minutes(rows + pretrains):.1f} training minutes in total; medssl {', '.join(versions)}.")
    return report


# --- rendering ----------------------------------------------------------------------------------------------
def _md_table(table: Table) -> list[str]:
    out = ["", f"### {table.title}", "", "| " + " | ".join(table.columns) + " |", "|" + "---|" * len(table.columns)]
    return out + ["| " + " | ".join(row) + " |" for row in table.rows]


def to_markdown(report: Report) -> str:
    out = [f"# {report.title}", "", "## Answer", ""]
    out += [f"- {line}" for line in report.answer]
    out += ["", "## Protocol", ""] + [f"- **{fact}**: {value}" for fact, value in report.protocol]
    for section in report.sections:
        out += ["", f"## {section.title}", ""] + [f"- {line}" for line in section.findings]
        for table in section.tables:
            out += _md_table(table)
        out += [""] + [f"- Figure: {caption} (in the HTML report)" for caption, _ in section.figures]
    out += ["", "## Failed or missing cells", ""]
    out += [f"- {key}: {error}" for key, error in report.failures] or ["- none failed"]
    out += [f"- {line}" for line in report.unfinished]
    out += ["", "## Notes", ""] + [f"- {note}" for note in report.notes]
    return "\n".join(out) + "\n"


STYLE = """body{font-family:system-ui,sans-serif;max-width:1200px;margin:1.5em auto;padding:0 1em;color:#222}
.answer{font-size:15px;background:#f4f8ff;border-left:4px solid #3b6fd6;padding:.4em 1em}
.protocol{border:1px solid #bbb;border-radius:4px;padding:.3em 1em;font-size:13px;margin:1em 0}
.protocol dt{font-weight:600;float:left;clear:left;width:11em}.protocol dd{margin:0 0 .3em 11.5em}
table{border-collapse:collapse;font-size:12px;margin:1em 0;width:100%}td,th{border:1px solid #ccc;padding:3px 5px;
text-align:right;vertical-align:top}th{background:#f2f2f2;text-align:center}td:nth-child(-n+3){text-align:left}
figure{margin:1.5em 0}img{max-width:100%}figcaption{font-size:13px;color:#555}li{margin:.3em 0}
.failed li{color:#a00}"""


def to_html(report: Report) -> str:
    e = html.escape
    parts = [f"<!doctype html><html><head><meta charset='utf-8'><title>{e(report.title)}</title>"
             f"<style>{STYLE}</style></head><body><h1>{e(report.title)}</h1>",
             "<h2>Answer</h2><div class='answer'><ul>" + "".join(f"<li>{e(a)}</li>" for a in report.answer)
             + "</ul></div>",
             "<div class='protocol'><h3>Protocol</h3><dl>" + "".join(f"<dt>{e(k)}</dt><dd>{e(v)}</dd>"
                                                                      for k, v in report.protocol) + "</dl></div>"]
    for section in report.sections:
        parts.append(f"<h2>{e(section.title)}</h2><ul>" + "".join(f"<li>{e(f)}</li>" for f in section.findings)
                     + "</ul>")
        for caption, png in section.figures:
            parts.append(f"<figure><img alt='{e(caption)}' src='data:image/png;base64,{png}'>"
                         f"<figcaption>{e(caption)}</figcaption></figure>")
        for table in section.tables:
            parts.append(f"<h3>{e(table.title)}</h3><table><tr>" + "".join(f"<th>{e(c)}</th>" for c in table.columns)
                         + "</tr>")
            parts += ["<tr>" + "".join(f"<td>{e(v)}</td>" for v in row) + "</tr>" for row in table.rows]
            parts.append("</table>")
    failed = "".join(f"<li>{e(k)}: {e(v)}</li>" for k, v in report.failures) or "<li>none failed</li>"
    failed += "".join(f"<li>{e(line)}</li>" for line in report.unfinished)
    marked = " class='failed'" if report.failures else ""
    parts.append(f"<h2>Failed or missing cells</h2><ul{marked}>{failed}</ul>")
    parts.append("<h2>Notes</h2><ul>" + "".join(f"<li>{e(n)}</li>" for n in report.notes) + "</ul>")
    parts.append(f"<details><summary>Study spec</summary><pre>{e(json.dumps(report.spec, indent=2))}</pre>"
                 "</details></body></html>")
    return "\n".join(parts) + "\n"


def write_report(db: str | Path, out: str | Path, *, study: str | None = None, markdown: str | Path | None = None,
                 correction: str = "holm") -> Report:
    """Write ``out`` (HTML) and ``markdown`` (default: ``out`` with a .md suffix)."""
    out = Path(out)
    report = build(db, study, correction=correction)
    write_text(Path(markdown) if markdown else out.with_suffix(".md"), to_markdown(report))
    write_text(out, to_html(report))
    return report
