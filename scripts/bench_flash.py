"""Correctness checks and timings of perfmodel's FlashAttention-2 (Triton and tiled PyTorch).

Run on the GPU box from the repository root, e.g.:

    python3 scripts/bench_flash.py --check --targets
    python3 scripts/bench_flash.py --grid --long

--check    small shapes against a float64 reference (all d, fp32/bf16, causal and not,
           ragged lengths, seq_q != seq_k), fixed kernel config (no autotuning)
--targets  the two target shapes (b8 x s16384 x d128 3D, b1 x h16 x s16384 x d64 4D, bf16,
           causal), autotuned, checked against SDPA and a float64 forward on a slice
--grid     batch 8 x d {16,32,64,128} x seq {256..16384}, fp32 and bf16, causal
--long     seq 65536 at batch 1, d 64 and 128, fp32 and bf16, causal

Timings are triton.testing.do_bench medians; the table comes last.  FLOPs: 4*b*h*s_q*s_k*d
per forward (halved when causal), 2.5x that for backward.  Peak MiB is
torch.cuda.max_memory_allocated over one forward+backward (inputs included, no do_bench
L2-flush buffer).
"""
from __future__ import annotations

import argparse
import json
import math
import os
import sys
import time

import torch
import torch.nn.functional as F

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))

from perfmodel import flash_triton  # noqa: E402
from perfmodel.flash_torch import flash_torch_attention  # noqa: E402
from perfmodel.flash_triton import flash_attention  # noqa: E402


def rel(x, ref):
    x = x.double()
    ref = ref.double()
    return ((x - ref).norm() / ref.norm().clamp_min(1e-30)).item()


def reference(q, k, v, causal):
    """float64 attention and its logsumexp (q, k, v already float64)."""
    s = q @ k.transpose(-1, -2) / math.sqrt(q.shape[-1])
    if causal:
        i = torch.arange(q.shape[-2], device=q.device)[:, None]
        j = torch.arange(k.shape[-2], device=q.device)[None, :]
        s = s.masked_fill(j > i, float("-inf"))
    return torch.softmax(s, -1) @ v, torch.logsumexp(s, -1)


def check_small(impls, gen):
    """float64 reference checks on small shapes; returns the number of failures."""
    tol = {torch.float32: {"flash": 1e-3, "flash_torch": 1e-5}, torch.bfloat16: {"flash": 2e-2, "flash_torch": 2e-2}}
    cases = [(2, 1, 1, 64, True, torch.float32), (2, 1, 1, 64, False, torch.bfloat16)]
    for d in (16, 32, 64, 128):
        for dtype in (torch.float32, torch.bfloat16):
            # ragged causal (several tiles, diagonal and tail masks) and non-causal sq != sk
            cases += [(2, 257, 257, d, True, dtype), (2, 200, 77, d, False, dtype)]
            cases += [(1, 77, 300, d, False, dtype)] if d == 64 else []
    cases += [(1, 300, 129, 64, True, torch.float32), (1, 129, 300, 64, True, torch.bfloat16)]
    fails = 0
    worst = {}
    for impl in impls:
        fn = flash_attention if impl == "flash" else flash_torch_attention
        for b, sq, sk, d, causal, dtype in cases:
            q = torch.randn(b, sq, d, generator=gen, device="cuda").to(dtype).requires_grad_()
            k = torch.randn(b, sk, d, generator=gen, device="cuda").to(dtype).requires_grad_()
            v = torch.randn(b, sk, d, generator=gen, device="cuda").to(dtype).requires_grad_()
            do = torch.randn(b, sq, d, generator=gen, device="cuda").to(dtype)
            out = fn(q, k, v, causal)
            saved = out.grad_fn.saved_tensors
            assert len(saved) == 5 and saved[4].shape == (b, sq) and saved[4].dtype == torch.float32
            lse = saved[4].clone()
            out.backward(do)
            qd, kd, vd = (x.detach().double().requires_grad_() for x in (q, k, v))
            ro, rlse = reference(qd, kd, vd, causal)
            ro.backward(do.double())
            errs = {"o": rel(out, ro), "lse": rel(lse, rlse)}
            for name, g, rg in (("dq", q.grad, qd.grad), ("dk", k.grad, kd.grad), ("dv", v.grad, vd.grad)):
                if rg.norm() > 1e-6:  # one key: softmax is constant, dq = dk = 0
                    errs[name] = rel(g, rg)
                else:
                    errs[name] = g.double().abs().max().item()
            bad = [n for n, e in errs.items() if not (e < tol[dtype][impl])]
            key = (impl, str(dtype).replace("torch.", ""))
            worst[key] = max(worst.get(key, 0.0), max(errs.values()))
            if bad:
                fails += 1
                print(f"FAIL {impl} b{b} sq{sq} sk{sk} d{d} causal={causal} {dtype}: "
                      + " ".join(f"{n}={e:.2e}" for n, e in errs.items()), flush=True)
    for (impl, dt), w in sorted(worst.items()):
        print(f"check: {impl} {dt}: worst relative error {w:.2e} over {len(cases)} cases", flush=True)
    return fails


