"""Table 8 (the summary's changes) by the merge gate's rule, perfmodel.verdict (issue 20 item 2):
on the CPU fixture, on the shipped H200 history, and with planted changes."""
from __future__ import annotations

import itertools
import json
import shutil
from pathlib import Path

import pytest

pytest.importorskip("asv")
pytest.importorskip("pandas")

from perfmodel.report.page import build_report  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
FIXTURE = ROOT / "tests" / "fixtures" / "asv_results"
CPU_MACHINE = "fixture-cpu"
H200 = "nvidia-h200-drv580.159.04-cu13.0-torch2.11.0cu130-triton3.6.0-tf32off"
GATE_CELL = "bench_attention.Attention.time_forward", ("'eager'", "'float32'", "128", "4096")


def changes(results, machine):
    report = build_report(results_dir=str(results), machine=machine, repo=str(ROOT))
    table = report.table("compare")
    return report, table, [dict(zip(table.columns, r)) for r in table.rows]


def result_files(results: Path, machine: str) -> list[Path]:
    files = [f for f in (results / machine).glob("*.json") if f.name != "machine.json"]
    return sorted(files, key=lambda f: json.loads(f.read_text())["date"])


def scale(results: Path, path: Path, name: str, cell: tuple, by: float) -> None:
    """Multiply one cell's value, samples and stats by ``by`` (a planted change)."""
    params = json.loads((results / "benchmarks.json").read_text())[name]["params"]
    i = list(itertools.product(*params)).index(cell)
    doc = json.loads(path.read_text())
    cols = doc["result_columns"]
    row = doc["results"][name]
    row[cols.index("result")][i] *= by
    row[cols.index("samples")][i] = [x * by for x in row[cols.index("samples")][i]]
    for k in ("stats_ci_99_a", "stats_ci_99_b", "stats_q_25", "stats_q_75"):
        row[cols.index(k)][i] *= by
    path.write_text(json.dumps(doc))


def test_cpu_fixture_moves_are_unconfirmed_beyond_the_cpu_factor():
    report, table, rows = changes(FIXTURE, CPU_MACHINE)
    a, b = report.compare
    assert "1.2" in table.caption and "CPU" in table.caption
    moved = [r for r in rows if r["change"] in ("slower (unconfirmed)", "faster (unconfirmed)")]
    assert moved, rows  # this history has moves beyond 1.2 (1.40x, 0.39x)
    assert not [r for r in rows if r["change"] in ("regressed", "improved")]  # none confirmed
    for r in moved:
        assert r["note"] == f"unconfirmed: perfmodel gate {a[:8]} {b[:8]}"
        ratio = float(r["ratio"].rstrip("×"))
        assert ratio > 1.2 if r["change"].startswith("slower") else ratio < 1 / 1.2
    # what asv's default 1.1 flagged between 1.1 and 1.2 is not listed at the gate's 1.2
    f = report_frame(report, a, b)
    between = [n for n, ratio in f.items() if 1.1 < ratio <= 1.2 or 1 / 1.2 <= ratio < 1 / 1.1]
    assert between, f  # the fixture has such cells; none is in the table
    assert not {r["benchmark"] for r in rows} & set(between)


def report_frame(report, a, b) -> dict:
    """benchmark(cell) -> after/before for every cell OK at both commits (read from the results
    through perfmodel's loader, independently of table 8)."""
    from perfmodel.report.load import load  # noqa: PLC0415

    f = load(str(FIXTURE), CPU_MACHINE).frame
    f = f[f["status"] == "OK"]
    va = {(r.benchmark, r.cell): r.value for r in f[f["commit"] == a].itertuples()}
    vb = {(r.benchmark, r.cell): r.value for r in f[f["commit"] == b].itertuples()}
    return {f"{k[0]}({k[1]})": vb[k] / va[k] for k in set(va) & set(vb) if va[k]}


