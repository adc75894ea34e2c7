"""Study specs carry per-method hyperparameters into the pre-training cells and the hash."""

from __future__ import annotations

import pytest

from medssl.errors import MedsslError
from medssl.study.runner import plan
from medssl.study.spec import parse_spec
from tests.study.conftest import tiny_raw


def test_method_args_are_validated_coerced_and_reach_only_their_methods_cells(tmp_path):
    spec = parse_spec(tiny_raw(methods=["scratch", "rotation", "simclr"],
                               method_args={"simclr": {"temperature": "0.5", "crop_scale": [0.3, 1]}}))
    assert spec.method_args == {"simclr": {"temperature": 0.5, "crop_scale": [0.3, 1.0]}}
    pretrains = {c.labels["method"]: c.config for c in plan(spec, tmp_path) if c.kind == "pretrain"}
    assert pretrains["simclr"]["method_args"] == {"temperature": 0.5, "crop_scale": [0.3, 1.0]}
    assert "method_args" not in pretrains["rotation"]
    plain = parse_spec(tiny_raw(methods=["scratch", "rotation", "simclr"]))
    assert plain.hash != spec.hash and "method_args" not in plain.to_dict()


@pytest.mark.parametrize(("method_args", "match"), [
    ({"simclr": {"tempature": 0.5}}, "unknown method argument 'tempature' (simclr: blur_p"),
    ({"moco": {"queue_size": 8}}, "method_args for 'moco', which is not among the pre-trained methods"),
    ({"simclr": 0.5}, "must be a mapping"),
])
def test_bad_method_args_are_one_line_errors(method_args, match):
    with pytest.raises(MedsslError) as err:
        parse_spec(tiny_raw(methods=["scratch", "simclr"], method_args=method_args))
    assert match in str(err.value) and "\n" not in str(err.value)
