"""Named studies. ``quick`` runs on a CPU in minutes; the others follow the seed papers and want a GPU."""

from __future__ import annotations

from dataclasses import dataclass

from medssl.errors import MedsslError
from medssl.study.spec import StudySpec, parse_spec

DEFAULT_DATA = "synthetic:lesions2d"
DEFAULT_SEGMENTATION_DATA = "synthetic:blobs2d"
# each task's default data (a synthetic set with known answers); classification: DEFAULT_DATA
TASK_DATA = {"segment": DEFAULT_SEGMENTATION_DATA, "detect": "synthetic:boxes2d", "anomaly": "synthetic:planted2d"}


@dataclass(frozen=True)
class QuickSettings:
    """Sized so the whole ``quick`` study finishes in well under 10 minutes on a 2-core CPU: one SimCLR
    encoder (pre-training seed 0) shared by every fine-tuning seed."""

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


def quick(settings: QuickSettings | None = None) -> dict:
    s = settings or QuickSettings()
    return {
        "name": "quick",
        "methods": ["scratch", s.method],
        "backbones": [{"name": s.backbone, "width": s.width}],
        "label_fractions": list(s.fractions),
        "seeds": 3,
        "pretrain": {"epochs": s.pretrain_epochs, "batch_size": s.pretrain_batch, "lr": s.pretrain_lr, "seed": 0},
        "finetune": {"epochs": s.finetune_epochs, "batch_size": s.finetune_batch, "lr": s.finetune_lr,
                     "min_samples_per_epoch": s.min_samples_per_epoch},
    }


# GPU-scale settings shared by the paper-style presets: one encoder per (method, backbone, seed).
_PAPER = {
    "backbones": ["resnet18"],
    "seeds": 3,
    "pretrain": {"epochs": 100, "batch_size": 256, "lr": 1e-3, "seed": "same"},
    "finetune": {"epochs": 30, "batch_size": 64, "lr": 1e-3},
}

PRESETS: dict[str, dict] = {
    "quick": quick(),
    # Wolf et al.: how far can the labelled set shrink? (SparK held up best)
    "label-fractions": {**_PAPER, "name": "label-fractions",
                        "methods": ["scratch", "simclr", "byol", "rotation", "genesis", "spark"],
                        "label_fractions": [1.0, 0.5, 0.25, 0.1, 0.05, 0.01]},
    # Zhang et al.: SSL mainly helps the rare class, less so when data are balanced or imbalance is severe
    "imbalance": {**_PAPER, "name": "imbalance", "methods": ["scratch", "simclr", "byol", "rotation", "spark"],
                  "label_fractions": [1.0], "imbalance_ratios": [1, 5, 10, 20, 50]},
    # Zhang et al.: do the gains stack with common training policies?
    "policies": {**_PAPER, "name": "policies", "methods": ["scratch", "simclr", "spark"],
                 "label_fractions": [0.1], "imbalance_ratios": [None, 10],
                 "policies": ["none", "flips", "rot90", "rotate", "scale", "default", "balanced", "weighted",
                              "focal", "mixup", "smooth", "scale+balanced", "scale+focal"]},
    # Zhang et al. / Models Genesis: does a pre-trained encoder + decoder help segmentation with few masks?
    "segment-labels": {"name": "segment-labels", "task": "segment", "backbones": ["resnet10x0.5"], "seeds": 3,
                       "methods": ["scratch", "autoencoder", "genesis", "spark", "simclr"],
                       "label_counts": [1, 2, 4, 8, 16],
                       "pretrain": {"epochs": 100, "batch_size": 64, "lr": 1e-3, "seed": "same", "crops": 4096},
                       "finetune": {"epochs": 20, "steps_per_epoch": 60, "batch_size": 8, "patch_size": 96}},
    # does a pre-trained encoder make a better RetinaNet backbone when few images carry boxes?
    "detect-labels": {"name": "detect-labels", "task": "detect", "backbones": ["resnet10x0.5"], "seeds": 3,
                      "methods": ["scratch", "simclr", "rotation", "genesis", "spark"],
                      "label_fractions": [1.0, 0.5, 0.25, 0.1],
                      "pretrain": {"epochs": 100, "batch_size": 64, "lr": 1e-3, "seed": "same"},
                      "finetune": {"epochs": 30, "batch_size": 8}},
    # the auto-encoder line of work: pretext models' reconstruction error (autoencoder, Genesis, SparK) and kNN on
    # SSL features vs an auto-encoder trained from scratch, all fitted on the normal training images only
    "anomaly-pretext": {"name": "anomaly-pretext", "task": "anomaly", "backbones": ["resnet10x0.5"], "seeds": 3,
                        "methods": ["scratch", "autoencoder", "genesis", "spark", "simclr"],
                        "pretrain": {"epochs": 100, "batch_size": 64, "lr": 1e-3, "seed": "same"},
                        "finetune": {"epochs": 100, "batch_size": 64, "normal_class": [0]}},
    "full": {**_PAPER, "name": "full",
             "methods": ["scratch", "simclr", "byol", "barlow", "rotation", "genesis", "spark", "rotation+simclr"],
             "backbones": ["resnet10x0.5", "resnet18"],
             "label_fractions": [1.0, 0.25, 0.1, 0.01], "imbalance_ratios": [None, 10, 50],
             "policies": ["default", "scale+balanced"]},
}


def preset(name: str, datasets: list[str] | None = None, seeds: int | None = None) -> StudySpec:
    if name not in PRESETS:
        raise MedsslError(f"unknown preset '{name}'; choose from {', '.join(PRESETS)}")
    default = TASK_DATA.get(PRESETS[name].get("task", "classify"), DEFAULT_DATA)
    return parse_spec({**PRESETS[name], "datasets": [default]}, datasets=datasets, seeds=seeds)
