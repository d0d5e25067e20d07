"""perfmodel/prewarm.py: the cells that compile, opened several at a time before asv runs them."""
import json
import os
import sys
import time

from benchmarks import tiers
from perfmodel import prewarm

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def stand_in_suite(root, tiers_src: str, bench_src: str) -> str:
    """A suite of one benchmark module (bench_stub) under ``root``, for the workers to open:
    ``tiers_src`` above tiers.py's param_names. Returns ``root`` as a string."""
    suite = root / "benchmarks"
    suite.mkdir()
    (suite / "__init__.py").write_text("")
    (suite / "tiers.py").write_text(
        tiers_src + "def param_names(kind):\n    return list(GRID[kind][1])\n")
    (suite / "bench_stub.py").write_text(bench_src)
    return str(root)


def test_the_full_gpu_tier_warms_exactly_its_compiling_cells_compiled_first():
    plan = tiers.gpu_plan()
    rest = [r for _, regexes, _ in plan[1:] for r in regexes]
    todo = prewarm.cells(tiers, "gpu", rest)
    expected = [(k, c) for k in tiers.GRID for c in tiers.tier_cells("gpu", k) if tiers.compiles(k, c)]
    assert sorted(map(json.dumps, todo)) == sorted(map(json.dumps, expected))
    # torch.compile's cells only (flash's are left to asv: warming them did not pay)
    assert {c.get("impl") or c.get("variant") for _, c in todo} == {"compiled"}
    assert len(todo) == 48 and todo[0][0] == "Model"  # a whole model first: it compiles longest
    # the gate's cells compile nothing; a chunk's regexes select its own cells only
    assert prewarm.cells(tiers, "gpu", plan[0][1]) == []
    compiled = dict((name, regexes) for name, regexes, _ in plan)["attention compiled"]
    assert {(k, c["impl"]) for k, c in prewarm.cells(tiers, "gpu", compiled)} == {
        ("Attention", "compiled")}


def test_workers_open_each_cell_through_the_suite_and_a_bad_cell_loses_no_other(tmp_path):
    """On the CPU: a cell of the CPU tier is opened through its benchmark class (warm), one the
    CPU's tier leaves out says n/a, a malformed one fails alone; nothing is written where the
    job runs (the suite's side files go to the workers' own folder) and nothing is logged."""
    ok = ("Attention", dict(impl="eager", dtype="float32", d=16, seq=256))
    na = ("Attention", dict(impl="compiled", dtype="float32", d=128, seq=16384))
    bad = ("Attention", dict(impl="eager", dtype="float32", d=16))  # no seq
    cost_log = tmp_path / "cost.jsonl"
    env = dict(os.environ, PERFMODEL_ASV_DEVICE="cpu", PERFMODEL_COST_LOG=str(cost_log))
    before = set(os.listdir(os.getcwd()))
    got = prewarm.warm(ROOT, sys.executable, [ok, na, bad, ok], workers=2, limit_s=240, env=env)
    assert (got["warm"], got["n/a"], got["error"], got["not run"]) == (2, 1, 1, 0), got
    assert len(got["errors"]) == 1 and "KeyError" in got["errors"][0], got["errors"]
    assert set(os.listdir(os.getcwd())) == before
    assert not cost_log.exists()  # a warming step is not a measurement


def test_nothing_is_handed_out_after_the_limit_or_without_a_worker():
    cell = ("Attention", dict(impl="eager", dtype="float32", d=16, seq=256))
    got = prewarm.warm(ROOT, sys.executable, [cell] * 3, workers=2, limit_s=0)
    assert got["not run"] == 3 and got["warm"] == 0
    got = prewarm.warm(ROOT, "/nonexistent/python", [cell] * 3, workers=2, limit_s=60)
    assert got["not run"] == 3 and got["errors"] == ["/nonexistent/python: No such file or directory"]


