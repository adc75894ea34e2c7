"""Memory safety before training: measure a training step on two micro-batches, extrapolate to the asked
batch, compare with the memory this process may use, and choose a micro-batch with gradient accumulation
that fits (the effective batch stays the one asked for) or refuse with one line that says what would fit.

Measured, not modelled: on the CPU a forked child runs forward + backward of the real ``training_step`` on
2 and then 4 samples and reports its peak resident memory (``ru_maxrss``) above what it started with: it
sees everything the kernel's OOM killer would (oneDNN workspaces, allocator slack), and the parent never
holds the activations. On a GPU the same steps run in-process under ``torch.cuda.max_memory_allocated``.
A step's peak is ``fixed + per_sample x batch`` (weights' gradients and workspaces, then activations,
which grow linearly with the batch); AdamW's two moment buffers per parameter are added analytically.
"""

from __future__ import annotations

import ctypes
import json
import logging
import os
import resource
import select
import signal
import sys
import time
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

from medssl.errors import MedsslError

log = logging.getLogger(__name__)

GB = 1024**3
MEASURE_SIZES = (2, 4)
# the share of the available memory a planned step may take: the rest is for what a two-point measurement
# cannot see (allocator fragmentation over many steps, the loader's next batch, logging, checkpoint writes)
HEADROOM = 0.8
MEASURE_TIMEOUT_S = 600
LIMIT_ENV = "MEDSSL_MEMORY_LIMIT_GB"
# default batch sizes by task and spatial dims: a 3D volume costs ~ side x a 2D image of the same side
DEFAULT_BATCH_SIZES = {("pretrain", 2): 128, ("pretrain", 3): 16, ("finetune", 2): 64, ("finetune", 3): 16}


def default_batch_size(task: str, spatial_dims: int) -> int:
    """The batch a run uses when none was asked for: laptop-sized for volumes."""
    return DEFAULT_BATCH_SIZES[(task, spatial_dims)]


@dataclass(frozen=True)
class Budget:
    """Bytes a training step may add to this process, and where the figure comes from."""

    bytes: int
    source: str


def _read_int(path: Path) -> int | None:
    try:
        text = path.read_text().strip()
    except OSError:
        return None
    return int(text) if text.isdigit() else None


def _stat_value(path: Path, key: str) -> int:
    try:
        for line in path.read_text().splitlines():  # "key value[ kB]" (memory.stat, /proc/meminfo, status)
            fields = line.split()
            if len(fields) >= 2 and fields[0] == key and fields[1].isdigit():
                return int(fields[1])
    except OSError:
        pass
    return 0


def _cgroup_room() -> int | None:
    """Limit minus usage of this process's memory cgroup (v2, then v1); reclaimable file cache counts as free."""
    for limit_file, usage_file, stat_key in (("memory.max", "memory.current", "inactive_file"),
                                             ("memory/memory.limit_in_bytes", "memory/memory.usage_in_bytes",
                                              "total_inactive_file")):
        limit = _read_int(Path("/sys/fs/cgroup") / limit_file)
        usage = _read_int(Path("/sys/fs/cgroup") / usage_file)
        if limit is None or usage is None or limit >= 2**60:  # absent, or "max" / unlimited
            continue
        stat = Path("/sys/fs/cgroup") / Path(limit_file).parent / "memory.stat"
        return limit - (usage - _stat_value(stat, stat_key))
    return None


def _meminfo_available() -> int | None:
    kib = _stat_value(Path("/proc/meminfo"), "MemAvailable:") if Path("/proc/meminfo").exists() else 0
    if kib:
        return kib * 1024
    try:  # not Linux: physical memory as a last resort
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (ValueError, OSError, AttributeError):
        return None


def _rlimit_room(kind: int, status_key: str) -> int | None:
    soft, _ = resource.getrlimit(kind)
    if soft == resource.RLIM_INFINITY:
        return None
    used_kib = _stat_value(Path("/proc/self/status"), status_key)
    return soft - used_kib * 1024


