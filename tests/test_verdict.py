"""perfmodel.verdict: the gate's rule, one set of pure functions (issue 20 item 2)."""
from __future__ import annotations

import json
import math
import random
import subprocess
import sys
from pathlib import Path

import pytest

from perfmodel import verdict as V

ROOT = Path(__file__).resolve().parent.parent
GPU = 1.05  # benchmarks/tiers.py GATE (a test below checks they are still these)
CPU = 1.2


def measured(center: float, n: int = 10, spread: float = 0.004, seed: int = 0) -> V.Measured:
    """n samples around ``center`` (relative spread), with asv's stats as asv writes them."""
    rng = random.Random(seed)
    samples = [center * (1 + rng.uniform(-spread, spread)) for _ in range(n)]
    s = sorted(samples)
    stats = {"ci_99_a": s[0], "ci_99_b": s[-1], "q_25": s[n // 4], "q_75": s[3 * n // 4],
             "number": 1, "repeat": n}
    return V.Measured(s[n // 2], stats, samples)


def test_the_settings_are_the_gates():
    sys.path.insert(0, str(ROOT / "benchmarks"))
    try:
        import tiers  # noqa: PLC0415
    finally:
        sys.path.pop(0)
    assert tiers.GATE["cuda"]["factor"] == GPU and tiers.GATE["cpu"]["factor"] == CPU


def test_a_planted_ten_percent_slowdown_on_gpu_settings_is_slower():
    before, after = measured(1e-3), measured(1.10e-3, seed=1)
    v = V.judge(before, after, GPU, commits=("a" * 40, "b" * 40))
    assert v.change == V.SLOWER and math.isclose(v.ratio, after.value / before.value)
    assert not v.confirmed and not v.regression  # one measurement per commit
    assert V.judge(before, after, GPU, confirmed=True).regression  # the confirm stage's
    assert V.judge(after, before, GPU, confirmed=True).change == V.FASTER


def test_noise_within_the_rule_is_unchanged():
    base = measured(1e-3)
    # 3% (below the factor), and significant: still unchanged
    assert V.judge(base, measured(1.03e-3, seed=2), GPU).change == V.UNCHANGED
    # 8% by the medians, but the samples overlap: asv's test finds no difference
    wide_a = measured(1e-3, spread=0.5, seed=3)
    wide_b = V.Measured(wide_a.value * 1.08, wide_a.stats,
                        [x * 1.08 for x in wide_a.samples][::-1])
    assert wide_b.value > wide_a.value * GPU
    assert V.judge(wide_a, wide_b, GPU).change == V.UNCHANGED
    # the same 8% is slower with tight samples: the test is what decided above
    assert V.judge(base, measured(1.08e-3, seed=4), GPU).change == V.SLOWER


def test_a_cpu_history_entry_is_unconfirmed_and_names_its_command():
    a, b = "4bf9ef4ca76eeaef27f2385e0394513fb6c9d4ce", "ff3da1b1d40743f9123b62893b45d44a943d2708"
    v = V.judge(measured(0.742e-3, n=4), measured(1.041e-3, n=4, seed=5), CPU, commits=(a, b))
    assert v.change == V.SLOWER and not v.confirmed and not v.regression
    assert v.label == "slower (unconfirmed)"
    assert v.command == "perfmodel gate 4bf9ef4c ff3da1b1"
    # 1.15x: a regression at asv's default 1.1, nothing at the CPU gate's 1.2
    assert V.judge(measured(1e-3), measured(1.15e-3, seed=6), CPU).change == V.UNCHANGED
    assert V.judge(measured(1e-3), measured(1.15e-3, seed=6), 1.1).change == V.SLOWER


def test_status_changes_need_no_confirming():
    oom = V.judge(V.Measured(1.0), V.Measured(2.0), CPU, status=True)
    assert oom.change == V.STATUS and oom.worse and oom.regression and oom.label == "new failure"
    back = V.judge(V.Measured(2.0), V.Measured(1.0), CPU, status=True)
    assert back.change == V.STATUS and not back.worse and not back.regression
    assert V.judge(V.Measured(1.0), V.Measured(1.0), CPU, status=True).change == V.UNCHANGED
    failed = V.judge(V.Measured(1e-3), V.Measured(None), CPU)
    assert failed.regression and failed.label == "new failure"
    assert V.judge(V.Measured(None), V.Measured(1e-3), CPU).label == "fixed"
    assert V.judge(V.Measured(math.nan), V.Measured(1e-3), CPU).change == V.NOT_COMPARABLE


def test_asvs_table_gives_the_same_verdicts():
    assert V.from_asv("b.A.time_forward(1)", "+", 1.3, confirmed=True).regression
    assert not V.from_asv("b.A.time_forward(1)", "+", 1.3, confirmed=False).regression
    assert V.from_asv("b.A.time_forward(1)", "-", 0.7, confirmed=True).label == "improved"
    status = V.from_asv("b.A.track_status_forward(1)", "+", 2.0, confirmed=False)
    assert status.change == V.STATUS and status.regression
    assert V.from_asv("b.A.time_forward(1)", "!", None, confirmed=False).regression
    assert V.from_asv("b.A.time_forward(1)", "", 1.01, confirmed=True).change == V.UNCHANGED
    assert V.beyond(1.04, 1.03) and V.beyond(0.96, 1.03) and not V.beyond(1.02, 1.03)
    assert not V.beyond(None, 1.03)


def test_agrees_with_asvs_own_comparison_on_the_fixture_results():
    """Every pair of the CPU fixture's consecutive commits, every cell with a number on both:
    slower/faster exactly where asv's own test (asv compare's) says so at the same factor."""
    compare = pytest.importorskip("asv.commands.compare")
    fixture = ROOT / "tests" / "fixtures" / "asv_results" / "fixture-cpu"
    docs = sorted((json.loads(f.read_text()) for f in fixture.glob("*-*.json")),
                  key=lambda d: d["date"])
    checked = 0
    for da, db in zip(docs, docs[1:]):
        for name in set(da["results"]) & set(db["results"]):
            ca = dict(zip(da["result_columns"], da["results"][name]))
            cb = dict(zip(db["result_columns"], db["results"][name]))
            for i, (xa, xb) in enumerate(zip(ca["result"] or [], cb["result"] or [])):
                if not all(isinstance(x, float) and math.isfinite(x) for x in (xa, xb)):
                    continue

                def one(c, x):
                    stats = {k[6:]: c[k][i] for k in c if k.startswith("stats_")
                             and c[k] and c[k][i] is not None} or None
                    samples = c["samples"][i] if c.get("samples") else None
                    return V.Measured(x, stats, samples), (stats, samples) if stats else None
                (ma, ssa), (mb, ssb) = one(ca, xa), one(cb, xb)
                for factor in (1.1, CPU):
                    v = V.judge(ma, mb, factor)
                    assert (v.change == V.SLOWER) == compare._is_result_better(
                        xa, xb, ssa, ssb, factor), (name, i)
                    assert (v.change == V.FASTER) == compare._is_result_better(
                        xb, xa, ssb, ssa, factor), (name, i)
                    checked += 1
    assert checked > 100


def test_imports_without_torch_or_pandas():
    code = ("import sys; sys.modules['torch'] = None; sys.modules['pandas'] = None; "
            "import perfmodel.verdict as v; print(v.device_of('nvidia-h200-x'), "
            "v.device_of('cpu-amd-epyc-x2-torch2.13.0-t1'))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         cwd=ROOT, timeout=60)
    assert out.returncode == 0, out.stderr
    assert out.stdout.split() == ["cuda", "cpu"]


def test_no_command_from_anything_but_hashes():
    assert V.confirm_command("--upload-pack=x", "ff3da1b1") == ""
    assert V.confirm_command("4bf9ef4c", "ff3da1b1") == "perfmodel gate 4bf9ef4c ff3da1b1"
