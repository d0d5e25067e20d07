"""Shared by the asv suite: which cells run where, a compat shim over perfmodel, cell handles.

Nothing here times or defines work: cells are perfmodel.workloads cells, steps are timed by
perfmodel.measure (``Runnable.timed_step`` adds to ``DEVICE_CLOCK``, the suite's asv ``timer``).

perfmodel is imported only inside benchmark processes (``_pm``), so the suite in the working
tree runs against any commit: what a commit lacks (module, class, field, preset, implementation)
raises NotImplementedError, which asv records as skipped (n/a), never as failed.

torch is imported here, at module level, on purpose: asv's forkserver imports the suite once and
forks one process per (benchmark, parameters, round), so torch's ~1.5 s import is paid once per
commit. Importing torch does not initialize CUDA, and nothing at import time may (no
``torch.cuda.is_available()`` here): a CUDA context must never exist in the forking server.
"""
from __future__ import annotations

import gc
import hashlib
import importlib
import json
import math
import os
import sys

import torch

try:  # raising it inside a benchmark body records NaN (skipped); it is a NotImplementedError
    from asv_runner.benchmarks.mark import SkipNotImplemented
except ImportError:  # pragma: no cover (asv_runner is always there when asv runs the suite)
    SkipNotImplemented = NotImplementedError

NAN = float("nan")
STATUS_CODE = {"OK": 1.0, "OOM": 2.0, "failed": 3.0}  # larger is worse; n/a is NaN

CPU_TIER = {  # what a 2-core CPU measures in about two minutes (notes/asv.md)
    "attention_impl": ("eager", "sdpa", "flash_torch"),
    "attention_dtype": ("float32",),
    "attention_d_seq": {(16, 256), (32, 256), (64, 256), (128, 256), (64, 1024)},
    "model_preset_context": {("nano", 128), ("nano", 256), ("tiny", 128)},
    "model_precision": ("fp32",),
    "model_variant": ("eager", "sdpa"),
    "warmup_preset_context": {("nano", 128)},
}
SEED_PRESETS = ("small", "medium", "large", "xl", "2.7B")
GPU_TIER = {
    "attention_impl": ("eager", "compiled", "sdpa", "flash", "flash_torch"),
    "flash_torch_max_seq": 4096,   # tiled PyTorch: a reference, slow at long sequences
    "model_preset": SEED_PRESETS,
    "model_variant": ("eager", "sdpa"),
    "model_compiled_presets": ("small",),  # torch.compile of a large LM: minutes per process
    "warmup_preset": ("small", "large"),
}

# variant -> (attention implementation, torch.compile of the whole model)
MODEL_VARIANTS = {"eager": ("eager", False), "sdpa": ("sdpa", False),
                  "compiled": ("eager", True)}


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


def check_attention(impl, dtype, d, seq, device):
    """Raise NotImplementedError (n/a) when the attention cell is not in this device's tier."""
    if device == "cpu":
        t = CPU_TIER
        if impl not in t["attention_impl"] or dtype not in t["attention_dtype"] or \
                (d, seq) not in t["attention_d_seq"]:
            _na("attention cell outside the CPU tier")
        return
    if impl not in GPU_TIER["attention_impl"]:
        _na("attention implementation outside the GPU tier")
    if impl == "flash_torch" and seq > GPU_TIER["flash_torch_max_seq"]:
        _na("flash_torch beyond seq 4096 is outside the GPU tier")


def check_model(preset, context, precision, variant, device):
    if device == "cpu":
        t = CPU_TIER
        if (preset, context) not in t["model_preset_context"] or \
                precision not in t["model_precision"] or variant not in t["model_variant"]:
            _na("model cell outside the CPU tier")
        return
    if preset not in GPU_TIER["model_preset"]:
        _na("CPU-sized preset: CPU tier only")
    if variant == "compiled":
        if preset not in GPU_TIER["model_compiled_presets"]:
            _na("compiled model: small preset only in the GPU tier")
    elif variant not in GPU_TIER["model_variant"]:
        _na("model variant outside the GPU tier for this precision")


