"""Shared by the asv suite: a compat shim over perfmodel, cell handles, sampling, a cost log.

Which cells run where is benchmarks/tiers.py's.

Nothing here times or defines work: cells are perfmodel.workloads cells, opened, classified and
sampled by perfmodel.measure (``open_cell``; ``Runnable.sample`` adds to ``DEVICE_CLOCK``, the
suite's asv ``timer``), by the protocol that measure.py defines for the device.

perfmodel is used only through ``_pm`` (an import that may fail), so the suite in the working
tree runs against any commit: what a commit lacks (module, class, field, preset, implementation)
raises NotImplementedError, which asv records as skipped (n/a), never as failed.

torch is imported here, at module level, on purpose: asv's forkserver imports the suite once and
forks one process per (benchmark, parameters, round), so torch's ~1.5 s import is paid once per
commit (and so are the lazy imports ``_preimport`` takes ahead). Importing torch does not initialize CUDA, and nothing at import time may (no
``torch.cuda.is_available()`` here): a CUDA context must never exist in the forking server.
"""
from __future__ import annotations

import gc
import hashlib
import importlib
import json
import os
import statistics
import sys
import time

import torch

from . import shared_dir, tiers

try:  # raising it inside a benchmark body records NaN (skipped); it is a NotImplementedError
    from asv_runner.benchmarks.mark import SkipNotImplemented
except ImportError:  # pragma: no cover (asv_runner is always there when asv runs the suite)
    SkipNotImplemented = NotImplementedError

NAN = float("nan")


_ASV_IMPORT_ONLY = ("discover", "setup_cache")  # asv's commands that run no benchmark


def _asv_command() -> str | None:
    """The command of asv's benchmark script this process runs (``python .../asv/benchmark.py
    COMMAND ...``: discover, setup_cache, run, run_server; a forked child keeps its server's),
    None outside asv."""
    argv = sys.argv
    if len(argv) > 1 and os.path.basename(str(argv[0])) == "benchmark.py":
        return str(argv[1])
    return None


def _preimport() -> None:
    """Import, once in asv's forkserver, what every benchmark process would otherwise import by
    itself, measured on the GPU boxes (notes/gpu-box.md):

    - torch._dynamo (4.7 s there): AdamW's first step imports it (every train-step cell), and so
      does torch.fx's symbolic-shapes module with sympy, which the first ``backward(grad)`` with
      an explicit gradient imports (every attention backward cell: its first step took 2-3 s in
      every process there; the same backward without that import took 0.01 s);
    - Inductor's compiler (compile_fx, graph, the Triton heuristics: 3.8 + 2.5 + 0.9 s in a fresh
      interpreter on the H100 box), which every compiled cell imports on its first call;
    - this commit's perfmodel, with Triton.

    A CUDA context, or even the driver's answer to "is CUDA there?", must never exist in the
    forking server: after it no forked child can use CUDA ("Cannot re-initialize CUDA in forked
    subprocess"). Importing Inductor asks ``torch.cuda.is_available()``, which by default asks
    the driver; with ``PYTORCH_NVML_BASED_CUDA_CHECK=1`` torch asks NVML instead, which leaves
    the driver alone, and every child then ran a CUDA op (``tools/fork_safe.py --nvml``, H100,
    torch 2.11). So Inductor is imported only under that setting, which is made the default
    here and which the children inherit. ``PERFMODEL_ASV_PREIMPORT_INDUCTOR=0`` leaves Inductor
    out, ``PERFMODEL_ASV_PREIMPORT=0`` all of it (to compare costs). A module this commit lacks is
    skipped: the benchmark process then says n/a as before.

    Only a process whose children run benchmarks gains from it: asv's discovery and its
    setup_cache process import the suite too, at the start of every ``asv run`` (and of each
    commit's setup_cache), and run no cell, so they leave it out (``_ASV_IMPORT_ONLY``). On the
    H100 box an asv run's start, those two and the forkserver each importing the suite, took
    32-40 s between one chunk's last process and the next one's first (2026-12-07)."""
    if (os.environ.get("PERFMODEL_ASV_PREIMPORT", "1") == "0"
            or _asv_command() in _ASV_IMPORT_ONLY):
        return
    names = ["torch._dynamo", "perfmodel.workloads", "perfmodel.flash_triton",
             "perfmodel.flash_torch"]
    if os.environ.get("PERFMODEL_ASV_PREIMPORT_INDUCTOR", "1") != "0":
        os.environ.setdefault("PYTORCH_NVML_BASED_CUDA_CHECK", "1")
        if os.environ["PYTORCH_NVML_BASED_CUDA_CHECK"] == "1":  # never with the driver's check
            names += ["torch._inductor.compile_fx", "torch._inductor.graph",
                      "torch._inductor.runtime.triton_heuristics"]
    for name in names:
        try:
            importlib.import_module(name)
        except Exception:  # noqa: BLE001 (an older commit, or no triton: the child decides)
            pass
    _prefetch_cache_keys()
    # Everything imported so far is permanent: frozen, a forked child's garbage collections
    # (open_cell runs one before metering) scan only the child's own objects. Unfrozen, with
    # torch._dynamo imported, each one took 0.3 s on the 2-core CPU, in every timed process.
    gc.freeze()


# (module, function): the compile caches' version keys, each a hash of a package's files,
# computed once per process and kept in memory (functools caches), taken in the forkserver so
# that its children inherit them instead of hashing again
CACHE_KEYS = (("triton.runtime.cache", "triton_key"),           # libtriton.so, 415 MB in 3.6
              ("torch._inductor.codecache", "torch_key"),       # torch's own Python files
              ("torch._inductor.codecache", "triton_key"))      # Inductor's wrapper of the first


