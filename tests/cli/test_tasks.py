"""``medssl finetune --task ...`` from the registry: a segmentation run from the command line, task defaults,
and bad input as one clear line."""

import subprocess

import numpy as np
import pytest
from PIL import Image

from medssl.cli import build_parser, main
from medssl.cli.tasks import task_config
from medssl.config import FinetuneConfig
from tests.cli.test_commands import assert_one_line_error

FAST = ["--epochs", "1", "--steps-per-epoch", "2", "--patch-size", "16", "--backbone", "resnet10", "--width", "0.125",
        "--batch-size", "2", "--no-progress", "--accelerator", "cpu"]


def test_segment_run_from_the_command_line(tmp_path, capsys):
    out = tmp_path / "seg"
    code = main(["finetune", "--task", "segment", "--data", "synthetic:blobs2d@16?n=8", "--checkpoint", "scratch",
                 "--out", str(out), *FAST])
    assert code == 0
    assert "test Dice" in capsys.readouterr().out
    assert (out / "metrics.json").is_file() and (out / "config.yaml").is_file()


def test_task_defaults_keep_classification_unchanged():
    args = build_parser().parse_args(["finetune", "--data", "d", "--out", "o", "--checkpoint", "scratch"])
    config = task_config("classify", args)
    # no batch size yet: medssl.memory picks the default for the data's dimensionality
    assert (type(config), config.batch_size, config.backbone, config.width, config.augment, config.epochs) == \
        (FinetuneConfig, None, "resnet18", 1.0, "light", 20)
    args = build_parser().parse_args(["finetune", "--task", "segment", "--data", "d", "--out", "o",
                                      "--checkpoint", "scratch", "--batch-size", "3", "--patch-size", "32"])
    config = task_config("segment", args)
    assert (config.batch_size, config.backbone, config.width, config.patch_size, config.epochs) == \
        (3, "resnet10", 0.5, 32, 20)


@pytest.fixture(scope="module")
def bad_folders(tmp_path_factory):
    root = tmp_path_factory.mktemp("segbad")
    image = np.full((12, 12), 90, np.uint8)
    mask = np.zeros((12, 12), np.uint8)
    mask[4:8, 4:8] = 255
    cases = {"size": (mask[:10], None), "nonbinary": ((mask // 2 + (np.arange(12) % 3) * 20).astype(np.uint8), None),
             "empty": (np.zeros_like(mask), None), "unmatched": (mask, "stray.png")}
    for case, (broken, stray) in cases.items():
        folder = root / case
        folder.mkdir()
        for i in range(4):
            Image.fromarray(image).save(folder / f"im{i}.png")
            Image.fromarray(broken if i == 1 else mask).save(folder / f"im{i}_mask.png")
        if stray:
            Image.fromarray(image).save(folder / stray)
    return root


@pytest.mark.parametrize(("extra", "match"), [
    (["--data", "{root}/size"], "differs from image"),
    (["--data", "{root}/nonbinary"], "must be binary"),
    (["--data", "{root}/empty"], "mask is empty"),
    (["--data", "{root}/unmatched"], "no mask named stray_mask"),
    (["--data", "{root}/missing"], "folder not found"),
    (["--data", "synthetic:blobs2d@16?n=8", "--transfer", "both"], "needs a pre-training run"),
    (["--data", "synthetic:blobs2d@16?n=8", "--linear-probe"], "--linear-probe is not an option of --task segment"),
    (["--data", "synthetic:blobs2d@16?n=8", "--label-count", "99"], "exceeds"),
])
def test_bad_segmentation_input_is_one_line_exit_2_and_no_run_dir(bad_folders, tmp_path, capsys, extra, match):
    out = tmp_path / "out"
    args = ["finetune", "--task", "segment", "--checkpoint", "scratch", "--out", str(out), "--val-count", "1",
            "--test-count", "1", *[a.format(root=bad_folders) for a in extra], *FAST]
    code = main(args)
    captured = capsys.readouterr()
    assert code == 2
    assert_one_line_error(subprocess.CompletedProcess(args, code, captured.out, captured.err), match)
    assert not out.exists()


def test_segmentation_options_are_rejected_for_classification(tmp_path, capsys):
    code = main(["finetune", "--data", "synthetic:lesions2d?n=160", "--checkpoint", "scratch", "--transfer", "both",
                 "--out", str(tmp_path / "o")])
    assert code == 2 and "--transfer is not an option of --task classify" in capsys.readouterr().err


def test_task_option_help_states_each_tasks_dataclass_default():
    from medssl.cli import build_parser
    from medssl.cli.tasks import option_defaults
    from medssl.tasks.registry import tasks

    finetune = [t for t in tasks().values() if t.command == "finetune"]
    detect = tasks()["detect"]
    assert option_defaults("fpn_channels", finetune) == str(detect.config.fpn_channels)
    assert option_defaults("min_samples_per_epoch", finetune) == (
        f"classify {tasks()['classify'].config.min_samples_per_epoch}, "
        f"detect {detect.config.min_samples_per_epoch}")
    text = " ".join(build_parser()._subparsers._group_actions[0].choices["finetune"].format_help().split())
    assert f"feature pyramid channels (default: {detect.config.fpn_channels})" in text
    assert "(default 30 %)" in text and "%%" not in text
