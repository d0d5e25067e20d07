"""How perfmodel times and meters a workload: the one place that defines a measurement.

GPU work is timed with CUDA events and read only after synchronizing, so a time is the device's,
never a launch's. The CPU is timed with perf_counter around synchronous steps. Memory is the CUDA
allocator's peak (reset for each measurement) on a GPU and the process's peak RSS on the CPU.
A cell that runs out of memory is a result (status OOM), never a crash: on a GPU the error is
caught and the memory released; on the CPU a cell that would not fit is predicted from its sizes
and never allocated, so the operating system never has to kill the process.
"""
from __future__ import annotations

import gc
import math
import os
import platform
import statistics
import subprocess
import time
from dataclasses import asdict, dataclass, field
from typing import Any, Callable

import torch

from .errors import UserError

from .names import FAILED, OK, OOM, SKIPPED  # noqa: F401 (one definition for suite and report)

# Dense peak rates (TFLOP/s) that MFU is stated against, from the vendors' datasheets (SXM parts).
PEAK_TFLOPS = {
    ("H100", "bf16"): 989.4, ("H100", "tf32"): 494.7, ("H100", "fp32"): 66.9,
    ("H200", "bf16"): 989.4, ("H200", "tf32"): 494.7, ("H200", "fp32"): 66.9,
    ("A100", "bf16"): 312.0, ("A100", "tf32"): 156.0, ("A100", "fp32"): 19.5,
}
L2_FLUSH_BYTES = 256 * 1024 * 1024  # as triton.testing.do_bench: larger than any L2 cache
BURST_BELOW_S = 1e-3  # steps shorter than this are timed in bursts (Runnable.burst_size)
BURST_TARGET_S = 2e-3  # ... of about this much device time
BURST_MAX_STEPS = 100


def resolve_device(name: str = "auto") -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name not in ("cpu", "cuda") and not name.startswith("cuda:"):
        raise UserError(f"unknown device {name!r}; valid choices: auto, cpu, cuda, cuda:N")
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise UserError(f"device {name!r} asked for, but torch sees no GPU; valid choices: auto, cpu")
    return torch.device(name)


def synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


@dataclass
class Stats:
    """Per-step seconds over the measured steps."""

    n: int
    mean: float
    std: float
    median: float
    min: float
    max: float

    @classmethod
    def of(cls, times: list[float]) -> "Stats":
        return cls(len(times), statistics.fmean(times),
                   statistics.stdev(times) if len(times) > 1 else 0.0,
                   statistics.median(times), min(times), max(times))


def _proc_status_bytes(key: str) -> int:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(key + ":"):
                return int(line.split()[1]) * 1024
    raise OSError(f"{key} not in /proc/self/status")


class MemoryMeter:
    """Peak and current memory of the device that runs the work.

    CUDA: the caching allocator's counters. CPU: the process's resident set (VmRSS / VmHWM);
    writing 5 to /proc/self/clear_refs resets VmHWM so that each measurement has its own peak.
    ``offset`` is memory the measurement itself holds (the L2 flush buffer) and is left out.
    """

    def __init__(self, device: torch.device):
        self.device = device
        self.offset = 0
        self.before_backward: int | None = None
        self._cpu_peak_resettable = True

    def current(self) -> int:
        if self.device.type == "cuda":
            return torch.cuda.memory_allocated(self.device) - self.offset
        return _proc_status_bytes("VmRSS")

    def reset(self) -> None:
        self.before_backward = None
        if self.device.type == "cuda":
            torch.cuda.reset_peak_memory_stats(self.device)
            return
        try:
            with open("/proc/self/clear_refs", "w") as f:
                f.write("5")
        except OSError:
            self._cpu_peak_resettable = False  # peak then covers the process's whole life

    def peak(self) -> int:
        if self.device.type == "cuda":
            return torch.cuda.max_memory_allocated(self.device) - self.offset
        return _proc_status_bytes("VmHWM")

    def mark_before_backward(self) -> None:
        """Called by a workload between its forward and its backward."""
        now = self.current()
        self.before_backward = now if self.before_backward is None else max(now, self.before_backward)


