"""Tables, plots and the Jinja-rendered summary (markdown, and HTML for the published site)."""
from __future__ import annotations

import math
import os
import subprocess
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

from ..errors import UserError
from . import tables as T
from .load import FAILED, NOT_RUN, OK, OOM, ResultSet, load, resolve_commit

MiB = 2**20
TEMPLATES = Path(__file__).resolve().parent.parent / "templates"


# ------------------------------------------------------------------ formatting (units in headers)

def _nan(v) -> bool:
    return v is None or (isinstance(v, float) and math.isnan(v))


def ms(seconds) -> str:
    if _nan(seconds):
        return ""
    v = seconds * 1e3
    return f"{v:.3f}" if abs(v) < 100 else f"{v:.1f}"


def mib(nbytes) -> str:
    return "" if _nan(nbytes) else f"{nbytes / MiB:.2f}"


def ratio(x) -> str:
    return "" if _nan(x) or x == math.inf else f"{x:.2f}×"


def pct(x) -> str:
    return "" if _nan(x) else f"{x * 100:+.1f}%"


def human(value, unit) -> str:
    if _nan(value):
        return ""
    if unit == "seconds":
        return f"{ms(value)} ms"
    if unit == "bytes":
        return f"{mib(value)} MiB"
    if unit == "status":
        return T.STATUS_CODES.get(float(value), f"{value:g}")
    return f"{value:.4g} {unit or ''}".strip()


@dataclass
class Table:
    key: str
    title: str
    columns: list[str]
    rows: list[list[str]]
    caption: str = ""
    left: int = 1                              # how many leading columns are labels
    frame: pd.DataFrame | None = None          # the numbers behind it (tests, CSV)

    @property
    def align(self) -> list[str]:
        """Numbers right, words left: a column is numeric when its filled cells all start like
        a number (statuses such as OOM in a number column keep it numeric)."""
        def numeric(i):
            cells = [r[i] for r in self.rows if i < len(r) and r[i]]
            nums = [c for c in cells if c[0].isdigit() or c[0] in "+-."]
            return bool(nums) and all(c[0].isdigit() or c[0] in "+-." or c in
                                      (OK, OOM, FAILED, NOT_RUN) or c.startswith("eager ")
                                      for c in cells)
        return ["---:" if i >= self.left and numeric(i) else ":---"
                for i in range(len(self.columns))]


def _cell_or_status(status, value, fmt) -> str:
    if status == OK:
        return fmt(value)
    return status if isinstance(status, str) else NOT_RUN


# ------------------------------------------------------------------ git (subjects and order)

def git_commits(repo, hashes) -> dict[str, dict]:
    """hash -> {date, subject} from the repository's git log (empty when not found there)."""
    out = {}
    if repo is None:
        return out
    for h in hashes:
        try:
            proc = subprocess.run(["git", "-C", str(repo), "show", "-s", "--format=%cI%x09%s", h,
                                   "--"], capture_output=True, text=True, timeout=20)
        except (OSError, subprocess.TimeoutExpired):
            return out
        if proc.returncode == 0 and "\t" in proc.stdout:
            date, subject = proc.stdout.strip().split("\t", 1)
            out[h] = {"date": date[:10], "subject": subject}
    return out


def git_resolve(repo, ref: str) -> str | None:
    if repo is None:
        return None
    try:
        proc = subprocess.run(["git", "-C", str(repo), "rev-parse", "--verify", "--quiet",
                               f"{ref}^{{commit}}"], capture_output=True, text=True, timeout=20)
    except (OSError, subprocess.TimeoutExpired):
        return None
    return proc.stdout.strip() if proc.returncode == 0 and proc.stdout.strip() else None


def git_order(repo) -> list[str]:
    """All commits, oldest first (topological), or [] without git."""
    if repo is None:
        return []
    try:
        proc = subprocess.run(["git", "-C", str(repo), "rev-list", "--all", "--topo-order",
                               "--reverse"], capture_output=True, text=True, timeout=60)
    except (OSError, subprocess.TimeoutExpired):
        return []
    return proc.stdout.split() if proc.returncode == 0 else []


def commit_order(rs: ResultSet, repo) -> list[str]:
    """The result commits, oldest first: git's order where git knows them, else asv's dates."""
    by_date = list(dict.fromkeys(rs.commits["commit"]))
    pos = {h: i for i, h in enumerate(git_order(repo))}
    if all(h in pos for h in by_date):
        return sorted(by_date, key=pos.get)
    return by_date


