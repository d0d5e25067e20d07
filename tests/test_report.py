"""perfmodel report: golden tables from a real asv run of the CPU tier, and bad input.

tests/fixtures/asv_results is what ``asv run --record-samples`` of the CPU tier wrote for three
commits of this repository (-b restricted: see tests/fixtures/README.md). Expected numbers are
read here independently with asv's own API (asv.results), not through perfmodel.report.
"""
from __future__ import annotations

import ast
import itertools
import math
import shutil
import statistics
from pathlib import Path

import pytest

pytest.importorskip("asv")
pytest.importorskip("pandas")
from asv import results as asv_results  # noqa: E402
from asv import util as asv_util  # noqa: E402

from perfmodel.cli import main  # noqa: E402
from perfmodel.errors import UserError  # noqa: E402
from perfmodel.report.page import build_report, render_markdown, write_report  # noqa: E402

FIXTURE = Path(__file__).parent / "fixtures" / "asv_results"
MACHINE = "fixture-cpu"
REPO = Path(__file__).resolve().parent.parent


def asv_files():
    return sorted(asv_results.iter_results_for_machine(str(FIXTURE), MACHINE),
                  key=lambda r: r.date)


def commits_in_git_order():
    import subprocess
    hashes = {r.commit_hash for r in asv_files()}
    out = subprocess.run(["git", "-C", str(REPO), "rev-list", "--all", "--topo-order", "--reverse"],
                         capture_output=True, text=True).stdout.split()
    if not hashes <= set(out):
        pytest.skip("the fixture's commits are not in this clone's history")
    return [h for h in out if h in hashes]


def benchmarks_json():
    return asv_util.load_json(str(FIXTURE / "benchmarks.json"))


def expected(commit, name, cell):
    """(median, mean, std) of one cell straight from asv's API; cell is a tuple of reprs."""
    bench = benchmarks_json()[name]
    res = next(r for r in asv_files() if r.commit_hash == commit)
    idx = list(itertools.product(*bench["params"])).index(cell)
    value = res.get_result_value(name, bench["params"])[idx]
    samples = res.get_result_samples(name, bench["params"])[idx]
    if samples:
        return value, statistics.fmean(samples), statistics.stdev(samples)
    return value, None, None


def ms(seconds):
    v = seconds * 1e3
    return f"{v:.3f}" if abs(v) < 100 else f"{v:.1f}"


@pytest.fixture(scope="module")
def report():
    order = commits_in_git_order()
    return build_report(FIXTURE, MACHINE, order[-1], history=10, repo=REPO)


def rows(table):
    return [dict(zip(table.columns, r)) for r in table.rows]


def test_fixture_is_a_real_asv_run():
    files = asv_files()
    assert len({r.commit_hash for r in files}) >= 2
    for r in files:  # asv wrote them: machine params and per-benchmark versions are there
        assert r.params["machine"] == MACHINE and r.benchmark_version


# seed 004's columns in its order, every time in ms as in every table
SEED_004 = ["Config", "Seq Len", "Warmup Steps", "d_model", "d_ff", "n_layers", "num_heads",
            "Status FWD", "Status FWD+BWD", "Total (ms) FWD", "Total (ms) FWD+BWD",
            "Warmup (ms) FWD", "Warmup (ms) FWD+BWD", "Avg/Step (ms) FWD", "Avg/Step (ms) FWD+BWD",
            "Std/Step (ms) FWD", "Std/Step (ms) FWD+BWD"]


def test_warmup_table_seed_004(report):
    t = report.table("warmup")
    assert t.columns == SEED_004  # seed 004's columns, in its order
    got = rows(t)
    ran = [r for r in got if r["Status FWD"] != "n/a"]
    assert {r["Warmup Steps"] for r in ran} == {"0", "1", "5"}
    for r in ran:
        cell = (f"'{r['Config']}'", r["Seq Len"], "'fwd'", r["Warmup Steps"])
        mean, _, _ = expected(report.commit, "bench_model.Warmup.track_step_mean", cell)
        std, _, _ = expected(report.commit, "bench_model.Warmup.track_step_std", cell)
        assert r["Status FWD"] == "OK"
        assert r["Avg/Step (ms) FWD"] == ms(mean) and r["Std/Step (ms) FWD"] == ms(std)
        # this fixture's suite did not record total and warm-up seconds: marked, not blank
        assert r["Total (ms) FWD"] == r["Warmup (ms) FWD+BWD"] == "n/a"
        from perfmodel.model import get_config
        assert r["d_model"] == str(get_config(r["Config"]).d_model)
    # the grid's cells this machine did not run are one line under the table, not rows of n/a
    assert got == ran
    grid = benchmarks_json()["bench_model.Warmup.track_status"]["params"]
    folded = len(grid[0]) * len(grid[1]) * len(grid[3]) - len(ran)
    assert t.folded.startswith(f"n/a, {folded} rows not shown: Config ")
    for preset in grid[0]:
        assert preset.strip("'") in t.folded or preset.strip("'") in {r["Config"] for r in ran}


