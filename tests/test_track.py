"""perfmodel track's pieces that need no asv run: the machine name, when a commit counts as
measured, and the child process that runs asv."""
from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from perfmodel.identity import machine_name

ROOT = Path(__file__).resolve().parent.parent
CPU = {"device": "cpu", "name": "AMD EPYC 7B13 x2", "torch": "2.13.0+cpu", "cuda": None,
       "driver": None, "tf32": False, "threads": 1}


def test_a_cpu_box_keeps_one_name_whatever_extras_are_installed():
    # the test extra installs triton into the same venv: the name must not change with it
    names = {machine_name(dict(CPU, triton=t)) for t in (None, "3.6.0", "3.9.0")}
    assert len(names) == 1, names
    name = names.pop()
    assert name == "cpu-amd-epyc-7b13-x2-torch2.13.0cpu-t1"
    # what does change a CPU's numbers still changes the name
    assert machine_name(dict(CPU, torch="2.12.0")) != name
    assert machine_name(dict(CPU, threads=2)) != name
    assert machine_name(dict(CPU, name="Intel Xeon x2")) != name


def test_no_cell_of_the_cpu_tier_runs_triton():
    """Why triton is left out of a CPU's name: the Triton flash kernel (and torch.compile, whose
    GPU code is Triton) are outside the CPU tier. Adding them there means putting triton back."""
    from benchmarks import tiers

    cpu = tiers.tier_cells("cpu", "Attention")
    assert cpu and not {"flash", "compiled"} & {c["impl"] for c in cpu}
    variants = {c["variant"] for c in tiers.tier_cells("cpu", "Model")}
    assert variants and not any(tiers.MODEL_VARIANTS[v][1] for v in variants)  # no torch.compile
    assert not {tiers.MODEL_VARIANTS[v][0] for v in variants} & {"flash"}


def _gpu_env(record: dict) -> dict:
    """The stack a shipped GPU machine was named from, read back from its ``os`` field."""
    m = re.search(r"\| (.+) driver (\S+) CUDA (\S+) torch (\S+) triton (\S+) tf32 (on|off)$",
                  record["os"])
    assert m, record["os"]
    name, driver, cuda, torch, triton, tf32 = m.groups()
    return {"device": "cuda", "name": name, "driver": driver, "cuda": cuda, "torch": torch,
            "triton": triton, "tf32": tf32 == "on"}


def test_shipped_gpu_machines_keep_their_names():
    shipped = [p for p in (ROOT / "results").glob("*/machine.json")
               if p.parent.name.startswith("nvidia-")]
    assert len(shipped) >= 2  # the H100 and the H200 histories
    for path in shipped:
        env = _gpu_env(json.loads(path.read_text()))
        assert machine_name(env) == path.parent.name
        # on a GPU triton runs the flash kernel: its version is part of the name
        assert machine_name(dict(env, triton="9.9.9")) != path.parent.name


# --- when a commit counts as measured: its tier complete, checked on fabricated asv files ---

SUITE = {  # three benchmarks as results/benchmarks.json lists them
    "bench_model.Model.time_forward": {"version": "perfmodel-protocol-3",
                                       "params": [["'nano'", "'tiny'"], ["128"]]},
    "bench_model.Model.track_status_forward": {"version": "perfmodel-facts-1",
                                               "params": [["'nano'", "'tiny'"], ["128"]]},
    "bench_model.Warmup.track_status": {"version": "perfmodel-facts-1", "params": [["'nano'"]]},
}
MACHINE = "cpu-fabricated-t1"


def write_suite(results: Path) -> None:
    results.mkdir(parents=True, exist_ok=True)
    (results / "benchmarks.json").write_text(json.dumps(
        {**{name: dict(b, name=name) for name, b in SUITE.items()}, "version": 2}))


def write_results(results: Path, commit: str, names, version=None, values=None,
                  env_name="virtualenv-py3.11") -> None:
    """A result file as asv writes it (asv's own writer), for ``names`` of the suite."""
    from asv.results import Results
    from asv.runner import BenchmarkResult

    r = Results({"machine": MACHINE, "python": "3.11"}, {}, commit, 1_700_000_000_000, "3.11",
                env_name, {})
    for name in names:
        bench = dict(SUITE[name], name=name)
        if version:
            bench["version"] = version
        n = len(bench["params"][0]) * len(bench["params"][-1]) if len(bench["params"]) > 1 \
            else len(bench["params"][0])
        vals = (values if values is not None else [0.01] * n)[:n]  # one per cell
        r.add_result(bench, BenchmarkResult(result=vals, samples=[None] * n, number=[None] * n,
                                            errcode=0, stderr="", profile=None))
    r.save(str(results))


