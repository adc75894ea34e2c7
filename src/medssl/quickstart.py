"""The main job: does SSL help this data? SimCLR vs scratch at 1/10/100 % labels over several seeds."""

from __future__ import annotations

import csv
import io
import statistics
import sys
import time
from dataclasses import dataclass, field, replace
from pathlib import Path

from medssl.api import finetune, pretrain
from medssl.config import FinetuneConfig, PretrainConfig
from medssl.data.sources import load_data
from medssl.errors import MedsslError
from medssl.runio import prepare_run_dir, write_json, write_text


@dataclass(frozen=True)
class QuickSettings:
    """Sized so the whole job finishes in well under 10 minutes on a 2-core CPU."""

    method: str = "simclr"
    backbone: str = "resnet10"
    width: float = 0.25
    pretrain_epochs: int = 20
    pretrain_batch: int = 128
    pretrain_lr: float = 2e-3
    finetune_epochs: int = 10
    finetune_batch: int = 64
    finetune_lr: float = 1e-3
    min_samples_per_epoch: int = 512
    fractions: tuple[float, ...] = (0.01, 0.1, 1.0)
    extra: dict = field(default_factory=dict)


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


def quickstart(data: str = "synthetic:lesions2d", out: str | Path = "medssl-quickstart", seeds: int = 3,
               overwrite: bool = False, settings: QuickSettings | None = None) -> list[dict]:
    s = settings or QuickSettings()
    if seeds < 1:
        raise MedsslError(f"quickstart needs at least one seed, got {seeds}")
    started = time.perf_counter()
    images = load_data(data)
    out = prepare_run_dir(Path(out), overwrite)
    write_text(out / "config.yaml", f"kind: quickstart\ndata: {data}\nseeds: {seeds}\nsettings: {s}\n")
    minority = min(range(images.num_classes), key=lambda c: (images.class_counts("train")[c], c))
    print(f"medssl quickstart on {images.name}: {len(images.splits['train'])} train images "
          f"({images.spatial_dims}D, classes {images.class_counts('train')}); pre-training {s.method}...",
          file=sys.stderr)
    ssl_run = pretrain(PretrainConfig(
        data=data, out=str(out / f"pretrain-{s.method}"), method=s.method, backbone=s.backbone, width=s.width,
        epochs=s.pretrain_epochs, batch_size=s.pretrain_batch, lr=s.pretrain_lr), data=images, progress=True)
    base = FinetuneConfig(data=data, out="", backbone=s.backbone, width=s.width, epochs=s.finetune_epochs,
                          batch_size=s.finetune_batch, lr=s.finetune_lr,
                          min_samples_per_epoch=s.min_samples_per_epoch)
    rows: list[dict] = []
    jobs = [(f, seed, arm) for f in s.fractions for seed in range(seeds) for arm in ("scratch", s.method)]
    for i, (fraction, seed, arm) in enumerate(jobs, 1):
        checkpoint = "scratch" if arm == "scratch" else str(ssl_run.run_dir)
        run = finetune(replace(base, out=str(out / f"finetune-{arm}-f{fraction:g}-s{seed}"), seed=seed,
                               label_fraction=fraction, checkpoint=checkpoint), data=images, progress=False)
        test = run.metrics["test"]
        rows.append({"arm": arm, "label_fraction": fraction, "seed": seed, "n_labelled": run.metrics["train"]["n"],
                     "test_auc": test["auc"], "test_acc": test["acc"], "test_balanced_acc": test["balanced_acc"],
                     "minority_recall": test["per_class_recall"][minority], "val_auc": run.metrics["val"]["auc"],
                     "run_dir": str(run.run_dir)})
        print(f"[{i}/{len(jobs)}] {arm:<8} {fraction:>5.0%} labels seed {seed}: test AUC {test['auc']:.3f}",
              file=sys.stderr)

    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=list(rows[0]))
    writer.writeheader()
    writer.writerows(rows)
    write_text(out / "results.csv", buffer.getvalue())
    lines = summarise(rows, s.method)
    minutes = (time.perf_counter() - started) / 60
    table = _markdown(lines, f"# medssl quickstart: {s.method} vs scratch on {images.name}")
    notes = (f"\nTest AUC (mean ± sd over {seeds} seeds; model selected on the full validation split). "
             f"delta_auc is the mean paired difference (same seed, same nested labelled subset); ssl_wins counts "
             f"seeds where {s.method} beat scratch. Minority class = {images.class_names[minority]}. "
             f"Backbone {s.backbone} x{s.width}, {s.pretrain_epochs} pre-training epochs, "
             f"{s.finetune_epochs} fine-tuning epochs. Took {minutes:.1f} min.\n")
    write_text(out / "report.md", table + notes)
    write_json(out / "metrics.json", {"summary": lines, "minutes": minutes})
    print(table + notes)
    return rows