def resolve(rs: ResultSet, ref: str | None, repo, order=None) -> str:
    if ref is None:
        return (order or commit_order(rs, repo))[-1]
    full = git_resolve(repo, ref)
    if full and full in set(rs.commits["commit"]):
        return full
    if full and not any(h.startswith(ref.lower()) for h in rs.commits["commit"]):
        raise UserError(f"{ref} ({full[:8]}) has no results on machine {rs.machine}; commits with "
                        f"results: {', '.join(h[:8] for h in reversed(list(rs.commits['commit'])))}")
    return resolve_commit(rs, ref)


# ------------------------------------------------------------------ the tables

def warmup_table(norm, commit) -> list[Table]:
    """1: seed 004 (the warm-up study)."""
    w = T.cells(norm, "warmup", commit)
    if w.empty:
        return []
    rows, frame = [], []
    keys = sorted({(r.preset, r.context, r.warmup) for r in w.itertuples()},
                  key=lambda k: (T.PRESET_ORDER.index(k[0]) if k[0] in T.PRESET_ORDER else 99,
                                 k[1], k[2]))
    by = {(r.preset, r.context, r.mode, r.warmup): r._asdict() for r in w.itertuples()}
    for preset, ctx, warm in keys:
        f, fb = by.get((preset, ctx, "fwd", warm), {}), by.get((preset, ctx, "fwd_bwd", warm), {})
        if all(T.get(x, "step_status", NOT_RUN) == NOT_RUN for x in (f, fb)):
            continue  # neither mode applies to this machine: not a row of its study
        dims = T.preset_dims(preset)
        sf, sfb = T.get(f, "step_status", NOT_RUN), T.get(fb, "step_status", NOT_RUN)
        rec = dict(preset=preset, context=ctx, warmup=warm, **dims, status_fwd=sf,
                   status_fwd_bwd=sfb, mean_fwd=T.get(f, "step_mean"),
                   mean_fwd_bwd=T.get(fb, "step_mean"), std_fwd=T.get(f, "step_std"),
                   std_fwd_bwd=T.get(fb, "step_std"))
        frame.append(rec)
        rows.append([preset, str(ctx), str(warm), *(str(dims[k] or "") for k in
                                                    ("d_model", "d_ff", "n_layers", "n_heads")),
                     sf, sfb, ms(rec["mean_fwd"]), ms(rec["mean_fwd_bwd"]), ms(rec["std_fwd"]),
                     ms(rec["std_fwd_bwd"])])
    if not rows:
        return []
    return [Table("warmup", "1. Model runs and warm-up (as seed 004)",
                  ["Config", "Seq Len", "Warmup Steps", "d_model", "d_ff", "n_layers",
                   "num_heads", "Status FWD", "Status FWD+BWD", "Avg/Step FWD (ms)",
                   "Avg/Step FWD+BWD (ms)", "Std/Step FWD (ms)", "Std/Step FWD+BWD (ms)"],
                  rows, "bench_model.Warmup: 10 measured steps after 0, 1 or 5 untimed warm-up "
                  "steps, each cell in a fresh process; fp32, sdpa attention, no compile, batch 4.",
                  left=1, frame=pd.DataFrame(frame))]


def model_steps_table(norm, commit) -> list[Table]:
    """2: seed 003 (mean and std of forward and backward per preset)."""
    m = T.cells(norm, "model", commit)
    if m.empty:
        return []
    ok = m[(m.get("fwd_status") == OK) | (m.get("bwd_status") == OK)] if "fwd_status" in m else m
    if ok.empty:
        ok = m
    prec = "fp32" if (ok["precision"] == "fp32").any() else ok["precision"].iloc[0]
    var = "sdpa" if ((ok["precision"] == prec) & (ok["variant"] == "sdpa")).any() else \
        ok[ok["precision"] == prec]["variant"].iloc[0]
    ctx = min(ok[(ok["precision"] == prec) & (ok["variant"] == var)]["context"])
    sel = m[(m["precision"] == prec) & (m["variant"] == var) & (m["context"] == ctx)]
    rows, frame = [], []
    for r in sorted(sel.to_dict("records"), key=lambda r: T.PRESET_ORDER.index(r["preset"])
                    if r["preset"] in T.PRESET_ORDER else 99):
        sf, sb = T.get(r, "fwd_status", NOT_RUN), T.get(r, "bwd_status", NOT_RUN)
        if sf == NOT_RUN and sb == NOT_RUN:
            continue
        dims = T.preset_dims(r["preset"])
        n = int(max(T.get(r, "fwd_n", 0) or 0, T.get(r, "bwd_n", 0) or 0))
        rec = dict(preset=r["preset"], **dims, warmup=T.MODEL_WARMUP_STEPS, steps=n,
                   status_fwd=sf, status_bwd=sb, mean_fwd=T.get(r, "fwd_mean"),
                   std_fwd=T.get(r, "fwd_std"), mean_bwd=T.get(r, "bwd_mean"),
                   std_bwd=T.get(r, "bwd_std"))
        frame.append(rec)
        rows.append([r["preset"], *(str(dims[k] or "") for k in ("d_model", "d_ff", "n_heads",
                                                                 "n_layers")),
                     str(rec["warmup"]), str(n),
                     _cell_or_status(sf, rec["mean_fwd"], ms), _cell_or_status(sf, rec["std_fwd"], ms),
                     _cell_or_status(sb, rec["mean_bwd"], ms), _cell_or_status(sb, rec["std_bwd"], ms)])
    if not rows:
        return []
    return [Table("model", "2. Model forward and backward per preset (as seed 003)",
                  ["Config", "d_model", "d_ff", "num_heads", "num_layers", "warmup_steps",
                   "benchmark_steps", "mean forward (ms)", "std forward (ms)",
                   "mean backward (ms)", "std backward (ms)"], rows,
                  f"bench_model.Model at context {ctx}, {prec}, {var} attention, batch 4; mean and "
                  "std over asv's samples (one step each).", frame=pd.DataFrame(frame))]


