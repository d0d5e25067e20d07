"""Stage 3, seed tables: the forms of the seeds (000-004) at one commit."""
from __future__ import annotations

import math

import pandas as pd

from ..names import NA, OK
from . import cells as T
from .cells import Table, cell_or_status, mib, ms, nan


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
    for (preset, ctx, mode, warm), x in by.items():
        x.update(study_seconds(x, by.get((preset, ctx, mode, 0), {}), warm))
    for preset, ctx, warm in keys:
        f, fb = by.get((preset, ctx, "fwd", warm), {}), by.get((preset, ctx, "fwd_bwd", warm), {})
        dims = T.preset_dims(preset)
        rec = dict(preset=preset, context=ctx, warmup=warm, **dims)
        line = [preset, str(ctx), str(warm), *(str(dims[k] or "") for k in
                                               ("d_model", "d_ff", "n_layers", "n_heads"))]
        status = {m: T.get(x, "step_status", NA) for m, x in (("fwd", f), ("fwd_bwd", fb))}
        line += list(status.values())
        for col, key in WARMUP_COLUMNS:
            for m, x in (("fwd", f), ("fwd_bwd", fb)):
                rec[f"{col}_{m}"] = v = T.get(x, key)
                # OK with no value: the results hold no samples (asv run without
                # --record-samples), or the warm-up-0 cell did not run: n/a
                line.append(cell_or_status(status[m], v, seconds) if not (
                    status[m] == OK and nan(v)) else NA)
        rec.update({f"status_{m}": st for m, st in status.items()})
        frame.append(rec)
        rows.append(line)
    cols = ["Config", "Seq Len", "Warmup Steps", "d_model", "d_ff", "n_layers", "num_heads",
            "Status FWD", "Status FWD+BWD"]
    for col, _ in WARMUP_COLUMNS:
        cols += [f"{col}(s) FWD", f"{col}(s) FWD+BWD"]
    return [Table("warmup", "1. Model runs and warm-up (as seed 004)", cols, rows,
                  "bench_model.Warmup.time_step: in a fresh process, 0, 1 or 5 untimed warm-up "
                  "steps, then 10 steps timed one by one (asv's samples, in order); fp32, sdpa "
                  "attention, no compile, batch 4. Avg/Std: of the 10 steps. Warmup: what the "
                  "first w steps of a fresh process took (the first w samples of the warm-up-0 "
                  "cell); Total: Warmup plus the 10 steps. Seconds; n/a without recorded samples.",
                  left=1, frame=pd.DataFrame(frame))]


def study_seconds(cell: dict, cold: dict, warm: int) -> dict:
    """Warmup(s) and Total(s) of a warm-up-study cell from recorded samples: the first ``warm``
    steps of a fresh process are the first ``warm`` samples of the warm-up-0 cell (``cold``)."""
    steps, first = cell.get("step_samples"), cold.get("step_samples")
    if not isinstance(steps, list) or not steps:
        return {"warmup_s": math.nan, "total_s": math.nan}
    if warm == 0:
        warmup = 0.0
    elif isinstance(first, list) and len(first) >= warm:
        warmup = float(sum(first[:warm]))
    else:
        warmup = math.nan
    return {"warmup_s": warmup, "total_s": warmup + float(sum(steps))}


def seconds(v) -> str:
    return "" if nan(v) else f"{v:.4g}"


# seed 004's measures: column -> the cells' column (study_seconds, time_step's samples)
WARMUP_COLUMNS = [("Total", "total_s"), ("Warmup", "warmup_s"),
                  ("Avg/Step", "step_mean"), ("Std/Step", "step_std")]


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
        sf, sb = T.get(r, "fwd_status", NA), T.get(r, "bwd_status", NA)
        if sf == NA and sb == NA:
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
                     cell_or_status(sf, rec["mean_fwd"], ms), cell_or_status(sf, rec["std_fwd"], ms),
                     cell_or_status(sb, rec["mean_bwd"], ms), cell_or_status(sb, rec["std_bwd"], ms)])
    if not rows:
        return []
    return [Table("model", "2. Model forward and backward per preset (as seed 003)",
                  ["Config", "d_model", "d_ff", "num_heads", "num_layers", "warmup_steps",
                   "benchmark_steps", "mean forward (ms)", "std forward (ms)",
                   "mean backward (ms)", "std backward (ms)"], rows,
                  f"bench_model.Model at context {ctx}, {prec}, {var} attention, batch 4; mean and "
                  "std over asv's samples (one step each).", frame=pd.DataFrame(frame))]


