"""Anomaly detection fitted on normal images only: reconstruction error of generative pretext models
(autoencoder, Genesis, SparK) and kNN distance to normal frozen features; image AUROC / AUPRC, pixel AUROC
and anomaly maps where masks exist."""

from medssl.tasks.anomaly.config import AnomalyConfig
from medssl.tasks.base import Task

TASK = Task(
    name="anomaly",
    description="anomaly detection fitted on normal images (AUROC, AUPRC per scorer)",
    config=AnomalyConfig,
    run="medssl.tasks.anomaly.run:detect_anomalies",
    primary_metric="auroc",
    primary_label="AUROC",
    metric_names=("auroc", "auprc"),
    command="anomaly",
    options={
        "normal_class": "label(s) of the normal images, e.g. 1 or 0,2; every other label is an anomaly",
        "method": "generative method trained on the normal images with --checkpoint scratch",
        "scorers": "reconstruction,knn (default: every scorer the model supports)",
        "k": "neighbours of the kNN scorer",
        "masks": "random SparK masks averaged per image",
        "save_maps": "write anomaly maps (PNG / NIfTI) of the test images",
    },
    summary_format="test AUROC {auroc:.4f}  AUPRC {auprc:.4f}",
)
