"""Options generated from the config dataclasses, and ``--config FILE``: a run's config.yaml re-runs it, options
given override the file, and a bad file is one line."""

from __future__ import annotations

import argparse
import json
import subprocess
import types
import typing
from dataclasses import MISSING, fields
from pathlib import Path

import pytest
import yaml

from medssl.cli import build_parser, main
from medssl.cli.args import config_from_options, flag, read_config_file
from medssl.cli.train import task_of_run
from medssl.config import CommonConfig, FinetuneConfig, PretrainConfig, config_values
from medssl.tasks.registry import get_task
from tests.cli.test_commands import assert_one_line_error

TINY = ["--data", "synthetic:lesions2d@16?n=40", "--backbone", "resnet10", "--width", "0.125", "--batch-size", "16",
        "--epochs", "1", "--accelerator", "cpu", "--no-progress"]
# what a run measures about the machine when it starts, not what it was asked to do
MEASURED = {"memory_estimate_gb", "memory_available_gb"}


def _subparser(command: str) -> argparse.ArgumentParser:
    sub = next(a for a in build_parser()._actions if isinstance(a, argparse._SubParsersAction))
    return sub.choices[command]


def _unwrapped(text: str) -> str:  # argparse wraps help lines at spaces and after hyphens
    return "".join(text.split())


def _other_value(config_field, hint) -> tuple[list[str], object]:
    """Command-line tokens that set ``config_field`` to a value other than its default, and that value."""
    default = config_field.default_factory() if config_field.default_factory is not MISSING else config_field.default
    if typing.get_origin(hint) in (typing.Union, types.UnionType):
        hint = next(a for a in typing.get_args(hint) if a is not type(None))
    origin, members = typing.get_origin(hint), typing.get_args(hint)
    name = flag(config_field)
    if hint is bool:
        return ([f"--no-{name[2:]}"] if default else [name]), not default
    choices = config_field.metadata.get("choices")
    text = choices[-1] if choices else "zz"
    cases = {int: ("7", 7), float: ("-0.25", -0.25), str: (text, text)}
    if origin is list:
        cases = {str: ("val,test", ["val", "test"]), float: ("-1,0.5", [-1.0, 0.5]), int: ("1,2", [1, 2])}
        token, value = cases[members[0]]
    elif origin is tuple:
        token, value = ("-1000,400", (-1000.0, 400.0)) if members == (float, float) else \
            ("32,16", (members[0](32), members[0](16)))
    elif hint is dict:
        token, value = "temperature=0.5", {"temperature": "0.5"}
    else:
        token, value = cases[hint]
    assert value != default, config_field.name
    return [name, token], value


@pytest.mark.parametrize(("command", "config"), [("pretrain", PretrainConfig), ("finetune", FinetuneConfig)])
def test_every_config_field_is_an_option_that_sets_it_shows_its_help_and_has_no_default_of_its_own(command, config):
    parser = _subparser(command)
    help_text = _unwrapped(parser.format_help())
    hints = typing.get_type_hints(config)
    for config_field in fields(config):
        tokens, value = _other_value(config_field, hints[config_field.name])
        required = [t for name in ("data", "out") if name != config_field.name for t in (f"--{name}", name)]
        args = parser.parse_args([*required, *tokens])
        assert getattr(config_from_options(args, config), config_field.name) == value, config_field.name
        action = parser._option_string_actions[flag(config_field)]
        assert action.default is None, config_field.name  # the default lives in the dataclass only
        # its own help text (task options: the registry's), shown by --help
        assert action.help and _unwrapped(config_field.metadata.get("help", action.help)) in help_text
    assert {f.name for f in fields(CommonConfig)} < {f.name for f in fields(PretrainConfig)}


@pytest.mark.parametrize("command", ["pretrain", "finetune", "anomaly"])
def test_help_describes_every_option(command):
    undescribed = [a.option_strings for a in _subparser(command)._actions if not a.help]
    assert undescribed == []


def test_a_default_that_differs_between_tasks_is_shown_for_each_from_the_task_configs():
    help_text = _unwrapped(_subparser("finetune").format_help())
    assert _unwrapped("(default: classify resnet18, segment resnet10, detect resnet10)") in help_text
    assert _unwrapped("(default: 64 for 2D images, 16 for 3D; --task segment: 8; --task detect: 8)") in help_text


def test_options_given_override_the_file_and_the_rest_comes_from_it(tmp_path):
    file = tmp_path / "run.yaml"
    file.write_text(yaml.safe_dump({"data": "synthetic:lesions2d", "out": "a", "lr": 0.01, "epochs": 3,
                                    "window": [-1000, 400], "channels_last": True, "loggers": ["csv", "tensorboard"]}))
    args = build_parser().parse_args(["pretrain", "--config", str(file), "--out", "b", "--no-channels-last",
                                      "--epochs", "5"])
    config = config_from_options(args, PretrainConfig, read_config_file(args.config)[1])
    assert (config.data, config.out, config.lr, config.epochs, config.window, config.channels_last, config.loggers) \
        == ("synthetic:lesions2d", "b", 0.01, 5, (-1000.0, 400.0), False, ["csv", "tensorboard"])
    assert config.method == "simclr"  # neither file nor option: the dataclass default