def test_only_a_commit_with_its_whole_tier_counts_as_measured(tmp_path):
    from perfmodel.commands.track import load_suite, why_measure

    results = tmp_path / "results"
    write_suite(results)
    suite = load_suite(str(results))
    full, find, old, nan, new, two = ("a" * 40, "b" * 40, "c" * 40, "d" * 40, "e" * 40, "f" * 40)
    write_results(results, full, SUITE)
    # asv find (or asv run -b) measured one benchmark of this commit: 2 measured, the rest absent
    write_results(results, find, ["bench_model.Model.time_forward"])
    write_results(results, old, SUITE, version="perfmodel-protocol-1")  # an older method
    write_results(results, nan, SUITE, values=[float("nan")] * 2)  # every cell n/a: measured
    write_results(results, two, ["bench_model.Warmup.track_status"], env_name="virtualenv-py3.12")
    write_results(results, two, SUITE)  # one of its two environments is complete

    def why(commit):
        return why_measure(str(results), MACHINE, commit, suite)

    assert why(full) is None and why(nan) is None and why(two) is None
    assert why(new) == ""   # nothing here yet: measured, with no reason to give
    assert "lack 2 of 3 benchmarks" in why(find)
    assert "older version" in why(old) and "perfmodel-protocol-1" in why(old)
    # the suite's parameters grew since: the new cells were never measured
    grown = dict(suite)
    grown["bench_model.Warmup.track_status"] = dict(grown["bench_model.Warmup.track_status"],
                                                    params=[["'nano'", "'tiny'"]])
    assert "parameters" in why_measure(str(results), MACHINE, full, grown)
    # no list of the suite to check against: nothing can be known complete
    assert load_suite(str(tmp_path / "nowhere")) is None
    assert "benchmarks.json" in why_measure(str(results), MACHINE, full, None)


def test_a_broken_result_file_is_a_reason_not_a_traceback(tmp_path):
    from perfmodel.commands.track import load_suite, why_measure

    results = tmp_path / "results"
    write_suite(results)
    (results / MACHINE).mkdir()
    (results / MACHINE / ("a" * 8 + "-virtualenv-py3.11.json")).write_text("{not json")
    assert "unreadable" in why_measure(str(results), MACHINE, "a" * 40, load_suite(str(results)))


def _git(cwd, *args):
    return subprocess.run(["git", *args], cwd=cwd, check=True, capture_output=True, text=True,
                          timeout=60).stdout.strip()


def fake_project(tmp_path: Path, commits: int = 3) -> tuple[Path, list[str]]:
    """A git repository with the project's asv.conf.json and tiers and ``commits`` commits on
    main (newest first)."""
    repo = tmp_path / "repo"
    repo.mkdir()
    _git(repo, "init", "-q", "-b", "main")
    _git(repo, "config", "user.email", "t@example.invalid")
    _git(repo, "config", "user.name", "t")
    shutil.copy(ROOT / "asv.conf.json", repo / "asv.conf.json")
    (repo / "benchmarks").mkdir()
    shutil.copy(ROOT / "benchmarks" / "tiers.py", repo / "benchmarks" / "tiers.py")
    for i in range(commits):
        (repo / "f.txt").write_text(str(i))
        _git(repo, "add", "-A")
        _git(repo, "commit", "-q", "-m", f"change {i}")
    return repo, _git(repo, "rev-list", "main").split()


def perfmodel(cwd, *args, home=None, timeout=120):
    env = dict(os.environ, HOME=str(home or cwd))
    return subprocess.run([sys.executable, "-m", "perfmodel", *args], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=timeout)


