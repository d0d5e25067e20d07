"""Warm the compile caches before asv measures: the cells that compile, several at a time.

asv measures one benchmark process after another, so on a box whose caches are empty every
compiled cell compiles inside the run, one after the other: on the H200 the attention
and model compiled chunks took 8.0 and 9.3 minutes cold (the model's 1.7 warm), nearly all of
it Inductor and Triton compiling (notes/gpu-box.md). That work is the host's (tracing, code
generation, Triton's compiler) and it fills on-disk caches (TORCHINDUCTOR_CACHE_DIR,
TRITON_CACHE_DIR) that later processes read. So before asv runs such cells (``tiers.compiles``:
torch.compile's; flash's were warmed here too until it showed no gain on either card), ``warm``
opens each of them once in ``workers`` processes at a time, through the suite's own benchmark
classes (their ``setup``, then each ``time_`` method once): they compile
exactly what asv's processes will ask for. Nothing here is measured or recorded. A cell that
runs out of memory beside the others (on an H100 a medium fp32 flash cell did, while a 2.7B one
ran) is opened once more at the end, alone on the GPU; a cell that fails, or runs out of memory
alone too, is compiled by asv's own process, as without this step.

The workers run this file as a script under the Python of asv's environment (the commit's
perfmodel, the box's torch) and import the suite from the repository, nothing of the package:
a commit whose perfmodel predates this module is warmed the same way.
"""
from __future__ import annotations

import collections
import json
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time

# Per worker: Inductor compiles Triton kernels in a pool of its own (one process per core by
# default); several workers at once share the cores instead.
COMPILE_THREADS = 2
# At most this many workers: each holds a CUDA context and its cell's tensors on the one GPU,
# and a container may report its host's cores rather than its own.
MAX_WORKERS = 8
# A model of the two largest seed presets (xl and 2.7B) takes 30-60 GB of the GPU for its train
# step: no more than this many such cells at once, beside the others.
HEAVY_AT_ONCE = 1
# The benchmark processes' own logs: a warming step is not a measurement.
UNLOGGED = ("PERFMODEL_COST_LOG", "PERFMODEL_ROUND_LOG")
# What a warming worker must not leave behind: autotuning choices timed while other workers
# share the GPU. Flash's autotuner keeps its choice in memory only (perfmodel/flash_triton.py),
# and Inductor's runtime autotuning of its own kernels is not cached either (in ``_worker``):
# the compiled kernels are cached, and asv's lone process times the candidates again.
WORKER_ENV = {"PERFMODEL_FLASH_KEEP_TUNING": "0"}


