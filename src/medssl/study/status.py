"""Where a study stands: cells done / running (by whom, for how long) / failed (last error) / waiting, per
axis, and an ETA from the measured durations of the finished cells."""

from __future__ import annotations

import json
import sys
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from medssl.errors import MedsslError
from medssl.study.axes import label_keys
from medssl.study.store import Store

STATES = ("done", "running", "failed", "waiting")


@dataclass
class Running:
    key: str
    worker: str
    host: str
    for_s: float
    heartbeat_age_s: float
    attempt: int


@dataclass
class StudyStatus:
    name: str
    spec_hash: str
    database: str
    counts: Counter  # state -> cells
    pretrain: Counter  # state -> pre-training cells
    running: list[Running] = field(default_factory=list)
    failed: list[tuple[str, str]] = field(default_factory=list)
    axes: dict[str, dict[str, Counter]] = field(default_factory=dict)  # axis -> level -> state -> cells
    mean_s: dict[str, float] = field(default_factory=dict)  # kind -> mean measured duration of a cell
    workers: int = 0
    eta_s: float | None = None

    @property
    def finished(self) -> bool:
        return self.counts["running"] + self.counts["waiting"] == 0


def _state(status: str) -> str:
    return "waiting" if status == "pending" else status


def _level(value: object) -> str:
    return "natural" if value is None else f"{value:g}" if isinstance(value, float) else str(value)


def study_status(store: Store, study: str | None = None) -> StudyStatus:
    record = store.study(study)
    spec_hash = record["spec_hash"]
    cells, now = store.cell_states(spec_hash), store.now()
    finished = store.results(spec_hash) + store.results(spec_hash, kind="pretrain")
    status = StudyStatus(record["name"], spec_hash, store.name, Counter(), Counter())
    durations: dict[str, list[float]] = {}
    for row in finished:
        if row["started_at"] is not None and row["finished_at"] is not None:
            durations.setdefault(row["kind"], []).append(row["finished_at"] - row["started_at"])
    status.mean_s = {kind: sum(d) / len(d) for kind, d in durations.items()}
    names = label_keys()
    levels: dict[str, dict[str, Counter]] = {axis: {} for axis in names}
    for cell in cells:
        state = _state(cell["status"])
        status.counts[state] += 1
        if cell["kind"] == "pretrain":
            status.pretrain[state] += 1
        else:
            labels = json.loads(cell["labels"])
            for axis in names:
                if labels.get(axis, "-") != "-":  # '-': not on this axis (scratch has no upstream)
                    levels[axis].setdefault(_level(labels[axis]), Counter())[state] += 1
        if state == "running":
            status.running.append(Running(cell["key"], cell["worker"] or "?", cell["host"] or "?",
                                          now - (cell["claimed"] or cell["heartbeat"] or now),
                                          now - (cell["heartbeat"] or now), cell["attempts"]))
        elif state == "failed":
            status.failed.append((cell["key"], cell["error"] or ""))
    status.axes = {axis: by_level for axis, by_level in levels.items() if len(by_level) > 1}
    status.workers = len({r.worker for r in status.running})
    status.eta_s = _eta(cells, status, now)
    return status


def _eta(cells: list[dict], status: StudyStatus, now: float) -> float | None:
    """Work left (waiting cells at their kind's mean duration, running ones the rest of it) over the workers
    now running; unknown until some cell has finished."""
    if status.finished:
        return 0.0
    if not status.mean_s:
        return None
    overall = sum(status.mean_s.values()) / len(status.mean_s)
    left = 0.0
    running = {r.key: r for r in status.running}
    for cell in cells:
        mean = status.mean_s.get(cell["kind"], overall)
        if cell["status"] == "pending":
            left += mean
        elif cell["key"] in running:
            left += max(0.0, mean - running[cell["key"]].for_s)
    return left / max(1, status.workers)


def _duration(seconds: float) -> str:
    if seconds < 90:
        return f"{seconds:.0f} s"
    if seconds < 90 * 60:
        return f"{seconds / 60:.0f} min"
    return f"{seconds / 3600:.1f} h"


def _states(counter: Counter) -> str:
    return " / ".join(f"{counter[s]}" for s in STATES)


def format_status(status: StudyStatus) -> str:
    counts = ", ".join(f"{status.counts[s]} {s}" for s in STATES)
    eta = ("finished" if status.finished else "ETA unknown (no cell has finished yet)" if status.eta_s is None
           else f"ETA {_duration(status.eta_s)} at {max(1, status.workers)} worker(s)")
    measured = ", ".join(f"{kind} cells take {_duration(s)}" for kind, s in sorted(status.mean_s.items()))
    lines = [f"study {status.name} ({status.spec_hash}) on {status.database}",
             f"{sum(status.counts.values())} cells: {counts}; {eta}" + (f" ({measured})" if measured else "")]
    if status.running:
        lines.append("running:")
        lines += [f"  {r.key}  by {r.worker} on {r.host} for {_duration(r.for_s)} (attempt {r.attempt},"
                  f" heartbeat {_duration(r.heartbeat_age_s)} ago)" for r in status.running]
    if status.failed:
        lines.append("failed:")
        lines += [f"  {key}: {error}" for key, error in status.failed]
    lines.append(f"cells by axis ({' / '.join(STATES)}):")
    if sum(status.pretrain.values()):
        lines.append(f"  {'pre-training':<16}{'':<16}{_states(status.pretrain)}")
    for axis, by_level in status.axes.items():
        for i, (level, counter) in enumerate(by_level.items()):
            lines.append(f"  {axis if i == 0 else '':<16}{level:<16}{_states(counter)}")
    return "\n".join(lines)


def show(db: str | Path, study: str | None = None, *, watch: bool = False, interval_s: float = 10.0,
         times: int | None = None, emit: Callable[[str], None] = print) -> StudyStatus:
    """Print the status once, or with ``watch`` every ``interval_s`` until the study has nothing left to run
    (or ``times`` refreshes were shown)."""
    if interval_s <= 0:
        raise MedsslError(f"interval must be > 0 s, got {interval_s}")
    if times is not None and times < 1:
        raise MedsslError(f"times must be >= 1, got {times}")
    store = Store(db, create=False)
    try:
        shown = 0
        while True:
            status = study_status(store, study)
            clear = "\033[2J\033[H" if watch and sys.stdout.isatty() else ""
            emit(f"{clear}{time.strftime('%H:%M:%S')} {format_status(status)}" if watch else format_status(status))
            shown += 1
            if not watch or status.finished or (times is not None and shown >= times):
                return status
            time.sleep(interval_s)
    finally:
        store.close()
