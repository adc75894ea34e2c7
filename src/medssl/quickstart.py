"""The main job: does SSL help this data? The ``quick`` study preset (SimCLR vs scratch at 1/10/100 % labels,
3 seeds), summarised as one table. Results land in ``OUT/results.db``; an interrupted run resumes."""

from __future__ import annotations

import csv
import io
import json
import statistics
import sys
from pathlib import Path

from medssl.data.sources import load_data
from medssl.errors import MedsslError
from medssl.runio import is_complete, prepare_run_dir, write_json, write_text, write_yaml
from medssl.study.presets import QuickSettings, quick
from medssl.study.report import build, to_html, to_markdown
from medssl.study.runner import run_study
from medssl.study.spec import parse_spec
from medssl.study.store import Store

__all__ = ["QuickSettings", "quickstart", "summarise"]


def _mean_sd(values: list[float]) -> str:
    sd = statistics.stdev(values) if len(values) > 1 else 0.0
    return f"{statistics.fmean(values):.3f} ± {sd:.3f}"


def summarise(rows: list[dict], method: str) -> list[dict]:
    """One line per label fraction: mean ± sd per arm and the paired (same seed, same subset) difference."""
    lines = []
    for fraction in sorted({r["label_fraction"] for r in rows}):
        by_arm = {arm: {r["seed"]: r for r in rows if r["label_fraction"] == fraction and r["arm"] == arm}
                  for arm in ("scratch", method)}
        seeds = sorted(set(by_arm["scratch"]) & set(by_arm[method]))
        diffs = [by_arm[method][s]["test_auc"] - by_arm["scratch"][s]["test_auc"] for s in seeds]
        lines.append({
            "label_fraction": fraction,
            "n_labelled": by_arm["scratch"][seeds[0]]["n_labelled"],
            "scratch_auc": _mean_sd([by_arm["scratch"][s]["test_auc"] for s in seeds]),
            f"{method}_auc": _mean_sd([by_arm[method][s]["test_auc"] for s in seeds]),
            "delta_auc": statistics.fmean(diffs),
            "ssl_wins": f"{sum(d > 0 for d in diffs)}/{len(diffs)}",
            "scratch_minority_recall": _mean_sd([by_arm["scratch"][s]["minority_recall"] for s in seeds]),
            f"{method}_minority_recall": _mean_sd([by_arm[method][s]["minority_recall"] for s in seeds]),
        })
    return lines


def _markdown(lines: list[dict], header: str) -> str:
    columns = list(lines[0])
    out = [header, "", "| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
    for line in lines:
        cells = [f"{v:+.3f}" if isinstance(v, float) and k == "delta_auc" else f"{v:g}" if isinstance(v, float)
                 else str(v) for k, v in line.items()]
        out.append("| " + " | ".join(cells) + " |")
    return "\n".join(out) + "\n"


def _row(result: dict) -> dict:
    metrics = json.loads(result["metrics"])
    test = metrics["test"]
    return {"arm": result["method"], "label_fraction": result["label_fraction"], "seed": result["seed"],
            "n_labelled": result["n_labelled"], "test_auc": test["auc"], "test_acc": test["acc"],
            "test_balanced_acc": test["balanced_acc"], "minority_recall": result["minority_recall"],
            "val_auc": metrics["val"]["auc"], "run_dir": result["run_dir"]}


def quickstart(data: str = "synthetic:lesions2d", out: str | Path = "medssl-quickstart", seeds: int = 3,
               overwrite: bool = False, settings: QuickSettings | None = None, workers: int = 1) -> list[dict]:
    s = settings or QuickSettings()
    if seeds < 1:
        raise MedsslError(f"quickstart needs at least one seed, got {seeds}")
    spec = parse_spec({**quick(s), "datasets": [data]}, seeds=seeds)
    images = load_data(data)
    out = Path(out)
    resuming = out.is_dir() and (out / "results.db").is_file() and not is_complete(out)
    if not resuming:
        out = prepare_run_dir(out, overwrite)
        write_yaml(out / "config.yaml", {"kind": "quickstart", "data": data, "seeds": seeds,
                                         "study": spec.to_dict(), "spec_hash": spec.hash})
    print(f"medssl quickstart on {images.name}: {len(images.splits['train'])} train images "
          f"({images.spatial_dims}D, classes {images.class_counts('train')}); {s.method} vs scratch"
          f"{' (resuming)' if resuming else ''}...", file=sys.stderr)
    db = out / "results.db"
    outcome = run_study(spec, db, out / "runs", workers=workers, progress=workers == 1)
    if outcome.failures:
        key, error = outcome.failures[0]
        raise MedsslError(f"{len(outcome.failures)} quickstart run(s) failed; first {key}: {error}")
    store = Store(db, create=False)
    try:
        rows = [_row(r) for r in store.results(spec.hash)]
    finally:
        store.close()

    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=list(rows[0]))
    writer.writeheader()
    writer.writerows(rows)
    write_text(out / "results.csv", buffer.getvalue())
    lines = summarise(rows, s.method)
    minority = min(range(images.num_classes), key=lambda c: (images.class_counts("train")[c], c))
    table = _markdown(lines, f"# medssl quickstart: {s.method} vs scratch on {images.name}")
    notes = (f"\nTest AUC (mean ± sd over {seeds} seeds; model selected on the full validation split). "
             f"delta_auc is the mean paired difference (same seed, same nested labelled subset); ssl_wins counts "
             f"seeds where {s.method} beat scratch. Minority class = {images.class_names[minority]}. "
             f"Backbone {s.backbone} x{s.width}, {s.pretrain_epochs} pre-training epochs, "
             f"{s.finetune_epochs} fine-tuning epochs. Took {outcome.minutes:.1f} min"
             f"{' (this session)' if resuming else ''}. Full study report with intervals and plots: report.html.\n")
    report = build(db, spec.hash)
    write_text(out / "report.html", to_html(report))
    write_text(out / "report.md", table + notes + "\n" + to_markdown(report).replace("# ", "## ", 1))
    write_json(out / "metrics.json", {"summary": lines, "minutes": outcome.minutes, "spec_hash": spec.hash})
    print(table + notes)
    return rows
