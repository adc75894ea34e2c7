"""Anomaly data: the normal training images to fit on and the test images with their anomaly labels (and masks
where known). ``synthetic:planted2d|planted3d[@SIZE][?n=N&seed=S]``: class 0 = no lesion, class 1 = planted
lesions (masks known); any other spec is a classification dataset (``data.sources``) whose ``normal_class``
labels are normal and every other label an anomaly."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from medssl.data.conventions import Conventions
from medssl.data.dataset import UNLABELED, Split
from medssl.data.planted import planted_from_spec
from medssl.data.sources import load_data
from medssl.errors import MedsslError

PLANTED_CLASSES = ["no lesion", "lesion"]


@dataclass(frozen=True)
class AnomalyData:
    """``normal_train``: the training images of the normal classes; ``test`` images with ``anomalous`` (bool per
    image) and ``masks`` (uint8 (N, 1, *spatial), > 0 = anomalous pixel) or None."""

    name: str
    normal_train: np.ndarray
    test: np.ndarray
    anomalous: np.ndarray
    masks: np.ndarray | None
    spatial_dims: int
    class_names: list[str]
    conventions: Conventions | None = None  # of a real dataset: checked against a pre-trained encoder's

    @property
    def channels(self) -> int:
        return int(self.test.shape[1])

    @property
    def names(self) -> list[str]:
        return [f"test{i:05d}" for i in range(len(self.test))]


def _planted(spec: str, seed: int) -> tuple[dict[str, Split], dict[str, np.ndarray], int]:
    _, dims, planted = planted_from_spec(spec, {"planted2d": 2, "planted3d": 3}, "anomaly", seed)
    splits = {s: Split(p.images, p.has_lesion.astype(np.int64)) for s, p in planted.items()}
    return splits, {s: p.masks for s, p in planted.items()}, dims


def load_anomaly_data(spec: str, normal_class: list[int], *, seed: int = 0, size: int | None = None,
                      window: tuple[float, float] | None = None) -> AnomalyData:
    if spec.startswith("synthetic:planted"):
        splits, masks, dims = _planted(spec, seed)
        class_names, conventions = PLANTED_CLASSES, None
    else:
        data = load_data(spec, seed=seed, size=size, window=window)
        splits, masks, dims, class_names = data.splits, {}, data.spatial_dims, data.class_names
        conventions = data.conventions
    if "test" not in splits:
        raise MedsslError(f"{spec}: anomaly detection needs a 'test' split")
    labels = np.concatenate([s.labels for s in splits.values()])
    present = sorted(int(c) for c in np.unique(labels[labels != UNLABELED]))
    unknown = [c for c in normal_class if c not in present]
    if unknown:
        raise MedsslError(f"normal class {', '.join(map(str, unknown))} is not a label of {spec}"
                          f" (labels: {', '.join(map(str, present)) or 'none'})")
    normal = np.asarray(normal_class)
    train = splits["train"]
    normal_train = train.images[np.isin(train.labels, normal)]
    test, test_masks = splits["test"], masks.get("test")
    labelled = test.labels != UNLABELED
    anomalous = ~np.isin(test.labels[labelled], normal)
    if len(normal_train) < 2:
        raise MedsslError(f"{spec}: fewer than 2 normal training images to fit on")
    if anomalous.all() or not anomalous.any():
        raise MedsslError(f"{spec}: the test split needs normal and anomalous images (normal class "
                          f"{', '.join(map(str, normal_class))})")
    return AnomalyData(spec, normal_train, test.images[labelled], anomalous,
                       None if test_masks is None else test_masks[labelled], dims, list(class_names), conventions)