def _prefetch_cache_keys() -> None:
    """Compute, in asv's forkserver, the version keys every compiling child would compute.

    Triton keys its on-disk kernel cache and its autotuning records by ``triton_key()``, a
    SHA-256 of its compiler sources and of libtriton.so (415 MB in Triton 3.6); Inductor keys
    its FX-graph and AOTAutograd caches by ``torch_key()``, a hash of torch's Python files.
    Each is computed on a process's first compile or cache lookup and kept for the process's
    life, so every flash and compiled cell's process paid both again in its first step, cache
    hit or not (0.9 + 0.5 s in a fresh interpreter on the 2-core CPU, torch 2.13, Triton 3.9;
    a forked child's first compiled call there was 0.5 s faster without them). Computed here,
    the forked children inherit the answers. Neither reads anything but files (no CUDA). A
    missing one (an older commit, no Triton, another version's names) is skipped: the child
    computes it as before. Only with Inductor's compiler imported (``_preimport``'s settings)."""
    if "torch._inductor.compile_fx" not in sys.modules:
        return
    for module, attr in CACHE_KEYS:
        try:
            getattr(importlib.import_module(module), attr)()
        except Exception:  # noqa: BLE001 (the child decides, as without it)
            pass


_preimport()

# The measurement protocol these benchmarks ask for (perfmodel.measure.PROTOCOL_VERSION). A commit
# whose measure.py implements another one is n/a here, and every time_ result is filed under
# this version (asv's benchmark ``version``), so numbers taken by two methods never share a graph
# line: change it together with measure.PROTOCOL_VERSION (tests/test_asv_suite.py checks).
PROTOCOL = 3
TIME_VERSION = f"perfmodel-protocol-{PROTOCOL}"
# Status and memory figures: a cell's classification and its allocator peak over one step after
# warm-up, the same under protocols 0 to 3 (the shipped H100 history keeps them).
FACTS_VERSION = "perfmodel-facts-1"

SIDE_DIR = "perfmodel-asv-cells"  # in asv's setup_cache directory: shared by one commit's run
DEVICE_FILE = os.path.join(SIDE_DIR, "device")


def device_type() -> str:
    """'cuda' or 'cpu': called only inside benchmark processes (after the fork).

    Asking the driver (``torch.cuda.is_available()``) initializes it: about 0.3 s per process
    on an H100 box, where a commit's run starts thousands of processes and most of them only
    read a side file or say n/a. The first process of a commit's run asks and leaves the
    answer in the run's shared working directory; the others read it.
    """
    forced = os.environ.get("PERFMODEL_ASV_DEVICE")
    if forced in ("cpu", "cuda"):
        return forced
    try:
        with open(DEVICE_FILE) as f:
            known = f.read()
        if known in ("cpu", "cuda"):
            return known
    except OSError:
        pass
    found = "cuda" if torch.cuda.is_available() else "cpu"
    _write_side_file(DEVICE_FILE, found)
    return found


def side_path(kind: str, fields: dict, device: str) -> str:
    """Where a cell's side file lives (status and figures shared by one commit's processes)."""
    key = json.dumps([kind, sorted(fields.items()), device], default=str)
    return os.path.join(SIDE_DIR, hashlib.sha1(key.encode()).hexdigest()[:16] + ".json")


def _read_side_file(path: str) -> dict | None:
    """A cell's side file, or None when there is none yet (or it cannot be read)."""
    try:
        with open(path) as f:
            return json.load(f)
    except (OSError, ValueError):
        return None


def _write_side_file(path: str, text: str) -> None:
    """Atomically (several processes may write the same file); a failure only costs time."""
    try:
        os.makedirs(os.path.dirname(path), exist_ok=True)
        tmp = f"{path}.{os.getpid()}"
        with open(tmp, "w") as f:
            f.write(text)
        os.replace(tmp, path)
    except OSError:
        pass


def _na(why: str):
    raise NotImplementedError(why)


# ---------------------------------------------------------------- compat shim over perfmodel

def _pm(module: str):
    try:
        return importlib.import_module(f"perfmodel.{module}")
    except ImportError as err:
        raise NotImplementedError(f"perfmodel.{module} is not available at this commit: {err}") \
            from None


def _api(module: str, name: str):
    obj = getattr(_pm(module), name, None)
    if obj is None:
        raise NotImplementedError(f"perfmodel.{module}.{name} does not exist at this commit")
    return obj


def modes() -> dict:
    """time_<suffix> -> the cell's mode (perfmodel.names.MODES, said once there)."""
    return _pm("names").MODES


def make_cell(kind: str, **fields):
    """A perfmodel cell, or NotImplementedError if this commit cannot express it."""
    import dataclasses  # noqa: PLC0415

    cls = _api("workloads", kind)
    names = {f.name for f in dataclasses.fields(cls)} if dataclasses.is_dataclass(cls) else None
    if names is not None:
        missing = [k for k in fields if k not in names]
        if missing:
            raise NotImplementedError(f"{kind} has no field {missing} at this commit")
    cell = cls(**fields)
    user_error = getattr(_pm("errors"), "UserError", ValueError)
    try:
        cell.validate()  # an unknown preset/implementation at this commit: n/a
    except user_error as err:
        raise NotImplementedError(str(err)) from None
    return cell


class _ReplayClock:
    """Seconds of recorded samples handed to asv so far (a grouped cell's samples, measured by
    the process that measured its group, replayed one per asv sample)."""

    total = 0.0


REPLAY_CLOCK = _ReplayClock()


def device_clock() -> float:
    """asv ``timer``: perfmodel's DEVICE_CLOCK (seconds of timed device work so far), plus the
    recorded samples replayed in this process."""
    clock = getattr(sys.modules.get("perfmodel.measure"), "DEVICE_CLOCK", None)
    return (clock() if clock is not None else 0.0) + REPLAY_CLOCK.total


# ---------------------------------------------------------------- cell handles

_HANDLES: dict = {}


class _NotRunnable:
    def __init__(self, why):
        self.why = why

    def sample(self):
        raise SkipNotImplemented(self.why)