def test_warmup_study_columns_come_from_the_recorded_steps(tmp_path):
    """A synthetic fixture: the fixture's newest file plus bench_model.Warmup.time_step with
    recorded samples (the 10 steps after the warm-up, in order), OOM at one cell. Seed 004's
    Warmup(s) for w is the sum of the first w steps of the warm-up-0 cell, Total(s) adds the
    cell's own 10 steps; Avg/Std are theirs."""
    import json  # noqa: PLC0415
    import statistics  # noqa: PLC0415

    results = copy_fixture(tmp_path)
    path = newest_file(results)
    bench = json.loads((results / "benchmarks.json").read_text())
    d = json.loads(path.read_text())
    status_key, key = "bench_model.Warmup.track_status", "bench_model.Warmup.time_step"
    base = dict(zip(d["result_columns"], d["results"][status_key]))
    cells = list(itertools.product(*base["params"]))
    bench[key] = dict(bench[status_key], name=key, type="time", unit="seconds")
    samples = [[0.5 + 0.01 * n + 0.001 * s for s in range(10)] if v == v else None
               for n, v in enumerate(base["result"])]
    medians = [statistics.median(x) if x else float("nan") for x in samples]
    row = dict.fromkeys(d["result_columns"])
    row.update(result=medians, params=base["params"], version=bench[key]["version"],
               samples=samples)
    d["results"][key] = [row[c] for c in d["result_columns"]]
    for old in ("track_step_mean", "track_step_std"):  # the suite before protocol 2
        d["results"].pop(f"bench_model.Warmup.{old}")
    oom = cells.index(("'nano'", "128", "'fwd_bwd'", "5"))
    d["results"][status_key][0][oom] = 2.0
    (results / "benchmarks.json").write_text(json.dumps(bench))
    path.write_text(json.dumps(d))
    w = write_report(results, MACHINE, commit=d["commit_hash"], output=tmp_path / "s.md",
                     repo=None, plots=False)
    got = {r["Warmup Steps"]: r for r in rows(w.report.table("warmup")) if r["Config"] == "nano"
           and r["Seq Len"] == "128"}
    cold = samples[cells.index(("'nano'", "128", "'fwd'", "0"))]
    for warm in (0, 1, 5):
        steps = samples[cells.index(("'nano'", "128", "'fwd'", str(warm)))]
        warmup = sum(cold[:warm])
        assert got[str(warm)]["Warmup (ms) FWD"] == ms(warmup)
        assert got[str(warm)]["Total (ms) FWD"] == ms(warmup + sum(steps))
        assert got[str(warm)]["Avg/Step (ms) FWD"] == ms(statistics.fmean(steps))
        assert got[str(warm)]["Std/Step (ms) FWD"] == ms(statistics.stdev(steps))
    assert got["5"]["Status FWD+BWD"] == "OOM" and got["5"]["Total (ms) FWD+BWD"] == "OOM"
    assert got["5"]["Avg/Step (ms) FWD+BWD"] == "OOM"


def test_model_table_seed_003(report):
    t = report.table("model")
    assert t.columns == ["Config", "d_model", "d_ff", "num_heads", "num_layers", "warmup_steps",
                         "benchmark_steps", "mean forward (ms)", "std forward (ms)",
                         "mean backward (ms)", "std backward (ms)"]
    r = rows(t)[0]
    frame = t.frame.iloc[0]
    cell = (f"'{r['Config']}'", "128", "'fp32'", "'sdpa'")
    _, mean, std = expected(report.commit, "bench_model.Model.time_forward", cell)
    assert math.isclose(frame["mean_fwd"], mean) and r["mean forward (ms)"] == ms(mean)
    _, mean_b, std_b = expected(report.commit, "bench_model.Model.time_backward", cell)
    assert r["mean backward (ms)"] == ms(mean_b) and r["std backward (ms)"] == ms(std_b)


def test_attention_tables_seed_001_000_002(report):
    t3 = report.table("attention_float32")
    assert t3.columns == ["method", "d_model", "seq_len", "status", "fwd mean (ms)",
                          "fwd std (ms)", "bwd mean (ms)", "bwd std (ms)", "mem before bwd (MiB)"]
    got = {(r["method"], r["d_model"], r["seq_len"]): r for r in rows(t3)}
    assert {"eager", "sdpa"} <= {k[0] for k in got}
    r = got[("eager", "64", "1024")]
    cell = ("'eager'", "'float32'", "64", "1024")
    _, mean, std = expected(report.commit, "bench_attention.Attention.time_forward", cell)
    assert r["status"] == "OK" and r["fwd mean (ms)"] == ms(mean) and r["fwd std (ms)"] == ms(std)
    mem, _, _ = expected(report.commit, "bench_attention.Attention.track_before_backward_bytes",
                         cell)
    assert r["mem before bwd (MiB)"] == f"{mem / 2**20:.2f}"

    t4 = report.table("seed000_eager_float32")
    assert t4.columns == ["d_model", "seq_len", "forward time (ms)", "memory after forward (MiB)",
                          "backward time (ms)"]
    r4 = {(r["d_model"], r["seq_len"]): r for r in rows(t4)}[("64", "1024")]
    assert r4["forward time (ms)"] == ms(mean)

    t5 = report.table("pivot_bwd_sdpa_float32")
    assert t5.columns[0] == "seq_len" and t5.columns[1:] == ["16", "64"]
    _, mean_b, _ = expected(report.commit, "bench_attention.Attention.time_backward",
                            ("'sdpa'", "'float32'", "16", "256"))
    assert dict(zip(t5.columns, t5.rows[0]))["16"] == ms(mean_b)


def test_comparison_table(report):
    t = report.table("compare_attention_float32")
    assert t.columns[:5] == ["d_model", "seq_len", "eager fwd (ms)", "eager bwd (ms)",
                             "eager mem (MiB)"]
    assert "sdpa fwd speedup (×)" in t.columns and "sdpa mem ratio (×)" in t.columns
    cell = lambda impl: (f"'{impl}'", "'float32'", "64", "1024")  # noqa: E731
    _, e, _ = expected(report.commit, "bench_attention.Attention.time_forward", cell("eager"))
    _, s, _ = expected(report.commit, "bench_attention.Attention.time_forward", cell("sdpa"))
    row = {(r["d_model"], r["seq_len"]): r for r in rows(t)}[("64", "1024")]
    assert row["sdpa fwd speedup (×)"] == f"{e / s:.2f}×"
    tv = report.table("compare_variant")
    assert tv.columns[:4] == ["Config", "Seq Len", "precision", "eager train step (ms)"]
    tp = report.table("compare_precision")
    assert all(r["bf16 fwd+bwd (ms)"] == "n/a" for r in rows(tp))  # CPU tier: fp32 only


