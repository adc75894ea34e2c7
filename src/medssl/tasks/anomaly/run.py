"""``detect_anomalies``: fit on normal training images only, score the test images with every scorer the model
supports, write image-level AUROC / AUPRC (and pixel AUROC where masks exist), anomaly maps and scores."""

from __future__ import annotations

import gzip
import io
import time
from pathlib import Path

import nibabel as nib
import numpy as np
import pytorch_lightning as pl
import torch
from PIL import Image
from sklearn.metrics import average_precision_score, roc_auc_score

from medssl import __version__
from medssl.data.dataset import UNLABELED, Split
from medssl.errors import MedsslError
from medssl.memory import MemoryPlan
from medssl.methods.base import PretextTask, Pretrainer
from medssl.methods.generative.autoencoder import Autoencoder
from medssl.methods.registry import parse_method
from medssl.models.encoder import BackboneSpec, Encoder
from medssl.runio import load_state, read_yaml, write_bytes, write_json, write_text
from medssl.tasks.anomaly.config import AnomalyConfig
from medssl.tasks.anomaly.data import AnomalyData, load_anomaly_data
from medssl.tasks.anomaly.scorers import ReconstructionError, knn_scores, reconstruction_maps, reconstructs
from medssl.tasks.common import RunResult, execution_options, fit_to_memory, load_pretrained
from medssl.training import ResumableRun, batch_loader, make_trainer, open_run


def _generative_task(method: str, encoder: Encoder) -> PretextTask | None:
    """The first method of ``method`` that reconstructs images (as ``Pretrainer.decoder`` picks), built fresh."""
    cls = next((c for c, _ in parse_method(method) if reconstructs(c)), None)
    return None if cls is None else cls(encoder)


def _load_reconstruction(task: PretextTask, run_dir: Path) -> None:
    whole, decoder = run_dir / "reconstruction.pt", run_dir / "decoder.pt"
    if whole.is_file():
        task.load_state_dict(load_state(whole))
    elif decoder.is_file() and isinstance(task, Autoencoder):  # runs from before reconstruction.pt
        task.decoder.load_state_dict(load_state(decoder))
    else:
        raise MedsslError(f"{run_dir} saved no reconstruction model (reconstruction.pt): re-run its pre-training "
                          "with this medssl version, or use --scorers knn")


def build_model(config: AnomalyConfig, data: AnomalyData) -> tuple[Encoder, PretextTask | None, str]:
    """The encoder, the generative task (None if the method does not reconstruct) and the method's name."""
    pl.seed_everything(config.seed, workers=True, verbose=False)
    if config.checkpoint == "scratch":
        encoder = Encoder(BackboneSpec(config.backbone, data.spatial_dims, data.channels, config.width))
        method = config.method
    else:
        encoder = load_pretrained(config.checkpoint, data)
        method = str(read_yaml(Path(config.checkpoint) / "config.yaml").get("method", ""))
    if config.channels_last:
        encoder.use_channels_last()  # before the task: SparK's sparse view copies the layout
    task = _generative_task(method, encoder) if method else None
    wanted = config.scorers or []
    if task is None and "reconstruction" in wanted:
        raise MedsslError(f"method '{method or 'unknown'}' does not reconstruct images (no decoder): use --scorers "
                          "knn or a generative run (autoencoder, denoising_autoencoder, genesis, spark)")
    if task is not None and config.checkpoint != "scratch" and (config.scorers is None or "reconstruction" in wanted):
        _load_reconstruction(task, Path(config.checkpoint))
    return encoder, task, method


def _write_map(folder: Path, name: str, anomaly_map: np.ndarray, scale: float) -> None:
    if anomaly_map.ndim == 2:  # PNG, one grey scale for all images of the run: brighter = more anomalous
        buffer = io.BytesIO()
        Image.fromarray((np.clip(anomaly_map / scale, 0, 1) * 255).round().astype(np.uint8)).save(buffer, "PNG")
        write_bytes(folder / f"{name}.png", buffer.getvalue())
    else:  # NIfTI, the raw error
        write_bytes(folder / f"{name}.nii.gz",
                    gzip.compress(nib.Nifti1Image(anomaly_map.astype(np.float32), np.eye(4)).to_bytes()))


def _scores(labels: np.ndarray, scores: np.ndarray) -> dict[str, float]:
    return {"auroc": float(roc_auc_score(labels, scores)), "auprc": float(average_precision_score(labels, scores))}


