"""Launch a study's workers through submitit: a SLURM job array (one task per worker) or local processes.

The launcher registers the study's cells in the shared database, then starts ``workers`` copies of the worker
loop; they claim cells from the database, so any number of them, on any machines, run each cell once. Run dirs
live under one run root all workers see (a shared file system), so an encoder pre-trained by one worker is
fine-tuned by the others.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from medssl.errors import MedsslError
from medssl.study.spec import StudySpec
from medssl.study.store import Store, database_name, is_url

EXECUTORS = ("local", "slurm")


@dataclass
class Resources:
    """What each worker asks the scheduler for."""

    workers: int
    gpus_per_worker: int = 0
    cpus_per_worker: int | None = None
    partition: str | None = None
    time_min: int = 24 * 60  # SLURM kills a task at its time limit; its cell is reclaimed and run again

    def check(self) -> None:
        if self.workers < 1:
            raise MedsslError(f"workers must be >= 1, got {self.workers}")
        if self.gpus_per_worker < 0:
            raise MedsslError(f"gpus per worker must be >= 0, got {self.gpus_per_worker}")
        if self.time_min < 1:
            raise MedsslError(f"time limit must be at least a minute, got {self.time_min} min")


def parse_time(text: str) -> int:
    """Minutes of a SLURM time limit: M, M:S, H:M:S, D-H, D-H:M or D-H:M:S (seconds round up)."""
    match = re.fullmatch(r"(?:(\d+)-)?(\d+(?::\d+){0,2})", text.strip())
    if match is None:
        raise MedsslError(f"time limit {text!r}: use minutes (90), H:MM:SS or D-HH:MM:SS")
    days, clock = match.groups()
    parts = [int(p) for p in clock.split(":")]
    if days is not None:  # D-H, D-H:M, D-H:M:S
        parts += [0] * (3 - len(parts))
    elif len(parts) < 3:  # M, M:S
        parts = [0, *parts, 0][:3] if len(parts) == 1 else [0, *parts]
    hours, minutes, seconds = parts
    return int(days or 0) * 24 * 60 + hours * 60 + minutes + (1 if seconds else 0)


def worker_job(db: str, spec_hash: str, lease_s: float) -> int:
    """What each array task runs: the worker loop until no cell is left. Returns the cells it ran."""
    from medssl.study.runner import work

    return work(db, spec_hash, lease_s=lease_s)


def make_executor(kind: str, folder: Path, resources: Resources, job_name: str) -> Any:
    import submitit

    if kind == "local":
        executor = submitit.LocalExecutor(folder=folder)
        executor.update_parameters(timeout_min=resources.time_min, gpus_per_node=resources.gpus_per_worker)
        return executor
    if kind != "slurm":
        raise MedsslError(f"unknown executor {kind!r}; use one of {', '.join(EXECUTORS)}")
    try:
        executor = submitit.SlurmExecutor(folder=folder)
    except RuntimeError as err:  # no srun: not on a SLURM cluster
        raise MedsslError(f"cannot submit to SLURM here: {err}") from None
    parameters: dict[str, Any] = {"job_name": job_name, "time": resources.time_min, "nodes": 1, "ntasks_per_node": 1,
                                  "array_parallelism": resources.workers}
    if resources.gpus_per_worker:
        parameters["gpus_per_node"] = resources.gpus_per_worker
    if resources.cpus_per_worker:
        parameters["cpus_per_task"] = resources.cpus_per_worker
    if resources.partition:
        parameters["partition"] = resources.partition
    executor.update_parameters(**parameters)
    return executor


@dataclass
class Launched:
    spec_hash: str
    jobs: list[Any]  # submitit jobs, one per worker
    counts: dict[str, int]


def check_same_spec(store: Store, spec: StudySpec) -> None:
    """A study's workers may run for days: refuse a database whose study of this name has another spec."""
    for record in store.studies():
        if record["name"] == spec.name and record["spec_hash"] != spec.hash:
            raise MedsslError(f"{store.name} holds study '{spec.name}' with another spec ({record['spec_hash']},"
                              f" this one is {spec.hash}); rename the study or use another database")


def launch(spec: StudySpec, db: str | Path, runs_dir: str | Path, *, executor: str, resources: Resources,
           logs: str | Path | None = None, lease_s: float = 120.0, wait: bool | None = None) -> Launched:
    """Register ``spec`` in ``db`` and start its workers; with ``wait`` (default: local executor) until they end."""
    from medssl.study.runner import register_study

    resources.check()
    if executor not in EXECUTORS:
        raise MedsslError(f"unknown executor {executor!r}; use one of {', '.join(EXECUTORS)}")
    if executor == "slurm" and not is_url(db):
        print(f"note: SQLite ({db}) is unsafe on a network file system with writers on several machines;"
              " use postgresql://user@host/dbname for a cluster")
    runs_dir = Path(runs_dir).resolve()
    folder = Path(logs).resolve() if logs else runs_dir / "submitit"
    job_executor = make_executor(executor, folder, resources, job_name=f"medssl-{spec.name}")  # before any write
    probe = Store(db, lease_s=lease_s)
    try:
        check_same_spec(probe, spec)
    finally:
        probe.close()
    store = register_study(spec, db, runs_dir, lease_s=lease_s)
    try:
        counts = store.counts(spec.hash)
        if counts.get("pending", 0) + counts.get("running", 0) == 0:
            print(f"study {spec.name} ({spec.hash}): all {sum(counts.values())} cells are done; nothing to launch")
            return Launched(spec.hash, [], counts)
        target = str(db) if is_url(db) else str(Path(db).resolve())  # workers start elsewhere
        n = resources.workers
        jobs = job_executor.map_array(worker_job, [target] * n, [spec.hash] * n, [lease_s] * n)
        print(f"study {spec.name} ({spec.hash}): {n} {executor} worker(s) on {database_name(db)}; "
              f"job(s) {', '.join(sorted({str(j.job_id).split('_')[0] for j in jobs}))}; logs in {folder}")
        if wait if wait is not None else executor == "local":
            for job in jobs:
                try:
                    job.result()
                except Exception as err:  # the job's traceback is in its log
                    raise MedsslError(f"worker {job.job_id} failed ({str(err).strip().splitlines()[-1]});"
                                      f" its log: {job.paths.stderr}") from None
        return Launched(spec.hash, jobs, store.counts(spec.hash))
    finally:
        store.close()
