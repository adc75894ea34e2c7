"""``medssl export`` then ``medssl finetune --checkpoint PACKAGE``: the same metrics as from the run itself."""

from __future__ import annotations

import json

from medssl.cli import main
from medssl.runio import comparable_metrics

COMMON = ["--data", "synthetic:lesions2d@16?n=60", "--backbone", "resnet10", "--width", "0.125", "--batch-size", "16",
          "--accelerator", "cpu", "--no-progress"]


def test_finetuning_from_the_package_matches_finetuning_from_the_run(tmp_path, capsys):
    run, package = tmp_path / "run", tmp_path / "pkg"
    assert main(["pretrain", *COMMON, "--epochs", "1", "--out", str(run)]) == 0
    assert main(["finetune", *COMMON, "--epochs", "1", "--checkpoint", str(run), "--out", str(tmp_path / "ft_run"),
                 "--min-samples-per-epoch", "32"]) == 0
    assert main(["export", str(run), "--out", str(package), "--eval", str(tmp_path / "ft_run"),
                 "--license", "cc-by-4.0"]) == 0
    assert main(["finetune", *COMMON, "--epochs", "1", "--checkpoint", str(package),
                 "--out", str(tmp_path / "ft_pkg"), "--min-samples-per-epoch", "32"]) == 0
    from_run, from_package = (json.loads((tmp_path / d / "metrics.json").read_text()) for d in ("ft_run", "ft_pkg"))
    assert comparable_metrics(from_run) == comparable_metrics(from_package)
    card = (package / "README.md").read_text()
    assert f"{from_run['test']['auc']:.4f}" in card and "license: cc-by-4.0" in card
    for checkpoint, out in ((run, "ev_run"), (package, "ev_pkg")):  # evaluation takes a package too
        assert main(["evaluate", "--checkpoint", str(checkpoint), "--data", "synthetic:lesions2d@16?n=60",
                     "--protocol", "knn", "--k", "3", "--device", "cpu", "--out", str(tmp_path / out)]) == 0
    knn_run, knn_pkg = (json.loads((tmp_path / d / "metrics.json").read_text())["knn"] for d in ("ev_run", "ev_pkg"))
    assert comparable_metrics(knn_run) == comparable_metrics(knn_pkg)


def test_exporting_something_that_is_not_a_run_is_one_line(tmp_path, capsys):
    assert main(["export", str(tmp_path), "--out", str(tmp_path / "pkg")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "not a finished pre-training run" in err[0]
    assert not (tmp_path / "pkg").exists()
