"""Model packages: the weights load into a plain MONAI network through the card's own snippet and through
monai.bundle; packages stand in for runs as checkpoints; bad packages are one-line errors."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
import torch

from medssl.errors import MedsslError
from medssl.models.encoder import BackboneSpec, Encoder
from medssl.models.package import SNIPPET_MARKER, export_package, is_package, load_package_encoder
from medssl.runio import load_state, save_state, write_json, write_yaml


def _fake_run(root, spatial_dims=2, metrics=None, **config):
    """A finished pre-training run, written directly (fast)."""
    torch.manual_seed(0)
    spec = BackboneSpec("resnet10", spatial_dims, 1, 0.125)
    save_state(root / "encoder.pt", Encoder(spec).export_state())
    write_yaml(root / "config.yaml", {"kind": "pretrain", "data": "synthetic:lesions2d@16", "method": "simclr",
                                      "epochs": 3, "batch_size": 8, "backbone_spec": spec.to_dict(),
                                      "spatial_dims": spatial_dims, "medssl_version": "test",
                                      "data_summary": {"name": "x", "image_shape": [16] * spatial_dims,
                                                       "pool_images": 40, "num_classes": 2}, **config})
    write_json(root / "metrics.json", metrics or {"train": {"loss": 1.2345}, "steps": 15})
    return root


@pytest.fixture
def package(tmp_path):
    run = _fake_run(tmp_path / "run")
    return export_package(run, tmp_path / "pkg", licence="cc-by-4.0")


def test_the_model_cards_snippet_loads_the_weights_into_a_plain_monai_network(package, monkeypatch):
    card = (package / "README.md").read_text()
    snippet = re.search(re.escape(SNIPPET_MARKER) + r"\n```python\n(.*?)```", card, re.S).group(1)
    assert len(snippet.strip().splitlines()) == 3
    readme = (Path(__file__).resolve().parents[2] / "README.md").read_text()
    assert f"```python\n{snippet}```" in readme  # the project README documents this very snippet
    monkeypatch.chdir(package)  # the snippet names the package as '.', as a user inside it would
    namespace: dict = {}
    exec(snippet, namespace)
    net = namespace["net"]
    encoder = Encoder(BackboneSpec("resnet10", 2, 1, 0.125))
    encoder.load_exported(load_state(package.parent / "run" / "encoder.pt"))
    x = torch.rand(2, 1, 16, 16)
    net.eval(), encoder.eval()
    assert torch.allclose(net(x), encoder(x), atol=1e-5)


@pytest.mark.filterwarnings("ignore:parsing config_file")  # MONAI's notice that bundle configs run code
def test_monai_bundle_tooling_loads_the_package(package):
    import monai.bundle

    net = monai.bundle.load(package.name, bundle_dir=str(package.parent), workflow_type="inference", device="cpu",
                            progress=False)
    expected = load_state(package.parent / "run" / "encoder.pt")
    state = net.state_dict()
    assert set(state) == set(expected) and all(torch.equal(state[k], v) for k, v in expected.items())
    metadata = json.loads((package / "configs" / "metadata.json").read_text())
    assert metadata["network_data_format"]["inputs"]["image"]["num_channels"] == 1
    assert {"version", "monai_version", "pytorch_version", "task", "description"} <= set(metadata)


def test_config_and_card_describe_the_run(tmp_path):
    ft = tmp_path / "ft"
    write_yaml(ft / "config.yaml", {"kind": "finetune", "data": "breast", "label_fraction": 0.1,
                                    "linear_probe": False})
    write_json(ft / "metrics.json", {"test": {"auc": 0.8123, "acc": 0.7, "balanced_acc": 0.65,
                                              "per_class_recall": [0.5, 0.8]}})
    run = _fake_run(tmp_path / "run", method_args={"temperature": 0.5}, window=[-100, 300], spacing=[1.5, 1.5],
                    intensity="ct:-1000,400")
    package = export_package(run, tmp_path / "pkg", evaluations=[ft], hyperparameters={"temperature": 0.5})
    config = json.loads((package / "config.json").read_text())
    assert config["backbone_spec"]["name"] == "resnet10" and config["spatial_dims"] == 2
    assert config["preprocessing"]["image_size"] == [16, 16] and config["preprocessing"]["ct_window"] == [-100, 300]
    assert config["preprocessing"]["spacing"] == [1.5, 1.5]
    assert config["preprocessing"]["intensity_normalisation"] == "ct:-1000,400"
    assert config["pretraining"]["method_args"] == {"temperature": 0.5}
    card = (package / "README.md").read_text()
    assert card.startswith("---\nlicense: other\n")
    assert "loss 1.234" in card and "temperature=0.5" in card and "3 epochs, 15 steps" in card
    assert "spacing: [1.5, 1.5]; intensity normalisation: ct:-1000,400" in card
    assert "| ft | finetune | `breast` | 0.1 | 0.7000 | 0.8123 | 0.6500 |" in card
    assert is_package(package) and not is_package(run)


def test_a_package_stands_in_for_its_run_and_is_checked_against_the_data(package):
    encoder = load_package_encoder(package, spatial_dims=2, channels=1)
    expected = load_state(package.parent / "run" / "encoder.pt")
    assert all(torch.equal(encoder.export_state()[k], v) for k, v in expected.items())
    with pytest.raises(MedsslError, match="is 2D but the data is 3D"):
        load_package_encoder(package, spatial_dims=3, channels=1)


def test_bad_packages_and_runs_are_one_line_errors(package, tmp_path):
    (package / "models" / "model.safetensors").write_bytes(b"not safetensors")
    with pytest.raises(MedsslError, match="not a readable safetensors file"):
        load_package_encoder(package, 2, 1)
    with pytest.raises(MedsslError, match="not a finished pre-training run"):
        export_package(tmp_path / "nothing", tmp_path / "out")
    run = _fake_run(tmp_path / "run2")
    with pytest.raises(MedsslError, match="exists; pass --overwrite"):
        export_package(run, package)
    assert not list(tmp_path.glob(".out*")) and not list(tmp_path.glob(".pkg*"))  # no half-written package
