"""Values of the wrong kind or range, honest data asv can leave, and entries that are not files
(issue 19): each case was a traceback, a hang or a memory blow-up. Now each is a note naming the
file and field, every other table is as without it, and the exit status says whether anything
was left out."""
from __future__ import annotations

import json
import os
import resource
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

pytest.importorskip("asv")
pytest.importorskip("pandas")

from perfmodel.cli import main  # noqa: E402
from perfmodel.commands.track import cell_counts  # noqa: E402
from perfmodel.report.page import write_report  # noqa: E402
from perfmodel.untrusted import Unreadable, read_bytes  # noqa: E402

FIXTURE = Path(__file__).parent / "fixtures" / "asv_results"
MACHINE = "fixture-cpu"
ROOT = Path(__file__).resolve().parent.parent
ATT = "bench_attention.Attention."


def result_files(results: Path) -> list[Path]:
    files = [f for f in (results / MACHINE).glob("*.json") if f.name != "machine.json"]
    return sorted(files, key=lambda f: json.loads(f.read_text())["date"])


def edit(path: Path, change) -> None:
    doc = json.loads(path.read_text())
    change(doc)
    path.write_text(json.dumps(doc))


def column(doc, key, name):
    return doc["results"][key][doc["result_columns"].index(name)]


def first_ok(values) -> int:
    return next(i for i, v in enumerate(values) if v is not None and v == v)


def set_first(doc, key, value) -> None:
    values = column(doc, key, "result")
    values[first_ok(values)] = value


def bench_json(results: Path, change) -> None:
    edit(results / "benchmarks.json", change)


def each_attention(change):
    def apply(doc):
        for name, entry in doc.items():
            if name.startswith(ATT):
                change(entry)
    return apply


def own_params(results: Path, change) -> None:
    """The same change to the parameter lists every results file stores for Attention."""
    for f in result_files(results):
        edit(f, lambda d: [change({"params": v[d["result_columns"].index("params")]})
                           for k, v in d["results"].items() if k.startswith(ATT)])


def tables(report, prefix=None) -> dict:
    # the history, the change table and why-n/a read every class: a change to one moves them
    return {t.key: t.rows for t in report.tables if t.key not in ("history", "compare", "why_na")
            and (prefix is None or not t.key.startswith(prefix))}


@pytest.fixture(scope="module")
def base(tmp_path_factory):
    w = write_report(FIXTURE, MACHINE, output=tmp_path_factory.mktemp("base") / "s.md", repo=None,
                     plots=False)
    return w.report


def run(results: Path, out: Path, capsys, *extra) -> tuple[int, list[str]]:
    code = main(["report", "--results", str(results), "--machine", MACHINE, "--repo", str(ROOT),
                 "-o", str(out / "s.md"), "--html", "--no-plots", *extra])
    err = capsys.readouterr().err
    assert "Traceback" not in err
    return code, [line[6:] for line in err.splitlines() if line.startswith("note: ")]


def mixed_d(entry):
    entry["params"][2][0] = "'16'"  # one d a string among ints


def unhashable_d(entry):
    entry["params"][2][0] = "[16]"


def renamed_d(entry):
    entry["param_names"][2] = "dim"


CASES = {  # case -> (change to a copy of the fixture, exit status, (file, field) of the note)
    "ram_not_a_number": (lambda r: edit(r / MACHINE / "machine.json",
                                        lambda d: d.update(ram="²")), 1,
                         (f"{MACHINE}/machine.json", "ram")),
    "ram_too_many_digits": (lambda r: edit(r / MACHINE / "machine.json",
                                           lambda d: d.update(ram="9" * 5000)), 1,
                            (f"{MACHINE}/machine.json", "ram")),
    "machine_json_array": (lambda r: (r / MACHINE / "machine.json").write_text("[1, 2]"), 1,
                           (f"{MACHINE}/machine.json", "the file")),
    "param_mixed_types": (lambda r: (bench_json(r, each_attention(mixed_d)),
                                     own_params(r, lambda c: c["params"][2].__setitem__(0, "'16'"))),
                          1, ("benchmarks.json", f"{ATT}time_forward param_names/params")),
    "param_unhashable": (lambda r: (bench_json(r, each_attention(unhashable_d)),
                                    own_params(r, lambda c: c["params"][2].__setitem__(0, "[16]"))),
                         1, ("benchmarks.json", f"{ATT}time_forward param_names/params")),
    "param_renamed": (lambda r: bench_json(r, each_attention(renamed_d)), 1,
                      ("benchmarks.json", f"{ATT}time_forward params")),
    "negative_time": (lambda r: edit(result_files(r)[-1],
                                     lambda d: set_first(d, f"{ATT}time_forward", -1.0)), 1,
                      (None, f"{ATT}time_forward result")),
    "huge_memory": (lambda r: edit(result_files(r)[-1],
                                   lambda d: set_first(d, f"{ATT}peakmem_backward", 1e300)), 1,
                    (None, f"{ATT}peakmem_backward result")),
    "unknown_benchmarks": (lambda r: edit(result_files(r)[-1], lambda d: d["results"].update(
        {f"bench_gone.G.time_{i}": d["results"][f"{ATT}time_forward"] for i in range(50)})), 1,
                           (None, None)),  # "left out 50 benchmark(s) not in benchmarks.json"
}


