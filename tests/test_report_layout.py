"""The summary as one document (issue 20 item 5) and host-bound cells marked (issue 16 item 4).

The CPU fixture (tests/fixtures/asv_results) rendered as a newcomer reads it: section and table
numbers once each and in order, times in ms and memory in MiB only, n/a the one mark for "not
measured" (never a blank cell), no literal markup in our captions, one-line commit subjects, runs
of n/a rows folded. Host-bound cells: the fixture plus a track_issue_seconds_forward benchmark
(what the suite records on a GPU) at chosen shares of the step's time.
"""
from __future__ import annotations

import itertools
import json
import re
import shutil
from pathlib import Path

import pytest

pytest.importorskip("asv")
pytest.importorskip("pandas")

from perfmodel.names import BACKLOG_SHARE, HOST_BOUND_SHARE  # noqa: E402
from perfmodel.report.cells import HOST_BOUND_MARK, HOST_UNKNOWN_MARK  # noqa: E402
from perfmodel.report.page import write_report  # noqa: E402

FIXTURE = Path(__file__).parent / "fixtures" / "asv_results"
MACHINE = "fixture-cpu"
REPO = Path(__file__).resolve().parent.parent
ATT = "bench_attention.Attention."


@pytest.fixture(scope="module")
def written(tmp_path_factory):
    out = tmp_path_factory.mktemp("doc") / "summary.md"
    return write_report(FIXTURE, MACHINE, output=out, repo=REPO, plots=False, html=True)


def test_sections_and_tables_are_numbered_once_in_order(written):
    text = written.markdown.read_text()
    sections = re.findall(r"^## (\d+)\. (.+)$", text, re.M)
    assert [int(n) for n, _ in sections] == list(range(1, len(sections) + 1))
    assert len({name for _, name in sections}) == len(sections) >= 4
    # every table heading: Table <section>.<k>, k = 1, 2, ... under its section, titles unique
    current, k, titles = 0, 0, []
    for line in text.splitlines():
        if m := re.match(r"## (\d+)\. ", line):
            current, k = int(m.group(1)), 0
        elif m := re.match(r"### Table (\d+)\.(\d+)\. (.+)$", line):
            k += 1
            assert (int(m.group(1)), int(m.group(2))) == (current, k), line
            titles.append(m.group(3))
        else:
            assert not line.startswith("### "), line  # no table without its number
    assert len(titles) == len(set(titles)) == len(written.report.tables)
    html = written.html.read_text()
    assert len(re.findall(r"<h3 id=[^>]*>Table \d+\.\d+\. ", html)) == len(titles)
    # a CPU records no issue time: the legend says no cell can be marked, not "0 found"
    assert "No issue time is recorded at this commit" in text and written.report.issue_cells == 0


def test_one_unit_per_quantity_and_one_mark_for_not_measured(written):
    for t in written.report.tables:
        for c in t.columns:  # times in ms, memory in MiB: no column in seconds or bytes
            assert "(s)" not in c and "(bytes)" not in c, (t.title, c)
        for row in t.rows:
            for i, cell in enumerate(row):
                assert cell.lower() not in ("nan", "none", "ok", "-") or cell == "OK"
                # blank only where there is nothing to measure: the first change of a history
                assert cell != "" or (t.key, t.columns[i]) in {
                    ("history", "change vs previous"), ("compare", "status")}, (t.title, row)
        assert "ok" not in [r[-1] for r in t.rows]  # a status is spelt one way: OK


def test_no_literal_markup_and_one_line_subjects(written):
    r = written.report
    subjects = [i["subject"] for i in r.info.values()]
    assert subjects and all(len(s) <= 72 and "\n" not in s for s in subjects)
    for t in r.tables:
        caption = t.caption
        for s in subjects:  # data, escaped on the page; our own words must hold no markup
            caption = caption.replace(s, "")
        assert not re.search(r"[`*]", caption), (t.title, caption)
    history = r.table("history")
    assert all(len(row[3]) <= 72 for row in history.rows)


def test_runs_of_na_rows_fold_into_one_line(written):
    t = written.report.table("warmup")
    assert t.rows and all(any(c != "n/a" for c in row[7:]) for row in t.rows)
    assert re.fullmatch(r"n/a, \d+ rows not shown: Config .+; not run here at this commit .+\.",
                        t.folded)
    md = written.markdown.read_text()
    assert md.count(t.folded.split(":")[0]) == 1


# ------------------------------------------------------------------ host-bound cells

def with_host_figures(tmp_path: Path, shares: dict) -> Path:
    """The fixture with bench_attention.Attention.track_issue_seconds_forward,
    track_backlog_seconds_forward and track_free_seconds_forward at its newest commit: for each
    (impl, dtype, d, seq) in ``shares``, (issue, backlog, free: each a share of the cell's
    forward time or None); the other cells NaN (asv's n/a: nothing recorded)."""
    results = tmp_path / "results"
    shutil.copytree(FIXTURE, results)
    bench = json.loads((results / "benchmarks.json").read_text())
    path = sorted((results / MACHINE).glob("*.json"), key=lambda p: json.loads(
        p.read_text()).get("date", 0) if p.name != "machine.json" else 0)[-1]
    d = json.loads(path.read_text())
    cols = d["result_columns"]
    time = dict(zip(cols, d["results"][f"{ATT}time_forward"]))
    cells = list(itertools.product(*time["params"]))
    for k, figure in enumerate(("issue", "backlog", "free")):
        name = f"{ATT}track_{figure}_seconds_forward"
        bench[name] = dict(bench[f"{ATT}track_status_forward"], name=name, unit="seconds")
        values = [float("nan")] * len(cells)
        for (impl, dtype, dd, seq), pair in shares.items():
            i = cells.index((f"'{impl}'", f"'{dtype}'", str(dd), str(seq)))
            if pair[k] is not None:
                values[i] = pair[k] * time["result"][i]
        row = dict.fromkeys(cols)
        row.update(result=values, params=time["params"], version=bench[name]["version"])
        d["results"][name] = [row[c] for c in cols]
    (results / "benchmarks.json").write_text(json.dumps(bench))
    path.write_text(json.dumps(d))
    return results