class DeviceClock:
    """Seconds of measured device work, summed: a clock that advances only inside timed steps.

    asv takes it as a benchmark's ``timer``, so asv's samples are device times taken by this module
    (CUDA events read after a synchronize), not host time around launches or untimed preparation.
    """

    def __init__(self):
        self.total = 0.0

    def __call__(self) -> float:
        return self.total


DEVICE_CLOCK = DeviceClock()


class Runnable:
    """A built workload: ``prepare()`` (untimed: e.g. the forward whose backward is timed) and
    ``step(state)`` (timed). Built by perfmodel.workloads; timed only here."""

    def __init__(self, device: torch.device, step: Callable[[Any], None],
                 prepare: Callable[[], Any] | None = None, meter: MemoryMeter | None = None,
                 flush_l2: bool = True):
        self.device = device
        self.step = step
        self.prepare = prepare or (lambda: None)
        self.meter = meter or MemoryMeter(device)
        self.bursts = device.type == "cuda"  # the CPU runs synchronously: no queue to build
        self._last: float | None = None
        self._flush = None
        if flush_l2 and device.type == "cuda":
            self._flush = torch.empty(L2_FLUSH_BYTES, dtype=torch.int8, device=device)
            self.meter.offset = L2_FLUSH_BYTES

    def _prepare(self):
        state = self.prepare()
        if self._flush is not None:
            self._flush.zero_()  # a cold L2 for every step, as do_bench does
        return state

    def untimed_step(self) -> None:
        self.step(self._prepare())

    def timed_steps(self, n: int) -> list[float]:
        """Seconds of each of n steps on the device."""
        if self.device.type == "cuda":
            marks = []
            for _ in range(n):
                state = self._prepare()
                start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
                start.record()
                self.step(state)
                end.record()
                marks.append((start, end))
                del state
            torch.cuda.synchronize(self.device)
            return [s.elapsed_time(e) / 1e3 for s, e in marks]
        times = []
        for _ in range(n):
            state = self._prepare()
            t0 = time.perf_counter()
            self.step(state)
            times.append(time.perf_counter() - t0)
            del state
        return times

    def burst_size(self) -> int:
        """Steps timed back to back for one sample (the first is then left out).

        A single step that starts on an idle GPU waits on the host to launch each of its kernels:
        for a sub-millisecond step that latency, not the GPU, sets the time (asv measured eager
        attention 40% and a Triton kernel 2.6x slower than do_bench that way on an H100). In a
        burst the host runs ahead and the GPU has a queue, as under do_bench; a step that is
        still host-bound there is host-bound for real. Long steps are timed alone.
        """
        if not self.bursts or self._last is None or self._last >= BURST_BELOW_S:
            return 1
        return 1 + min(BURST_MAX_STEPS, math.ceil(BURST_TARGET_S / max(self._last, 1e-7)))

    def timed_step(self) -> float:
        """Seconds of one step on the device, added to DEVICE_CLOCK (an asv time_ method's body)."""
        times = self.timed_steps(self.burst_size())
        seconds = statistics.fmean(times[1:]) if len(times) > 1 else times[0]
        self._last = seconds
        DEVICE_CLOCK.total += seconds
        return seconds

    def release(self) -> None:
        self._flush = None
        self.step = self.prepare = None


@dataclass
class Result:
    """One cell's outcome: what ran, its status, and its figures (seconds, bytes, FLOPs)."""

    cell: dict
    status: str
    error: str = ""
    warmup: int = 0
    warmup_s: float | None = None
    total_s: float | None = None
    stats: Stats | None = None
    peak_bytes: int | None = None
    before_backward_bytes: int | None = None
    flops: float | None = None
    tflops: float | None = None
    mfu: float | None = None
    peak_tflops: float | None = None
    env: dict = field(default_factory=dict)

    def to_dict(self) -> dict:
        return asdict(self)


def measure(runnable: Runnable, warmup: int, steps: int) -> tuple[Stats, float, float]:
    """Run ``warmup`` untimed steps, then time ``steps``; memory peaks cover the timed steps."""
    if warmup < 0 or steps < 1:
        raise UserError(f"need warmup >= 0 and steps >= 1, got warmup={warmup} steps={steps}")
    t0 = time.perf_counter()
    for _ in range(warmup):
        runnable.untimed_step()
    synchronize(runnable.device)
    warmup_s = time.perf_counter() - t0
    gc.collect()
    runnable.meter.reset()
    times = runnable.timed_steps(steps)
    return Stats.of(times), warmup_s, time.perf_counter() - t0