def detect_anomalies(config: AnomalyConfig, data: AnomalyData | None = None, progress: bool = True) -> RunResult:
    config.validate()
    data = data if data is not None else load_anomaly_data(config.data, config.normal_class, seed=config.seed,
                                                           size=config.size, window=config.window)
    encoder, task, method = build_model(config, data)
    use_knn = config.scorers is None or "knn" in config.scorers
    use_reconstruction = task is not None and (config.scorers is None or "reconstruction" in config.scorers)

    run_dir = Path(config.out)
    images = Split(data.normal_train, np.full(len(data.normal_train), UNLABELED))
    batch_size = min(config.batch_size, len(images))
    model, plan = None, MemoryPlan(batch_size, batch_size, 1)
    if config.fit_epochs > 0:
        tasks = [task] if task is not None else [cls(encoder) for cls, _ in parse_method(method)]
        model = Pretrainer(encoder, tasks, [1.0] * len(tasks), 1, lr=config.lr, weight_decay=config.weight_decay)
        contrastive = [t.name for t in tasks if t.family == "contrastive"]
        plan = fit_to_memory(config, model, images, batch_size, accumulation_refused=(
            f"{' and '.join(contrastive)} contrasts each image with the rest of its batch" if contrastive else None))
    loader = batch_loader(images, batch_size, shuffle=True, seed=config.seed, drop_last=True,
                          num_workers=config.num_workers, micro_batches=plan.accumulate_grad_batches)
    state = ResumableRun(run_dir, config.seed, loader, every_n_steps=config.checkpoint_every_n_steps)
    trainer = make_trainer(run_dir, max(config.fit_epochs, 1), progress=progress, validate=False,
                           callbacks=[state], accumulate_grad_batches=plan.accumulate_grad_batches,
                           **execution_options(config))
    ckpt = open_run(trainer, run_dir, batch_size, config, {
        "kind": "anomaly", **config.to_dict(), "method_resolved": method, "backbone_spec": encoder.spec.to_dict(),
        "spatial_dims": data.spatial_dims, "data_source": data.name, "medssl_version": __version__,
        **plan.to_config()})
    start = time.perf_counter()
    if model is not None:
        trainer.fit(model, train_dataloaders=loader, ckpt_path=ckpt, weights_only=True)
    fit_s = time.perf_counter() - start
    encoder.to("cpu").eval()

    torch.manual_seed(config.seed)  # SparK's random masks
    scorers: dict[str, dict] = {}
    scores: dict[str, np.ndarray] = {}
    maps = None
    if use_reconstruction:
        task.to("cpu").eval()
        maps = reconstruction_maps(ReconstructionError(encoder, task, masks=config.masks), data.test)
        scores["reconstruction"] = maps.reshape(len(maps), -1).mean(1)
        scorers["reconstruction"] = _scores(data.anomalous, scores["reconstruction"])
        if data.masks is not None:
            truth = (data.masks > 0).ravel()
            scorers["reconstruction"]["pixel_auroc"] = float(roc_auc_score(truth, maps.ravel())) \
                if 0 < truth.sum() < truth.size else float("nan")
    if use_knn:
        scores["knn"] = knn_scores(encoder, data.normal_train, data.test, config.k)
        scorers["knn"] = _scores(data.anomalous, scores["knn"])
    primary = "reconstruction" if "reconstruction" in scorers else "knn"

    if config.save_maps and maps is not None:
        scale = float(np.quantile(maps, 0.999)) or 1.0
        for name, anomaly_map in zip(data.names, maps, strict=True):
            _write_map(run_dir / "anomaly_maps", name, anomaly_map[0], scale)
    header = "image,anomalous," + ",".join(scores)
    rows = [f"{name},{int(a)}," + ",".join(f"{scores[s][i]:.6g}" for s in scores)
            for i, (name, a) in enumerate(zip(data.names, data.anomalous, strict=True))]
    write_text(run_dir / "scores.csv", "\n".join([header, *rows]) + "\n")
    metrics = {
        "test": {**scorers[primary], "scorers": scorers, "n": len(data.test),
                 "n_anomalous": int(data.anomalous.sum())},
        "primary_scorer": primary,
        "train": {"n_normal": len(data.normal_train)},
        "method": method,
        "fit_epochs": config.fit_epochs,
        "train_duration_s": fit_s,
        "duration_s": time.perf_counter() - start,
    }
    write_json(run_dir / "metrics.json", metrics)
    return RunResult(run_dir, metrics)