def test_modes_timed_as_parts_of_a_train_step_say_so(report, tmp_path):
    """When benchmarks.json files the backward and forward+backward as parts of the train step
    (benchmarks/tiers.py SPLIT_TRAIN_STEP: their versions end in names.SPLIT_SUFFIX), the tables
    that show them say how they were timed; the shipped suite's do not."""
    import json

    from benchmarks import common  # noqa: PLC0415
    from perfmodel.names import SPLIT_SUFFIX  # noqa: PLC0415
    from perfmodel.report.cells import split_modes  # noqa: PLC0415

    assert common.SPLIT_SUFFIX == SPLIT_SUFFIX  # the suite states it for older commits too
    caption = lambda r, key: r.table(key).caption  # noqa: E731
    assert "part of a train step" not in caption(report, "model")
    assert "AdamW" not in caption(report, "compare_precision")
    dst = tmp_path / "results"
    shutil.copytree(FIXTURE, dst)
    bench = json.loads((dst / "benchmarks.json").read_text())
    for method in ("time_backward", "time_forward_backward"):
        bench[f"bench_model.Model.{method}"]["version"] += SPLIT_SUFFIX
    (dst / "benchmarks.json").write_text(json.dumps(bench))
    assert split_modes(bench) == ("bwd", "fwd_bwd")
    split = build_report(dst, MACHINE, commits_in_git_order()[-1], history=10, repo=REPO)
    assert "The backward is timed as part of a train step" in caption(split, "model")
    assert "includes AdamW's state" in caption(split, "compare_precision")


def test_history_and_changes(report):
    order = commits_in_git_order()
    t = report.table("history")
    assert t.columns == ["benchmark", "commit", "date", "subject", "value", "change vs previous"]
    import subprocess
    subject = subprocess.run(["git", "-C", str(REPO), "show", "-s", "--format=%s", order[-1]],
                             capture_output=True, text=True).stdout.strip()
    last = [r for r in rows(t) if r["commit"] == order[-1][:8]]
    # one line: the subject, cut at a word with an ellipsis when it is long
    shown = subject if len(subject) <= 72 else last[0]["subject"]
    assert len(shown) <= 72 and subject.startswith(shown.rstrip("…"))
    assert last and all(r["subject"] == shown for r in last)
    h = report.history_frame
    one = h[h["benchmark"] == h["benchmark"].iloc[0]].reset_index(drop=True)
    ok = one[one["status"] == "OK"]
    if len(ok) >= 2:
        a, b = ok.iloc[-2]["value"], ok.iloc[-1]["value"]
        assert math.isclose(ok.iloc[-1]["change"], b / a - 1)
    t8 = report.table("compare")
    assert t8.columns[:2] == ["change", "benchmark"] and order[-2][:8] in t8.title
    kinds = [r["change"] for r in rows(t8)]
    rank = {"new failure": 0, "regressed": 1, "regressed (status)": 1, "improved": 2,
            "slower (unconfirmed)": 1, "faster (unconfirmed)": 2,
            "improved (status)": 2, "fixed": 3, "none": 4}
    assert kinds == sorted(kinds, key=rank.get)  # regressions first


def test_markdown_and_cli(tmp_path, capsys):
    out = tmp_path / "s" / "summary.md"
    order = commits_in_git_order()
    assert main(["report", "--results", str(FIXTURE), "--machine", MACHINE, "--output", str(out),
                 "--repo", str(REPO), "--html", "--compare", order[0][:10], order[-1][:10]]) == 0
    text = out.read_text()
    for title in ("## 1. Model", "### Table 1.1. Model runs and warm-up", "## 2. Attention, float32",
                  "### Table 2.1. Attention forward and backward, float32", "## 3. History",
                  "## 4. Changes", "### Table 4.1. Changes from " + order[0][:8]):
        assert title in text
    for png in ("attention.png", "model.png", "history.png"):
        assert (out.parent / "summary_files" / png).stat().st_size > 1000
        assert f"summary_files/{png}" in text
    assert "<table>" in (out.parent / "summary.html").read_text()


# ------------------------------------------------------------------ bad input

def copy_fixture(tmp_path) -> Path:
    dst = tmp_path / "results"
    shutil.copytree(FIXTURE, dst)
    return dst


def newest_file(results: Path) -> Path:
    res = asv_files()[-1]
    return next((results / MACHINE).glob(f"{res.commit_hash[:8]}-*.json"))


def keep_only(results: Path, commit: str, keep) -> None:
    """Rewrites ``commit``'s results file in ``results`` with asv's API as if its run had timed
    only the benchmarks ``keep(name)`` accepts (asv's NaN for every cell of the others)."""
    path = next((results / MACHINE).glob(f"{commit[:8]}-*.json"))
    res = asv_results.Results.load(str(path))
    for name in res.get_all_result_keys():
        if not keep(name):
            res._results[name] = [float("nan")] * len(res._results[name])
    res.save(str(results))


def one_line_error(argv, capsys) -> str:
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert "Traceback" not in err and len(err.splitlines()) == 1
    return err


def test_missing_results_dir(tmp_path, capsys):
    err = one_line_error(["report", "--results", str(tmp_path / "nope"), "-o",
                          str(tmp_path / "s.md")], capsys)
    assert "no results directory" in err


def test_unknown_machine_and_commit(tmp_path, capsys):
    err = one_line_error(["report", "--results", str(FIXTURE), "--machine", "gpu-box", "-o",
                          str(tmp_path / "s.md")], capsys)
    assert "gpu-box" in err and MACHINE in err
    err = one_line_error(["report", "--results", str(FIXTURE), "--commit", "deadbeef", "-o",
                          str(tmp_path / "s.md")], capsys)
    assert "deadbeef" in err