def _warm_one(task):
    """Compile one kernel config into Triton's on-disk cache (runs in a worker process)."""
    name, dt, d, causal, sq, sk, cfg = task
    from perfmodel import flash_triton as ft
    t0 = time.time()
    dtype = getattr(torch, dt)
    # pointer arguments only matter through dtype and 16-byte alignment; the integers are the
    # real ones, so the specialization (and the cache key) matches the later launches
    x = torch.empty(64, device="cuda", dtype=dtype)
    f = torch.empty(64, device="cuda", dtype=torch.float32)
    meta = dict(HEAD_DIM=d, IS_CAUSAL=causal, DOT_PREC=ft.DOT_PRECISION, grid=(1,), **ft.config_meta(cfg))
    strides = (sq * d, d, sk * d, d, sk * d, d)
    try:
        if name == "fwd":
            ft._fwd_kernel.warmup(x, x, x, x, f, 0.5, *strides, sq * d, d, sq, sk, **meta)
        elif name == "dkdv":
            ft._bwd_dkdv_kernel.warmup(x, x, x, x, x, x, f, f, 0.5, 0.5, *strides, sq * d, d, sq, sk, **meta)
        else:
            ft._bwd_dq_kernel.warmup(x, x, x, x, x, f, f, 0.5, 0.5, *strides, sq * d, d, sq, sk, **meta)
    except Exception as exc:  # e.g. out of shared memory: the autotuner will skip it too
        return False, time.time() - t0, f"{name} {dt} d{d} {cfg}: {type(exc).__name__}"
    return True, time.time() - t0, f"{name} {dt} d{d} {cfg}"


def precompile(cells, jobs, extra_cells=(), extra=None, timeout=120):
    """Compile every autotuning config the cells will need, in parallel worker processes.

    extra: {kernel name: [configs]} compiled too, for extra_cells only (--explore).  Workers
    still compiling after ``timeout`` seconds are terminated (the autotuner compiles whatever
    is missing later, in the main process)."""
    import concurrent.futures as cf
    import multiprocessing as mp

    from perfmodel.flash_triton import tuning_configs

    tasks = set()
    for cell_list, more in ((cells, {}), (extra_cells, extra or {})):
        for shape, dtype, causal in cell_list:
            s, d = shape[-2], shape[-1]
            dt = str(dtype).replace("torch.", "")
            for name in ("fwd", "dkdv", "dq"):
                for cfg in tuning_configs(name, dtype) + list(more.get(name, [])):
                    # integers divisible by 16 share one specialization: compile once per class
                    s16 = 16 if s % 16 == 0 else s
                    tasks.add((name, dt, d, causal, s16, s16, cfg))
    t0 = time.time()
    ex = cf.ProcessPoolExecutor(jobs, mp_context=mp.get_context("spawn"))
    futures = {ex.submit(_warm_one, t): t for t in sorted(tasks)}
    done, pending = cf.wait(futures, timeout=timeout)
    msgs = [f.result() for f in done]
    if pending:
        for proc in list(ex._processes.values()):  # our own workers, stuck compiling
            proc.terminate()
    ex.shutdown(wait=False, cancel_futures=True)
    slow = [f"{m} {t:.0f}s" for ok, t, m in sorted(msgs, key=lambda r: -r[1])[:3]]
    print(f"precompiled {len(done)}/{len(tasks)} kernel configs with {jobs} processes in "
          f"{time.time() - t0:.0f}s; slowest: {slow}; failed: {[m for ok, t, m in msgs if not ok]}; "
          f"unfinished: {[futures[f] for f in pending]}", flush=True)