def _attention(norm, commit):
    a = T.cells(norm, "attention", commit)
    if a.empty:
        return a
    a["status"] = [T.combined_status(T.get(r, "fwd_status", NOT_RUN), T.get(r, "bwd_status", NOT_RUN))
                   for r in a.to_dict("records")]
    return a


def _ran(df):
    """Rows of cells that ran on this machine in at least one pass (OK, OOM or failed)."""
    if df.empty:
        return df
    return df[df["status"] != NOT_RUN] if "status" in df else df


def attention_tables(norm, commit) -> list[Table]:
    """3: seed 001, 4: seed 000, 5: seed 002 pivots (per dtype; 4 and 5 per implementation)."""
    a = _attention(norm, commit)
    if a.empty:
        return []
    out = []
    ran_keys = _ran(a)
    dtypes = T.order(ran_keys["dtype"], ["float32", "bfloat16"]) if not ran_keys.empty else []
    for dtype in dtypes:
        sub = a[a["dtype"] == dtype]
        impls = T.order(_ran(sub)["impl"], T.IMPL_ORDER)
        sub = sub[sub["impl"].isin(impls)]
        ds = sorted(set(_ran(sub)["d"]))
        seqs = sorted(set(_ran(sub)["seq"]))
        sub = sub[sub["d"].isin(ds) & sub["seq"].isin(seqs)]
        recs = sorted(sub.to_dict("records"), key=lambda r: (r["d"], r["seq"],
                                                            T.IMPL_ORDER.index(r["impl"])
                                                            if r["impl"] in T.IMPL_ORDER else 99))
        rows = []
        for r in recs:
            st = r["status"]
            mem = T.get(r, "mem_before_bwd_value")
            rows.append([r["impl"], str(r["d"]), str(r["seq"]), st,
                         _cell_or_status(r.get("fwd_status"), T.get(r, "fwd_mean"), ms) if st != OK
                         else ms(T.get(r, "fwd_mean")),
                         ms(T.get(r, "fwd_std")) if r.get("fwd_status") == OK else "",
                         _cell_or_status(r.get("bwd_status"), T.get(r, "bwd_mean"), ms) if st != OK
                         else ms(T.get(r, "bwd_mean")),
                         ms(T.get(r, "bwd_std")) if r.get("bwd_status") == OK else "",
                         mib(mem) if not _nan(mem) else (st if st != OK else "")])
        out.append(Table(f"attention_{dtype}", f"3. Attention forward and backward, {dtype} "
                         "(as seed 001)",
                         ["method", "d_model", "seq_len", "status", "fwd mean (ms)",
                          "fwd std (ms)", "bwd mean (ms)", "bwd std (ms)",
                          "mem before bwd (MiB)"], rows,
                         "bench_attention.Attention: batch 8, (batch, seq, d) inputs, causal; mean "
                         "and std over asv's samples; memory in use just before backward (GPU: "
                         "allocated; CPU: process RSS).", left=1,
                         frame=pd.DataFrame(recs)))
        for impl in impls:
            isub = [r for r in recs if r["impl"] == impl]
            rows4 = [[str(r["d"]), str(r["seq"]),
                      _cell_or_status(r.get("fwd_status", NOT_RUN), T.get(r, "fwd_mean"), ms),
                      _cell_or_status(r["status"] if r.get("fwd_status") == OK else
                                      r.get("fwd_status", NOT_RUN),
                                      T.get(r, "mem_before_bwd_value"), mib)
                      if not _nan(T.get(r, "mem_before_bwd_value")) or r.get("fwd_status") != OK
                      else "",
                      _cell_or_status(r.get("bwd_status", NOT_RUN), T.get(r, "bwd_mean"), ms)]
                     for r in isub]
            out.append(Table(f"seed000_{impl}_{dtype}", f"4. {impl}, {dtype}: forward, memory "
                             "after forward, backward (as seed 000)",
                             ["d_model", "seq_len", "forward time (ms)",
                              "memory after forward (MiB)", "backward time (ms)"], rows4,
                             "", left=0, frame=pd.DataFrame(isub)))
        for impl in impls:
            isub = {(r["d"], r["seq"]): r for r in recs if r["impl"] == impl}
            for pas, label in (("fwd", "Forward"), ("bwd", "Backward")):
                prow = []
                for seq in seqs:
                    line = [str(seq)]
                    for d in ds:
                        r = isub.get((d, seq), {})
                        line.append(_cell_or_status(r.get(f"{pas}_status", NOT_RUN),
                                                    T.get(r, f"{pas}_mean"), ms))
                    prow.append(line)
                out.append(Table(f"pivot_{pas}_{impl}_{dtype}",
                                 f"5. {impl}, {dtype}: {label} (ms/iter) by seq_len x d_model "
                                 "(as seed 002)", ["seq_len"] + [str(d) for d in ds], prow,
                                 left=0))
    return out