def test_empty_machine(tmp_path, capsys):
    results = tmp_path / "results"
    (results / "box").mkdir(parents=True)
    shutil.copy(FIXTURE / MACHINE / "machine.json", results / "box" / "machine.json")
    shutil.copy(FIXTURE / "benchmarks.json", results / "benchmarks.json")
    import json
    info = json.loads((results / "box" / "machine.json").read_text())
    info["machine"] = "box"
    (results / "box" / "machine.json").write_text(json.dumps(info))
    err = one_line_error(["report", "--results", str(results), "-o", str(tmp_path / "s.md")],
                         capsys)
    assert "no readable results" in err


def test_truncated_file_is_left_out_and_the_rest_renders(tmp_path):
    results = copy_fixture(tmp_path)
    bad = newest_file(results)
    bad.write_text(bad.read_text()[:500])
    w = write_report(results, MACHINE, output=tmp_path / "s.md", repo=REPO, plots=False)
    assert any(bad.name in n for n in w.notes)
    assert w.report.commit != asv_files()[-1].commit_hash  # the newest readable commit instead
    assert "Attention forward and backward, float32" in (tmp_path / "s.md").read_text()
    assert bad.name in (tmp_path / "s.md").read_text()  # the note is in the summary too


def test_older_benchmark_version_is_not_compared(tmp_path):
    results = copy_fixture(tmp_path)
    path = newest_file(results)
    res = asv_results.Results.load(str(path))
    name = "bench_attention.Attention.time_forward"
    res._benchmark_version[name] = "0" * 64  # as if measured by another version of the benchmark
    res.save(str(results))
    w = write_report(results, MACHINE, commit=res.commit_hash, output=tmp_path / "s.md",
                     repo=REPO, plots=False)
    assert any(name in n and "older version" in n for n in w.notes)
    t3 = w.report.table("attention_float32")
    assert all(r["fwd mean (ms)"] in ("", "n/a") for r in rows(t3))
    assert any(r["bwd mean (ms)"] not in ("", "n/a") for r in rows(t3))  # the rest renders


def test_partial_cells_and_oom(tmp_path):
    """Cells not run show as n/a; a track_status of 2 shows as OOM (benchmarks/README.md)."""
    results = copy_fixture(tmp_path)
    path = newest_file(results)
    res = asv_results.Results.load(str(path))
    bench = benchmarks_json()
    cells = list(itertools.product(*bench["bench_attention.Attention.time_forward"]["params"]))
    i = cells.index(("'eager'", "'float32'", "64", "1024"))
    j = cells.index(("'sdpa'", "'float32'", "64", "1024"))
    for name in ("time_forward", "track_status_forward"):
        key = f"bench_attention.Attention.{name}"
        res._results[key][i] = 2.0 if name.startswith("track_status") else float("nan")
    for name in res.get_all_result_keys():  # sdpa at (64, 1024) not run at all
        if name.startswith("bench_attention.Attention."):
            res._results[name][j] = float("nan")
    res.save(str(results))
    w = write_report(results, MACHINE, commit=res.commit_hash, output=tmp_path / "s.md",
                     repo=REPO, plots=True)
    t3 = w.report.table("attention_float32")
    got = {(r["method"], r["d_model"], r["seq_len"]): r for r in rows(t3)}
    assert got[("eager", "64", "1024")]["status"] == "OOM"
    assert got[("eager", "64", "1024")]["fwd mean (ms)"] == "OOM"
    # the cell not run is not a row of n/a: the line under the table names it
    assert ("sdpa", "64", "1024") not in got
    assert t3.folded.startswith("n/a, 1 row not shown: method sdpa at d_model 64, each at "
                                "seq_len 1024; not run here at this commit")
    pivot = w.report.table("pivot_fwd_eager_float32")
    assert dict(zip(pivot.columns, pivot.rows[-1]))["64"] == "OOM"


def test_shipped_gpu_history_renders_without_mixing_protocols(tmp_path):
    """The H100 results in results/ were timed by older measurement protocols (labelled in their
    files): the summary leaves their times out, saying so per benchmark, and still renders their
    statuses and memory figures."""
    from perfmodel.report.page import write_report  # noqa: PLC0415

    root = Path(__file__).resolve().parents[1]
    machines = [p.name for p in (root / "results").iterdir() if p.is_dir() and
                p.name.startswith("nvidia-h100")] if (root / "results").is_dir() else []
    if not machines:
        pytest.skip("no H100 results shipped")
    out = write_report(results_dir=str(root / "results"), machine=machines[0], commit=None,
                       output=tmp_path / "summary.md", history=10, repo=str(root))
    text = (tmp_path / "summary.md").read_text()
    left = [n for n in out.notes if "older version of the benchmark" in n]
    assert {n.split()[2] for n in left} >= {"bench_attention.Attention.time_forward",
                                            "bench_model.Model.time_train_step"}
    assert not [n for n in out.notes if "not drawn" in n]
    assert "| sdpa | 64 | 4096 | OK |" in text  # the status is still there
    assert (tmp_path / "summary_files" / "attention.png").exists()


def test_seed_003_and_002_forms(report):
    """Seed 003's attention table (mean, std, peak memory) and its warm-up rows, seed 002's flat
    table: every cell that ran is a row, values from the same cells as the other tables."""
    flat = report.table("seed002_flat_eager_float32")
    assert flat.columns == ["d_model", "seq_len", "forward_ms", "backward_ms", "status"]
    mem = report.table("seed003_attention_eager_float32")
    assert mem.columns[-1] == "max_memory (MiB)" and len(mem.rows) == len(flat.rows) > 0
    seed001 = {(r["d_model"], r["seq_len"]): r for r in rows(report.table("attention_float32"))
               if r["method"] == "eager"}
    for r in rows(flat):
        assert r["forward_ms"] == seed001[(r["d_model"], r["seq_len"])]["fwd mean (ms)"]
    assert all(r[-1] not in ("", "nan") for r in mem.rows)
    warm = report.table("warmup_steps")
    assert {r["warmup_steps"] for r in rows(warm)} == {"0", "1", "5"}