@pytest.mark.parametrize("case", CASES)
def test_a_bad_value_is_a_note_and_the_rest_renders(tmp_path, capsys, base, case):
    change, status, (where, field) = CASES[case]
    results = tmp_path / "results"
    shutil.copytree(FIXTURE, results)
    change(results)
    newest = result_files(results)[-1].name
    code, notes = run(results, tmp_path / "out", capsys)
    assert code == status, notes
    where = where or newest
    if field:
        assert [n for n in notes if n.startswith(f"left out {field} in {where}:")], notes
    assert (tmp_path / "out" / "s.html").is_file()
    w = write_report(results, MACHINE, output=tmp_path / "again" / "s.md", repo=None, plots=False)
    # the tables the change does not touch are as without it
    touched = "compare_attention" if case.startswith("param") else "\0"
    expect = tables(base, touched)
    if case.startswith("param"):  # no attention table at all; the model's and warm-up's stay
        expect = {k: v for k, v in expect.items() if not k.startswith(("attention", "seed00",
                                                                       "pivot"))}
        assert not [k for k in tables(w.report) if k.startswith(("attention", "pivot"))]
    elif case in ("negative_time", "huge_memory"):  # that cell is n/a, never a number
        expect = {k: v for k, v in expect.items() if "attention" not in k and "seed00" not in k
                  and "pivot" not in k}
        for rows in tables(w.report).values():  # -1 s is -1000.000 ms; 1e300 B is 10^294 MiB
            assert not [c for row in rows for c in row if c.startswith("-1000") or len(c) > 30]
    got = tables(w.report)
    assert {k: got.get(k) for k in expect} == expect


def test_a_zero_is_a_value_not_a_crash(tmp_path, capsys):
    """0 bytes of memory at the earlier commit of the change table (it was a ZeroDivisionError
    sorting the regressions), and a time of 0 in a speedup of table 6a."""
    results = tmp_path / "results"
    shutil.copytree(FIXTURE, results)
    edit(result_files(results)[-2], lambda d: set_first(d, f"{ATT}peakmem_backward", 0))
    edit(result_files(results)[-1], lambda d: set_first(d, f"{ATT}time_forward", 0.0))
    code, notes = run(results, tmp_path / "out", capsys)
    assert code == 0, notes
    text = (tmp_path / "out" / "s.md").read_text()
    assert ". Changes from " in text and ". Attention implementations against eager" in text


def test_a_suite_wide_version_bump_is_history_not_an_error(tmp_path, capsys):
    results = tmp_path / "results"
    shutil.copytree(FIXTURE, results)
    bench_json(results, lambda d: [e.update(version="new") for e in d.values()
                                   if isinstance(e, dict)])
    code, notes = run(results, tmp_path / "out", capsys)
    assert code == 0, notes
    assert [n for n in notes if f"{ATT}time_forward at " in n and "older version" in n]
    assert "no attention or model results" in (tmp_path / "out" / "s.md").read_text()


@pytest.mark.parametrize("which", ["newest", "all"])
def test_a_commit_with_empty_results_is_a_commit_without_cells(tmp_path, capsys, which):
    results = tmp_path / "results"
    shutil.copytree(FIXTURE, results)
    files = result_files(results)
    for f in files[-1:] if which == "newest" else files:
        edit(f, lambda d: d.update(results={}))
    code, notes = run(results, tmp_path / "out", capsys)
    assert code == 0, notes
    assert (tmp_path / "out" / "s.html").is_file()
    if which == "all":
        assert any("no attention or model results" in n for n in notes)
    else:  # the tables, the history and the changes end at the commit before; the page says why
        assert not any("no attention or model results" in n for n in notes)
        newest = json.loads(files[-1].read_text())["commit_hash"][:8]
        before = json.loads(files[-2].read_text())["commit_hash"][:8]
        page = (tmp_path / "out" / "s.md").read_text()
        assert f"the history and the changes end at {before}: the newer commit(s) {newest}" in page


@pytest.fixture
def alarm():
    """A hang fails the test instead of the run."""
    def fail(*_):
        raise TimeoutError("hung")
    old = signal.signal(signal.SIGALRM, fail)
    signal.alarm(60)
    yield
    signal.alarm(0)
    signal.signal(signal.SIGALRM, old)


