"""In-memory image data: uint8 arrays shaped (N, C, *spatial) with integer labels per split."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from medssl.data.conventions import Conventions
from medssl.errors import MedsslError

SPLITS = ("train", "val", "test")
UNLABELED = -1


@dataclass(frozen=True)
class Split:
    """One split. ``images`` is uint8 (N, C, *spatial); ``labels`` is int64 (N,), -1 = unlabeled."""

    images: np.ndarray
    labels: np.ndarray

    def __len__(self) -> int:
        return len(self.labels)

    def subset(self, indices: np.ndarray) -> Split:
        if hasattr(self.images, "subset"):  # patches of images (data.sampling.Crops): the same images, fewer draws
            return Split(self.images.subset(indices), self.labels[indices])
        return Split(self.images[indices], self.labels[indices])


@dataclass
class ImageData:
    """A dataset with train/val/test splits; ``spatial_dims`` (2 or 3) is decided here, once."""

    name: str
    splits: dict[str, Split]
    spatial_dims: int
    num_classes: int
    class_names: list[str] = field(default_factory=list)
    # what its values and voxels mean (intensity normalisation, modalities, spacing); None: not known
    conventions: Conventions | None = None

    @property
    def channels(self) -> int:
        return int(self.splits["train"].images.shape[1])

    @property
    def spatial_shape(self) -> tuple[int, ...]:
        return tuple(int(s) for s in self.splits["train"].images.shape[2:])

    def __post_init__(self) -> None:
        self.validate()

    def validate(self) -> None:
        if "train" not in self.splits:
            raise MedsslError(f"{self.name}: no 'train' split")
        if self.spatial_dims not in (2, 3):
            raise MedsslError(f"{self.name}: spatial_dims must be 2 or 3, got {self.spatial_dims}")
        for name, split in self.splits.items():
            if split.images.dtype != np.uint8:
                raise MedsslError(f"{self.name}/{name}: images must be uint8, got {split.images.dtype}")
            if split.images.ndim != 2 + self.spatial_dims:
                raise MedsslError(
                    f"{self.name}/{name}: expected images shaped (N, C, {'D, ' if self.spatial_dims == 3 else ''}H, W),"
                    f" got {split.images.shape}"
                )
            if len(split.images) != len(split.labels):
                raise MedsslError(
                    f"{self.name}/{name}: {len(split.images)} images but {len(split.labels)} labels"
                )
            labelled = split.labels[split.labels != UNLABELED]
            if labelled.size and (labelled.min() < 0 or labelled.max() >= self.num_classes):
                raise MedsslError(
                    f"{self.name}/{name}: labels must lie in 0..{self.num_classes - 1}"
                )

    def class_counts(self, split: str) -> list[int]:
        labels = self.splits[split].labels
        return [int((labels == c).sum()) for c in range(self.num_classes)]
