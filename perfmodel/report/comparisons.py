"""Stage 3b: implementations, precisions and variants against each other at one commit."""
from __future__ import annotations

import math

import pandas as pd

from ..names import NA, OK
from . import cells as T
from .cells import Table, cell_or_status, mib, ms, nan, ratio
from .seeds import attention_cells, ran_rows


def comparison_tables(norm, commit) -> list[Table]:
    """6: implementations against eager (speedup, memory ratio); model fp32 vs bf16; variants."""
    out = []
    a = attention_cells(norm, commit)
    if not a.empty and not ran_rows(a).empty:
        for dtype in T.order(ran_rows(a)["dtype"], ["float32", "bfloat16"]):
            sub = a[a["dtype"] == dtype]
            impls = T.order(ran_rows(sub)["impl"], T.IMPL_ORDER)
            if "eager" not in impls or len(impls) < 2:
                continue
            others = [i for i in impls if i != "eager"]
            by = {(r["impl"], r["d"], r["seq"]): r for r in sub.to_dict("records")}
            ds, seqs = sorted(set(ran_rows(sub)["d"])), sorted(set(ran_rows(sub)["seq"]))
            cols = ["d_model", "seq_len", "eager fwd (ms)", "eager bwd (ms)", "eager mem (MiB)"]
            for i in others:
                cols += [f"{i} fwd speedup (×)", f"{i} bwd speedup (×)", f"{i} mem ratio (×)"]
            rows, frame = [], []
            for d in ds:
                for seq in seqs:
                    e = by.get(("eager", d, seq), {})
                    line = [str(d), str(seq),
                            cell_or_status(e.get("fwd_status", NA), T.get(e, "fwd_mean"), ms),
                            cell_or_status(e.get("bwd_status", NA), T.get(e, "bwd_mean"), ms),
                            mib(T.get(e, "mem_before_bwd_value"))]
                    for i in others:
                        o = by.get((i, d, seq), {})
                        rec = {"d": d, "seq": seq, "impl": i}
                        for pas in ("fwd", "bwd"):
                            so, se = o.get(f"{pas}_status", NA), e.get(f"{pas}_status", NA)
                            sp = T.div(T.get(e, f"{pas}_mean"), T.get(o, f"{pas}_mean")) \
                                if so == OK and se == OK else math.nan
                            rec[f"{pas}_speedup"] = sp
                            line.append(ratio(sp) if so == OK and se == OK else
                                        (so if so != OK else f"eager {se}"))
                        mr = T.div(T.get(o, "mem_before_bwd_value"),
                                   T.get(e, "mem_before_bwd_value"))
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
        ran = [k for k, r in by.items() if r.get("fwd_bwd_status", NA) != NA]
        rows, frame = [], []
        for preset, ctx, var in sorted({(k[0], k[1], k[3]) for k in ran},
                                       key=lambda k: (T.PRESET_ORDER.index(k[0]) if k[0] in
                                                      T.PRESET_ORDER else 99, k[1],
                                                      T.VARIANT_ORDER.index(k[2]) if k[2] in
                                                      T.VARIANT_ORDER else 99)):
            f, b = by.get((preset, ctx, "fp32", var), {}), by.get((preset, ctx, "bf16", var), {})
            sf, sb = f.get("fwd_bwd_status", NA), b.get("fwd_bwd_status", NA)
            sp = T.div(T.get(f, "fwd_bwd_mean"), T.get(b, "fwd_bwd_mean")) \
                if sf == OK and sb == OK else math.nan
            mf, mb = T.get(f, "mem_before_bwd_value"), T.get(b, "mem_before_bwd_value")
            mr = T.div(mb, mf)
            frame.append(dict(preset=preset, context=ctx, variant=var, speedup=sp, mem_ratio=mr))
            rows.append([preset, str(ctx), var,
                         cell_or_status(sf, T.get(f, "fwd_bwd_mean"), ms),
                         cell_or_status(sb, T.get(b, "fwd_bwd_mean"), ms), ratio(sp),
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
                        cell_or_status(b.get("train_status", NA), T.get(b, "train_mean"), ms)]
                for v in variants[1:]:
                    o = by.get((preset, ctx, prec, v), {})
                    so, sb_ = o.get("train_status", NA), b.get("train_status", NA)
                    sp = T.div(T.get(b, "train_mean"), T.get(o, "train_mean")) \
                        if so == OK and sb_ == OK else math.nan
                    frame.append(dict(preset=preset, context=ctx, precision=prec, variant=v,
                                      speedup=sp))
                    line += [cell_or_status(so, T.get(o, "train_mean"), ms),
                             ratio(sp) if so == OK and sb_ == OK else ""]
                rows.append(line)
            cols = ["Config", "Seq Len", "precision", f"{base} train step (ms)"]
            for v in variants[1:]:
                cols += [f"{v} train step (ms)", f"{v} speedup (×)"]
            out.append(Table("compare_variant", f"6c. Model variants against {base}", cols, rows,
                             "training step (forward, backward, AdamW); speedup = "
                             f"{base} time / variant time.", left=3, frame=pd.DataFrame(frame)))
    return out