def comparison_tables(norm, commit) -> list[Table]:
    """6: implementations against eager (speedup, memory ratio); model fp32 vs bf16; variants."""
    out = []
    a = _attention(norm, commit)
    if not a.empty and not _ran(a).empty:
        for dtype in T.order(_ran(a)["dtype"], ["float32", "bfloat16"]):
            sub = a[a["dtype"] == dtype]
            impls = T.order(_ran(sub)["impl"], T.IMPL_ORDER)
            if "eager" not in impls or len(impls) < 2:
                continue
            others = [i for i in impls if i != "eager"]
            by = {(r["impl"], r["d"], r["seq"]): r for r in sub.to_dict("records")}
            ds, seqs = sorted(set(_ran(sub)["d"])), sorted(set(_ran(sub)["seq"]))
            cols = ["d_model", "seq_len", "eager fwd (ms)", "eager bwd (ms)", "eager mem (MiB)"]
            for i in others:
                cols += [f"{i} fwd speedup (×)", f"{i} bwd speedup (×)", f"{i} mem ratio (×)"]
            rows, frame = [], []
            for d in ds:
                for seq in seqs:
                    e = by.get(("eager", d, seq), {})
                    line = [str(d), str(seq),
                            _cell_or_status(e.get("fwd_status", NOT_RUN), T.get(e, "fwd_mean"), ms),
                            _cell_or_status(e.get("bwd_status", NOT_RUN), T.get(e, "bwd_mean"), ms),
                            mib(T.get(e, "mem_before_bwd_value"))]
                    for i in others:
                        o = by.get((i, d, seq), {})
                        rec = {"d": d, "seq": seq, "impl": i}
                        for pas in ("fwd", "bwd"):
                            so, se = o.get(f"{pas}_status", NOT_RUN), e.get(f"{pas}_status", NOT_RUN)
                            sp = T.get(e, f"{pas}_mean") / T.get(o, f"{pas}_mean") \
                                if so == OK and se == OK else math.nan
                            rec[f"{pas}_speedup"] = sp
                            line.append(ratio(sp) if so == OK and se == OK else
                                        (so if so != OK else f"eager {se}"))
                        mr = T.get(o, "mem_before_bwd_value") / T.get(e, "mem_before_bwd_value") \
                            if not _nan(T.get(o, "mem_before_bwd_value")) and \
                            T.get(e, "mem_before_bwd_value", 0) else math.nan
                        rec["mem_ratio"] = mr
                        line.append(ratio(mr))
                        frame.append(rec)
                    rows.append(line)
            out.append(Table(f"compare_attention_{dtype}", f"6a. Attention implementations "
                             f"against eager, {dtype}", cols, rows,
                             "speedup = eager time / implementation time (higher is faster); "
                             "mem ratio = implementation's memory before backward / eager's "
                             "(lower is leaner).", left=0, frame=pd.DataFrame(frame)))
    m = T.cells(norm, "model", commit)
    if not m.empty:
        by = {(r["preset"], r["context"], r["precision"], r["variant"]): r
              for r in m.to_dict("records")}
        ran = [k for k, r in by.items() if r.get("fwd_bwd_status", NOT_RUN) != NOT_RUN]
        rows, frame = [], []
        for preset, ctx, var in sorted({(k[0], k[1], k[3]) for k in ran},
                                       key=lambda k: (T.PRESET_ORDER.index(k[0]) if k[0] in
                                                      T.PRESET_ORDER else 99, k[1],
                                                      T.VARIANT_ORDER.index(k[2]) if k[2] in
                                                      T.VARIANT_ORDER else 99)):
            f, b = by.get((preset, ctx, "fp32", var), {}), by.get((preset, ctx, "bf16", var), {})
            sf, sb = f.get("fwd_bwd_status", NOT_RUN), b.get("fwd_bwd_status", NOT_RUN)
            sp = T.get(f, "fwd_bwd_mean") / T.get(b, "fwd_bwd_mean") if sf == OK and sb == OK \
                else math.nan
            mf, mb = T.get(f, "mem_before_bwd_value"), T.get(b, "mem_before_bwd_value")
            mr = mb / mf if not _nan(mf) and not _nan(mb) and mf else math.nan
            frame.append(dict(preset=preset, context=ctx, variant=var, speedup=sp, mem_ratio=mr))
            rows.append([preset, str(ctx), var,
                         _cell_or_status(sf, T.get(f, "fwd_bwd_mean"), ms),
                         _cell_or_status(sb, T.get(b, "fwd_bwd_mean"), ms), ratio(sp),
                         mib(mf), mib(mb), ratio(mr)])
        if rows:
            out.append(Table("compare_precision", "6b. Model fp32 against bf16 (autocast)",
                             ["Config", "Seq Len", "variant", "fp32 fwd+bwd (ms)",
                              "bf16 fwd+bwd (ms)", "bf16 speedup (×)", "fp32 mem before bwd (MiB)",
                              "bf16 mem before bwd (MiB)", "bf16 mem ratio (×)"], rows,
                             "bench_model.Model, forward+backward step; speedup = fp32 time / "
                             "bf16 time; a machine that runs only fp32 shows bf16 as not run.",
                             left=3, frame=pd.DataFrame(frame)))
        variants = T.order([k[3] for k in ran], T.VARIANT_ORDER)
        if len(variants) > 1:
            base = variants[0]
            rows, frame = [], []
            for preset, ctx, prec in sorted({(k[0], k[1], k[2]) for k in ran},
                                            key=lambda k: (T.PRESET_ORDER.index(k[0]) if k[0] in
                                                           T.PRESET_ORDER else 99, k[1], k[2])):
                b = by.get((preset, ctx, prec, base), {})
                line = [preset, str(ctx), prec,
                        _cell_or_status(b.get("train_status", NOT_RUN), T.get(b, "train_mean"), ms)]
                for v in variants[1:]:
                    o = by.get((preset, ctx, prec, v), {})
                    so, sb_ = o.get("train_status", NOT_RUN), b.get("train_status", NOT_RUN)
                    sp = T.get(b, "train_mean") / T.get(o, "train_mean") if so == OK and sb_ == OK \
                        else math.nan
                    frame.append(dict(preset=preset, context=ctx, precision=prec, variant=v,
                                      speedup=sp))
                    line += [_cell_or_status(so, T.get(o, "train_mean"), ms),
                             ratio(sp) if so == OK and sb_ == OK else ""]
                rows.append(line)
            cols = ["Config", "Seq Len", "precision", f"{base} train step (ms)"]
            for v in variants[1:]:
                cols += [f"{v} train step (ms)", f"{v} speedup (×)"]
            out.append(Table("compare_variant", f"6c. Model variants against {base}", cols, rows,
                             "training step (forward, backward, AdamW); speedup = "
                             f"{base} time / variant time.", left=3, frame=pd.DataFrame(frame)))
    return out


