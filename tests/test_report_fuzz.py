"""Seeded fuzzing of the report with hostile results trees, each read by ``perfmodel report``
(the CLI's main) in one worker process under a 4 GiB address-space cap:

- shapes: 4 x 40 files of mutated JSON (keys dropped or renamed, lists cut, odd values, garbage)
  beside the real fixture, each under a commit hash of its own;
- values (issue 19): 3 x 20 files with wrong types, zeros, negative and huge numbers, renamed,
  mixed-type and unhashable parameters, version bumps, empty results, escape sequences, an odd
  date or machine, and entries that are not regular files (FIFO, links to /dev/zero and
  /dev/urandom, a dangling link, a folder) and a file name of escapes;
- trees: benchmarks.json and machine.json changed whole (a parameter renamed, of mixed types,
  unhashable or named like a column; versions bumped for all or one class; a grid far larger
  than its results; names of escapes; machine fields of the wrong type, an array; all results
  empty).

Every tree checks: no traceback (and no internal-error status 3), the tables the change does not
touch as the fixture gives them, nothing written outside the output folder, no control or
bidirectional character on the terminal, and the worker's peak RSS under RSS_MIB after it.
About a minute in all on 2 cores.
"""
from __future__ import annotations

import hashlib
import json
import os
import random
import re
import resource
import shutil
import subprocess
import sys
import unicodedata
from pathlib import Path

import pytest

pytest.importorskip("asv")
pytest.importorskip("pandas")

FIXTURE = Path(__file__).parent / "fixtures" / "asv_results"
MACHINE = "fixture-cpu"
ROOT = Path(__file__).resolve().parent.parent
SEED, BATCHES, PER_BATCH = 20261123, 4, 40
ODD = [None, True, -1, 0, 2**70, 1e308, float("inf"), float("-inf"), float("nan"), "",
       "x" * 50, "--output=/tmp/x", "<script>", [], [[]], {}, {"a": 1}, [1, "a"], 3.5]