def available_memory(device: torch.device, limit_gb: float | None = None) -> Budget:
    """What a training step may add: ``limit_gb`` (or $MEDSSL_MEMORY_LIMIT_GB) when given, else the GPU's
    free memory, or on the CPU the least of MemAvailable, the cgroup's room and the address-space and
    data-segment rlimits' room."""
    if limit_gb is None and os.environ.get(LIMIT_ENV):
        try:
            limit_gb = float(os.environ[LIMIT_ENV])
        except ValueError:
            raise MedsslError(f"${LIMIT_ENV} must be a number of GB, got '{os.environ[LIMIT_ENV]}'") from None
        source = f"${LIMIT_ENV}"
    else:
        source = "the memory limit"
    if limit_gb is not None:
        if not limit_gb > 0:
            raise MedsslError(f"memory limit must be > 0 GB, got {limit_gb}")
        return Budget(int(limit_gb * GB), source)
    if device.type == "cuda":
        free, _ = torch.cuda.mem_get_info(device)
        return Budget(int(free), f"free memory of {torch.cuda.get_device_name(device)}")
    candidates = {"available memory (MemAvailable)": _meminfo_available(), "the cgroup memory limit": _cgroup_room(),
                  "the address-space limit (RLIMIT_AS)": _rlimit_room(resource.RLIMIT_AS, "VmSize:"),
                  "the data-segment limit (RLIMIT_DATA)": _rlimit_room(resource.RLIMIT_DATA, "VmData:")}
    known = {name: room for name, room in candidates.items() if room is not None}
    if not known:
        raise MedsslError("cannot tell how much memory is available: give a memory limit")
    name = min(known, key=lambda k: known[k])
    return Budget(max(0, known[name]), name)


@dataclass(frozen=True)
class StepMemory:
    """A training step's peak memory above the process's resting state: ``fixed + per_sample x batch``."""

    fixed_bytes: int
    per_sample_bytes: int

    def peak(self, batch: int) -> int:
        return self.fixed_bytes + self.per_sample_bytes * batch


def optimizer_state_bytes(module: nn.Module) -> int:
    """AdamW's two moment buffers per trainable parameter (allocated at the first optimizer step)."""
    return 2 * sum(p.numel() * p.element_size() for p in module.parameters() if p.requires_grad)


def _maxrss_bytes() -> int:
    """Peak resident memory (VmHWM, which ``_reset_peak`` can lower; else ru_maxrss)."""
    hwm = _stat_value(Path("/proc/self/status"), "VmHWM:")
    if hwm:
        return hwm * 1024
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak if sys.platform == "darwin" else peak * 1024  # bytes on macOS, KiB on Linux


def _reset_peak() -> None:
    """In the measuring child: hand the heap's free pages back (glibc ``malloc_trim``) and reset the peak.
    A forked child inherits the parent's freed-but-resident heap; steps reusing it would not raise the peak
    and the per-sample line would read flat (an under-estimate), so the step is measured from a trimmed heap."""
    try:
        ctypes.CDLL("libc.so.6").malloc_trim(0)
        Path("/proc/self/clear_refs").write_text("5")  # 5: reset VmHWM to the current resident size
    except OSError:
        pass


def _autocast(device: torch.device, precision: str):
    dtype = {"16-mixed": torch.float16, "bf16-mixed": torch.bfloat16}.get(precision)
    return torch.autocast(device.type, dtype=dtype, enabled=dtype is not None)


def _train_step(module: nn.Module, batch: tuple, device: torch.device, precision: str) -> None:
    """Forward + backward of the module's own ``training_step`` (its logging is a no-op without a Trainer)."""
    module.train()
    with _autocast(device, precision):
        loss = module.training_step(tuple(t.to(device) for t in batch), 0)
    loss.backward()
    module.zero_grad(set_to_none=True)