def test_track_measures_a_partly_measured_commit_again_and_says_why(tmp_path):
    repo, (newest, middle, oldest) = fake_project(tmp_path)
    results = repo / "results"
    write_suite(results)
    write_results(results, oldest, SUITE)
    write_results(results, middle, ["bench_model.Model.time_forward"])  # as asv find leaves it
    out = perfmodel(repo, "track", "--dry-run", "--machine", MACHINE)
    assert out.returncode == 0, out.stderr
    assert "3 commit(s) of main, 1 already measured here" in out.stdout, out.stdout
    run = next(line for line in out.stdout.splitlines() if line.startswith("$ asv run"))
    assert run.split("#")[1].split() == [newest[:8], middle[:8]]
    # asv's own --skip-existing-commits would skip the partial commit whatever perfmodel says
    assert "--skip-existing-commits" not in run
    # the CPU tier's cells only, each in one round of history sampling (benchmarks/tiers.py)
    assert " -a rounds=1 " in run and "--bench=^bench_model\\.Model" in run
    assert "Model\\.(?!track_(?:gpu_peak_bytes" in run and "'2.7B'" not in run
    assert "[a-z_]+\\((?:'nano'" in run  # ... and no method a CPU cannot measure
    why = next(line for line in out.stdout.splitlines() if middle[:8] in line and "again" in line)
    assert "lack 2 of 3 benchmarks" in why


def test_print_machine_names_this_machine_as_track_and_gate_do(tmp_path):
    """scripts and the README take the machine name from ``perfmodel track --print-machine``
    (M=$(...)): the name alone on stdout, the one perfmodel.identity gives this stack, recorded
    for asv; a bad --machine is one line, nothing recorded."""
    from perfmodel.identity import machine_name, stack  # noqa: PLC0415

    repo, _ = fake_project(tmp_path, commits=1)
    out = perfmodel(repo, "track", "--print-machine", home=tmp_path)
    assert out.returncode == 0, out.stderr
    assert out.stdout.splitlines() == [machine_name(stack())], out.stdout
    record = json.loads((tmp_path / ".asv-machine.json").read_text())
    assert record[out.stdout.strip()]["machine"] == out.stdout.strip()
    bad = perfmodel(repo, "track", "--print-machine", "--machine=-x", home=tmp_path / "b")
    assert bad.returncode == 2 and len(bad.stderr.strip().splitlines()) == 1, bad.stderr
    assert "machine name '-x'" in bad.stderr and not (tmp_path / "b" / ".asv-machine.json").exists()


# --- asv as a child process: Ctrl-C and the time limit stop everything asv started ---

