"""Data conventions: what each source's uint8 values and voxels mean, recorded per item and per dataset, and
the upstream check's refusals and warnings (the end-to-end checks live in tests/integration)."""

from __future__ import annotations

import json

import numpy as np
import pytest
from PIL import Image as PILImage

from medssl.data.cache import prepare
from medssl.data.conventions import Conventions, check_upstream
from medssl.data.items import Image, Item
from medssl.data.preprocess import Preprocessing, prepare_item
from medssl.data.registry import scan
from medssl.data.sources import load_data
from medssl.errors import MedsslError
from tests.data.layouts import write_msd, write_msd_classification, write_nifti, write_volume_folder

CT = Conventions(("ct:-1000,400",), ("CT",))


def test_a_ct_window_applies_to_volumes_of_unknown_modality(tmp_path):
    values = np.linspace(-2000, 2000, 125, dtype=np.float32).reshape(5, 5, 5)
    write_nifti(tmp_path / "v.nii.gz", values, (1, 1, 1))
    item = Item("v", Image((tmp_path / "v.nii.gz",), "nifti"))  # no modality
    prepared = prepare_item(item, Preprocessing(intensity="ct:-1000,400"))
    np.testing.assert_allclose(prepared.image[0], np.rint(np.clip((values + 1000) / 1400 * 255, 0, 255)), atol=1)
    assert prepared.intensity == "ct:-1000,400"


def test_each_source_states_its_intensity_convention(tmp_path):
    assert load_data("synthetic:lesions2d@16?n=40").conventions == Conventions(("stored",))
    folder = tmp_path / "pictures"
    folder.mkdir()
    rows = ["path,label"]
    for i in range(8):
        PILImage.fromarray(np.full((8, 8), 20 * i, np.uint8)).save(folder / f"{i}.png")
        rows.append(f"{i}.png,{i % 2}")
    (folder / "labels.csv").write_text("\n".join(rows) + "\n")
    assert load_data(str(folder)).conventions.intensity == ("stored",)
    assert load_data(str(folder), window=(0, 100)).conventions.intensity == ("range:0,100",)
    corpus = write_volume_folder(tmp_path / "corpus", n=3)
    assert load_data(str(corpus), size=12).conventions == Conventions(("minmax",))
    resampled = load_data(str(corpus), size=12, preprocessing=Preprocessing(spacing=(2, 2, 2), intensity="mr"))
    assert resampled.conventions == Conventions(("mr",), ("MR",), (2.0, 2.0, 2.0))


def test_a_cache_records_the_conventions_of_the_data_it_was_prepared_from(tmp_path):
    corpus = write_volume_folder(tmp_path / "corpus", n=3)
    pre = Preprocessing(spacing=(2, 2, 2), intensity="ct:-400,400")
    prepare(str(corpus), tmp_path / "cache", pre, progress=False, log=lambda _: None)
    direct = load_data(str(corpus), size=12, preprocessing=pre)
    cached = load_data(str(tmp_path / "cache"), size=12)
    assert cached.conventions == direct.conventions == Conventions(("ct:-400,400",), ("CT",), (2.0, 2.0, 2.0))
    # a size crops/pads resampled volumes (their scale kept) whether they were resampled now or in the cache
    np.testing.assert_array_equal(cached.splits["train"].images, direct.splits["train"].images)
    entry = json.loads(next((tmp_path / "cache" / "entries").glob("*.json")).read_text())
    assert entry["intensity"] == "ct:-400,400" and entry["resampled_to"] == [2.0, 2.0, 2.0]


def test_msd_segmentation_data_carries_its_modality_and_intensity(tmp_path):
    from medssl.data.masks import load_seg_data

    write_msd(tmp_path / "msd", n=4, channels=1)
    seg = load_seg_data(str(tmp_path / "msd"), preprocessing=Preprocessing(intensity="mr"))
    assert seg.conventions == Conventions(("mr",), ("MR",)) == seg.image_data().conventions


def test_an_msd_datalist_with_classes_is_labelled_and_its_unlabeled_test_image_is_skipped(tmp_path):
    collection = scan(str(write_msd_classification(tmp_path / "msd", n=6)))
    assert [item.label for item in collection.items] == ["0", "1"] * 3
    assert all(item.mask is None and item.modality == "MR" for item in collection.items)
    assert [s.reason for s in collection.skipped] == ["a test image without a class (classification dataset)"]
    data = load_data(str(tmp_path / "msd"), preprocessing=Preprocessing(intensity="mr"))
    assert data.num_classes == 2 and sum(len(s) for s in data.splits.values()) == 6


def test_an_msd_datalist_mixing_classes_and_label_maps_is_one_error(tmp_path):
    root = write_msd_classification(tmp_path / "msd", n=4)
    meta = json.loads((root / "dataset.json").read_text())
    meta["training"][0]["label"] = "./imagesTr/case_001.nii.gz"
    (root / "dataset.json").write_text(json.dumps(meta))
    with pytest.raises(MedsslError, match="mixes class labels and label-map files"):
        scan(str(root))


def test_modality_names_are_compared_in_dicom_terms():
    from medssl.data.conventions import of_items

    assert of_items([("mr", "MRI"), ("mr", " mr ")], None).modalities == ("MR",)


def test_data_whose_conventions_the_upstream_covers_passes_silently():
    mixed = Conventions(("ct:-1000,400", "mr"), ("CT", "MR"))  # a CT + MR corpus under one ct: option
    assert check_upstream(mixed, CT, "A") == []
    assert check_upstream(CT, CT, "A") == []
    assert check_upstream(CT, None, "A") == []  # arrays given directly: nothing known, nothing to say


@pytest.mark.parametrize("upstream, data, expected", [
    (None, CT, "A records no data conventions"),
    (Conventions(("stored",)), CT, "the scales cannot be compared"),
    (Conventions(("range:0,255",)), Conventions(("ct:-1000,400",)), "another window of the same kind"),
    (Conventions(("mr",), ("MR",), (1.0, 1.0, 1.0)), Conventions(("mr",), ("MR",), (2.0, 2.0, 2.0)),
     "resampled to 1x1x1 mm, the data here to 2x2x2 mm"),
])
def test_usable_mismatches_are_warnings(upstream, data, expected):
    warnings = check_upstream(upstream, data, "A")
    assert len(warnings) == 1 and expected in warnings[0]


@pytest.mark.parametrize("upstream, data, fix", [
    (Conventions(("mr",), ("MR",)), Conventions(("minmax",)), "intensity mr"),
    (Conventions(("minmax",)), Conventions(("range:0,100",)), "no intensity option"),
    (CT, Conventions(("mr",), ("CT",)), "intensity ct:-1000,400"),  # CT data scaled by percentiles
])
def test_a_same_modality_intensity_mismatch_is_refused_with_the_upstreams_option(upstream, data, fix):
    with pytest.raises(MedsslError, match=f"load it with {fix}"):
        check_upstream(upstream, data, "A")