def _measure():
    """perfmodel.measure at this commit, if it takes samples by this suite's protocol."""
    measure = _pm("measure")
    version = getattr(measure, "PROTOCOL_VERSION", 0)
    if version != PROTOCOL:
        raise NotImplementedError(f"perfmodel.measure at this commit implements measurement "
                                  f"protocol {version}; this suite files protocol {PROTOCOL}")
    return measure


class CellHandle:
    """One cell in this benchmark process: opened on first use, reused by every asv sample.

    Opening is perfmodel.measure.open_cell (build, classify, warm up, meter one step): the
    status (OK / OOM / failed) and memory figures it finds are also written to a small JSON
    file in the working directory (asv's setup_cache directory, shared by the benchmarks of one
    commit), so a track_ benchmark of the same cell reads them instead of opening it again.
    """

    def __init__(self, kind: str, fields: dict, device: str, warmup: int | None = None):
        self.kind, self.fields, self.device = kind, fields, torch.device(device)
        self.warmup = warmup  # None: the device's protocol; else the warm-up study's
        self.info: dict | None = None
        self._runnable = None
        self.costs: dict = {}  # wall seconds of this process's work on the cell (cost log)
        self.path = side_path(kind, fields if warmup is None else dict(fields, _warmup=warmup),
                              device)
        self.group: Group | None = None   # set by Group: measured with its siblings, replayed
        self.point: list | None = None    # another grid point's asv params, in a span (cost log)
        self.replayed = 0                 # recorded samples handed to asv so far
        self.taken: list[float] = []      # this process's own samples, in order (round log)

    # -- status and memory, from the side file when a sibling benchmark already ran the cell
    def facts(self) -> dict:
        if self.info is None:
            self.info = _read_side_file(self.path)
        if self.info is None:
            if self.group is not None:
                self.group.record()
                self.info = _read_side_file(self.path)
                if self.info is None:
                    raise SkipNotImplemented(f"{self.label}: its group's record could not be "
                                             "written or read")
            else:
                self.prepare()
        return self.info

    def prepare(self):
        if self.info is not None and (self._runnable is not None or self.info["status"] != _pm("names").OK):
            return
        try:
            self._open()
        except SkipNotImplemented:
            raise
        except NotImplementedError as err:  # in a benchmark body only this subclass means n/a
            raise SkipNotImplemented(str(err)) from None

    def _open(self, history: bool = False):
        """Open the cell (``history``: by the history protocol, tiers.HISTORY_OPEN: its memory
        and step figures are then read over its samples, ``Group._record_one``)."""
        measure = _measure()
        cell = make_cell(self.kind, **self.fields)
        protocol = None if self.warmup is None else measure.Protocol.warmup_study(self.warmup)
        if history and protocol is None:
            protocol = _history_protocol(measure, self.device)
        if self.device.type == "cuda" and not torch.cuda.is_initialized():
            t0 = time.perf_counter()  # the driver's start, paid once per process
            torch.cuda.init()
            self.costs["cuda_init_s"] = time.perf_counter() - t0
        opened = measure.open_cell(cell, self.device, protocol)
        self.costs.update(getattr(opened, "costs", {}))
        if opened.status == _pm("names").NA:
            raise NotImplementedError(opened.error)
        self._runnable = opened.runnable
        info = {"status": opened.status, "error": opened.error, "peak_bytes": opened.peak_bytes,
                "before_backward_bytes": opened.before_backward_bytes,
                "step_s": getattr(opened, "step_s", None), "issue_s": getattr(opened, "issue_s", None),
                "backlog_s": getattr(opened, "backlog_s", None), "free_s": getattr(opened, "free_s", None)}
        if opened.status != _pm("names").OK:
            print(f"perfmodel: {self.label}: {opened.status}: {opened.error}", file=sys.stderr)
        self.info = info
        _write_side_file(self.path, json.dumps(info))

    # -- what benchmark bodies call
    @property
    def run(self):
        """The opened Runnable (``.sample()``), or a stand-in that skips (NaN) if not OK."""
        self.prepare()
        if self._runnable is None:
            return _NotRunnable(f"{self.info['status']}: {self.info['error']}")
        return self._runnable

    def sample(self) -> None:
        """One asv sample of the cell; a machine too busy to measure is n/a, and says so."""
        if self.group is not None:
            self._replay()
            return
        runnable = self.run  # opens the cell on first use (its own costs are counted there)
        t0 = time.perf_counter()
        try:
            self.taken.append(runnable.sample())
        except _pm("measure").MachineBusy as err:
            print(f"perfmodel: {self.label}: {err}", file=sys.stderr)
            raise SkipNotImplemented(str(err)) from None
        except NotImplementedError:  # n/a, or not OK (_NotRunnable): said already
            raise
        except Exception as err:  # noqa: BLE001 (OOM or failed, never an asv failure: see
            self._runnable = None  # notes/protocol.md; its track_status_ process reads which)
            runnable.release()
            raise SkipNotImplemented(Group._failed_sampling([self], err)) from None
        finally:
            self.costs["samples"] = self.costs.get("samples", 0) + 1
            self.costs["sampling_s"] = self.costs.get("sampling_s", 0.0) + time.perf_counter() - t0

    def _replay(self) -> None:
        """The next of the samples this cell's group recorded for it (asv's timer reads them
        through REPLAY_CLOCK). A cell that was not OK, or that the machine was too busy to
        measure, is n/a with the reason, as when measured in its own process."""
        facts = self.facts()
        record = self.group.samples(self)
        if facts["status"] != _pm("names").OK or not record["samples"]:
            raise SkipNotImplemented(record.get("skip") or
                                     f"{facts['status']}: {facts.get('error')}")
        if self.replayed >= len(record["samples"]):
            raise SkipNotImplemented(f"{self.label}: asv asked for more samples than were "
                                     f"recorded ({len(record['samples'])})")
        REPLAY_CLOCK.total += record["samples"][self.replayed]
        self.replayed += 1

    @property
    def label(self) -> str:
        warm = "" if self.warmup is None else f" warmup {self.warmup}"
        return f"{self.kind} {self.fields}{warm}"

    def status(self) -> float:
        self.costs["read"] = "status"
        return _pm("names").CODES.get(self.facts()["status"], NAN)

    def issue_seconds(self) -> float:
        """The host's seconds to issue one step of the cell (its metered step), tracked beside
        the step's device time so the report can mark a host-bound cell. GPU only: on a CPU the
        host is the device."""
        return self._host_figure("issue_s", "issue time")

    def backlog_seconds(self) -> float:
        """The device's seconds of work left once the host had issued that step (or its burst):
        with the issue time, what tells a host-bound step (perfmodel.names.host_bound)."""
        return self._host_figure("backlog_s", "backlog")

    def free_seconds(self) -> float:
        """The step's device seconds when the host had queued all of it first, taken only for a
        step that its issue time and backlog leave in doubt (perfmodel.names.in_doubt)."""
        return self._host_figure("free_s", "free step time")

    def _host_figure(self, key: str, what: str) -> float:
        self.costs["read"] = key
        if self.device.type != "cuda":
            raise SkipNotImplemented(f"the {what} is tracked on a GPU")
        facts = self.facts()
        value = facts.get(key)
        if facts["status"] != _pm("names").OK or value is None:
            raise SkipNotImplemented(f"no {what}: status {facts['status']}")
        return float(value)

    def bytes(self, key: str, gpu_only: bool = False) -> float:
        """A memory figure of the cell. On the CPU a figure is the process's resident set,
        which depends on the allocator's history as much as on the cell (the same cell's peak
        moved 578-716 MB between processes): the suite tracks memory on a GPU only."""
        self.costs["read"] = key
        if gpu_only and self.device.type != "cuda":
            raise SkipNotImplemented("memory is tracked on a GPU (the CUDA allocator's counts)")
        facts = self.facts()
        value = facts.get(key)
        if facts["status"] != _pm("names").OK or value is None:
            raise SkipNotImplemented(f"no {key}: status {facts['status']}")
        return float(value)


