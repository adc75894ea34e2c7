"""Detection data: planted boxes are the tight boxes of their masks; manifests (JSON datalist, CSV) and their
mistakes."""

import json

import numpy as np
import pytest
from PIL import Image

from medssl.data.planted import make_planted
from medssl.errors import MedsslError
from medssl.tasks.detect.data import load_detection_data


@pytest.mark.parametrize("dims", [2, 3])
def test_planted_boxes_cover_exactly_the_lesion_voxels(dims):
    split = make_planted(dims, n=12, size=16, seed=1)["train"]
    for mask, boxes in zip(split.masks, split.boxes, strict=True):
        painted = np.zeros(mask.shape[1:], bool)
        for box in boxes.astype(int):
            painted[tuple(slice(box[a], box[a + dims]) for a in range(dims))] = True
        assert (painted >= (mask[0] > 0)).all()  # every lesion voxel is inside a box
        for box in boxes.astype(int):  # and each box is tight: its border planes touch the lesion
            inside = mask[0][tuple(slice(box[a], box[a + dims]) for a in range(dims))] > 0
            for axis in range(dims):
                assert inside.take(0, axis).any() and inside.take(-1, axis).any()
    assert split.has_lesion.any() and not split.has_lesion.all()


def test_synthetic_spec_options_and_errors():
    data = load_detection_data("synthetic:boxes2d@24?n=20&seed=3")
    assert data.spatial_dims == 2 and data.splits["test"].images.shape[2:] == (24, 24)
    with pytest.raises(MedsslError, match="choose boxes2d or boxes3d"):
        load_detection_data("synthetic:boxes4d")
    with pytest.raises(MedsslError, match="known: n=INT"):
        load_detection_data("synthetic:boxes2d?count=3")


def _write_images(folder, n=8):
    rng = np.random.default_rng(0)
    for i in range(n):
        Image.fromarray(rng.integers(0, 255, (20, 30), dtype=np.uint8)).save(folder / f"im{i}.png")


def test_json_datalist_with_a_box_mode_and_resizing(tmp_path):
    _write_images(tmp_path)
    entry = {"image": "im0.png", "box": [[10, 15, 4, 6]], "label": [0]}  # centre (10, 15), size 4 x 6
    content = {"box_mode": "ccwh", "training": [entry, {"image": "im1.png", "box": [], "label": []}],
               "validation": [{"image": "im2.png", "box": [[1, 1, 5, 5]], "label": [1]}],
               "test": [{"image": "im3.png", "box": [[0, 0, 2, 2]], "label": [0]}]}
    (tmp_path / "list.json").write_text(json.dumps(content))
    data = load_detection_data(str(tmp_path / "list.json"), size=40)
    assert data.num_classes == 2 and len(data.splits["train"]) == 2
    # ccwh -> xyxy [8, 12, 12, 18], then scaled by 40/20 along rows and 40/30 along columns
    assert np.allclose(data.splits["train"].boxes[0], [[16, 16, 24, 24]])


def test_csv_manifest_groups_rows_per_image_and_splits_unsplit_images(tmp_path):
    _write_images(tmp_path)
    rows = ["image,box,label"] + [f"im{i}.png,1 1 {4 + i} 5,0" for i in range(8)] + ["im0.png,6 6 9 9,0", "im7.png,,"]
    (tmp_path / "boxes.csv").write_text("\n".join(rows) + "\n")
    data = load_detection_data(str(tmp_path / "boxes.csv"))
    assert sum(len(s) for s in data.splits.values()) == 8
    all_boxes = {n: b for s in data.splits.values() for n, b in zip(s.names, s.boxes, strict=True)}
    assert len(all_boxes["im0.png"]) == 2 and len(all_boxes["im7.png"]) == 1


@pytest.mark.parametrize(("content", "message"), [
    ("image,box,label\nim0.png,1 2 3,0\n", "4 numbers each"),
    ("image,box,label\nim0.png,5 5 1 1,0\n", "start < end"),
    ("image,box,label\nmissing.png,1 1 2 2,0\n", "image not found"),
    ("image,rect\nim0.png,1\n", "columns image,box,label"),
    ("image,box,label,split\nim0.png,1 1 2 2,0,holdout\n", "unknown split"),
])
def test_manifest_mistakes_are_one_line_errors(tmp_path, content, message):
    _write_images(tmp_path)
    (tmp_path / "boxes.csv").write_text(content)
    with pytest.raises(MedsslError, match=message):
        load_detection_data(str(tmp_path / "boxes.csv"))
