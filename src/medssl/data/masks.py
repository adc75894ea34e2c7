"""Segmentation data: images with binary masks (and optional field-of-view masks), 2D or 3D.

Sources: a folder of ``NAME.ext`` images with ``NAME{mask_suffix}.ext`` masks next to them (CHASE_DB1:
``Image_01L.jpg`` + ``Image_01L_1stHO.png``), or ``images/`` + ``masks/`` sub-folders with matching names;
and ``synthetic:blobs2d[@SIZE][?n=..]`` / ``synthetic:blobs3d`` with known masks.

Images stay uint8 (C, *spatial). Masks are checked binary at their native resolution; at the working
resolution they are stored as uint8 *coverage* (0-255, the fraction of each resized pixel that is
foreground), so a downsampled thin vessel stays a soft target instead of vanishing. The native masks are
kept for evaluation at the original resolution.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import parse_qsl

import numpy as np
import torch
import torch.nn.functional as F
from scipy import ndimage

from medssl.data.conventions import MINMAX, STORED, Conventions, of_items, of_prepared, stored
from medssl.data.dataset import SPLITS, UNLABELED, ImageData, Split
from medssl.data.folder import IMAGE_KINDS, image_kind, image_reader, read_image, to_unit255
from medssl.data.items import Collection
from medssl.data.preprocess import Prepared, Preprocessing
from medssl.errors import MedsslError

CHANNELS = ("all", "grey", "green")
FOV_THRESHOLD = 0.1  # a fundus camera's field of view: red channel above 10 % of full scale


@dataclass(frozen=True)
class SegSplit:
    """``images`` uint8 (N, C, *spatial); ``masks`` uint8 coverage (N, 1, *spatial); ``fov`` bool or None;
    ``native_masks``/``native_fov``: per-image masks at the original resolution (None when not resized)."""

    images: np.ndarray
    masks: np.ndarray
    names: list[str]
    fov: np.ndarray | None = None
    native_masks: list[np.ndarray] | None = None
    native_fov: list[np.ndarray] | None = None
    spacing: list[tuple[float, ...]] | None = None  # voxel size (mm) of each image at the working resolution

    def __len__(self) -> int:
        return len(self.images)

    def subset(self, indices: np.ndarray) -> SegSplit:
        def pick(items: list[np.ndarray] | None) -> list[np.ndarray] | None:
            return None if items is None else [items[i] for i in indices]

        return SegSplit(self.images[indices], self.masks[indices], [self.names[i] for i in indices],
                        None if self.fov is None else self.fov[indices], pick(self.native_masks),
                        pick(self.native_fov), pick(self.spacing))

    def eval_masks(self, i: int, native: bool = True) -> tuple[np.ndarray, np.ndarray | None]:
        """Binary mask (1, *spatial) and FOV of image ``i``, at the original resolution if ``native``."""
        if native and self.native_masks is not None:
            return self.native_masks[i], None if self.native_fov is None else self.native_fov[i]
        return self.masks[i] >= 128, None if self.fov is None else self.fov[i]


@dataclass
class SegData:
    name: str
    splits: dict[str, SegSplit]
    spatial_dims: int
    source: dict = field(default_factory=dict)  # how it was loaded, recorded in config.yaml
    conventions: Conventions | None = None  # what its intensities and voxels mean (``data.conventions``)

    @property
    def channels(self) -> int:
        return int(self.splits["train"].images.shape[1])

    def image_data(self, splits: tuple[str, ...] = ("train",)) -> ImageData:
        """The images alone (unlabeled), e.g. for checks against a pre-trained encoder or for pre-training."""
        images = np.concatenate([self.splits[s].images for s in splits])
        return ImageData(self.name, {"train": Split(images, np.full(len(images), UNLABELED, np.int64))},
                         self.spatial_dims, 1, ["foreground"], self.conventions)


def random_patches(data: SegData, patch: int, n: int, seed: int = 0, splits: tuple[str, ...] = ("train",)) -> ImageData:
    """``n`` random crops of ``patch`` per axis from the images of ``splits`` (unlabeled), for pre-training."""
    images = np.concatenate([data.splits[s].images for s in splits])
    spatial = images.shape[2:]
    if any(patch > s for s in spatial):
        raise MedsslError(f"patch size {patch} exceeds the image size {spatial}")
    rng = np.random.default_rng(seed)
    which = rng.integers(0, len(images), n)
    starts = [rng.integers(0, s - patch + 1, n) for s in spatial]
    crops = np.stack([images[(w, slice(None), *(slice(st[i], st[i] + patch) for st in starts))]
                      for i, w in enumerate(which)])
    return ImageData(f"{data.name}:patches{patch}", {"train": Split(crops, np.full(n, UNLABELED, np.int64))},
                     data.spatial_dims, 1, ["foreground"], data.conventions)


# ----------------------------------------------------------------------------------------------- folders

def _stem(path: Path) -> str:
    name = path.name
    suffix = next((s for s in IMAGE_KINDS if name.lower().endswith(s)), "")
    return name[: len(name) - len(suffix)]


def _pairs(root: Path, mask_suffix: str, fov_suffix: str | None) -> list[tuple[Path, Path, Path | None]]:
    """(image, mask, fov) paths, sorted by image name; every image must have exactly one mask."""
    if (root / "images").is_dir() and (root / "masks").is_dir():
        image_dir, mask_dir = root / "images", root / "masks"
        fov_dir = root / "fov" if (root / "fov").is_dir() else None
        mask_names = [mask_suffix, ""]
    else:
        image_dir = mask_dir = root
        fov_dir = root if fov_suffix else None
        mask_names = [mask_suffix]
    files = sorted(p for p in image_dir.iterdir() if p.is_file() and image_kind(p))
    suffixes = [s for s in (mask_suffix, fov_suffix) if s]
    images = [p for p in files if image_dir != mask_dir or not any(_stem(p).endswith(s) for s in suffixes)]
    if not images:
        raise MedsslError(f"{root}: no images found (expected NAME.png/.jpg/.tif/.gif/.nii.gz/.dcm files)")
    masks = {_stem(p): p for p in mask_dir.iterdir() if p.is_file() and image_kind(p)}
    fovs = {_stem(p): p for p in fov_dir.iterdir() if p.is_file() and image_kind(p)} if fov_dir else {}
    stems = {_stem(p) for p in images}
    pairs = []
    for image in images:
        stem = _stem(image)
        mask = next((masks[stem + s] for s in mask_names if stem + s in masks and masks[stem + s] != image), None)
        if mask is None and image_dir == mask_dir and any(stem.startswith(o + "_") for o in stems if o != stem):
            continue  # another annotation of an image (CHASE_DB1's second observer, *_2ndHO)
        if mask is None:
            raise MedsslError(f"{image.name}: no mask named {stem}{mask_suffix}.* in {mask_dir}"
                              " (pass --mask-suffix to match your naming)")
        fov = None
        if fov_dir is not None:
            fov = fovs.get(stem + (fov_suffix or "")) or fovs.get(stem)
            if fov is None or fov == image:
                raise MedsslError(f"{image.name}: no field-of-view mask named {stem}{fov_suffix or ''}.* in {fov_dir}")
        pairs.append((image, mask, fov))
    return pairs


def _binary(arr: np.ndarray, path: Path, what: str) -> np.ndarray:
    """(1, *spatial) bool from a binary mask stored as {0, 1}, {0, 255} or {0, max}."""
    values = np.unique(arr)
    if len(values) > 2 or (len(values) == 2 and values[0] != 0):
        shown = ", ".join(str(v) for v in values[:5]) + (", ..." if len(values) > 5 else "")
        raise MedsslError(f"{path.name}: {what} must be binary (two values, 0 and one other), found {len(values)}"
                          f" values ({shown})")
    return (arr.max(axis=0, keepdims=True) > 0) if arr.shape[0] > 1 else arr > 0


def _select_channels(img: np.ndarray, channel: str, path: Path) -> np.ndarray:
    if channel == "all" or img.shape[0] == 1:
        return img
    if img.shape[0] != 3:
        raise MedsslError(f"{path.name}: --channel {channel} needs an RGB image, got {img.shape[0]} channels")
    if channel == "green":
        return img[1:2]
    return (0.299 * img[0:1] + 0.587 * img[1:2] + 0.114 * img[2:3]).astype(img.dtype)


def threshold_fov(image: np.ndarray) -> np.ndarray:
    """Field of view of a fundus photograph: red (or only) channel above FOV_THRESHOLD, holes filled."""
    red = image[0].astype(np.float64) / max(float(image.max()), 1.0)
    inside = ndimage.binary_opening(red > FOV_THRESHOLD, structure=np.ones((3,) * red.ndim), iterations=2)
    return ndimage.binary_fill_holes(inside)[None]


def _resize(arr: np.ndarray, size: int) -> np.ndarray:
    """Area-average (2D) / trilinear (3D) resize of a (C, *spatial) float array to size per axis."""
    t = torch.from_numpy(np.ascontiguousarray(arr, dtype=np.float32))[None]
    out = F.interpolate(t, size=(size,) * (arr.ndim - 1), mode="area" if arr.ndim == 3 else "trilinear",
                        **({} if arr.ndim == 3 else {"align_corners": False}))
    return out[0].numpy()


def _split_counts(n: int, val_count: int | None, test_count: int | None) -> tuple[int, int]:
    test = round(0.3 * n) if test_count is None else test_count
    val = max(1, round(0.1 * (n - test))) if val_count is None else val_count
    if test < 1 or val < 1 or n - test - val < 1:
        raise MedsslError(f"{n} images cannot give at least one train, one val and one test image"
                          f" (val {val}, test {test})")
    return val, test


def load_mask_folder(root: str | Path, *, mask_suffix: str = "_mask", fov: str = "none", channel: str = "all",
                     size: int | None = None, val_count: int | None = None,
                     test_count: int | None = None) -> SegData:
    """Images + binary masks from ``root``. Sorted by name: the last ``test_count`` images are test (default
    30 %), the ``val_count`` before them val (default 10 % of the rest), the others train.

    ``fov``: ``none`` | ``threshold`` (derive it from the image, for fundus photographs) | a file suffix
    (``NAME{fov}.ext`` next to the image, or ``fov/`` beside ``images/``)."""
    root = Path(root)
    if not root.is_dir():
        raise MedsslError(f"segmentation data folder not found: {root}")
    if channel not in CHANNELS:
        raise MedsslError(f"channel must be one of {', '.join(CHANNELS)}, got '{channel}'")
    fov_suffix = None if fov in ("none", "threshold") else fov
    pairs = _pairs(root, mask_suffix, fov_suffix)
    val, test = _split_counts(len(pairs), val_count, test_count)
    load = image_reader()
    images, masks, fovs, native_masks, native_fovs = [], [], [], [], []
    intensity: list[str] = []
    first_layout: tuple[int, ...] = ()
    first_shape: tuple[int, ...] = ()
    for image_path, mask_path, fov_path in pairs:
        raw = read_image(image_path, image_path.name, load)
        mask = _binary(read_image(mask_path, mask_path.name, load), mask_path, "mask")
        if mask.shape[1:] != raw.shape[1:]:
            raise MedsslError(f"{mask_path.name}: mask size {mask.shape[1:]} differs from image {image_path.name}"
                              f" size {raw.shape[1:]}")
        if not mask.any():
            raise MedsslError(f"{mask_path.name}: mask is empty (no foreground pixel)")
        if fov_path is not None:
            region = _binary(read_image(fov_path, fov_path.name, load), fov_path, "field-of-view mask")
            if region.shape != mask.shape:
                raise MedsslError(f"{fov_path.name}: field-of-view size {region.shape[1:]} differs from"
                                  f" image size {raw.shape[1:]}")
        else:
            region = threshold_fov(raw) if fov == "threshold" else None
        img = to_unit255(_select_channels(raw, channel, image_path), None)
        intensity.append(STORED if raw.dtype == np.uint8 else MINMAX)
        # resizing makes sizes agree, but never the number of dimensions or channels
        layout = img.shape if size is None else (img.ndim, img.shape[0])
        if images and layout != first_layout:
            raise MedsslError(f"{image_path.name}: shape {img.shape} does not match {pairs[0][0].name}"
                              f" {first_shape}{'' if size else '; pass --size to resize all images'}")
        if not images:
            first_layout, first_shape = layout, img.shape
        work = _working(img, mask, region, size)
        for collected, value in zip((images, masks, fovs, native_masks, native_fovs), work, strict=True):
            collected.append(value)
    names = [_stem(p) for p, _, _ in pairs]
    n = len(pairs)
    bounds = {"train": (0, n - test - val), "val": (n - test - val, n - test), "test": (n - test, n)}
    split_of = np.concatenate([np.full(hi - lo, SPLITS.index(s)) for s, (lo, hi) in bounds.items()])
    splits = _splits(split_of, names, images, masks, fovs, native_masks if size is not None else None,
                     native_fovs if size is not None else None, None)
    source = {"mask_suffix": mask_suffix, "fov": fov, "channel": channel, "size": size,
              "split_names": {s: splits[s].names for s in SPLITS}}
    return SegData(root.resolve().name, splits, images[0].ndim - 1, source,
                   of_items(((c, None) for c in intensity), None))


def _working(img: np.ndarray, mask: np.ndarray, region: np.ndarray | None, size: int | None) -> tuple:
    """(image uint8, mask coverage uint8, fov, native mask, native fov) at the working resolution: resized to
    ``size`` per axis (the native masks kept for evaluation), else as they are."""
    native = (mask, region)
    if size is not None:
        img = _resize(img, size)
        region = None if region is None else _resize(region.astype(np.float32), size) >= 0.5
        mask = _resize(mask.astype(np.float32), size) * 255
    else:
        mask = mask * 255
    return (np.clip(np.rint(img), 0, 255).astype(np.uint8), np.clip(np.rint(mask), 0, 255).astype(np.uint8),
            region, *native)


def _splits(split_of: np.ndarray, names: list[str], images: list, masks: list, fovs: list,
            native_masks: list | None, native_fovs: list | None, spacing: list | None) -> dict[str, SegSplit]:
    has_fov = fovs[0] is not None
    out = {}
    for i, split in enumerate(SPLITS):
        idx = np.flatnonzero(split_of == i)
        if len(idx) == 0:
            raise MedsslError(f"no {split} images: a 'split' column must name train, val and test rows")

        def pick(values: list | None, idx: np.ndarray = idx) -> list | None:
            return None if values is None else [values[j] for j in idx]

        out[split] = SegSplit(
            np.stack(pick(images)), np.stack(pick(masks)), pick(names), np.stack(pick(fovs)) if has_fov else None,
            pick(native_masks), pick(native_fovs) if has_fov else None, pick(spacing))
    return out


# ------------------------------------------------------------------------------ manifests, MSD (items)

def _pad_to(array: np.ndarray, shape: tuple[int, ...]) -> np.ndarray:
    return np.pad(array, [(0, 0)] + [(0, t - s) for s, t in zip(array.shape[1:], shape, strict=True)])


def seg_data_from_items(collection: Collection, prepared: list[Prepared], pre: Preprocessing, *,
                        fov: str = "none", channel: str = "all", size: int | None = None,
                        val_count: int | None = None, test_count: int | None = None) -> SegData:
    """Images with masks from a manifest or an MSD folder. Label maps count as foreground where > 0 (the class
    names are recorded). Splits: the items' own when every item has one, else by order as mask folders.
    Volumes of different sizes are zero-padded to the largest and the padding lies outside the field of view."""
    from medssl.data.assemble import fit_size

    prepared = [p for p in prepared if p.mask is not None]
    if not prepared:
        raise MedsslError(f"{collection.name}: no image has a mask")
    if channel not in CHANNELS:
        raise MedsslError(f"channel must be one of {', '.join(CHANNELS)}, got '{channel}'")
    keep_scale = size is not None and any(p.resampled_to is not None for p in prepared)
    images, masks, fovs, native_masks, native_fovs = [], [], [], [], []
    for p in prepared:
        img = _select_channels(p.image, channel, Path(p.item.name))
        mask = p.mask > 0
        region = p.fov > 0 if p.fov is not None else (threshold_fov(p.image) if fov == "threshold" else None)
        if keep_scale:  # physical scale kept: centre crop/pad to size, no resize
            img = fit_size(img, size, True)
            mask = fit_size(mask.astype(np.uint8), size, True) > 0
            region = None if region is None else fit_size(region.astype(np.uint8), size, True) > 0
        work = _working(img.astype(np.float64), mask, region, None if keep_scale else size)
        for collected, value in zip((images, masks, fovs, native_masks, native_fovs), work, strict=True):
            collected.append(value)
    layouts = {(im.ndim, im.shape[0]) for im in images}
    if len(layouts) > 1:
        raise MedsslError(f"{collection.name}: images differ in dimensions or channels {sorted(layouts)}")
    shapes = {im.shape[1:] for im in images}
    if len(shapes) > 1:
        largest = tuple(int(v) for v in np.max([list(s) for s in shapes], axis=0))
        fovs = [_pad_to(np.ones((1, *im.shape[1:]), bool) if f is None else f, largest) for im, f in zip(
            images, fovs, strict=True)]
        images = [_pad_to(im, largest) for im in images]
        masks = [_pad_to(m, largest) for m in masks]
    names = [p.item.name for p in prepared]
    if all(p.item.split for p in prepared):
        split_of = np.array([SPLITS.index(p.item.split) for p in prepared])
    else:
        n = len(prepared)
        val, test = _split_counts(n, val_count, test_count)
        split_of = np.array([0] * (n - test - val) + [1] * val + [2] * test)
    resized = size is not None and not keep_scale
    spacing = [p.spacing if not resized else tuple(s * n / size for s, n in zip(p.spacing, p.image.shape[1:],
                                                                                 strict=True)) for p in prepared]
    splits = _splits(split_of, names, images, masks, fovs, native_masks if resized else None,
                     native_fovs if resized else None, spacing)
    source = {"kind": collection.kind, "fov": fov, "channel": channel, "size": size, **pre.to_dict(),
              "class_names": collection.class_names, "split_names": {s: splits[s].names for s in SPLITS}}
    return SegData(collection.name, splits, images[0].ndim - 1, source, of_prepared(prepared, resized))


# --------------------------------------------------------------------------------------------- synthetic

def make_blobs(spatial_dims: int, *, n: int = 40, size: int = 32, seed: int = 0) -> SegData:
    """Textured noisy backgrounds with 1-3 brighter ellipsoidal blobs; the mask is the blobs' union.

    60 % train, 15 % val, 25 % test (at least one each). Deterministic from ``seed``."""
    if spatial_dims not in (2, 3):
        raise MedsslError(f"synthetic blobs: spatial_dims must be 2 or 3, got {spatial_dims}")
    if not 16 <= size <= 256:
        raise MedsslError(f"synthetic blobs: size must lie in 16..256, got {size}")
    if n < 4:
        raise MedsslError(f"synthetic blobs: need n >= 4 images, got {n}")
    gen = torch.Generator().manual_seed(seed)
    axis = torch.linspace(-1, 1, size)
    grid = torch.stack(torch.meshgrid(*(axis,) * spatial_dims, indexing="ij"))  # (d, *spatial)
    images, masks = [], []
    for _ in range(n):
        mask = torch.zeros((size,) * spatial_dims, dtype=torch.bool)
        for _ in range(int(torch.randint(1, 4, (1,), generator=gen))):
            centre = (torch.rand(spatial_dims, generator=gen) * 1.2 - 0.6).reshape(-1, *(1,) * spatial_dims)
            axes = (0.2 + 0.2 * torch.rand(spatial_dims, generator=gen)).reshape(-1, *(1,) * spatial_dims)
            mask |= (((grid - centre) / axes) ** 2).sum(0) <= 1
        low = torch.randn((1, 1, *(4,) * spatial_dims), generator=gen)
        texture = F.interpolate(low, size=(size,) * spatial_dims,
                                mode="bilinear" if spatial_dims == 2 else "trilinear", align_corners=False)[0, 0]
        image = 0.35 + 0.08 * texture + 0.3 * mask + 0.08 * torch.randn(mask.shape, generator=gen)
        images.append((image.clamp(0, 1) * 255).round().to(torch.uint8)[None].numpy())
        masks.append((mask.to(torch.uint8) * 255)[None].numpy())
    n_test, n_val = max(1, round(0.25 * n)), max(1, round(0.15 * n))
    bounds = {"train": (0, n - n_test - n_val), "val": (n - n_test - n_val, n - n_test), "test": (n - n_test, n)}
    splits = {s: SegSplit(np.stack(images[lo:hi]), np.stack(masks[lo:hi]), [f"blob{i:03d}" for i in range(lo, hi)])
              for s, (lo, hi) in bounds.items()}
    return SegData(f"synthetic:blobs{spatial_dims}d", splits, spatial_dims, {"synthetic": True, "size": size},
                   stored())


def load_seg_data(spec: str, *, seed: int = 0, size: int | None = None, mask_suffix: str = "_mask",
                  fov: str = "none", channel: str = "all", val_count: int | None = None,
                  test_count: int | None = None, preprocessing: Preprocessing | None = None,
                  log: Callable[[str], None] | None = None) -> SegData:
    """A mask folder, a manifest with a mask column, an MSD/nnU-Net folder, or ``synthetic:blobs2d[@SIZE]
    [?n=N]`` / ``synthetic:blobs3d``. ``preprocessing`` (spacing, intensity) applies to manifests and MSD."""
    if spec.startswith("synthetic:"):
        body, _, query = spec.removeprefix("synthetic:").partition("?")
        kind, _, size_text = body.partition("@")
        dims = {"blobs2d": 2, "blobs3d": 3}.get(kind)
        if dims is None:
            raise MedsslError(f"unknown synthetic segmentation set '{kind}'; choose blobs2d or blobs3d")
        options: dict = {"seed": seed, "size": int(size_text) if size_text.isdigit() else (48 if dims == 2 else 24)}
        if size_text and not size_text.isdigit():
            raise MedsslError(f"bad size in data spec '{spec}': '{size_text}' is not a whole number")
        for key, value in parse_qsl(query, keep_blank_values=True):
            if key not in ("n", "seed") or not value.isdigit():
                raise MedsslError(f"bad option '{key}={value}' in '{spec}'; known: n=INT, seed=INT")
            options[key] = int(value)
        return make_blobs(dims, **options)
    from medssl.data.assemble import prepare_collection
    from medssl.data.registry import sources

    source = next((s for s in sources() if s.name in ("manifest", "msd", "cache") and s.detect(spec)), None)
    if source is not None:
        from medssl.data.sources import prepared_items

        pre = preprocessing or Preprocessing()
        if source.prepared is None:  # decode only the images with a mask
            collection = source.scan(spec)
            collection.items = [item for item in collection.items if item.mask is not None]
            if not collection.items:
                raise MedsslError(f"{collection.name}: no image has a mask (a manifest needs a 'mask' column)")
        collection, prepared = prepared_items(source, spec, pre, log) if source.prepared is not None else (
            collection, prepare_collection(collection, pre, log))
        return seg_data_from_items(collection, prepared, pre, fov=fov, channel=channel, size=size,
                                   val_count=val_count, test_count=test_count)
    return load_mask_folder(spec, mask_suffix=mask_suffix, fov=fov, channel=channel, size=size,
                            val_count=val_count, test_count=test_count)