def check_warmup(preset, context, device):
    if device == "cpu":
        if (preset, context) not in CPU_TIER["warmup_preset_context"]:
            _na("warm-up cell outside the CPU tier")
    elif preset not in GPU_TIER["warmup_preset"]:
        _na("warm-up cell outside the GPU tier")


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


def device_clock() -> float:
    """asv ``timer``: perfmodel's DEVICE_CLOCK (seconds of timed device work so far)."""
    clock = getattr(sys.modules.get("perfmodel.measure"), "DEVICE_CLOCK", None)
    return clock() if clock is not None else 0.0


# ---------------------------------------------------------------- cell handles

_HANDLES: dict = {}


class _NotRunnable:
    def __init__(self, why):
        self.why = why

    def timed_step(self):
        raise SkipNotImplemented(self.why)

    untimed_step = timed_step


class CellHandle:
    """One cell in this benchmark process: built on first use, reused by every asv sample.

    ``prepare()`` runs the core's own measurement once (1 warm-up, 1 metered step) to learn the
    status (OK / OOM / failed) and the memory figures; these are also written to a small JSON
    file in the working directory (asv's setup_cache directory, shared by the benchmarks of one
    commit), so a track_ benchmark of the same cell reads them instead of building it again.
    """

    def __init__(self, kind: str, fields: dict, device: str):
        self.kind, self.fields, self.device = kind, fields, torch.device(device)
        self.info: dict | None = None
        self._runnable = None
        self.path = side_path(kind, fields, device)

    # -- status and memory, from the side file when a sibling benchmark already ran the cell
    def facts(self) -> dict:
        if self.info is None:
            self.info = _read_side_file(self.path)
        if self.info is None:
            self.prepare()
        return self.info

    def check(self):
        """n/a (NotImplementedError) if this commit cannot run the cell on this device; cheap:
        builds nothing. Called when the cell is first prepared (``prepare`` turns the error
        into asv's SkipNotImplemented, which a benchmark body must raise to mean n/a)."""
        cell = make_cell(self.kind, **self.fields)
        ok, why = cell.availability(self.device)
        if not ok:
            raise NotImplementedError(why)
        return cell

    def prepare(self):
        if self.info is not None and (self._runnable is not None or self.info["status"] != "OK"):
            return
        try:
            self._prepare()
        except SkipNotImplemented:
            raise
        except NotImplementedError as err:  # in a benchmark body only this subclass means n/a
            raise SkipNotImplemented(str(err)) from None

    def _prepare(self):
        measure = _pm("measure")
        cell = self.check()
        info = {"status": "OK", "error": "", "peak_bytes": None, "before_backward_bytes": None}
        if self.device.type == "cpu":
            have = measure.available_host_bytes()
            need = cell.estimate_bytes()
            if need > getattr(measure, "HOST_MEMORY_FRACTION", 0.8) * have:
                info.update(status="OOM", error=f"predicted {need} bytes > available {have}")
        if info["status"] == "OK":
            try:
                runnable = cell.build(self.device)
                measure.measure(runnable, 1, 1)  # the core's warm-up and metered step
                info["peak_bytes"] = runnable.meter.peak()
                info["before_backward_bytes"] = runnable.meter.before_backward
                self._runnable = runnable
            except torch.OutOfMemoryError as err:
                info.update(status="OOM", error=measure.one_line(err))
            except NotImplementedError:
                raise
            except Exception as err:  # noqa: BLE001 (a failing cell is a result: status 3)
                info.update(status="failed", error=f"{type(err).__name__}: {err}"[:300])
            if info["status"] != "OK":
                self._runnable = None
                gc.collect()
                if self.device.type == "cuda":
                    torch.cuda.empty_cache()
        if info["status"] != "OK":
            print(f"perfmodel: {self.kind} {self.fields}: {info['status']}: {info['error']}",
                  file=sys.stderr)
        self.info = info
        _write_side_file(self.path, json.dumps(info))

    # -- what benchmark bodies call
    @property
    def run(self):
        """The built Runnable (``.timed_step()``), or a stand-in that skips (NaN) if not OK."""
        self.prepare()
        if self._runnable is None:
            return _NotRunnable(f"{self.info['status']}: {self.info['error']}")
        return self._runnable

    def host_step(self) -> None:
        """One untimed step, for asv's peakmem_ (host peak RSS): the CPU tier only."""
        if self.device.type == "cuda":
            raise SkipNotImplemented("host peak memory is tracked on the CPU tier only")
        self.run.untimed_step()

    def status(self) -> float:
        return STATUS_CODE.get(self.facts()["status"], NAN)

    def bytes(self, key: str, gpu_only: bool = False) -> float:
        if gpu_only and self.device.type != "cuda":
            raise SkipNotImplemented("GPU memory: no GPU here")
        facts = self.facts()
        value = facts.get(key)
        if facts["status"] != "OK" or value is None:
            raise SkipNotImplemented(f"no {key}: status {facts['status']}")
        return float(value)