def test_why_na_gives_every_na_time_its_reason(report):
    """The last table: every grid cell with an n/a time counted once, under the machine's tier's
    own reason when the tier leaves it out (benchmarks/tiers.py), else as in the tier without a
    time at this commit; counted here from asv's API and the tiers, not from the report."""
    from perfmodel.report.why_na import IN_TIER  # noqa: PLC0415
    from perfmodel.repo import load_tiers  # noqa: PLC0415

    tiers = load_tiers(str(REPO))
    commit = commits_in_git_order()[-1]
    res = next(r for r in asv_files() if r.commit_hash == commit)
    want: dict = {}
    grids: dict = {}
    for name, bench in benchmarks_json().items():
        parts = name.split(".")
        if not parts[-1].startswith("time_") or parts[-2] not in ("Attention", "Model", "Warmup"):
            continue
        grids.setdefault(parts[-2], (bench, []))[1].append(name)
    for cls, (bench, names) in grids.items():
        values = {n: res.get_result_value(n, bench["params"]) if n in res.get_all_result_keys()
                  else None for n in names}
        for i, cell in enumerate(itertools.product(*bench["params"])):
            na = any(v is None or v[i] is None or math.isnan(v[i]) for v in values.values())
            if not na:
                continue
            params = {k: ast.literal_eval(v) for k, v in zip(bench["param_names"], cell)}
            why = tiers.why_not_on("cpu", cls, params) or IN_TIER
            want[(cls, why)] = want.get((cls, why), 0) + 1
    table = report.table("why_na")
    got = {(r["class"], r["why n/a"]): int(r["grid cells"]) for r in rows(table)}
    assert got == want
    assert any(why != IN_TIER for _, why in got)  # the tier's own reasons are there
    assert table.number.startswith(f"{len(report.sections)}.")  # the summary's last section


@pytest.fixture(scope="module")
def shipped_h200():
    """The default summary of the H200 history in results/ (skipped where none is shipped)."""
    root = Path(__file__).resolve().parents[1]
    machines = [p.name for p in (root / "results").iterdir() if p.is_dir() and
                p.name.startswith("nvidia-h200")] if (root / "results").is_dir() else []
    if not machines:
        pytest.skip("no H200 results shipped")
    return build_report(results_dir=str(root / "results"), machine=machines[0], repo=str(root))


def test_why_na_on_the_shipped_gpu_history(shipped_h200):
    """At the shipped H200 commit: a compiled model beyond `small` is n/a with the GPU tier's
    reason, and nothing the commit measured is listed."""
    out = shipped_h200
    got = {(r["class"], r["why n/a"]): r for r in rows(out.table("why_na"))}
    compiled = [r for (cls, why), r in got.items() if cls == "Model" and "compiled model" in why]
    assert len(compiled) == 1
    assert compiled[0]["which"] == "preset medium, large, xl, 2.7B (variant compiled)"
    assert not any("variant eager, sdpa" in r["which"] and "preset small" in r["which"]
                   for r in got.values())


def test_why_na_says_out_of_memory_where_the_suite_recorded_it():
    """The H100's 80 GB do not hold the 2.7B eager train step at ctx 1024 (ce03f94 recorded
    OOM for its three modes): their n/a times say so, not "skipped by the suite"."""
    from perfmodel.report.why_na import CHUNK_RAN, STATUS_REASONS  # noqa: PLC0415

    root = Path(__file__).resolve().parents[1]
    machines = [p.name for p in (root / "results").iterdir() if p.is_dir() and
                p.name.startswith("nvidia-h100")] if (root / "results").is_dir() else []
    if not machines:
        pytest.skip("no H100 results shipped")
    out = build_report(results_dir=str(root / "results"), machine=machines[0], repo=str(root),
                       commit="ce03f94")
    got = {(r["class"], r["why n/a"]): r["which"] for r in rows(out.table("why_na"))}
    assert got[("Model", STATUS_REASONS["OOM"])] == "preset 2.7B (context 1024 (variant eager))"
    assert ("Model", CHUNK_RAN) not in got
    oom = [r for r in out.table("compare_precision").rows if r[:3] == ["2.7B", "1024", "eager"]]
    assert len(oom) == 1 and oom[0].count("OOM") == 4  # fp32 and bf16 steps; the tables say it