def test_only_regular_files_are_read(tmp_path, capsys, base, alarm):
    """A FIFO hung the report; a link to /dev/zero or /dev/urandom passed the size check (0
    bytes) and was read until memory ran out."""
    results = tmp_path / "results"
    shutil.copytree(FIXTURE, results)
    d = results / MACHINE
    os.mkfifo(d / "fifo.json")
    os.symlink("/dev/zero", d / "zero.json")
    os.symlink("/dev/urandom", d / "random.json")
    os.symlink(tmp_path / "nowhere", d / "dangling.json")
    (d / "folder.json").mkdir()
    # the newest commit's file is a FIFO, so the summary falls back to the commit before
    code, notes = run(results, tmp_path / "out", capsys)
    assert code == 1
    for name in ("fifo", "zero", "random", "folder"):
        assert f"left out the file in {name}.json: not a regular file" in notes, notes
    assert [n for n in notes if n.startswith("left out the file in dangling.json: cannot be read")]
    assert tables(write_report(results, MACHINE, output=tmp_path / "o2" / "s.md", repo=None,
                               plots=False).report) == tables(base)
    # perfmodel track counts a commit's cells from the same files
    os.mkfifo(d / "0123abcd-virtualenv-fifo.json")
    os.symlink("/dev/zero", d / "0123abcd-virtualenv-zero.json")
    assert cell_counts(str(results), MACHINE, "0123abcd" + "0" * 32) == {
        "measured": 0, "n/a": 0, "failed": 0}


def test_the_size_limit_is_on_the_bytes_read(tmp_path):
    f = tmp_path / "f.json"
    f.write_bytes(b"x" * 101)
    assert read_bytes(f, 101) == b"x" * 101
    with pytest.raises(Unreadable, match="over the 100 bytes limit"):
        read_bytes(f, 100)


GRID_SCRIPT = """
import resource, sys, time
from perfmodel.cli import main
t = time.monotonic()
code = main(sys.argv[1:])
print("rss_mib", resource.getrusage(resource.RUSAGE_SELF).ru_maxrss // 1024,
      "seconds", round(time.monotonic() - t, 1), "code", code)
"""


def capped_report(results: Path, tmp_path: Path) -> tuple[int, int, str]:
    """perfmodel report in a process of its own with a 4 GiB address-space cap: (status, peak
    RSS in MiB, stderr); a regression fails here instead of taking the machine's memory."""
    def cap():
        resource.setrlimit(resource.RLIMIT_AS, (4 * 2**30, 4 * 2**30))
    t = time.monotonic()
    proc = subprocess.run([sys.executable, "-c", GRID_SCRIPT, "report", "--results", str(results),
                           "--machine", MACHINE, "--repo", str(ROOT), "-o",
                           str(tmp_path / "out" / "s.md"), "--no-plots"], capture_output=True,
                          text=True, timeout=120, preexec_fn=cap, cwd=tmp_path,
                          env=dict(os.environ, PYTHONPATH=str(ROOT)))
    assert "Traceback" not in proc.stderr, proc.stderr[-2000:]
    assert time.monotonic() - t < 60, proc.stdout
    words = proc.stdout.split()
    return (int(words[words.index("code") + 1]), int(words[words.index("rss_mib") + 1]),
            proc.stderr)


@pytest.mark.parametrize("seqs, note", [
    (1000, "params in benchmarks.json: over 500000 parameter cells"),  # the 10^6 cells
    (2000, "in {file}: benchmarks.json declares 80200 parameter cells, far more than the 200 "
           "values here"),
])
def test_a_declared_grid_far_larger_than_its_results_is_refused(tmp_path, seqs, note):
    """A benchmarks.json of about 100 KB declaring a million-cell grid for Attention took 7.45 GB
    and 9.5 minutes; now such a grid is refused with a note, in the memory and time of a plain
    report: over MAX_CELLS in benchmarks.json itself, else against each file's values (GRID_SLACK
    x the values + GRID_FLOOR)."""
    results = tmp_path / "results"
    shutil.copytree(FIXTURE, results)

    def grow(entry):
        if seqs == 1000:
            entry["params"][2] += [repr(i) for i in range(200, 300)]
        entry["params"][3] += [repr(i) for i in range(20000, 20000 + seqs)]
    bench_json(results, each_attention(grow))
    assert (results / "benchmarks.json").stat().st_size < 200_000
    code, rss, err = capped_report(results, tmp_path)
    assert code == 1 and rss < 1024, (code, rss)
    assert f"left out {ATT}time_forward " + note.format(file=result_files(results)[-1].name) \
        in err, err[-2000:]


def test_a_file_declaring_a_huge_grid_of_its_own_costs_nothing(tmp_path):
    """A results file whose own parameter lists multiply to 10^16 cells, all failed (result
    None): nothing is made that long."""
    results = tmp_path / "results"
    shutil.copytree(FIXTURE, results)

    def huge(doc):
        row = doc["results"][f"{ATT}time_forward"]
        row[doc["result_columns"].index("result")] = None
        row[doc["result_columns"].index("params")] = [[repr(f"v{i}") for i in range(10_000)]] * 4
    edit(result_files(results)[-1], huge)
    code, rss, err = capped_report(results, tmp_path)
    assert code == 0 and rss < 1024, (code, rss, err[-2000:])
