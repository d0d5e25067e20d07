"""The suite's tiers (benchmarks/tiers.py): what each machine measures, asv's selection of it,
and the order of a full GPU run; and the cost log's reading (perfmodel.suite_cost)."""
from __future__ import annotations

import gzip
import itertools
import json
import re
from collections import Counter, defaultdict
from pathlib import Path

from benchmarks import tiers

ROOT = Path(__file__).resolve().parents[1]


def _suite():
    """asv's view of the suite: benchmark name -> its params as asv writes them (reprs)."""
    from asv_runner.discovery import disc_benchmarks  # noqa: PLC0415

    return {b.name: b.params for b in disc_benchmarks(str(ROOT / "benchmarks"))}


def _selected(regexes: list[str], suite: dict) -> set[tuple[str, str]]:
    """(benchmark, params) pairs asv's -b selects, the way asv matches them."""
    out = set()
    for name, params in suite.items():
        for combo in itertools.product(*params):
            full = f"{name}({', '.join(combo)})"
            if any(re.search(r, full) for r in regexes):
                out.add((name, full[len(name):]))
    return out


def _expected(tier: str, suite: dict, keep=None) -> set[tuple[str, str]]:
    out = set()
    for kind, (module, _) in tiers.GRID.items():
        methods = [n for n in suite if n.startswith(f"{module}.{kind}.") and tiers.measures(tier, n)]
        assert methods, f"the suite has no benchmark of class {kind}"
        for cell in tiers.tier_cells(tier, kind):
            if keep is None or keep(kind, cell):
                out |= {(m, tiers.asv_params(kind, cell)) for m in methods}
    return out


def test_the_suite_takes_its_grid_from_the_tiers():
    suite = _suite()
    for kind, (module, grid) in tiers.GRID.items():
        for name, params in suite.items():
            if name.startswith(f"{module}.{kind}."):
                assert params == [[repr(v) for v in values] for values in grid.values()], name


def test_each_tier_selects_exactly_its_cells_in_every_method():
    suite = _suite()
    for tier in tiers.TIERS:
        assert _selected(tiers.selection(tier), suite) == _expected(tier, suite), tier


def test_the_cpu_tier_leaves_out_exactly_what_a_cpu_cannot_measure():
    """The CPU tier starts no process for a method a CPU skips: every memory figure (the suite
    tracks memory on a GPU only) and the host figures of a GPU step (names.HOST_FIGURES);
    every other method, and every method on a GPU, it runs."""
    from asv_runner.discovery import disc_benchmarks  # noqa: PLC0415

    from perfmodel.names import HOST_FIGURE_METHOD  # noqa: PLC0415

    found = {b.name: b for b in disc_benchmarks(str(ROOT / "benchmarks"))}
    left_out = set()
    for name, b in found.items():
        method = name.rsplit(".", 1)[-1]
        gpu_only = getattr(b, "unit", None) == "bytes" or re.fullmatch(HOST_FIGURE_METHOD, method)
        assert tiers.measures("cpu", name) == (not gpu_only), name
        assert all(tiers.measures(t, name) for t in tiers.TIERS if t not in tiers.CPU_TIERS)
        if gpu_only:
            left_out.add(method)
    assert {"track_gpu_peak_bytes_forward", "track_before_backward_bytes",
            "track_issue_seconds_train_step", "track_free_seconds_backward"} <= left_out