# Stands in for ``python -m asv`` (perfmodel.asvchild.asv_argv is pointed at it). Like asv, it
# starts a child in a process group of its own (asv's forkserver); FAKE_DIR says what to do.
FAKE_ASV = r'''
import glob, json, os, shutil, subprocess, sys, time
fake = os.environ["FAKE_DIR"]
args = sys.argv[1:]
with open(os.path.join(fake, "argv.txt"), "a") as f:
    f.write(" ".join(args) + "\n")

LINGER = """
import os, signal, sys, time
def linger(*_):  # a benchmark process tidying up: its output closed, itself not gone yet
    os.close(1), os.close(2)
    time.sleep(1)
    sys.exit(0)
signal.signal(signal.SIGTERM, linger)
time.sleep(300)
"""

def hang():
    code = LINGER if os.path.exists(os.path.join(fake, "linger")) else "import time; time.sleep(300)"
    child = subprocess.Popen([sys.executable, "-c", code], preexec_fn=lambda: os.setpgid(0, 0))
    with open(os.path.join(fake, "pids.tmp"), "w") as f:
        f.write(f"{os.getpid()} {child.pid}")
    os.replace(os.path.join(fake, "pids.tmp"), os.path.join(fake, "pids"))
    time.sleep(300)

if args[0] == "run":
    machine = next(a.split("=", 1)[1] for a in args if a.startswith("--machine="))
    hashes = open(args[1].split(":", 1)[1]).read().split()
    for i, h in enumerate(hashes):
        print(f"For perfmodel commit {h[:8]} <main>:", flush=True)
        again = "track-again" in args[1] and os.path.isdir(os.path.join(fake, "staged-again"))
        staged = glob.glob(os.path.join(fake, "staged-again" if again else "staged", machine,
                                        h[:8] + "-*.json"))
        if not staged:
            hang()
        os.makedirs(os.path.join("results", machine), exist_ok=True)
        for path in staged:
            shutil.copy(path, os.path.join("results", machine))
elif args[0] == "continuous":
    if os.path.exists(os.path.join(fake, "hang")):
        hang()
    base, head = args[-2], args[-1]
    machine = next(a.split("=", 1)[1] for a in args if a.startswith("--machine="))
    os.makedirs(os.path.join("results", machine), exist_ok=True)
    for h in (base, head):  # asv continuous files its readings of both commits
        with open(os.path.join("results", machine, h[:8] + "-fake.json"), "w") as f:
            f.write("gate")
    print(f"| Change | Before [{base[:8]}] | After [{head[:8]}] | Ratio | Benchmark (Parameter) |")
    print("|--------|--------|-------|-------|-----------|")
    print("|  | 7.00±0.1ms | 7.01±0.1ms | 1.00 | bench_model.Model.time_forward('nano', 128) |")
    moved = os.path.join(fake, "moved")  # a cell the screen sees move; its file: the confirm's
    if os.path.exists(moved):
        confirming = any(a.startswith("rounds=") for a in args)
        ratio = float(open(moved).read()) if confirming else 1.15
        mark = "+" if ratio > 1.2 else " "
        print(f"| {mark} | 10.0±0.1ms | {10 * ratio:.2f}±0.1ms | {ratio:.2f} | "
              "bench_model.Model.time_backward('nano', 128) |")
        log = os.environ.get("PERFMODEL_ROUND_LOG")  # what the suite's processes write there
        paired = os.path.join(fake, "paired")  # the rounds' own ratio, if not the pooled one
        if confirming and log and not os.path.exists(os.path.join(fake, "no-rounds")):
            per_round = float(open(paired).read()) if os.path.exists(paired) else ratio
            n = int(next(a for a in args if a.startswith("rounds=")).split("=")[1])
            with open(log, "a") as f:
                for r in range(n):
                    for pid, commit, value in ((2 * r, base, 0.01), (2 * r + 1, head,
                                                                    0.01 * per_round)):
                        f.write(json.dumps({"benchmark": "Model.time_backward",
                                            "params": ["nano", "128"], "commit": commit,
                                            "pid": 1000 + pid, "samples": [value] * 6}) + "\n")
        sys.exit(1 if mark == "+" else 0)
'''

DRIVER = r'''
import signal, sys
signal.signal(signal.SIGINT, signal.default_int_handler)  # as at a terminal, even when the
                                                          # tests run in the background
import perfmodel.asvchild as a
a.asv_argv = lambda *args: [sys.executable, sys.argv[1], *args]
from perfmodel.cli import main
sys.exit(main(sys.argv[2:]))
'''


def fake_asv(tmp_path: Path) -> tuple[Path, Path]:
    fake = tmp_path / "fake"
    fake.mkdir()
    (fake / "asv.py").write_text(FAKE_ASV)
    return fake, fake / "asv.py"


def start(repo: Path, fake: Path, *args: str) -> subprocess.Popen:
    """perfmodel with the fake asv, in the background."""
    env = dict(os.environ, HOME=str(repo), FAKE_DIR=str(fake))
    return subprocess.Popen([sys.executable, "-c", DRIVER, str(fake / "asv.py"), *args],
                            cwd=repo, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True)


def alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] not in "ZX"
    except (OSError, IndexError):
        return False


def interrupt_when_asv_hangs(proc: subprocess.Popen, fake: Path) -> tuple[str, str, list[int]]:
    """Ctrl-C once the fake asv and its own-group child are up; their pids afterwards."""
    deadline = time.monotonic() + 120
    while not (fake / "pids").exists():
        assert proc.poll() is None, proc.communicate()
        assert time.monotonic() < deadline, "the fake asv never started"
        time.sleep(0.1)
    pids = [int(p) for p in (fake / "pids").read_text().split()]
    assert all(alive(p) for p in pids)
    proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=60)
    return out, err, pids


@pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="needs /proc (Linux)")
def test_ctrl_c_during_track_stops_asv_and_says_what_was_kept(tmp_path):
    repo, (newest, middle, oldest) = fake_project(tmp_path)
    fake, _ = fake_asv(tmp_path)
    results = repo / "results"
    write_suite(results)
    write_results(results, oldest, SUITE)
    write_results(results, newest, ["bench_model.Model.time_forward"])  # left by asv find
    write_results(fake / "staged", newest, SUITE)  # what the fake asv run "measures"
    proc = start(repo, fake, "track", "--machine", MACHINE, "--no-publish")
    t0 = time.monotonic()
    out, err, pids = interrupt_when_asv_hangs(proc, fake)
    assert proc.returncode == 130, out + err
    assert time.monotonic() - t0 < 60
    assert not any(alive(p) for p in pids), "asv or a child of it outlived perfmodel"
    assert "--skip-existing-commits" not in (fake / "argv.txt").read_text()
    line = next(x for x in out.splitlines() if f"[1/2] {newest[:8]}" in x)
    assert "measured again: its results here lack 2 of 3 benchmarks" in line
    said = err.strip().splitlines()
    assert len(said) == 1 and "interrupted" in said[0] and "Traceback" not in err, err
    assert f"kept the results of 1 commit(s): {newest[:8]}" in said[0]
    assert f"not measured: {middle[:8]}" in said[0]


@pytest.mark.parametrize("linger", [False, True])
def test_the_time_limit_stops_asv_and_its_children(tmp_path, linger):
    """asv and its children are gone when the run returns, even a child that closes its output
    on SIGTERM and takes a second to exit (the output's end must not pass for the stop's)."""
    from perfmodel import asvchild

    fake, script = fake_asv(tmp_path)
    (fake / "hang").touch()
    if linger:
        (fake / "linger").touch()
    env = dict(asvchild.asv_env(), FAKE_DIR=str(fake))
    with open(tmp_path / "log", "w") as log:
        code, _ = asvchild.run([sys.executable, str(script), "continuous"], str(tmp_path), env,
                               log, limit=3)
    assert code == 124
    pids = [int(p) for p in (fake / "pids").read_text().split()]
    assert not any(alive(p) for p in pids)


def test_the_full_gpu_tier_is_two_asv_runs_unless_each_chunk_is_asked(tmp_path):
    """Each asv run discovers the suite and starts its forkserver (torch imported twice): the
    full GPU tier runs the gate's cells (their own rounds) and the rest (one round) as two asv
    runs covering every chunk of the plan, --chunk's choice likewise; --each-chunk runs each
    chunk as its own asv run, so that each is saved when it ends."""
    repo, _ = fake_project(tmp_path)
    write_suite(repo / "results")

    def runs(*extra):
        out = perfmodel(repo, "track", "--dry-run", "--machine", MACHINE, "--tier", "gpu", *extra)
        assert out.returncode == 0, out.stderr
        lines = out.stdout.splitlines()
        return [(label[2:], lines[i + 1]) for i, label in enumerate(lines) if label.startswith("# ")]

    from benchmarks import tiers

    plan = tiers.gpu_plan()
    whole = runs()
    assert [label for label, _ in whole] == [plan[0][0], "; ".join(n for n, _, _ in plan[1:])]
    assert " -a rounds=" not in whole[0][1] and " -a rounds=1 " in whole[1][1]
    assert [run.count(" --bench=") for _, run in whole] == [
        len(plan[0][1]), sum(len(regexes) for _, regexes, _ in plan[1:])]
    assert [label for label, _ in runs("--chunk", "compiled")] == [
        "attention compiled; model compiled"]
    assert [label for label, _ in runs("--chunk", "compiled", "--each-chunk")] == [
        "attention compiled", "model compiled"]
    assert [label for label, _ in runs("--each-chunk")] == [n for n, _, _ in plan]