def _label(rec) -> str:
    return f"{rec['benchmark']}({rec['cell']})" if rec.get("cell") else rec["benchmark"]


def history_table(rs, norm, commit, order, n, info, heads) -> tuple[list[Table], pd.DataFrame]:
    """7: each headline benchmark over the last n commits up to ``commit``."""
    upto = order[:order.index(commit) + 1][-n:]
    rows, frame = [], []
    f = rs.frame
    for h in heads:
        sel = f[(f["benchmark"] == h["benchmark"]) & (f["cell"] == h["cell"])]
        prev = math.nan
        for c in upto:
            hit = sel[sel["commit"] == c]
            status = hit.iloc[0]["status"] if not hit.empty else NOT_RUN
            value = hit.iloc[0]["value"] if not hit.empty else math.nan
            unit = hit.iloc[0]["unit"] if not hit.empty else None
            change = value / prev - 1 if status == OK and not _nan(prev) and prev else math.nan
            g = info.get(c, {})
            date = g.get("date") or _asv_date(rs, c)
            frame.append(dict(benchmark=_label(h), commit=c, date=date, subject=g.get("subject"),
                              value=value, status=status, change=change, unit=unit))
            rows.append([_label(h), c[:8], date, _md_escape(g.get("subject") or
                                                           "(not in this repository)"),
                         human(value, unit) if status == OK else status, pct(change)])
            if status == OK:
                prev = value
    if not rows:
        return [], pd.DataFrame(frame)
    return [Table("history", f"7. History of the headline benchmarks (last {len(upto)} commits "
                  "with results)", ["benchmark", "commit", "date", "subject", "value",
                                    "change vs previous"], rows,
                  "value: asv's median (time per step, or bytes); change against the previous "
                  "commit of this table that ran OK.", left=4)], pd.DataFrame(frame)