def test_tiers_are_nested_and_name_only_real_choices():
    from perfmodel.attention import IMPLEMENTATIONS  # noqa: PLC0415
    from perfmodel.model import PRESETS  # noqa: PLC0415
    from perfmodel.workloads import DTYPES, MODEL_MODES, PRECISIONS  # noqa: PLC0415

    grid = {k: g for k, (_, g) in tiers.GRID.items()}
    assert set(grid["Attention"]["impl"]) <= set(IMPLEMENTATIONS)
    assert set(grid["Attention"]["dtype"]) <= set(DTYPES)
    assert set(grid["Model"]["preset"]) | set(grid["Warmup"]["preset"]) <= set(PRESETS)
    assert set(grid["Model"]["precision"]) <= set(PRECISIONS)
    assert set(grid["Warmup"]["mode"]) <= set(MODEL_MODES)
    assert set(tiers.MODEL_VARIANTS) == set(grid["Model"]["variant"])
    assert {a for a, _ in tiers.MODEL_VARIANTS.values()} <= set(IMPLEMENTATIONS)
    for kind in tiers.GRID:
        quick = tiers.tier_cells("gpu-quick", kind)
        assert all(tiers.why_not("gpu", kind, c) is None for c in quick)
        assert tiers.tier_cells("cpu", kind), f"the CPU tier measures no {kind} cell"
    assert tiers.tier_cells("gpu-quick", "Attention") and tiers.tier_cells("gpu-quick", "Model")


def test_a_cell_outside_a_tier_says_why():
    cell = dict(preset="2.7B", context=1024, precision="bf16", variant="compiled")
    assert "small preset only" in tiers.why_not_on("cuda", "Model", cell)
    assert "CPU tier" in tiers.why_not_on("cpu", "Model", cell)
    assert tiers.why_not_on("cuda", "Model", dict(cell, variant="sdpa")) is None


def test_the_full_gpu_plan_covers_the_gpu_tier_once_gate_cells_first():
    suite = _suite()
    plan = tiers.gpu_plan()
    assert plan[0][0] == "gate cells" and plan[0][2] is None  # the class's 2 rounds
    assert all(rounds == tiers.HISTORY["rounds"] for _, _, rounds in plan[1:])
    seen: dict = {}
    for name, regexes, _ in plan:
        for pair in _selected(regexes, suite):
            assert pair not in seen, f"{pair} in chunks {seen[pair]!r} and {name!r}"
            seen[pair] = name
    assert set(seen) == _expected("gpu", suite)
    # gpu_chunk names the same chunk for each cell (the report's why-n/a goes by it)
    for kind in tiers.GRID:
        for cell in tiers.cells(kind):
            name = f"{tiers.GRID[kind][0]}.{kind}.time_x{tiers.asv_params(kind, cell)}"
            by_regex = [c for c, regexes, _ in plan if any(re.search(r, name) for r in regexes)]
            assert [tiers.gpu_chunk(kind, cell)] == (by_regex or [None]), (kind, cell)


def test_gated_cells_keep_the_gate_sampling():
    quick = tiers.tier_cells("gpu-quick", "Attention")[0]
    other = dict(quick, d=16)
    assert tiers.gated("cuda", "Attention", quick) and not tiers.gated("cuda", "Attention", other)
    assert all(tiers.gated("cpu", "Model", c) for c in tiers.tier_cells("cpu", "Model"))
    assert tiers.GATED["repeat_gpu"][0] >= 6 and tiers.GATED["rounds"] >= 2


def test_cost_log_keeps_each_process_last_line_and_splits_its_time(tmp_path):
    from perfmodel.suite_cost import phases, read, summary  # noqa: PLC0415

    first = {"benchmark": "Model", "params": ["'small'", "128", "'fp32'", "'sdpa'"], "pid": 7,
             "age_s": 2.0, "na": None,
             "cells": [{"cuda_init_s": 0.3, "build_s": 0.2, "first_step_s": 0.4, "warmup_s": 0.5,
                        "meter_s": 0.1, "samples": 1, "sampling_s": 0.5, "mode": "fwd"}]}
    last = json.loads(json.dumps(first))
    last["age_s"], last["cells"][0]["samples"], last["cells"][0]["sampling_s"] = 3.0, 2, 1.2
    na = {"benchmark": "Attention", "params": ["'eager'"], "pid": 8, "age_s": 0.02,
          "na": "outside", "cells": []}
    log = tmp_path / "cost.jsonl.gz"
    with gzip.open(log, "wt") as f:
        for rec in (first, last, na):
            f.write(json.dumps(rec) + "\n")
        f.write('{"benchmark": "Mod')  # a process killed mid-line
    records, bad = read([str(log)])
    assert bad == 1 and len(records) == 2
    timed = next(r for r in records if r["pid"] == 7)
    split = phases(timed)
    assert timed["age_s"] == 3.0 and abs(split["sampling_s"] - 1.2) < 1e-9
    assert abs(split["warmup_rest_s"] - 0.1) < 1e-9
    assert abs(sum(split.values()) - 3.0) < 1e-9  # what is not a phase is "other"
    text = summary(records, wall=10.0)
    assert "2 benchmark processes" in text and "| Model | timed | 1 | 3.0 |" in text
    assert "| Attention | n/a | 1 |" in text