def test_track_warms_a_gpu_run_once_and_logs_it(capsys, tmp_path):
    """The live path of perfmodel track (on the CPU every compiling cell of the GPU tier is n/a
    to its benchmark class, quickly): one line before the run, the counts in asv's log, one line
    in the cost log (its span, so that suite_cost tells the next asv run's start from it), and
    a second run of the same job does not warm the same cells again."""
    import io

    from perfmodel.commands import track

    plan = tiers.gpu_plan()
    extra = [f"--bench={r}" for _, regexes, _ in plan[1:] for r in regexes]
    log, warmed = io.StringIO(), set()
    cost_log = tmp_path / "cost.jsonl"
    env = dict(os.environ, PERFMODEL_ASV_DEVICE="cpu", PERFMODEL_COST_LOG=str(cost_log))
    track._warm(ROOT, "gpu", extra, 2, warmed, env, log)
    n = len(prewarm.cells(tiers, "gpu", [e.split("=", 1)[1] for e in extra]))
    (line,) = [json.loads(x) for x in cost_log.read_text().splitlines()]  # the workers log none
    assert line["event"] == "warming" and line["cells"] == n and line["age_s"] > 0
    out = capsys.readouterr().out
    assert f"warming the compile caches: {n} cells, 2 at a time" in out
    assert f": 0 warm, {n} n/a, 0 OOM alone, 0 failed, 0 not run" in out
    logged = json.loads(log.getvalue().split("perfmodel prewarm: ", 1)[1])
    assert logged["n/a"] == n and len(warmed) == n
    track._warm(ROOT, "gpu", extra, 2, warmed, env, log)
    assert capsys.readouterr().out == ""


def test_default_workers_are_half_the_cores_at_most_eight(monkeypatch):
    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: set(range(16)), raising=False)
    assert prewarm.default_workers() == 8
    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: set(range(192)), raising=False)
    assert prewarm.default_workers() == prewarm.MAX_WORKERS == 8
    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: {0}, raising=False)
    assert prewarm.default_workers() == 1


def test_a_failing_cell_restarts_its_worker_and_a_cell_past_the_limit_is_stopped(tmp_path):
    """A stand-in suite: a cell that raises is one failure and its worker is replaced (a CUDA
    fault leaves a process unusable), the cells after it are warmed; a cell still running at
    the limit is stopped with its worker and counts as not run."""
    suite = stand_in_suite(
        tmp_path,
        'GRID = {"Stub": ("bench_stub", {"x": ["ok", "raise", "exit", "hang"]})}\n',
        "import os, time\n"
        "class Stub:\n"
        "    def setup(self, x):\n"
        "        if x == 'raise':\n            raise RuntimeError('boom')\n"
        "        if x == 'exit':\n            os._exit(3)\n"
        "        if x == 'hang':\n            time.sleep(600)\n"
        "    def time_it(self, x):\n        pass\n")
    cells = [("Stub", {"x": x}) for x in ("raise", "ok", "exit", "ok")]
    got = prewarm.warm(suite, sys.executable, cells, workers=1, limit_s=120)
    assert (got["warm"], got["error"], got["not run"]) == (2, 2, 0), got
    assert sorted(e.split(": ", 1)[1] for e in got["errors"]) == [
        "RuntimeError: boom", "its worker ended"]
    t0 = time.monotonic()
    got = prewarm.warm(suite, sys.executable, [("Stub", {"x": "hang"})] * 2, workers=1,
                       limit_s=8)
    assert (got["warm"], got["error"], got["not run"]) == (0, 0, 2), got
    assert time.monotonic() - t0 < 30


def test_a_worker_forgets_each_cell_it_opened():
    """asv's processes open one grid point each, so the suite keeps its opened cells; a worker
    opens many in turn and drops each (its model and inputs) before the next."""
    from benchmarks import common

    common.handle("AttentionCell", dict(impl="eager", dtype="float32", d=16, seq=256, pass_="fwd"), "cpu")
    assert common._HANDLES
    common.forget_cells()
    assert not common._HANDLES


