"""Stage 3, the model's tables at one commit: the warm-up study (seed 004), forward and backward
per preset (seed 003) and seed 003's warm-up rows. Times in ms, like every table."""
from __future__ import annotations

import math

import pandas as pd

from ..names import NA, OK
from . import cells as T
from .cells import Table, ms, show
from .pivot import Pivot

SECTION = "Model"
# bench_model.Model's cells are warmed up by the measurement protocol (perfmodel.measure: at least
# 2 steps and 0.1 s on a GPU, 1 step and 0.02 s on the CPU), then sampled.
MODEL_WARMUP_STEPS = "protocol"
# seed 004's measures: column -> the cells' column (study_seconds, time_step's samples)
WARMUP_COLUMNS = [("Total", "total_s"), ("Warmup", "warmup_s"),
                  ("Avg/Step", "step_mean"), ("Std/Step", "step_std")]
DIMS = ("d_model", "d_ff", "n_heads", "n_layers")


def model_tables(p: Pivot) -> list[Table]:
    return [t for build in (warmup_table, model_steps_table, warmup_steps_table)
            for t in build(p)]


def study_seconds(cell: dict, cold: dict, warm: int) -> dict:
    """Warmup and Total of a warm-up-study cell from recorded samples: the first ``warm`` steps of
    a fresh process are the first ``warm`` samples of the warm-up-0 cell (``cold``)."""
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


def warmup_table(p: Pivot) -> list[Table]:
    """Seed 004 (the warm-up study)."""
    w = p.warmup
    if w.empty:
        return []
    preset, mode = p.rank("warmup", "preset"), p.rank("warmup", "mode")
    rows, frame = [], []
    keys = sorted({(r.preset, r.context, r.warmup) for r in w.itertuples()},
                  key=lambda k: (preset(k[0]), k[1], k[2]))
    by = {(r.preset, r.context, r.mode, r.warmup): r._asdict() for r in w.itertuples()}
    for (pre, ctx, m, warm), x in by.items():
        x.update(study_seconds(x, by.get((pre, ctx, m, 0), {}), warm))
    modes = sorted({k[2] for k in by}, key=mode)
    for pre, ctx, warm in keys:
        cells = {m: by.get((pre, ctx, m, warm), {}) for m in modes}
        dims = T.preset_dims(pre)
        rec = dict(preset=pre, context=ctx, warmup=warm, **dims)
        line = [pre, str(ctx), str(warm), *(str(dims[k] or NA) for k in
                                             ("d_model", "d_ff", "n_layers", "n_heads"))]
        status = {m: T.get(x, "step_status", NA) for m, x in cells.items()}
        line += list(status.values())
        for col, key in WARMUP_COLUMNS:
            for m, x in cells.items():
                rec[f"{col}_{m}"] = v = T.get(x, key)
                line.append(show(status[m], v, ms))  # OK without samples: n/a
        rec.update({f"status_{m}": st for m, st in status.items()})
        frame.append(rec)
        rows.append(line)
    label = {"fwd": "FWD", "fwd_bwd": "FWD+BWD"}
    cols = ["Config", "Seq Len", "Warmup Steps", "d_model", "d_ff", "n_layers", "num_heads",
            *(f"Status {label.get(m, m)}" for m in modes)]
    for col, _ in WARMUP_COLUMNS:
        cols += [f"{col} (ms) {label.get(m, m)}" for m in modes]
    return [Table("warmup", "Model runs and warm-up (as seed 004)", cols, rows,
                  "bench_model.Warmup.time_step: in a fresh process, 0, 1 or 5 untimed warm-up "
                  "steps, then 10 steps timed one by one (asv's samples, in order); fp32, sdpa "
                  "attention, no compile, batch 4. Avg/Step and Std/Step: of the 10 steps. "
                  "Warmup: what the first w steps of a fresh process took (the first w samples of "
                  "the warm-up-0 cell); Total: Warmup plus the 10 steps. n/a where asv recorded "
                  "no samples.", left=1, frame=pd.DataFrame(frame), section=SECTION,
                  keys=[0, 1, 2], measured_from=7)]