def _history_protocol(measure, device):
    """The device's protocol with tiers.HISTORY_OPEN's fields (those this commit's Protocol has)."""
    import dataclasses  # noqa: PLC0415

    base = measure.Protocol.for_device(device)
    names = {f.name for f in dataclasses.fields(base)}
    return dataclasses.replace(base, **{k: v for k, v in tiers.HISTORY_OPEN.items() if k in names})


def _unopened(status: str, error: str) -> str:
    """A cell's side file when no step of it ran: its status and why, no figures."""
    return json.dumps({"status": status, "error": error, "peak_bytes": None,
                       "before_backward_bytes": None, "step_s": None, "issue_s": None,
                       "backlog_s": None, "free_s": None})


RECORD_SUFFIX = ".samples.json"   # beside a cell's side file: its recorded samples
CLAIM_SUFFIX = ".claim"           # written just before a cell is measured for its group


def _is_oom(err: Exception) -> bool:
    return isinstance(err, getattr(torch, "OutOfMemoryError", ()))


def _poisoning(err: Exception, device) -> Exception | None:
    """``err`` when it may have left this process's CUDA context unusable (any error on a GPU
    but running out of memory: an illegal memory access poisons every later launch), so that
    the process ends and the next one measures the group's other cells; None otherwise."""
    if getattr(device, "type", device) != "cuda" or _is_oom(err):
        return None
    return err


def _kept_free(runnable, step_s: float, free_s: float):
    """The head-start step's time as recorded: whole when its head start took, else only when it
    shows the step host-bound (perfmodel.names.kept_free; a commit without it records it whole)."""
    kept = getattr(_pm("names"), "kept_free", None)
    return free_s if kept is None else kept(step_s, free_s, getattr(runnable, "free_took", True))


def _own_backlog(mode: str, backlog):
    """A split part's backlog: the burst's (the device's work left at the final synchronize) for
    the part that ends with the step, None for the backward and the forward+backward, whose
    spans end inside it, so that figure says nothing about them. On the H100 (ce03f94) the
    `large` bf16 ctx 512 backward, issued in 107.5 of its 77.8 ms, read "not host-bound" from
    the train step's 20.4 ms backlog, where before the split (d4be7bd, H200) its own backlog was
    0.1 ms and its head-start step 52.4 of 67.6 ms: host-bound. Such a part takes the
    head-start step whenever its issue time leaves it in doubt (``_free_parts``); the report
    reads such a part's older results the same way (perfmodel.report.cells.own_backlog)."""
    return backlog if mode == modes()["train_step"] else None