def test_at_most_one_heavy_model_cell_at_a_time_beside_the_others(tmp_path):
    """Cells of the two largest seed presets (30-60 GB of an H200 each for their train step)
    are opened one at a time while the other workers go on with the light cells."""
    suite = stand_in_suite(
        tmp_path,
        'SEED_PRESETS = ("small", "xl", "2.7B")\n'
        'GRID = {"Model": ("bench_stub", {"preset": list(SEED_PRESETS), "i": [0, 1, 2, 3]})}\n',
        "import os, time\n"
        "class Model:\n"
        "    def setup(self, preset, i):\n"
        "        t0 = time.time()\n"
        "        time.sleep(0.4)\n"
        "        with open(os.path.join(os.environ['STUB_OUT'], f'{preset}-{i}'), 'w') as f:\n"
        "            f.write(f'{t0} {time.time()}')\n")
    out = tmp_path / "out"
    out.mkdir()
    cells = [("Model", {"preset": p, "i": i}) for p in ("xl", "2.7B", "small") for i in range(4)]
    got = prewarm.warm(suite, sys.executable, cells, workers=4, limit_s=120,
                       env=dict(os.environ, STUB_OUT=str(out)))
    assert got["warm"] == 12, got
    spans = {f.name: tuple(map(float, f.read_text().split())) for f in out.iterdir()}
    heavy = sorted(v for k, v in spans.items() if not k.startswith("small"))
    assert len(heavy) == 8 and all(a[1] <= b[0] for a, b in zip(heavy, heavy[1:])), heavy
    light = [v for k, v in spans.items() if k.startswith("small")]
    assert min(s for s, _ in light) < heavy[1][0]  # the light cells did not wait for them


def test_a_cell_that_runs_out_of_memory_beside_others_is_tried_again_alone(tmp_path):
    """The workers share one GPU: a cell may run out of memory only because another holds it.
    Stand-ins: "big" holds the card for a while (a marker file), "edge" runs out of memory while
    it does, "never" always does. "edge" is opened again alone at the end and is warm; "never"
    is OOM alone too; each cell's OOM is the suite's status, not an exception."""
    suite = stand_in_suite(
        tmp_path,
        'GRID = {"Stub": ("bench_stub", {"x": ["big", "edge", "never"]})}\n',
        "import os, time\n"
        "from benchmarks import common\n"
        "class Stub:\n"
        "    def setup(self, x):\n"
        "        busy = os.path.join(os.environ['STUB_OUT'], 'busy')\n"
        "        with open(os.path.join(os.environ['STUB_OUT'], 'tries'), 'a') as f:\n"
        "            f.write(x + '\\n')\n"
        "        common.OOM = None\n"
        "        started = os.path.join(os.environ['STUB_OUT'], 'started')\n"
        "        if x == 'big':\n"
        "            open(busy, 'w').close(); open(started, 'w').close()\n"
        "            time.sleep(3); os.remove(busy)\n"
        "            return\n"
        "        for _ in range(200):  # the pool hands the cells out together: big first\n"
        "            if os.path.exists(started):\n"
        "                break\n"
        "            time.sleep(0.05)\n"
        "        if x == 'never' or os.path.exists(busy):\n"
        "            common.OOM = f'{x}: CUDA out of memory'\n")
    (tmp_path / "benchmarks" / "common.py").write_text(
        "OOM = None\n"
        "def out_of_memory():\n    return OOM\n")
    out = tmp_path / "out"
    out.mkdir()
    cells = [("Stub", {"x": "big"}), ("Stub", {"x": "never"}), ("Stub", {"x": "edge"})]
    got = prewarm.warm(suite, sys.executable, cells, workers=3, limit_s=120,
                       env=dict(os.environ, STUB_OUT=str(out)))
    assert (got["warm"], got["oom"], got["error"], got["not run"]) == (2, 1, 0, 0), got
    assert got["oom alone"] == ["Stub(never): never: CUDA out of memory"]
    assert sorted((out / "tries").read_text().split()) == [
        "big", "edge", "edge", "never", "never"]
    # one worker: every cell was alone already, none is opened twice
    (out / "tries").unlink()
    got = prewarm.warm(suite, sys.executable, cells[1:], workers=1, limit_s=120,
                       env=dict(os.environ, STUB_OUT=str(out)))
    assert (got["warm"], got["oom"]) == (1, 1) and len((out / "tries").read_text().split()) == 2


