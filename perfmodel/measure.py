"""How perfmodel times a workload: the protocol and the sampler, the one place that defines a
measurement (memory: perfmodel.memory; the CPU policy: perfmodel.cpu; the machine and its stack:
perfmodel.machine; FLOPs and peak rates: perfmodel.flops).

A *protocol* (``Protocol``) says how a cell is warmed up and sampled; ``open_cell`` builds a cell,
classifies it (OK / OOM / failed / n/a), warms it up and meters its memory; ``Runnable.sample``
takes one sample. The CLI (``run_cell``), the asv suite (benchmarks/common.py), the warm-up study
and the scripts all go through these, so one cell gives one number wherever it is asked for.

GPU work is timed with CUDA events and read only after synchronizing, so a time is the device's,
never a launch's. The CPU is timed with perf_counter around synchronous steps, on a fixed number
of threads (``cpu_threads``), and a sample that the operating system visibly interrupted is taken
again. Memory is the CUDA allocator's peak (reset for each measurement) on a GPU and the
process's peak RSS on the CPU. A cell that runs out of memory is a result (status OOM), never a
crash: on a GPU the error is caught and the memory released; on the CPU a cell that would not fit
is predicted from its sizes and never allocated, so the operating system never has to kill it.
"""
from __future__ import annotations

import gc
import math
import statistics
import time
from dataclasses import asdict, dataclass, field, replace
from typing import Any, Callable

import torch

from .cpu import (CPU_BUSY_SHARE, CPU_DISTURBED_SHARE, CPU_RETRIES, MachineBusy,
                  apply_thread_policy, run_queue_seconds)
from .errors import UserError
from .flops import stated_peak
from .machine import environment
from .memory import HOST_MEMORY_FRACTION, MemoryMeter, available_host_bytes, free_device_memory
from .names import (BACKLOG_SHARE, BUSY, FAILED, HOST_BOUND_SHARE, NA, OK, OOM,  # noqa: F401
                    WAIT_SHARE, host_bound, in_doubt, kept_free)  # (measure's names)


# What one sample means. Bump it whenever a change to this module changes what a number means
# (warm-up, bursts, clock, thread policy): the asv suite states the protocol it expects and
# files its time_ results under it, so numbers of two methods never share a graph line.
PROTOCOL_VERSION = 3

L2_FLUSH_BYTES = 256 * 1024 * 1024  # as triton.testing.do_bench: larger than any L2 cache
# torch.cuda._sleep counts clock cycles: seconds x this rate is at least that long on any GPU
# clocked at 2 GHz or less (H100 and H200 boost to 1.98 GHz)
HOLD_CLOCK_HZ = 2.0e9
# Runnable.free_step's hold: this many times the host's issue time (so the whole step is queued
# before the device starts it, even if issuing runs a little slower than it was measured), and
# at most this long (the longest H200 step, 2.7B fp32 train at ctx 1024, is 2.2 s)
HEAD_START_FACTOR = 1.2
HEAD_START_MAX_S = 4.0