class Group:
    """Cells of one grid point (of a span of grid points for torch.compile's cells: tiers.SPANS)
    measured one after another by one process, in a history run.

    A history cell (a graph's point, a seed form's cell: not a cell the gate compares) needs its
    samples, not a process of its own: building, warming up and forking cost more than sampling
    for most cells (notes/gpu-box.md). So the first process of a history run that needs any cell
    of the group (a time_ or a track_ benchmark of the same parameters) measures every cell of it
    in turn, each by perfmodel.measure's protocol and asv's own stopping rule (``repeat``), and
    records its status, figures and samples beside its side file. Every asv process of the group
    then replays its cell's samples through REPLAY_CLOCK, unchanged: asv stores and compares the
    same numbers, measured in a process that had measured the group's other cells before (in
    one process the CLI's medians agreed with asv's per-process medians within 2% on 61 of 72
    GPU attention cells, median ratio 1.003: notes/journal.md).

    A cell whose measurement kills the process (a fault that takes the CUDA context with it) is
    recorded as failed by the next process, which finds its claim without a record; the other
    cells are measured again there. Only history runs group cells (one round: a record is never
    replayed twice in one run; ``tiers.grouped``).
    """

    def __init__(self, handles, repeat: tuple, series: int | None = None):
        self.handles = list(handles)
        self.repeat = repeat
        self.series = series    # the warm-up study: one run of this many single steps
        for h in self.handles:
            h.group = self
        self._records: dict = {}

    def _record_path(self, h: CellHandle) -> str:
        return h.path[: -len(".json")] + RECORD_SUFFIX

    def samples(self, h: CellHandle) -> dict:
        """The record of a cell of the group (measuring the group first if nobody has)."""
        if h.path not in self._records:
            found = _read_side_file(self._record_path(h))
            if found is None:
                self.record()
                found = _read_side_file(self._record_path(h)) or {
                    "samples": [], "skip": f"{h.label}: no record could be written or read"}
            self._records[h.path] = found
        return self._records[h.path]

    def count(self, of: list | None = None) -> int | None:
        """How many samples asv takes of each cell of one grid point (``of``, its handles; by
        default the whole group): the fewest that an OK cell of it recorded (one ``repeat`` for
        the benchmark class; every cell recorded at least asv's minimum). None when none of
        them has samples."""
        counts = [len(r["samples"]) for r in (self.samples(h) for h in (of or self.handles))
                  if r.get("samples")]
        return min(counts) if counts else None

    def record(self) -> None:
        """Measure every cell of the group that has no record yet (this process's clock kept)."""
        measure = _measure()
        clock = measure.DEVICE_CLOCK.total
        try:
            if self.series is not None:
                self._record_series(measure)
            else:
                parts: dict = {}  # a grid point's parts of one train step (a span has several)
                for h in self.handles:
                    if h.fields.get("split"):
                        parts.setdefault(_point(h), []).append(h)
                for h in self.handles:  # in order; each point's parts at the first of them
                    mine = parts.get(_point(h)) if h.fields.get("split") else None
                    if mine is None:
                        self._record_one(measure, h)
                    elif h is mine[0]:
                        self._record_parts(measure, mine)
        finally:
            measure.DEVICE_CLOCK.total = clock  # the group's samples are replayed, not timed here

    def _claimed(self, h: CellHandle) -> bool:
        """True when the cell needs no measuring here: recorded already, or claimed by a process
        that ended before recording it (then recorded as failed, with why)."""
        path = self._record_path(h)
        if os.path.exists(path):
            return True
        if os.path.exists(h.path[: -len(".json")] + CLAIM_SUFFIX):
            why = "the process that measured it ended while measuring it (a crash or a kill)"
            _write_side_file(h.path, _unopened(_pm("names").FAILED, why))
            _write_side_file(path, json.dumps({"samples": [], "skip": f"failed: {why}"}))
            print(f"perfmodel: {h.label}: failed: {why}", file=sys.stderr)
            return True
        _write_side_file(h.path[: -len(".json")] + CLAIM_SUFFIX, "")
        return False

    def _sampled(self, runnable, first: dict | None = None, each=None) -> list[float]:
        """Samples by asv's stopping rule: at least ``min``, at most ``max``, and no more once
        ``seconds`` have passed since the first (asv_runner's benchmark_timing). ``first`` gets
        the step and issue times of the first step of the first sample's burst (it began on an
        idle device behind the hold, as a metered step does); ``each(runnable)`` is called after
        every sample."""
        least, most, seconds = self.repeat
        out, t0 = [], time.perf_counter()
        while len(out) < most and (len(out) < least or time.perf_counter() - t0 <= seconds):
            out.append(runnable.sample())
            if each is not None:
                each(runnable)
            if first is not None and len(out) == 1:  # the burst's first step: a metered step's
                step_s, issue_s = getattr(runnable, "first", None) or (
                    out[0], getattr(runnable, "launch", None))
                first.update(step_s=step_s, issue_s=issue_s,
                             backlog_s=getattr(runnable, "backlog", None))  # the whole burst's
        return out

    @staticmethod
    def _free_step(runnable, samples: list[float], first: dict) -> None:
        """A step that the first burst's issue time and backlog leave possibly host-bound is
        run once more with a head start (perfmodel.measure.Runnable.free_step, where this
        commit has it), so the report can tell."""
        doubt = getattr(_pm("names"), "in_doubt", None)
        free = getattr(runnable, "free_step", None)
        if doubt is None or free is None or not samples:
            return
        step_s = statistics.median(samples)
        if doubt(step_s, first.get("issue_s"), first.get("backlog_s")):
            first["free_s"] = _kept_free(runnable, step_s, free(first["issue_s"]))

    @staticmethod
    def _facts_over_samples(h: CellHandle, runnable, first: dict) -> None:
        """A cell opened without a metered step: its memory is the allocator's peak over its
        samples (reset after the warm-up, as the metered step's was), its step and issue times
        those of its first sample's first step; written into its side file where the metered step's would be."""
        info = _read_side_file(h.path) or {}
        if info.get("status") != _pm("names").OK or info.get("peak_bytes") is not None:
            return
        meter = getattr(runnable, "meter", None)
        if meter is not None:
            info["peak_bytes"] = meter.peak()
            info["before_backward_bytes"] = meter.before_backward
        info.update(first)
        h.info = info
        _write_side_file(h.path, json.dumps(info))

    @staticmethod
    def _failed_sampling(handles: list, err: Exception) -> str:
        """A cell whose warm-up fitted but whose sampling raised: OOM when it ran out of device
        memory (its peak sits at the card's edge, where the allocator's fragmentation decides),
        else failed; its side file says so, without figures, and the error is one line. Returns
        the reason asv's processes skip it with."""
        names, oom = _pm("names"), _is_oom(err)
        status = names.OOM if oom else names.FAILED
        why = (f"{'ran out of memory' if oom else 'failed'} while sampling, after its warm-up "
               f"steps had run: {_pm('measure').one_line(err)}")
        for h in handles:
            h.info = json.loads(_unopened(status, why))
            _write_side_file(h.path, json.dumps(h.info))
            print(f"perfmodel: {h.label}: {status}: {why}", file=sys.stderr)
        return f"{status}: {why}"

    @staticmethod
    def _given_back(measure, h: CellHandle, runnable, samples: int, t0: float) -> None:
        """After a cell's sampling: what it cost (the cost log), and its memory given back (the
        runnable's release drops its model and inputs, then the device's cache is emptied)."""
        h.costs["samples"] = samples
        h.costs["sampling_s"] = time.perf_counter() - t0
        runnable.release()
        free = getattr(measure, "free_device_memory", None)
        if free is not None:
            free(h.device)

    def _record_one(self, measure, h: CellHandle) -> None:
        if self._claimed(h):
            return
        record: dict = {"samples": [], "skip": None}
        try:
            h._open(history=True)
        except NotImplementedError as err:  # n/a at this commit: every read says so
            record["skip"] = str(err)
            _write_side_file(h.path, _unopened(_pm("names").NA, str(err)))
        runnable, h._runnable = h._runnable, None
        fatal = None
        if runnable is not None:
            t0 = time.perf_counter()
            first: dict = {}
            try:
                if getattr(runnable, "last", 0) is None:  # a commit whose warm-up is untimed:
                    runnable.last = runnable.timed_steps(1)[0]  # one step sizes the first burst
                record["samples"] = self._sampled(runnable, first)
                self._free_step(runnable, record["samples"], first)
                self._facts_over_samples(h, runnable, first)
            except measure.MachineBusy as err:
                record["samples"], record["skip"] = [], str(err)
                print(f"perfmodel: {h.label}: {err}", file=sys.stderr)
            except Exception as err:  # noqa: BLE001 (the group's other cells go on)
                record["samples"], record["skip"] = [], self._failed_sampling([h], err)
                fatal = _poisoning(err, h.device)
            finally:
                self._given_back(measure, h, runnable, len(record["samples"]), t0)
        _write_side_file(self._record_path(h), json.dumps(record))
        if fatal is not None:
            raise fatal

    def _record_parts(self, measure, parts: list) -> None:
        """Cells that are parts of one marked train step (perfmodel.workloads.ModelCell
        ``split``: backward, forward+backward, train): one of them is opened and sampled, and
        every sample's burst gives each part its own sample (Runnable.parts_sample), so the
        three cost the train step's samples once. Each part gets the figures of its own span
        (the first step's device and issue times, the head-start step's), the burst's backlog for
        the part that ends with the step (``_own_backlog``), and the train step's memory; recorded
        under the first part's claim."""
        first = parts[0]
        if self._claimed(first):
            self._copy_record(first, parts[1:])
            return
        record: dict = {"samples": [], "skip": None}
        try:
            first._open(history=True)
        except NotImplementedError as err:
            record["skip"] = str(err)
            _write_side_file(first.path, _unopened(_pm("names").NA, str(err)))
        runnable, first._runnable = first._runnable, None
        taken: dict = {h.fields["mode"]: [] for h in parts}
        figures: dict = {}
        fatal = None
        if runnable is not None:
            t0 = time.perf_counter()

            def each(run):
                for mode, samples in taken.items():
                    samples.append(run.parts_sample[mode])
                if not figures:  # the first sample's first step, as _sampled's ``first``
                    figures.update({mode: dict(step_s=run.parts_first[mode][0],
                                               issue_s=run.parts_first[mode][1],
                                               backlog_s=_own_backlog(mode, run.backlog))
                                    for mode in taken})
            try:
                self._sampled(runnable, each=each)
                self._free_parts(runnable, taken, figures)
                self._facts_over_samples(first, runnable, {})
            except measure.MachineBusy as err:
                taken = {mode: [] for mode in taken}
                record["skip"] = str(err)
                print(f"perfmodel: {first.label}: {err}", file=sys.stderr)
            except Exception as err:  # noqa: BLE001 (the group's other cells go on)
                taken, figures = {mode: [] for mode in taken}, {}
                record["skip"] = self._failed_sampling([first], err)
                fatal = _poisoning(err, first.device)
            finally:
                self._given_back(measure, first, runnable, len(taken[first.fields["mode"]]), t0)
        info = _read_side_file(first.path) or json.loads(_unopened(_pm("names").FAILED,
                                                                   "no side file was written"))
        for h in parts:
            mode = h.fields["mode"]
            mine = dict(info, **figures.get(mode, {}))
            h.info = mine
            _write_side_file(h.path, json.dumps(mine))
            _write_side_file(self._record_path(h), json.dumps(dict(record, samples=taken[mode])))
        if fatal is not None:
            raise fatal

    @staticmethod
    def _free_parts(runnable, taken: dict, figures: dict) -> None:
        """One head-start step for the parts whose issue time and backlog leave them in doubt
        (perfmodel.names.in_doubt), as _free_step takes for a cell of its own; each doubtful
        part gets its own span of that step."""
        doubt = getattr(_pm("names"), "in_doubt", None)
        # a part with no backlog of its own (_own_backlog): only its issue time can clear it
        doubtful = [m for m, f in figures.items() if taken[m] and doubt is not None and
                    doubt(statistics.median(taken[m]), f.get("issue_s"),
                          0.0 if f.get("backlog_s") is None else f["backlog_s"])]
        if doubtful:
            runnable.free_step(max(figures[m]["issue_s"] for m in doubtful))
            for m in doubtful:
                figures[m]["free_s"] = _kept_free(runnable, statistics.median(taken[m]),
                                                  runnable.parts_free[m])

    def _copy_record(self, first: CellHandle, others: list) -> None:
        """Cells recorded with ``first`` (its claim): where the process that claimed it died
        before recording them, they get its side file and record (failed, with why)."""
        if all(os.path.exists(self._record_path(h)) for h in others):
            return
        base = _read_side_file(self._record_path(first)) or {}
        for h in others:
            _write_side_file(h.path, json.dumps(_read_side_file(first.path) or {}))
            _write_side_file(self._record_path(h), json.dumps(base))

    def _record_series(self, measure) -> None:
        """The warm-up study's cells (one model cell, warm-up w in ``self.handles``): one fresh
        process runs ``series`` single steps, timed one by one, with nothing untimed before them;
        warm-up w's samples are steps w+1 .. w+10, what a process that ran w untimed steps
        first would time. Recorded under the first handle's claim."""
        first = self.handles[0]
        if self._claimed(first):
            self._copy_record(first, self.handles[1:])
            return
        series = CellHandle(first.kind, first.fields, first.device.type, warmup=0)
        series.path = first.path
        record: dict = {"samples": [], "skip": None}
        try:
            series._open()
        except NotImplementedError as err:
            record["skip"] = str(err)
            _write_side_file(first.path, _unopened(_pm("names").NA, str(err)))
        steps: list[float] = []
        fatal = None
        if series._runnable is not None:
            try:
                steps = [series._runnable.sample() for _ in range(self.series)]
            except measure.MachineBusy as err:
                record["skip"] = str(err)
            except Exception as err:  # noqa: BLE001 (the study's other cells go on)
                steps, record["skip"] = [], self._failed_sampling([first], err)
                fatal = _poisoning(err, first.device)
            finally:
                series._runnable.release()
                series._runnable = None
        first.costs.update(series.costs)
        info = _read_side_file(first.path)
        window = self.series - max(h.warmup or 0 for h in self.handles)  # each warm-up's steps
        for h in self.handles:
            w = h.warmup or 0
            mine = dict(record, samples=steps[w: w + window])
            if h is not first:
                _write_side_file(h.path, json.dumps(info))
            _write_side_file(self._record_path(h), json.dumps(mine))
        if fatal is not None:
            raise fatal