EXPLORE = {
    "fwd": [(128, 64, 8, 4), (128, 128, 8, 4), (128, 64, 4, 2), (128, 32, 4, 3), (128, 32, 8, 3)],
    "dkdv": [(32, 128, 4, 3), (32, 128, 4, 4), (32, 128, 8, 3), (32, 64, 4, 3), (64, 128, 4, 3),
             (64, 64, 4, 4), (64, 128, 8, 4), (16, 128, 4, 3)],
    "dq": [(128, 32, 4, 3), (128, 32, 8, 3), (64, 32, 4, 3), (128, 64, 4, 3), (64, 64, 4, 4),
           (128, 64, 8, 4), (128, 16, 4, 3)],
}


def explore(shape, dtype, gen, warmup, rep):
    """Time each kernel alone for every config of the tuning space plus EXPLORE."""
    import triton
    from triton.testing import do_bench

    from perfmodel import flash_triton as ft

    q, k, v, do = make_inputs(shape, dtype, gen)
    if q.dim() == 4:
        q, k, v, do = (x.detach().reshape(-1, x.shape[-2], x.shape[-1]) for x in (q, k, v, do))
    q, k, v, do = (x.detach().contiguous() for x in (q, k, v, do))
    b, s, d = q.shape
    qr = q.clone().requires_grad_()
    out = ft.FlashAttentionTriton.apply(qr, k, v, True)
    lse = out.grad_fn.saved_tensors[4].clone()
    o = out.detach()
    delta = (o.float() * do.float()).sum(-1)
    sm = 1.0 / math.sqrt(d)
    qk = sm * ft.LOG2E
    strides = (q.stride(0), q.stride(1), k.stride(0), k.stride(1), v.stride(0), v.stride(1))
    o2, lse2, dq, dk, dv = torch.empty_like(o), torch.empty_like(lse), *(torch.empty_like(q) for _ in range(3))
    const = dict(HEAD_DIM=d, IS_CAUSAL=True, DOT_PREC=ft.DOT_PRECISION)
    f = flops(b, 1, s, s, d, True)
    res = {}
    for name in ("fwd", "dkdv", "dq"):
        for cfg in sorted(set(ft.tuning_configs(name, dtype)) | set(EXPLORE[name])):
            bm, bn = cfg[:2]
            kw = dict(**ft.config_meta(cfg), **const)
            if name == "fwd":
                def go():
                    ft._fwd_kernel[(triton.cdiv(s, bm), b)](q, k, v, o2, lse2, qk, *strides, o2.stride(0),
                                                            o2.stride(1), s, s, **kw)
            elif name == "dkdv":
                def go():
                    ft._bwd_dkdv_kernel[(triton.cdiv(s, bn), b)](q, k, v, do, dk, dv, lse, delta, qk, sm,
                                                                 *strides, do.stride(0), do.stride(1), s, s, **kw)
            else:
                def go():
                    ft._bwd_dq_kernel[(triton.cdiv(s, bm), b)](q, k, v, do, dq, lse, delta, qk, sm,
                                                               *strides, do.stride(0), do.stride(1), s, s, **kw)
            try:
                ms = do_bench(go, warmup=warmup, rep=rep, return_mode="median")
            except Exception as exc:
                print(f"explore {shape} {name} {cfg}: {type(exc).__name__}", flush=True)
                continue
            res[(name, cfg)] = ms
    for name in ("fwd", "dkdv", "dq"):
        rows = sorted((ms, cfg) for (n, cfg), ms in res.items() if n == name)
        print(f"explore {shape} {name}: " + ", ".join(
            f"{cfg}{'*' if cfg in EXPLORE[name] else ''} {ms:.3f}" for ms, cfg in rows[:8]), flush=True)
    best = {n: min(ms for (m, c), ms in res.items() if m == n) for n in ("fwd", "dkdv", "dq")}
    print(f"explore {shape}: best fwd {best['fwd']:.3f} ms ({f / best['fwd'] * 1e-9:.0f} TFLOP/s), "
          f"best dkdv+dq {best['dkdv'] + best['dq']:.3f} ms; sum {sum(best.values()):.3f} ms", flush=True)


