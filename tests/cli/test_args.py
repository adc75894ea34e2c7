"""CLI hygiene: every numeric option takes negative values as the README writes them (``--window -1000,400``),
and third-party warnings reach the run's log file, never the terminal."""

from __future__ import annotations

import argparse
import logging
import sys
import warnings
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from medssl.cli import build_parser, main
from medssl.cli.args import floats, ints, patch_values, spacing_values, window, words
from medssl.cli.logs import RUN_LOG, routed_logs
from medssl.cli.train import key_values
from medssl.errors import MedsslError

# per argument type: tokens as a user types them, and the parsed values
NEGATIVE_CASES = {
    int: [("-3", -3)],
    float: [("-0.5", -0.5), ("-1e-3", -1e-3), ("-.25", -0.25)],
    window: [("-1000,400", (-1000.0, 400.0)), ("-1e3,-500", (-1000.0, -500.0))],
    floats: [("-1,0.5", [-1.0, 0.5]), ("-2.5", [-2.5])],
    ints: [("-1,2", [-1, 2]), ("-3", [-3])],
    spacing_values: [("-1.5,1.5,2", (-1.5, 1.5, 2.0)), ("-2", (-2.0,))],
    patch_values: [("-3,4", (-3, 4)), ("-3", (-3,))],
    # KEY=VALUE pairs start with a key, never a minus: negative values inside them always parsed
    key_values: [("shift=-0.5,range=[-1,1]", {"shift": "-0.5", "range": "[-1,1]"})],
}


def _commands(parser: argparse.ArgumentParser, path: tuple[str, ...] = ()):
    """(command words, parser) for every leaf command of the tree."""
    subs = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
    if not subs:
        yield path, parser
    for sub in subs:
        for name, child in sub.choices.items():
            yield from _commands(child, (*path, name))


def _required(parser: argparse.ArgumentParser) -> list[str]:
    argv: list[str] = []
    for action in parser._actions:
        if not action.option_strings and action.nargs not in ("?", "*"):
            argv.append("x")
        elif action.option_strings and action.required:
            argv += [action.option_strings[0], NEGATIVE_CASES[action.type][0][0] if action.type in NEGATIVE_CASES
                     else "x"]
    for group in parser._mutually_exclusive_groups:  # e.g. finetune's --checkpoint | --init
        if group.required:
            argv += [group._group_actions[0].option_strings[0], "x"]
    return argv


# any other typed option (e.g. ``numbers(float, ...)`` closures): the value must reach its type function as typed
OTHER_TOKENS = ("-1.5,2,3", "-2")


def test_every_numeric_option_parses_negative_values_as_written() -> None:
    checked = 0
    for path, parser in _commands(build_parser()):
        for action in parser._actions:
            if not action.option_strings or action.type in (None, str, words):  # text, not numbers
                continue
            cases = NEGATIVE_CASES.get(action.type) or [(t, None) for t in OTHER_TOKENS]
            for token, value in cases:
                argv = [*path, *_required(parser), action.option_strings[0], token]
                if value is None:
                    try:
                        value = action.type(token)
                    except (argparse.ArgumentTypeError, TypeError, ValueError):  # the type refuses it: its message
                        with pytest.raises(MedsslError) as refused:
                            build_parser().parse_args(argv)
                        assert "expected one argument" not in str(refused.value), (path, action.option_strings)
                        checked += 1
                        continue
                args = build_parser().parse_args(argv)
                assert getattr(args, action.dest) == pytest.approx(value), (path, action.option_strings, token)
                checked += 1
    assert checked >= 40  # the walk found the options (pretrain, finetune, evaluate, study, data info)


def test_option_names_are_still_recognised_after_a_negative_value() -> None:
    args = build_parser().parse_args(["pretrain", "--data", "d", "--window", "-1000,400", "--out", "o", "--lr",
                                      "-1e-3", "--seed", "-1"])
    assert (args.window, args.out, args.lr, args.seed) == ((-1000.0, 400.0), "o", -1e-3, -1)
    with pytest.raises(Exception, match="unrecognized arguments: -x"):
        build_parser().parse_args(["pretrain", "--data", "d", "--out", "o", "-x"])


def test_library_warnings_go_to_the_buffer_and_medssl_messages_to_stderr(capsys) -> None:
    # Lightning attaches its own console handler when imported before logging is configured
    lightning = logging.getLogger("medssl_test_library_with_its_own_handler")
    lightning.setLevel(logging.INFO)
    lightning.addHandler(logging.StreamHandler(sys.stderr))
    lightning.propagate = False
    with routed_logs() as log:
        warnings.warn("a deprecation from some library", UserWarning, stacklevel=1)
        logging.getLogger("monai.data.some_reader").warning("nvImageCodec is not available")
        lightning.warning("Tip: install litmodels")
        logging.getLogger("medssl.memory").info("batch 64 does not fit: 4 x 16 with gradient accumulation")
    err = capsys.readouterr().err
    assert err == "medssl: batch 64 does not fit: 4 x 16 with gradient accumulation\n"
    text = "\n".join(log.lines)
    for message in ("a deprecation from some library", "nvImageCodec is not available", "Tip: install litmodels",
                    "batch 64 does not fit"):
        assert message in text
    assert lightning.handlers and not lightning.propagate  # restored after the command


@pytest.fixture
def ct_png_folder(tmp_path: Path) -> Path:
    root = tmp_path / "pngs"
    root.mkdir()
    rng = np.random.default_rng(0)
    rows = ["path,label,split"]
    for i in range(12):
        Image.fromarray(rng.integers(0, 255, (16, 16), dtype=np.uint8)).save(root / f"im{i}.png")
        rows.append(f"im{i}.png,{i % 2},{'train' if i < 8 else ('val' if i < 10 else 'test')}")
    (root / "labels.csv").write_text("\n".join(rows) + "\n")
    return root


def test_readme_window_runs_and_the_terminal_shows_no_library_warnings(ct_png_folder, tmp_path, monkeypatch,
                                                                       capsys) -> None:
    monkeypatch.setenv("MEDSSL_CACHE", str(tmp_path / "cache"))
    out = tmp_path / "run"
    code = main(["pretrain", "--data", str(ct_png_folder), "--window", "-1000,400", "--out", str(out), "--epochs",
                 "1", "--backbone", "resnet10", "--width", "0.125", "--batch-size", "4", "--no-progress"])
    captured = capsys.readouterr()
    assert code == 0, captured.err
    assert captured.err == ""  # no nvImageCodec line, no Lightning banner or tip, no Python warning
    assert captured.out.strip() == f"pre-trained encoder written to {out / 'encoder.pt'}"
    # MONAI builds its DICOM reader for every folder load and says so: the run's log keeps it
    assert "nvImageCodec is not available" in (out / RUN_LOG).read_text()
    assert not (tmp_path / "cache").exists()


def test_a_command_without_a_run_dir_logs_to_the_cache_dir(ct_png_folder, tmp_path, monkeypatch, capsys) -> None:
    monkeypatch.setenv("MEDSSL_CACHE", str(tmp_path / "cache"))
    assert main(["methods"]) == 0
    assert capsys.readouterr().err == "" and not (tmp_path / "cache").exists()  # nothing logged: no file
    assert main(["data", "info", str(ct_png_folder), "--window", "-1000,400"]) == 0
    captured = capsys.readouterr()
    assert "train:" in captured.out and captured.err == ""
    assert "nvImageCodec is not available" in (tmp_path / "cache" / "medssl.log").read_text()