def _asv_date(rs, c) -> str:
    d = rs.commits[rs.commits["commit"] == c]["date"]
    return "" if d.empty or pd.isna(d.iloc[0]) else d.iloc[0].strftime("%Y-%m-%d")


def _md_escape(text: str) -> str:
    return text.replace("|", "\\|")


def _is_better(a, b, a_ss, b_ss, factor, use_stats):
    try:
        from asv.commands.compare import _is_result_better  # noqa: PLC0415
    except ImportError:  # an asv without it: the factor alone
        return a < b / factor
    return _is_result_better(a, b, a_ss, b_ss, factor, use_stats=use_stats)


def compare_table(rs, a, b, info, factor=1.1) -> list[Table]:
    """8: what `asv continuous A B` reports (asv's own test), regressions first."""
    f = rs.frame
    fa = {(r["benchmark"], r["cell"]): r for r in f[f["commit"] == a].to_dict("records")}
    fb = {(r["benchmark"], r["cell"]): r for r in f[f["commit"] == b].to_dict("records")}
    groups = {"regressed": [], "new failure": [], "improved": [], "fixed": []}
    unchanged = not_both = 0
    for key in sorted(set(fa) | set(fb)):
        ra, rb = fa.get(key), fb.get(key)
        sa = ra["status"] if ra else NOT_RUN
        sb = rb["status"] if rb else NOT_RUN
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
        if kind in ("regressed", "improved"):
            items.sort(key=lambda t: -(t[2]["value"] / t[1]["value"]) if kind == "regressed"
                       else t[2]["value"] / t[1]["value"])
        for (bench, cell), ra, rb, unit, k in items:
            va = ra["value"] if ra else math.nan
            vb = rb["value"] if rb else math.nan
            r = vb / va if not _nan(va) and not _nan(vb) and va else math.nan
            name = f"{bench}({cell})" if cell else bench
            if unit == "status" and k in ("regressed", "improved"):
                what = f"{T.STATUS_CODES.get(va, va)} → {T.STATUS_CODES.get(vb, vb)}"
                k = {"regressed": "regressed (status)", "improved": "improved (status)"}[k]
            else:
                what = ""
            frame.append(dict(benchmark=name, before=va, after=vb, ratio=r, change=k, unit=unit))
            rows.append([k, name, human(va, unit) if ra and ra["status"] == OK else
                         (ra["status"] if ra else NOT_RUN),
                         human(vb, unit) if rb and rb["status"] == OK else
                         (rb["status"] if rb else NOT_RUN), ratio(r), what])
    ia, ib = info.get(a, {}), info.get(b, {})
    caption = (f"before: {a[:8]} {ia.get('subject', '')!s} | after: {b[:8]} "
               f"{ib.get('subject', '')!s}. Flagged as `asv continuous` does (asv's own test: "
               f"ratio beyond {factor} and, for times, a significant difference of the samples); "
               f"{unchanged} cells unchanged, {not_both} not run (or not OK) on both.")
    return [Table("compare", f"8. Changes from {a[:8]} to {b[:8]}",
                  ["change", "benchmark", f"before ({a[:8]})", f"after ({b[:8]})", "ratio",
                   "status"], rows or [["none", "", "", "", "", ""]], _md_escape(caption),
                  left=2, frame=pd.DataFrame(frame))]


# ------------------------------------------------------------------ plots (PNG, Agg)

def _plt():
    import matplotlib  # noqa: PLC0415
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt  # noqa: PLC0415
    return plt


def _save(plt, fig, path: Path, title: str | None = None) -> Path:
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=90)
    plt.close(fig)
    return path


def _legend(axes, **kwargs) -> None:
    """The legend on the first panel that has labelled lines."""
    for ax in axes:
        if ax.get_legend_handles_labels()[0]:
            ax.legend(**kwargs)
            return


def _log_axes(ax, xbase: int) -> None:
    """Log-log where the axes hold positive data; an empty panel says so (log of nothing fails)."""
    data = [line for line in ax.get_lines() if (line.get_ydata() > 0).any()]
    if data:
        ax.set_xscale("log", base=xbase)
        ax.set_yscale("log")
    else:
        ax.text(0.5, 0.5, "no OK cells", ha="center", va="center", transform=ax.transAxes)