def test_the_cost_log_carries_the_compile_caches_counts_and_the_summary_sums_them(tmp_path, monkeypatch):
    """A warm first step that still compiled is told from one that loaded by the caches' hits
    and misses (torch._dynamo's counters), written with each process's line and summed per
    group; other counters, and zeros, are left out."""
    import torch._dynamo.utils as dynamo_utils  # noqa: PLC0415

    from benchmarks import common  # noqa: PLC0415
    from perfmodel.suite_cost import read, summary  # noqa: PLC0415

    counters = defaultdict(Counter)
    monkeypatch.setattr(dynamo_utils, "counters", counters)
    counters["inductor"]["fxgraph_cache_hit"] = 2
    counters["inductor"]["fxgraph_cache_miss"] = 0
    counters["inductor"]["extern_calls"] = 6
    counters["aot_autograd"]["autograd_cache_miss"] = 1
    log = tmp_path / "cost.jsonl"
    monkeypatch.setenv(common.COST_LOG, str(log))
    common.log_cost("Attention", ("'compiled'", "'float32'", "64", "256"), None)
    line = json.loads(log.read_text())
    assert line["caches"] == {"inductor.fxgraph_cache_hit": 2, "aot_autograd.autograd_cache_miss": 1}
    records, _ = read([str(log)])
    text = summary(records)
    assert "| group | aot_autograd.autograd_cache_miss | inductor.fxgraph_cache_hit |" in text
    assert "| Attention compiled float32 | 1 | 2 |" in text


def test_a_history_run_samples_cpu_cells_as_history_and_keeps_the_gpu_gate_cells():
    quick = tiers.tier_cells("gpu-quick", "Attention")[0]
    other = dict(quick, d=16)
    cpu = tiers.tier_cells("cpu", "Attention")[0]
    assert tiers.repeat("cpu", "Attention", cpu) == tiers.GATED["repeat_cpu"]
    assert tiers.repeat("cpu", "Attention", cpu, history_run=True) == tiers.HISTORY["repeat_cpu"]
    for history_run in (False, True):
        assert tiers.repeat("cuda", "Attention", quick, history_run) == tiers.GATED["repeat_gpu"]
        assert tiers.repeat("cuda", "Attention", other, history_run) == tiers.HISTORY["repeat_gpu"]


def test_the_committed_benchmarks_json_is_the_suite_as_it_is():
    """asv publish reads results/benchmarks.json; every asv run rewrites it from benchmarks/. A
    stale copy shows up as a change in a fresh clone's `git status` after the README's main
    command. Regenerate it with any asv run (e.g. the README's), then commit it."""
    from asv_runner.discovery import disc_benchmarks  # noqa: PLC0415

    found = {b.name: (b.params, b.version, b.setup_cache_key)
             for b in disc_benchmarks(str(ROOT / "benchmarks"))}
    committed = json.loads((ROOT / "results" / "benchmarks.json").read_text())
    shipped = {name: (b["params"], b["version"], b.get("setup_cache_key"))
               for name, b in committed.items() if isinstance(b, dict)}
    assert shipped == found


