"""The task registry: every task declares a config, a runner, metrics with a primary one; the CLI lists them."""

import pytest

from medssl.cli import build_parser
from medssl.config import CommonConfig
from medssl.errors import MedsslError
from medssl.tasks.base import Task
from medssl.tasks.registry import get_task, task_names, tasks


def test_every_task_declares_a_runnable_entry_point_and_a_primary_metric():
    assert list(tasks()) == ["classify", "segment", "detect", "anomaly"]
    for task in tasks().values():
        assert callable(task.runner())
        assert task.primary_metric in task.metric_names
        assert issubclass(task.config, CommonConfig)


def test_finetune_help_lists_the_registered_fine_tuning_tasks(capsys):
    with pytest.raises(SystemExit):
        build_parser().parse_args(["finetune", "--help"])
    text = capsys.readouterr().out
    for name in task_names("finetune"):
        assert name in text and tasks()[name].description.split(" (")[0] in " ".join(text.split())
    assert "anomaly" in task_names() and "anomaly" not in task_names("finetune")


def test_unknown_task_is_a_one_line_error():
    with pytest.raises(MedsslError, match="unknown task 'cluster'; choose from classify, segment"):
        get_task("cluster")


def test_a_task_must_name_a_primary_metric_among_its_metrics_and_options_among_its_config_fields():
    with pytest.raises(ValueError, match="primary metric"):
        Task("x", "x", CommonConfig, "m:f", primary_metric="auc", metric_names=("dice",))
    with pytest.raises(ValueError, match="not fields"):
        Task("x", "x", CommonConfig, "m:f", primary_metric="dice", metric_names=("dice",), options={"nope": ""})
