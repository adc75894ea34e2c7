"""``medssl evaluate``, ``embed`` and ``retrieve``: results through the CLI, and one-line errors that write
nothing."""

import json
import subprocess

import numpy as np
import pytest
import torch

from medssl.cli import main
from medssl.models.encoder import BackboneSpec, Encoder
from medssl.runio import save_state, write_json, write_yaml

DATA = "synthetic:lesions2d@16?n=60"
TINY = ["--backbone", "resnet10", "--width", "0.125"]


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    root = tmp_path_factory.mktemp("runs")
    common = ["--data", DATA, *TINY, "--epochs", "1", "--batch-size", "8", "--no-progress", "--accelerator", "cpu"]
    assert main(["pretrain", *common, "--out", str(root / "pre")]) == 0
    assert main(["finetune", *common, "--checkpoint", str(root / "pre"), "--out", str(root / "ft")]) == 0
    spec = BackboneSpec("resnet10", 3, 1, 0.125)  # a 3D pre-training run, written directly (fast)
    save_state(root / "pre3d" / "encoder.pt", Encoder(spec).export_state())
    write_yaml(root / "pre3d" / "config.yaml", {"kind": "pretrain", "backbone_spec": spec.to_dict()})
    write_json(root / "pre3d" / "metrics.json", {})
    return root


def test_evaluate_knn_prints_auc_retrieval_robustness_and_calibration(runs, tmp_path, capsys):
    torch.manual_seed(0)
    code = main(["evaluate", "--checkpoint", str(runs / "pre"), "--data", DATA, "--protocol", "knn", "--k", "3",
                 "--robustness", "--calibration", "--device", "cpu", "--out", str(tmp_path / "ev")])
    out = capsys.readouterr().out
    assert code == 0
    assert "knn test AUC" in out and "recall@5" in out and "mean AUC drop" in out and "ECE" in out
    metrics = json.loads((tmp_path / "ev" / "metrics.json").read_text())
    assert metrics["knn"]["k"] == 3 and "robustness" in metrics and "calibration" in metrics


def test_evaluate_finetune_and_linear_on_the_random_baseline(runs, tmp_path, capsys):
    assert main(["evaluate", "--checkpoint", str(runs / "ft"), "--data", DATA, "--protocol", "finetune",
                 "--device", "cpu", "--out", str(tmp_path / "ft")]) == 0
    assert main(["evaluate", "--checkpoint", "random", *TINY, "--data", DATA, "--protocol", "linear",
                 "--device", "cpu", "--out", str(tmp_path / "lin")]) == 0
    out = capsys.readouterr().out
    assert "finetune test AUC" in out and "linear test AUC" in out


def test_embed_writes_an_npz_and_retrieve_lists_k_neighbours(runs, tmp_path, capsys):
    assert main(["embed", "--checkpoint", str(runs / "pre"), "--data", DATA, "--out", str(tmp_path / "e.npz")]) == 0
    with np.load(tmp_path / "e.npz") as npz:
        assert {"train_embeddings", "train_labels", "train_ids", "test_embeddings"} <= set(npz.files)
    assert main(["retrieve", "--checkpoint", str(runs / "pre"), "--data", DATA, "--query", "2", "--k", "4"]) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    assert lines[1].startswith("rank") and len(lines) == 2 + 4


def test_retrieve_accepts_an_image_file(runs, tmp_path, capsys):
    from PIL import Image

    Image.fromarray(np.full((32, 32), 120, np.uint8)).save(tmp_path / "q.png")  # resized to the data's 16 px
    assert main(["retrieve", "--checkpoint", str(runs / "pre"), "--data", DATA, "--query", str(tmp_path / "q.png"),
                 "--k", "2"]) == 0
    assert len(capsys.readouterr().out.strip().splitlines()) == 3


@pytest.mark.parametrize(
    ("args", "match"),
    [
        (["evaluate", "--checkpoint", "{root}/nowhere", "--protocol", "knn"], "checkpoint directory not found"),
        (["evaluate", "--checkpoint", "{root}/pre3d", "--protocol", "knn"], "is 3D but the data is 2D"),
        (["evaluate", "--checkpoint", "{root}/pre", "--protocol", "svm"], "unknown protocol 'svm'"),
        (["evaluate", "--checkpoint", "{root}/pre", "--protocol", "knn", "--k", "0"], "k must be >= 1"),
        (["evaluate", "--checkpoint", "{root}/pre", "--protocol", "finetune"], "not a fine-tuning run"),
        (["evaluate", "--checkpoint", "random", "--protocol", "finetune"], "not 'random'"),
        (["evaluate", "--checkpoint", "{root}/pre", "--protocol", "knn", "--k", "two"], "invalid int"),
        (["embed", "--checkpoint", "{root}/pre", "--out", "{tmp}/e.txt"], ".npz"),
        (["retrieve", "--checkpoint", "{root}/pre", "--query", "9999"], "outside the test split"),
        (["retrieve", "--checkpoint", "{root}/pre", "--query", "{tmp}/none.png"], "query image not found"),
        (["retrieve", "--checkpoint", "{root}/pre", "--query", "1", "--k", "0"], "k must be >= 1"),
    ],
)
def test_bad_input_gives_one_line_exit_2_and_no_output(runs, tmp_path, args, match, capsys):
    args = [a.format(root=runs, tmp=tmp_path) for a in args] + ["--data", DATA]
    if args[0] == "evaluate":
        args += ["--out", str(tmp_path / "out")]
    code = main(args)
    captured = capsys.readouterr()
    result = subprocess.CompletedProcess(args, code, captured.out, captured.err)
    assert result.returncode == 2
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("medssl: error:") and match in lines[0], result.stderr
    assert not (tmp_path / "out").exists() and not (tmp_path / "e.txt").exists()


@pytest.mark.real_data
def test_knn_of_a_random_encoder_on_breastmnist_beats_chance(breastmnist, tmp_path, capsys):
    assert main(["evaluate", "--checkpoint", "random", *TINY, "--data", str(breastmnist), "--protocol", "knn",
                 "--device", "cpu", "--out", str(tmp_path / "ev")]) == 0
    metrics = json.loads((tmp_path / "ev" / "metrics.json").read_text())
    assert metrics["test"]["n"] == 156 and metrics["test"]["auc"] > 0.6