def test_status_changes_and_failures_are_listed_as_regressions(tmp_path):
    results = tmp_path / "results"
    shutil.copytree(FIXTURE, results)
    newest = result_files(results, CPU_MACHINE)[-1]
    doc = json.loads(newest.read_text())
    cols = doc["result_columns"]
    status = doc["results"]["bench_attention.Attention.track_status_forward"][cols.index("result")]
    i = status.index(1.0)
    status[i] = 2.0  # OK -> OOM
    times = doc["results"]["bench_attention.Attention.time_backward"][cols.index("result")]
    j = next(k for k, v in enumerate(times) if isinstance(v, float) and v == v)
    times[j] = None  # a failure
    newest.write_text(json.dumps(doc))
    _, _, rows = changes(results, CPU_MACHINE)
    kinds = {r["change"] for r in rows}
    assert {"regressed (status)", "new failure"} <= kinds, rows
    oom = next(r for r in rows if r["change"] == "regressed (status)")
    assert oom["note"] == "OK → OOM"


@pytest.fixture()
def h200(tmp_path):
    results = tmp_path / "results"
    (results).mkdir()
    shutil.copy(ROOT / "results" / "benchmarks.json", results)
    shutil.copytree(ROOT / "results" / H200, results / H200)
    return results


def status_fixed(rows) -> list:
    """The rows of cells whose status went from failed to OK (a benchmark process that died
    before the suite's code ran at the earlier commit: 2.7B ctx 1024 on the H200 at 43f6446)."""
    return [r for r in rows if r["change"] == "improved (status)" and r["note"] == "failed → OK"]


def test_shipped_h200_history_shows_nothing(h200):
    report, table, rows = changes(h200, H200)
    assert "1.05" in table.caption and "GPU" in table.caption
    fixed = status_fixed(rows)  # no slowdown, no regression: at most failures that went away
    assert [r["change"] for r in rows if r not in fixed] == ([] if fixed else ["none"]), rows


def measures(path: Path, results: Path, name: str, cell: tuple) -> bool:
    params = json.loads((results / "benchmarks.json").read_text())[name]["params"]
    i = list(itertools.product(*params)).index(cell)
    doc = json.loads(path.read_text())
    row = doc["results"].get(name)
    return bool(row) and row[doc["result_columns"].index("samples")][i] is not None


def test_a_planted_ten_percent_on_a_h200_gate_cell_is_listed_unconfirmed(h200):
    # the newest commit that measured the gate's cells, made the newest commit: a newer run of
    # a few chunks without them (the compiled chunks at 5bb295b) is compared on its own cells
    files = result_files(h200, H200)
    newest = [f for f in files if measures(f, h200, *GATE_CELL)][-1]
    for later in files[files.index(newest) + 1:]:
        later.unlink()
    scale(h200, newest, *GATE_CELL, 1.10)
    report, _, rows = changes(h200, H200)
    a, b = report.compare
    name = f"{GATE_CELL[0]}({', '.join(GATE_CELL[1])})"
    assert [(r["change"], r["benchmark"], r["note"]) for r in rows
            if r not in status_fixed(rows)] == [
        ("slower (unconfirmed)", name, f"unconfirmed: perfmodel gate {a[:8]} {b[:8]}")]


def test_without_the_gates_settings_table_8_is_a_note_not_an_error(monkeypatch):
    from perfmodel.errors import UserError  # noqa: PLC0415
    from perfmodel.report import gaterule  # noqa: PLC0415

    def missing(repo):
        raise UserError("no benchmarks/tiers.py (the gate's settings)")
    monkeypatch.setattr(gaterule, "_tiers_path", missing)
    report = build_report(results_dir=str(FIXTURE), machine=CPU_MACHINE, repo=str(ROOT))
    assert "compare" not in {t.key for t in report.tables} and report.left_out >= 1
    assert [n for n in report.notes if "change table" in n and "tiers.py" in n], report.notes
    assert report.internal == 0
