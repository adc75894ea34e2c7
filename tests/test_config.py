"""``medssl.config``: every option a user reads about is declared once on its field, and values from a file
are checked against the fields (unknown keys and wrong types as one line) and converted to their types."""

from __future__ import annotations

from dataclasses import fields

import pytest

from medssl.config import CommonConfig, FinetuneConfig, PretrainConfig, config_values, is_required
from medssl.errors import MedsslError


@pytest.mark.parametrize("config", [CommonConfig, PretrainConfig])
def test_every_run_and_pretrain_field_carries_its_help_text(config):
    missing = [f.name for f in fields(config) if not f.metadata.get("help")]
    assert missing == []


def test_only_data_and_out_are_required():
    assert [f.name for f in fields(PretrainConfig) if is_required(f)] == ["data", "out"]


def test_file_values_are_converted_to_the_field_types():
    values = config_values(PretrainConfig, {
        "lr": 1, "window": [-1000, 400], "spacing": 1.5, "patch": [32, 32, 16], "weights": [1, 0.5],
        "batch_size": None, "method_args": {"temperature": 0.5}, "loggers": ["csv", "mlflow"]}, "run.yaml")
    assert values == {"lr": 1.0, "window": (-1000.0, 400.0), "spacing": (1.5,), "patch": (32, 32, 16),
                      "weights": [1.0, 0.5], "batch_size": None, "method_args": {"temperature": 0.5},
                      "loggers": ["csv", "mlflow"]}
    assert isinstance(values["lr"], float) and isinstance(values["weights"][0], float)


def test_an_unknown_key_is_one_line_naming_the_valid_keys_and_the_closest():
    with pytest.raises(MedsslError) as error:
        config_values(FinetuneConfig, {"label_fractoin": 0.1}, "run.yaml")
    message = str(error.value)
    assert "\n" not in message
    assert message.startswith("run.yaml: unknown key 'label_fractoin' (did you mean 'label_fraction'?); valid keys:")
    assert all(f.name in message for f in fields(FinetuneConfig))


@pytest.mark.parametrize(("values", "match"), [
    ({"lr": "fast"}, "run.yaml: lr must be float or null, got 'fast'"),
    ({"epochs": 2.5}, "run.yaml: epochs must be a whole number, got 2.5"),
    ({"overwrite": "maybe"}, "run.yaml: overwrite must be bool, got 'maybe'"),
    ({"loggers": "csv"}, "run.yaml: loggers must be a list of str, got 'csv'"),
    ({"window": [400]}, "run.yaml: window must be a list of 2 values or null, got [400]"),
    ({"method_args": ["temperature"]}, "run.yaml: method_args must be a mapping"),
    ({"data": ["a.npz"]}, "run.yaml: data must be str"),
])
def test_a_wrong_type_is_one_line_naming_the_key(values, match):
    with pytest.raises(MedsslError, match=r"^" + match.replace("[", r"\[").replace("(", r"\(")):
        config_values(PretrainConfig, values, "run.yaml")