def test_a_worker_leaves_no_autotuning_choice_timed_beside_the_others(tmp_path):
    """The workers share the GPU, so a choice timed there is not what a lone asv process would
    choose: flash's autotuner is told to keep its choice in memory, Inductor's local autotune
    cache is off, and the compiled kernels themselves are still cached."""
    suite = stand_in_suite(
        tmp_path,
        'GRID = {"Stub": ("bench_stub", {"x": [0]})}\n',
        "import os, json\n"
        "class Stub:\n"
        "    def setup(self, x):\n"
        "        import torch._inductor.config as c\n"
        "        with open(os.environ['STUB_OUT'], 'w') as f:\n"
        "            json.dump([os.environ.get('PERFMODEL_FLASH_KEEP_TUNING'),\n"
        "                       c.autotune_local_cache, c.fx_graph_cache], f)\n")
    out = tmp_path / "seen.json"
    got = prewarm.warm(suite, sys.executable, [("Stub", {"x": 0})], workers=1,
                       limit_s=120, env=dict(os.environ, STUB_OUT=str(out)))
    assert got["warm"] == 1, got
    keep, autotune_cache, graph_cache = json.loads(out.read_text())
    assert (keep, autotune_cache) == ("0", False)
    assert graph_cache is not False  # the compiled graphs are what the warming is for


def test_flash_keeps_its_tuning_choice_on_disk_unless_told_not_to():
    import subprocess

    probe = ("import perfmodel.flash_triton as f; "
             "print(getattr(f, '_CACHE_TUNING', 'no triton'))")
    seen = {}
    for value in ("1", "0"):
        env = dict(os.environ, PERFMODEL_FLASH_KEEP_TUNING=value)
        seen[value] = subprocess.run([sys.executable, "-c", probe], env=env, cwd=ROOT,
                                     capture_output=True, text=True, check=True).stdout.strip()
    import inspect

    import pytest

    triton = pytest.importorskip("triton")
    if "cache_results" not in inspect.signature(triton.autotune).parameters:
        pytest.skip("this Triton's autotuner keeps no choice on disk")
    assert seen == {"1": "{'cache_results': True}", "0": "{}"}


def test_a_worker_opens_its_cell_outside_the_history_run(tmp_path):
    """perfmodel track runs asv as a history run (tiers.HISTORY_RUN_ENV), and its environment
    reaches the warming: a worker must not see it, or the suite's setup would measure the cell's
    whole group (a compiled cell's span of grid points) where only its compiles are wanted."""
    suite = stand_in_suite(
        tmp_path,
        'GRID = {"Stub": ("bench_stub", {"x": [0]})}\nHISTORY_RUN_ENV = ("STUB_SAMPLING", "h")\n',
        "import os\n"
        "class Stub:\n"
        "    def setup(self, x):\n"
        "        with open(os.environ['STUB_OUT'], 'w') as f:\n"
        "            f.write(repr((os.environ.get('STUB_SAMPLING'), os.environ.get('STUB_KEEP'))))\n")
    out = tmp_path / "seen.txt"
    env = dict(os.environ, STUB_OUT=str(out), STUB_SAMPLING="h", STUB_KEEP="kept")
    got = prewarm.warm(suite, sys.executable, [("Stub", {"x": 0})], workers=1, limit_s=120,
                       env=env)
    assert got["warm"] == 1, got
    assert out.read_text() == repr((None, "kept"))