def _point(h: CellHandle) -> tuple:
    """The grid point a handle's cell belongs to: its fields but its mode."""
    return tuple(sorted((k, str(v)) for k, v in h.fields.items() if k != "mode"))


def handle(kind: str, fields: dict, device: str, warmup: int | None = None) -> CellHandle:
    """The process's handle for a cell (``warmup``: a warm-up study cell, opened by the study's
    protocol: exactly that many untimed steps, then single steps, nothing metered in between, so
    asv's samples, in order, are the steps after the warm-up). Nothing is imported or checked
    here: a track_ process whose cell was measured already only reads the side file. Whether
    this commit can run the cell (n/a, skipped) is decided when it is first opened or its facts
    first needed."""
    key = (kind, tuple(sorted(fields.items())), device, warmup)
    if key not in _HANDLES:
        _HANDLES[key] = CellHandle(kind, fields, device, warmup)
    return _HANDLES[key]


def history_run() -> bool:
    """Whether this asv run records history (``perfmodel track`` sets it; never the gate)."""
    return os.environ.get(tiers.HISTORY_RUN_ENV[0]) == tiers.HISTORY_RUN_ENV[1]


def timing_attrs(obj, device: str, kind: str, cell: dict, handles: list | None = None,
                 series: int | None = None, handles_of=None) -> None:
    """asv sampling per cell, set on the instance in setup (asv re-reads them after setup).

    A sample is one ``Runnable.sample()`` (a burst of steps, perfmodel.measure.Protocol), so
    asv's ``number`` is 1 and its warm-up off (open_cell warmed the cell). ``repeat`` = (min
    samples, max samples, seconds after which to stop). A cell the device's merge gate compares
    (benchmarks/tiers.py) takes at least 6 samples in each of its 2 rounds (processes,
    interleaved between the commits that ``asv continuous`` compares, so the verdict sees
    process-to-process spread): fewer cannot pass asv's Mann-Whitney test at p < 0.002. Every
    other GPU cell is history (graphs, seed forms): at least 3 samples (4 on a CPU), and one
    round when the run asks for it (``asv run -a rounds=1``, as a full GPU run does); so is
    every CPU cell in a history run (``perfmodel track``). ``tiers.repeat`` decides.

    In a history run the ``handles`` of one grid point (its modes or passes; the warm-up study's
    warm-ups, one run of ``series`` single steps) are measured as one Group, and asv takes exactly
    the samples recorded for each (``tiers.grouped`` says which cells). Where ``tiers.span``
    spans the group over several grid points (torch.compile's cells), ``handles_of(point)``
    gives another point's handles, and the group measures the points in grid order.
    """
    obj.number = 1
    obj.warmup_time = 0.0
    history = history_run()
    obj.repeat = tiers.repeat(device, kind, cell, history_run=history)
    if handles and tiers.grouped(device, kind, cell, history_run=history):
        members = handles
        if handles_of is not None:
            members = []
            for point in tiers.span(device, kind, cell, history_run=history):
                if point == cell:
                    members += handles
                    continue
                others = handles_of(point)
                for h in others:
                    h.point = [str(point[name]) for name in tiers.param_names(kind)]
                members += others
        group = handles[0].group or Group(members, obj.repeat, series=series)
        count = group.count(handles)  # the group is measured here if no process has yet
        if count:
            obj.repeat = (count, count, 0.0)  # exactly the recorded samples, replayed