def test_a_pretraining_run_config_reruns_it(tmp_path, capsys):
    first, again = tmp_path / "first", tmp_path / "again"
    assert main(["pretrain", *TINY, "--max-steps", "1", "--method-args", "temperature=0.3", "--out", str(first)]) == 0
    assert main(["pretrain", "--config", str(first / "config.yaml"), "--out", str(again)]) == 0
    recorded, rerun = (yaml.safe_load((d / "config.yaml").read_text()) for d in (first, again))
    assert rerun.pop("out") == str(again) and recorded.pop("out") == str(first)
    assert {k: v for k, v in rerun.items() if k not in MEASURED} == \
        {k: v for k, v in recorded.items() if k not in MEASURED}
    assert recorded["method_args"] == {"temperature": 0.3}
    losses = [json.loads((d / "metrics.json").read_text())["train"]["loss"] for d in (first, again)]
    assert losses[0] == pytest.approx(losses[1], rel=1e-5)  # same seed, same data, same model: the same step


def test_a_classification_run_config_reruns_it_with_an_option_changed(tmp_path, capsys):
    first, again = tmp_path / "first", tmp_path / "again"
    options = [*TINY, "--checkpoint", "scratch", "--min-samples-per-epoch", "0"]
    assert main(["finetune", *options, "--out", str(first)]) == 0
    assert main(["finetune", "--config", str(first / "config.yaml"), "--seed", "1", "--out", str(again)]) == 0
    recorded, rerun = (yaml.safe_load((d / "config.yaml").read_text()) for d in (first, again))
    assert (recorded["kind"], rerun["kind"], recorded["seed"], rerun["seed"]) == ("finetune", "finetune", 0, 1)
    changed = {k for k in recorded if recorded[k] != rerun.get(k)} - MEASURED
    assert changed == {"out", "seed"}


@pytest.mark.parametrize(("task", "options"), [
    ("segment", ["--data", "synthetic:blobs2d@16?n=8", "--steps-per-epoch", "1", "--patch-size", "16"]),
    ("detect", ["--data", "synthetic:boxes2d@32?n=16", "--min-samples-per-epoch", "0"]),
])
def test_a_task_run_config_holds_only_its_fields_and_what_runs_record(tmp_path, task, options):
    out = tmp_path / task
    assert main(["finetune", "--task", task, *options, "--checkpoint", "scratch", "--out", str(out), "--epochs", "1",
                 "--backbone", "resnet10", "--width", "0.125", "--batch-size", "2", "--no-progress",
                 "--accelerator", "cpu"]) == 0
    kind, entries = read_config_file(str(out / "config.yaml"))
    assert task_of_run(kind, "config.yaml") == task
    config = get_task(task).config(**config_values(get_task(task).config, entries, "config.yaml"))
    assert (config.out, config.epochs, config.width) == (str(out), 1, 0.125)


@pytest.fixture
def files(tmp_path: Path) -> Path:
    (tmp_path / "typo.yaml").write_text("data: synthetic:lesions2d\nlrr: 0.1\n")
    (tmp_path / "type.yaml").write_text("data: synthetic:lesions2d\nepochs: ten\n")
    (tmp_path / "pretrain.yaml").write_text("kind: pretrain\ndata: synthetic:lesions2d\nspatial_dims: 2\n")
    (tmp_path / "segment.yaml").write_text("task: segment\ndata: synthetic:blobs2d\ncheckpoint: scratch\n"
                                           "linear_probe: true\n")
    (tmp_path / "list.yaml").write_text("- data\n")
    return tmp_path


@pytest.mark.parametrize(("args", "match"), [
    (["pretrain", "--config", "{root}/typo.yaml"], "typo.yaml: unknown key 'lrr' (did you mean 'lr'?); valid keys: "
                                                   "data, out, seed"),
    (["pretrain", "--config", "{root}/type.yaml", "--out", "{root}/o"], "type.yaml: epochs must be int, got 'ten'"),
    (["pretrain", "--config", "{root}/pretrain.yaml"], "required: --out (or give them in --config)"),
    (["finetune", "--config", "{root}/pretrain.yaml", "--out", "{root}/o"], "records a 'pretrain' run, not a "
                                                                            "fine-tuning run"),
    (["finetune", "--config", "{root}/segment.yaml", "--out", "{root}/o"], "unknown key 'linear_probe'"),
    (["finetune", "--data", "d", "--out", "{root}/o"], "one of the arguments --checkpoint --init is required"),
    (["pretrain", "--config", "{root}/list.yaml"], "list.yaml: expected a mapping"),
    (["pretrain", "--config", "{root}/absent.yaml"], "absent.yaml"),
])
def test_a_bad_config_file_is_one_line_and_writes_nothing(files, args, match, capsys):
    args = [a.format(root=files) for a in args]
    code = main(args)
    captured = capsys.readouterr()
    assert_one_line_error(subprocess.CompletedProcess(args, code, captured.out, captured.err), match)
    assert not (files / "o").exists()