@dataclass(frozen=True)
class Protocol:
    """How a cell is warmed up and sampled.

    A sample is the median step time over a *burst* of steps run back to back, long enough
    (``burst_s``) that a GPU has a queue and runs at its steady clock, as under do_bench; a
    single step that starts on an idle GPU waits on the host to launch each kernel, so a
    sub-millisecond step would be timed by launch latency. The median of a burst ignores the
    odd interrupted step. ``burst_s = 0`` times single steps (the warm-up study, whose point is
    the first steps).
    """

    warmup_steps: int = 1       # untimed steps before anything is metered
    warmup_s: float = 0.0       # ... and at least this long (clocks up, caches and tuners filled)
    burst_s: float = 0.0        # a sample covers at least this much step time (0: one step)
    min_burst: int = 1
    max_burst: int = 200
    samples: int = 10           # how many samples run_cell takes (asv chooses its own)
    meter_step: bool = True     # meter memory on one step before sampling (else over the samples)
    # GPU: a kernel holds the stream before each timed step while the host queues the step, so
    # the step is timed by the GPU, not by how soon the host (e.g. autograd's engine thread)
    # launches it: a sub-millisecond backward behind an untimed forward was otherwise timed
    # 1.3-1.6x do_bench's, and differently in each process (nvbench holds the stream too). The
    # hold lasts hold_factor x the host's time to issue one step (measured on every step),
    # within [hold_min_s, hold_max_s]: long enough to cover the launch, short enough that the
    # GPU is not left idle. A fixed 0.5 ms hold idled the GPU a third of the time behind a 1 ms
    # cuDNN forward, which then ran at 1970 MHz instead of 1880 and read 10% under do_bench.
    # A host-bound step (launch longer than hold_max_s) stays timed with its host, as it runs.
    hold_factor: float = 0.0    # 0: no hold
    hold_min_s: float = 20e-6
    hold_max_s: float = 1e-3

    @classmethod
    def for_device(cls, device: torch.device, samples: int = 10) -> "Protocol":
        if device.type == "cuda":
            return cls(warmup_steps=2, warmup_s=0.1, burst_s=0.02, samples=samples,
                       hold_factor=1.5)
        return cls(warmup_steps=1, warmup_s=0.02, burst_s=0.01, samples=samples)

    @classmethod
    def warmup_study(cls, warmup: int, samples: int = 10) -> "Protocol":
        """The seeds' warm-up study: exactly ``warmup`` untimed steps, then single steps."""
        return cls(warmup_steps=warmup, warmup_s=0.0, burst_s=0.0, samples=samples,
                   meter_step=False)


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


class DeviceClock:
    """Seconds of measured device work, summed: a clock that advances only inside samples.

    asv takes it as a benchmark's ``timer``, so asv's samples are exactly the samples this module
    takes (``Runnable.sample``), not host time around launches or untimed preparation.
    """

    def __init__(self):
        self.total = 0.0

    def __call__(self) -> float:
        return self.total


DEVICE_CLOCK = DeviceClock()


class Marks:
    """Points that a step records inside itself, so that one timed step also times its parts.

    A part is the span between two points of a step: 0 is the step's start, 1..k its marks in the
    order the step records them, k+1 its end (the model's train step marks before its backward,
    before its optimizer and after it: backward = 1 to 2, forward+backward = 0 to 2, train = 0 to
    4; perfmodel.workloads says so). Each mark is read on the device (a CUDA event, read after the
    synchronize that ends a burst; on a CPU the host is the device) and on the host's clock, so
    a part has a device time and an issue time like a whole step. Nothing else is added to the
    step: on the H200 every preset's device-bound backward, forward+backward and train step timed
    this way agreed with their own cells within 0.5% (notes/gpu-box.md, the split train step)."""

    def __init__(self, device: torch.device):
        self.device = device
        self.points: list[tuple[Any, float]] = []  # (device mark, host seconds) in order

    def mark(self) -> None:
        host = time.perf_counter()
        if self.device.type == "cuda":
            event = torch.cuda.Event(enable_timing=True)
            event.record()
            self.points.append((event, host))
        else:
            self.points.append((host, host))

    def take(self, steps: int) -> list[list[tuple[Any, float]]]:
        """The marks of the last ``steps`` steps, one list per step (all marks taken so far)."""
        points, self.points = self.points, []
        if not steps or len(points) % steps:
            raise RuntimeError(f"{steps} steps recorded {len(points)} marks, not as many each")
        k = len(points) // steps
        return [points[i * k:(i + 1) * k] for i in range(steps)]