def _fit_line(sizes: tuple[int, int], peaks: list[int]) -> StepMemory:
    per_sample = max(0, (peaks[1] - peaks[0]) // (sizes[1] - sizes[0]))
    return StepMemory(max(0, peaks[0] - per_sample * sizes[0]), per_sample)


def _measure_cpu(module: nn.Module, make_batch: Callable[[int], tuple], precision: str) -> StepMemory:
    """Run the steps in a forked child (the parent never holds their memory); its peak RSS above its start."""
    read_end, write_end = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: measure, report one JSON line, exit without running any parent cleanup
        status = 1
        try:
            os.close(read_end)
            torch.set_num_threads(1)  # OpenMP thread pools do not survive fork; memory barely depends on it
            warnings.simplefilter("ignore")
            _reset_peak()
            start = _maxrss_bytes()
            peaks = []
            for n in MEASURE_SIZES:
                _train_step(module, make_batch(n), torch.device("cpu"), precision)
                peaks.append(_maxrss_bytes() - start)
            os.write(write_end, json.dumps(peaks).encode())
            status = 0
        except BaseException as err:  # reported to the parent, which decides
            os.write(write_end, json.dumps({"error": f"{type(err).__name__}: {err}"[:500]}).encode())
        finally:
            os._exit(status)
    os.close(write_end)
    chunks = []
    deadline = time.monotonic() + MEASURE_TIMEOUT_S
    try:
        while True:
            ready, _, _ = select.select([read_end], [], [], max(0.0, deadline - time.monotonic()))
            if not ready:
                os.kill(pid, signal.SIGKILL)
                raise MedsslError(f"measuring a training step's memory took over {MEASURE_TIMEOUT_S} s")
            chunk = os.read(read_end, 65536)
            if not chunk:
                break
            chunks.append(chunk)
    finally:
        os.close(read_end)
        _, wait_status = os.waitpid(pid, 0)
    if os.WIFSIGNALED(wait_status):  # e.g. the OOM killer: even the micro-batch does not fit
        raise MemoryError(f"the measuring process was killed by signal {os.WTERMSIG(wait_status)}")
    reply = json.loads(b"".join(chunks) or b'{"error": "no reply"}')
    if isinstance(reply, dict):
        if "MemoryError" in reply["error"] or "DefaultCPUAllocator" in reply["error"]:
            raise MemoryError(reply["error"])
        raise RuntimeError(reply["error"])
    return _fit_line(MEASURE_SIZES, reply)


def _measure_cuda(module: nn.Module, make_batch: Callable[[int], tuple], device: torch.device,
                  precision: str) -> StepMemory:
    """The steps in-process on the GPU; the module goes back where it was and the RNG is left untouched."""
    home = next(module.parameters()).device
    module.to(device)
    peaks = []
    try:
        with torch.random.fork_rng(devices=[device]):
            for n in MEASURE_SIZES:
                torch.cuda.synchronize(device)
                torch.cuda.reset_peak_memory_stats(device)
                start = torch.cuda.memory_allocated(device)
                _train_step(module, make_batch(n), device, precision)
                peaks.append(torch.cuda.max_memory_allocated(device) - start)
    except torch.cuda.OutOfMemoryError as err:  # a RuntimeError: make it the MemoryError the planner expects
        raise MemoryError(str(err).splitlines()[0]) from None
    finally:
        module.to(home)
        torch.cuda.empty_cache()
    return _fit_line(MEASURE_SIZES, peaks)


def measure_step(module: nn.Module, make_batch: Callable[[int], tuple], device: torch.device,
                 precision: str = "32-true") -> StepMemory | None:
    """The step's memory as a line in the batch size; None where it cannot be measured here (CPU without
    fork, e.g. macOS, or an accelerator other than CUDA). Raises MemoryError when 2 samples already fail."""
    if device.type == "cuda":
        return _measure_cuda(module, make_batch, device, precision)
    if device.type == "cpu" and sys.platform.startswith("linux"):
        return _measure_cpu(module, make_batch, precision)
    return None


@dataclass(frozen=True)
class MemoryPlan:
    """How the asked batch runs: ``micro_batch`` samples per forward/backward, ``accumulate_grad_batches``
    of them per optimizer step (1: no accumulation)."""

    batch_size: int
    micro_batch: int
    accumulate_grad_batches: int
    estimate_bytes: int | None = None  # peak of one micro-batch step, optimizer state included
    available_bytes: int | None = None
    source: str = "not measured"

    def to_config(self) -> dict:
        """The entries a run records in its config.yaml."""
        def gb(value: int | None) -> float | None:
            return None if value is None else round(value / GB, 3)

        return {"micro_batch": self.micro_batch, "accumulate_grad_batches": self.accumulate_grad_batches,
                "memory_estimate_gb": gb(self.estimate_bytes), "memory_available_gb": gb(self.available_bytes),
                "memory_source": self.source}


def _gb(value: float) -> str:
    return f"{value / GB:.1f} GB" if value >= GB else f"{value / 2**20:.0f} MB"


def choose_plan(step: StepMemory, fixed_extra: int, batch_size: int, budget: Budget, *,
                accumulation_refused: str | None = None, micro_batch: int | None = None) -> MemoryPlan:
    """The largest micro-batch dividing ``batch_size`` whose step fits in ``HEADROOM`` of the budget.

    ``accumulation_refused``: why this run's loss needs the whole batch in one step (contrastive negatives,
    batch statistics); the run then fits as asked or is refused. ``micro_batch``: keep this one (a resumed
    run's), refusing if it no longer fits."""
    room = int(HEADROOM * budget.bytes)

    def need(batch: int) -> int:
        return step.peak(batch) + fixed_extra

    def plan(micro: int) -> MemoryPlan:
        return MemoryPlan(batch_size, micro, batch_size // micro, need(micro), budget.bytes, budget.source)

    largest = (room - step.fixed_bytes - fixed_extra) // step.per_sample_bytes if step.per_sample_bytes else batch_size
    where = f"{_gb(budget.bytes)} available ({budget.source})"
    if micro_batch is not None:
        if need(micro_batch) > room:
            raise MedsslError(f"the run's micro-batch of {micro_batch} needs ~{_gb(need(micro_batch))} per step but "
                              f"{where} allows {_gb(room)}; start it again with a smaller batch size")
        return plan(micro_batch)
    if need(batch_size) <= room:
        return plan(batch_size)
    asked = f"a batch of {batch_size} needs ~{_gb(need(batch_size))} per step but {where} allows {_gb(room)}"
    if largest < 2:
        raise MedsslError(f"{asked}, and even 2 samples need ~{_gb(need(2))}: use a smaller model "
                          "(backbone or width) or smaller images")
    if accumulation_refused is not None:
        raise MedsslError(f"{asked}; {accumulation_refused}, which gradient accumulation would change: "
                          f"use a batch size of at most {largest}")
    for micro in sorted((d for d in range(2, batch_size) if batch_size % d == 0), reverse=True):
        if micro <= largest:
            return plan(micro)
    raise MedsslError(f"{asked}; no micro-batch of at least 2 that divides {batch_size} fits: use a batch size "
                      f"that is a multiple of a number up to {largest}")


def plan_memory(module: nn.Module, make_batch: Callable[[int], tuple], batch_size: int, device: torch.device, *,
                precision: str = "32-true", limit_gb: float | None = None, accumulation_refused: str | None = None,
                micro_batch: int | None = None) -> MemoryPlan:
    """Measure, then :func:`choose_plan`; logs the plan when it differs from the asked batch. A step that
    cannot be measured here runs as asked (logged)."""
    budget = available_memory(device, limit_gb)
    try:  # a batch no larger than the measured ones is left as asked: it cannot be split usefully
        step = measure_step(module, make_batch, device, precision) if batch_size > MEASURE_SIZES[-1] else None
    except MemoryError:
        raise MedsslError(f"even 2 samples per step exceed the {_gb(budget.bytes)} available ({budget.source}): "
                          "use a smaller model (backbone or width) or smaller images") from None
    except (RuntimeError, OSError) as err:
        log.warning("could not measure a training step's memory (%s); running batch %d as asked", err, batch_size)
        step = None
    if step is None:
        return MemoryPlan(batch_size, micro_batch or batch_size, batch_size // (micro_batch or batch_size),
                          available_bytes=budget.bytes, source=budget.source)
    chosen = choose_plan(step, optimizer_state_bytes(module), batch_size, budget,
                         accumulation_refused=accumulation_refused, micro_batch=micro_batch)
    if chosen.accumulate_grad_batches > 1:
        log.info("a batch of %d needs ~%s per step, over %.0f %% of the %s available (%s): training %d micro-batches "
                 "of %d with gradient accumulation (~%s each), effective batch %d", batch_size,
                 _gb(step.peak(batch_size) + optimizer_state_bytes(module)), 100 * HEADROOM, _gb(budget.bytes),
                 budget.source, chosen.accumulate_grad_batches, chosen.micro_batch, _gb(chosen.estimate_bytes or 0),
                 batch_size)
    return chosen


def training_device(accelerator: str) -> torch.device:
    """The device Lightning will train on for ``accelerator`` (one process)."""
    if accelerator in ("gpu", "cuda") or (accelerator == "auto" and torch.cuda.is_available()):
        return torch.device("cuda", torch.cuda.current_device()) if torch.cuda.is_available() else torch.device("cpu")
    if accelerator == "mps" or (accelerator == "auto" and torch.backends.mps.is_available()):
        return torch.device("mps")
    return torch.device("cpu")

