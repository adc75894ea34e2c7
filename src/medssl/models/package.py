"""Model packages: a finished pre-training run's encoder as a self-describing directory.

```
PACKAGE/
  README.md                 model card (Hugging Face front matter: licence, tags)
  config.json               backbone spec, MONAI ResNet arguments, the preprocessing the encoder expects
  models/model.safetensors  the weights (a plain MONAI ResNet state_dict)
  models/model.pt           the same tensors for MONAI bundle tooling (``monai.bundle.load`` reads torch files)
  configs/metadata.json     MONAI bundle metadata
  configs/inference.json    MONAI bundle network definition (``network_def``)
```
The layout is a MONAI bundle and a Hugging Face Hub model repository at once; nothing is uploaded.
"""

from __future__ import annotations

import json
import logging
import os
import platform
import shutil
import tempfile
from pathlib import Path
from typing import Any

import numpy as np
import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file
from torch import Tensor

from medssl.data.conventions import Conventions, check_upstream, describe
from medssl.errors import MedsslError
from medssl.models.encoder import BackboneSpec, Encoder
from medssl.runio import checked_backbone_spec, is_complete, load_state, read_yaml

FORMAT = "medssl-model-package"
FORMAT_VERSION = 1
CONFIG = "config.json"
WEIGHTS = Path("models") / "model.safetensors"
TORCH_WEIGHTS = Path("models") / "model.pt"
METADATA = Path("configs") / "metadata.json"
INFERENCE = Path("configs") / "inference.json"
SNIPPET_MARKER = "<!-- load-snippet -->"


def is_package(path: str | Path) -> bool:
    config = Path(path) / CONFIG
    if not config.is_file():
        return False
    try:
        return json.loads(config.read_text()).get("format") == FORMAT
    except (json.JSONDecodeError, UnicodeDecodeError, AttributeError):
        return False


def read_package_config(path: str | Path) -> dict:
    try:
        config = json.loads((Path(path) / CONFIG).read_text())
    except FileNotFoundError:
        raise MedsslError(f"{path} is not a model package (no {CONFIG})") from None
    except (json.JSONDecodeError, UnicodeDecodeError):
        raise MedsslError(f"{Path(path) / CONFIG}: not valid JSON") from None
    if not isinstance(config, dict) or config.get("format") != FORMAT:
        raise MedsslError(f"{Path(path) / CONFIG} is not a medssl model package config")
    if config.get("format_version", 0) > FORMAT_VERSION:
        raise MedsslError(f"{path}: package format {config['format_version']} is newer than this medssl reads "
                          f"({FORMAT_VERSION}); upgrade medssl")
    return config


def load_package_encoder(path: str | Path, spatial_dims: int, channels: int) -> Encoder:
    """The encoder of a model package, checked against the data it is about to see."""
    path = Path(path)
    spec = checked_backbone_spec(read_package_config(path), str(path / CONFIG), spatial_dims, channels)
    encoder = Encoder(spec)
    encoder.load_exported(load_package_weights(path))
    return encoder


def recorded_conventions(source: str | Path) -> Conventions | None:
    """The data conventions a model package (config.json) or a pre-training run dir (config.yaml) recorded;
    None when it recorded none (made by an older medssl, or pre-trained on arrays given directly)."""
    source = Path(source)
    if is_package(source):
        recorded = (read_package_config(source).get("preprocessing") or {}).get("conventions")
    else:
        recorded = (read_yaml(source / "config.yaml").get("data_summary") or {}).get("conventions")
    return Conventions.from_dict(recorded)


def check_transfer(upstream: Path, conventions: Conventions | None) -> list[str]:
    """Refuse, or log as warnings (returned too), the data-convention mismatches between the pre-training of
    ``upstream`` (a run dir or a model package) and data of these ``conventions`` (None: the data records
    none, e.g. planted boxes; only dims and channels are checked then)."""
    warnings = check_upstream(recorded_conventions(upstream), conventions, str(upstream))
    for warning in warnings:
        logging.getLogger("medssl.upstream").warning(warning)
    return warnings


def load_package_weights(path: str | Path) -> dict[str, Tensor]:
    weights = Path(path) / WEIGHTS
    try:
        return load_file(weights)
    except FileNotFoundError:
        raise MedsslError(f"model package {path} has no {WEIGHTS}") from None
    except (SafetensorError, OSError) as err:
        raise MedsslError(f"{weights}: not a readable safetensors file ({err})") from None


