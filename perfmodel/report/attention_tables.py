"""Stage 3, the attention tables at one commit, one section per dtype: seed 001's table, the
implementations against eager (comparisons.py), then per implementation seed 000's table, seed
002's pivots, seed 003's table and seed 002's flat table. Times in ms, memory in MiB."""
from __future__ import annotations

import pandas as pd

from ..names import NA
from . import cells as T
from .cells import Table, mib, ms, show
from .comparisons import against_eager
from .pivot import Pivot, ran_rows

CAPTION = ("bench_attention.Attention: batch 8, (batch, seq, d) inputs, causal; mean and std over "
           "asv's samples. Memory before backward: the CUDA allocator's bytes in use just before "
           "the backward pass (tracked on a GPU only: n/a on a CPU).")


def section(dtype: str) -> str:
    return f"Attention, {dtype}"


def attention_tables(p: Pivot) -> list[Table]:
    a = p.attention
    if a.empty or ran_rows(a).empty:
        return []
    out = []
    for dtype in p.order("attention", "dtype", ran_rows(a)["dtype"]):
        sub = a[a["dtype"] == dtype]
        impls = p.order("attention", "impl", ran_rows(sub)["impl"])
        ds = sorted(set(ran_rows(sub)["d"]))
        seqs = sorted(set(ran_rows(sub)["seq"]))
        sub = sub[sub["impl"].isin(impls) & sub["d"].isin(ds) & sub["seq"].isin(seqs)]
        impl = p.rank("attention", "impl")
        recs = sorted(sub.to_dict("records"), key=lambda r: (r["d"], r["seq"], impl(r["impl"])))
        out.append(seed001(recs, dtype))
        out += against_eager(p, sub, dtype)
        for i in impls:
            mine = [r for r in recs if r["impl"] == i]
            out += [seed000(mine, i, dtype), *seed002_pivots(mine, i, dtype, ds, seqs),
                    seed003(mine, i, dtype), seed002_flat(mine, i, dtype)]
    return [t for t in out if t is not None]


def _times(r) -> list[str]:
    """Forward mean, std, backward mean, std of one cell."""
    sf, sb = r.get("fwd_status", NA), r.get("bwd_status", NA)
    return [show(sf, T.get(r, "fwd_mean"), ms, T.bound(r, "fwd")), show(sf, T.get(r, "fwd_std"), ms),
            show(sb, T.get(r, "bwd_mean"), ms, T.bound(r, "bwd")), show(sb, T.get(r, "bwd_std"), ms)]


def seed001(recs, dtype) -> Table:
    rows = [[r["impl"], str(r["d"]), str(r["seq"]), r["status"], *_times(r),
             show(r.get("fwd_status", NA), T.get(r, "mem_before_bwd_value"), mib)] for r in recs]
    return Table(f"attention_{dtype}", f"Attention forward and backward, {dtype} (as seed 001)",
                 ["method", "d_model", "seq_len", "status", "fwd mean (ms)", "fwd std (ms)",
                  "bwd mean (ms)", "bwd std (ms)", "mem before bwd (MiB)"], rows, CAPTION,
                 left=1, frame=pd.DataFrame(recs), section=section(dtype), keys=[0, 1, 2])


def seed000(recs, impl, dtype) -> Table:
    rows = [[str(r["d"]), str(r["seq"]),
             show(r.get("fwd_status", NA), T.get(r, "fwd_mean"), ms, T.bound(r, "fwd")),
             show(r.get("fwd_status", NA), T.get(r, "mem_before_bwd_value"), mib),
             show(r.get("bwd_status", NA), T.get(r, "bwd_mean"), ms, T.bound(r, "bwd"))]
            for r in recs]
    return Table(f"seed000_{impl}_{dtype}", f"{impl}, {dtype}: forward, memory after forward, "
                 "backward (as seed 000)", ["d_model", "seq_len", "forward time (ms)",
                                            "memory after forward (MiB)", "backward time (ms)"],
                 rows, "", left=0, frame=pd.DataFrame(recs), section=section(dtype), keys=[0, 1])


def seed002_pivots(recs, impl, dtype, ds, seqs) -> list[Table]:
    by = {(r["d"], r["seq"]): r for r in recs}
    out = []
    for pas, label in (("fwd", "forward"), ("bwd", "backward")):
        rows = [[str(seq)] + [show(by.get((d, seq), {}).get(f"{pas}_status", NA),
                                   T.get(by.get((d, seq), {}), f"{pas}_mean"), ms,
                                   T.bound(by.get((d, seq), {}), pas)) for d in ds]
                for seq in seqs]
        out.append(Table(f"pivot_{pas}_{impl}_{dtype}", f"{impl}, {dtype}: {label} time (ms) by "
                         "seq_len and d_model (as seed 002)", ["seq_len"] + [str(d) for d in ds],
                         rows, "", left=0, section=section(dtype), keys=[0]))
    return out


def seed003(recs, impl, dtype) -> Table | None:
    ran = [r for r in recs if r["status"] != NA]
    if not ran:
        return None
    rows = [[str(r["d"]), str(r["seq"]), *_times(r),
             show(r.get("bwd_status", NA), T.get(r, "gpu_peak_bwd_value"), mib)] for r in ran]
    return Table(f"seed003_attention_{impl}_{dtype}", f"{impl}, {dtype}: mean, std and peak "
                 "memory (as seed 003)", ["d_head", "seq_len", "forward_mean (ms)",
                                          "forward_std (ms)", "backward_mean (ms)",
                                          "backward_std (ms)", "max_memory (MiB)"], rows,
                 "max_memory: the CUDA allocator's peak over a backward step, its forward "
                 "included (tracked on a GPU only: n/a on a CPU).", left=0,
                 section=section(dtype), keys=[0, 1])


def seed002_flat(recs, impl, dtype) -> Table | None:
    ran = [r for r in recs if r["status"] != NA]
    if not ran:
        return None
    rows = [[str(r["d"]), str(r["seq"]),
             show(r.get("fwd_status", NA), T.get(r, "fwd_mean"), ms, T.bound(r, "fwd")),
             show(r.get("bwd_status", NA), T.get(r, "bwd_mean"), ms, T.bound(r, "bwd")),
             r["status"]] for r in ran]
    return Table(f"seed002_flat_{impl}_{dtype}", f"{impl}, {dtype}: forward and backward "
                 "(as seed 002)", ["d_model", "seq_len", "forward_ms", "backward_ms",
                                   "status"], rows, "", left=0, section=section(dtype),
                 keys=[0, 1])
