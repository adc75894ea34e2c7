"""Study specs: every mistake is one clear MedsslError; the hash identifies the validated content."""

from __future__ import annotations

import pytest

from medssl.errors import MedsslError
from medssl.study.spec import Backbone, load_spec, parse_spec, policy_overrides
from tests.study.conftest import tiny_raw, write_spec


@pytest.mark.parametrize(
    ("overrides", "match"),
    [
        ({"methods": ["scratch", "magic"]}, "unknown method 'magic'"),
        ({"methods": ["simclr+magic"]}, "unknown method 'magic'"),
        ({"label_fractions": [0.0]}, "label fraction must lie in (0, 1]"),
        ({"label_fractions": [1.5]}, "label fraction must lie in (0, 1]"),
        ({"imbalance_ratios": [0.5]}, "imbalance ratio must be >= 1"),
        ({"methods": []}, "'methods' is empty"),
        ({"seeds": []}, "'seeds' is empty"),
        ({"policies": ["default", "yoga"]}, "unknown policy 'yoga'"),
        ({"policies": ["flips+scale"]}, "sets augment twice"),
        ({"backbones": ["vgg16"]}, "unknown backbone"),
        ({"pretrain": {"epochs": 0}}, "epochs must be >= 1"),
        ({"finetune": {"dropout": 0.5}}, "unknown 'finetune' setting"),
        ({"colour": "blue"}, "unknown study key"),
        ({"label_fractions": ["half"]}, "label fraction must be a number"),
        ({"pretrain": {"seed": "any"}}, "pretrain seed must be 'same' or an integer"),
        ({"finetune": {"epochs": "many"}}, "study 'tiny'"),
    ],
)
def test_bad_spec_is_one_clear_error(overrides, match):
    with pytest.raises(MedsslError, match=match.replace("(", r"\(").replace(")", r"\)").replace("+", r"\+")) as err:
        parse_spec(tiny_raw(**overrides))
    assert "\n" not in str(err.value)


def test_spec_hash_ignores_key_order_and_formatting_but_not_content(tmp_path):
    a = load_spec(write_spec(tmp_path / "a.yaml"))
    raw = tiny_raw()
    b = parse_spec(dict(reversed(list(raw.items()))))
    c = parse_spec(tiny_raw(label_fractions=[0.5, 1]))  # 1 and 1.0 are the same fraction
    assert a.hash == b.hash == c.hash
    assert parse_spec(tiny_raw(finetune={"epochs": 2})).hash != a.hash


def test_overrides_from_the_command_line_replace_datasets_and_seeds():
    spec = parse_spec(tiny_raw(), datasets=["x.npz", "y.npz"], seeds=5)
    assert spec.datasets == ["x.npz", "y.npz"] and spec.seeds == [0, 1, 2, 3, 4]


def test_backbones_parse_from_strings_and_mappings():
    spec = parse_spec(tiny_raw(backbones=["resnet18", "resnet10x0.5", {"name": "resnet34", "width": 0.25}]))
    assert spec.backbones == [Backbone("resnet18", 1.0), Backbone("resnet10", 0.5), Backbone("resnet34", 0.25)]


def test_policies_stack_their_overrides():
    assert policy_overrides("scale+balanced+focal") == {"augment": "scale", "balanced_sampling": True, "loss": "focal"}
    assert policy_overrides("default") == {}


def test_missing_or_unreadable_spec_file(tmp_path):
    with pytest.raises(MedsslError, match="study spec not found"):
        load_spec(tmp_path / "none.yaml")
    (tmp_path / "bad.yaml").write_text("methods: [unclosed\n")
    with pytest.raises(MedsslError, match="not a readable YAML"):
        load_spec(tmp_path / "bad.yaml")
    (tmp_path / "list.yaml").write_text("- a\n- b\n")
    with pytest.raises(MedsslError, match="must be a YAML mapping"):
        load_spec(tmp_path / "list.yaml")


def test_pretraining_on_test_images_is_refused():
    with pytest.raises(MedsslError, match="pretrain_splits may not include 'test'"):
        parse_spec(tiny_raw(pretrain={"epochs": 1, "pretrain_splits": ["train", "test"]}))


def test_matched_validation_and_finetuning_modes_are_study_settings():
    spec = parse_spec(tiny_raw(finetune={"epochs": 1, "val_labels": "matched", "lp_ft": True,
                                         "encoder_lr_mult": 0.1}))
    assert spec.finetune["val_labels"] == "matched"
    with pytest.raises(MedsslError, match="val labels must be full or matched"):
        parse_spec(tiny_raw(finetune={"epochs": 1, "val_labels": "half"}))
