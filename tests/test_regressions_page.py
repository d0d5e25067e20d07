"""asv's Regressions page by the merge gate's rule (perfmodel/report/regressions.py, the publisher
GateVerdicts): a plain ``asv publish`` of the CPU fixture against the same with perfmodel's
plugins. asv's step detection lists what moved more than 5% between noisy levels; the page keeps
the jumps the gate's rule calls slower, each marked unconfirmed with the command that confirms
it, and every status that got worse."""
from __future__ import annotations

import json
import math
import shutil

import pytest

pytest.importorskip("asv")
pytest.importorskip("pandas")

from perfmodel import verdict as V  # noqa: E402
from perfmodel.report.load import load  # noqa: E402

from .test_site import FIXTURE, PLUGIN, asv_publish  # noqa: E402

MACHINE = "fixture-cpu"
STATUS = "bench_attention.Attention.track_status_forward"
CPU_FACTOR = 1.2  # benchmarks/tiers.py GATE["cpu"] (tests/test_verdict.py checks it)


def listed(html):
    return json.loads((html / "regressions.json").read_text())["regressions"]


def commits_by_revision(html) -> dict:
    """asv's revision (an int) -> commit hash, as the page reads it (index.json)."""
    index = json.loads((html / "index.json").read_text())
    return {int(rev): h for rev, h in index["revision_to_hash"].items()}


def jumps(entries, commit_of) -> dict:
    """(benchmark(cell), before commit or None, after commit) -> the entry's name."""
    return {(e[0].split(" (unconfirmed")[0], commit_of.get(j[0]), commit_of[j[1]]): e[0]
            for e in entries for j in e[6]}


def rows(results):
    f = load(str(results), MACHINE).frame
    return {(r["benchmark"], r["cell"], r["commit"]): r for r in f.to_dict("records")}


def before_commit(data, name, after, order):
    bench, cell = name[:-1].split("(", 1)
    earlier = [c for c in order[:order.index(after)] if (bench, cell, c) in data]
    return earlier[-1] if earlier else None


def measured(row):
    if row is None or row["status"] not in ("OK", "failed"):
        return V.Measured(math.nan)
    return V.Measured(None if row["status"] == "failed" else row["value"], row["stats"] or None,
                      row["samples"])


def test_the_page_keeps_what_the_gates_rule_calls_slower(tmp_path):
    plain = asv_publish(tmp_path, "plain", [])
    ours, out = asv_publish(tmp_path, "html", PLUGIN, with_output=True)
    commit_of = commits_by_revision(ours)
    order = [commit_of[r] for r in sorted(commit_of)]
    data = rows(tmp_path / "results")
    asv_jumps, kept = jumps(listed(plain), commit_of), jumps(listed(ours), commit_of)
    assert len(kept) < len(asv_jumps)  # asv lists moves the rule does not call slower
    assert set(kept) <= set(asv_jumps)
    expected = set()
    for (name, _, after) in asv_jumps:
        bench, cell = name[:-1].split("(", 1)
        before = before_commit(data, name, after, order)
        v = V.judge(measured(data.get((bench, cell, before))),
                    measured(data.get((bench, cell, after))), CPU_FACTOR,
                    status=".track_status" in bench, commits=(before or "", after))
        if v.change == V.SLOWER or (v.change == V.STATUS and v.worse):
            expected.add(name)
            a, b = data[(bench, cell, before)]["value"], data[(bench, cell, after)]["value"]
            assert b > a * CPU_FACTOR  # slower by the factor, read from the results
    assert {k[0] for k in kept} == expected
    assert expected, "the fixture's history has moves beyond 1.2 (1.40x)"
    for key, label in kept.items():  # one measurement per commit: unconfirmed, with a command
        before = before_commit(data, key[0], key[2], order)
        assert label == f"{key[0]} (unconfirmed: perfmodel gate {before[:8]} {key[2][:8]})"
    feed = (ours / "regressions.xml").read_text()
    assert feed.count("<entry>") == len(kept) and "(unconfirmed: perfmodel gate" in feed
    assert "Regressions page by the gate's rule" in out


def test_a_status_that_got_worse_stays_and_needs_no_command(tmp_path):
    results = tmp_path / "results"
    shutil.copytree(FIXTURE, results)
    files = sorted((results / MACHINE).glob("*-*.json"), key=lambda f: json.loads(f.read_text())[
        "date"])
    doc = json.loads(files[-1].read_text())
    values = doc["results"][STATUS][doc["result_columns"].index("result")]
    i = values.index(1.0)
    values[i] = 2.0  # OK -> OOM at the newest commit
    files[-1].write_text(json.dumps(doc))
    ours = asv_publish(tmp_path, "html", PLUGIN)
    names = [e[0] for e in listed(ours) if e[0].startswith(STATUS)]
    assert len(names) == 1 and "unconfirmed" not in names[0], listed(ours)


def test_a_machine_whose_results_cannot_be_read_is_a_warning_not_a_traceback(tmp_path):
    from types import SimpleNamespace  # noqa: PLC0415

    from perfmodel.report.regressions import judge_regressions  # noqa: PLC0415

    results = tmp_path / "results"
    results.mkdir()
    shutil.copy(FIXTURE / "benchmarks.json", results)
    html = tmp_path / "html"
    html.mkdir()
    entry = [f"{STATUS}('eager', 'float32', 16, 256)", "graphs/m/x.json", {}, 0, 2.0, 1.0,
             [[None, 1, 1.0, 2.0]]]
    (html / "regressions.json").write_text(json.dumps({"regressions": [entry]}))
    graphs = [("graphs/m/x", SimpleNamespace(path="graphs/m/x", params={"machine": "gone"}))]
    lines = judge_regressions(html, results, ".", {}, graphs, {"a" * 40: 0, "b" * 40: 1})
    assert listed(html) == []
    assert [line for line in lines if line.startswith("warning: gone: its steps left out")]


def test_the_commit_before_a_step_is_the_last_with_a_value():
    from perfmodel.report.regressions import _Machine  # noqa: PLC0415

    m = object.__new__(_Machine)
    rows = {0: {"status": "OK", "commit": "a"}, 1: {"status": "n/a", "commit": "b"},
            2: {"status": "OK", "commit": "c"}}
    m.rows = {("bench.A.time_x", "1"): rows}
    before, after = m.pair("bench.A.time_x", "1", None, 2)
    assert before["commit"] == "a" and after["commit"] == "c"  # asv's graph skips the n/a
    assert m.pair("bench.A.time_x", "1", 1, 2)[0]["commit"] == "b"  # asv named it: as named