def attention_cells(norm, commit):
    a = T.cells(norm, "attention", commit)
    if a.empty:
        return a
    a["status"] = [T.combined_status(T.get(r, "fwd_status", NA), T.get(r, "bwd_status", NA))
                   for r in a.to_dict("records")]
    return a


def ran_rows(df):
    """Rows of cells that ran on this machine in at least one pass (OK, OOM or failed)."""
    if df.empty:
        return df
    return df[df["status"] != NA] if "status" in df else df


def attention_tables(norm, commit) -> list[Table]:
    """3: seed 001, 4: seed 000, 5: seed 002 pivots (per dtype; 4 and 5 per implementation)."""
    a = attention_cells(norm, commit)
    if a.empty:
        return []
    out = []
    ran_keys = ran_rows(a)
    dtypes = T.order(ran_keys["dtype"], ["float32", "bfloat16"]) if not ran_keys.empty else []
    for dtype in dtypes:
        sub = a[a["dtype"] == dtype]
        impls = T.order(ran_rows(sub)["impl"], T.IMPL_ORDER)
        sub = sub[sub["impl"].isin(impls)]
        ds = sorted(set(ran_rows(sub)["d"]))
        seqs = sorted(set(ran_rows(sub)["seq"]))
        sub = sub[sub["d"].isin(ds) & sub["seq"].isin(seqs)]
        recs = sorted(sub.to_dict("records"), key=lambda r: (r["d"], r["seq"],
                                                            T.IMPL_ORDER.index(r["impl"])
                                                            if r["impl"] in T.IMPL_ORDER else 99))
        rows = []
        for r in recs:
            st = r["status"]
            mem = T.get(r, "mem_before_bwd_value")
            rows.append([r["impl"], str(r["d"]), str(r["seq"]), st,
                         cell_or_status(r.get("fwd_status"), T.get(r, "fwd_mean"), ms) if st != OK
                         else ms(T.get(r, "fwd_mean")),
                         ms(T.get(r, "fwd_std")) if r.get("fwd_status") == OK else "",
                         cell_or_status(r.get("bwd_status"), T.get(r, "bwd_mean"), ms) if st != OK
                         else ms(T.get(r, "bwd_mean")),
                         ms(T.get(r, "bwd_std")) if r.get("bwd_status") == OK else "",
                         mib(mem) if not nan(mem) else (st if st != OK else "")])
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
                      cell_or_status(r.get("fwd_status", NA), T.get(r, "fwd_mean"), ms),
                      cell_or_status(r["status"] if r.get("fwd_status") == OK else
                                      r.get("fwd_status", NA),
                                      T.get(r, "mem_before_bwd_value"), mib)
                      if not nan(T.get(r, "mem_before_bwd_value")) or r.get("fwd_status") != OK
                      else "",
                      cell_or_status(r.get("bwd_status", NA), T.get(r, "bwd_mean"), ms)]
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
                        line.append(cell_or_status(r.get(f"{pas}_status", NA),
                                                    T.get(r, f"{pas}_mean"), ms))
                    prow.append(line)
                out.append(Table(f"pivot_{pas}_{impl}_{dtype}",
                                 f"5. {impl}, {dtype}: {label} (ms/iter) by seq_len x d_model "
                                 "(as seed 002)", ["seq_len"] + [str(d) for d in ds], prow,
                                 left=0))
    return out
