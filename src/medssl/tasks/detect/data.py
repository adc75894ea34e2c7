"""Detection data: images with boxes, from ``synthetic:boxes2d|boxes3d[@SIZE][?n=N&seed=S]`` (planted lesions)
or a manifest: MONAI's detection datalist (JSON: ``training`` / ``validation`` / ``test`` lists of
``{"image", "box", "label"}``, optional top-level ``"box_mode"``, default ``xyxy`` / ``xyzxyz``) or a CSV with
``image,box,label[,split]`` rows (``box``: space-separated corners; an empty box lists an image without
lesions). Boxes are voxel coordinates along the array axes, turned into MONAI's ``StandardMode``."""

from __future__ import annotations

import csv
import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from monai.data.box_utils import StandardMode, convert_box_mode

from medssl.data.conventions import Conventions
from medssl.data.dataset import SPLITS
from medssl.data.folder import image_reader, load_image
from medssl.data.planted import SPLIT_FRACTIONS, planted_from_spec
from medssl.errors import MedsslError

JSON_SPLITS = {"training": "train", "validation": "val", "test": "test"}


@dataclass(frozen=True)
class DetSplit:
    """``images`` uint8 (N, C, *spatial); ``boxes[i]`` float32 (k, 2 * dims) StandardMode; ``labels[i]`` (k,)."""

    images: np.ndarray
    boxes: list[np.ndarray]
    labels: list[np.ndarray]
    names: list[str]

    def __len__(self) -> int:
        return len(self.images)

    def subset(self, indices: np.ndarray) -> DetSplit:
        return DetSplit(self.images[indices], [self.boxes[i] for i in indices], [self.labels[i] for i in indices],
                        [self.names[i] for i in indices])


@dataclass(frozen=True)
class DetData:
    name: str
    splits: dict[str, DetSplit]
    spatial_dims: int
    class_names: list[str]
    conventions: Conventions | None = None  # none recorded: planted boxes and manifests carry no intensity record

    @property
    def channels(self) -> int:
        return int(self.splits["train"].images.shape[1])

    @property
    def num_classes(self) -> int:
        return len(self.class_names)


def _synthetic(spec: str, seed: int) -> DetData:
    kind, dims, planted = planted_from_spec(spec, {"boxes2d": 2, "boxes3d": 3}, "detection", seed)
    splits = {s: DetSplit(p.images, p.boxes, [np.zeros(len(b), np.int64) for b in p.boxes], p.names)
              for s, p in planted.items()}
    return DetData(f"synthetic:{kind}", splits, dims, ["lesion"])


def _parse_boxes(values: list, dims: int, mode: str | None, where: str) -> np.ndarray:
    try:
        boxes = np.asarray(values, np.float32).reshape(-1, 2 * dims)
    except ValueError:
        raise MedsslError(f"{where}: boxes need {2 * dims} numbers each, got {values!r}") from None
    if mode is not None and len(boxes):
        boxes = np.asarray(convert_box_mode(boxes, src_mode=mode, dst_mode=StandardMode), np.float32)
    if len(boxes) and (not np.isfinite(boxes).all() or (boxes[:, dims:] <= boxes[:, :dims]).any()):
        raise MedsslError(f"{where}: every box needs finite corners with start < end along each axis")
    return boxes


def _manifest_items(path: Path) -> tuple[list[dict], str | None]:
    """(items with image, boxes (raw), labels, split) and the JSON box mode."""
    if path.suffix.lower() == ".json":
        try:
            content = json.loads(path.read_text())
        except (OSError, json.JSONDecodeError) as err:
            raise MedsslError(f"{path}: not a readable JSON datalist ({type(err).__name__})") from None
        if not isinstance(content, dict) or not set(content) & set(JSON_SPLITS):
            raise MedsslError(f"{path}: a detection datalist needs 'training', 'validation' and 'test' lists")
        items = []
        for key, split in JSON_SPLITS.items():
            for i, entry in enumerate(content.get(key, [])):
                if not isinstance(entry, dict) or "image" not in entry:
                    raise MedsslError(f"{path}: {key}[{i}] needs an 'image'")
                items.append({"image": entry["image"], "box": entry.get("box", []),
                              "label": entry.get("label", [0] * len(entry.get("box", []))), "split": split,
                              "where": f"{path.name}: {key}[{i}]"})
        return items, content.get("box_mode")
    rows: dict[tuple[str, str], dict] = {}
    try:
        with path.open(newline="") as f:
            for line, row in enumerate(csv.DictReader(f), start=2):
                if not {"image", "box", "label"} <= set(row):
                    raise MedsslError(f"{path}: the CSV needs columns image,box,label (and optionally split)")
                split = (row.get("split") or "").strip() or "unsplit"
                item = rows.setdefault((row["image"], split), {"image": row["image"], "box": [], "label": [],
                                                               "split": split, "where": f"{path.name}:{line}"})
                if row["box"].strip():
                    item["box"].append([float(v) for v in row["box"].split()])
                    item["label"].append(int(row["label"]))
    except (OSError, UnicodeDecodeError) as err:
        raise MedsslError(f"{path}: not a readable CSV ({type(err).__name__})") from None
    except ValueError as err:
        raise MedsslError(f"{path}: a box or label is not a number ({err})") from None
    return list(rows.values()), None


