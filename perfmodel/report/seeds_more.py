"""Stage 3, seed tables (continued): seed 003's two tables and seed 002's flat table.

seeds.py has the forms of seeds 000, 001, 002 (pivots) and 004; these three read the same cells.
"""
from __future__ import annotations

import pandas as pd

from ..names import NA, OK
from . import cells as T
from .cells import Table, cell_or_status, mib, ms, nan
from .seeds import attention_cells, ran_rows, seconds


def warmup_steps_table(norm, commit) -> list[Table]:
    """6: seed 003's model table with its warm-up 0/1/5 rows, from the warm-up study."""
    w = T.cells(norm, "warmup", commit)
    if w.empty:
        return []
    by = {(r["preset"], r["context"], r["mode"], r["warmup"]): r for r in w.to_dict("records")}
    ran = sorted({(p, c) for (p, c, m, k), r in by.items() if T.get(r, "step_status", NA) != NA},
                 key=lambda k: (T.PRESET_ORDER.index(k[0]) if k[0] in T.PRESET_ORDER else 99, k[1]))
    if not ran:
        return []
    ctx = min(c for _, c in ran)
    rows, frame = [], []
    for warm in sorted({k[3] for k in by}, reverse=True):  # the seed lists warm-up 5 first
        for preset in [p for p, c in ran if c == ctx]:
            dims = T.preset_dims(preset)
            f, fb = by.get((preset, ctx, "fwd", warm), {}), by.get((preset, ctx, "fwd_bwd", warm), {})
            sf, sb = T.get(f, "step_status", NA), T.get(fb, "step_status", NA)
            n = len(f.get("step_samples") or []) or len(fb.get("step_samples") or [])
            rec = dict(preset=preset, **dims, warmup=warm, steps=n, status_fwd=sf,
                       status_fwd_bwd=sb, mean_fwd=T.get(f, "step_mean"),
                       std_fwd=T.get(f, "step_std"), mean_fwd_bwd=T.get(fb, "step_mean"),
                       std_fwd_bwd=T.get(fb, "step_std"))
            frame.append(rec)
            rows.append([preset, *(str(dims[k] or "") for k in ("d_model", "d_ff", "n_heads",
                                                                 "n_layers")),
                         str(warm), str(n) if n else NA,
                         *(_value(st, rec[f"{stat}_{m}"]) for m, st in (("fwd", sf),
                                                                         ("fwd_bwd", sb))
                           for stat in ("mean", "std"))])
    return [Table("warmup_steps", f"6. Model steps after 0, 1 or 5 warm-up steps (as seed 003), "
                  f"context {ctx}",
                  ["Config", "d_model", "d_ff", "num_heads", "num_layers", "warmup_steps",
                   "benchmark_steps", "mean forward (s)", "std forward (s)",
                   "mean forward+backward (s)", "std forward+backward (s)"], rows,
                  "bench_model.Warmup.time_step: each row a fresh process; mean and std of the "
                  "steps timed one by one after the warm-up (seconds). The study times forward "
                  "and forward+backward (seed 003 had a separate backward).", left=1,
                  frame=pd.DataFrame(frame))]


def _value(status, v) -> str:
    if status == OK and nan(v):
        return NA  # no recorded samples
    return cell_or_status(status, v, seconds)


def attention_memory_tables(norm, commit) -> list[Table]:
    """7: seed 003's attention table (mean, std, peak memory), 8: seed 002's flat table; one per
    implementation and dtype that ran."""
    a = attention_cells(norm, commit)
    if a.empty or ran_rows(a).empty:
        return []
    out = []
    for dtype in T.order(ran_rows(a)["dtype"], ["float32", "bfloat16"]):
        sub = a[a["dtype"] == dtype]
        for impl in T.order(ran_rows(sub)["impl"], T.IMPL_ORDER):
            recs = sorted((r for r in sub.to_dict("records") if r["impl"] == impl and
                           r["status"] != NA), key=lambda r: (r["d"], r["seq"]))
            rows7, rows8 = [], []
            for r in recs:
                sf, sb = r.get("fwd_status", NA), r.get("bwd_status", NA)
                peak = T.get(r, "gpu_peak_bwd_value")  # GPU only: the suite's policy
                rows7.append([str(r["d"]), str(r["seq"]),
                              cell_or_status(sf, T.get(r, "fwd_mean"), seconds),
                              cell_or_status(sf, T.get(r, "fwd_std"), seconds),
                              cell_or_status(sb, T.get(r, "bwd_mean"), seconds),
                              cell_or_status(sb, T.get(r, "bwd_std"), seconds),
                              cell_or_status(sb, peak, mib) if not nan(peak) or sb != OK
                              else NA])
                rows8.append([str(r["d"]), str(r["seq"]),
                              cell_or_status(sf, T.get(r, "fwd_mean"), ms),
                              cell_or_status(sb, T.get(r, "bwd_mean"), ms),
                              "ok" if r["status"] == OK else r["status"].lower()])
            if not recs:
                continue
            out.append(Table(f"seed003_attention_{impl}_{dtype}",
                             f"7. {impl}, {dtype}: mean, std and peak memory (as seed 003)",
                             ["d_head", "seq_len", "forward_mean (s)", "forward_std (s)",
                              "backward_mean (s)", "backward_std (s)", "max_memory (MiB)"],
                             rows7, "max_memory: the CUDA allocator's peak over a backward step, "
                             "its forward included (n/a on the CPU, where the suite tracks no "
                             "memory).", left=0))
            out.append(Table(f"seed002_flat_{impl}_{dtype}",
                             f"8. {impl}, {dtype}: forward and backward (as seed 002)",
                             ["d_model", "seq_len", "forward_ms", "backward_ms", "status"],
                             rows8, "", left=0))
    return out
