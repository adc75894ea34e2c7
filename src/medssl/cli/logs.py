"""Where a command's log records go: medssl's own messages to stderr (``medssl: ...``) and to the log file;
third-party warnings (MONAI's "nvImageCodec is not available", Python warnings, Lightning) to the log file
only. The log file is the run's ``logs/medssl.log`` when the command made a run directory, else
``$MEDSSL_CACHE/medssl.log`` (default ``~/.cache/medssl``)."""

from __future__ import annotations

import logging
import os
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

RUN_LOG = Path("logs") / "medssl.log"


class _Buffer(logging.Handler):
    """Keeps formatted records until the command knows where its log file is (a run directory is created,
    or cleared, in the middle of a command)."""

    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
        self.lines: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        try:
            self.lines.append(self.format(record))
        except Exception:  # a library's malformed log call must not end the command
            self.handleError(record)


def fallback_log() -> Path:
    return Path(os.environ.get("MEDSSL_CACHE", Path.home() / ".cache" / "medssl")) / "medssl.log"


def log_file_for(out: str | None) -> Path:
    """The run's log when ``out`` holds a medssl run (its config.yaml), else the per-user fallback."""
    if out and (Path(out) / "config.yaml").is_file():
        return Path(out) / RUN_LOG
    return fallback_log()


def _console_handlers(logger: logging.Logger) -> list[logging.Handler]:
    return [h for h in logger.handlers if isinstance(h, logging.StreamHandler)
            and getattr(h, "stream", None) in (sys.stderr, sys.stdout, sys.__stderr__, sys.__stdout__)]


@contextmanager
def routed_logs() -> Iterator[_Buffer]:
    """Route every log record and Python warning for the duration of one command (see the module doc);
    the caller writes ``buffer.lines`` with :func:`write_log` once it knows the run directory."""
    buffer = _Buffer()
    console = logging.StreamHandler(sys.stderr)
    console.setLevel(logging.INFO)
    console.setFormatter(logging.Formatter("medssl: %(message)s"))
    root, ours = logging.getLogger(), logging.getLogger("medssl")
    saved_root = (root.handlers[:], root.level)
    saved_ours = (ours.handlers[:], ours.level)
    # libraries that print through their own console handlers (Lightning adds one when imported first)
    detached = {}
    for logger in [root, *(v for v in logging.Logger.manager.loggerDict.values() if isinstance(v, logging.Logger))]:
        handlers = _console_handlers(logger)
        if handlers and logger is not ours:
            detached[logger] = (handlers, logger.propagate)
            for handler in handlers:
                logger.removeHandler(handler)
            logger.propagate = True
    root.addHandler(buffer)
    root.setLevel(logging.WARNING)
    ours.handlers = [console]
    ours.setLevel(logging.INFO)
    logging.captureWarnings(True)
    try:
        yield buffer
    finally:
        logging.captureWarnings(False)
        root.removeHandler(buffer)
        root.setLevel(saved_root[1])
        ours.handlers, ours.level = saved_ours
        for logger, (handlers, propagate) in detached.items():
            for handler in handlers:
                logger.addHandler(handler)
            logger.propagate = propagate


def write_log(command: str, lines: list[str], path: Path) -> None:
    """Append the command's records (if any) to ``path``; a log that cannot be written never fails the command."""
    if not lines:
        return
    lines = [f"--- medssl {command}", *lines]
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        with path.open("a", encoding="utf-8") as log:
            log.write("\n".join(lines) + "\n")
    except OSError:
        pass
