"""Stage 3b: implementations, precisions and variants against each other at one commit."""
from __future__ import annotations

import math

import pandas as pd

from ..names import NA, OK
from . import cells as T
from .cells import Table, mib, ms, ratio, show
from .pivot import Pivot, ran_rows


def _speedup(base: dict, other: dict, measure: str) -> tuple[float, str]:
    """base time / other time and its cell (either side's host mark marks it: cells.either)."""
    so, sb = other.get(f"{measure}_status", NA), base.get(f"{measure}_status", NA)
    if so != OK or sb != OK:
        return math.nan, (so if so != OK else f"{base.get('impl', 'base')} {sb}"
                          if sb != NA else NA)
    sp = T.div(T.get(base, f"{measure}_mean"), T.get(other, f"{measure}_mean"))
    return sp, show(OK, sp, ratio, T.either(T.bound(base, measure), T.bound(other, measure)))


def against_eager(p: Pivot, sub: pd.DataFrame, dtype: str) -> list[Table]:
    """Each implementation against eager (speedup, memory ratio), one dtype's cells."""
    impls = p.order("attention", "impl", ran_rows(sub)["impl"])
    if "eager" not in impls or len(impls) < 2:
        return []
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
                    show(e.get("fwd_status", NA), T.get(e, "fwd_mean"), ms, T.bound(e, "fwd")),
                    show(e.get("bwd_status", NA), T.get(e, "bwd_mean"), ms, T.bound(e, "bwd")),
                    show(e.get("fwd_status", NA), T.get(e, "mem_before_bwd_value"), mib)]
            for i in others:
                o = by.get((i, d, seq), {})
                rec = {"d": d, "seq": seq, "impl": i}
                for pas in ("fwd", "bwd"):
                    rec[f"{pas}_speedup"], cell = _speedup(e, o, pas)
                    line.append(cell)
                mr = T.div(T.get(o, "mem_before_bwd_value"), T.get(e, "mem_before_bwd_value"))
                rec["mem_ratio"] = mr
                line.append(ratio(mr))
                frame.append(rec)
            rows.append(line)
    return [Table(f"compare_attention_{dtype}", f"Attention implementations against eager, "
                  f"{dtype}", cols, rows,
                  "speedup = eager time / implementation time (higher is faster); mem ratio = "
                  "implementation's memory before backward / eager's (lower is leaner).",
                  left=0, frame=pd.DataFrame(frame), section=f"Attention, {dtype}", keys=[0, 1])]


def model_comparisons(p: Pivot) -> list[Table]:
    """Model fp32 against bf16, and the variants against the first (benchmarks.json's order)."""
    m = p.model
    if m.empty:
        return []
    out = []
    by = {(r["preset"], r["context"], r["precision"], r["variant"]): r
          for r in m.to_dict("records")}
    ran = [k for k, r in by.items() if r.get("fwd_bwd_status", NA) != NA]
    preset, variant = p.rank("model", "preset"), p.rank("model", "variant")
    rows, frame = [], []
    for pre, ctx, var in sorted({(k[0], k[1], k[3]) for k in ran},
                                key=lambda k: (preset(k[0]), k[1], variant(k[2]))):
        f, b = by.get((pre, ctx, "fp32", var), {}), by.get((pre, ctx, "bf16", var), {})
        sf, sb = f.get("fwd_bwd_status", NA), b.get("fwd_bwd_status", NA)
        sp = T.div(T.get(f, "fwd_bwd_mean"), T.get(b, "fwd_bwd_mean")) \
            if sf == OK and sb == OK else math.nan
        hb = T.either(T.bound(f, "fwd_bwd"), T.bound(b, "fwd_bwd"))
        mf, mb = T.get(f, "mem_before_bwd_value"), T.get(b, "mem_before_bwd_value")
        mr = T.div(mb, mf)
        frame.append(dict(preset=pre, context=ctx, variant=var, speedup=sp, mem_ratio=mr))
        rows.append([pre, str(ctx), var,
                     show(sf, T.get(f, "fwd_bwd_mean"), ms, T.bound(f, "fwd_bwd")),
                     show(sb, T.get(b, "fwd_bwd_mean"), ms, T.bound(b, "fwd_bwd")),
                     show(OK, sp, ratio, hb), show(sf, mf, mib), show(sb, mb, mib), ratio(mr)])
    if rows:
        out.append(Table("compare_precision", "Model fp32 against bf16 (autocast)",
                         ["Config", "Seq Len", "variant", "fp32 fwd+bwd (ms)",
                          "bf16 fwd+bwd (ms)", "bf16 speedup (×)", "fp32 mem before bwd (MiB)",
                          "bf16 mem before bwd (MiB)", "bf16 mem ratio (×)"], rows,
                         "bench_model.Model, forward+backward step; speedup = fp32 time / "
                         "bf16 time; memory tracked on a GPU only (n/a on a CPU)."
                         + T.split_note(p.split, "fwd_bwd", memory=True),
                         left=3, frame=pd.DataFrame(frame), section="Model", keys=[0, 1, 2]))
    variants = p.order("model", "variant", [k[3] for k in ran])
    if len(variants) > 1:
        base = variants[0]
        rows, frame = [], []
        for pre, ctx, prec in sorted({(k[0], k[1], k[2]) for k in ran},
                                     key=lambda k: (preset(k[0]), k[1],
                                                    p.rank("model", "precision")(k[2]))):
            b = by.get((pre, ctx, prec, base), {})
            line = [pre, str(ctx), prec,
                    show(b.get("train_status", NA), T.get(b, "train_mean"), ms,
                         T.bound(b, "train"))]
            for v in variants[1:]:
                o = by.get((pre, ctx, prec, v), {})
                so, sb_ = o.get("train_status", NA), b.get("train_status", NA)
                sp = T.div(T.get(b, "train_mean"), T.get(o, "train_mean")) \
                    if so == OK and sb_ == OK else math.nan
                frame.append(dict(preset=pre, context=ctx, precision=prec, variant=v,
                                  speedup=sp))
                line += [show(so, T.get(o, "train_mean"), ms, T.bound(o, "train")),
                         show(OK, sp, ratio, T.either(T.bound(b, "train"), T.bound(o, "train")))]
            rows.append(line)
        cols = ["Config", "Seq Len", "precision", f"{base} train step (ms)"]
        for v in variants[1:]:
            cols += [f"{v} train step (ms)", f"{v} speedup (×)"]
        out.append(Table("compare_variant", f"Model variants against {base}", cols, rows,
                         "training step (forward, backward, AdamW); speedup = "
                         f"{base} time / variant time.", left=3, frame=pd.DataFrame(frame),
                         section="Model", keys=[0, 1, 2]))
    return out