def model_steps_table(p: Pivot) -> list[Table]:
    """Seed 003: mean and std of forward and backward per preset."""
    m = p.model
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
    preset = p.rank("model", "preset")
    for r in sorted(sel.to_dict("records"), key=lambda r: preset(r["preset"])):
        sf, sb = T.get(r, "fwd_status", NA), T.get(r, "bwd_status", NA)
        if sf == NA and sb == NA:
            continue
        dims = T.preset_dims(r["preset"])
        n = int(max(T.get(r, "fwd_n", 0) or 0, T.get(r, "bwd_n", 0) or 0))
        rec = dict(preset=r["preset"], **dims, warmup=MODEL_WARMUP_STEPS, steps=n,
                   status_fwd=sf, status_bwd=sb, mean_fwd=T.get(r, "fwd_mean"),
                   std_fwd=T.get(r, "fwd_std"), mean_bwd=T.get(r, "bwd_mean"),
                   std_bwd=T.get(r, "bwd_std"))
        frame.append(rec)
        hf, hb = T.bound(r, "fwd"), T.bound(r, "bwd")
        rows.append([r["preset"], *(str(dims[k] or NA) for k in DIMS), str(rec["warmup"]),
                     str(n) if n else NA, show(sf, rec["mean_fwd"], ms, hf),
                     show(sf, rec["std_fwd"], ms), show(sb, rec["mean_bwd"], ms, hb),
                     show(sb, rec["std_bwd"], ms)])
    if not rows:
        return []
    return [Table("model", "Model forward and backward per preset (as seed 003)",
                  ["Config", "d_model", "d_ff", "num_heads", "num_layers", "warmup_steps",
                   "benchmark_steps", "mean forward (ms)", "std forward (ms)",
                   "mean backward (ms)", "std backward (ms)"], rows,
                  f"bench_model.Model at context {ctx}, {prec}, {var} attention, batch 4; mean and "
                  "std over asv's samples (one step each)." + T.split_note(p.split, "bwd"),
                  frame=pd.DataFrame(frame),
                  section=SECTION, keys=[0], measured_from=7)]


def warmup_steps_table(p: Pivot) -> list[Table]:
    """Seed 003's model table with its warm-up 0/1/5 rows, from the warm-up study."""
    w = p.warmup
    if w.empty:
        return []
    by = {(r["preset"], r["context"], r["mode"], r["warmup"]): r for r in w.to_dict("records")}
    preset = p.rank("warmup", "preset")
    ran = sorted({(pr, c) for (pr, c, m, k), r in by.items() if T.get(r, "step_status", NA) != NA},
                 key=lambda k: (preset(k[0]), k[1]))
    if not ran:
        return []
    ctx = min(c for _, c in ran)
    rows, frame = [], []
    for warm in sorted({k[3] for k in by}, reverse=True):  # the seed lists warm-up 5 first
        for pre in [pr for pr, c in ran if c == ctx]:
            dims = T.preset_dims(pre)
            f, fb = by.get((pre, ctx, "fwd", warm), {}), by.get((pre, ctx, "fwd_bwd", warm), {})
            sf, sb = T.get(f, "step_status", NA), T.get(fb, "step_status", NA)
            n = len(f.get("step_samples") or []) or len(fb.get("step_samples") or [])
            rec = dict(preset=pre, **dims, warmup=warm, steps=n, status_fwd=sf,
                       status_fwd_bwd=sb, mean_fwd=T.get(f, "step_mean"),
                       std_fwd=T.get(f, "step_std"), mean_fwd_bwd=T.get(fb, "step_mean"),
                       std_fwd_bwd=T.get(fb, "step_std"))
            frame.append(rec)
            rows.append([pre, *(str(dims[k] or NA) for k in DIMS), str(warm),
                         str(n) if n else NA,
                         *(show(st, rec[f"{stat}_{m}"], ms) for m, st in (("fwd", sf),
                                                                         ("fwd_bwd", sb))
                           for stat in ("mean", "std"))])
    return [Table("warmup_steps", f"Model steps after 0, 1 or 5 warm-up steps (as seed 003), "
                  f"context {ctx}",
                  ["Config", "d_model", "d_ff", "num_heads", "num_layers", "warmup_steps",
                   "benchmark_steps", "mean forward (ms)", "std forward (ms)",
                   "mean forward+backward (ms)", "std forward+backward (ms)"], rows,
                  "bench_model.Warmup.time_step: each row a fresh process; mean and std of the "
                  "steps timed one by one after the warm-up. The study times forward and "
                  "forward+backward (seed 003 had a separate backward).", left=1,
                  frame=pd.DataFrame(frame), section=SECTION, keys=[0, 5], measured_from=7)]
