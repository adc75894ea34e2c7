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
    options={
        "imbalance_ratio": "subsample the minority class to 1:RATIO first",
        "linear_probe": "freeze the encoder; the head is a convex-solver probe, regularisation chosen on val",
        "lp_ft": "linear probe first, then full fine-tuning from that head",
        "encoder_lr_mult": "encoder learning rate = lr x this",
        "val_labels": "full | matched: select on a stratified val subset sized like the labelled set",
        "loss": "ce | weighted_ce | focal",
        "focal_gamma": "focal loss gamma",
        "label_smoothing": "label smoothing",
        "mixup_alpha": "> 0 enables mixup with Beta(alpha, alpha)",
        "balanced_sampling": "draw every class equally often",
        "min_samples_per_epoch": "images drawn per epoch at least (repeats tiny labelled sets)",
    },
    summary_format="test AUC {auc:.4f}  acc {acc:.4f}  balanced acc {balanced_acc:.4f}  per-class recall "
                   "[{per_class_recall}]",
)