def test_why_na_tells_a_gpu_chunk_never_run_from_a_cell_the_suite_skipped(tmp_path):
    """On a GPU, whose full tier runs in chunks each saved when it ends (benchmarks/tiers.py
    gpu_plan): an n/a cell of a chunk with no time at the commit says that chunk never ran here,
    by name; an n/a cell of a chunk that ran says the suite skipped it (or an older version)."""
    import json  # noqa: PLC0415

    from asv.runner import BenchmarkResult  # noqa: PLC0415

    from perfmodel.repo import load_tiers  # noqa: PLC0415
    from perfmodel.report.why_na import CHUNK_NEVER, CHUNK_RAN  # noqa: PLC0415

    tiers = load_tiers(str(REPO))
    shipped = next(p for p in (REPO / "results").iterdir() if p.name.startswith("nvidia-"))
    machine = tmp_path / "results" / shipped.name
    machine.mkdir(parents=True)
    shutil.copy(shipped / "machine.json", machine / "machine.json")
    shutil.copy(REPO / "results" / "benchmarks.json", tmp_path / "results" / "benchmarks.json")
    suite = json.loads((REPO / "results" / "benchmarks.json").read_text())
    commit = asv_util.check_output(["git", "rev-parse", "HEAD"], cwd=str(REPO)).strip()
    skipped = ("bench_model.Model.time_forward", ("'small'", "128", "'bf16'", "'eager'"))

    def value(name, cell):  # the model's eager/sdpa chunk ran (but one cell); nothing else did
        params = {k: ast.literal_eval(v) for k, v in zip(suite[name]["param_names"], cell)}
        kind = name.split(".")[1]
        if (name, cell) == skipped or tiers.gpu_chunk(kind, params) != "model eager, sdpa":
            return float("nan")
        return 0.01

    r = asv_results.Results({"machine": shipped.name, "python": "3.12"}, {}, commit,
                            1_700_000_000_000, "3.12", "virtualenv-py3.12", {})
    for name, bench in suite.items():
        if not isinstance(bench, dict) or not bench.get("params"):
            continue
        vals = [value(name, c) for c in itertools.product(*bench["params"])]
        r.add_result(bench, BenchmarkResult(result=vals, samples=[None] * len(vals),
                                            number=[None] * len(vals), errcode=0, stderr="",
                                            profile=None))
    r.save(str(tmp_path / "results"))
    out = build_report(results_dir=str(tmp_path / "results"), machine=shipped.name, repo=str(REPO))
    got = {(r["class"], r["why n/a"]): r["which"] for r in rows(out.table("why_na"))}
    assert got[("Model", CHUNK_RAN)] == "preset small (context 128 (precision bf16 (variant eager)))"
    never = {(cls, why) for cls, why in got if why.startswith(CHUNK_NEVER.split("{")[0])}
    assert ("Model", CHUNK_NEVER.format(chunk="model flash")) in never
    assert ("Model", CHUNK_NEVER.format(chunk="gate cells")) in never
    assert ("Warmup", CHUNK_NEVER.format(chunk="warm-up study")) in never
    assert ("Attention", CHUNK_NEVER.format(chunk="attention compiled")) in never
    assert not any("model eager, sdpa" in why for _, why in got)
    # the tier's own reasons stay where the tier leaves a cell out
    assert any("CPU tier only" in why for _, why in got)


def test_why_na_describes_its_cells_exactly():
    """The 'which' column names exactly the cells counted: a parameter that every value takes
    alike is left out, and a set is said as every cell but the rest when that is shorter."""
    from perfmodel.report.why_na import which_cells  # noqa: PLC0415

    names = ["preset", "context", "precision", "variant"]
    values = [["nano", "tiny", "small", "medium"], [128, 256], ["fp32", "bf16"],
              ["eager", "sdpa", "compiled"]]
    full = set(itertools.product(*values))
    tier = {c for c in full if (c[0], c[1]) in {("nano", 128), ("nano", 256), ("tiny", 128)}
            and c[2] == "fp32" and c[3] in ("eager", "sdpa")}
    assert which_cells(full - tier, names, values) == (
        "every cell but preset nano (precision fp32 (variant eager, sdpa)); "
        "preset tiny (context 128 (precision fp32 (variant eager, sdpa)))")
    compiled = {c for c in full if c[3] == "compiled" and c[0] != "small"}
    assert which_cells(compiled, names, values) == "preset nano, tiny, medium (variant compiled)"
    assert which_cells(full, names, values) == "every cell"
    assert which_cells({("tiny", 256, "bf16", "sdpa")}, names, values) == \
        "preset tiny (context 256 (precision bf16 (variant sdpa)))"


def test_tables_default_to_the_newest_commit_nearly_as_wide_as_any(tmp_path):
    """A GPU box runs its whole tier at some commits and the quick tier at the rest: by default
    the tables read the newest commit that measured nearly as many cells as the widest, while the
    history and the change table still end at the newest commit; asked for a commit, everything
    reads it. Counted here from asv's API."""
    order = commits_in_git_order()
    results = copy_fixture(tmp_path)
    # the newest commit: one benchmark's cells only
    keep_only(results, order[-1], lambda n: n == "bench_attention.Attention.time_forward")
    measured = {}
    for r in asv_results.iter_results_for_machine(str(results), MACHINE):
        bench = benchmarks_json()
        measured[r.commit_hash] = sum(
            1 for name in r.get_all_result_keys() if name in bench
            for v in r.get_result_value(name, bench[name]["params"])
            if v is not None and not math.isnan(v))
    assert measured[order[-1]] < 0.9 * max(measured.values())  # the fixture's commits are alike
    wide = next(c for c in reversed(order) if measured[c] >= 0.9 * max(measured.values()))
    assert wide != order[-1]

    report = build_report(results, MACHINE, history=10, repo=REPO)
    assert report.commit == wide
    assert report.newer is not None and report.newer.commit == order[-1]
    assert report.compare == (order[-2], order[-1])
    hist = report.history_frame
    assert order[-1] in set(hist["commit"]) and hist["commit"].iloc[-1] == order[-1]
    text = render_markdown(report)
    assert f"the history and the changes run to {order[-1][:8]}" in text
    assert report.table("why_na")  # the tables are the wide commit's: few n/a
    asked = build_report(results, MACHINE, order[-1], history=10, repo=REPO)
    assert asked.commit == order[-1] and asked.newer is None
    assert "the history and the changes run to" not in render_markdown(asked)
    plain = build_report(FIXTURE, MACHINE, history=10, repo=REPO)
    assert plain.commit == order[-1] and plain.newer is None