def flops(b, h, sq, sk, d, causal):
    f = 4.0 * b * h * sq * sk * d
    return f / 2 if causal else f


def make_inputs(shape, dtype, gen):
    q, k, v, do = (torch.randn(*shape, generator=gen, device="cuda", dtype=torch.float32).to(dtype)
                   for _ in range(4))
    for x in (q, k, v):
        x.requires_grad_()
    return q, k, v, do


def sdpa(q, k, v, causal):
    # (batch, seq, d) is viewed as (batch, 1, seq, d): torch 2.11 sends 3D inputs to the math
    # backend (it materializes seq x seq: 33 GiB, 57 ms at 8x16384x128), 4D to cuDNN/flash
    if q.dim() == 3:
        return F.scaled_dot_product_attention(q[:, None], k[:, None], v[:, None], is_causal=causal)[:, 0]
    return F.scaled_dot_product_attention(q, k, v, is_causal=causal)


IMPLS = {"flash": flash_attention, "sdpa": sdpa, "flash_torch": flash_torch_attention}


def bench_cell(impl, shape, dtype, causal, gen, warmup, rep):
    """Time one implementation on one shape; returns a result dict (or the error)."""
    from triton.testing import do_bench

    fn = IMPLS[impl]
    b, h = (shape[0], shape[1]) if len(shape) == 4 else (shape[0], 1)
    sq = sk = shape[-2]
    d = shape[-1]
    row = dict(impl=impl, shape="x".join(map(str, shape)), dtype=str(dtype).replace("torch.", ""),
               causal=causal, b=b, h=h, s=sq, d=d)
    try:
        q, k, v, do = make_inputs(shape, dtype, gen)
        # one pass first: compiles / autotunes, and gives the peak memory
        out = fn(q, k, v, causal)
        out.backward(do)
        torch.cuda.synchronize()
        if impl != "sdpa":  # cheap sanity check of every timed cell against SDPA
            got = [out.detach()] + [x.grad for x in (q, k, v)]
            q.grad = k.grad = v.grad = None
            ref = sdpa(q, k, v, causal)
            ref.backward(do)
            row["err_vs_sdpa"] = max(rel(a, b) for a, b in zip(got, [ref.detach()] + [x.grad for x in (q, k, v)]))
            del got, ref
        q.grad = k.grad = v.grad = None
        del out
        torch.cuda.reset_peak_memory_stats()
        base = torch.cuda.memory_allocated()
        out = fn(q, k, v, causal)
        out.backward(do)
        torch.cuda.synchronize()
        row["peak_mib"] = torch.cuda.max_memory_allocated() / 2**20
        row["extra_mib"] = (torch.cuda.max_memory_allocated() - base) / 2**20
        q.grad = k.grad = v.grad = None
        del out

        def fwd():
            return fn(q, k, v, causal)

        out = fwd()

        def bwd():
            out.backward(do, retain_graph=True)

        def fwd_bwd():
            fn(q, k, v, causal).backward(do)

        row["fwd_ms"] = do_bench(fwd, warmup=warmup, rep=rep, return_mode="median")
        row["bwd_ms"] = do_bench(bwd, warmup=warmup, rep=rep, grad_to_none=[q, k, v], return_mode="median")
        row["fwdbwd_ms"] = do_bench(fwd_bwd, warmup=warmup, rep=rep, grad_to_none=[q, k, v],
                                    return_mode="median")
        f = flops(b, h, sq, sk, d, causal)
        row["fwd_tflops"] = f / row["fwd_ms"] * 1e-9
        row["bwd_tflops"] = 2.5 * f / row["bwd_ms"] * 1e-9
        row["fwdbwd_tflops"] = 3.5 * f / row["fwdbwd_ms"] * 1e-9
        del out, q, k, v, do
    except torch.cuda.OutOfMemoryError as exc:
        row["error"] = "OOM: " + str(exc).splitlines()[0][:80]
    except Exception as exc:  # report, keep going
        row["error"] = f"{type(exc).__name__}: {str(exc).splitlines()[0][:120] if str(exc) else ''}"
    torch.cuda.empty_cache()
    return row