def plot_attention(norm, commit, path: Path) -> Path | None:
    a = _attention(norm, commit)
    if a.empty or _ran(a).empty:
        return None
    plt = _plt()
    dtype = T.order(_ran(a)["dtype"], ["float32", "bfloat16"])[0]
    sub = a[a["dtype"] == dtype]
    impls = T.order(_ran(sub)["impl"], T.IMPL_ORDER)
    ds = sorted(set(_ran(sub)["d"]))
    markers = "os^vDP*X"
    fig, axes = plt.subplots(1, 3, figsize=(15, 4.5))
    drawn = False
    for ax, (col, ylabel, scale) in zip(axes, [("fwd_mean", "forward (ms)", 1e3),
                                               ("bwd_mean", "backward (ms)", 1e3),
                                               ("mem_before_bwd_value", "memory before backward "
                                                                        "(MiB)", 1 / MiB)]):
        for ci, impl in enumerate(impls):
            for di, d in enumerate(ds):
                pts = sub[(sub["impl"] == impl) & (sub["d"] == d)].sort_values("seq")
                status_col = "fwd_status" if col.startswith("fwd") else "bwd_status"
                if status_col in pts:
                    pts = pts[pts[status_col] == OK]
                if col not in pts or pts[col].dropna().empty:
                    continue
                pts = pts.dropna(subset=[col])
                ax.plot(pts["seq"], pts[col] * scale, marker=markers[di % len(markers)],
                        color=f"C{ci}", label=f"{impl} d={d}")
                drawn = True
        _log_axes(ax, 2)
        ax.set_xlabel("seq_len")
        ax.set_ylabel(ylabel)
        ax.grid(True, which="both", alpha=0.3)
    if not drawn:
        plt.close(fig)
        return None
    _legend(axes, fontsize=7, ncol=2)
    return _save(plt, fig, path, f"attention, {dtype}, commit {commit[:8]}")


def plot_model(norm, commit, path: Path) -> Path | None:
    m = T.cells(norm, "model", commit)
    if m.empty:
        return None
    plt = _plt()
    fig, axes = plt.subplots(1, 3, figsize=(15, 4.5))
    drawn = False
    for ax, mode, label in zip(axes, ("fwd", "fwd_bwd", "train"),
                               ("forward", "forward+backward", "training step")):
        if f"{mode}_mean" not in m:
            continue
        ok = m[m.get(f"{mode}_status") == OK]
        for i, ((preset, prec, var), g) in enumerate(sorted(
                ok.groupby(["preset", "precision", "variant"]),
                key=lambda kv: (T.PRESET_ORDER.index(kv[0][0]) if kv[0][0] in T.PRESET_ORDER
                                else 99, kv[0][1], kv[0][2]))):
            g = g.sort_values("context")
            ax.plot(g["context"], g[f"{mode}_mean"] * 1e3, marker="o",
                    linestyle="-" if var == "sdpa" else "--", label=f"{preset} {prec} {var}")
            drawn = True
        _log_axes(ax, 2)
        ax.set_xlabel("context (tokens)")
        ax.set_ylabel(f"{label} per step (ms)")
        ax.grid(True, which="both", alpha=0.3)
    if not drawn:
        plt.close(fig)
        return None
    _legend(axes, fontsize=7)
    return _save(plt, fig, path, f"model step time, batch 4, commit {commit[:8]}")


def plot_history(hist: pd.DataFrame, path: Path) -> Path | None:
    if hist.empty or hist[hist["status"] == OK].empty:
        return None
    plt = _plt()
    names = list(dict.fromkeys(hist["benchmark"]))
    fig, axes = plt.subplots(len(names), 1, figsize=(10, 2.2 * len(names)), squeeze=False)
    for ax, name in zip(axes[:, 0], names):
        g = hist[hist["benchmark"] == name].reset_index(drop=True)
        unit = next((u for u in g["unit"] if isinstance(u, str)), None)
        scale, ylabel = (1e3, "ms") if unit == "seconds" else (1 / MiB, "MiB") \
            if unit == "bytes" else (1, unit or "")
        ok = g[g["status"] == OK]
        ax.plot(ok.index, ok["value"] * scale, marker="o")
        ax.set_xticks(range(len(g)))
        ax.set_xticklabels([c[:8] for c in g["commit"]], fontsize=7)
        ax.set_ylabel(ylabel)
        ax.set_title(name, fontsize=8)
        ax.grid(True, alpha=0.3)
    return _save(plt, fig, path)


def _safe_plot(notes: list, title: str, fn, *args):
    """A plot that cannot be drawn is a note under the tables, never a lost report."""
    try:
        return fn(*args)
    except Exception as err:  # noqa: BLE001 (matplotlib raises many kinds)
        notes.append(f"plot '{title}' not drawn: {type(err).__name__}: {err}")
        return None


# ------------------------------------------------------------------ the report