def test_a_class_run_alone_at_a_newer_commit_is_read_for_that_classs_tables(tmp_path):
    """A GPU box ran the model's chunks alone at the newest commit (after a change of the model's
    benchmarks), the commit before it ran only the attention's forward, and the commit before
    that everything: the model tables read the newest commit, the attention tables and the
    warm-up study the whole one, the page names both, and the change table compares the newest
    with the whole commit, not with the one before it that shares no cell with it. Values are
    read here with asv's API."""
    order = commits_in_git_order()
    if len(order) < 3:
        pytest.skip("the fixture has fewer than three commits")
    results = copy_fixture(tmp_path)
    keep_only(results, order[-1], lambda n: ".Model." in n)
    keep_only(results, order[-2], lambda n: n == "bench_attention.Attention.time_forward")

    report = build_report(results, MACHINE, history=10, repo=REPO)
    assert report.commits == {"model": order[-1], "attention": order[-3], "warmup": order[-3]}
    assert report.commit == order[-1]
    assert report.compare == (order[-3], order[-1])
    r = rows(report.table("model"))[0]
    cell = (f"'{r['Config']}'", "128", "'fp32'", "'sdpa'")
    _, mean, _ = expected(order[-1], "bench_model.Model.time_forward", cell)
    assert r["mean forward (ms)"] == ms(mean)
    got = rows(report.table("attention_float32"))[0]
    cell = (f"'{got['method']}'", "'float32'", got["d_model"], got["seq_len"])
    _, mean, _ = expected(order[-3], "bench_attention.Attention.time_forward", cell)
    assert got["fwd mean (ms)"] == ms(mean)
    text = render_markdown(report)
    assert f"model at {order[-1][:8]}" in text and f"attention at {order[-3][:8]}" in text
    assert f"Commit {order[-3][:8]}" in text and "(the attention and warm-up study tables)" in text


def test_a_class_without_results_does_not_move_the_tables_commit(tmp_path):
    """No commit measured the warm-up study, and the newest measured one attention benchmark
    alone: the tables stay at the commit before it, the warm-up study's (empty) tables with
    them."""
    order = commits_in_git_order()
    results = copy_fixture(tmp_path)
    for commit in order:
        keep_only(results, commit, lambda n, newest=commit == order[-1]: ".Warmup." not in n and (
            not newest or n == "bench_attention.Attention.time_forward"))
    report = build_report(results, MACHINE, history=10, repo=REPO)
    assert report.commit == order[-2]
    assert report.commits == dict.fromkeys(("attention", "model", "warmup"), order[-2])


def test_a_run_of_a_few_chunks_does_not_end_the_history(tmp_path):
    """The newest commit measured only cells the commit before it did not (a GPU box's run of a
    few chunks): by default the history and the change table end at the commit before it, the
    page says why, and asked for, the newest commit is still read."""
    order = commits_in_git_order()
    results = copy_fixture(tmp_path)
    keep = "bench_attention.Attention.time_forward"
    keep_only(results, order[-1], lambda n: n == keep)  # newest: that benchmark alone
    keep_only(results, order[-2], lambda n: n != keep)  # before: all but it

    report = build_report(results, MACHINE, history=10, repo=REPO)
    assert report.compare == (order[-3], order[-2])
    assert report.history_frame["commit"].iloc[-1] == order[-2]
    assert any(f"end at {order[-2][:8]}" in n and order[-1][:8] in n for n in report.notes)
    assert build_report(results, MACHINE, order[-1], history=10, repo=REPO).commit == order[-1]


def test_shipped_gpu_summary_fills_the_warmup_form(shipped_h200):
    """The shipped H200 history holds the whole tier at one commit and the quick tier at newer
    ones: the default summary is the whole tier's, with the warm-up study's 0/1/5 rows for every
    seed preset (small..2.7B), OK."""
    out = shipped_h200
    warm = rows(out.table("warmup"))
    got = {(r["Config"], r["Warmup Steps"]) for r in warm
           if r["Status FWD"] == "OK" and r["Status FWD+BWD"] == "OK"}
    assert got >= {(p, w) for p in ("small", "medium", "large", "xl", "2.7B")
                   for w in ("0", "1", "5")}


def test_shipped_gpu_history_follows_headlines_with_a_line(shipped_h200):
    """The H200 box runs its whole tier at few commits and the quick tier at the others: the
    headlines are the cells with the longest history (the gate's), so each draws a line of 6 or
    more commits instead of a point, and every kind keeps a headline."""
    out = shipped_h200
    per = {}
    for r in rows(out.table("history")):
        per.setdefault(r["benchmark"], []).append(r["value"])
    assert any("Model.time_train_step" in b for b in per)
    assert any("Attention.time_backward('sdpa'" in b.replace("\\", "") for b in per)
    for bench, values in per.items():
        assert sum(v != "n/a" for v in values) >= 6, (bench, values)


def test_a_split_parts_host_bound_mark_ignores_the_whole_steps_backlog():
    """A backward timed as part of a train step carried the step's backlog (ce03f94 and
    before): issued in all of its time, it read "not host-bound" from a queue left at the end
    of the optimizer. The report reads such a part by its issue time and head-start step only:
    unknown without the latter, host-bound with it; a backward of its own keeps its backlog."""
    import pandas as pd  # noqa: PLC0415

    from perfmodel.names import NA, OK  # noqa: PLC0415
    from perfmodel.report.cells import cells  # noqa: PLC0415

    def frame(split, free):
        rows = [dict(kind="Model", commit="c", params={"preset": "large"}, measure="bwd",
                     role=role, value=value, status=OK if value == value else NA)
                for role, value in (("issue", 0.1075), ("backlog", 0.0204), ("free", free))]
        rows.append(dict(kind="Model", commit="c", params={"preset": "large"}, measure="bwd",
                         role="value", value=0.0778, status=OK, mean=0.0778, std=0.0,
                         n_samples=3, repeat=3, number=1))
        norm = pd.DataFrame(rows)
        norm.attrs.update(keys={"Model": ["preset"]}, split=split)
        row = cells(norm, "Model", "c").iloc[0]
        return bool(row["bwd_host_bound"]), bool(row["bwd_host_unknown"])

    nan = float("nan")
    assert frame((), nan) == (False, False)  # its own backlog: the device had a queue
    assert frame(("bwd", "fwd_bwd"), nan) == (False, True)  # the step's backlog: not told
    assert frame(("bwd", "fwd_bwd"), 0.0524) == (True, False)  # 77.8 ms against 52.4 alone