def check_large(shape, dtype, causal, gen):
    """Autotuned kernels on a large shape: against SDPA (all of it) and a float64 forward
    on the first (batch, head) slice."""
    q, k, v, do = make_inputs(shape, dtype, gen)
    out = flash_attention(q, k, v, causal)
    out.backward(do)
    grads = [x.grad for x in (q, k, v)]
    for x in (q, k, v):
        x.grad = None
    ref = sdpa(q, k, v, causal)
    ref.backward(do)
    errs = {"o_vs_sdpa": rel(out, ref)}
    for n, g, x in zip(("dq", "dk", "dv"), grads, (q, k, v)):
        errs[n + "_vs_sdpa"] = rel(g, x.grad)
    idx = (0, 0) if len(shape) == 4 else (0,)
    with torch.no_grad():
        r64, _ = reference(q[idx].double(), k[idx].double(), v[idx].double(), causal)
        errs["o_vs_f64"] = rel(out[idx], r64)
        errs["sdpa_vs_f64"] = rel(ref[idx], r64)
    ok = all(e < 2e-2 for e in errs.values())
    print(f"check_large {'ok' if ok else 'FAIL'} {shape} {dtype} causal={causal}: "
          + " ".join(f"{n}={e:.2e}" for n, e in errs.items()), flush=True)
    del q, k, v, do, out, ref, grads
    torch.cuda.empty_cache()
    return ok


