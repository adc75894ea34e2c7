"""Medical Segmentation Decathlon / nnU-Net folders: ``dataset.json``, ``imagesTr/``, ``labelsTr/``,
``imagesTs/``.

MSD lists its pairs in ``dataset.json`` (``training: [{image, label}]``, ``test: [...]``) and stores several
modalities as a 4D NIfTI; nnU-Net v2 lists none and stores each channel as ``CASE_XXXX.nii.gz``. Label maps
may hold several classes (``labels`` in dataset.json names them). Test images (no labels) are items
without a mask.

For classification, a training entry's ``label`` may be a class instead of a label map: an integer or a
name (MONAI's datalist convention, ``{"image": "./imagesTr/case1.nii.gz", "label": 1}``), optionally with
``split`` and ``patient_id``. Such a dataset's test images carry no class and are listed as skipped.
"""

from __future__ import annotations

import json
import re
from collections import defaultdict
from pathlib import Path

from medssl.data.items import Collection, Image, Item, Skipped
from medssl.data.sources.files import reader_for, stem
from medssl.errors import MedsslError

_CHANNEL = re.compile(r"^(.*)_(\d{4})$")


def detect(spec: str) -> bool:
    return (Path(spec) / "dataset.json").is_file()


def _image(root: Path, rel: str) -> Image:
    path = (root / rel).resolve()
    if not path.is_file():
        raise MedsslError(f"{root / 'dataset.json'}: listed file {rel!r} not found")
    reader = reader_for(path)
    if reader is None:
        raise MedsslError(f"{root / 'dataset.json'}: {rel!r} is not an image file")
    return Image((path,), reader)


def _nnunet_cases(folder: Path, ending: str) -> dict[str, list[Path]]:
    """case id -> channel files in channel order (``CASE_0000``, ``CASE_0001``, ...)."""
    cases: dict[str, list[tuple[int, Path]]] = defaultdict(list)
    if not folder.is_dir():
        return {}
    for path in sorted(folder.iterdir()):
        if not path.name.endswith(ending) or path.name.startswith("."):
            continue
        match = _CHANNEL.match(path.name[: -len(ending)])
        case, channel = (match.group(1), int(match.group(2))) if match else (stem(path), 0)
        cases[case].append((channel, path))
    return {case: [p for _, p in sorted(files)] for case, files in cases.items()}


def _class_names(meta: dict) -> list[str] | None:
    labels = meta.get("labels")
    if not isinstance(labels, dict):
        return None
    try:  # MSD: {"0": "background", "1": "edema"}; nnU-Net v2: {"background": 0, "edema": 1}
        pairs = sorted((int(k), str(v)) for k, v in labels.items())
    except (TypeError, ValueError):
        pairs = sorted((int(v), str(k)) for k, v in labels.items() if isinstance(v, int))
    return [name for _, name in pairs]


def _modality(meta: dict) -> str | None:
    """CT when every channel is CT; MR when none is (MSD's FLAIR, T1w, T2, ADC, ...)."""
    names = meta.get("modality") or meta.get("channel_names") or {}
    values = {str(v).upper() for v in names.values()} if isinstance(names, dict) else set()
    if not values:
        return None
    return "CT" if values == {"CT"} else ("MR" if "CT" not in values else None)


def scan(spec: str) -> Collection:
    root = Path(spec)
    try:
        meta = json.loads((root / "dataset.json").read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as err:
        raise MedsslError(f"{root / 'dataset.json'}: not readable JSON ({type(err).__name__})") from None
    if not isinstance(meta, dict):
        raise MedsslError(f"{root / 'dataset.json'}: expected a JSON object")
    modality = _modality(meta)
    items: list[Item] = []
    skipped: list[Skipped] = []
    if isinstance(meta.get("training"), list) and meta["training"]:
        classes = [_class_label(entry) for entry in meta["training"]]
        if any(c is not None for c in classes) and any(c is None for c in classes):
            raise MedsslError(f"{root / 'dataset.json'}: 'training' mixes class labels and label-map files")
        for entry, label in zip(meta["training"], classes, strict=True):
            if not isinstance(entry, dict) or "image" not in entry or "label" not in entry:
                raise MedsslError(f"{root / 'dataset.json'}: each 'training' entry needs 'image' and 'label'")
            image = _image(root, entry["image"])
            if label is None:
                items.append(Item(stem(image.paths[0]), image, modality, mask=_image(root, entry["label"])))
            else:
                items.append(Item(stem(image.paths[0]), image, modality, label,
                                  patient_id=_text(entry, "patient_id"), split=_text(entry, "split")))
        for rel in meta.get("test") or []:
            image = _image(root, rel if isinstance(rel, str) else rel.get("image", ""))
            if classes[0] is None:
                items.append(Item(stem(image.paths[0]), image, modality))
            else:
                skipped.append(Skipped(str(image.paths[0]), "a test image without a class (classification dataset)"))
    else:
        ending = str(meta.get("file_ending", ".nii.gz"))
        labels = {stem(p): p for p in sorted((root / "labelsTr").glob(f"*{ending}"))}
        for case, files in _nnunet_cases(root / "imagesTr", ending).items():
            if case not in labels:
                raise MedsslError(f"{root / 'imagesTr'}: case {case!r} has no label file in labelsTr/")
            reader = reader_for(files[0]) or "nifti"
            items.append(Item(case, Image(tuple(files), reader), modality,
                              mask=Image((labels[case],), reader_for(labels[case]) or "nifti")))
        for case, files in _nnunet_cases(root / "imagesTs", ending).items():
            items.append(Item(case, Image(tuple(files), reader_for(files[0]) or "nifti"), modality))
    if not items:
        raise MedsslError(f"{root}: dataset.json lists no images and imagesTr/ holds none")
    class_names = _class_names(meta) if not any(item.label for item in items) else None
    return Collection(str(meta.get("name") or root.resolve().name), "msd", items, skipped, class_names)


def _class_label(entry: object) -> str | None:
    """The class of a classification entry (``"label": 1`` or ``"label": "benign"``); None for a label map."""
    label = entry.get("label") if isinstance(entry, dict) else None
    if isinstance(label, bool) or label is None:
        return None
    if isinstance(label, int) or (isinstance(label, float) and label.is_integer()):
        return str(int(label))
    if isinstance(label, str) and reader_for(Path(label)) is None and "/" not in label:
        return label
    return None


def _text(entry: dict, key: str) -> str | None:
    value = entry.get(key)
    return None if value is None or value == "" else str(value)
