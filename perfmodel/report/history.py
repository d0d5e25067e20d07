"""Stage 4, history and changes: the headline benchmarks over the last commits, and the changes
between two commits by the merge gate's rule (perfmodel.verdict)."""
from __future__ import annotations

import math

import pandas as pd

from ..names import FAILED, NA, OK, host_bound, host_figure_method, with_body
from ..verdict import NOT_COMPARABLE, STATUS, UNCHANGED, Measured, confirm_command, judge
from .cells import (BODY, BODY_SUFFIX, TRAIN, Table, classify, div, host_mark, human, own_backlog,
                    param_order, pct, ratio, untold)


def headline_cells(norm: pd.DataFrame, commit: str, cover: dict | None = None) -> list[dict]:
    """The benchmarks the history follows: per kind, one representative cell that ran OK at
    ``commit`` (model: the training step of fp32, sdpa, the largest preset run, smallest
    context; attention: forward and backward of eager and sdpa, float32, the middle d, longest
    seq; eager's memory before backward).

    ``cover`` ((benchmark, cell) -> how many commits of the history ran it OK) puts the cells
    with the longest history first: a GPU box runs its whole tier at a few commits and the
    quick tier (the gate's cells) at the others, and a headline measured at one commit draws a
    point, not a line. Among equally covered cells the rule above decides (on the CPU, whose
    every commit runs the whole tier, it alone does)."""
    cover = cover or {}

    def covered(rows: pd.DataFrame) -> pd.Series:
        return pd.Series([cover.get((b, c), 0) for b, c in zip(rows["benchmark"], rows["cell"])],
                         index=rows.index, dtype=float)

    out = []
    at = norm[(norm["commit"] == commit) & (norm["status"] == OK) & (norm["role"] == "value")]
    model = at[(at["kind"] == "model") & (at["measure"] == "train")]
    if not model.empty:
        presets = param_order(norm, "model", "preset")  # benchmarks.json's order: small to large
        pick = model.assign(p=model["preset"].map(lambda p: presets.index(p)
                                                  if p in presets else -1),
                            n=covered(model))
        pick = pick[(pick["precision"] == "fp32")] if (pick["precision"] == "fp32").any() else pick
        pick = pick[pick["variant"] == "sdpa"] if (pick["variant"] == "sdpa").any() else pick
        pick = pick.sort_values(["n", "p", "context"], ascending=[False, False, True]).iloc[0]
        out.append({"benchmark": pick["benchmark"], "cell": pick["cell"]})
    att = at[at["kind"] == "attention"]
    if not att.empty:
        f32 = att[att["dtype"] == "float32"] if (att["dtype"] == "float32").any() else att
        f32 = f32[f32["impl"].isin(["eager", "sdpa"])] if f32["impl"].isin(
            ["eager", "sdpa"]).any() else f32
        ds = sorted(set(f32["d"]))
        middle = ds[len(ds) // 2]
        # (d, seq): the most covered first, then the d nearest the middle, then the longest seq
        n = f32.assign(n=covered(f32)).groupby(["d", "seq"])["n"].sum()
        d, seq = max(n.index, key=lambda ds_: (n[ds_], -abs(ds.index(ds_[0]) - ds.index(middle)),
                                               ds_[1]))
        sub = f32[(f32["d"] == d) & (f32["seq"] == seq)]
        for impl in ("eager", "sdpa"):
            for measure in ("fwd", "bwd", "mem_before_bwd"):
                if measure == "mem_before_bwd" and impl != "eager":
                    continue
                hit = sub[(sub["impl"] == impl) & (sub["measure"] == measure)]
                if not hit.empty:
                    out.append({"benchmark": hit.iloc[0]["benchmark"], "cell": hit.iloc[0]["cell"]})
    return out


def coverage(frame: pd.DataFrame, commits: list[str]) -> dict:
    """(benchmark, cell) -> how many of ``commits`` ran it OK (headline_cells' ``cover``)."""
    ok = frame[frame["commit"].isin(commits) & (frame["status"] == OK)]
    return ok.groupby(["benchmark", "cell"]).size().to_dict() if not ok.empty else {}


def history_window(order: list[str], commit: str, n: int) -> list[str]:
    """The last ``n`` commits of ``order`` up to ``commit``: the commits the history shows."""
    return order[:order.index(commit) + 1][-n:]


def _label(rec) -> str:
    return f"{rec['benchmark']}({rec['cell']})" if rec.get("cell") else rec["benchmark"]


def history_table(rs, norm, commit, order, n, info, heads) -> tuple[list[Table], pd.DataFrame]:
    """Each headline benchmark over the last n commits up to ``commit``; a time whose step was
    host-bound at that commit (its track_issue_, track_backlog_ and track_free_seconds_* beside
    it, names.host_bound) is marked, and one whose host's share was not told marked apart."""
    upto = history_window(order, commit, n)
    rows, frame = [], []
    f = rs.frame
    for h in heads:
        sel = f[(f["benchmark"] == h["benchmark"]) & (f["cell"] == h["cell"])]
        isel = _beside(f, h, "issue")
        bsel, fsel = _beside(f, h, "backlog"), _beside(f, h, "free")
        what = classify(h["benchmark"].rpartition(".")[2])
        split = norm.attrs.get("split", ())
        if what is not None and not own_backlog(split, what[0]):
            bsel = bsel.iloc[0:0]  # the whole train step's, not this part's
        body = _body(f, h) if what is not None and what[0] == TRAIN and BODY in split else None
        prev = math.nan
        for c in upto:
            hit = sel[sel["commit"] == c]
            status = hit.iloc[0]["status"] if not hit.empty else NA
            value = hit.iloc[0]["value"] if not hit.empty else math.nan
            unit = hit.iloc[0]["unit"] if not hit.empty else None
            change = div(value, prev) - 1 if status == OK else math.nan
            told = host_bound(value, _at(isel, c), _at(bsel, c), _at(fsel, c))
            if body is not None:  # a split train step: with its forward+backward's verdict
                told = with_body(told, host_bound(*(_at(x, c) for x in body)))
            bound = status == OK and bool(told)
            unknown = status == OK and untold(told, _at(isel, c))
            g = info.get(c, {})
            date = g.get("date") or _asv_date(rs, c)
            frame.append(dict(benchmark=_label(h), commit=c, date=date, subject=g.get("subject"),
                              value=value, status=status, change=change, unit=unit,
                              host_bound=bound, host_unknown=unknown))
            rows.append([_label(h), c[:8], date, g.get("subject") or "(not in this repository)",
                         (human(value, unit) + host_mark(bound, unknown))
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


def _beside(f, h, figure: str):
    """The OK rows of the track_<figure>_seconds_<mode> benchmark beside a headline time_<mode>
    (bench_x.Class.time_<mode> -> bench_x.Class.track_issue_seconds_<mode>: the suite's names)."""
    head, _, method = h["benchmark"].rpartition(".")
    if not method.startswith("time_"):
        return f.iloc[0:0]
    name = f"{head}.{host_figure_method(figure, method[5:])}"
    return f[(f["benchmark"] == name) & (f["cell"] == h["cell"]) & (f["status"] == OK)]


def _body(f, h) -> tuple:
    """A headline train step's forward+backward part: the OK rows of its time, issue time and
    head-start step, for names.host_bound (a part records no backlog of its own)."""
    head = h["benchmark"].rpartition(".")[0]
    part = dict(h, benchmark=f"{head}.time_{BODY_SUFFIX}")
    sel = f[(f["benchmark"] == part["benchmark"]) & (f["cell"] == h["cell"]) & (f["status"] == OK)]
    return sel, _beside(f, part, "issue"), sel.iloc[0:0], _beside(f, part, "free")


def _at(sel, commit):
    hit = sel[sel["commit"] == commit]
    return None if hit.empty else hit.iloc[0]["value"]


def _asv_date(rs, c) -> str:
    d = rs.commits[rs.commits["commit"] == c]["date"]
    return "" if d.empty or pd.isna(d.iloc[0]) else d.iloc[0].strftime("%Y-%m-%d")


def _measured(row) -> Measured:
    """A table row as the verdict reads it: a value only when OK (failed is asv's None; OOM,
    n/a and a missing cell are NaN: not compared, the status cell says what changed)."""
    if row is None:
        return Measured(math.nan)
    if row["status"] == FAILED:
        return Measured(None)
    if row["status"] != OK:
        return Measured(math.nan)
    return Measured(row["value"], row["stats"] or None, row["samples"])


# the table's groups, in its order (regressions first)
GROUPS = ("new failure", "regressed (status)", "regressed", "slower (unconfirmed)",
          "improved (status)", "improved", "faster (unconfirmed)", "fixed")


def _group(v, unit) -> str:
    if unit == "status":  # a status code moved: OK (1) -> OOM (2) or failed (3), or back
        return "regressed (status)" if v.worse else "improved (status)"
    return v.label


def compare_table(rs, a, b, info, rule) -> list[Table]:
    """8: the changes from A to B by the merge gate's rule (perfmodel.verdict at the device's
    factor, benchmarks/tiers.py GATE), regressions first. One measurement per commit: a time
    that moved is unconfirmed and its row names the command that confirms it. ``rule``: the
    machine's gate (gaterule.gate_rule)."""
    f = rs.frame
    fa = {(r["benchmark"], r["cell"]): r for r in f[f["commit"] == a].to_dict("records")}
    fb = {(r["benchmark"], r["cell"]): r for r in f[f["commit"] == b].to_dict("records")}
    groups = {g: [] for g in GROUPS}
    unchanged = not_both = outside = 0
    for key in sorted(set(fa) | set(fb)):
        ra, rb = fa.get(key), fb.get(key)
        unit = (rb or ra)["unit"]
        name = f"{key[0]}({key[1]})" if key[1] else key[0]
        v = judge(_measured(ra), _measured(rb), rule.factor, status=unit == "status",
                  commits=(a, b))
        if v.change == NOT_COMPARABLE:
            not_both += 1
            continue
        if v.change != STATUS and not rule.gated(name):
            outside += int(v.change != UNCHANGED)  # the gate never measures it: not judged
            unchanged += int(v.change == UNCHANGED)
            continue
        if v.change == UNCHANGED:
            unchanged += 1
            continue
        groups[_group(v, unit)].append((key, ra, rb, unit, v))
    rows, frame = [], []
    for kind, items in groups.items():
        worse = kind in ("regressed", "slower (unconfirmed)")
        if kind in ("regressed", "slower (unconfirmed)", "improved", "faster (unconfirmed)"):
            items.sort(key=lambda t: -t[4].ratio if worse else t[4].ratio)  # largest first
        for (bench, cell), ra, rb, unit, v in items:
            va = ra["value"] if ra else math.nan
            vb = rb["value"] if rb else math.nan
            r = div(vb, va)
            name = f"{bench}({cell})" if cell else bench
            before, after = (human(x, unit) if rec and rec["status"] == OK else
                             (rec["status"] if rec else NA) for rec, x in ((ra, va), (rb, vb)))
            if unit == "status":  # as the columns say it (a status that did not run: failed)
                note = f"{before} → {after}"
            else:
                note = f"unconfirmed: {v.command}" if v.command else ""
            frame.append(dict(benchmark=name, before=va, after=vb, ratio=r, change=kind, unit=unit,
                              confirmed=v.confirmed, command=v.command))
            rows.append([kind, name, before, after, ratio(r), note])
    ia, ib = info.get(a, {}), info.get(b, {})
    device = "GPU" if rule.device == "cuda" else "CPU"
    caption = (f"before: {a[:8]} {ia.get('subject', '')!s} | after: {b[:8]} "
               f"{ib.get('subject', '')!s}. Judged by the merge gate's rule on a {device} "
               f"(perfmodel gate, notes/gate.md): a ratio beyond {rule.factor} that, where both "
               f"commits have samples, asv's significance test confirms; only the gate's cells "
               f"(tier {rule.tier}). Each commit here was measured once, so a value that moved is "
               f"unconfirmed until {confirm_command(a, b)} measures the two commits "
               f"interleaved; a status change (OOM, failure) needs no confirming. "
               f"{unchanged} cells unchanged, {outside} moved outside the gate's cells (not "
               f"judged: see the graphs), {not_both} not run (or not OK) on both.")
    return [Table("compare", f"8. Changes from {a[:8]} to {b[:8]}",
                  ["change", "benchmark", f"before ({a[:8]})", f"after ({b[:8]})", "ratio",
                   "note"], rows or [["none", "", "", "", "", ""]], caption,
                  left=2, frame=pd.DataFrame(frame))]