def fmt_table(rows):
    lines = ["| impl | shape | dtype | causal | fwd ms | bwd ms | fwd+bwd ms | fwd TFLOP/s | bwd TFLOP/s "
             "| fwd+bwd TFLOP/s | peak MiB | fwd x SDPA | fwd+bwd x SDPA | err vs SDPA |",
             "|---|---|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
    sd = {(r["shape"], r["dtype"], r["causal"]): r for r in rows if r["impl"] == "sdpa" and "error" not in r}
    for r in rows:
        if "error" in r:
            lines.append(f"| {r['impl']} | {r['shape']} | {r['dtype']} | {r['causal']} | {r['error']} |")
            continue
        s = sd.get((r["shape"], r["dtype"], r["causal"]))
        rf = f"{s['fwd_ms'] / r['fwd_ms']:.2f}" if s else "-"
        rfb = f"{s['fwdbwd_ms'] / r['fwdbwd_ms']:.2f}" if s else "-"
        err = f"{r['err_vs_sdpa']:.1e}" if "err_vs_sdpa" in r else "-"
        lines.append(f"| {r['impl']} | {r['shape']} | {r['dtype']} | {r['causal']} | {r['fwd_ms']:.3f} | "
                     f"{r['bwd_ms']:.3f} | {r['fwdbwd_ms']:.3f} | {r['fwd_tflops']:.1f} | "
                     f"{r['bwd_tflops']:.1f} | {r['fwdbwd_tflops']:.1f} | {r['peak_mib']:.0f} | {rf} | {rfb} | "
                     f"{err} |")
    return "\n".join(lines)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--check", action="store_true")
    ap.add_argument("--targets", action="store_true")
    ap.add_argument("--grid", action="store_true")
    ap.add_argument("--long", action="store_true")
    ap.add_argument("--impls", default="flash,sdpa")
    ap.add_argument("--dtypes", default="bfloat16,float32")
    ap.add_argument("--ds", default="16,32,64,128")
    ap.add_argument("--seqs", default="256,1024,4096,8192,16384")
    ap.add_argument("--fixed", action="store_true", help="no autotuning (PERFMODEL_FLASH_AUTOTUNE=0)")
    ap.add_argument("--warmup", type=int, default=10, help="do_bench warm-up, ms")
    ap.add_argument("--rep", type=int, default=50, help="do_bench repetitions, ms")
    ap.add_argument("--json", default=None, help="write all rows here")
    ap.add_argument("--seed", type=int, default=None)
    ap.add_argument("--explore", action="store_true", help="time each kernel per config on the targets")
    ap.add_argument("--budget", type=float, default=1e9, help="skip the cells left after this many s")
    ap.add_argument("--jobs", type=int, default=0, help="precompile autotuning configs in N processes first")
    args = ap.parse_args()

    import triton

    seed = args.seed if args.seed is not None else int.from_bytes(os.urandom(4), "little")
    gen = torch.Generator(device="cuda").manual_seed(seed)
    print(f"device: {torch.cuda.get_device_name()} | torch {torch.__version__} | triton {triton.__version__} "
          f"| seed {seed}", flush=True)
    print("flash available:", flash_triton.is_available("cuda"), flush=True)
    t0 = time.time()
    failures = 0
    if args.check:
        os.environ["PERFMODEL_FLASH_AUTOTUNE"] = "0"
        failures += check_small(["flash", "flash_torch"], gen)
        print(f"check done in {time.time() - t0:.0f}s, failures: {failures}", flush=True)
    os.environ["PERFMODEL_FLASH_AUTOTUNE"] = "0" if args.fixed else "1"

    rows = []
    impls = args.impls.split(",")
    dtypes = [getattr(torch, x) for x in args.dtypes.split(",")]
    cells = []
    if args.targets:
        cells += [((8, 16384, 128), torch.bfloat16, True), ((1, 16, 16384, 64), torch.bfloat16, True)]
    if args.grid:
        for dtype in dtypes:
            for d in map(int, args.ds.split(",")):
                for s in map(int, args.seqs.split(",")):
                    cells.append(((8, s, d), dtype, True))
    if args.long:
        for dtype in dtypes:
            for d in (64, 128):
                cells.append(((1, 65536, d), dtype, True))
    if args.jobs and not args.fixed and "flash" in impls:
        try:
            targets = [((8, 16384, 128), torch.bfloat16, True), ((1, 16, 16384, 64), torch.bfloat16, True)]
            precompile(cells, args.jobs, targets if args.explore else (), EXPLORE)
        except Exception as exc:  # only a speed-up: carry on, the autotuner compiles what is missing
            print(f"precompile failed: {type(exc).__name__}: {exc}", flush=True)
    if args.explore:
        for shape in ((1, 16, 16384, 64), (8, 16384, 128)):
            explore(shape, torch.bfloat16, gen, args.warmup, args.rep)
    if args.targets:
        for shape in ((8, 16384, 128), (1, 16, 16384, 64)):
            t = time.time()
            failures += not check_large(shape, torch.bfloat16, True, gen)
            print(f"  ({time.time() - t:.0f}s incl. autotuning)", flush=True)
    if not args.fixed and "flash" in impls and args.targets:
        for name, tuned in (("fwd", flash_triton._fwd_tuned), ("dkdv", flash_triton._dkdv_tuned),
                            ("dq", flash_triton._dq_tuned)):
            for key, cfg in tuned.cache.items():
                print(f"autotuned {name} {key[:4]}: {cfg}", flush=True)
    for shape, dtype, causal in cells:
        for impl in impls:
            if time.time() - t0 > args.budget:
                rows.append(dict(impl=impl, shape="x".join(map(str, shape)), dtype=str(dtype)[6:],
                                 causal=causal, error="not run: --budget used up"))
                continue
            t = time.time()
            r = bench_cell(impl, shape, dtype, causal, gen, args.warmup, args.rep)
            rows.append(r)
            print(f"{impl} {r['shape']} {r['dtype']}: " + (r.get("error") or
                  f"fwd {r['fwd_ms']:.3f} bwd {r['bwd_ms']:.3f} fwd+bwd {r['fwdbwd_ms']:.3f} ms, "
                  f"peak {r['peak_mib']:.0f} MiB") + f" ({time.time() - t:.0f}s)", flush=True)
            if args.json:  # rewritten after every cell, so a run cut short still leaves its rows
                with open(args.json, "w") as f:
                    json.dump(rows, f, indent=1)
    print(f"total {time.time() - t0:.0f}s, check failures: {failures}")
    if rows:
        print(fmt_table(rows))
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
