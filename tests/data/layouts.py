"""Tiny dataset layouts written for tests: DRIVE (official names), NIfTI volumes, MSD / nnU-Net folders."""

from __future__ import annotations

import json
from pathlib import Path

import nibabel as nib
import numpy as np
from PIL import Image


def blob_image(rng: np.random.Generator, shape: tuple[int, ...]) -> tuple[np.ndarray, np.ndarray]:
    """A noisy image with one bright ellipsoid and its binary mask."""
    grid = np.stack(np.meshgrid(*[np.linspace(-1, 1, s) for s in shape], indexing="ij"))
    centre = rng.uniform(-0.3, 0.3, len(shape)).reshape(-1, *(1,) * len(shape))
    radii = rng.uniform(0.25, 0.45, len(shape)).reshape(-1, *(1,) * len(shape))
    mask = (((grid - centre) / radii) ** 2).sum(0) <= 1
    image = 60 + 120 * mask + rng.normal(0, 15, shape)
    return np.clip(image, 0, 255).astype(np.uint8), mask


def write_drive(root: Path, n: int = 6, size: int = 24, seed: int = 0) -> Path:
    """DRIVE's official layout (images/NN_training.tif, 1st_manual/NN_manual1.gif, mask/NN_training_mask.gif)
    and a manifest describing it; returns the manifest."""
    rng = np.random.default_rng(seed)
    for folder in ("images", "1st_manual", "mask"):
        (root / folder).mkdir(parents=True, exist_ok=True)
    lines = ["path,mask,fov"]
    for k in range(21, 21 + n):
        grey, vessels = blob_image(rng, (size, size))
        Image.fromarray(np.stack([grey, grey // 2, grey // 3], axis=-1)).save(root / "images" / f"{k}_training.tif")
        Image.fromarray(vessels.astype(np.uint8) * 255).save(root / "1st_manual" / f"{k}_manual1.gif")
        Image.fromarray(np.full((size, size), 255, np.uint8)).save(root / "mask" / f"{k}_training_mask.gif")
        lines.append(f"images/{k}_training.tif,1st_manual/{k}_manual1.gif,mask/{k}_training_mask.gif")
    manifest = root / "drive.csv"
    manifest.write_text("\n".join(lines) + "\n")
    return manifest


def write_nifti(path: Path, array: np.ndarray, spacing: tuple[float, ...], affine: np.ndarray | None = None) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    if affine is None:
        affine = np.diag([*spacing, 1.0])
    nib.save(nib.Nifti1Image(array, affine), str(path))


def write_volume_manifest(root: Path, n: int = 8, seed: int = 0) -> Path:
    """NIfTI volumes of varied shapes and spacings, label 1 when the blob is bright, 0 when dark."""
    rng = np.random.default_rng(seed)
    lines = ["path,label,patient_id"]
    for i in range(n):
        shape = tuple(int(v) for v in rng.integers(14, 22, 3))
        spacing = tuple(float(v) for v in rng.uniform(1.0, 2.0, 3))
        image, _ = blob_image(rng, shape)
        label = i % 2
        volume = (image.astype(np.float32) * (1 if label else -1)) - 300
        write_nifti(root / "volumes" / f"case{i}.nii.gz", volume, spacing)
        lines.append(f"volumes/case{i}.nii.gz,{label},p{i // 2}")
    manifest = root / "volumes.csv"
    manifest.write_text("\n".join(lines) + "\n")
    return manifest


def write_msd(root: Path, n: int = 6, channels: int = 2, seed: int = 0, nnunet: bool = False) -> Path:
    """An MSD folder (4D multi-channel images, listed in dataset.json) or an nnU-Net v2 one (one file per
    channel, CASE_XXXX.nii.gz); label maps with two classes."""
    rng = np.random.default_rng(seed)
    training, tests = [], []
    for i in range(n + 1):
        shape = (16, 16, 12)
        image, mask = blob_image(rng, shape)
        labels = mask.astype(np.uint8)
        labels[mask & (np.indices(shape)[0] > shape[0] // 2)] = 2  # a second class in one half
        stack = np.stack([image.astype(np.float32) + 10 * c for c in range(channels)], axis=-1)
        case = f"case_{i:03d}"
        test = i == n
        folder = "imagesTs" if test else "imagesTr"
        if nnunet:
            for c in range(channels):
                write_nifti(root / folder / f"{case}_{c:04d}.nii.gz", stack[..., c], (1.0, 1.0, 2.0))
        else:
            write_nifti(root / folder / f"{case}.nii.gz", stack, (1.0, 1.0, 2.0))
        if not test:
            write_nifti(root / "labelsTr" / f"{case}.nii.gz", labels, (1.0, 1.0, 2.0))
            training.append({"image": f"./imagesTr/{case}.nii.gz", "label": f"./labelsTr/{case}.nii.gz"})
        else:
            tests.append(f"./imagesTs/{case}.nii.gz")
    if nnunet:
        meta = {"channel_names": {str(c): f"T{c + 1}" for c in range(channels)},
                "labels": {"background": 0, "core": 1, "edge": 2}, "numTraining": n, "file_ending": ".nii.gz"}
    else:
        meta = {"name": "Task99_Blobs", "modality": {str(c): f"T{c + 1}" for c in range(channels)},
                "labels": {"0": "background", "1": "core", "2": "edge"}, "training": training, "test": tests}
    (root / "dataset.json").write_text(json.dumps(meta))
    return root


def write_msd_classification(root: Path, n: int = 8, seed: int = 0) -> Path:
    """An MSD folder whose training entries carry a class (MONAI's datalist convention, ``"label": 1``)
    instead of a label map: label 1 when the blob is bright, 0 when dark; one unlabeled test image."""
    rng = np.random.default_rng(seed)
    training = []
    for i in range(n):
        image, _ = blob_image(rng, (16, 16, 12))
        label = i % 2
        write_nifti(root / "imagesTr" / f"case_{i:03d}.nii.gz", image.astype(np.float32) * (1 if label else -1),
                    (1.0, 1.0, 2.0))
        training.append({"image": f"./imagesTr/case_{i:03d}.nii.gz", "label": label})
    write_nifti(root / "imagesTs" / "case_999.nii.gz", blob_image(rng, (16, 16, 12))[0].astype(np.float32),
                (1.0, 1.0, 2.0))
    meta = {"name": "Task98_BlobClasses", "modality": {"0": "MRI"}, "training": training,
            "test": ["./imagesTs/case_999.nii.gz"]}
    (root / "dataset.json").write_text(json.dumps(meta))
    return root


def write_volume_folder(root: Path, n: int = 6, seed: int = 1) -> Path:
    """Unlabeled NIfTI volumes of varied shapes (a pre-training corpus), in nested folders."""
    rng = np.random.default_rng(seed)
    for i in range(n):
        shape = tuple(int(v) for v in rng.integers(14, 20, 3))
        image, _ = blob_image(rng, shape)
        write_nifti(root / f"scan{i // 3}" / f"vol{i}.nii.gz", image.astype(np.float32) - 300, (1.5, 1.5, 2.0))
    return root
