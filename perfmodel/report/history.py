"""Stage 4, history and changes: the headline benchmarks over the last commits, and what
`asv continuous A B` would flag between two commits."""
from __future__ import annotations

import math

import pandas as pd

from ..names import FAILED, NA, OK, STATUS_OF_CODE, host_bound
from .cells import HOST_BOUND_MARK, Table, div, human, nan, param_order, pct, ratio


def headline_cells(norm: pd.DataFrame, commit: str) -> list[dict]:
    """The benchmarks the history follows: per kind, one representative cell that ran OK at
    ``commit`` (model: the training step of the largest preset run, smallest context, fp32,
    sdpa; attention: forward and backward of eager and sdpa, float32, the middle d, longest seq;
    eager's memory before backward)."""
    out = []
    at = norm[(norm["commit"] == commit) & (norm["status"] == OK) & (norm["role"] == "value")]
    model = at[(at["kind"] == "model") & (at["measure"] == "train")]
    if not model.empty:
        presets = param_order(norm, "model", "preset")  # benchmarks.json's order: small to large
        pick = model.assign(p=model["preset"].map(lambda p: presets.index(p)
                                                  if p in presets else -1))
        pick = pick[(pick["precision"] == "fp32")] if (pick["precision"] == "fp32").any() else pick
        pick = pick[pick["variant"] == "sdpa"] if (pick["variant"] == "sdpa").any() else pick
        pick = pick.sort_values(["p", "context"], ascending=[False, True]).iloc[0]
        out.append({"benchmark": pick["benchmark"], "cell": pick["cell"]})
    att = at[at["kind"] == "attention"]
    if not att.empty:
        f32 = att[att["dtype"] == "float32"] if (att["dtype"] == "float32").any() else att
        ds = sorted(set(f32["d"]))
        d = ds[len(ds) // 2]
        sub = f32[f32["d"] == d]
        seq = max(sub["seq"])
        sub = sub[sub["seq"] == seq]
        for impl in ("eager", "sdpa"):
            for measure in ("fwd", "bwd", "mem_before_bwd"):
                if measure == "mem_before_bwd" and impl != "eager":
                    continue
                hit = sub[(sub["impl"] == impl) & (sub["measure"] == measure)]
                if not hit.empty:
                    out.append({"benchmark": hit.iloc[0]["benchmark"], "cell": hit.iloc[0]["cell"]})
    return out


def _label(rec) -> str:
    return f"{rec['benchmark']}({rec['cell']})" if rec.get("cell") else rec["benchmark"]


def history_table(rs, norm, commit, order, n, info, heads) -> tuple[list[Table], pd.DataFrame]:
    """Each headline benchmark over the last n commits up to ``commit``; a time whose step was
    host-bound at that commit (its track_issue_seconds_* beside it) is marked."""
    upto = order[:order.index(commit) + 1][-n:]
    rows, frame = [], []
    f = rs.frame
    for h in heads:
        sel = f[(f["benchmark"] == h["benchmark"]) & (f["cell"] == h["cell"])]
        issue = _issue_name(h["benchmark"])
        isel = f[(f["benchmark"] == issue) & (f["cell"] == h["cell"]) & (f["status"] == OK)]
        prev = math.nan
        for c in upto:
            hit = sel[sel["commit"] == c]
            status = hit.iloc[0]["status"] if not hit.empty else NA
            value = hit.iloc[0]["value"] if not hit.empty else math.nan
            unit = hit.iloc[0]["unit"] if not hit.empty else None
            change = div(value, prev) - 1 if status == OK else math.nan
            ihit = isel[isel["commit"] == c]
            bound = status == OK and not ihit.empty and bool(
                host_bound(value, ihit.iloc[0]["value"]))
            g = info.get(c, {})
            date = g.get("date") or _asv_date(rs, c)
            frame.append(dict(benchmark=_label(h), commit=c, date=date, subject=g.get("subject"),
                              value=value, status=status, change=change, unit=unit,
                              host_bound=bound))
            rows.append([_label(h), c[:8], date, g.get("subject") or "(not in this repository)",
                         (human(value, unit) + (HOST_BOUND_MARK if bound else ""))
                         if status == OK else status, pct(change)])
            if status == OK:
                prev = value
    if not rows:
        return [], pd.DataFrame(frame)
    return [Table("history", f"History of the headline benchmarks (last {len(upto)} commits "
                  "with results)", ["benchmark", "commit", "date", "subject", "value",
                                    "change vs previous"], rows,
                  "value: asv's median (time per step in ms, or memory in MiB); change against "
                  "the previous commit of this table that ran OK (blank: none before).", left=4,
                  section="History")], pd.DataFrame(frame)


def _issue_name(benchmark: str) -> str | None:
    """bench_x.Class.time_<mode> -> bench_x.Class.track_issue_seconds_<mode> (the suite's names)."""
    head, _, method = benchmark.rpartition(".")
    return f"{head}.track_issue_seconds_{method[5:]}" if method.startswith("time_") else None


def _asv_date(rs, c) -> str:
    d = rs.commits[rs.commits["commit"] == c]["date"]
    return "" if d.empty or pd.isna(d.iloc[0]) else d.iloc[0].strftime("%Y-%m-%d")


def _is_better(a, b, a_ss, b_ss, factor, use_stats):
    try:
        from asv.commands.compare import _is_result_better  # noqa: PLC0415
    except ImportError:  # an asv without it: the factor alone
        return a < b / factor
    try:
        return _is_result_better(a, b, a_ss, b_ss, factor, use_stats=use_stats)
    except (ArithmeticError, ValueError, TypeError, KeyError, RecursionError):
        # samples or stats asv's test cannot take (load.py checked only that they are numbers)
        return a < b / factor


def compare_table(rs, a, b, info, factor=1.1) -> list[Table]:
    """8: what `asv continuous A B` reports (asv's own test), regressions first."""
    f = rs.frame
    fa = {(r["benchmark"], r["cell"]): r for r in f[f["commit"] == a].to_dict("records")}
    fb = {(r["benchmark"], r["cell"]): r for r in f[f["commit"] == b].to_dict("records")}
    groups = {"regressed": [], "new failure": [], "improved": [], "fixed": []}
    unchanged = not_both = 0
    for key in sorted(set(fa) | set(fb)):
        ra, rb = fa.get(key), fb.get(key)
        sa = ra["status"] if ra else NA
        sb = rb["status"] if rb else NA
        unit = (rb or ra)["unit"]
        if sa == OK and sb == FAILED:
            kind = "new failure"
        elif sa == FAILED and sb == OK:
            kind = "fixed"
        elif sa == OK and sb == OK:
            va, vb = ra["value"], rb["value"]
            ssa = (ra["stats"], ra["samples"]) if ra["stats"] else None
            ssb = (rb["stats"], rb["samples"]) if rb["stats"] else None
            use_stats = unit == "seconds"
            if _is_better(vb, va, ssb, ssa, factor, use_stats):  # after better than before
                kind = "improved"
            elif _is_better(va, vb, ssa, ssb, factor, use_stats):
                kind = "regressed"
            else:
                unchanged += 1
                continue
        else:
            not_both += 1
            continue
        groups[kind].append((key, ra, rb, unit, kind))
    rows, frame = [], []
    for kind in ("new failure", "regressed", "improved", "fixed"):
        items = groups[kind]
        if kind in ("regressed", "improved"):  # largest change first; a 0 before is largest
            items.sort(key=lambda t: -div(t[2]["value"], t[1]["value"], math.inf)
                       if kind == "regressed" else div(t[2]["value"], t[1]["value"], math.inf))
        for (bench, cell), ra, rb, unit, k in items:
            va = ra["value"] if ra else math.nan
            vb = rb["value"] if rb else math.nan
            r = div(vb, va)
            name = f"{bench}({cell})" if cell else bench
            if unit == "status" and k in ("regressed", "improved"):
                what = f"{STATUS_OF_CODE.get(va, va)} → {STATUS_OF_CODE.get(vb, vb)}"
                k = {"regressed": "regressed (status)", "improved": "improved (status)"}[k]
            else:
                what = ""
            frame.append(dict(benchmark=name, before=va, after=vb, ratio=r, change=k, unit=unit))
            rows.append([k, name, human(va, unit) if ra and ra["status"] == OK else
                         (ra["status"] if ra else NA),
                         human(vb, unit) if rb and rb["status"] == OK else
                         (rb["status"] if rb else NA), ratio(r), what])
    ia, ib = info.get(a, {}), info.get(b, {})
    caption = (f"before: {a[:8]} {ia.get('subject', '')!s} | after: {b[:8]} "
               f"{ib.get('subject', '')!s}. Flagged as asv continuous does (asv's own test: "
               f"ratio beyond {factor} and, for times, a significant difference of the samples); "
               f"{unchanged} cells unchanged, {not_both} not run (or not OK) on both.")
    return [Table("compare", f"8. Changes from {a[:8]} to {b[:8]}",
                  ["change", "benchmark", f"before ({a[:8]})", f"after ({b[:8]})", "ratio",
                   "status"], rows or [["none", "", "", "", "", ""]], caption,
                  left=2, frame=pd.DataFrame(frame))]