class Runnable:
    """A built workload: ``prepare()`` (untimed: e.g. the forward whose backward is timed) and
    ``step(state)`` (timed). Built by perfmodel.workloads; timed only here."""

    def __init__(self, device: torch.device, step: Callable[[Any], None],
                 prepare: Callable[[], Any] | None = None, meter: MemoryMeter | None = None,
                 flush_l2: bool = True, marks: Marks | None = None,
                 parts: dict[str, tuple[int, int]] | None = None, report: str | None = None):
        self.device = device
        # the step's parts (name -> (from point, to point), Marks), and the one the step's times
        # stand for (``report``): timed_steps, sample and free_step give that part's seconds,
        # and ``parts_*`` every part's, from the same steps
        self.marks, self.parts, self.report = marks, parts, report
        if (marks is None) != (parts is None) or (parts is not None and report not in parts):
            raise ValueError("a step's parts need its marks and a reported part among them")
        self.whole: float | None = None           # median whole step of the last timed_steps
        self.issued: float | None = None          # median issue time of the reported part, same
        self.parts_times: dict[str, list[float]] = {}   # each part's seconds, last timed_steps
        self.parts_issue: dict[str, list[float]] = {}   # each part's issue seconds, same
        self.parts_sample: dict[str, float] = {}  # each part's median over the last sample's burst
        self.parts_first: dict[str, tuple[float, float | None]] = {}  # ``first``, each part
        self.parts_free: dict[str, float] = {}    # each part's seconds in the last free step
        self.free_took = True                     # whether the last free step's head start took
        self.step = step
        self.prepare = prepare or (lambda: None)
        self.meter = meter or MemoryMeter(device)
        self.protocol = Protocol.for_device(device)
        self.last: float | None = None    # seconds of the last step timed: sizes the next burst
        self.launch: float | None = None  # host seconds to issue the last step: sizes the hold
        # (device seconds, host issue seconds) of the first step of the last burst: it began on an
        # idle device behind the hold, as a metered step does (a history cell's step and issue
        # times; later steps of a burst may wait on a full launch queue)
        self.first: tuple[float, float | None] | None = None
        # seconds the device was still busy after the host had issued the last burst's last step
        # (the final synchronize's wait): a small share of a step means the host paced the step
        # to its end (names.host_bound). The issue time alone cannot tell: a long step with a
        # backward fills the launch queue and blocks the host, so its issue lasts about as long
        # as the step although the device never waits.
        self.backlog: float | None = None
        self.samples_taken = 0
        self.disturbed = 0                # samples still interrupted after their retries
        self._flush = None
        if flush_l2 and device.type == "cuda":
            self._flush = torch.empty(L2_FLUSH_BYTES, dtype=torch.int8, device=device)
            self.meter.offset = L2_FLUSH_BYTES

    def _prepare(self):
        state = self.prepare()
        if self._flush is not None:
            self._flush.zero_()  # a cold L2 for every step, as do_bench does
        return state

    def timed_steps(self, n: int) -> list[float]:
        """Seconds of each of n steps run back to back (GPU: queued, read after one sync); with
        parts, the reported part's (every part's in ``parts_times``)."""
        if self.device.type == "cuda":
            bounds, launches = [], []
            for _ in range(n):
                bound, launch = self._queue_step(self.hold_seconds())
                bounds.append(bound)
                launches.append(launch)
            self.launch = statistics.median(launches)
            t0 = time.perf_counter()
            torch.cuda.synchronize(self.device)
            self.backlog = time.perf_counter() - t0
            times = [start.elapsed_time(end) / 1e3 for start, end, _ in bounds]
        else:
            times, launches, bounds = [], None, []
            for _ in range(n):
                state = self._prepare()
                t0 = time.perf_counter()
                self.step(state)
                t1 = time.perf_counter()
                times.append(t1 - t0)
                bounds.append((t0, t1, t0))
                del state
        self.whole = statistics.median(times)
        issues = launches
        if self.marks is not None:
            self.parts_times, self.parts_issue = self._parts(times, launches, bounds)
            self.parts_first = {name: (t[0], self.parts_issue[name][0] if self.parts_issue
                                       else None) for name, t in self.parts_times.items()}
            times, issues = self.parts_times[self.report], self.parts_issue.get(self.report)
        self.issued = statistics.median(issues) if issues else None
        self.first = (times[0], issues[0] if issues else None)
        return times

    def _parts(self, times, launches, bounds) -> tuple[dict, dict]:
        """Each part's seconds of each step, and on a GPU each part's issue seconds (on a CPU
        none: the host is the device). ``bounds``: each step's (start, end, host start), device
        marks (events on a GPU); ``launches``: the host's seconds to issue each step."""
        gpu = self.device.type == "cuda"
        seconds = {name: [] for name in self.parts}
        issue = {name: [] for name in self.parts} if gpu else {}
        for i, inner in enumerate(self.marks.take(len(times))):
            start, end, host0 = bounds[i]
            if gpu:  # device seconds from the step's start; the host's from its issue's start
                at = ([0.0] + [start.elapsed_time(e) / 1e3 for e, _ in inner]
                      + [start.elapsed_time(end) / 1e3])
                host = [0.0] + [h - host0 for _, h in inner] + [launches[i]]
            else:
                at = [0.0] + [h - start for _, h in inner] + [end - start]
            for name, (a, b) in self.parts.items():
                seconds[name].append(at[b] - at[a])
                if gpu:
                    issue[name].append(host[b] - host[a])
        return seconds, issue

    def _queue_step(self, hold: float):
        """Queue one GPU step behind a hold of ``hold`` seconds: ((start, end) events and the
        host's clock when it began issuing, the host's seconds to issue it)."""
        state = self._prepare()
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        if hold:
            torch.cuda._sleep(int(hold * HOLD_CLOCK_HZ))  # the stream waits, the host queues
        start.record()
        t0 = time.perf_counter()
        self.step(state)
        launch = time.perf_counter() - t0
        end.record()
        del state
        return (start, end, t0), launch

    def hold_seconds(self) -> float:
        """How long the stream is held before the next timed step (0: the protocol holds none)."""
        p = self.protocol
        if p.hold_factor <= 0:
            return 0.0
        if self.launch is None:
            return p.hold_max_s
        return min(p.hold_max_s, max(p.hold_min_s, p.hold_factor * self.launch))

    def burst_size(self) -> int:
        p = self.protocol
        if p.burst_s <= 0:
            return 1
        # a burst of whole steps: with parts, sized by the whole step, not the reported part
        last = self.whole if self.marks is not None and self.whole is not None else self.last
        if last is None:
            return max(1, p.min_burst)
        return max(p.min_burst, min(p.max_burst, math.ceil(p.burst_s / max(last, 1e-7))))

    def _burst(self) -> tuple[float, bool]:
        """(median step seconds, whether the CPU was taken away) of one burst."""
        n = self.burst_size()
        wall0, queue0 = time.perf_counter(), run_queue_seconds()
        times = self.timed_steps(n)
        wall, queue1 = time.perf_counter() - wall0, run_queue_seconds()
        disturbed = (self.device.type == "cpu" and queue0 is not None and queue1 is not None
                     and queue1 - queue0 > CPU_DISTURBED_SHARE * wall + 1e-3)
        self.parts_sample = {name: statistics.median(v) for name, v in self.parts_times.items()}
        return statistics.median(times), disturbed

    def sample(self) -> float:
        """One sample of the protocol: the median step of a burst, in seconds, also added to
        DEVICE_CLOCK (an asv time_ method's body is this call).

        On the CPU a burst that lost its core to another process for more than
        CPU_DISTURBED_SHARE of its time is taken again; when more than CPU_BUSY_SHARE of the
        samples stay disturbed, MachineBusy says so instead of a number.
        """
        seconds, disturbed = self._burst()
        tries = 0
        while disturbed and tries < CPU_RETRIES:
            seconds, disturbed = self._burst()
            tries += 1
        self.samples_taken += 1
        if disturbed:
            self.disturbed += 1
            if CPU_BUSY_SHARE < 1 and self.disturbed > max(1, CPU_BUSY_SHARE * self.samples_taken):
                raise MachineBusy(
                    f"machine too busy to measure: {self.disturbed} of {self.samples_taken} "
                    f"samples waited over {CPU_DISTURBED_SHARE:.0%} of their time for a CPU "
                    f"that other processes held, even after {CPU_RETRIES} retries")
        self.last = seconds
        DEVICE_CLOCK.total += seconds
        return seconds

    def free_step(self, issue_s: float) -> float:
        """Device seconds of one step that the host had issued before the device started it:
        the stream is held for HEAD_START_FACTOR x ``issue_s`` (at most HEAD_START_MAX_S) while
        the host queues the step, so the device runs it without waiting on the host. A step
        that runs notably faster this way than as sampled was paced by its host (names.host_bound).
        ``free_took`` says whether the head start took: False when the device had reached the
        step before the host finished queuing it (a step of more launches than the launch queue
        holds blocks its host until the device makes room), so the device may still have waited
        on the host (names.kept_free: then the time can show a host-bound step, not clear one).
        GPU only; costs one step and the hold, so the suite takes it only for a step that its
        issue time and backlog leave in doubt. With parts, the hold covers the whole step's
        issue and every part's seconds go to ``parts_free``."""
        if self.marks is not None and self.launch is not None:
            issue_s = max(issue_s, self.launch)  # the whole step is queued, not only the part
        hold = min(HEAD_START_MAX_S, max(self.protocol.hold_min_s, HEAD_START_FACTOR * issue_s))
        bound, launch = self._queue_step(hold)
        self.free_took = not bound[0].query()  # its start event not yet passed: still held
        torch.cuda.synchronize(self.device)
        whole = bound[0].elapsed_time(bound[1]) / 1e3
        if self.marks is None:
            return whole
        seconds, _ = self._parts([whole], [launch], [bound])
        self.parts_free = {name: v[0] for name, v in seconds.items()}
        return self.parts_free[self.report]

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
    protocol: dict = field(default_factory=dict)
    env: dict = field(default_factory=dict)

    def to_dict(self) -> dict:
        return asdict(self)


