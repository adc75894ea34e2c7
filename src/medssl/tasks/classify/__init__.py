"""Image classification: an encoder plus a linear head, fine-tuned or as a linear probe; selects on val AUC."""

from medssl.config import FinetuneConfig
from medssl.tasks.base import Task

TASK = Task(
    name="classify",
    description="image classification (AUC, accuracy, balanced accuracy)",
    config=FinetuneConfig,
    run="medssl.tasks.classify.run:finetune",
    primary_metric="auc",
    primary_label="AUC",
    metric_names=("auc", "acc", "balanced_acc"),
    summary_format="test AUC {auc:.4f}  acc {acc:.4f}  balanced acc {balanced_acc:.4f}",
)
