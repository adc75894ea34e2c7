"""Studies of the detection and anomaly-detection tasks, dispatched through the task registry: a tiny study of
each runs end to end into a SQLite store and is reported with the task's primary metric and verdicts."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import pytest

from medssl.config import CommonConfig
from medssl.errors import MedsslError
from medssl.runio import COMPLETE_MARKER, write_json
from medssl.study.report import write_report
from medssl.study.runner import plan, run_study
from medssl.study.spec import parse_spec
from medssl.study.store import Store
from medssl.tasks.base import Task
from medssl.tasks.common import RunResult

BOXES = "synthetic:boxes2d@16?n=24"
PLANTED = "synthetic:planted2d@16?n=40"


def detect_raw(**overrides: object) -> dict:
    raw = {"name": "tiny-detect", "task": "detect", "datasets": [BOXES], "methods": ["scratch", "rotation"],
           "backbones": ["resnet10x0.25"], "label_fractions": [0.5, 1.0], "seeds": 2,
           "pretrain": {"epochs": 1, "batch_size": 8},
           "finetune": {"epochs": 1, "batch_size": 4, "min_samples_per_epoch": 8, "fpn_channels": 8}}
    return {**raw, **overrides}


def anomaly_raw(**overrides: object) -> dict:
    raw = {"name": "tiny-anomaly", "task": "anomaly", "datasets": [PLANTED],
           "methods": ["scratch", "autoencoder", "simclr"], "backbones": ["resnet10x0.25"], "seeds": 2,
           "pretrain": {"epochs": 1, "batch_size": 8},
           "finetune": {"epochs": 1, "batch_size": 8, "normal_class": [0], "masks": 2, "save_maps": False}}
    return {**raw, **overrides}


def test_a_detection_study_transfers_from_pretraining_on_the_task_images_without_their_boxes():
    cells = plan(parse_spec(detect_raw()), "runs")
    pretrains = [c for c in cells if c.kind == "pretrain"]
    finetunes = [c for c in cells if c.kind == "finetune"]
    assert len(pretrains) == 2 and all(c.config["task_images"] == {"task": "detect"} for c in pretrains)
    assert len(finetunes) == 2 * 2 * 2 and all(c.key.startswith("detect/") for c in finetunes)
    assert {c.config["label_fraction"] for c in finetunes} == {0.5, 1.0}
    assert "imbalance_ratio" not in finetunes[0].config  # the detect config has no such field


@pytest.mark.parametrize(("raw", "match"), [
    (detect_raw(imbalance_ratios=[1, 5]), "detect studies have no imbalance axis"),
    (detect_raw(finetune={"loss": "focal"}), "unknown 'finetune' setting.*loss.*for task detect"),
    (anomaly_raw(label_fractions=[0.5]), "anomaly studies have no labels axis"),
    (anomaly_raw(finetune={"epochs": 1}), "name the normal class"),
    (detect_raw(label_counts=[4], label_fractions=None), "'label_counts' is for segment studies"),
])
def test_task_study_specs_refuse_what_the_task_cannot_do_in_one_line(raw, match):
    with pytest.raises(MedsslError, match=match) as err:
        parse_spec(raw)
    assert "\n" not in str(err.value)


def _report(tmp_path, raw) -> tuple[str, list[dict]]:
    spec = raw if not isinstance(raw, dict) else parse_spec(raw)
    outcome = run_study(spec, tmp_path / "results.db", tmp_path / "runs")
    assert not outcome.failures, outcome.failures
    assert outcome.counts == {"done": len(plan(spec, tmp_path / "runs"))}
    store = Store(tmp_path / "results.db", create=False)
    rows = store.results(spec.hash)
    store.close()
    write_report(tmp_path / "results.db", tmp_path / "report.html")
    return (tmp_path / "report.md").read_text(), rows


def test_a_tiny_detection_study_runs_and_reports_ap_with_verdicts(tmp_path):
    markdown, rows = _report(tmp_path, detect_raw(label_fractions=[1.0]))
    assert len(rows) == 2 * 2 and {r["task"] for r in rows} == {"detect"}
    for row in rows:  # the primary metric lives in the long-form metric values, as the run measured it
        metrics = json.loads(row["metrics"])
        assert row["metric_values"]["test.map_iou10"] == pytest.approx(metrics["test"]["map_iou10"])
        assert metrics["transfer"] == ("none" if row["method"] == "scratch" else "encoder")
    assert "AP@IoU0.1 mean" in markdown and "Δ AP@IoU0.1 [95 % CI]" in markdown and "FROC CPM mean" in markdown
    assert "rotation vs scratch at 100 % labels" in markdown  # one comparison, judged (inconclusive or called)
    assert "seeds only" in markdown  # mAP has no per-image decomposition: the interval says so
    assert "the detection training images, without their boxes" in markdown


def test_a_tiny_anomaly_study_compares_pretext_models_with_a_scratch_autoencoder(tmp_path):
    markdown, rows = _report(tmp_path, anomaly_raw())
    assert len(rows) == 3 * 2
    by_method = {r["method"]: json.loads(r["metrics"]) for r in rows if r["seed"] == 0}
    assert by_method["scratch"]["method"] == "autoencoder" and by_method["scratch"]["fit_epochs"] == 1
    autoencoder = by_method["autoencoder"]  # the pre-trained model is scored as it is
    assert autoencoder["primary_scorer"] == "reconstruction" and autoencoder["fit_epochs"] == 0
    assert by_method["simclr"]["primary_scorer"] == "knn"  # no decoder: kNN on the SSL features
    for row in rows:
        assert row["metric_values"]["test.auroc"] == pytest.approx(json.loads(row["metrics"])["test"]["auroc"])
    assert "AUROC mean" in markdown and "Δ AUROC [95 % CI]" in markdown and "DeLong" in markdown
    assert "seeds × test images" in markdown  # per-image scores pair the arms on the same test images
    assert "the normal training images only" in markdown


# --- a task the study code has never heard of --------------------------------------------------------------
@dataclass
class ToyConfig(CommonConfig):
    checkpoint: str = "scratch"
    backbone: str = "resnet10"
    width: float = 1.0
    label_fraction: float = 1.0
    epochs: int = 1


def toy_run(config: ToyConfig, progress: bool = True) -> RunResult:
    """A 'task' whose test score is known: more labels and a pre-trained start score higher."""
    score = 0.5 * config.label_fraction + (0.3 if config.checkpoint != "scratch" else 0.0) + 0.01 * config.seed
    metrics = {"test": {"score": score}, "train": {"n": 10}, "transfer": config.checkpoint != "scratch"}
    out = Path(config.out)
    write_json(out / COMPLETE_MARKER, metrics)  # metrics.json, written last: the run is complete
    return RunResult(out, metrics)


TOY = Task(name="toy", description="a toy task", config=ToyConfig, run=f"{__name__}:toy_run",
           primary_metric="score", primary_label="toy score", metric_names=("score",))


def test_a_newly_registered_task_runs_as_a_study_without_touching_the_study_code(tmp_path, monkeypatch):
    from medssl.tasks import registry

    monkeypatch.setitem(registry.tasks(), "toy", TOY)
    spec = parse_spec({"name": "toy-study", "task": "toy", "datasets": ["toy-data"], "methods": ["scratch", "rotation"],
                       "upstream": ["synthetic:lesions2d@16?n=60"], "backbones": ["resnet10x0.25"],
                       "label_fractions": [0.5, 1.0], "seeds": 3, "pretrain": {"epochs": 1, "batch_size": 16},
                       "finetune": {"epochs": 2}})
    assert {c.key.split("/")[0] for c in plan(spec, "runs")} == {"pretrain", "toy"}
    with pytest.raises(MedsslError, match="toy studies have no imbalance axis"):
        parse_spec({"name": "t", "task": "toy", "datasets": ["d"], "methods": ["scratch"], "imbalance_ratios": [5]})
    markdown, rows = _report(tmp_path, spec)
    scores = sorted(r["metric_values"]["test.score"] for r in rows if r["seed"] == 0)
    assert scores == pytest.approx([0.25, 0.5, 0.55, 0.8])
    assert "toy score mean" in markdown and "Δ toy score [95 % CI]" in markdown
    assert "rotation beats scratch" in markdown  # +0.3 at both label fractions, no seed noise in the difference