def default_workers() -> int:
    """Half the cores this process may run on (each worker compiles with COMPILE_THREADS), at
    most MAX_WORKERS."""
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    return max(1, min(MAX_WORKERS, (cores or 2) // COMPILE_THREADS))


def cells(tiers, tier: str, regexes: list[str]) -> list[tuple[str, dict]]:
    """The cells of ``tier`` whose first step compiles (``tiers.compiles``) and that one of the
    asv -b ``regexes`` selects, in the reverse of the GPU plan's chunk order (compiles last
    there): torch.compile's first (a whole model compiles longest, about 70 s a cell on the
    H200), so that the last cells handed out are short ones."""
    import re  # noqa: PLC0415

    patterns = [re.compile(r) for r in regexes]
    out = []
    for kind in tiers.GRID:
        module = tiers.GRID[kind][0]
        for cell in tiers.tier_cells(tier, kind):
            name = f"{module}.{kind}.time_forward{tiers.asv_params(kind, cell)}"
            if tiers.compiles(kind, cell) and any(p.search(name) for p in patterns):
                out.append((kind, cell))
    chunks = [keep for _, keep in tiers.GPU_CHUNKS]
    return sorted(out, key=lambda kc: -next(
        (i for i, keep in enumerate(chunks) if keep(*kc)), len(chunks)))


def warm(root: str, python: str, todo: list[tuple[str, dict]], workers: int, limit_s: float,
         env: dict | None = None) -> dict:
    """Open each cell of ``todo`` once, ``workers`` at a time, each worker a ``python`` process
    taking the next cell as it finishes one, then the cells that ran out of memory there once
    more, one at a time; none is handed out after ``limit_s`` seconds, and the workers are
    stopped then. Returns {"warm", "n/a", "oom", "error", "not run": counts, "s": wall seconds,
    "slowest": (seconds, cell label) or None, "errors": a line per failed cell and per worker
    that could not start, "oom alone": a line per cell that ran out of memory alone too}."""
    python = os.path.abspath(python) if os.sep in python else python  # the workers run elsewhere
    # A worker opens its cell as a gate's run would, never as a history run's: there the suite's
    # setup measures the cell's whole group first (its samples; a compiled cell's span of grid
    # points, benchmarks/tiers.py SPANS), where only the compiles are wanted, and workers that
    # share a span would read each other's claims as crashes.
    from .repo import load_tiers  # noqa: PLC0415 (the parent's side only: not in a worker)

    suite = load_tiers(root)
    history = getattr(suite, "HISTORY_RUN_ENV", (None,))[0]  # a suite before it has none
    env = {k: v for k, v in (env or os.environ).items()
           if k not in UNLOGGED and k != history} | WORKER_ENV
    env.setdefault("TORCHINDUCTOR_COMPILE_THREADS", str(COMPILE_THREADS))
    t0 = time.monotonic()
    deadline = t0 + limit_s
    workdir = tempfile.mkdtemp(prefix="perfmodel-prewarm-")  # the side files the suite writes
    try:
        return _serve(root, python, todo, workers, deadline, env, workdir, t0, _heavy(suite))
    finally:
        shutil.rmtree(workdir, ignore_errors=True)


def _heavy(suite):
    largest = tuple(getattr(suite, "SEED_PRESETS", ())[-2:])
    return lambda kind, cell: kind == "Model" and cell.get("preset") in largest


def _serve(root, python, todo, workers, deadline, env, workdir, t0, heavy) -> dict:
    pending = {True: collections.deque(), False: collections.deque()}  # heavy or not
    for kind, cell in todo:
        pending[heavy(kind, cell)].append((kind, cell))
    heavy_slots = threading.Semaphore(HEAVY_AT_ONCE)
    rows: list[dict] = []
    lock = threading.Lock()

    def take():
        """(cell, whether it holds a heavy slot): a heavy cell when a slot is free, else a
        light one, else wait for a slot while heavy cells are left; None when none is left."""
        if heavy_slots.acquire(blocking=False):
            with lock:
                if pending[True]:
                    return pending[True].popleft(), True
            heavy_slots.release()
        with lock:
            if pending[False]:
                return pending[False].popleft(), False
        while time.monotonic() < deadline:
            with lock:
                if not pending[True]:
                    return None
            if heavy_slots.acquire(timeout=1):
                with lock:
                    if pending[True]:
                        return pending[True].popleft(), True
                heavy_slots.release()
        return None

    started: list[str] = []  # why a worker could not start, if one could not
    children: list[subprocess.Popen] = []

    def start():
        try:
            child = subprocess.Popen([python, os.path.abspath(__file__), root], cwd=workdir,
                                     env=env, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                     stderr=subprocess.DEVNULL, text=True)  # Ctrl-C reaches it too
        except OSError as err:
            started.append(f"{python}: {err.strerror}")
            return None
        with lock:
            children.append(child)
        return child

    def serve():
        child = start()
        while child is not None and time.monotonic() < deadline:
            taken = take()
            if taken is None:
                break
            (kind, cell), holds_slot = taken
            try:
                child.stdin.write(json.dumps([kind, cell]) + "\n")
                child.stdin.flush()
                line = child.stdout.readline()  # the worker's one line for this cell
            except OSError:
                line = ""
            finally:
                if holds_slot:
                    heavy_slots.release()
            if not line and time.monotonic() >= deadline:
                break  # stopped at the deadline: the cell counts as not run
            row = json.loads(line) if line.startswith("{") else dict(
                kind=kind, cell=cell, status="error", error="its worker ended", s=0.0)
            with lock:
                rows.append(row)
            if row["status"] == "error":  # a fault can leave the worker's CUDA context unusable
                child.kill()
                child = start()

    def pool(n: int) -> None:
        threads = [threading.Thread(target=serve, daemon=True) for _ in range(max(1, n))]
        for t in threads:
            t.start()
        for t in threads:
            t.join(max(0.0, deadline - time.monotonic()))
        with lock:
            done = list(children)
            children.clear()
        for child in done:  # idle now, or at the deadline still compiling: stopped either way
            child.kill()
            child.wait()
        for t in threads:
            t.join(5)

    pool(workers)
    crowded = [r for r in rows if r["status"] == "oom"]
    if crowded and workers > 1 and time.monotonic() < deadline:
        with lock:  # each alone on the GPU: the shared pool's workers are gone
            rows[:] = [r for r in rows if r["status"] != "oom"]
            for r in crowded:
                pending[heavy(r["kind"], r["cell"])].append((r["kind"], r["cell"]))
        pool(1)
        with lock:  # past the deadline: the first try's answer stands
            tried = {json.dumps([r["kind"], r["cell"]]) for r in rows}
            rows.extend(r for r in crowded if json.dumps([r["kind"], r["cell"]]) not in tried)
    counts = {status: sum(r["status"] == status for r in rows)
              for status in ("warm", "n/a", "oom", "error")}
    counts["not run"] = len(todo) - len(rows)
    slowest = max(rows, key=lambda r: r["s"], default=None)
    return dict(counts, s=round(time.monotonic() - t0, 1),
                slowest=(slowest["s"], _label(slowest)) if slowest else None,
                errors=[f"{_label(r)}: {r['error']}" for r in rows if r["status"] == "error"]
                + sorted(set(started)),
                **{"oom alone": [f"{_label(r)}: {r['error']}" for r in rows
                                 if r["status"] == "oom"]})


def _label(row: dict) -> str:
    return f"{row['kind']}({', '.join(str(v) for v in row['cell'].values())})"


def _open(kind: str, cell: dict) -> None:
    """One cell, as asv's processes open it: the benchmark's setup, each timed method once."""
    import importlib  # noqa: PLC0415

    tiers = importlib.import_module("benchmarks.tiers")
    bench = getattr(importlib.import_module(f"benchmarks.{tiers.GRID[kind][0]}"), kind)()
    params = [cell[name] for name in tiers.param_names(kind)]
    bench.setup(*params)  # NotImplementedError: n/a on this device or at this commit
    try:
        for name in sorted(dir(bench)):
            if name.startswith("time_"):
                getattr(bench, name)(*params)
    finally:
        if hasattr(bench, "teardown"):
            bench.teardown(*params)


def _worker(root: str) -> None:
    """Read one cell a line from stdin, open it, answer one JSON line; stdout carries nothing
    else (what the suite or torch prints goes to stderr)."""
    here = os.path.dirname(os.path.abspath(__file__))
    sys.path[:] = [p for p in sys.path if os.path.abspath(p or ".") != here] + [root]
    answer = os.fdopen(os.dup(1), "w")
    os.dup2(2, 1)
    sys.stdout = sys.stderr
    import gc  # noqa: PLC0415

    import torch  # noqa: PLC0415

    try:
        import torch._inductor.config as inductor  # noqa: PLC0415

        inductor.autotune_local_cache = False  # see WORKER_ENV
    except ImportError:
        pass
    for line in sys.stdin:
        kind, cell = json.loads(line)
        t0 = time.perf_counter()
        status, error = "warm", ""
        try:
            _open(kind, cell)
        except NotImplementedError as err:  # asv's SkipNotImplemented too
            status, error = "n/a", str(err)
        except Exception as err:  # noqa: BLE001 (asv's own process meets it again, and says so)
            status, error = "error", f"{type(err).__name__}: {err}"
        else:  # the suite records an OOM as the cell's status, not as an error
            oom = getattr(sys.modules.get("benchmarks.common"), "out_of_memory", lambda: None)()
            if oom:
                status, error = "oom", oom
        answer.write(json.dumps(dict(kind=kind, cell=cell, status=status, error=error[:300],
                                     s=round(time.perf_counter() - t0, 2))) + "\n")
        answer.flush()
        # the suite keeps a process's opened cells (asv's processes open one grid point each):
        # here each would hold its model and inputs on the GPU while the next cells compile
        getattr(sys.modules.get("benchmarks.common"), "forget_cells", lambda: None)()
        torch._dynamo.reset()  # the next cell's graphs are compiled, not looked up in memory
        gc.collect()
        if torch.cuda.is_initialized():
            torch.cuda.empty_cache()


if __name__ == "__main__":
    _worker(sys.argv[1])
