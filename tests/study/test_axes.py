"""Study axes declared once (``study.axes``): the plan, the spec hash, condition keys, report columns and
``study status`` derive from the registry; a new axis is one entry; existing studies keep their cells."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pytest

from medssl.errors import MedsslError
from medssl.study import axes
from medssl.study.presets import preset
from medssl.study.runner import plan
from medssl.study.spec import parse_spec
from tests.study.conftest import tiny_raw

# hashes and planned cells of representative specs and every preset, computed on main before the registry
# (tests/study/plans_on_main.json: spec hash, cell count, sha256 of the cells' canonical JSON)
ON_MAIN = json.loads((Path(__file__).parent / "plans_on_main.json").read_text())


def _cells_digest(spec) -> tuple[int, str]:
    cells = [{"key": c.key, "kind": c.kind, "depends_on": c.depends_on, "config": c.config, "labels": c.labels,
              "run_dir": c.run_dir, "seq": c.seq} for c in plan(spec, "/runs")]
    return len(cells), hashlib.sha256(json.dumps(cells, sort_keys=True).encode()).hexdigest()


@pytest.mark.parametrize("name", sorted(ON_MAIN))
def test_existing_specs_keep_their_hash_and_their_cells(name):
    """Study databases written before the axis registry resume: same spec hash, same cell keys and configs."""
    before = ON_MAIN[name]
    spec = preset(name.split(":", 1)[1]) if name.startswith("preset:") else parse_spec(before["raw"])
    assert spec.hash == before["hash"]
    assert _cells_digest(spec) == (before["n_cells"], before["cells_sha256"])


TOY = axes.Axis("toy_level", "toy_levels", "toy", "paired", (1,), parse=lambda v: axes.whole(v, "toy levels"),
                overrides=lambda level: {"label_smoothing": level / 10}, fields=("label_smoothing",),
                tag=lambda level: f"t{level}", phrase="toy {}")


@pytest.fixture
def toy_axis():
    axes.register(TOY)
    yield TOY
    axes.unregister(TOY.name)


def test_a_new_axis_is_one_entry_seen_by_plan_conditions_report_and_status(toy_axis):
    from medssl.study.report import paired_table
    from medssl.study.stats import Comparison, condition_keys, pairing_keys
    from medssl.study.status import label_keys
    from tests.study.test_report import _difference

    spec = parse_spec(tiny_raw(toy_levels=[1, 3]))
    assert spec.cell_count() == 2 * 2 * 2 * 2  # methods x fractions x seeds x toy levels
    finetunes = [c for c in plan(spec, "/runs") if c.kind == "finetune"]
    assert len(finetunes) == spec.cell_count()
    assert {c.config["label_smoothing"] for c in finetunes} == {0.1, 0.3}
    assert {c.labels["toy_level"] for c in finetunes} == {1, 3}
    assert all(c.key.split("-")[-2] in ("t1", "t3") for c in finetunes)  # named by its level
    assert "toy_level" in condition_keys() and "toy_level" in pairing_keys() and "toy_level" in label_keys()
    assert spec.to_dict()["toy_levels"] == [1, 3] and spec.hash != parse_spec(tiny_raw()).hash
    # at its default the axis changes nothing a study stored before it existed
    assert parse_spec(tiny_raw()).hash == ON_MAIN["tiny"]["hash"]
    condition = {"dataset": "d", "upstream": "d", "method": "rotation", "backbone": "r", "label_fraction": 0.5,
                 "label_count": None, "imbalance_ratio": None, "policy": "default", "toy_level": 3}
    table = paired_table([Comparison(condition, {"AUC": _difference([0.1, 0.2])})], spec.to_dict(),
                         axes_metric(), _context())
    assert "toy" in table.columns and table.rows[0][table.columns.index("toy")] == "3"
    with pytest.raises(MedsslError, match="toy levels must be whole numbers"):
        parse_spec(tiny_raw(toy_levels=[1.5]))


def test_an_axis_that_changes_pretraining_gives_each_level_its_own_encoder():
    steps = axes.Axis("pretrain_steps", "pretrain_steps", "pre-training steps", "paired", (5,),
                      parse=lambda v: axes.whole(v, "pretrain steps"), pretrain=lambda n: {"max_steps": n},
                      tag=lambda n: f"p{n}")
    axes.register(steps)
    try:
        cells = plan(parse_spec(tiny_raw(pretrain_steps=[5, 20])), "/runs")
    finally:
        axes.unregister(steps.name)
    pretrains = [c for c in cells if c.kind == "pretrain"]
    assert sorted(c.config["max_steps"] for c in pretrains) == [5, 5, 20, 20]  # x 2 seeds
    for cell in cells:
        if cell.kind == "finetune" and cell.depends_on is not None:  # fine-tuned from its level's encoder
            encoder = next(p for p in pretrains if p.key == cell.depends_on)
            assert encoder.labels["pretrain_steps"] == cell.labels["pretrain_steps"]
    assert len({c.key for c in cells}) == len(cells)


def axes_metric():
    from medssl.study.stats import AUC

    return AUC


def _context():
    from medssl.study.report import Context

    return Context("holm", 1)


@pytest.mark.parametrize(("overrides", "match"), [
    ({"label_fractions": [0.5, 0.5]}, "'label_fractions' repeats a level"),
    ({"seeds": [0, -1]}, "seeds must be >= 0"),
    ({"imbalance_ratios": ["x"]}, "imbalance ratio must be a number"),
    ({"policies": ["yoga"]}, "choose from default, none, flips"),
    ({"backbones": ["resnet10xwide"]}, "must be NAME or NAMExWIDTH"),
    ({"datasets": None}, "study spec needs 'datasets'"),
    ({"upstream": []}, "'upstream' is empty"),
])
def test_a_bad_axis_level_is_one_line_naming_what_is_valid(overrides, match):
    with pytest.raises(MedsslError, match=match) as err:
        parse_spec(tiny_raw(**overrides))
    assert "\n" not in str(err.value) and str(err.value).startswith("study 'tiny': ")


def test_spec_settings_are_the_config_dataclass_fields():
    """pretrain:/finetune:/run: accept the config fields no axis sets, whatever the config gains later."""
    from medssl.study.spec import finetune_keys, pretrain_keys, run_keys
    from medssl.study.tasks import study_task

    assert {"epochs", "max_steps", "pretrain_splits", "seed", "crops"} <= set(pretrain_keys())
    assert not {"method", "backbone", "data", "out"} & set(pretrain_keys())
    classify = finetune_keys(study_task("classify"))
    assert {"focal_gamma", "linear_probe", "grid"} <= set(classify)
    assert not {"label_fraction", "imbalance_ratio", "loss", "augment", "seed", "checkpoint"} & set(classify)
    segment = finetune_keys(study_task("segment"))
    assert {"augment", "transfer", "patch_size"} <= set(segment)  # no policy axis: the recipe is set here
    assert not {"label_count", "grid", "mask_suffix"} & set(segment)
    assert {"accelerator", "precision", "deterministic"} <= set(run_keys())
    parse_spec(tiny_raw(finetune={"epochs": 1, "focal_gamma": 1.0}))
    with pytest.raises(MedsslError, match=r"unknown 'finetune' setting.*loss"):
        parse_spec(tiny_raw(finetune={"loss": "focal"}))  # a policy sets it
