"""A few hundred mutated results files (seeded) through the report: nothing escapes as an
exception or a traceback, nothing outside the output folder changes, and every cell of the
unmutated files renders as it does without them.

The mutants go in batches of 40 into one results directory beside the real fixture, each under a
commit hash of its own, so one report reads 40 at a time (fast enough for CI).
"""
from __future__ import annotations

import hashlib
import json
import random
import subprocess
import sys
from pathlib import Path

import pytest

pytest.importorskip("asv")
pytest.importorskip("pandas")

from perfmodel.errors import UserError  # noqa: E402
from perfmodel.report.render import write_report  # noqa: E402

FIXTURE = Path(__file__).parent / "fixtures" / "asv_results"
MACHINE = "fixture-cpu"
ROOT = Path(__file__).resolve().parent.parent
SEED, BATCHES, PER_BATCH = 20261123, 6, 40
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
    return {str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(root.rglob("*")) if p.is_file() and skip not in p.parents}


def cells(report) -> dict:
    return {t.key: t.rows for t in report.tables if t.key not in ("history", "compare")}


@pytest.fixture(scope="module")
def base(tmp_path_factory):
    newest = max((f for f in (FIXTURE / MACHINE).glob("*.json") if f.name != "machine.json"),
                 key=lambda f: json.loads(f.read_text())["date"])
    doc = json.loads(newest.read_text())
    w = write_report(FIXTURE, MACHINE, commit=doc["commit_hash"], repo=None, plots=False,
                     output=tmp_path_factory.mktemp("base") / "s.md")
    return doc, cells(w.report)


def batch(tmp_path: Path, doc: dict, rng: random.Random, n: int) -> Path:
    import shutil  # noqa: PLC0415
    results = tmp_path / "results"
    shutil.copytree(FIXTURE, results)
    for i in range(n):
        d = dict(doc, commit_hash=f"{rng.getrandbits(160):040x}")
        (results / MACHINE / f"mutant{i:02d}.json").write_text(mutate(d, rng))
    return results


@pytest.mark.parametrize("b", range(BATCHES))
def test_mutated_results_in_process(tmp_path, base, b):
    doc, expected = base
    rng = random.Random(SEED + b)
    results = batch(tmp_path, doc, rng, PER_BATCH)
    out = tmp_path / "out"
    before = tree(tmp_path, out)
    try:
        w = write_report(results, MACHINE, commit=doc["commit_hash"], repo=None, plots=b == 0,
                         html=True, output=out / "s.md")
    except UserError as err:  # allowed: one line; but the good files are there, so not expected
        pytest.fail(f"batch {b}: {err}")
    assert tree(tmp_path, out) == before
    assert cells(w.report) == expected  # every cell of the good commit, as without mutants
    assert w.html.read_text().count("<table>") == len(w.report.tables)


def _cli(results: Path, out: Path, cwd: Path):
    return subprocess.run([sys.executable, "-m", "perfmodel", "report", "--results", str(results),
                           "--machine", MACHINE, "--repo", str(cwd), "-o", str(out / "s.md"),
                           "--html", "--no-plots"], capture_output=True, text=True, timeout=120,
                          cwd=cwd, env={"PYTHONPATH": str(ROOT), "PATH": "/usr/bin:/bin",
                                        "MPLBACKEND": "Agg", "HOME": str(cwd)})


def test_mutated_results_through_the_cli(tmp_path, base):
    doc, _ = base
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