# ---------------------------------------------------------------- what a process cost

COST_LOG = "PERFMODEL_COST_LOG"  # a file path: each benchmark process appends one JSON line


def _process_age() -> float | None:
    """Seconds since this process was forked (Linux: /proc), None elsewhere."""
    try:
        with open("/proc/self/stat") as f:
            start_ticks = int(f.read().rsplit(")", 1)[1].split()[19])
        with open("/proc/uptime") as f:
            uptime = float(f.read().split()[0])
        return uptime - start_ticks / os.sysconf("SC_CLK_TCK")
    except (OSError, ValueError, IndexError):
        return None


def log_cost(benchmark: str, params: tuple, na: str | None) -> None:
    """A line into $PERFMODEL_COST_LOG at every teardown (asv tears down and sets up again
    around each sample, so a process writes several; its last one counts): which cell, how long
    the process has lived, the wall clock (``t``: with the age, when it was forked, so the
    gaps between processes are asv's own time), and where its time went (the driver's start,
    building, first step, warm-up, metering, samples), so a run's cost can be taken apart per
    class and per cell (``python -m perfmodel.suite_cost``). Nothing is written when the
    variable is unset."""
    path = os.environ.get(COST_LOG)
    if not path:
        return
    line = {"benchmark": benchmark, "params": [str(p) for p in params], "pid": os.getpid(),
            "t": round(time.time(), 3), "age_s": _process_age(), "na": na,
            "cells": [dict(h.costs, mode=h.fields.get("mode", h.fields.get("pass_")),
                           **({"params": h.point} if h.point else {}))
                      for h in _HANDLES.values() if h.costs]}
    caches = _compile_cache_counts()
    if caches:
        line["caches"] = caches
    try:
        with open(path, "a") as f:  # one short write in append mode: lines never interleave
            f.write(json.dumps(line) + "\n")
    except OSError:
        pass