def _paths(obj, path=()):
    """Every (path, value) in a JSON tree (lists of numbers are sampled, not walked whole)."""
    yield path, obj
    if isinstance(obj, dict):
        for k, v in obj.items():
            yield from _paths(v, path + (k,))
    elif isinstance(obj, list):
        idx = range(len(obj)) if len(obj) <= 8 else [0, 1, len(obj) // 2, len(obj) - 1]
        for i in idx:
            yield from _paths(obj[i], path + (i,))


def _set(obj, path, value):
    for p in path[:-1]:
        obj = obj[p]
    obj[path[-1]] = value


def mutate(doc: dict, rng: random.Random) -> str:
    """One results file's text with 1-3 random mutations (or garbage)."""
    d = json.loads(json.dumps(doc))  # a deep copy (copy.deepcopy is ten times slower here)
    roll = rng.random()
    if roll < 0.08:  # cut short
        text = json.dumps(d)
        return text[:rng.randrange(len(text))]
    if roll < 0.12:  # garbage
        return "".join(rng.choice('{}[]":,0123456789aeNInfity \n') for _ in range(rng.randrange(200)))
    for _ in range(rng.randint(1, 3)):
        paths = [p for p, _ in _paths(d) if p]
        path = rng.choice(paths)
        op = rng.random()
        try:
            if op < 0.55:
                _set(d, path, rng.choice(ODD))
            elif op < 0.7:  # a key dropped
                parent = d
                for p in path[:-1]:
                    parent = parent[p]
                del parent[path[-1]]
            elif op < 0.85:  # a list cut short or grown
                parent = d
                for p in path[:-1]:
                    parent = parent[p]
                if isinstance(parent, list):
                    parent.append(parent[0]) if rng.random() < 0.5 else parent.pop()
            else:  # a key renamed
                parent = d
                for p in path[:-1]:
                    parent = parent[p]
                if isinstance(parent, dict):
                    parent[f"{path[-1]}_"] = parent.pop(path[-1])
        except (KeyError, IndexError, TypeError):
            pass
    return json.dumps(d)


def tree(root: Path, skip: Path) -> dict[str, str]:
    """sha256 of every regular file under root but in skip (a FIFO or a link to a device is
    named, never read)."""
    out = {}
    for p in sorted(root.rglob("*")):
        if skip in p.parents or p == skip or p.is_dir():
            continue
        rel = str(p.relative_to(root))
        is_file = p.is_file() and not p.is_symlink()
        out[rel] = hashlib.sha256(p.read_bytes()).hexdigest() if is_file else "not a file"
    return out


@pytest.fixture(scope="module")
def doc():
    """The newest results file of the fixture: every mutant starts from it."""
    newest = max((f for f in (FIXTURE / MACHINE).glob("*.json") if f.name != "machine.json"),
                 key=lambda f: json.loads(f.read_text())["date"])
    return json.loads(newest.read_text())


def batch(tmp_path: Path, doc: dict, rng: random.Random, n: int) -> Path:
    results = tmp_path / "results"
    shutil.copytree(FIXTURE, results)
    for i in range(n):
        d = dict(doc, commit_hash=f"{rng.getrandbits(160):040x}")
        (results / MACHINE / f"mutant{i:02d}.json").write_text(mutate(d, rng))
    return results


def _cli(results: Path, out: Path, cwd: Path):
    return subprocess.run([sys.executable, "-m", "perfmodel", "report", "--results", str(results),
                           "--machine", MACHINE, "--repo", str(cwd), "-o", str(out / "s.md"),
                           "--html", "--no-plots"], capture_output=True, text=True, timeout=120,
                          cwd=cwd, env={"PYTHONPATH": str(ROOT), "PATH": "/usr/bin:/bin",
                                        "MPLBACKEND": "Agg", "HOME": str(cwd)})


def test_mutated_results_through_the_cli(tmp_path, doc):
    rng = random.Random(SEED - 1)
    results = batch(tmp_path, doc, rng, 15)
    out = tmp_path / "out"
    before = tree(tmp_path, out)
    proc = _cli(results, out, tmp_path)
    assert "Traceback" not in proc.stderr, proc.stderr[-3000:]
    assert proc.returncode == 1, proc.stderr[-2000:]  # mutants were left out, the rest rendered
    assert (out / "s.html").is_file() and tree(tmp_path, out) == before

    # only mutants: a summary of what is readable, or one line saying nothing is
    for f in (results / MACHINE).glob("*-virtualenv-*.json"):
        f.unlink()
    before = tree(tmp_path, out)
    proc = _cli(results, out, tmp_path)
    assert "Traceback" not in proc.stderr, proc.stderr[-3000:]
    assert proc.returncode in (1, 2), proc.stderr[-2000:]
    if proc.returncode == 2:
        assert len(proc.stderr.strip().splitlines()) == 1
    assert tree(tmp_path, out) == before


# ------------------------------------------------------------------ values (issue 19)

NUMBERS = [0, 0.0, -1, -1e-9, -1e300, 1e300, 1e18, 1e19, 2**70, 10**30, None, True, "1", "",
           [1], {}, [[1]], float("nan")]
ESCAPES = "\x1b]0;owned\x07\x1b[2J\x9b31m\u202eevil\u2066"
VALUE_COLUMNS = ["result", "samples", "stats_ci_99_a", "stats_ci_99_b", "stats_q_25",
                 "stats_number", "stats_repeat"]
ATT = "bench_attention.Attention."


def value_mutant(doc: dict, rng: random.Random) -> str:
    """One results file with 1-3 value mutations: numbers of the wrong kind or range in any
    value column, a parameter renamed, of another type or unhashable, a version bump, empty
    results, escapes in keys and fields, an odd date or machine."""
    d = json.loads(json.dumps(doc))
    cols = d["result_columns"]
    for _ in range(rng.randint(1, 3)):
        key = rng.choice(sorted(d["results"]) or ["none"])
        row = d["results"].get(key)
        op = rng.random()
        if not isinstance(row, list):
            continue
        row += [None] * (len(cols) - len(row))  # asv leaves trailing empty columns out
        if op < 0.5:
            c = cols.index(rng.choice(VALUE_COLUMNS))
            value = rng.choice(NUMBERS)
            if isinstance(row[c], list) and row[c]:
                i = rng.randrange(len(row[c]))
                row[c][i] = [1.0, value] if c == cols.index("samples") and rng.random() < .5 \
                    else value
            else:
                row[c] = value
        elif op < 0.65:  # a parameter value renamed, of another type, unhashable
            own = row[cols.index("params")]
            if own:
                j = rng.randrange(len(own))
                i = rng.randrange(len(own[j]))
                own[j][i] = rng.choice(["'renamed'", "999", f"'{own[j][i]}'", f"[{own[j][i]}]",
                                        "None", "1e999", "{}", ESCAPES])
        elif op < 0.72:
            row[cols.index("version")] = rng.choice(["bumped", None, 1, ESCAPES])
        elif op < 0.77:
            d["results"] = {}
        elif op < 0.87:
            d["results"][f"bench_x.{ESCAPES}.time_forward"] = row
            d["env_name"] = rng.choice([d["env_name"], ESCAPES])
        elif op < 0.95:
            d["date"] = rng.choice([0, -5, 1e300, "x", ESCAPES])
        else:
            d["params"]["machine"] = rng.choice([ESCAPES, 1, None])
    return json.dumps(d)


def not_files(folder: Path) -> None:
    """Entries that are not regular files, and a file name of escapes."""
    os.mkfifo(folder / "fifo.json")
    os.symlink("/dev/zero", folder / "zero.json")
    os.symlink("/dev/urandom", folder / "random.json")
    os.symlink(folder / "nowhere", folder / "dangling.json")
    (folder / "dir.json").mkdir()
    (folder / f"{ESCAPES}.json").write_text("{")


def edit_json(path: Path, change) -> None:
    doc = json.loads(path.read_text())
    change(doc)
    path.write_text(json.dumps(doc))


def classes(prefix: str, change):
    def apply(doc):
        for name, entry in doc.items():
            if name.startswith(prefix) and isinstance(entry, dict):
                change(entry)
    return apply


def grow(entry):
    entry["params"][3] += [repr(i) for i in range(20000, 26000)]


# case -> (change to benchmarks.json / machine.json, the tables left as without it, status)
# titles without their numbers (a table missing renumbers the rest)
MODEL_TABLES = ("Model ",)
ATTENTION_TABLES = ("Attention ", "eager, ", "sdpa, ", "flash")
TREE_CASES = {
    "param_renamed": (lambda r: edit_json(r / "benchmarks.json", classes(ATT, lambda e: e[
        "param_names"].__setitem__(2, "dim"))), MODEL_TABLES, 1),
    "param_mixed": (lambda r: edit_json(r / "benchmarks.json", classes(ATT, lambda e: e[
        "params"][2].__setitem__(0, "'16'"))), MODEL_TABLES, 1),
    "param_unhashable": (lambda r: edit_json(r / "benchmarks.json", classes(
        "bench_model.", lambda e: e["params"][1].__setitem__(0, "[128]"))), ATTENTION_TABLES, 1),
    "param_clash": (lambda r: edit_json(r / "benchmarks.json", classes(
        "bench_model.", lambda e: e["param_names"].__setitem__(3, "status"))),
        ATTENTION_TABLES, 1),
    "version_bump_all": (lambda r: edit_json(r / "benchmarks.json", classes(
        "bench_", lambda e: e.update(version="new"))), (), 0),
    "version_bump_model": (lambda r: edit_json(r / "benchmarks.json", classes(
        "bench_model.", lambda e: e.update(version="new"))), ATTENTION_TABLES, 0),
    "huge_grid": (lambda r: edit_json(r / "benchmarks.json", classes(ATT, grow)),
                  MODEL_TABLES, 1),
    "escape_names": (lambda r: edit_json(r / "benchmarks.json", lambda d: d.update(
        {f"bench_x.E.time_{ESCAPES}": d[f"{ATT}time_forward"], ESCAPES: 5})),
        MODEL_TABLES + ATTENTION_TABLES, 1),
    "machine_values": (lambda r: edit_json(r / MACHINE / "machine.json", lambda d: d.update(
        ram="²", cpu=ESCAPES, os=7, num_cpu=None)), MODEL_TABLES + ATTENTION_TABLES, 1),
    "machine_array": (lambda r: (r / MACHINE / "machine.json").write_text("[1, 2]"),
                      MODEL_TABLES + ATTENTION_TABLES, 1),
    "results_empty": (lambda r: [edit_json(f, lambda d: d.update(results={})) for f in
                                 (r / MACHINE).glob("*-*.json")], (), 0),
}

WORKER = r"""
import contextlib, io, json, resource, sys, time, traceback
from perfmodel.cli import main
for line in sys.stdin:
    case = json.loads(line)
    print(json.dumps({"start": case["name"]}), flush=True)
    out, err, t = io.StringIO(), io.StringIO(), time.monotonic()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        try:
            code = main(case["argv"])
        except BaseException:
            code = "raised"
            err.write(traceback.format_exc())
    print(json.dumps({"name": case["name"], "code": code, "out": out.getvalue(),
                      "err": err.getvalue(), "seconds": round(time.monotonic() - t, 2),
                      "rss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss // 1024}),
          flush=True)
"""
RSS_MIB = 1024          # a report of the fixture peaks near 300 MiB
ADDRESS_SPACE = 4 << 30  # a runaway fails here instead of taking the machine's memory


def sections(md: str) -> dict[str, str]:
    """The summary's seed tables by title, without their numbers (history and changes depend on
    the other commits)."""
    out = {}
    for part in md.split("\n### ")[1:]:
        part = re.sub(r"^Table \d+\.\d+\. ", "", part)
        title = part.split("\n", 1)[0]
        # the history, the changes and why-n/a read every class (a change to one moves them)
        if not title.startswith(("History of the headline", "Changes from",
                                 "Why cells are n/a")):
            out[title] = part.split("\n## ", 1)[0].strip()
    return out


def control(text: str) -> list[str]:
    return sorted({repr(c) for c in text if c != "\n"
                   and unicodedata.category(c) in ("Cc", "Cf", "Zl", "Zp")})


def test_hostile_shapes_values_files_and_trees(tmp_path, doc):
    """Every tree through perfmodel report's main in one worker; the base tree (the fixture as
    it is) gives the tables each other tree must keep."""
    rng = random.Random(SEED + 19)
    trees = {}
    for b in range(BATCHES):  # JSON shapes: 40 mutated files beside the real fixture
        results = batch(tmp_path / f"shapes{b}", doc, random.Random(SEED + b), PER_BATCH)
        trees[f"shapes{b}"] = (results, MODEL_TABLES + ATTENTION_TABLES, None)
    for b in range(3):  # per-file value mutants beside the real fixture
        results = tmp_path / f"values{b}" / "results"
        shutil.copytree(FIXTURE, results)
        for i in range(20):
            d = dict(doc, commit_hash=f"{rng.getrandbits(160):040x}")
            (results / MACHINE / f"mutant{i:02d}.json").write_text(value_mutant(d, rng))
        if b == 0:
            not_files(results / MACHINE)
        trees[f"values{b}"] = (results, MODEL_TABLES + ATTENTION_TABLES, None)
    for name, (change, same, status) in TREE_CASES.items():
        results = tmp_path / name / "results"
        shutil.copytree(FIXTURE, results)
        change(results)
        trees[name] = (results, same, status)
    shutil.copytree(FIXTURE, tmp_path / "base" / "results")
    cases = [{"name": name, "argv": ["report", "--results", str(tmp_path / name / "results"),
                                     "--machine", MACHINE, "--commit", doc["commit_hash"],
                                     "--repo", str(ROOT), "-o", str(tmp_path / name / "out" /
                                                                    "s.md"), "--html"]
              + ([] if name == "shapes0" else ["--no-plots"])}  # plots of mutants once
             for name in ["base", *trees]]
    before = {name: tree(tmp_path / name, tmp_path / name / "out") for name in ["base", *trees]}

    def cap():
        resource.setrlimit(resource.RLIMIT_AS, (ADDRESS_SPACE, ADDRESS_SPACE))
    proc = subprocess.run([sys.executable, "-c", WORKER], input="".join(
        json.dumps(c) + "\n" for c in cases), capture_output=True, text=True, timeout=300,
        cwd=tmp_path, preexec_fn=cap, env={"PYTHONPATH": str(ROOT), "PATH": "/usr/bin:/bin",
                                           "MPLBACKEND": "Agg", "HOME": str(tmp_path)})
    done = {r["name"]: r for r in map(json.loads, proc.stdout.splitlines()) if "name" in r}
    started = [r["start"] for r in map(json.loads, proc.stdout.splitlines()) if "start" in r]
    assert len(done) == len(cases), (f"the worker died in case {started[-1]!r}",
                                     proc.stderr[-3000:])
    expected = sections((tmp_path / "base" / "out" / "s.md").read_text())
    assert done["base"]["code"] == 0 and len(expected) > 15
    for name, (results, same, status) in trees.items():
        r = done[name]
        assert r["code"] in (0, 1) and "Traceback" not in r["err"], (name, r["err"][-3000:])
        assert status is None or r["code"] == status, (name, r["code"], r["err"][-2000:])
        assert not control(r["out"] + r["err"]), (name, control(r["out"] + r["err"]))
        assert r["rss_mib"] < RSS_MIB, (name, r["rss_mib"])
        assert tree(tmp_path / name, tmp_path / name / "out") == before[name], name
        md = (tmp_path / name / "out" / "s.md").read_text()
        got = sections(md)
        assert (tmp_path / name / "out" / "s.html").read_text().count("<h3 id=") == \
            md.count("\n### "), name
        keep = {t: v for t, v in expected.items() if t.startswith(same)} if same else {}
        assert {t: got.get(t) for t in keep} == keep, name
        if status == 0 and not same:  # nothing comparable or nothing there: no seed table
            assert not got, name