def test_a_split_train_step_is_marked_by_its_forward_backward_too():
    """A train step's own figures cannot clear a host-paced body: the optimizer's long kernels
    come last, leaving the device a queue (2.7B bf16 flash ctx 128 on an H100: issue 221.1 of
    294.0 ms, backlog 61.4) while it waited on the host before. Split, the step takes its
    forward+backward's verdict too: host-bound when that is, unknown when that is not told,
    not host-bound only when both say so; unsplit, its own figures alone."""
    import pandas as pd  # noqa: PLC0415

    from perfmodel.names import NA, OK  # noqa: PLC0415
    from perfmodel.report.cells import cells  # noqa: PLC0415

    def frame(split, body_free, body_issue=0.2010):
        figures = {"train": (0.2940, (("issue", 0.2211), ("backlog", 0.0614))),
                   "fwd_bwd": (0.2100, (("issue", body_issue), ("free", body_free)))}
        rows = []
        for measure, (value, roles) in figures.items():
            rows += [dict(kind="Model", commit="c", params={"preset": "2.7B"}, measure=measure,
                          role=role, value=v, status=OK if v == v else NA) for role, v in roles]
            rows.append(dict(kind="Model", commit="c", params={"preset": "2.7B"}, measure=measure,
                             role="value", value=value, status=OK, mean=value, std=0.0,
                             n_samples=3, repeat=3, number=1))
        norm = pd.DataFrame(rows)
        norm.attrs.update(keys={"Model": ["preset"]}, split=split)
        row = cells(norm, "Model", "c").iloc[0]
        return bool(row["train_host_bound"]), bool(row["train_host_unknown"])

    nan, split = float("nan"), ("bwd", "fwd_bwd")
    assert frame((), nan) == (False, False)            # unsplit: the backlog clears it
    assert frame(split, nan) == (False, True)          # its body not told: neither is the step
    assert frame(split, 0.1200) == (True, False)       # its body ran 1.75x faster queued ahead
    assert frame(split, 0.2050) == (False, False)      # both say the device did not wait
    assert frame(split, nan, body_issue=0.0500) == (False, False)  # a body with host to spare


def test_the_history_marks_a_split_train_step_by_its_forward_backward_too():
    """The history's mark is the tables' verdict (names.with_body): a train step that its own
    backlog would clear is marked when its forward+backward ran faster queued ahead, and
    unmarked when the suite does not split it."""
    from types import SimpleNamespace  # noqa: PLC0415

    import pandas as pd  # noqa: PLC0415

    from perfmodel.names import OK  # noqa: PLC0415
    from perfmodel.report.cells import HOST_BOUND_MARK  # noqa: PLC0415
    from perfmodel.report.history import history_table  # noqa: PLC0415

    model, cell = "bench_model.Model.", "'2.7B', 128, 'bf16', 'flash'"
    figures = {"time_train_step": 0.294, "track_issue_seconds_train_step": 0.2211,
               "track_backlog_seconds_train_step": 0.0614, "time_forward_backward": 0.210,
               "track_issue_seconds_forward_backward": 0.201,
               "track_free_seconds_forward_backward": 0.120}
    frame = pd.DataFrame([dict(benchmark=model + k, cell=cell, commit="c" * 40, status=OK,
                               value=v, unit="seconds") for k, v in figures.items()])
    rs = SimpleNamespace(frame=frame, commits=pd.DataFrame(dict(commit=["c" * 40],
                                                                date=[pd.Timestamp("2026-12-07")])))
    heads = [dict(benchmark=model + "time_train_step", cell=cell)]

    def mark(split):
        norm = pd.DataFrame()
        norm.attrs["split"] = split
        tables, h = history_table(rs, norm, "c" * 40, ["c" * 40], 10,
                                  {"c" * 40: dict(subject="s")}, heads)
        assert tables[0].rows[0][4].endswith(HOST_BOUND_MARK) == bool(h.iloc[0]["host_bound"])
        return bool(h.iloc[0]["host_bound"])

    assert mark(("bwd", "fwd_bwd")) is True
    assert mark(()) is False


def test_the_history_marks_apart_a_step_whose_host_share_is_not_told():
    """A headline time issued in most of its step with no backlog or head-start step recorded
    may measure the host (a bf16 backward moved 1.3-2.2x between two H200 boxes with its host):
    the history marks it with the tables' not-told mark, and one with host to spare with none."""
    from types import SimpleNamespace  # noqa: PLC0415

    import pandas as pd  # noqa: PLC0415

    from perfmodel.names import HOST_BOUND_SHARE, OK  # noqa: PLC0415
    from perfmodel.report.cells import HOST_BOUND_MARK, HOST_UNKNOWN_MARK  # noqa: PLC0415
    from perfmodel.report.history import history_table  # noqa: PLC0415

    model, cell, c = "bench_model.Model.", "'large', 256, 'bf16', 'eager'", "c" * 40
    heads = [dict(benchmark=model + "time_forward", cell=cell)]

    def row(issue_share):
        figures = {"time_forward": 0.100, "track_issue_seconds_forward": 0.100 * issue_share}
        frame = pd.DataFrame([dict(benchmark=model + k, cell=cell, commit=c, status=OK, value=v,
                                   unit="seconds") for k, v in figures.items()])
        rs = SimpleNamespace(frame=frame, commits=pd.DataFrame(
            dict(commit=[c], date=[pd.Timestamp("2026-12-07")])))
        tables, h = history_table(rs, pd.DataFrame(), c, [c], 10, {c: dict(subject="s")}, heads)
        return tables[0].rows[0][4], bool(h.iloc[0]["host_unknown"]), bool(h.iloc[0]["host_bound"])

    value, unknown, bound = row(HOST_BOUND_SHARE + 0.1)
    assert value.endswith(HOST_UNKNOWN_MARK) and unknown and not bound
    value, unknown, bound = row(HOST_BOUND_SHARE - 0.3)
    assert not value.endswith((HOST_UNKNOWN_MARK, HOST_BOUND_MARK)) and not unknown and not bound