@dataclass
class Report:
    machine: str
    commit: str
    info: dict
    tables: list[Table]
    plots: dict[str, str]                       # title -> relative path
    notes: list[str]
    machine_info: dict = field(default_factory=dict)
    compare: tuple[str, str] | None = None
    history_frame: pd.DataFrame | None = None

    def table(self, key: str) -> Table:
        for t in self.tables:
            if t.key == key:
                return t
        raise KeyError(key)


def build_report(results_dir="results", machine=None, commit=None, history=10, compare=None,
                 repo=".", plots_dir: Path | None = None, plots_prefix: str = "") -> Report:
    rs = load(results_dir, machine)
    order = commit_order(rs, repo)
    full = resolve(rs, commit, repo, order)
    norm = T.normalize(rs.frame) if not rs.frame.empty else pd.DataFrame()
    info = git_commits(repo, order)
    notes = list(rs.notes)
    tables: list[Table] = []
    if not norm.empty:
        tables += warmup_table(norm, full)
        tables += model_steps_table(norm, full)
        tables += attention_tables(norm, full)
        tables += comparison_tables(norm, full)
    if not tables:
        notes.append(f"no attention or model results at {full[:8]} on {rs.machine}")
    heads = T.headline_cells(norm, full) if not norm.empty else []
    hist_tables, hist = history_table(rs, norm, full, order, history, info, heads)
    tables += hist_tables
    pair = None
    if compare:
        pair = (resolve(rs, compare[0], repo), resolve(rs, compare[1], repo))
    else:
        idx = order.index(full)
        if idx > 0:
            pair = (order[idx - 1], full)
    if pair:
        tables += compare_table(rs, pair[0], pair[1], info)
    plots = {}
    if plots_dir is not None and not norm.empty:
        for title, fn, name in (("attention time and memory vs seq_len", plot_attention,
                                 "attention.png"),
                                ("model step time per preset and context", plot_model,
                                 "model.png")):
            p = _safe_plot(notes, title, fn, norm, full, plots_dir / name)
            if p:
                plots[title] = f"{plots_prefix}{name}"
        p = _safe_plot(notes, "history", plot_history, hist, plots_dir / "history.png")
        if p:
            plots["history of the headline benchmarks"] = f"{plots_prefix}history.png"
    minfo = dict(rs.machine_info)
    if str(minfo.get("ram", "")).isdigit():
        minfo["ram"] = f"{int(minfo['ram']) / 2**30:.0f} GiB"
    return Report(rs.machine, full, info, tables, plots, notes, minfo, pair, hist)


def _env():
    import jinja2  # noqa: PLC0415
    return jinja2.Environment(loader=jinja2.FileSystemLoader(str(TEMPLATES)),
                              keep_trailing_newline=True, autoescape=False, trim_blocks=True,
                              lstrip_blocks=True,
                              undefined=jinja2.StrictUndefined)


def render_markdown(report: Report) -> str:
    env = _env()
    return env.get_template("summary.md.j2").render(r=report, ms=ms)


def markdown_to_html(md: str, title: str, back_link: str | None) -> str:
    import jinja2  # noqa: PLC0415
    import markdown  # noqa: PLC0415

    body = markdown.markdown(md, extensions=["tables", "toc"], output_format="html")
    env = jinja2.Environment(loader=jinja2.FileSystemLoader(str(TEMPLATES)), autoescape=True)
    return env.get_template("summary.html.j2").render(title=title, body=jinja2.Markup(body)
                                                      if hasattr(jinja2, "Markup") else
                                                      _markup(body), back_link=back_link)


def _markup(text):
    from markupsafe import Markup  # noqa: PLC0415
    return Markup(text)


@dataclass
class Written:
    markdown: Path
    html: Path | None
    report: Report
    notes: list[str]


def write_report(results_dir="results", machine=None, commit=None, output="html/summary.md",
                 history=10, compare=None, repo=".", plots=True, html=False,
                 back_link: str | None = None) -> Written:
    output = Path(output)
    files = output.parent / (output.stem + "_files")
    report = build_report(results_dir, machine, commit, history, compare, repo,
                          plots_dir=files if plots else None, plots_prefix=f"{files.name}/")
    md = render_markdown(report)
    output.parent.mkdir(parents=True, exist_ok=True)
    output.write_text(md, encoding="utf-8")
    html_path = None
    if html:
        html_path = output.with_suffix(".html")
        html_path.write_text(markdown_to_html(md, f"perfmodel summary: {report.machine} at "
                                                  f"{report.commit[:8]}", back_link),
                             encoding="utf-8")
    return Written(output, html_path, report, report.notes)


def write_error_page(path: Path, message: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(markdown_to_html(f"# perfmodel summary\n\nNo summary: {message}\n",
                                     "perfmodel summary", "index.html"), encoding="utf-8")
    return path
