"""``AnomalyConfig``: anomaly detection fitted on normal training images only."""

from __future__ import annotations

from dataclasses import dataclass, field

from medssl.config import CommonConfig, check

SCORERS = ("reconstruction", "knn")


@dataclass
class AnomalyConfig(CommonConfig):
    normal_class: list[int] = field(default_factory=list)  # label(s) of the normal images; the rest are anomalies
    checkpoint: str = "scratch"  # a pre-training run dir, or scratch: train ``method`` on the normal images here
    method: str = "autoencoder"  # the generative method trained from scratch (ignored with a checkpoint)
    backbone: str = "resnet10"  # used only from scratch
    width: float = 0.5
    epochs: int | None = None  # training on normal images: None = 10 from scratch, 0 (use as is) from a checkpoint
    batch_size: int = 64
    scorers: list[str] | None = None  # None: every scorer the model supports; named ones must be supported
    k: int = 5  # neighbours of the kNN scorer
    masks: int = 8  # random SparK masks whose masked-patch errors are averaged
    save_maps: bool = True

    def validate(self) -> None:
        super().validate()
        check(bool(self.normal_class), "name the normal class(es), e.g. --normal-class 1 or 0,2")
        check(self.epochs is None or self.epochs >= 0, f"epochs must be >= 0, got {self.epochs}")
        check(self.epochs != 0 or self.checkpoint != "scratch",
              "a scratch model needs training: give --epochs >= 1 or a --checkpoint")
        if self.scorers is not None:
            unknown = [s for s in self.scorers if s not in SCORERS]
            check(bool(self.scorers) and not unknown,
                  f"scorers must be among {', '.join(SCORERS)}, got {', '.join(unknown) or 'none'}")
        check(self.k >= 1, f"k must be >= 1, got {self.k}")
        check(self.masks >= 1, f"masks must be >= 1, got {self.masks}")
        check(self.devices * self.num_nodes == 1, "anomaly detection runs on one device: use --devices 1")

    @property
    def fit_epochs(self) -> int:
        if self.epochs is not None:
            return self.epochs
        return 10 if self.checkpoint == "scratch" else 0
