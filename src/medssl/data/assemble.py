"""Items -> the in-memory datasets the tasks train on: ``ImageData`` (classification, pre-training) and
``SegData`` (segmentation). Preprocessing happens here (or was done once by ``data prepare``)."""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable

import numpy as np

from medssl.data.conventions import of_prepared
from medssl.data.dataset import SPLITS, UNLABELED, ImageData, Split
from medssl.data.decode import DecodeError
from medssl.data.items import Collection, Item, Skipped
from medssl.data.preprocess import Prepared, Preprocessing, check_modalities, prepare_item
from medssl.data.sampling import Crops
from medssl.errors import MedsslError


def prepare_collection(collection: Collection, pre: Preprocessing,
                       log: Callable[[str], None] | None = None) -> list[Prepared]:
    """Every readable item preprocessed; unreadable ones join ``collection.skipped`` (none readable: error)."""
    check_modalities(collection, pre)
    prepared = []
    for item in collection.items:
        try:
            prepared.append(prepare_item(item, pre))
        except DecodeError as err:
            collection.skipped.append(Skipped(item.name, str(err)))
    return finish(collection, prepared, log)


def finish(collection: Collection, prepared: list[Prepared], log: Callable[[str], None] | None) -> list[Prepared]:
    if not prepared:
        reasons = "; ".join(f"{s.path}: {s.reason}" for s in collection.skipped[:3])
        raise MedsslError(f"{collection.name}: no readable image found" + (f" ({reasons})" if reasons else ""))
    if collection.skipped:
        message = f"{collection.name}: skipped {len(collection.skipped)} file(s)/series (`medssl data info` lists why)"
        (log or logging.getLogger("medssl.data").warning)(message)
    return prepared


def _common_layout(prepared: Iterable[Prepared], name: str) -> None:
    first = None
    for p in prepared:
        if first is None:
            first = p
        elif p.image.ndim != first.image.ndim:
            raise MedsslError(f"{name}: {p.item.name} is {p.image.ndim - 1}D but {first.item.name} is"
                              f" {first.image.ndim - 1}D; all images must agree")
        elif p.image.shape[0] != first.image.shape[0]:
            raise MedsslError(f"{name}: {p.item.name} has {p.image.shape[0]} channel(s) but {first.item.name} has"
                              f" {first.image.shape[0]}")


def fit_size(array: np.ndarray, size: int, keep_scale: bool, nearest: bool = False) -> np.ndarray:
    """(C, *spatial) to size per axis: centre crop/pad when the physical scale must be kept (after resampling
    to a spacing), else a resize (area for 2D images, trilinear or nearest for volumes and masks)."""
    from monai.transforms import Resize, ResizeWithPadOrCrop

    dims = array.ndim - 1
    if keep_scale:
        out = ResizeWithPadOrCrop((size,) * dims)(array)
    else:
        mode = "nearest" if nearest else ("area" if dims == 2 else "trilinear")
        out = Resize((size,) * dims, mode=mode)(array.astype(np.float32))
    return np.clip(np.rint(np.asarray(out)), 0, 255).astype(np.uint8)


def _labels_and_splits(items: list[Item], seed: int, val_fraction: float, test_fraction: float,
                       where: str) -> tuple[np.ndarray, list[str], np.ndarray]:
    from medssl.data.folder import parse_labels, split_ids

    missing = [item.name for item in items if not item.label]
    if missing:
        raise MedsslError(f"{where}: {len(missing)} image(s) without a label (first: {missing[0]})")
    lines = list(range(2, len(items) + 2))
    labels, class_names = parse_labels([item.label or "" for item in items], lines, where)
    rows = [{"split": item.split or "", "patient_id": item.patient_id or ""} for item in items]
    has = {key: all(row[key] for row in rows) for key in ("split", "patient_id")}
    rows = [{k: v for k, v in row.items() if has[k]} for row in rows]
    return labels, class_names, split_ids(rows, lines, labels, seed, val_fraction, test_fraction)


def to_image_data(collection: Collection, prepared: list[Prepared], *, size: int | None, keep_scale: bool,
                  seed: int = 0, val_fraction: float = 0.15, test_fraction: float = 0.2,
                  labelled: bool | None = None, sampler: Callable | None = None) -> ImageData:
    """The images stacked into splits (labelled when every item has a label, unless ``labelled`` says).
    With a ``sampler(arrays, train)``, each split's images are the patch array it returns."""
    _common_layout(prepared, collection.name)
    arrays = [p.image if size is None else fit_size(p.image, size, keep_scale) for p in prepared]
    dims = arrays[0].ndim - 1
    if labelled is None:
        labelled = all(p.item.label for p in prepared)
    if labelled:
        labels, class_names, split_of = _labels_and_splits([p.item for p in prepared], seed, val_fraction,
                                                           test_fraction, collection.name)
    else:
        labels = np.full(len(arrays), UNLABELED, np.int64)
        class_names = ["unlabeled"]
        split_of = np.array([SPLITS.index(p.item.split) if p.item.split in SPLITS else 0 for p in prepared])
    if len({a.shape for a in arrays}) > 1 and sampler is None:
        raise shape_error(collection.name, arrays)
    splits = {}
    for i, name in enumerate(SPLITS):
        chosen = [arrays[j] for j in np.flatnonzero(split_of == i)]
        if not chosen and name != "train":
            continue
        if sampler is not None:
            images = sampler(chosen, name == "train")
        else:
            images = np.stack(chosen) if chosen else np.zeros((0, *arrays[0].shape), np.uint8)
        split_labels = labels[split_of == i]
        if isinstance(images, Crops):  # several patches (or slices) per image, each with its image's label
            split_labels, dims = split_labels[images.image_of], len(images.shape) - 2
        splits[name] = Split(images, split_labels)
    return ImageData(collection.name, splits, dims, len(class_names), class_names,
                     of_prepared(prepared, resized=size is not None and not keep_scale))


def shape_error(name: str, arrays: list[np.ndarray]) -> MedsslError:
    shapes = sorted({a.shape[1:] for a in arrays})
    shown = ", ".join("x".join(map(str, s)) for s in shapes[:3]) + (", ..." if len(shapes) > 3 else "")
    return MedsslError(f"{name}: images differ in size ({shown}); pass a size (crop/pad after resampling to a"
                       " spacing, else resize) or a patch size to sample patches")