def handle(kind: str, fields: dict, device: str) -> CellHandle:
    """The process's handle for a cell. Nothing is imported or checked here: a track_ process
    whose cell was measured already only reads the side file. Whether this commit can run the
    cell (n/a, skipped) is decided when the cell is first built or its facts first needed."""
    key = (kind, tuple(sorted(fields.items())), device)
    if key not in _HANDLES:
        _HANDLES[key] = CellHandle(kind, fields, device)
    return _HANDLES[key]


def run_cell_cached(fields: dict, device: str, warmup: int, steps: int) -> dict:
    """perfmodel.measure.run_cell for a model cell, once per commit (side file), as a dict."""
    path = side_path("ModelCell", dict(fields, _warmup=warmup, _steps=steps), device)
    cached = _read_side_file(path)
    if cached is not None:
        return cached
    try:
        run_cell = _api("measure", "run_cell")
        cell = make_cell("ModelCell", **fields)
    except NotImplementedError as err:
        raise SkipNotImplemented(str(err)) from None
    result = run_cell(cell, torch.device(device), warmup, steps)
    if result.status == "skipped":
        raise SkipNotImplemented(result.error)
    stats = result.stats
    out = {"status": result.status, "error": result.error,
           "mean": stats.mean if stats else None, "std": stats.std if stats else None}
    if result.status != "OK":
        print(f"perfmodel: {fields} warmup {warmup}: {result.status}: {result.error}",
              file=sys.stderr)
    _write_side_file(path, json.dumps(out))
    return out


def as_value(x) -> float:
    return NAN if x is None or (isinstance(x, float) and math.isnan(x)) else float(x)


def timing_attrs(obj, device: str, heavy: bool = False) -> None:
    """asv sampling per device, set on the instance in setup (asv re-reads them after setup).

    Every sample is one step (number 1); the handle already ran a warm-up step, so asv's own
    warm-up is off. repeat = (min samples, max samples, seconds after which to stop sampling).
    """
    obj.number = 1
    obj.warmup_time = 0.0
    if device == "cuda":
        obj.repeat = (3, 10, 1.0) if heavy else (5, 20, 0.5)
    else:
        obj.repeat = (5, 10, 1.0)


class SuiteBase:
    """Attributes every benchmark class shares."""

    timer = staticmethod(device_clock)
    rounds = 1
    number = 1
    warmup_time = 0.0
    repeat = (5, 10, 1.0)
    timeout = 600.0

    def setup_cache(self):
        """Nothing to cache: it only gives this commit's benchmarks one shared working
        directory, where CellHandle leaves each cell's status and memory figures."""
        return None