def _assign_splits(items: list[dict], seed: int) -> None:
    unsplit = [it for it in items if it["split"] == "unsplit"]
    order = np.random.default_rng(seed).permutation(len(unsplit))
    n_test = max(1, round(SPLIT_FRACTIONS["test"] * len(unsplit)))
    n_val = max(1, round(SPLIT_FRACTIONS["val"] * len(unsplit)))
    for rank, i in enumerate(order):
        unsplit[i]["split"] = "test" if rank < n_test else "val" if rank < n_test + n_val else "train"
    unknown = sorted({it["split"] for it in items} - set(SPLITS))
    if unknown:
        raise MedsslError(f"unknown split(s) {', '.join(unknown)} in the manifest; use train, val or test")


def load_manifest(path: Path, seed: int = 0, size: int | None = None) -> DetData:
    items, mode = _manifest_items(path)
    _assign_splits(items, seed)
    load = image_reader()
    images, boxes, labels = [], [], []
    for item in items:
        image_path = (path.parent / item["image"]).resolve()
        if not image_path.is_file():
            raise MedsslError(f"{item['where']}: image not found: {item['image']}")
        image = load_image(image_path, item["image"], load, None, None)
        raw_shape = image.shape[1:]
        if size is not None:  # boxes scale with the image, axis by axis
            image = load_image(image_path, item["image"], load, size, None)
        dims = image.ndim - 1
        found = _parse_boxes(item["box"], dims, mode, item["where"])
        if len(found) != len(item["label"]):
            raise MedsslError(f"{item['where']}: {len(found)} boxes but {len(item['label'])} labels")
        scale = np.array(image.shape[1:], np.float32) / np.array(raw_shape, np.float32)
        images.append(image)
        boxes.append(found * np.tile(scale, 2))
        labels.append(np.asarray(item["label"], np.int64))
    shapes = {im.shape for im in images}
    if len(shapes) != 1:
        raise MedsslError(f"{path}: images differ in shape {sorted(shapes)[:2]}; pass --size to resize them")
    num_classes = max([int(lab.max()) for lab in labels if len(lab)], default=0) + 1
    if any(len(lab) and lab.min() < 0 for lab in labels):
        raise MedsslError(f"{path}: box labels must be >= 0")
    splits = {}
    for split in SPLITS:
        chosen = [i for i, it in enumerate(items) if it["split"] == split]
        if not chosen:
            raise MedsslError(f"{path}: no '{split}' images")
        splits[split] = DetSplit(np.stack([images[i] for i in chosen]), [boxes[i] for i in chosen],
                                 [labels[i] for i in chosen], [Path(items[i]["image"]).name for i in chosen])
    dims = next(iter(shapes))
    return DetData(path.name, splits, len(dims) - 1, [f"class{c}" for c in range(num_classes)])


def load_detection_data(spec: str, *, seed: int = 0, size: int | None = None) -> DetData:
    """``synthetic:boxes2d|3d`` or a manifest file (.json / .csv)."""
    if spec.startswith("synthetic:"):
        return _synthetic(spec, seed)
    path = Path(spec)
    if path.suffix.lower() not in (".json", ".csv"):
        raise MedsslError(f"detection data must be synthetic:boxes2d|boxes3d or a .json / .csv manifest, got '{spec}'")
    if not path.is_file():
        raise MedsslError(f"detection manifest not found: {spec}")
    return load_manifest(path, seed, size)