def export_package(run_dir: str | Path, out: str | Path, *, hyperparameters: dict[str, Any] | None = None,
                   evaluations: list[str | Path] = (), licence: str = "other", name: str | None = None,
                   overwrite: bool = False) -> Path:
    """Write the package of the finished pre-training run ``run_dir`` to ``out`` (complete or absent).

    ``hyperparameters``: the method's resolved hyperparameters for the model card (the run records only those
    given; the caller knows the defaults). ``evaluations``: finished fine-tuning or evaluation run dirs whose
    test metrics go into the card."""
    run_dir, out = Path(run_dir), Path(out)
    if not (is_complete(run_dir) and (run_dir / "encoder.pt").is_file()):
        raise MedsslError(f"{run_dir} is not a finished pre-training run (no metrics.json or encoder.pt)")
    config = read_yaml(run_dir / "config.yaml")
    spec = checked_backbone_spec(config, f"{run_dir}/config.yaml", config.get("spatial_dims", 2),
                                 config.get("backbone_spec", {}).get("in_channels", 1))
    state = load_state(run_dir / "encoder.pt")
    encoder = Encoder(spec)
    encoder.load_exported(state)  # refuses weights that do not fit the recorded backbone
    metrics = json.loads((run_dir / "metrics.json").read_text())
    evaluated = [_evaluation(Path(e)) for e in evaluations]
    name = name or out.name
    if out.exists() and not overwrite:
        raise MedsslError(f"{out} exists; pass --overwrite or choose another --out")

    package_config = _package_config(config, spec, encoder.feature_dim, name, licence)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.", dir=out.parent))
    try:
        (tmp / "models").mkdir()
        (tmp / "configs").mkdir()
        contiguous = {k: v.contiguous() for k, v in state.items()}
        save_file(contiguous, tmp / WEIGHTS, metadata={"format": "pt", "producer": FORMAT})
        torch.save(contiguous, tmp / TORCH_WEIGHTS)
        _write_json(tmp / CONFIG, package_config)
        _write_json(tmp / METADATA, _bundle_metadata(config, spec, metrics, evaluated, licence))
        _write_json(tmp / INFERENCE, {"network_def": {"_target_": "monai.networks.nets.ResNet",
                                                      **spec.monai_kwargs()}})
        (tmp / "README.md").write_text(model_card(package_config, config, metrics, evaluated,
                                                  hyperparameters or config.get("method_args") or {}))
        os.chmod(tmp, 0o755)
        if out.exists():
            shutil.rmtree(out)
        os.replace(tmp, out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return out


def _write_json(path: Path, data: Any) -> None:
    path.write_text(json.dumps(data, indent=2) + "\n")


def _evaluation(run_dir: Path) -> dict:
    """A finished downstream run's scalar test metrics and what it was."""
    if not is_complete(run_dir):
        raise MedsslError(f"evaluation {run_dir} is not a finished run (no metrics.json)")
    metrics = json.loads((run_dir / "metrics.json").read_text())
    config = read_yaml(run_dir / "config.yaml") if (run_dir / "config.yaml").is_file() else {}
    test = metrics.get("test")
    if not isinstance(test, dict):
        raise MedsslError(f"evaluation {run_dir}: metrics.json has no test metrics")
    scalars = {k: float(v) for k, v in test.items() if isinstance(v, int | float) and not isinstance(v, bool)}
    return {"run": run_dir.name, "kind": config.get("kind", "?"), "data": config.get("data", "?"),
            "label_fraction": config.get("label_fraction"), "linear_probe": config.get("linear_probe"),
            "test": scalars}


def _package_config(config: dict, spec: BackboneSpec, feature_dim: int, name: str, licence: str) -> dict:
    summary = config.get("data_summary") or {}
    return {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "name": name,
        "license": licence,
        "backbone_spec": spec.to_dict(),
        "monai_network": spec.monai_kwargs(),
        "spatial_dims": spec.spatial_dims,
        "in_channels": spec.in_channels,
        "feature_dim": feature_dim,
        "preprocessing": {
            "image_size": summary.get("image_shape"),  # of the images the sampling below was applied to
            "resize": config.get("size"),
            "spacing": config.get("spacing"),  # voxel size (mm) volumes were resampled to; None: as stored
            "intensity_normalisation": config.get("intensity"),  # ct:LOW,HIGH | mr | range:LOW,HIGH; None: as stored
            "ct_window": config.get("window"),
            "patch": config.get("patch"),
            "slices": config.get("slices"),
            "input_scaling": "uint8 images scaled to [0, 1] (x / 255)",
            # what the uint8 values and voxels meant (medssl.data.conventions), checked before fine-tuning
            "conventions": summary.get("conventions"),
        },
        "pretraining": {
            "method": config.get("method"),
            "method_args": config.get("method_args") or {},
            "data": config.get("data"),
            "epochs": config.get("epochs"),
            "medssl_version": config.get("medssl_version"),
        },
    }


def _bundle_metadata(config: dict, spec: BackboneSpec, metrics: dict, evaluated: list[dict], licence: str) -> dict:
    summary = config.get("data_summary") or {}
    shape = summary.get("image_shape") or [-1] * spec.spatial_dims
    return {
        "schema": "https://github.com/Project-MONAI/MONAI-extra-test-data/releases/download/0.8.1/"
                  "meta_schema_20220324.json",
        "version": "1.0.0",
        "changelog": {"1.0.0": f"exported by medssl {config.get('medssl_version')}"},
        "monai_version": _version("monai"),
        "pytorch_version": torch.__version__.split("+")[0],
        "numpy_version": np.__version__,
        "required_packages_version": {"safetensors": _version("safetensors")},
        "name": f"medssl {config.get('method')} {spec.name}",
        "task": f"self-supervised {spec.spatial_dims}D encoder (feature extraction)",
        "description": f"{spec.name} (width {spec.width:g}) pre-trained with {config.get('method')} on "
                       f"{config.get('data')}; the MONAI ResNet without its classifier.",
        "authors": "medssl",
        "copyright": f"licence: {licence}",
        "license": licence,
        "data_source": str(config.get("data")),
        "data_type": "uint8 images",
        "image_classes": f"{spec.in_channels} channel(s), intensities scaled to [0, 1]",
        "eval_metrics": {e["run"]: e["test"] for e in evaluated},
        "intended_use": "research: initialising encoders for fine-tuning; not for clinical use",
        "references": [],
        "network_data_format": {
            "inputs": {"image": {"type": "image", "format": "magnitude", "modality": "unknown",
                                 "num_channels": spec.in_channels, "spatial_shape": shape, "dtype": "float32",
                                 "value_range": [0, 1], "is_patch_data": False,
                                 "channel_def": {str(c): f"channel {c}" for c in range(spec.in_channels)}}},
            "outputs": {"pred": {"type": "object", "format": "features", "num_channels": None,
                                 "spatial_shape": [1], "dtype": "float32", "value_range": [],
                                 "is_patch_data": False, "channel_def": {}}},
        },
        "pretraining_metrics": metrics.get("train", {}),
        "platform": platform.platform(),
    }


def _version(package: str) -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version(package)
    except PackageNotFoundError:
        return "unknown"


def load_snippet(path: str) -> str:
    """Three lines that load a package into a plain MONAI network (the model card shows them)."""
    return (
        "import json, monai, safetensors.torch\n"
        f"net = monai.networks.nets.ResNet(**json.load(open('{path}/config.json'))['monai_network'])\n"
        f"net.load_state_dict(safetensors.torch.load_file('{path}/models/model.safetensors'))\n"
    )


def model_card(package: dict, config: dict, metrics: dict, evaluated: list[dict],
               hyperparameters: dict[str, Any]) -> str:
    spec, pre, prep = package["backbone_spec"], package["pretraining"], package["preprocessing"]
    summary = config.get("data_summary") or {}
    train = metrics.get("train", {})
    tags = ["medical-imaging", "self-supervised", "medssl", "monai", str(pre["method"]), f"{spec['spatial_dims']}d"]
    lines = [
        "---",
        f"license: {package['license']}",
        "library_name: monai",
        "tags:", *[f"- {t}" for t in tags],
        "---",
        "",
        f"# {package['name']}",
        "",
        f"A {spec['spatial_dims']}D MONAI ResNet encoder ({spec['name']}, width ×{spec['width']:g}, "
        f"{spec['in_channels']} input channel(s), {package['feature_dim']} features) pre-trained with "
        f"**{pre['method']}** by medssl {pre['medssl_version']}.",
        "",
        "## Pre-training",
        "",
        f"- data: `{config.get('data')}`, splits {', '.join(config.get('pretrain_splits') or [])}"
        + (f": {summary['pool_images']} images of {'×'.join(map(str, summary['image_shape']))}"
           if summary else ""),
        f"- method: `{pre['method']}`"
        + (f" (loss weights {config['weights']})" if config.get("weights") else ""),
        "- hyperparameters: " + (", ".join(f"{k}={_plain(v)}" for k, v in hyperparameters.items()) or "defaults"),
        f"- {config.get('epochs')} epochs, {metrics.get('steps')} steps, batch {config.get('batch_size')}, "
        f"lr {config.get('lr')}, weight decay {config.get('weight_decay')}, seed {config.get('seed')}, "
        f"precision {config.get('precision')}",
        "- final training metrics: " + (", ".join(f"{k} {v:.4g}" for k, v in train.items()) or "none logged"),
        "",
        "## Evaluation",
        "",
    ]
    if evaluated:
        keys = sorted({k for e in evaluated for k in e["test"]} & {"auc", "acc", "balanced_acc", "dice", "ap"}) \
            or sorted({k for e in evaluated for k in e["test"]})[:4]
        lines += ["| run | kind | data | label fraction | " + " | ".join(f"test {k}" for k in keys) + " |",
                  "|---|---|---|---|" + "---|" * len(keys)]
        for e in evaluated:
            values = " | ".join(f"{e['test'][k]:.4f}" if k in e["test"] else "–" for k in keys)
            kind = f"{e['kind']}{' (linear probe)' if e['linear_probe'] else ''}"
            lines.append(f"| {e['run']} | {kind} | `{e['data']}` | {e['label_fraction']} | {values} |")
    else:
        lines.append("No downstream evaluation was attached (`medssl export --eval RUN` adds one).")
    lines += [
        "",
        "## Preprocessing the encoder expects",
        "",
        f"- input: (B, {spec['in_channels']}, {'D, ' if spec['spatial_dims'] == 3 else ''}H, W) float32, "
        f"{prep['input_scaling']}",
        f"- image size in pre-training: {prep['image_size'] or 'not recorded'}"
        + (f" (resized to {prep['resize']} per axis)" if prep["resize"] else "")
        + (f", random patches of {prep['patch']}" if prep["patch"] else "")
        + (f", {prep['slices']} slices" if prep["slices"] else ""),
        f"- spacing: {prep['spacing'] or 'as stored (not resampled)'}; intensity normalisation: "
        f"{prep['intensity_normalisation'] or 'as stored'}; CT window: {prep['ct_window'] or 'none'}",
        f"- data conventions (checked before fine-tuning): {_conventions_text(prep.get('conventions'))}",
        "",
        "## Load it",
        "",
        "Into a plain MONAI network (pooled features: `net(x)`; no classifier):",
        "",
        SNIPPET_MARKER,
        "```python",
        load_snippet(".").rstrip(),
        "```",
        "",
        "With medssl: `--checkpoint PACKAGE_DIR` wherever a pre-training run is accepted. With MONAI bundle "
        "tooling: `monai.bundle.load(NAME, bundle_dir=PARENT_DIR, workflow_type='inference')`.",
        "",
        "## Intended use",
        "",
        "Research: initialising encoders for fine-tuning on medical images like the pre-training data. "
        "Not validated for clinical use.",
        "",
        "## Licence",
        "",
        f"{package['license']} (the pre-training data's own licence may restrict use of these weights).",
        "",
    ]
    return "\n".join(lines)


def _conventions_text(recorded: dict | None) -> str:
    conventions = Conventions.from_dict(recorded)
    if conventions is None:
        return "not recorded"
    text = "intensity " + " and ".join(describe(c) for c in conventions.intensity)
    if conventions.modalities:
        text += f"; modalities {', '.join(conventions.modalities)}"
    if conventions.spacing is not None:
        text += f"; resampled to {'x'.join(f'{s:g}' for s in conventions.spacing)} mm"
    return text


def _plain(value: Any) -> str:
    return str(list(value)) if isinstance(value, tuple) else str(value)