def _compile_cache_counts() -> dict:
    """This process's hits and misses of the compile caches (torch._dynamo's counters: the FX
    graph cache, AOTAutograd's), so that a cost log tells a warm first step that still compiled
    from one that loaded; empty where Dynamo never ran (it is not imported for it)."""
    utils = sys.modules.get("torch._dynamo.utils")
    counters = getattr(utils, "counters", None)
    if not counters:
        return {}
    return {f"{group}.{key}": int(n) for group in ("inductor", "aot_autograd")
            for key, n in counters.get(group, {}).items() if "cache" in key and n}


ROUND_LOG = "PERFMODEL_ROUND_LOG"  # a file path: each process's own samples, for the gate


def _method(h: CellHandle) -> str:
    """The time_ method that samples a handle (the warm-up study's, or time_<suffix> of its
    mode or pass, perfmodel.names.MODES)."""
    if h.warmup is not None:
        return "time_step"
    mode = h.fields.get("mode", h.fields.get("pass_"))
    suffix = {short: long for long, short in modes().items()}.get(mode, str(mode))
    return f"time_{suffix}"


def log_round(benchmark: str, params: tuple) -> None:
    """A line into $PERFMODEL_ROUND_LOG at every teardown, for each cell this process sampled
    itself: which benchmark, the commit asv installed (ASV_COMMIT), the process and its samples
    in order. The gate's confirm stage pairs the two commits' processes round by round from it
    (asv's results pool every round's samples into one list). Nothing when the variable is
    unset; a process writes several lines as its samples grow, its last one counts."""
    path = os.environ.get(ROUND_LOG)
    if not path:
        return
    lines = []
    for h in _HANDLES.values():
        if h.taken:
            try:
                method = _method(h)
            except NotImplementedError:
                continue
            lines.append(json.dumps({"benchmark": f"{benchmark}.{method}",
                                     "params": [str(p) for p in params],
                                     "commit": os.environ.get("ASV_COMMIT", ""),
                                     "pid": os.getpid(), "samples": h.taken}))
    if lines:
        try:
            with open(path, "a") as f:
                f.write("".join(line + "\n" for line in lines))
        except OSError:
            pass


class SuiteBase:
    """Attributes every benchmark class shares."""

    timer = staticmethod(device_clock)
    version = TIME_VERSION  # explicit: editing a benchmark's source keeps its history
    rounds = 2
    number = 1
    warmup_time = 0.0
    repeat = (6, 10, 0.8)
    timeout = 600.0

    setup_cache = shared_dir.setup_cache  # one working directory per commit's run

    def enter(self, kind: str, cell: dict) -> str:
        """Start of every setup: the device, and n/a (with the tier's reason) when the device's
        tier leaves the cell out. Returns the device ('cpu' or 'cuda')."""
        self.na = None
        device = device_type()
        self.na = tiers.why_not_on(device, kind, cell)
        if self.na is not None:
            _na(self.na)
        return device

    def teardown(self, *params):
        log_cost(type(self).__name__, params, getattr(self, "na", None))
        log_round(type(self).__name__, params)


# A mode timed as its part of a marked train step (tiers.SPLIT_MODES) is another method than a
# step of its own, so its numbers and figures start graph lines of their own. The train step
# itself is the same step as before with three marks recorded inside it (CUDA events: a few
# microseconds of its host's time) and keeps its lines.
SPLIT_SUFFIX = "-split-train-step"


def split_lines(*methods) -> None:
    """File ``methods`` (time_ or facts) under their version + SPLIT_SUFFIX."""
    for method in methods:
        method.version = getattr(method, "version", TIME_VERSION) + SPLIT_SUFFIX


def facts(*methods) -> None:
    """Mark track_/peakmem_ methods: one value per cell, the same in every round, filed under
    FACTS_VERSION (a change of sampling leaves them comparable)."""
    for method in methods:
        method.version = FACTS_VERSION
        method.rounds = 1


def out_of_memory() -> str | None:
    """Why a cell this process opened ran out of memory, if one did (None otherwise): for a
    process that opens cells beside others on one GPU (perfmodel/prewarm.py), where an OOM may
    be the others' doing and is worth a try alone."""
    for h in _HANDLES.values():
        if h.info is not None and h.info.get("status") == _pm("names").OOM:
            return f"{h.label}: {h.info.get('error')}"
    return None


def forget_cells() -> None:
    """Drop the cells this process has opened (their models, inputs and compiled functions):
    for a process that opens many cells in turn (perfmodel/prewarm.py), where each of asv's
    opens one grid point."""
    _HANDLES.clear()