def test_every_host_figure_the_report_reads_is_a_method_of_the_suite():
    """The report finds a step's host figures by name (perfmodel.names.host_figure_method) and
    the gate leaves them unjudged by the same pattern: each GPU-timed step of the suite has
    every figure, and the suite records no host figure under another name."""
    import pytest  # noqa: PLC0415

    from perfmodel import names, verdict  # noqa: PLC0415

    committed = json.loads((ROOT / "results" / "benchmarks.json").read_text())
    methods = {n for n, b in committed.items() if isinstance(b, dict)}
    figures = {n for n in methods if "_seconds_" in n}
    expected = set()
    for n in methods:
        head, _, method = n.rpartition(".")
        if head.endswith((".Attention", ".Model")) and method.startswith("time_"):
            expected |= {f"{head}.{names.host_figure_method(f, method[5:])}"
                         for f in names.HOST_FIGURES}
    assert expected and figures == expected
    assert all(re.fullmatch(names.HOST_FIGURE_METHOD, n.rpartition(".")[2]) for n in figures)
    assert not any(verdict.judged(n) for n in figures)
    assert all(verdict.judged(n) for n in methods - figures)
    with pytest.raises(ValueError, match="valid: issue, backlog, free"):
        names.host_figure_method("launch", "forward")


def test_a_spans_cells_are_costed_under_their_own_grid_points():
    """A process that measured a compiled row (benchmarks/tiers.py SPANS) writes the other
    points' cells with their own params; the costliest-cells table moves their phases there
    and leaves the rest of the process's time with its own point."""
    from perfmodel.suite_cost import summary  # noqa: PLC0415

    cell = {"build_s": 0.5, "first_step_s": 2.0, "warmup_s": 2.5, "samples": 3, "sampling_s": 1.0}
    rec = {"benchmark": "Attention", "params": ["compiled", "float32", "16", "256"], "pid": 9,
           "age_s": 10.0, "na": None,
           "cells": [dict(cell, mode="fwd"),
                     dict(cell, mode="fwd", params=["compiled", "float32", "16", "1024"])]}
    text = summary([rec], top=5)
    assert "| Attention(compiled, float32, 16, 1024) | 4.0 |" in text
    assert "| Attention(compiled, float32, 16, 256) | 6.0 |" in text


def test_the_gaps_between_processes_are_asvs_time_and_long_pauses_stand_apart(tmp_path):
    """With the wall clock on each line, the time from one process's last line to the next
    one's fork is asv's hand-over; a pause of 5 s or more (a run's start, the warming) is
    counted apart, and lines without a clock (older logs) give no table."""
    from perfmodel.suite_cost import gaps, read, summary  # noqa: PLC0415

    def rec(pid, name, forked, age):
        return {"benchmark": name, "params": [], "pid": pid, "t": forked + age, "age_s": age,
                "na": None, "cells": []}

    records = [rec(1, "Model", 100.0, 2.0), rec(2, "Model", 102.03, 1.0),  # 30 ms hand-over
               rec(3, "Attention", 103.05, 0.5),  # 20 ms
               rec(4, "Attention", 160.0, 0.5)]  # a pause of 56.45 s
    got = gaps(records)
    assert [name for name, _ in got] == ["Model", "Attention", "Attention"]
    assert [round(g, 3) for _, g in got] == [0.03, 0.02, 56.45]
    text = summary(records)
    assert "| Attention | 1 | 0.0 | 20 | 1 | 56.5 |" in text
    assert "| Model | 1 | 0.0 | 30 | 0 | 0.0 |" in text
    # perfmodel track's line for a warming of 40 s in that pause: the run's start is what follows
    warming = {"event": "warming", "t": 150.0, "age_s": 40.0, "cells": 8}
    got = gaps(records + [warming])
    assert [(n, round(g, 2)) for n, g in got][2:] == [("warming", 6.45), ("Attention", 10.0)]
    text = summary(records + [warming])
    assert "| Attention | 1 | 0.0 | 20 | 1 | 10.0 |" in text and "| warming | 0 |" in text
    assert "The warming (perfmodel track, before an asv run): 1 time(s), 40.0 s" in text
    assert "benchmark processes" in text and "| warming | timed" not in text
    log = tmp_path / "cost.jsonl"
    log.write_text("".join(json.dumps(r) + "\n" for r in records + [warming]))
    assert read([str(log)]) == (records + [warming], 0)  # the warming's line is no bad line
    for r in records:
        del r["t"]
    assert gaps(records) == [] and "Between processes" not in summary(records)