def test_the_full_gpu_tier_warms_the_compile_caches_before_the_run_that_compiles(tmp_path):
    """perfmodel/prewarm.py runs before the asv run holding the cells that compile (the
    torch.compile cells), never before the gate's cells, a chunk without such cells (flash's
    included),
    another tier, or with --prewarm 0."""
    repo, _ = fake_project(tmp_path)
    write_suite(repo / "results")
    from benchmarks import tiers

    n = sum(tiers.compiles(k, c) for k in tiers.GRID for c in tiers.tier_cells("gpu", k))

    def warm_lines(*extra):
        out = perfmodel(repo, "track", "--dry-run", "--machine", MACHINE, *extra)
        assert out.returncode == 0, out.stderr
        lines = out.stdout.splitlines()
        return [(line, lines[i + 1]) for i, line in enumerate(lines) if line.startswith("warm first:")]

    (line, label), = warm_lines("--tier", "gpu", "--prewarm", "3")
    assert line.startswith(f"warm first: {n} cells whose first step compiles, 3 at a time")
    assert label.startswith("# ") and "compiled" in label and "gate cells" not in label
    assert [w[1] for w in warm_lines("--tier", "gpu", "--each-chunk")] == [
        "# attention compiled", "# model compiled"]
    assert warm_lines("--tier", "gpu", "--prewarm", "0") == []
    assert warm_lines("--tier", "gpu", "--chunk", "eager") == []
    assert warm_lines("--tier", "gpu-quick") == []
    bad = perfmodel(repo, "track", "--dry-run", "--machine", MACHINE, "--tier", "gpu", "--prewarm", "-1")
    assert bad.returncode == 2 and bad.stderr.strip().splitlines() == [
        "perfmodel: error: --prewarm must be 0 (no warming) or more workers, got -1"], bad.stderr


def write_chunks(results: Path, commit: str, value_of) -> None:
    """A result file of the shipped suite (results/benchmarks.json) for ``commit``, every cell
    ``value_of(cell name)`` (NaN: n/a or left out; None: failed), by asv's own writer."""
    import itertools

    from asv.results import Results
    from asv.runner import BenchmarkResult

    suite = json.loads((ROOT / "results" / "benchmarks.json").read_text())
    r = Results({"machine": MACHINE, "python": "3.12"}, {}, commit, 1_700_000_000_000, "3.12",
                "virtualenv-py3.12", {})
    for name, bench in suite.items():
        if not isinstance(bench, dict) or not bench.get("params"):
            continue
        vals = [value_of(f"{name}({', '.join(c)})") for c in itertools.product(*bench["params"])]
        r.add_result(bench, BenchmarkResult(result=vals, samples=[None] * len(vals),
                                            number=[None] * len(vals), errcode=0, stderr="",
                                            profile=None))
    r.save(str(results))


def test_the_full_gpu_tier_resumes_a_commit_at_the_chunks_it_never_measured(tmp_path):
    """A full GPU run that lost chunks (cut off: asv saves a chunk only when it ends) leaves
    their cells NaN, as n/a cells are: the commit is measured again, only at those chunks, and
    says which. A chunk with one number, or one failed cell, was measured."""
    from benchmarks import tiers

    repo, (newest, middle, oldest) = fake_project(tmp_path)
    results = repo / "results"
    results.mkdir()
    shutil.copy(ROOT / "results" / "benchmarks.json", results / "benchmarks.json")
    plan = tiers.gpu_plan()
    regexes = {name: [re.compile(r) for r in rs] for name, rs, _ in plan}

    def chunk_of(cell):
        return next((n for n, rs in regexes.items() if any(r.search(cell) for r in rs)), None)

    first = [n for n, _, _ in plan[:3]]  # the gate's cells, attention and model eager/sdpa
    hit = set()

    def value_of(cell):  # one number per measured chunk, every other cell n/a
        chunk = chunk_of(cell)
        if chunk in first and chunk not in hit:
            hit.add(chunk)
            return 0.01
        return float("nan")

    write_chunks(results, oldest, value_of)
    assert hit == set(first)
    # every chunk measured, one of them only by a failed cell
    seen = set()

    def all_of(cell):
        chunk = chunk_of(cell)
        if chunk is None or chunk in seen:
            return float("nan")
        seen.add(chunk)
        return None if chunk == "model compiled" else 0.02

    write_chunks(results, middle, all_of)

    def dry(*extra):
        out = perfmodel(repo, "track", "--dry-run", "--machine", MACHINE, "--tier", "gpu",
                        "--each-chunk", *extra)
        assert out.returncode == 0, out.stderr
        lines = out.stdout.splitlines()
        return out.stdout, [label[2:] for label in lines if label.startswith("# ")]

    text, labels = dry("--commit", oldest, "--commit", middle)
    assert "2 commit(s) given, 1 already measured here, 1 to measure again" in text, text
    rest = [n for n, _, _ in plan[3:]]
    assert labels == rest
    assert f"{oldest[:8]} change 0: to measure again: never measured here: {'; '.join(rest)}" \
        in text, text
    # the chunks asked for are measured already: nothing to do; --rerun measures them again
    text, labels = dry("--commit", oldest, "--chunk", "eager")
    assert "1 already measured here" in text and labels == [] and "$ asv run" not in text
    text, labels = dry("--commit", oldest, "--chunk", "eager", "--rerun")
    assert "1 to measure again" in text and labels == [n for n in first if "eager" in n]
    # a commit with no results here: every chunk
    assert dry("--commit", newest)[1] == [n for n, _, _ in plan]
    # with a commit that has nothing, the one that lacks some chunks gets them all too
    assert dry("--commit", newest, "--commit", oldest)[1] == [n for n, _, _ in plan]


