"""The command line: bad input gives one line on stderr and a non-zero exit, never a traceback."""

import subprocess
import sys

import numpy as np
import pytest

from medssl.cli import main


def run_cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "medssl.cli", *args], capture_output=True, text=True, timeout=300)


def assert_one_line_error(result: subprocess.CompletedProcess, match: str) -> None:
    assert result.returncode != 0
    assert "Traceback" not in result.stderr
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("medssl: error:") and match in lines[0], lines[0]


def test_methods_lists_every_family_with_dims(capsys):
    assert main(["methods"]) == 0
    out = capsys.readouterr().out
    for name, family in (("simclr", "contrastive"), ("rotation", "predictive"), ("genesis", "generative")):
        assert any(line.split()[:2] == [name, family] and "2D,3D" in line for line in out.splitlines())


def test_data_info_describes_synthetic_data(capsys):
    assert main(["data", "info", "synthetic:lesions2d?n=200"]) == 0
    out = capsys.readouterr().out
    assert "spatial_dims: 2" in out and "train:" in out


@pytest.fixture(scope="module")
def bad_files(tmp_path_factory):
    root = tmp_path_factory.mktemp("bad")
    good = {f"{s}_{k}": (np.zeros((4, 8, 8), np.uint8) if k == "images" else np.arange(4) % 2)
            for s in ("train", "val", "test") for k in ("images", "labels")}
    np.savez(root / "wrong_keys.npz", images=np.zeros((4, 8, 8), np.uint8))
    np.savez(root / "nan.npz", **{**good, "train_images": np.full((4, 8, 8), np.nan, np.float32)})
    np.savez(root / "wrong_dims.npz", **{k: (v[:, 0] if "images" in k else v) for k, v in good.items()})
    np.savez(root / "good.npz", **good)
    return root


@pytest.mark.parametrize(
    ("args", "match"),
    [
        (["pretrain", "--data", "{root}/missing.npz", "--out", "{root}/o1"], "file not found"),
        (["pretrain", "--data", "{root}/wrong_keys.npz", "--out", "{root}/o2"], "missing keys"),
        (["pretrain", "--data", "{root}/nan.npz", "--out", "{root}/o3"], "NaN or Inf"),
        (["pretrain", "--data", "{root}/wrong_dims.npz", "--out", "{root}/o4"], "dimensions"),
        (["pretrain", "--data", "{root}/good.npz", "--method", "magic", "--out", "{root}/o5"], "unknown method"),
        (["pretrain", "--data", "{root}/good.npz", "--backbone", "vgg", "--out", "{root}/o6"], "unknown backbone"),
        (["finetune", "--data", "{root}/good.npz", "--checkpoint", "scratch", "--label-fraction", "0.1",
          "--out", "{root}/o7"], "fewer than one per class"),
        (["finetune", "--data", "{root}/good.npz", "--checkpoint", "scratch", "--label-fraction", "2",
          "--out", "{root}/o8"], "label fraction"),
        (["finetune", "--data", "{root}/good.npz", "--checkpoint", "{root}/nowhere", "--out", "{root}/o9"],
         "checkpoint directory not found"),
        (["pretrain", "--data", "{root}/good.npz", "--epochs", "zero", "--out", "{root}/o10"], "invalid int"),
        (["nonsense"], "invalid choice"),
        (["data", "info", "synthetic:lesions9d"], "unknown synthetic dataset"),
    ],
)
def test_bad_input_gives_one_clear_line_and_no_run_dir(bad_files, args, match, capsys):
    args = [a.format(root=bad_files) for a in args]
    code = main(args)  # an uncaught exception (a traceback for the user) would fail this test
    captured = capsys.readouterr()
    assert_one_line_error(subprocess.CompletedProcess(args, code, captured.out, captured.err), match)
    out = args[args.index("--out") + 1] if "--out" in args else None
    assert out is None or not (bad_files / out).exists()


def test_checkpoint_with_other_dims_is_rejected_by_the_cli(bad_files, tmp_path):
    assert main(["pretrain", "--data", str(bad_files / "good.npz"), "--out", str(tmp_path / "pre"), "--epochs", "1",
                 "--backbone", "resnet10", "--width", "0.125", "--batch-size", "4", "--no-progress",
                 "--accelerator", "cpu"]) == 0
    result = run_cli("finetune", "--data", "synthetic:lesions3d?n=60", "--checkpoint", str(tmp_path / "pre"),
                     "--out", str(tmp_path / "ft"))
    assert_one_line_error(result, "is 2D but the data is 3D")  # a real process: no traceback reaches the user
    assert not (tmp_path / "ft").exists()


def test_impossible_device_request_is_one_line_and_writes_nothing(tmp_path, capsys):
    code = main(["finetune", "--data", "synthetic:lesions2d?n=160", "--checkpoint", "scratch", "--accelerator", "gpu",
                 "--out", str(tmp_path / "gpu")])
    captured = capsys.readouterr()
    if code == 0:
        pytest.skip("this machine has a GPU")
    assert_one_line_error(subprocess.CompletedProcess([], code, captured.out, captured.err), "gpu")
    assert not (tmp_path / "gpu").exists()


def test_unknown_lightning_strategy_is_one_line_and_writes_nothing(tmp_path, capsys):
    code = main(["pretrain", "--data", "synthetic:lesions2d?n=160", "--strategy", "nonsense",
                 "--out", str(tmp_path / "run")])
    captured = capsys.readouterr()
    assert_one_line_error(subprocess.CompletedProcess([], code, captured.out, captured.err), "invalid strategy")
    assert not (tmp_path / "run").exists()
