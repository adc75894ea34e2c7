"""Pre-train on corpus A, fine-tune on dataset B: dimensions, channels and intensity conventions are checked
before anything is trained or written, the same way for a run dir and for its model package."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest

from medssl.api import pretrain
from medssl.config import FinetuneConfig, PretrainConfig
from medssl.data.conventions import Conventions
from medssl.data.preprocess import Preprocessing
from medssl.data.sources import load_data
from medssl.errors import MedsslError
from medssl.models.package import export_package, recorded_conventions
from medssl.runio import read_yaml
from medssl.tasks.classify.run import finetune
from medssl.tasks.common import load_pretrained
from tests.data.layouts import write_msd, write_volume_folder, write_volume_manifest

CT = "ct:-1000,400"


@pytest.fixture(scope="module")
def upstream(tmp_path_factory) -> dict[str, Path]:
    """A 3D encoder pre-trained on a NIfTI folder (unknown modality) windowed as CT, its package, and
    downstream layouts."""
    root = tmp_path_factory.mktemp("upstream")
    corpus = write_volume_folder(root / "corpus", n=4)
    run = pretrain(PretrainConfig(data=str(corpus), out=str(root / "run"), method="simclr", backbone="resnet10",
                                  width=0.125, epochs=1, batch_size=2, size=16, intensity=CT), progress=False).run_dir
    package = export_package(run, root / "package")
    manifest = write_volume_manifest(root / "down", n=8)
    with_mr = manifest.with_name("mr.csv")
    lines = manifest.read_text().splitlines()
    with_mr.write_text("\n".join([lines[0] + ",modality"] + [line + ",MR" for line in lines[1:]]) + "\n")
    return {"run": run, "package": package, "manifest": manifest, "mr": with_mr,
            "msd": write_msd(root / "msd", n=4, channels=2)}


def _data(spec: Path | str, intensity: str | None = None):
    return load_data(str(spec), size=16, preprocessing=Preprocessing(intensity=intensity))


def _refusal(checkpoint: Path | str, data) -> str:
    with pytest.raises(MedsslError) as err:
        load_pretrained(checkpoint, data)
    message = str(err.value)
    assert "\n" not in message
    return message.replace(str(checkpoint), "UPSTREAM")


def _warnings(checkpoint: Path, data, caplog) -> list[str]:
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="medssl.upstream"):
        load_pretrained(checkpoint, data)
    return [r.getMessage().replace(str(checkpoint), "UPSTREAM") for r in caplog.records]


def test_the_pretraining_run_and_its_package_record_the_same_conventions(upstream):
    recorded = recorded_conventions(upstream["run"])
    assert recorded == Conventions((CT,), ("CT",), None)  # unknown modality + a CT window: taken as CT
    assert recorded_conventions(upstream["package"]) == recorded
    assert read_yaml(upstream["run"] / "config.yaml")["data_summary"]["conventions"]["intensity"] == [CT]
    card = (upstream["package"] / "README.md").read_text()
    assert "(checked before fine-tuning): intensity a CT window of -1000..400 HU; modalities CT" in card


@pytest.mark.parametrize("kind", ["run", "package"])
def test_matching_conventions_load_without_a_warning(upstream, kind, caplog):
    assert _warnings(upstream[kind], _data(upstream["manifest"], CT), caplog) == []


def test_a_same_modality_intensity_mismatch_is_refused_in_one_line_for_run_and_package(upstream):
    data = _data(upstream["manifest"])  # no intensity option: each volume min-max scaled
    messages = {kind: _refusal(upstream[kind], data) for kind in ("run", "package")}
    scheme = _refusal(f"package:{upstream['package']}", data).replace(str(upstream["package"]), "UPSTREAM")
    assert messages["run"] == messages["package"] == scheme == (
        "UPSTREAM was pre-trained on intensities scaled by a CT window of -1000..400 HU but the data here is scaled"
        " by each image's own min..max: load it with intensity ct:-1000,400, as the upstream was")


@pytest.mark.parametrize("spec, intensity", [("mr", "mr"), ("manifest", "mr")])
def test_ct_window_upstream_and_mr_data_is_a_logged_cross_modality_warning(upstream, spec, intensity, caplog):
    data = _data(upstream[spec], intensity)  # MR from the manifest's column, or implied by the mr option
    for kind in ("run", "package"):
        assert _warnings(upstream[kind], data, caplog) == [
            "cross-modality transfer: UPSTREAM was pre-trained on CT (a CT window of -1000..400 HU), the data here"
            " is MR (0.5-99.5 percentile scaling)"]


def test_another_ct_window_is_a_warning_not_a_refusal(upstream, caplog):
    assert _warnings(upstream["run"], _data(upstream["manifest"], "ct:-160,240"), caplog) == [
        "UPSTREAM was pre-trained on intensities scaled by a CT window of -1000..400 HU, the data here by a CT"
        " window of -160..240 HU: another window of the same kind"]


@pytest.mark.parametrize("kind", ["run", "package"])
def test_mismatched_dimensions_and_channels_are_refused_in_one_line(upstream, kind):
    assert _refusal(upstream[kind], load_data("synthetic:lesions2d@16?n=40")) == (
        "checkpoint UPSTREAM is 3D but the data is 2D")
    two_channels = load_data(str(upstream["msd"]), preprocessing=Preprocessing(intensity=CT))
    assert _refusal(upstream[kind], two_channels) == "checkpoint UPSTREAM expects 1 channel(s) but the data has 2"


def test_a_refused_finetune_writes_nothing(upstream, tmp_path):
    out = tmp_path / "ft"
    config = FinetuneConfig(data=str(upstream["manifest"]), out=str(out), checkpoint=str(upstream["run"]), size=16,
                            epochs=1, batch_size=4)
    with pytest.raises(MedsslError, match="load it with intensity ct:-1000,400"):
        finetune(config, progress=False)
    assert not out.exists()


@pytest.mark.parametrize("kind", ["run", "package"])
def test_evaluate_checks_the_encoders_conventions_like_fine_tuning(upstream, kind):
    from medssl.evaluate.checkpoints import load_encoder

    with pytest.raises(MedsslError, match="load it with intensity ct:-1000,400"):
        load_encoder(upstream[kind], _data(upstream["manifest"]))
    assert load_encoder(upstream[kind], _data(upstream["manifest"], CT)).feature_dim > 0