def test_a_cpu_commit_without_the_gpu_only_methods_is_measured(tmp_path):
    """The CPU tier never runs a memory figure or a host figure (benchmarks/tiers.py
    GPU_ONLY_METHODS): a commit whose results lack only those counts as measured on a CPU."""
    repo, (newest, middle, oldest) = fake_project(tmp_path)
    results = repo / "results"
    gpu_only = "bench_model.Model.track_gpu_peak_bytes_forward"
    suite = {**SUITE, gpu_only: dict(SUITE["bench_model.Model.time_forward"],
                                     version="perfmodel-facts-1")}
    results.mkdir(parents=True)
    (results / "benchmarks.json").write_text(json.dumps(
        {**{name: dict(b, name=name) for name, b in suite.items()}, "version": 2}))
    write_results(results, oldest, SUITE)  # as the CPU tier leaves it: no gpu_only row
    out = perfmodel(repo, "track", "--dry-run", "--machine", MACHINE)
    assert out.returncode == 0, out.stderr
    assert "3 commit(s) of main, 1 already measured here" in out.stdout, out.stdout
    # asked for the GPU tier, the same commit lacks that benchmark
    out = perfmodel(repo, "track", "--dry-run", "--machine", MACHINE, "--tier", "gpu-quick")
    assert "0 already measured here, 1 to measure again" in out.stdout, out.stdout


def test_a_cell_that_failed_is_measured_once_more_and_only_it(tmp_path):
    """A cell asv recorded as failed (null) is measured again, once, by an asv run of its own
    for that commit and that cell alone: a passing fault of the box (on the H200, asv_runner
    once failed to find a benchmark every other process found) costs no cell. One that fails
    again stays failed, and says so."""
    repo, (newest,) = fake_project(tmp_path, commits=1)
    fake, _ = fake_asv(tmp_path)
    write_suite(repo / "results")
    write_results(fake / "staged", newest, SUITE, values=[0.01, None])  # 'tiny' failed
    write_results(fake / "staged-again", newest, SUITE)  # ... and ran when measured again
    proc = start(repo, fake, "track", "--machine", MACHINE, "--no-publish")
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == 0, out + err
    runs = [line for line in (fake / "argv.txt").read_text().splitlines()
            if line.startswith("run ")]
    assert len(runs) == 2 and runs[1].split()[1].endswith("track-again.txt")
    # one -b regex (its spaces escaped), then the run's rounds, as the tier's run had them
    assert runs[1].count("--bench=") == 1 and runs[1].endswith(" -a rounds=1")
    # the two failed cells: each benchmark with params at 'tiny'
    pattern = re.compile(runs[1].split("--bench=", 1)[1].rsplit(" -a ", 1)[0])
    assert pattern.search("bench_model.Model.time_forward('tiny', 128)")
    assert not pattern.search("bench_model.Model.time_forward('nano', 128)")
    assert pattern.search("bench_model.Model.track_status_forward('tiny', 128)")
    assert "measuring again, once, the 2 cell(s) that failed" in out, out
    assert out.count(", 0 failed") == 1 and out.count(", 2 failed") == 1, out

    # a cell that fails again stays failed: exit 1, and no third run
    shutil.rmtree(fake / "staged-again")
    write_results(fake / "staged-again", newest, SUITE, values=[0.01, None])
    (fake / "argv.txt").unlink()
    proc = start(repo, fake, "track", "--machine", MACHINE, "--no-publish", "--rerun")
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == 1, out + err
    assert len([x for x in (fake / "argv.txt").read_text().splitlines() if x.startswith("run ")]) == 2
    assert out.count(", 2 failed") == 2 and "2 cell(s) failed" in out, out