def available_host_bytes() -> int:
    """MemAvailable from /proc/meminfo (8 GiB assumed where there is no such file)."""
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return 8 * 1024**3


# Fraction of available host memory a cell may be predicted to use before it is called OOM.
HOST_MEMORY_FRACTION = 0.8


def free_device_memory(device: torch.device) -> None:
    gc.collect()
    if device.type == "cuda":
        torch.cuda.synchronize(device)
        torch.cuda.empty_cache()


def one_line(err: BaseException) -> str:
    text = str(err).strip().splitlines()
    return f"{type(err).__name__}: {text[0] if text else ''}"[:300]


def run_cell(cell, device: torch.device, warmup: int = 1, steps: int = 10,
             peak_tflops: float | None = None) -> Result:
    """Build, run and measure one cell. Never raises for OOM or a failing cell: the result says.

    A UserError (a bad cell) propagates: it is the caller's mistake, not a measurement.
    """
    cell.validate()
    env = environment(device)
    result = Result(cell=cell.describe(), status=OK, warmup=warmup, env=env)
    ok, why = cell.availability(device)
    if not ok:
        result.status, result.error = SKIPPED, why
        return result
    if device.type == "cpu":
        need, have = cell.estimate_bytes(), available_host_bytes()
        if need > HOST_MEMORY_FRACTION * have:
            result.status = OOM
            result.error = (f"predicted {need / 2**30:.1f} GiB > {HOST_MEMORY_FRACTION:.0%} of "
                            f"{have / 2**30:.1f} GiB available; not allocated")
            return result
    runnable = None
    try:
        runnable = cell.build(device)
        stats, result.warmup_s, result.total_s = measure(runnable, warmup, steps)
        result.stats = stats
        result.peak_bytes = runnable.meter.peak()
        result.before_backward_bytes = runnable.meter.before_backward
    except torch.OutOfMemoryError as err:
        result.status, result.error = OOM, one_line(err)
    except UserError:
        raise
    except Exception as err:  # a failing cell must not lose the others' results
        result.status, result.error = FAILED, one_line(err)
    finally:
        if runnable is not None:
            runnable.release()
        del runnable
        free_device_memory(device)
    if result.stats is not None:
        result.flops = cell.flops()
        result.tflops = result.flops / result.stats.median / 1e12
        result.peak_tflops = peak_tflops or stated_peak(env, cell.math_kind())
        if result.peak_tflops:
            result.mfu = result.tflops / result.peak_tflops
    return result


def stated_peak(env: dict, kind: str) -> float | None:
    name = env.get("name", "")
    for (gpu, k), value in PEAK_TFLOPS.items():
        if gpu in name and k == kind:
            return value
    return None


_ENV_CACHE: dict = {}


def environment(device: torch.device) -> dict:
    """What a number depends on besides the code: device, driver, CUDA, torch, triton, TF32."""
    key = str(device)
    if key not in _ENV_CACHE:
        env = {"device": device.type, "torch": torch.__version__}
        try:
            import triton  # noqa: PLC0415

            env["triton"] = triton.__version__
        except ImportError:
            env["triton"] = None
        if device.type == "cuda":
            env["name"] = torch.cuda.get_device_name(device)
            env["cuda"] = torch.version.cuda
            env["driver"] = _nvidia_driver()
        else:
            env["name"] = _cpu_name()
            env["cuda"] = None
            env["driver"] = None
        _ENV_CACHE[key] = env
    env = dict(_ENV_CACHE[key])
    env["tf32"] = bool(torch.backends.cuda.matmul.allow_tf32)
    return env


def _nvidia_driver() -> str | None:
    try:
        out = subprocess.run(["nvidia-smi", "--query-gpu=driver_version", "--format=csv,noheader"],
                             capture_output=True, text=True, timeout=20)
        return out.stdout.strip().splitlines()[0] if out.returncode == 0 else None
    except (OSError, subprocess.SubprocessError, IndexError):
        return None


def cpu_model() -> str:
    """The processor's model name (/proc/cpuinfo), or what the platform module knows."""
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def _cpu_name() -> str:
    return f"{cpu_model()} x{os.cpu_count()}"