def one_line(err: BaseException) -> str:
    text = str(err).strip().splitlines()
    return f"{type(err).__name__}: {text[0] if text else ''}"[:300]


@dataclass
class Opened:
    """A cell after ``open_cell``: its status and memory figures, and (when OK) the warmed-up
    Runnable that ``sample()`` times."""

    status: str
    error: str = ""
    runnable: Runnable | None = None
    warmup_steps: int = 0
    warmup_s: float | None = None
    peak_bytes: int | None = None
    before_backward_bytes: int | None = None
    # the metered step: its device seconds and the host's seconds to issue it. A step whose host
    # takes about as long to issue it as the device takes to run it is host-bound: its time
    # measures the host (Python, launches), not the model (``host_bound``).
    step_s: float | None = None
    issue_s: float | None = None
    backlog_s: float | None = None  # the device's work left when the host had issued the step
    free_s: float | None = None     # the step's device time given a head start (free_step)
    # where opening the cell went, in wall seconds: building it, its first step (compilation and
    # autotuning happen there), the rest of the warm-up, the metered step (the suite's cost log)
    costs: dict = field(default_factory=dict)


def open_cell(cell, device: torch.device, protocol: Protocol | None = None) -> Opened:
    """Build a cell, warm it up and meter one step's memory; classify what happened.

    The one classification of a cell: n/a (this commit or device cannot run it), OOM (predicted
    on the CPU, caught on a GPU), failed (any other error, one line), or OK. Never raises for
    those: a failing cell must not lose the others' results. A UserError (a bad cell) propagates.
    """
    cell.validate()
    protocol = protocol or Protocol.for_device(device)
    apply_thread_policy(device)
    ok, why = cell.availability(device)
    if not ok:
        return Opened(NA, why)
    if device.type == "cpu":
        need, have = cell.estimate_bytes(), available_host_bytes()
        if need > HOST_MEMORY_FRACTION * have:
            return Opened(OOM, f"predicted {need / 2**30:.1f} GiB > {HOST_MEMORY_FRACTION:.0%} "
                               f"of {have / 2**30:.1f} GiB available; not allocated")
    runnable = None
    costs: dict = {}
    try:
        t0 = time.perf_counter()
        runnable = cell.build(device)
        runnable.protocol = protocol
        opened = Opened(OK, runnable=runnable, costs=costs)
        costs["build_s"] = time.perf_counter() - t0
        t0 = time.perf_counter()
        steps = 0
        # synchronized steps, so the warm-up's length is the device's (never a launch queue);
        # each timed, so that the first sample's burst is sized by a step alike (``last``) even
        # when no metered step follows (a history cell reads its figures over its samples)
        while steps < protocol.warmup_steps or time.perf_counter() - t0 < protocol.warmup_s:
            runnable.last = runnable.timed_steps(1)[0]
            steps += 1
            if steps == 1:
                costs["first_step_s"] = time.perf_counter() - t0
        opened.warmup_steps, opened.warmup_s = steps, time.perf_counter() - t0
        costs["warmup_s"] = opened.warmup_s
        gc.collect()
        runnable.meter.reset()
        if protocol.meter_step:  # memory: one more step, alike after warm-up, from a reset peak
            t0 = time.perf_counter()
            runnable.last = opened.step_s = runnable.timed_steps(1)[0]
            opened.issue_s, opened.backlog_s = runnable.issued, runnable.backlog
            if in_doubt(opened.step_s, opened.issue_s, opened.backlog_s):
                opened.free_s = kept_free(opened.step_s, runnable.free_step(opened.issue_s),
                                          runnable.free_took)
            opened.peak_bytes = runnable.meter.peak()
            opened.before_backward_bytes = runnable.meter.before_backward
            costs["meter_s"] = time.perf_counter() - t0
        return opened
    except torch.OutOfMemoryError as err:
        status, error = OOM, one_line(err)
    except UserError:
        raise
    except Exception as err:  # a failing cell must not lose the others' results
        status, error = FAILED, one_line(err)
    if runnable is not None:
        runnable.release()
    del runnable
    free_device_memory(device)
    return Opened(status, error)


