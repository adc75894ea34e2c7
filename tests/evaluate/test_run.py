import json

import numpy as np
import pytest

from medssl.data.dataset import ImageData, Split
from medssl.errors import MedsslError
from medssl.evaluate.corruptions import corruptions_for
from medssl.evaluate.embeddings import load_embeddings
from medssl.evaluate.run import EvaluateConfig, embed, evaluate, retrieve

from .conftest import fake_finetune_run, fake_pretrain_run


def _config(checkpoint, out, protocol, **kw):
    return EvaluateConfig(checkpoint=str(checkpoint), data="unused", protocol=protocol, out=str(out),
                          backbone="resnet10", width=0.125, device="cpu", **kw)


def test_knn_with_robustness_calibration_and_map_writes_a_finished_results_dir(data2d, tmp_path):
    run = fake_pretrain_run(tmp_path / "pre", 2)
    result = evaluate(_config(run, tmp_path / "ev", "knn", k=5, robustness=True, calibration=True,
                              embedding_map=True), data=data2d)
    m = json.loads((tmp_path / "ev" / "metrics.json").read_text())
    assert m["protocol"] == "knn" and m["knn"]["k"] == 5
    assert 0 <= m["test"]["auc"] <= 1 and m["test"]["n"] == len(data2d.splits["test"])
    assert {"recall@1", "recall@5", "map@5", "recall@10"} <= set(m["retrieval"])
    assert list(m["robustness"]["corruptions"]) == corruptions_for(2)
    assert m["robustness"]["clean"]["auc"] == pytest.approx(m["test"]["auc"])  # same model, same images
    assert m["calibration"]["before"]["ece"] >= 0 and m["calibration"]["temperature"] > 0
    for name in ("config.yaml", "embeddings.npz", "robustness.csv", "reliability.png", "embedding_map.png"):
        assert (result.out_dir / name).is_file(), name
    assert set(load_embeddings(result.out_dir / "embeddings.npz")) == {"train", "val", "test"}


def test_linear_probe_and_finetune_protocols_in_3d(data3d, tmp_path):
    linear = evaluate(_config("random", tmp_path / "lin", "linear"), data=data3d)
    assert linear.metrics["linear"]["c"] in [float(c) for c in linear.metrics["linear"]["val_auc_by_c"]]
    ft = fake_finetune_run(tmp_path / "ft", 3)
    result = evaluate(_config(ft, tmp_path / "ev", "finetune", robustness=True, calibration=True), data=data3d)
    assert list(result.metrics["robustness"]["corruptions"]) == corruptions_for(3)  # no JPEG in 3D
    assert np.isfinite(result.metrics["calibration"]["after"]["nll"])


def test_a_finished_results_dir_is_kept_unless_overwrite(data2d, tmp_path):
    run = fake_pretrain_run(tmp_path / "pre", 2)
    evaluate(_config(run, tmp_path / "ev", "knn"), data=data2d)
    with pytest.raises(MedsslError, match="finished run"):
        evaluate(_config(run, tmp_path / "ev", "knn"), data=data2d)
    evaluate(_config(run, tmp_path / "ev", "knn", overwrite=True), data=data2d)


def test_embed_and_retrieve(data2d, tmp_path):
    run = fake_pretrain_run(tmp_path / "pre", 2)
    emb = embed(str(run), data2d, tmp_path / "e.npz")
    hits = retrieve(str(run), data2d, 0, k=3, split="train")
    # a training image's nearest training image is itself
    assert hits[0]["index"] == 0 and hits[0]["similarity"] == pytest.approx(1.0, abs=1e-5)
    assert [h["rank"] for h in hits] == [1, 2, 3]
    sims = emb["train"].features @ emb["train"].features[0]
    norms = np.linalg.norm(emb["train"].features, axis=1) * np.linalg.norm(emb["train"].features[0])
    assert [h["index"] for h in hits] == list(np.argsort(-sims / norms, kind="stable")[:3])
    with pytest.raises(MedsslError, match="outside"):
        retrieve(str(run), data2d, 10_000, k=3)


def test_a_failed_evaluation_leaves_no_results_dir(data2d, tmp_path):
    splits = dict(data2d.splits)
    splits["train"] = Split(splits["train"].images, np.zeros_like(splits["train"].labels))  # one class only
    one_class = ImageData("one-class", splits, 2, 2)
    with pytest.raises(MedsslError, match="two classes"):
        evaluate(_config("random", tmp_path / "ev", "linear"), data=one_class)
    assert not (tmp_path / "ev").exists()