def red_pixels(png: Path) -> int:
    """Pixels of the host-bound marker's pure red (matplotlib's own colours are never it)."""
    import matplotlib.image as mpimg  # noqa: PLC0415

    img = mpimg.imread(str(png))
    r, g, b = img[..., 0], img[..., 1], img[..., 2]
    return int(((r > 0.9) & (g < 0.15) & (b < 0.15)).sum())


def blue_pixels(png: Path) -> int:
    """Pixels of the not-told marker's pure blue (matplotlib's own colours are never it)."""
    import matplotlib.image as mpimg  # noqa: PLC0415

    img = mpimg.imread(str(png))
    r, g, b = img[..., 0], img[..., 1], img[..., 2]
    return int(((r < 0.15) & (g < 0.15) & (b > 0.9)).sum())


def test_host_bound_cells_are_marked_in_tables_plots_and_legend(tmp_path):
    share = HOST_BOUND_SHARE
    bound, free = ("eager", "float32", 64, 1024), ("sdpa", "float32", 64, 1024)
    # issued in most of its time, but the device still had a queue of work: not host-bound
    queued, untold = ("eager", "float32", 16, 1024), ("sdpa", "float32", 16, 1024)
    busy = ("flash_torch", "float32", 16, 1024)  # in doubt; its head-start step shows no wait
    results = with_host_figures(tmp_path, {bound: (share + 0.05, BACKLOG_SHARE / 2, 0.5),
                                           free: (share - 0.3, 0.7, None),
                                           queued: (share + 0.15, BACKLOG_SHARE * 2, None),
                                           untold: (share + 0.05, BACKLOG_SHARE / 2, None),
                                           busy: (share + 0.1, BACKLOG_SHARE / 2, 0.99)})
    w = write_report(results, MACHINE, output=tmp_path / "on" / "s.md", repo=REPO, plots=True,
                     html=True)
    got = {(r[0], r[1], r[2]): r for r in w.report.table("attention_float32").rows}
    on, off = got[("eager", "64", "1024")], got[("sdpa", "64", "1024")]
    assert on[4].endswith(HOST_BOUND_MARK) and not on[6].endswith(HOST_BOUND_MARK)  # fwd only
    assert not any(c.endswith(HOST_BOUND_MARK) for c in off)
    marked = [(t.key, c) for t in w.report.tables for row in t.rows for c in row
              if c.endswith(HOST_BOUND_MARK)]
    keys = {k for k, _ in marked}
    # the seed forms that show eager's forward time, and the speedup computed from it
    assert {"attention_float32", "seed000_eager_float32", "pivot_fwd_eager_float32",
            "seed002_flat_eager_float32", "compare_attention_float32"} <= keys
    assert not any(c.endswith(HOST_BOUND_MARK) for c in got[("eager", "16", "1024")])
    assert not any(c.endswith(HOST_BOUND_MARK) for c in got[("sdpa", "16", "1024")])
    assert not any(c.endswith(HOST_BOUND_MARK) for c in got[("flash_torch", "16", "1024")])
    # issued in most of its time with nothing recorded that tells: marked apart, forward only;
    # the step whose queue or head start cleared it carries neither mark
    untold_row = got[("sdpa", "16", "1024")]
    assert untold_row[4].endswith(HOST_UNKNOWN_MARK) and not untold_row[6].endswith(HOST_UNKNOWN_MARK)
    assert not any(c.endswith(HOST_UNKNOWN_MARK) for c in got[("eager", "16", "1024")] +
                   got[("flash_torch", "16", "1024")] + on + off)
    unknown = [c for t in w.report.tables for row in t.rows for c in row
               if c.endswith(HOST_UNKNOWN_MARK)]
    assert w.report.host_unknown == len(unknown) > 0
    assert w.report.host_bound == len(marked) > 0
    assert (w.report.bound_steps, w.report.issue_cells, w.report.unknown_steps) == (1, 5, 1)
    text = w.markdown.read_text()
    assert f"{HOST_BOUND_MARK} host-bound: the device waited on the host" in text
    assert "the host took at least 80% of the step's time to issue\nit" in text
    assert f"Host-bound here: 1 of the 5\nsteps whose issue time is recorded ({len(marked)} " \
        "marks" in text
    assert "1 of those steps took the host most of their time to issue, but the" in text
    assert f"They carry\n{HOST_UNKNOWN_MARK} ({len(unknown)} marks in the tables" in text
    assert f"{HOST_BOUND_MARK} host-bound" in w.html.read_text()
    on_png = tmp_path / "on" / "s_files" / "attention.png"

    # the control: the same results without a host-bound cell draw no red marker
    results2 = with_host_figures(tmp_path / "b", {bound: (share - 0.3, BACKLOG_SHARE / 2, None),
                                                  free: (share - 0.3, 0.7, None)})
    w2 = write_report(results2, MACHINE, output=tmp_path / "off" / "s.md", repo=REPO,
                      plots=True)
    assert w2.report.host_bound == w2.report.bound_steps == 0
    assert red_pixels(on_png) > 20 and red_pixels(tmp_path / "off" / "s_files" /
                                                  "attention.png") == 0
    assert w2.report.host_unknown == w2.report.unknown_steps == 0
    assert blue_pixels(on_png) > 20 and blue_pixels(tmp_path / "off" / "s_files" /
                                                    "attention.png") == 0