def run_cell(cell, device: torch.device, warmup: int | None = None, steps: int | None = None,
             peak_tflops: float | None = None, protocol: Protocol | None = None) -> Result:
    """Open a cell and take ``steps`` samples of it: the CLI's, the scripts' and the warm-up
    study's measurement (the asv suite takes its samples one by one from ``open_cell``).

    ``warmup`` given alone means the warm-up study's protocol (exactly that many untimed steps,
    then single steps); by default a cell is measured by the device's protocol.
    """
    if protocol is None:
        protocol = (Protocol.for_device(device) if warmup is None
                    else Protocol.warmup_study(warmup))
    if steps is not None:
        protocol = replace(protocol, samples=steps)
    if protocol.warmup_steps < 0 or protocol.samples < 1:
        raise UserError(f"need warmup >= 0 and steps >= 1, got warmup={protocol.warmup_steps} "
                        f"steps={protocol.samples}")
    env = environment(device)
    t0 = time.perf_counter()
    opened = open_cell(cell, device, protocol)
    result = Result(cell=cell.describe(), status=opened.status, error=opened.error,
                    warmup=opened.warmup_steps, warmup_s=opened.warmup_s,
                    peak_bytes=opened.peak_bytes, before_backward_bytes=opened.before_backward_bytes,
                    protocol=dict(asdict(protocol), version=PROTOCOL_VERSION), env=env)
    runnable = opened.runnable
    if runnable is None:
        return result
    try:
        times = [runnable.sample() for _ in range(protocol.samples)]
        result.stats = Stats.of(times)
        if not protocol.meter_step:
            result.peak_bytes = runnable.meter.peak()
            result.before_backward_bytes = runnable.meter.before_backward
        result.total_s = time.perf_counter() - t0
    except MachineBusy as err:
        result.status, result.error = BUSY, str(err)
    except torch.OutOfMemoryError as err:
        result.status, result.error = OOM, one_line(err)
    except Exception as err:  # noqa: BLE001 (a failing cell is a result)
        result.status, result.error = FAILED, one_line(err)
    finally:
        runnable.release()
        del runnable, opened
        free_device_memory(device)
    if result.stats is not None:
        result.flops = cell.flops()
        result.tflops = result.flops / result.stats.median / 1e12
        result.peak_tflops = peak_tflops or stated_peak(env, cell.math_kind())
        if result.peak_tflops:
            result.mfu = result.tflops / result.peak_tflops
    return result


