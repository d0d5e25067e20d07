"""Correctness checks and timings of perfmodel's FlashAttention-2 (Triton and tiled PyTorch).

Run on the GPU box from the repository root, e.g.:

    python3 -m tools.bench_flash --issue --jobs 16 --budget 450 --json $OUT/flash_issue.json
    python3 -m tools.bench_flash --issue --smoke          # no GPU: the same stages, tiny, interpreted

--issue          issue 17's (and 11's) table: per row (fp32 d128/d64, the bf16 targets, s65536, d80, d256)
                 SDPA, then flash autotuned, its chosen configs checked against the float64
                 reference (out, logsumexp, dq, dk, dv; causal and not; ragged) before timing;
                 float32 accuracy of flash and SDPA against float64; every seed preset at ctx
                 1024 batch 4 bf16 fwd+bwd, flash vs sdpa; tables printed last
    python3 -m tools.bench_flash --check --targets
    python3 -m tools.bench_flash --grid --long
    python3 -m tools.bench_flash --targets --explore --check-configs --explore-fp32 \\
        --jobs 16 --budget 480 --json $OUT/flash.json

--check          small shapes against a float64 reference (all d, fp32/bf16, causal and not,
                 ragged lengths, seq_q != seq_k), fixed kernel config (no autotuning)
--targets        the two target shapes (b1 x h16 x s16384 x d64 4D, b8 x s16384 x d128 3D, bf16,
                 causal), autotuned: fwd, bwd, fwd+bwd of every backward variant (--variants)
                 and of SDPA in the same run, each checked against SDPA; a TARGET line per shape
--explore        each kernel alone on the targets, every config of its tuning space plus EXPLORE
--check-configs  every config of every kernel's tuning space (fp32 and bf16, d 16, 32, 64, 80,
                 128, 256), fwd+bwd once each in a process of its own (perfmodel.flash_check:
                 a fault names its config instead of poisoning the run), --jobs at a time,
                 checked against float64; compact table.  Alone it is the config check:
                 python3 -m tools.bench_flash --check-configs --jobs 14 --budget 380
--explore-fp32   fp32 kernels per config (the tf32x3 spaces plus EXPLORE_FP32) and fp32
                 end-to-end at b8 x s16384 x d64 and d128 (issue 17's float32 rows); b8 x s4096
                 x d128 until 2026-12-07
--grid           batch 8 x d {16,32,64,128} x seq {256..16384}, fp32 and bf16, causal
--long           seq 65536 at batch 1, d 64 and 128, fp32 and bf16, causal
--profile-model  PRESETS: the model criterion's step, flash against sdpa, under torch.profiler:
                 host wall, device busy time, kernels per step and the costliest kernels, e.g.
                 --profile-model small,large,xl (about a minute on the GPU)
--host           the host's time per call of each layer of flash's launch path (the model's
                 call, the autograd function, the launch through the autotuner, the plain JIT
                 launch) against sdpa's, at the model's attention shape; about half a minute
--resources      (no GPU) compile every config for sm_90 and print registers, spill stack and
                 shared memory per config (Triton's and flash_triton.smem_bytes' estimate),
                 e.g. --resources --ds 64,128 --jobs 2, or --resources --all-spaces --json F

Order: precompile (--jobs N worker processes) of the target kernels; target end-to-end rows
(printed as soon as measured); explore; precompile of the check and fp32 kernels; config
checks; fp32 exploration; grid cells; summary tables.  A stage that would start after --budget
seconds is skipped (and the pytest subprocess is stopped at the budget), and the JSON (--json)
is rewritten after every stage, so a run cut short keeps what it measured.

Timings are triton.testing.do_bench medians.  FLOPs: 4*b*h*s_q*s_k*d per forward (halved when
causal), 2.5x that for backward.  Peak MiB is torch.cuda.max_memory_allocated over one
forward+backward (inputs included, no do_bench L2-flush buffer).
"""
from __future__ import annotations

import argparse
import contextlib
import json
import math
import os
import re
import subprocess
import sys
import time

import torch

# the bench explores (and checks) the v3 candidate configs too, not only the verified spaces;
# its test subprocesses inherit this
os.environ.setdefault("PERFMODEL_FLASH_CANDIDATES", "1")

from perfmodel import flash_check, flash_triton  # noqa: E402
from perfmodel.attention import reference_attention, reference_logsumexp, sdpa_attention  # noqa: E402
from perfmodel.flash_torch import flash_torch_attention, saved_logsumexp  # noqa: E402
from perfmodel.flash_triton import flash_attention  # noqa: E402
from perfmodel.workloads import attention_flops  # noqa: E402

# (shape, fwd+bwd target in ms or None); the b1 h16 d64 one first: it is the open target
TARGETS = [((1, 16, 16384, 64), 4.5), ((8, 16384, 128), None)]
FP32_SHAPES = [(8, 16384, 64), (8, 16384, 128)]  # issue 17's float32 rows


def dtype_name(dtype):
    return str(dtype).replace("torch.", "")


def cfg_str(cfg):
    return f"{cfg[0]}x{cfg[1]} w{cfg[2]} s{cfg[3]}"


def rel(x, ref):
    x = x.double()
    ref = ref.double()
    return ((x - ref).norm() / ref.norm().clamp_min(1e-30)).item()


def reference(q, k, v, causal):
    """perfmodel's float64 reference (on the CPU) and its logsumexp."""
    return reference_attention(q, k, v, causal), reference_logsumexp(q, k, causal)


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
            # flash saves it per head, (b, 1, sq) for (b, sq, d) inputs
            assert len(saved) == 5 and saved[4].dtype == torch.float32
            lse = saved_logsumexp(out).clone()
            out.backward(do)
            qd, kd, vd = (x.detach().double().cpu().requires_grad_() for x in (q, k, v))
            ro, rlse = reference(qd, kd, vd, causal)
            ro.backward(do.double().cpu())
            errs = {"o": rel(out.cpu(), ro), "lse": rel(lse.cpu(), rlse)}
            for name, g, rg in (("dq", q.grad, qd.grad), ("dk", k.grad, kd.grad), ("dv", v.grad, vd.grad)):
                if rg.norm() > 1e-6:  # one key: softmax is constant, dq = dk = 0
                    errs[name] = rel(g.cpu(), rg)
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
    name, dt, d, causal, cfg = task
    from perfmodel import flash_triton as ft
    t0 = time.time()
    dtype = getattr(torch, dt)
    # small tensors with the integer specialization of the real launches: every length, stride
    # and element count is a multiple of 16, so the cache key matches the later launches
    s = 16
    x = [torch.zeros(1, s, d, device="cuda", dtype=dtype) for _ in range(8)]
    lse, delta = (torch.zeros(1, s, device="cuda") for _ in range(2))
    acc = torch.zeros(1, s, d, device="cuda")
    tag = f"{name} {dt} d{d} {'causal' if causal else 'full'} {cfg_str(cfg) if cfg else ''}"
    try:
        if name == "pre":
            # (o, do, delta, o's and do's batch, head and row strides, heads, seq_q) as a
            # (batch, seq, d) input launches it: one head
            ft._bwd_preprocess_kernel.warmup(x[0], x[1], delta, s * d, s * d, d, s * d, s * d, d,
                                             1, s,
                                             HEAD_DIM=d, BLOCK_M=ft.preprocess_block(d),
                                             BLOCK_D=ft.block_d(d), grid=(1,))
        elif name == "cast":
            ft._dq_cast_kernel.warmup(acc, x[0], 0.5, s * d, BLOCK=1024, grid=(1,))
        else:
            q, k, v, o, do, dq, dk, dv = x
            args, _, _ = ft.kernel_args(name, q, k, v, o=o, lse=lse, do=do, delta=delta, dq=dq,
                                        dk=dk, dv=dv, dq_acc=acc)
            ft.KERNEL_FUNCS[name][0].warmup(*args, **ft.constants(d, causal, dtype), grid=(1,),
                                            **ft.config_meta(cfg))
    except Exception as exc:  # e.g. a compile error: the autotuner would skip it too
        return False, time.time() - t0, f"{tag}: {type(exc).__name__}"
    return True, time.time() - t0, tag


def kernel_tasks(cells, names, explore=False, fitting=True):
    """Precompile tasks, in order: (kernel, dtype name, d, causal, config) for every config of
    every kernel in ``names`` (plus, with ``explore``, what explore adds: flash_triton.explore_configs) for
    each (d, dtype, causal) cell, and the preprocess / cast kernels.  ``fitting``: only the
    candidates that fit shared memory, as the GPU launches them (a GPU compile of any other
    fails and costs its time); the offline compile passes False to show every candidate's figures."""
    out = []
    for d, dtype, causal in cells:
        dt = dtype_name(dtype)
        for name in names:
            extra_cfgs = flash_triton.explore_configs(name, dtype, d, fitting=fitting) if explore else []
            for cfg in flash_triton.tuning_configs(name, dtype, d) + list(extra_cfgs):
                out.append((name, dt, d, causal, tuple(cfg)))
        out += [("pre", dt, d, False, None), ("cast", dt, 64, False, None)]
    return out


def precompile(tasks, jobs, timeout, label, skip=()):
    """Compile ``tasks`` (in order, duplicates and ``skip`` dropped) in ``jobs`` worker
    processes sharing Triton's disk cache.  Workers still compiling after ``timeout`` seconds
    are terminated (the autotuner compiles whatever is missing later, in the main process)."""
    import concurrent.futures as cf
    import multiprocessing as mp

    tasks = [t for t in dict.fromkeys(tasks) if t not in set(skip)]
    if not tasks or timeout <= 0:
        print(f"precompile {label}: skipped ({len(tasks)} tasks, {timeout:.0f}s left)", flush=True)
        return dict(label=label, tasks=len(tasks), done=0, seconds=0.0, skipped=True)
    t0 = time.time()
    ex = cf.ProcessPoolExecutor(jobs, mp_context=mp.get_context("spawn"))
    futures = {ex.submit(_warm_one, t): t for t in tasks}
    done, pending = cf.wait(futures, timeout=timeout)
    msgs = [f.result() for f in done]
    if pending:
        for proc in list(ex._processes.values()):  # our own workers, stuck compiling
            proc.terminate()
    ex.shutdown(wait=False, cancel_futures=True)
    slow = [f"{m} {t:.0f}s" for ok, t, m in sorted(msgs, key=lambda r: -r[1])[:3]]
    failed = [m for ok, t, m in msgs if not ok]
    unfinished = [futures[f] for f in pending]
    secs = time.time() - t0
    print(f"precompile {label}: {len(done)}/{len(tasks)} kernel configs with {jobs} processes in "
          f"{secs:.0f}s; slowest: {slow}; failed: {failed}; unfinished: {len(unfinished)} "
          f"{unfinished[:6]}", flush=True)
    return dict(label=label, tasks=len(tasks), done=len(done), seconds=secs, failed=failed,
                unfinished=[list(map(str, u)) for u in unfinished], slowest=slow)


# matrix products per (query tile, key tile) pair, for the TFLOP/s of a kernel alone
PRODUCTS = {"fwd": 2, "dkdv": 4, "dq": 3, "dkdv_atomic": 5, "bwd_fused": 7}


def fwd_variant(variant):
    """The forward variant a backward variant is timed with: the descriptor kernels together."""
    return "tma" if variant and variant.endswith("_tma") else "pointer"


def variant_kernels(variants):
    names = []
    for v in variants:
        fwd = flash_triton.FWD_VARIANTS[fwd_variant(v)]
        names += [n for n in (fwd,) + flash_triton.BWD_VARIANTS[v] if n not in names]
    return names or ["fwd"]


def explore(shape, dtype, names, gen, warmup, rep, deadline):
    """Time each kernel in ``names`` alone (causal) for every config of its tuning space for
    this dtype and d, plus flash_triton.explore_configs; returns one row per (kernel, config)."""
    from triton.testing import do_bench

    ft = flash_triton
    q, k, v, do = make_inputs(shape, dtype, gen)
    q, k, v, do = (x.detach().reshape(-1, x.shape[-2], x.shape[-1]).contiguous() for x in (q, k, v, do))
    b, s, d = q.shape
    with ft.forced({"fwd": ft.tuning_configs("fwd", dtype, d)[0]}):
        out = ft.FlashAttentionTriton.apply(q.clone().requires_grad_(), k, v, True)
    lse = saved_logsumexp(out).clone()
    o = out.detach()
    del out
    delta = (o.float() * do.float()).sum(-1)
    o2, lse2 = torch.empty_like(o), torch.empty_like(lse)
    dq, dk, dv = (torch.empty_like(q) for _ in range(3))
    acc = torch.zeros(q.shape, dtype=torch.float32, device=q.device)  # grows over reps: harmless
    const = ft.constants(d, True, dtype)
    per_product = attention_flops(b, 1, s, s, d, True, "fwd") / 2
    shape_s, dt = "x".join(map(str, shape)), dtype_name(dtype)
    rows = []
    for name in names:
        space = ft.tuning_configs(name, dtype, d)
        base = flash_triton.DESC_TWINS.get(name, name)
        more = flash_triton.explore_configs(name, dtype, d)
        if base == "fwd":
            args, nrows, key = ft.kernel_args(name, q, k, v, o=o2, lse=lse2)
        else:
            args, nrows, key = ft.kernel_args(name, q, k, v, lse=lse, do=do, delta=delta, dq=dq,
                                              dk=dk, dv=dv, dq_acc=acc)
        for cfg in dict.fromkeys(space + more):
            row = dict(shape=shape_s, dtype=dt, kernel=name, cfg=list(cfg), in_space=cfg in space)
            rows.append(row)
            if time.time() > deadline:
                row["error"] = "not run: --budget used up"
                continue
            try:
                row["ms"] = do_bench(lambda: ft.launch(name, args, nrows, key, b, const, cfg=cfg),
                                     warmup=warmup, rep=rep, return_mode="median")
                row["tflops"] = PRODUCTS[base] * per_product / row["ms"] * 1e-9
            except Exception as exc:  # e.g. out of shared memory
                row["error"] = f"{type(exc).__name__}: {str(exc).splitlines()[0][:80] if str(exc) else ''}"
        timed = sorted((r["ms"], tuple(r["cfg"]), r) for r in rows if r["kernel"] == name and "ms" in r)
        bad = [f"{cfg_str(r['cfg'])}: {r['error']}" for r in rows if r["kernel"] == name and "error" in r]
        print(f"explore {shape_s} {dt} {name}: " + ", ".join(
            f"{cfg_str(c)}{'' if r['in_space'] else '*'} {ms:.3f} ({r['tflops']:.0f})" for ms, c, r in timed)
            + (f" | failed: {bad}" if bad else ""), flush=True)
    best = best_by_kernel(rows)
    sums = variant_sums(best)
    print(f"explore {shape_s} {dt}: best " + ", ".join(f"{n} {best[n][0]:.3f} {cfg_str(best[n][1])}" for n in best)
          + " | kernel sums fwd+bwd: " + ", ".join(f"{v} {t:.3f}" for v, t in sums.items()), flush=True)
    del q, k, v, do, o, o2, dq, dk, dv, acc
    torch.cuda.empty_cache()
    return rows


def best_by_kernel(rows):
    best = {}
    for r in rows:
        if "ms" in r and (r["kernel"] not in best or r["ms"] < best[r["kernel"]][0]):
            best[r["kernel"]] = (r["ms"], tuple(r["cfg"]))
    return best


def variant_sums(best):
    """Kernel-only fwd+bwd per variant from the best configs (no preprocess, memset, cast)."""
    out = {}
    for v, names in flash_triton.BWD_VARIANTS.items():
        fwd = "fwd_tma" if v.endswith("_tma") and "fwd_tma" in best else "fwd"
        if fwd in best and all(n in best for n in names):
            out[v] = best[fwd][0] + sum(best[n][0] for n in names)
    return out


def make_inputs(shape, dtype, gen):
    q, k, v, do = (torch.randn(*shape, generator=gen, device=gen.device, dtype=torch.float32).to(dtype)
                   for _ in range(4))
    for x in (q, k, v):
        x.requires_grad_()
    return q, k, v, do


# perfmodel's SDPA wrapper views (batch, seq, d) as (batch, 1, seq, d): torch 2.11 sends 3D
# inputs to the math backend (seq x seq materialized: 33 GiB, 57 ms at 8x16384x128)
sdpa = sdpa_attention
IMPLS = {"flash": flash_attention, "sdpa": sdpa, "flash_torch": flash_torch_attention}


def _bench_cell(impl, shape, dtype, causal, gen, warmup, rep):
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
        for p in ("fwd", "bwd", "fwd_bwd"):
            key = p.replace("_", "")
            row[f"{key}_tflops"] = attention_flops(b, h, sq, sk, d, causal, p) / row[f"{key}_ms"] * 1e-9
        del out, q, k, v, do
    except torch.cuda.OutOfMemoryError as exc:
        row["error"] = "OOM: " + str(exc).splitlines()[0][:80]
    except Exception as exc:  # report, keep going
        row["error"] = f"{type(exc).__name__}: {str(exc).splitlines()[0][:120] if str(exc) else ''}"
    torch.cuda.empty_cache()
    return row


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


def bench_cell(impl, shape, dtype, causal, gen, warmup, rep, variant=None, fwd=None):
    """As _bench_cell; ``variant``: the flash backward variant, ``fwd`` the forward's (None:
    the module default)."""
    with flash_triton.forced(variant=variant, fwd=fwd or (fwd_variant(variant) if variant else None)):
        row = _bench_cell(impl, shape, dtype, causal, gen, warmup, rep)
    if variant:
        label = f"{fwd}/{variant}" if fwd else variant
        row["impl"], row["variant"] = f"{impl}[{label}]", variant
        if fwd:
            row["fwd_variant"] = fwd
    return row


def row_line(r, secs=None):
    err = r.get("err_vs_sdpa")
    txt = r.get("error") or (f"fwd {r['fwd_ms']:.3f} bwd {r['bwd_ms']:.3f} fwd+bwd {r['fwdbwd_ms']:.3f} ms, "
                             f"peak {r['peak_mib']:.0f} MiB"
                             + (f", err vs SDPA {err:.1e}{' FAIL' if not err < 2e-2 else ''}" if err is not None else ""))
    return f"{r['impl']} {r['shape']} {r['dtype']}: {txt}" + (f" ({secs:.0f}s)" if secs is not None else "")


def target_line(shape, dtype, rows, limit):
    """One line: the best flash fwd+bwd among ``rows`` of this shape vs SDPA (and the target)."""
    shape_s = "x".join(map(str, shape))
    mine = [r for r in rows if r["shape"] == shape_s and r["dtype"] == dtype_name(dtype) and "fwdbwd_ms" in r]
    flash = [r for r in mine if r["impl"].startswith("flash") and r.get("err_vs_sdpa", 1) < 2e-2]
    sd = [r for r in mine if r["impl"] == "sdpa"]
    wrong = ""
    if not flash:  # still show the times, marked
        flash = [r for r in mine if r["impl"].startswith("flash")]
        wrong = " WRONG (err vs SDPA >= 2e-2)"
        if not flash:
            return f"TARGET {shape_s} {dtype_name(dtype)}: no flash result"
    best = min(flash, key=lambda r: r["fwdbwd_ms"])
    txt = (f"TARGET {shape_s} {dtype_name(dtype)} causal: best flash fwd+bwd {best['fwdbwd_ms']:.3f} ms{wrong} "
           f"({best['impl']}: fwd {best['fwd_ms']:.3f} + bwd {best['bwd_ms']:.3f})")
    if sd:
        txt += (f" | SDPA {sd[0]['fwdbwd_ms']:.3f} ms (fwd {sd[0]['fwd_ms']:.3f}) | fwd x SDPA "
                f"{sd[0]['fwd_ms'] / best['fwd_ms']:.2f}, fwd+bwd x SDPA {sd[0]['fwdbwd_ms'] / best['fwdbwd_ms']:.2f}")
    if limit:
        txt += f" | < {limit} ms: {'MET' if best['fwdbwd_ms'] < limit else 'NOT MET'}"
    others = ", ".join(f"{r['impl']} {r['fwdbwd_ms']:.3f}" for r in flash if r is not best)
    return txt + (f" | others: {others}" if others else "")


def run_e2e(shapes, dtype, variants, gen, args, rows, deadline, save, fwd_variants=(None,)):
    """fwd / bwd / fwd+bwd of SDPA and of flash with each backward variant (autotuned), under
    each forward variant (None: the module's)."""
    for shape, limit in shapes:
        for impl, variant, fwd in [("sdpa", None, None)] + [("flash", v, f) for f in fwd_variants
                                                            for v in variants]:
            if time.time() > deadline:
                label = f"{fwd}/{variant}" if fwd else variant
                rows.append(dict(impl=impl if not variant else f"flash[{label}]", shape="x".join(map(str, shape)),
                                 dtype=dtype_name(dtype), causal=True, error="not run: --budget used up"))
                continue
            t = time.time()
            r = bench_cell(impl, shape, dtype, True, gen, args.warmup, args.rep, variant, fwd)
            rows.append(r)
            print(row_line(r, time.time() - t), flush=True)
            save()
        print(target_line(shape, dtype, rows, limit), flush=True)


def autotuned_choices():
    out = []
    for name, (_, tuned) in flash_triton.KERNEL_FUNCS.items():
        for key, cfg in tuned.cache.items():
            c = (cfg.kwargs["BLOCK_M"], cfg.kwargs["BLOCK_N"], cfg.num_warps, cfg.num_stages)
            out.append(f"{name} {key}: {cfg_str(c)}")
    return out


def run_config_checks(deadline, workers):
    """Every config of every kernel's space (float32 and bf16, every head-dim class), each
    launched once in a process of its own (perfmodel.flash_check), so that a fault names its
    config; children not started by the deadline are reported as not run.  Prints the compact
    table; returns {case id: status}."""
    t0 = time.time()
    if deadline - t0 < 20:
        print(f"config checks: skipped ({deadline - t0:.0f}s of budget left)", flush=True)
        return {}
    cases = flash_check.cases()
    print(f"config checks: {len(cases)} configs, each fwd+bwd once at b{flash_check.BATCH} x "
          f"s{flash_check.SEQ} causal in its own process, {workers} at a time", flush=True)
    rows = flash_check.check_all(cases, workers=workers, deadline=deadline)
    print(f"config checks done in {time.time() - t0:.0f}s", flush=True)
    print(flash_check.table(rows), flush=True)
    return {r["id"]: r["status"] for r in rows}


def _resource_one(task):
    """Compile one kernel config for sm_90 without a GPU (a stand-in driver that only names the
    target) and read its registers, stack (spills) and shared memory from the cubin."""
    import tempfile

    import triton
    from triton.backends.compiler import GPUTarget
    from triton.backends.driver import DriverBase
    from triton.runtime.driver import driver

    class Sm90(DriverBase):
        @classmethod
        def is_active(cls):
            return True

        def get_current_target(self):
            return GPUTarget("cuda", 90, 32)

        def get_current_device(self):
            return 0

        def get_current_stream(self, device=None):
            return 0

        def get_active_torch_device(self):
            return torch.device("cpu")

        def get_benchmarker(self):
            return None

        def map_python_to_cpp_type(self, t):
            return t

    driver.set_active(Sm90())
    from perfmodel import flash_triton as ft

    name, dt, d, causal, cfg = task
    # "float32-ieee": float32 with the FMA products (PERFMODEL_FLASH_FP32_PRECISION=ieee)
    ft.FP32_PRECISION = "ieee" if dt.endswith("-ieee") else "tf32x3"
    dtype = getattr(torch, dt.split("-")[0])
    s = 16
    q, k, v, o, do, dq, dk, dv = (torch.zeros(1, s, d, dtype=dtype) for _ in range(8))
    const, lo = ft.constants(d, causal, dtype), None
    if ft.launched_pre_split(name, dtype, d):
        # as the backward launches it: the TF32 parts split beforehand
        const, lo = dict(const, PRE_SPLIT=True), tuple(torch.zeros_like(q) for _ in range(4))
    args, _, _ = ft.kernel_args(name, q, k, v, o=o, lse=torch.zeros(1, s), do=do, delta=torch.zeros(1, s),
                                dq=dq, dk=dk, dv=dv, dq_acc=torch.zeros(1, s, d), lo=lo)
    t0 = time.time()
    try:
        kern = ft.KERNEL_FUNCS[name][0].warmup(*args, **const, grid=(1,), **ft.config_meta(cfg))
        with tempfile.NamedTemporaryFile(suffix=".cubin") as f:
            f.write(kern.asm["cubin"])
            f.flush()
            tool = os.path.join(os.path.dirname(triton.__file__), "backends", "nvidia", "bin", "cuobjdump")
            usage = subprocess.run([tool, "--dump-resource-usage", f.name], capture_output=True, text=True).stdout
        m = re.search(r"REG:(\d+) STACK:(\d+)", usage)
        ptx = kern.asm["ptx"]
        # which units the products use: Hopper tensor cores (wgmma), Ampere-style mma, or FMA
        units = {u: len(re.findall(pat, ptx)) for u, pat in
                 (("wgmma", r"wgmma\.mma_async"), ("mma", r"\bmma\.sync"), ("fma", r"\bfma\.rn\.f32"))}
        return dict(kernel=name, dtype=dt, d=d, cfg=list(cfg), compile_s=time.time() - t0,
                    shared_kib=kern.metadata.shared / 1024, regs=int(m.group(1)) if m else None,
                    stack=int(m.group(2)) if m else None, units=units)
    except Exception as exc:
        return dict(kernel=name, dtype=dt, d=d, cfg=list(cfg), error=f"{type(exc).__name__}: {str(exc)[:200]}")


def raw_space_tasks():
    """Every config of every tuning space as written (before the shared-memory filter), at the
    largest d of each BLOCK_D the space serves: bf16 at 64 / 128 / 256, float32 tf32x3 at
    64 / 128 / 256, float32 ieee at 64 / 128 (fwd, dkdv, dq)."""
    ft = flash_triton
    tasks = [(k, "bfloat16", d, True, c) for d in (64, 128) for k in ft.KERNELS for c in ft.TUNING_SPACE[k]]
    tasks += [(k, "bfloat16", 256, True, c) for k in ft.KERNELS for c in ft.TUNING_SPACE_D256[k]]
    tasks += [(k, "float32", bd, True, c) for bd, by in ft.TUNING_SPACE_TF32X3.items() for k in ft.KERNELS
              for c in by.get(k, by["dkdv"])]
    tasks += [(k, "float32-ieee", d, True, c) for d in (64, 128) for k in ("fwd", "dkdv", "dq")
              for c in ft.TUNING_SPACE_IEEE if ft._ieee_fits(c, d)]
    return list(dict.fromkeys(tasks))


def resources(ds, dtypes, jobs, explore=True, all_spaces=False, json_path=None, twins=False):
    """Offline (CPU) compile of every config for sm_90: registers, spill stack, shared memory
    (Triton's figure and flash_triton.smem_bytes' estimate); ``twins``: the descriptor kernels
    too, where the launches would take them (16-bit; float32's backward split beforehand)."""
    import concurrent.futures as cf
    import multiprocessing as mp

    ft = flash_triton
    names = ft.KERNELS + (tuple(ft.DESC_TWINS) if twins else ())
    if all_spaces:
        tasks = raw_space_tasks()
    else:
        tasks = [t for t in kernel_tasks([(d, dt, True) for dt in dtypes for d in ds], names, explore,
                                         fitting=False)
                 if t[0] in ft.KERNELS
                 or (t[0] in names and ft.twin_launched(t[0], getattr(torch, t[1]), t[2]))]
    with cf.ProcessPoolExecutor(max(1, jobs), mp_context=mp.get_context("spawn")) as ex:
        rows = list(ex.map(_resource_one, list(dict.fromkeys(tasks))))
    print("| kernel | dtype | d | config | in space | regs | stack B | smem KiB | estimate KiB | compile s |")
    print("|---|---|---:|---|---|---:|---:|---:|---:|---:|")
    for r in rows:
        dtype = getattr(torch, r["dtype"].split("-")[0])
        flash_triton.FP32_PRECISION = "ieee" if r["dtype"].endswith("-ieee") else "tf32x3"
        space = tuple(r["cfg"]) in flash_triton.tuning_configs(r["kernel"], dtype, r["d"])
        both = ft.launched_pre_split(r["kernel"], dtype, r["d"])
        r["estimate_bytes"] = ft.smem_bytes(r["kernel"], tuple(r["cfg"]),
                                            dtype, r["d"], both)
        if "error" in r:
            print(f"| {r['kernel']} | {r['dtype']} | {r['d']} | {cfg_str(r['cfg'])} | {space} | {r['error']} |")
            continue
        big = " (> 227)" if r["shared_kib"] > 227 else ""
        print(f"| {r['kernel']} | {r['dtype']} | {r['d']} | {cfg_str(r['cfg'])} | {'yes' if space else 'no'} "
              f"| {r['regs']} | {r['stack']} | {r['shared_kib']:.2f}{big} | {r['estimate_bytes'] / 1024:.2f} "
              f"| {r['compile_s']:.1f} |", flush=True)
    flash_triton.FP32_PRECISION = os.environ.get("PERFMODEL_FLASH_FP32_PRECISION", "tf32x3")
    if json_path:
        import triton

        with open(json_path, "w") as f:
            json.dump(dict(triton=triton.__version__, target="sm_90", rows=rows), f, indent=0)
    return rows


def summary(rows, explored, checks, pre):
    """The compact tables printed last."""
    out = ["", "## end-to-end (autotuned, do_bench medians)", fmt_table(rows)]
    for shape, limit in TARGETS:
        if any(r["shape"] == "x".join(map(str, shape)) for r in rows):
            out.append(target_line(shape, torch.bfloat16, rows, limit))
    for shape in FP32_SHAPES:
        if any(r["shape"] == "x".join(map(str, shape)) for r in rows):
            out.append(target_line(shape, torch.float32, rows, None).replace("TARGET", "fp32"))
    if explored:
        kernels = list(flash_triton.KERNELS) + [n for n in flash_triton.DESC_TWINS
                                                if any(r["kernel"] == n for r in explored)]
        variants = list(flash_triton.BWD_VARIANTS)
        out += ["", "## kernels alone, best config each (ms, TFLOP/s of its products); kernel sums per variant",
                "| shape | dtype | " + " | ".join(kernels) + " | " + " | ".join(variants) + " |",
                "|---|---|" + "---:|" * (len(kernels) + len(variants))]
        for (shape_s, dt) in dict.fromkeys((r["shape"], r["dtype"]) for r in explored):
            rs = [r for r in explored if r["shape"] == shape_s and r["dtype"] == dt]
            best = best_by_kernel(rs)
            tfl = {r["kernel"]: r["tflops"] for r in rs if "ms" in r and best[r["kernel"]][0] == r["ms"]}
            sums = variant_sums(best)
            out.append(f"| {shape_s} | {dt} | " + " | ".join(
                f"{best[n][0]:.3f} {cfg_str(best[n][1])} ({tfl[n]:.0f})" if n in best else "-"
                for n in kernels) + " | " + " | ".join(
                f"{sums[v]:.3f}" if v in sums else "-" for v in variants) + " |")
        # space configs never within 15% of their kernel's best on any bf16 shape explored:
        # candidates to drop (compile time); EXPLORE configs within 3% of the best: to add
        bf = [r for r in explored if r["dtype"] == "bfloat16" and "ms" in r]
        shapes = sorted({r["shape"] for r in bf})
        best = {(s, n): best_by_kernel([r for r in bf if r["shape"] == s])[n] for s in shapes
                for n in {r["kernel"] for r in bf if r["shape"] == s}}
        drop, add = [], []
        for n in flash_triton.KERNELS:
            for cfg in dict.fromkeys(tuple(r["cfg"]) for r in bf if r["kernel"] == n):
                ratios = [r["ms"] / best[(r["shape"], n)][0] for r in bf if r["kernel"] == n and tuple(r["cfg"]) == cfg]
                in_space = cfg in flash_triton.TUNING_SPACE[n]
                if in_space and len(ratios) == len(shapes) and min(ratios) > 1.15:
                    drop.append(f"{n} {cfg_str(cfg)} ({min(ratios):.2f}x)")
                if not in_space and min(ratios) < 1.03:
                    add.append(f"{n} {cfg_str(cfg)} ({min(ratios):.2f}x)")
        out.append(f"space configs > 1.15x the best on every bf16 target (drop?): {drop}")
        out.append(f"explore-only configs within 3% of the best (add?): {add}")
    if checks:
        bad = {t: s for t, s in checks.items() if s != "ok"}
        out.append(f"\nconfig checks (one process each): {len(checks) - len(bad)} ok, {len(bad)} not ok: {bad}")
    out.append("precompile: " + "; ".join(f"{p['label']} {p.get('done', 0)}/{p['tasks']} in {p['seconds']:.0f}s"
                                          for p in pre))
    return "\n".join(out)


# ---------------------------------------------------------------------------------------------
# --issue: the table of issues 11 and 17 in one call (correctness first, then timings, then the model)

# (label, shape, dtype, backward variants); 4D shapes are (batch, heads, seq, d). Order is
# priority: a run cut short by --budget keeps the first rows. float32's split_tma is the
# descriptor backward on TF32 parts split beforehand (PRE_SPLIT, d <= 128); atomic_tma (16-bit
# only) adds dQ through a descriptor, as FlashAttention-3 does.
ISSUE_ROWS = [
    ("fp32 d128", (8, 16384, 128), torch.float32, ("split", "atomic", "split_tma")),
    ("fp32 d64", (8, 16384, 64), torch.float32, ("split", "atomic", "split_tma")),
    ("bf16 h16 d64", (1, 16, 16384, 64), torch.bfloat16, ("split", "atomic", "split_tma", "atomic_tma")),
    ("bf16 d128", (8, 16384, 128), torch.bfloat16, ("split", "atomic", "split_tma", "atomic_tma")),
    ("bf16 long", (1, 65536, 128), torch.bfloat16, ("split", "split_tma")),
    ("fp32 long", (1, 65536, 128), torch.float32, ("split", "atomic", "split_tma")),
    ("bf16 d80", (8, 16384, 80), torch.bfloat16, ("split", "split_tma")),
    ("bf16 d256", (2, 16384, 256), torch.bfloat16, ("split", "split_tma")),
    ("fp32 d80", (8, 4096, 80), torch.float32, ("split", "atomic", "split_tma")),
    ("fp32 d256", (2, 4096, 256), torch.float32, ("split", "atomic")),
]
# fp32 accuracy, flash against SDPA, both against the float64 reference: (batch, seq, d)
PRECISION_SHAPES = [(1, 4096, 64), (1, 4096, 128), (1, 2048, 256)]
# small ragged checks of the configs chosen for a row, before it is timed: (b, sq, sk, causal);
# lengths are multiples of 16 (the integer specialization of the timed launches: no new compile
# for causal) and ragged for every tile size (1008 = 7*128 + 112, 496 = 3*128 + 112)
CHECK_SHAPES = [(2, 1008, 1008, True), (1, 496, 1008, False)]
# float32's bound is the per-config check's; 16-bit ones are looser here than there (larger
# shapes than its b2 x s1024)
CHECK_TOL = {torch.float32: flash_check.TOL["float32"], torch.bfloat16: 2e-2, torch.float16: 5e-3}
ISSUE_PRESETS_CONTEXT, ISSUE_PRESETS_BATCH = 1024, 4
# issue 17, item 2, per row label: what flash must reach.  "ratio": SDPA time / flash time at
# least this much, forward and forward+backward; "under_ms": forward+backward below this many ms;
# "runs": forward+backward completes (no OOM).  The best flash variant whose chosen configs
# passed the float64 check counts.
ISSUE_CRITERIA = [
    ("fp32 d64", "ratio", {"fwd_ms": 1 / 1.5, "fwdbwd_ms": 1 / 1.5}, "fp32 b8 s16384 d64 within 1.5x of SDPA"),
    ("fp32 d128", "ratio", {"fwd_ms": 1 / 1.5, "fwdbwd_ms": 1 / 1.5}, "fp32 b8 s16384 d128 within 1.5x of SDPA"),
    ("bf16 long", "runs", {}, "bf16 b1 s65536 d128 fwd+bwd, no OOM"),
    ("fp32 long", "runs", {}, "fp32 b1 s65536 d128 fwd+bwd, no OOM"),
    ("bf16 h16 d64", "under_ms", {"fwdbwd_ms": 4.4}, "bf16 b1 h16 s16384 d64 fwd+bwd under 4.4 ms"),
    ("bf16 d128", "ratio", {"fwd_ms": 0.95, "fwdbwd_ms": 0.85},
     "bf16 b8 s16384 d128 fwd >= 0.95x, fwd+bwd >= 0.85x SDPA throughput"),
]


def smoke_shape(shape):
    """--smoke: the same kind of shape, small enough for Triton's CPU interpreter."""
    *lead, s, d = shape
    return (1, 2, 48, d) if lead and len(lead) == 2 else (1, 40 if s <= 4096 else 56, d)


def timed_ms(fn, device, warmup, rep, grad_to_none=None):
    """do_bench median on a GPU; on the CPU (--smoke) the median of three calls."""
    if device.type == "cuda":
        from triton.testing import do_bench
        return do_bench(fn, warmup=warmup, rep=rep, grad_to_none=grad_to_none, return_mode="median")
    times = []
    for _ in range(3):
        for x in grad_to_none or ():
            x.grad = None
        t = time.perf_counter()
        fn()
        times.append((time.perf_counter() - t) * 1e3)
    return sorted(times)[1]


def chosen_configs(names):
    """The configs the autotuner picked in its latest launch of each kernel (or the forced ones)."""
    out = {}
    for name in names:
        if name in flash_triton.FORCE_CONFIG:
            out[name] = tuple(flash_triton.FORCE_CONFIG[name])
            continue
        cfg = getattr(flash_triton.KERNEL_FUNCS[name][1], "best_config", None)
        if cfg is not None:
            out[name] = (cfg.kwargs["BLOCK_M"], cfg.kwargs["BLOCK_N"], cfg.num_warps, cfg.num_stages)
    return out


def check_against_reference(configs, variant, d, dtype, gen, device):
    """The chosen configs, pinned, on small ragged shapes against perfmodel's float64 reference:
    output, logsumexp, dq, dk, dv.  Returns the worst relative error per quantity."""
    worst = {}
    with flash_triton.forced(configs, variant=variant, fwd=fwd_variant(variant)):
        for b, sq, sk, causal in CHECK_SHAPES:
            q, k, v = (torch.randn(b, n, d, generator=gen, device=device).to(dtype).requires_grad_()
                       for n in (sq, sk, sk))
            do = torch.randn(b, sq, d, generator=gen, device=device).to(dtype)
            out = flash_triton.FlashAttentionTriton.apply(q, k, v, causal)
            lse = saved_logsumexp(out).detach().cpu()
            out.backward(do)
            qd, kd, vd = (x.detach().double().cpu().requires_grad_() for x in (q, k, v))
            ro, rlse = reference(qd, kd, vd, causal)
            ro.backward(do.double().cpu())
            errs = {"out": rel(out.detach().cpu(), ro), "lse": rel(lse, rlse),
                    "dq": rel(q.grad.cpu(), qd.grad), "dk": rel(k.grad.cpu(), kd.grad),
                    "dv": rel(v.grad.cpu(), vd.grad)}
            for n, e in errs.items():
                worst[n] = max(worst.get(n, 0.0), e if e == e else float("inf"))  # NaN: inf
    return worst


def attention_row(label, shape, dtype, variants, gen, device, args):
    """SDPA and flash (each backward variant) on one shape: flash's chosen configs are checked
    against the float64 reference before they are timed.  Returns a list of result dicts."""
    b, h = (shape[0], shape[1]) if len(shape) == 4 else (shape[0], 1)
    s, d = shape[-2], shape[-1]
    base = dict(label=label, shape="x".join(map(str, shape)), dtype=dtype_name(dtype), b=b, h=h, s=s, d=d,
                tf32=bool(torch.backends.cuda.matmul.allow_tf32 or torch.backends.cudnn.allow_tf32))
    out_rows = []
    sd = None
    try:  # the same inputs for every implementation: their results are compared
        inputs = make_inputs(shape, dtype, gen)
    except torch.cuda.OutOfMemoryError as exc:
        return [dict(base, impl="inputs", error="OOM: " + str(exc).splitlines()[0][:100])]
    for impl, variant in [("sdpa", None)] + [("flash", v) for v in variants]:
        row = dict(base, impl=impl if variant is None else f"flash[{variant}]")
        out_rows.append(row)
        t0 = time.time()
        try:
            q, k, v, do = inputs
            q.grad = k.grad = v.grad = None
            fn = IMPLS[impl]
            ctx = (flash_triton.forced(variant=variant, fwd=fwd_variant(variant)) if variant
                   else contextlib.nullcontext())
            with ctx:
                # first pass: compiles and autotunes at this shape (flash), gives the peak memory
                if device.type == "cuda":
                    torch.cuda.synchronize()
                    torch.cuda.reset_peak_memory_stats()
                o = fn(q, k, v, True)
                o.backward(do)
                if device.type == "cuda":
                    torch.cuda.synchronize()
                    row["peak_mib"] = torch.cuda.max_memory_allocated() / 2**20
                got = [o.detach()] + [x.grad for x in (q, k, v)]
                if impl == "sdpa":
                    sd = got
                else:
                    names = variant_kernels([variant])
                    row["configs"] = {n: list(c) for n, c in chosen_configs(names).items()}
                    row["check"] = check_against_reference(chosen_configs(names), variant, d, dtype, gen, device)
                    tol = CHECK_TOL[dtype]
                    row["check_ok"] = all(e < tol for e in row["check"].values())
                    if sd is not None:
                        row["err_vs_sdpa"] = max(rel(a, r) for a, r in zip(got, sd))
                del got, o
                q.grad = k.grad = v.grad = None

                def fwd():
                    return fn(q, k, v, True)

                def fwd_bwd():
                    fn(q, k, v, True).backward(do)

                row["fwd_ms"] = timed_ms(fwd, device, args.warmup, args.rep)
                row["fwdbwd_ms"] = timed_ms(fwd_bwd, device, args.warmup, args.rep, grad_to_none=[q, k, v])
            for p in ("fwd", "fwd_bwd"):
                key = p.replace("_", "")
                row[f"{key}_tflops"] = attention_flops(b, h, s, s, d, True, p) / row[f"{key}_ms"] * 1e-9
            q.grad = k.grad = v.grad = None
        except torch.cuda.OutOfMemoryError as exc:
            row["error"] = "OOM: " + str(exc).splitlines()[0][:100]
        except Exception as exc:  # one failing cell must not lose the others
            row["error"] = f"{type(exc).__name__}: {str(exc).splitlines()[0][:160] if str(exc) else ''}"
        if device.type == "cuda":
            torch.cuda.empty_cache()
        row["seconds"] = time.time() - t0
        print(issue_line(row), flush=True)
    del inputs, sd
    if device.type == "cuda":
        torch.cuda.empty_cache()
    return out_rows


def issue_line(r):
    if "error" in r:
        return f"{r['label']} {r['shape']} {r['dtype']} {r['impl']}: {r['error']}"
    txt = (f"{r['label']} {r['shape']} {r['dtype']} {r['impl']}: fwd {r['fwd_ms']:.3f} ms, "
           f"fwd+bwd {r['fwdbwd_ms']:.3f} ms, peak {r.get('peak_mib', float('nan')):.0f} MiB")
    if "check" in r:
        txt += (f" | check {'ok' if r['check_ok'] else 'FAIL'} "
                + " ".join(f"{n}={e:.1e}" for n, e in r["check"].items()) + f" | configs {r['configs']}")
    if "err_vs_sdpa" in r:
        txt += f" | vs SDPA {r['err_vs_sdpa']:.1e}"
    return txt + f" ({r['seconds']:.0f}s)"


def precision_study(shapes, gen, device):
    """float32: flash (tf32x3 or ieee, whichever is configured) and SDPA against the float64
    reference on the same inputs, causal: out, dq, dk, dv.  The question is whether flash's
    products are as accurate as SDPA's float32 ones."""
    rows = []
    for shape in shapes:
        row = dict(shape="x".join(map(str, shape)), precision=flash_triton.FP32_PRECISION)
        rows.append(row)
        try:
            q, k, v, do = make_inputs(shape, torch.float32, gen)
            qd, kd, vd = (x.detach().double().cpu().requires_grad_() for x in (q, k, v))
            ro = reference_attention(qd, kd, vd, True)
            ro.backward(do.double().cpu())
            want = [ro.detach()] + [x.grad for x in (qd, kd, vd)]
            for impl in ("sdpa", "flash"):
                q.grad = k.grad = v.grad = None
                o = IMPLS[impl](q, k, v, True)
                o.backward(do)
                got = [o.detach()] + [x.grad for x in (q, k, v)]
                row[impl] = {n: rel(g.cpu(), w) for n, g, w in zip(("out", "dq", "dk", "dv"), got, want)}
            row["ratio"] = max(row["flash"][n] / max(row["sdpa"][n], 1e-30) for n in row["flash"])
        except Exception as exc:
            row["error"] = f"{type(exc).__name__}: {str(exc).splitlines()[0][:160] if str(exc) else ''}"
        print("precision " + json.dumps(row), flush=True)
    return rows


def issue_model_cells(presets, smoke):
    """The model criterion's cells, sdpa then flash per preset: fwd+bwd at the issue's context
    and batch in bf16 autocast; a smoke run's are tiny and float32 (the interpreter refuses
    bfloat16: flash_triton.INTERPRETER_BF16)."""
    from perfmodel.workloads import ModelCell

    ctx, batch, prec = (32, 1, "fp32") if smoke else (ISSUE_PRESETS_CONTEXT, ISSUE_PRESETS_BATCH, "bf16")
    return [ModelCell(preset, ctx, batch=batch, precision=prec, attention=attn, mode="fwd_bwd")
            for preset in presets for attn in ("sdpa", "flash")]


def cell_label(cell):
    return f"{cell.preset} ctx{cell.context} b{cell.batch} {cell.precision} fwd+bwd"


def model_check(presets, device, smoke):
    """Every preset, fwd+bwd at ctx 1024 batch 4 bf16 autocast, flash vs sdpa in the same run,
    through perfmodel's own workload and measurement core."""
    from perfmodel.measure import run_cell

    rows = []
    for cell in issue_model_cells(presets, smoke):
        preset, attn = cell.preset, cell.attention
        t0 = time.time()
        try:
            res = run_cell(cell, device, warmup=2 if not smoke else 1, steps=10 if not smoke else 2)
            row = dict(preset=preset, attention=attn, status=res.status, error=res.error,
                       ms=res.stats.median * 1e3 if res.stats else None,
                       peak_gib=res.peak_bytes / 2**30 if res.peak_bytes else None)
        except Exception as exc:
            row = dict(preset=preset, attention=attn, status="failed", error=f"{type(exc).__name__}: {exc}")
        row["seconds"] = time.time() - t0
        rows.append(row)
        ms = f"{row['ms']:.1f} ms" if row.get("ms") else row.get("error")
        print(f"model {cell_label(cell)} {attn}: {row['status']} {ms} ({row['seconds']:.0f}s)",
              flush=True)
    return rows


def model_profile(presets, device, smoke=False, steps=3):
    """Where a model step's time goes with flash against sdpa (the issue's model criterion):
    per preset, bf16 fwd+bwd at the issue's context and batch, built by perfmodel's workload,
    two warm-up steps, then torch.profiler over ``steps`` steps run back to back. Per row: the
    host's wall per step, the device's busy time per step (the kernels' own time), the kernels
    launched per step, and the costliest kernels. Flash slower with the same busy time means
    the host (its Python and launches) paces the step; more busy time means its kernels."""
    from torch.autograd import DeviceType
    from torch.profiler import ProfilerActivity, profile

    on_gpu = device.type == "cuda"
    acts = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if on_gpu else [])

    def sync():
        if on_gpu:
            torch.cuda.synchronize(device)

    def own(e):  # the kernel's own time, whichever name this torch gives it
        return getattr(e, "self_device_time_total", None) or getattr(e, "self_cuda_time_total", 0)

    rows = []
    for cell in issue_model_cells(presets, smoke):
        preset, attn = cell.preset, cell.attention
        row = dict(preset=preset, attention=attn, context=cell.context, batch=cell.batch, steps=steps)
        try:
            run = cell.build(device)
            for _ in range(2):
                run.step(run.prepare())
            sync()
            with profile(activities=acts) as prof:
                t0 = time.perf_counter()
                for _ in range(steps):
                    run.step(run.prepare())
                sync()
                wall = time.perf_counter() - t0
            kernels = [e for e in prof.key_averages() if e.device_type == DeviceType.CUDA]
            busy_us = sum(own(e) for e in kernels)
            top = sorted(kernels, key=own, reverse=True)[:6]
            row.update(wall_ms=wall * 1e3 / steps, busy_ms=busy_us / 1e3 / steps,
                       launches=sum(e.count for e in kernels) / steps,
                       top=[(e.key[:60], own(e) / 1e3 / steps, e.count // steps) for e in top])
            del run
        except Exception as exc:  # one preset's failure (e.g. OOM) leaves the others
            row["error"] = f"{type(exc).__name__}: {str(exc)[:200]}"
        rows.append(row)
        print(f"profile {cell_label(cell)} {attn}: "
              + (row["error"] if "error" in row else
                 f"wall {row['wall_ms']:.1f} ms, device busy {row['busy_ms']:.1f} ms, "
                 f"{row['launches']:.0f} kernels per step"), flush=True)
        if on_gpu:
            torch.cuda.empty_cache()
    out = ["", "## model step, flash against sdpa (bf16 fwd+bwd; per step; torch.profiler)",
           "| preset | attention | wall ms | device busy ms | idle ms | kernels | costliest kernels (ms) |",
           "|---|---|---:|---:|---:|---:|---|"]
    for r in rows:
        if "error" in r:
            out.append(f"| {r['preset']} | {r['attention']} | {r['error'][:60]} | | | | |")
            continue
        top = "; ".join(f"{name} {ms:.2f}" for name, ms, _ in r["top"][:4])
        out.append(f"| {r['preset']} | {r['attention']} | {r['wall_ms']:.1f} | {r['busy_ms']:.1f} | "
                   f"{r['wall_ms'] - r['busy_ms']:.1f} | {r['launches']:.0f} | {top} |")
    print("\n".join(out), flush=True)
    return rows


def host_overhead(device, smoke=False, calls=20, repeats=30):
    """The host's time per call of each layer of flash's launch path, against sdpa's one call,
    at the model's attention shape (the model criterion: flash's train steps are host-bound
    where sdpa's are not, and in the profiled step flash's kernels are as busy as cuDNN's).
    Each figure is the median over ``repeats`` of (time to issue ``calls`` calls, no
    synchronize inside) / calls: the host's issue time, whatever the device's queue holds (20
    calls of 8 launches stay far below the launch queue's depth). The layers, outermost first:
    perfmodel.attention.attention (the model's call), flash_attention (4D -> 3D),
    FlashAttentionTriton.apply (checks, allocations, the autograd node), the fwd kernel's launch
    through the autotuner, as perfmodel launches it (the autotuner's choice looked up), and by
    Triton's JIT with that config; then forward+backward both ways, the backward's layers, and
    torch.empty_like as the host's yardstick."""
    from perfmodel.attention import attention

    b, h, s, d = (1, 2, 32, 16) if smoke else (ISSUE_PRESETS_BATCH, 12, ISSUE_PRESETS_CONTEXT, 64)
    dtype = torch.float32 if smoke else torch.bfloat16
    gen = torch.Generator(device=device).manual_seed(0)

    def rnd(*shape):
        return torch.randn(*shape, generator=gen, device=device, dtype=dtype)

    # the model's layout: q and k come out of the rotary embedding contiguous (b, h, s, d), v is
    # the projection's (b, s, h, d) seen through transpose(1, 2)
    q, k = rnd(b, h, s, d).requires_grad_(), rnd(b, h, s, d).requires_grad_()
    v = rnd(b, s, h, d).transpose(1, 2).detach().requires_grad_()
    grad = rnd(b, h, s, d)
    q3, k3, v3 = (t.detach().reshape(b * h, s, d).contiguous() for t in (q, k, v))
    o3 = torch.empty_like(q3)
    lse = torch.empty((b * h, s), dtype=torch.float32, device=device)
    const = flash_triton.constants(d, True, dtype)
    args, rows, tile_key = flash_triton.kernel_args("fwd", q3, k3, v3, o=o3, lse=lse)

    def sync():
        if device.type == "cuda":
            torch.cuda.synchronize(device)

    def fwd_bwd(fn):
        def call():
            fn(q, k, v).backward(grad)
        return call

    def one_thread(fn):
        # the engine on the calling thread: on CUDA it otherwise hands the backward to its
        # device thread, where a Python backward must take the GIL back
        def call():
            with torch.autograd.set_multithreading_enabled(False):
                fn()
        return call

    def fwd_grad(fn):
        # the same through torch.autograd.grad: no accumulation into the leaves' .grad
        def call():
            torch.autograd.grad(fn(q, k, v), (q, k, v), grad)
        return call

    class Empty(torch.autograd.Function):
        """No work but the autograd engine's: what any Python backward costs the host, the
        fixed part of flash's forward+backward that no kernel or launch change removes."""
        @staticmethod
        def forward(ctx, x):
            return x.view_as(x)

        @staticmethod
        def backward(ctx, g):
            return g

    def sdpa_call(*t):
        return torch.nn.functional.scaled_dot_product_attention(*t, is_causal=True)

    def flash_call(*t):
        return attention(*t, True, impl="flash")

    def empty_fwd_bwd():
        Empty.apply(q).backward(grad)

    def plain_launch():
        # the fwd kernel with the config the autotuner chose (or the fixed one), by Triton's JIT
        kernel, tuned = flash_triton.KERNEL_FUNCS["fwd"]
        best = getattr(tuned, "best_config", None)
        if best is not None and not flash_triton._use_fixed_config():
            meta = dict(best.all_kwargs())
        else:
            space = flash_triton.tuning_configs("fwd", dtype, d)
            meta = flash_triton.config_meta(flash_triton.INTERPRET_CONFIG
                                            if flash_triton._interpreting() else space[0])
        grid = (flash_triton.triton.cdiv(rows, meta[tile_key]), b * h)
        return lambda: kernel[grid](*args, **meta, **const)

    # the backward's layers: FlashAttentionTriton.backward called directly (no autograd engine)
    # on saved tensors of one forward, and each of its launches as perfmodel makes them
    q3g, k3g, v3g = (t.clone().requires_grad_() for t in (q3, k3, v3))
    out3 = flash_triton.FlashAttentionTriton.apply(q3g, k3g, v3g, True)
    do3 = torch.randn(out3.shape, generator=gen, device=device, dtype=dtype)
    # as the forward saves them: (b*h, s, d) inputs are b*h batches of one head
    saved = type("Saved", (), {"saved_tensors": tuple(t.unsqueeze(1) for t in (
        q3, k3, v3, out3.detach(), lse)), "is_causal": True, "three": True})()
    flash_triton.launch("fwd", args, rows, tile_key, b * h, const)  # fills lse for ``saved``
    delta = torch.empty((b * h, s), dtype=torch.float32, device=device)
    grads = dict(lse=lse, do=do3, delta=delta, dq=torch.empty_like(q3), dk=torch.empty_like(k3),
                 dv=torch.empty_like(v3))

    def through_autotuner():
        if flash_triton._use_fixed_config():
            raise RuntimeError("no autotuner: the interpreter or PERFMODEL_FLASH_AUTOTUNE=0")
        tuned = flash_triton.KERNEL_FUNCS["fwd"][1]
        tuned[lambda meta: (flash_triton.triton.cdiv(rows, meta[tile_key]), b * h)](*args, **const)

    def bwd_launch(name):
        bargs, brows, bkey = flash_triton.kernel_args(name, q3, k3, v3, **grads)
        return lambda: flash_triton.launch(name, bargs, brows, bkey, b * h, const)

    steps = [
        ("torch.empty_like (the host's yardstick)", lambda: torch.empty_like(q3)),
        ("sdpa forward", lambda: torch.nn.functional.scaled_dot_product_attention(q, k, v, is_causal=True)),
        ("flash: attention(impl='flash') forward", lambda: attention(q, k, v, True, impl="flash")),
        ("flash: flash_attention forward", lambda: flash_attention(q, k, v, True)),
        ("flash: FlashAttentionTriton.apply (3D, contiguous)",
         lambda: flash_triton.FlashAttentionTriton.apply(q3, k3, v3, True)),
        ("flash: fwd launch through the autotuner", through_autotuner),
        ("flash: fwd launch, perfmodel's (the autotuner's choice, looked up)",
         lambda: flash_triton.launch("fwd", args, rows, tile_key, b * h, const)),
        ("flash: fwd launch by Triton's JIT, chosen config", None),
        ("sdpa forward+backward", fwd_bwd(sdpa_call)),
        ("flash forward+backward", fwd_bwd(flash_call)),
        ("sdpa forward+backward, autograd.grad", fwd_grad(sdpa_call)),
        ("flash forward+backward, autograd.grad", fwd_grad(flash_call)),
        ("an empty Python autograd.Function, forward+backward", empty_fwd_bwd),
        ("sdpa forward+backward, engine on the calling thread",
         one_thread(fwd_bwd(sdpa_call))),
        ("flash forward+backward, engine on the calling thread",
         one_thread(fwd_bwd(flash_call))),
        ("an empty Python autograd.Function, engine on the calling thread",
         one_thread(empty_fwd_bwd)),
        ("flash: FlashAttentionTriton.apply forward+backward (3D, contiguous)",
         lambda: flash_triton.FlashAttentionTriton.apply(q3g, k3g, v3g, True).backward(do3)),
        ("flash: FlashAttentionTriton.backward (no autograd engine)",
         lambda: flash_triton.FlashAttentionTriton.backward(saved, do3)),
        *((f"flash: {name} launch, perfmodel's", bwd_launch(name))
          for name in flash_triton.BWD_VARIANTS[flash_triton.bwd_variant(dtype, d)]),
    ]
    out = []
    n_calls, n_rep = (2, 3) if smoke else (calls, repeats)
    for label, fn in steps:
        try:
            if fn is None:
                fn = plain_launch()
            for _ in range(3):  # warm-up: compiles, autotuning, cuDNN's plans
                fn()
            sync()
            times = []
            for _ in range(n_rep):
                sync()
                t0 = time.perf_counter()
                for _ in range(n_calls):
                    fn()
                times.append((time.perf_counter() - t0) / n_calls)
            sync()
            times.sort()
            out.append(dict(step=label, us=times[len(times) // 2] * 1e6, min_us=times[0] * 1e6))
        except Exception as exc:  # one layer's failure leaves the others
            out.append(dict(step=label, error=f"{type(exc).__name__}: {str(exc)[:160]}"))
        print(f"host {label}: " + (out[-1]["error"] if "error" in out[-1] else
                                   f"{out[-1]['us']:.1f} us per call"), flush=True)
    probe = thread_state_probe(q, grad, n_calls * n_rep, sync)
    out.append(probe)
    print("host " + probe["step"] + ": " + probe_line(probe), flush=True)
    lines = ["", f"## the host's time per call (b{b} h{h} s{s} d{d} {dtype_name(dtype)}, causal; "
                 f"median of {n_rep} x {n_calls} calls, no synchronize inside)",
             "| layer | us per call | fastest us |", "|---|---:|---:|"]
    for r in out:
        if "us" in r or "error" in r:
            lines.append(f"| {r['step']} | " + (f"{r['error'][:60]} | |" if "error" in r else
                                               f"{r['us']:.1f} | {r['min_us']:.1f} |"))
    lines.append(f"{probe['step']}: {probe_line(probe)}")
    # where the host's time of one forward+backward goes, function by function: the engine on
    # the calling thread, so that the profiler (a per-thread hook) sees the Python backward too
    try:
        prof = host_profile(one_thread(fwd_bwd(flash_call)), 3 if smoke else 200, sync)
    except Exception as exc:  # the table above stands without it
        prof = dict(step="profile", error=f"{type(exc).__name__}: {str(exc)[:160]}")
    out.append(prof)
    lines += ["", "## flash forward+backward, engine on the calling thread, under cProfile "
                  f"({prof.get('calls', 0)} calls; us per call; own time first)",
              "| function | calls per call | own us | with callees us |", "|---|---:|---:|---:|"]
    lines += [f"| {r['function']} | {r['calls']:.1f} | {r['own_us']:.1f} | {r['cum_us']:.1f} |"
              for r in prof.get("top", [])]
    if "error" in prof:
        lines.append(f"profile: {prof['error']}")
    else:
        lines.append(f"total under the profiler: {prof['total_us']:.1f} us per call")
    print("\n".join(lines), flush=True)
    return out


def host_profile(fn, calls, sync, top=14):
    """``fn`` called ``calls`` times (after 3 warm-up calls) under cProfile: the functions with
    the most own time, per call, and the total. cProfile adds its own cost to every Python
    call, so the total reads above the unprofiled figure: the split is what it is for."""
    import cProfile  # noqa: PLC0415
    import pstats  # noqa: PLC0415

    for _ in range(3):
        fn()
    sync()
    prof = cProfile.Profile()
    prof.enable()
    for _ in range(calls):
        fn()
    prof.disable()
    sync()
    stats = pstats.Stats(prof).stats
    rows = []
    for (path, line, name), (_, ncalls, own, cum, _) in stats.items():
        where = f"{os.path.basename(path)}:{line} {name}" if line else name
        rows.append(dict(function=where, calls=ncalls / calls, own_us=own / calls * 1e6,
                         cum_us=cum / calls * 1e6))
    rows.sort(key=lambda r: -r["own_us"])
    return dict(step="profile", calls=calls, total_us=sum(r["own_us"] for r in rows),
                top=rows[:top])


def thread_state_probe(x, grad, calls, sync, run=None):
    """Where the autograd engine runs a Python backward, and whether the Python thread state it
    runs under lasts from one call to the next. On CUDA the engine hands the backward to its
    device thread, which has no Python thread state of its own: if one is made for each call,
    every threading.local and context variable in the launch path (caches, Triton's allocator)
    starts empty each time, a cost on every layer's backward that no kernel change removes."""
    import contextvars
    import threading

    tls = threading.local()
    var = contextvars.ContextVar("perfmodel_probe", default=False)
    seen = dict(calls=0, fresh_local=0, fresh_context=0, threads=set())

    class Probe(torch.autograd.Function):
        @staticmethod
        def forward(ctx, t):
            return t.view_as(t)

        @staticmethod
        def backward(ctx, g):
            seen["calls"] += 1
            seen["threads"].add(threading.get_ident())
            if not getattr(tls, "mark", False):
                seen["fresh_local"] += 1
                tls.mark = True
            if not var.get():
                seen["fresh_context"] += 1
                var.set(True)
            return g

    def one():
        Probe.apply(x).backward(grad)

    try:
        for _ in range(calls):
            (run or (lambda f: f()))(one)  # run: how a call is made (tests: a new thread each)
        sync()
    except Exception as exc:
        return dict(step="the engine's Python backward", error=f"{type(exc).__name__}: {str(exc)[:160]}")
    return dict(step="the engine's Python backward", calls=seen["calls"], threads=len(seen["threads"]),
                on_calling_thread=threading.get_ident() in seen["threads"],
                fresh_local=seen["fresh_local"], fresh_context=seen["fresh_context"])


def probe_line(p):
    if "error" in p:
        return p["error"]
    return (f"{p['calls']} calls on {p['threads']} thread(s) "
            f"({'the calling thread' if p['on_calling_thread'] else 'not the calling thread'}); "
            f"a fresh threading.local in {p['fresh_local']}, a fresh context in {p['fresh_context']}")


def issue_table(rows, precision, models):
    """The compact tables printed last: the issue's table with ratios, accuracy, the model."""
    out = ["", "## issue 17 table (causal; do_bench medians; x SDPA = SDPA time / flash time, > 1: flash faster)",
           "| shape | dtype | impl | flash fwd ms | SDPA fwd ms | flash fwd+bwd ms | SDPA fwd+bwd ms "
           "| fwd x SDPA | fwd+bwd x SDPA | check | peak MiB |",
           "|---|---|---|---:|---:|---:|---:|---:|---:|---|---:|"]
    for key in dict.fromkeys((r["label"], r["shape"], r["dtype"]) for r in rows):
        mine = [r for r in rows if (r["label"], r["shape"], r["dtype"]) == key]
        sd = next((r for r in mine if r["impl"] == "sdpa"), {})
        for r in (r for r in mine if r["impl"] != "sdpa"):
            def ms(x, k):
                return f"{x[k]:.3f}" if k in x else x.get("error", "-")[:40]
            rf = f"{sd['fwd_ms'] / r['fwd_ms']:.2f}" if "fwd_ms" in sd and "fwd_ms" in r else "-"
            rfb = f"{sd['fwdbwd_ms'] / r['fwdbwd_ms']:.2f}" if "fwdbwd_ms" in sd and "fwdbwd_ms" in r else "-"
            chk = "-" if "check" not in r else ("ok" if r["check_ok"] else "FAIL") + f" {max(r['check'].values()):.0e}"
            peak = f"{r['peak_mib']:.0f}" if "peak_mib" in r else "-"
            out.append(f"| {key[1]} | {key[2]} | {r['impl']} | {ms(r, 'fwd_ms')} | {ms(sd, 'fwd_ms')} | "
                       f"{ms(r, 'fwdbwd_ms')} | {ms(sd, 'fwdbwd_ms')} | {rf} | {rfb} | {chk} | {peak} |")
    if precision:
        out += ["", f"## float32 accuracy vs float64 (flash products: {flash_triton.FP32_PRECISION}; "
                    "relative norm error, causal)",
                "| shape | flash out | SDPA out | flash dq | SDPA dq | flash dk | SDPA dk | flash dv | SDPA dv "
                "| worst flash/SDPA |", "|---|" + "---:|" * 9]
        for p in precision:
            if "error" in p:
                out.append(f"| {p['shape']} | {p['error']} |")
                continue
            out.append(f"| {p['shape']} | " + " | ".join(f"{p[i][n]:.1e}" for n in ("out", "dq", "dk", "dv")
                                                       for i in ("flash", "sdpa")) + f" | {p['ratio']:.2f} |")
    if models:
        out += ["", "## model fwd+bwd, bf16 autocast (median of 10 steps; flash / sdpa: > 1 means flash slower)",
                "| preset | sdpa ms | flash ms | flash / sdpa |", "|---|---:|---:|---:|"]
        for preset in dict.fromkeys(m["preset"] for m in models):
            by = {m["attention"]: m for m in models if m["preset"] == preset}
            def val(a):
                m = by.get(a, {})
                return f"{m['ms']:.1f}" if m.get("ms") else f"{m.get('status')}: {str(m.get('error'))[:50]}"
            ratio = (f"{by['flash']['ms'] / by['sdpa']['ms']:.2f}"
                     if by.get("flash", {}).get("ms") and by.get("sdpa", {}).get("ms") else "-")
            out.append(f"| {preset} | {val('sdpa')} | {val('flash')} | {ratio} |")
    return "\n".join(out)


def issue_verdicts(rows, models, smoke=False):
    """One line per criterion of issue 17 item 2: MET, NOT MET or not measured, with the numbers.
    Under --smoke the shapes are tiny and the times meaningless: the lines only show that every
    criterion is evaluated."""
    out = ["", "## issue 17 criteria" + (" (SMOKE: tiny shapes on the CPU, verdicts meaningless)" if smoke else "")]
    for label, kind, limits, text in ISSUE_CRITERIA:
        mine = [r for r in rows if r["label"] == label]
        sd = next((r for r in mine if r["impl"] == "sdpa" and "error" not in r), None)
        flash = [r for r in mine if r["impl"] != "sdpa" and "error" not in r and r.get("check_ok")]
        if not mine:
            out.append(f"- {text}: not measured")
            continue
        if kind == "runs":
            errs = [r.get("error") for r in mine if r["impl"] != "sdpa" and "error" in r]
            ok = bool(flash) and not errs
            out.append(f"- {text}: {'MET' if ok else 'NOT MET'}"
                       + (f" (fwd+bwd {min(r['fwdbwd_ms'] for r in flash):.3f} ms, peak "
                          f"{max(r.get('peak_mib', 0) for r in flash):.0f} MiB)" if flash else f" {errs}"))
            continue
        if not flash:
            out.append(f"- {text}: NOT MET (no flash result that passed the float64 check; "
                       f"{[r.get('error', 'check failed') for r in mine if r['impl'] != 'sdpa']})")
            continue
        if kind == "ratio":
            if sd is None:
                out.append(f"- {text}: not measured (SDPA: {next((r.get('error') for r in mine if r['impl'] == 'sdpa'), '-')})")
                continue
            got = {k: max(sd[k] / r[k] for r in flash) for k in limits}
            ok = all(got[k] >= lim for k, lim in limits.items())
            out.append(f"- {text}: {'MET' if ok else 'NOT MET'} ("
                       + ", ".join(f"{k[:-3]} x SDPA {got[k]:.2f} (need {lim:.2f})" for k, lim in limits.items()) + ")")
        else:  # under_ms
            best = min(flash, key=lambda r: r["fwdbwd_ms"])
            ok = all(best[k] < lim for k, lim in limits.items())
            ref = f", SDPA {sd['fwdbwd_ms']:.3f} ms" if sd else ""
            out.append(f"- {text}: {'MET' if ok else 'NOT MET'} ({best['impl']} {best['fwdbwd_ms']:.3f} ms{ref})")
    if models:
        by = {}
        for m in models:
            by.setdefault(m["preset"], {})[m["attention"]] = m.get("ms") or m.get("status")

        def ms(x):
            return f"{x:.1f}" if isinstance(x, float) else str(x)

        slower = [p for p, t in by.items() if not (isinstance(t.get("flash"), float) and isinstance(t.get("sdpa"), float)
                                                   and t["flash"] <= t["sdpa"])]
        out.append(f"- model presets ctx {ISSUE_PRESETS_CONTEXT} b{ISSUE_PRESETS_BATCH} bf16 fwd+bwd, flash no "
                   f"slower than sdpa: {'MET' if not slower else 'NOT MET'} (flash/sdpa ms: "
                   + ", ".join(f"{p} {ms(t.get('flash'))}/{ms(t.get('sdpa'))}" for p, t in by.items()) + ")")
    else:
        out.append("- model presets, flash no slower than sdpa: not measured")
    bad = [f"{r['label']} {r['impl']}" for r in rows if r.get("check_ok") is False]
    out.append(f"- chosen configs vs float64 (out, lse, dq, dk, dv; causal and not; ragged): "
               f"{'all ok' if not bad else 'FAILED: ' + ', '.join(bad)} "
               f"({sum(1 for r in rows if 'check' in r)} checked)")
    return "\n".join(out)


def issue_main(args):
    """--issue: precompile, then each row of ISSUE_ROWS (checked, then timed), the float32
    accuracy study, the model presets; JSON after every stage; the tables last."""
    import signal

    from perfmodel.model import SEED_PRESETS

    smoke = args.smoke
    if smoke and os.environ.get("TRITON_INTERPRET") != "1":  # must be set before triton is imported
        os.execve(sys.executable, [sys.executable] + sys.argv, dict(os.environ, TRITON_INTERPRET="1"))
    t0 = time.time()
    device = torch.device("cpu" if smoke else "cuda")
    deadline = t0 + args.budget
    seed = args.seed if args.seed is not None else int.from_bytes(os.urandom(4), "little")
    gen = torch.Generator(device=device).manual_seed(seed)
    import triton

    # float32 means float32 here: no TF32 in SDPA's or cuBLAS's products (perfmodel's model
    # cells set these per cell too); flash's float32 products are tf32x3 (FP32_PRECISION)
    torch.backends.cuda.matmul.allow_tf32 = False
    torch.backends.cudnn.allow_tf32 = False
    meta = dict(device=torch.cuda.get_device_name() if not smoke else "cpu (interpreter smoke run)",
                torch=torch.__version__, triton=triton.__version__, seed=seed, argv=sys.argv[1:],
                fp32_precision=flash_triton.FP32_PRECISION, candidates=flash_triton.candidates_enabled())
    print(f"device: {meta['device']} | torch {meta['torch']} | triton {meta['triton']} | seed {seed} | "
          f"fp32 products {meta['fp32_precision']}", flush=True)
    print("flash available:", flash_triton.is_available(device), flush=True)
    rows, precision, models, pre, stages = [], [], [], [], {}
    issue_rows = [(lab, smoke_shape(sh) if smoke else sh, dt if not smoke or dt == torch.float32 else torch.float16, v)
                  for lab, sh, dt, v in ISSUE_ROWS]
    if args.rows:
        wanted = set(args.rows.split(","))
        issue_rows = [r for r in issue_rows if r[0] in wanted]

    def save():
        if args.json:
            with open(args.json, "w") as f:
                json.dump(dict(meta=meta, rows=rows, precision=precision, models=models, precompile=pre,
                               stages=stages, seconds=time.time() - t0), f, indent=1)

    class OutOfTime(Exception):
        pass

    def alarm(*_):
        raise OutOfTime(f"hard stop at {args.budget + args.grace:.0f}s")

    if not smoke:  # a stage stuck past the budget (e.g. tuning) is interrupted; the tables still print
        signal.signal(signal.SIGALRM, alarm)
        signal.alarm(int(args.budget + args.grace))

    def stage(name, fn, reserve=0):
        if time.time() > deadline - reserve:
            stages[name] = "skipped: budget"
            print(f"stage {name}: skipped ({deadline - time.time():.0f}s of budget left)", flush=True)
            return
        t = time.time()
        try:
            fn()
            stages[name] = f"ok {time.time() - t:.0f}s"
        except (Exception, OutOfTime) as exc:
            stages[name] = f"{type(exc).__name__}: {str(exc)[:200]}"
            print(f"stage {name} failed: {stages[name]}", flush=True)
        save()

    def do_precompile():
        cells = []
        for _, shape, dtype, variants in issue_rows:
            for causal in (True, False):
                cells.append(((shape[-1], dtype, causal), variant_kernels(variants)))
        if not smoke:
            fwd = flash_triton.FWD_VARIANTS.get(flash_triton.FWD_VARIANT, "fwd")
            cells += [((d, torch.bfloat16, True),  # the presets' head dims
                       [fwd, *flash_triton.BWD_VARIANTS[flash_triton.bwd_variant(torch.bfloat16, d)]])
                      for d in (64, 80)]
        tasks = []
        for cell, names in cells:
            tasks += kernel_tasks([cell], names)
        if smoke:
            print(f"precompile: {len(dict.fromkeys(tasks))} kernel configs (not compiled under the interpreter)",
                  flush=True)
            return
        pre.append(precompile(tasks, args.jobs, min(args.precompile_timeout, deadline - time.time() - 120),
                              "issue"))

    if args.jobs or smoke:
        stage("precompile", do_precompile)
    for i, (label, shape, dtype, variants) in enumerate(issue_rows):
        stage(f"row {label}", lambda: rows.extend(attention_row(label, shape, dtype, variants, gen, device, args)))
        if i == 1:  # after the two fp32 target rows: is tf32x3 as accurate as SDPA's float32?
            shapes = [(1, 40, d) for _, _, d in PRECISION_SHAPES] if smoke else PRECISION_SHAPES
            stage("precision", lambda: precision.extend(precision_study(shapes, gen, device)))
        if i == 5 and not args.skip_model:  # the model before the extra head-dim rows
            presets = ["nano"] if smoke else list(SEED_PRESETS)
            stage("model", lambda: models.extend(model_check(presets, device, smoke)), reserve=-30)
    if not any(k == "model" for k in stages) and not args.skip_model:
        presets = ["nano"] if smoke else list(SEED_PRESETS)
        stage("model", lambda: models.extend(model_check(presets, device, smoke)))
    if not smoke:
        signal.alarm(0)
    save()
    bad = [r for r in rows if r.get("check_ok") is False]
    print(f"total {time.time() - t0:.0f}s; stages: {stages}; reference checks failed: "
          f"{[(r['label'], r['impl']) for r in bad]}")
    print(issue_table(rows, precision, models))
    print(issue_verdicts(rows, models, smoke))
    return 1 if bad else 0


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--issue", action="store_true",
                    help="issue 17's table: each row checked against float64 then timed, fp32 accuracy, "
                         "the model presets; tables printed last (--budget, --jobs, --json)")
    ap.add_argument("--skip-model", action="store_true", help="with --issue: no model stage")
    ap.add_argument("--smoke", action="store_true",
                    help="with --issue: every stage at tiny sizes on the CPU through Triton's interpreter "
                         "(no GPU: catches mistakes before a GPU run)")
    ap.add_argument("--rows", default="", help="with --issue: only these row labels (comma-separated)")
    ap.add_argument("--grace", type=float, default=45,
                    help="with --issue: a stage still running this long past --budget is interrupted")
    ap.add_argument("--check", action="store_true")
    ap.add_argument("--targets", action="store_true")
    ap.add_argument("--explore", action="store_true", help="time each kernel per config on the targets")
    ap.add_argument("--check-configs", action="store_true",
                    help="every config of every space, fwd+bwd once each in its own process (--jobs at a time)")
    ap.add_argument("--explore-fp32", action="store_true", help="fp32 kernels per config, fp32 end-to-end")
    ap.add_argument("--grid", action="store_true")
    ap.add_argument("--long", action="store_true")
    ap.add_argument("--variants", default=",".join(flash_triton.BWD_VARIANTS),
                    help="backward variants timed by --targets/--explore(-fp32)")
    ap.add_argument("--fwd-variants", default="",
                    help="with --targets/--explore: the forward variants too (e.g. pointer,tma); "
                         "their kernels join --explore")
    ap.add_argument("--impls", default="flash,sdpa", help="for --grid/--long")
    ap.add_argument("--dtypes", default="bfloat16,float32", help="for --grid/--long")
    ap.add_argument("--ds", default="16,32,64,128")
    ap.add_argument("--seqs", default="256,1024,4096,8192,16384")
    ap.add_argument("--fixed", action="store_true", help="no autotuning (PERFMODEL_FLASH_AUTOTUNE=0)")
    ap.add_argument("--warmup", type=int, default=10, help="do_bench warm-up, ms")
    ap.add_argument("--rep", type=int, default=50, help="do_bench repetitions, ms")
    ap.add_argument("--json", default=None, help="write everything measured here (after every stage)")
    ap.add_argument("--seed", type=int, default=None)
    ap.add_argument("--budget", type=float, default=1e9, help="start no stage / cell after this many s")
    ap.add_argument("--jobs", type=int, default=0, help="precompile kernels in N processes first")
    ap.add_argument("--precompile-timeout", type=float, default=200, help="per precompile stage, s")
    ap.add_argument("--resources", action="store_true",
                    help="no GPU needed: compile every config (--ds, --dtypes, plus EXPLORE and "
                         "EXPLORE_FP32) for sm_90 and print registers / spill stack / shared memory "
                         "per config, then exit")
    ap.add_argument("--profile-model", default="", metavar="PRESETS",
                    help="where a model step's time goes, flash against sdpa: these presets "
                         "(comma-separated), bf16 fwd+bwd at the issue's context and batch, "
                         "torch.profiler; with --smoke tiny (CPU); a table last, then exit")
    ap.add_argument("--host", action="store_true",
                    help="the host's time per call of each layer of flash's launch path against "
                         "sdpa's, at the model's attention shape (bf16); with --smoke tiny (CPU); "
                         "a table last, then exit")
    ap.add_argument("--twins", action="store_true",
                    help="with --resources: the descriptor (TMA) kernels too, as the launches take them")
    ap.add_argument("--all-spaces", action="store_true",
                    help="with --resources: every config of every tuning space as written (before the "
                         "shared-memory filter) at each BLOCK_D it serves, instead of --ds/--dtypes; with "
                         "--json: the rows (tests/fixtures/flash_smem_sm90.json is such a file)")
    args = ap.parse_args()
    if args.profile_model:
        if args.smoke and os.environ.get("TRITON_INTERPRET") != "1":  # before triton is imported
            os.execve(sys.executable, [sys.executable] + sys.argv, dict(os.environ, TRITON_INTERPRET="1"))
        device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
        rows = model_profile([x for x in args.profile_model.split(",") if x], device, smoke=args.smoke)
        if args.json:
            with open(args.json, "w") as fh:
                json.dump({"profile": rows}, fh, indent=1)
        return 1 if any("error" in r for r in rows) else 0
    if args.host:
        if args.smoke and os.environ.get("TRITON_INTERPRET") != "1":  # before triton is imported
            os.execve(sys.executable, [sys.executable] + sys.argv, dict(os.environ, TRITON_INTERPRET="1"))
        device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
        rows = host_overhead(device, smoke=args.smoke)
        if args.json:
            with open(args.json, "w") as fh:
                json.dump({"host": rows}, fh, indent=1)
        return 1 if any("error" in r for r in rows) else 0
    if args.resources:
        resources([int(x) for x in args.ds.split(",")], [getattr(torch, x) for x in args.dtypes.split(",")],
                  args.jobs, all_spaces=args.all_spaces, json_path=args.json,
                  twins=args.twins)
        return 0
    if args.issue:
        return issue_main(args)
    variants = [v for v in args.variants.split(",") if v]
    for v in variants:
        if v not in flash_triton.BWD_VARIANTS:
            ap.error(f"unknown variant {v!r}: one of {tuple(flash_triton.BWD_VARIANTS)}")

    import triton

    t0 = time.time()
    deadline = t0 + args.budget
    seed = args.seed if args.seed is not None else int.from_bytes(os.urandom(4), "little")
    gen = torch.Generator(device="cuda").manual_seed(seed)
    meta = dict(device=torch.cuda.get_device_name(), torch=torch.__version__, triton=triton.__version__,
                seed=seed, argv=sys.argv[1:], default_variant=flash_triton.BWD_VARIANT)
    print(f"device: {meta['device']} | torch {meta['torch']} | triton {meta['triton']} | seed {seed} "
          f"| default backward variant {meta['default_variant']}", flush=True)
    print("flash available:", flash_triton.is_available("cuda"), flush=True)
    failures = 0
    rows, explored, checks, pre = [], [], {}, []

    def save():
        if args.json:  # rewritten after every stage, so a run cut short still leaves its rows
            with open(args.json, "w") as f:
                json.dump(dict(meta=meta, rows=rows, explore=explored, checks=checks, precompile=pre,
                               autotuned=autotuned_choices(), seconds=time.time() - t0), f, indent=1)

    def left():
        return deadline - time.time()

    if args.check:
        os.environ["PERFMODEL_FLASH_AUTOTUNE"] = "0"
        failures += check_small(["flash", "flash_torch"], gen)
        print(f"check done in {time.time() - t0:.0f}s, failures: {failures}", flush=True)
    os.environ["PERFMODEL_FLASH_AUTOTUNE"] = "0" if args.fixed else "1"
    bf16 = torch.bfloat16
    names = variant_kernels(variants)
    fwd_variants = [f for f in args.fwd_variants.split(",") if f]
    for f in fwd_variants:
        if f not in flash_triton.FWD_VARIANTS:
            ap.error(f"unknown forward variant {f!r}: one of {tuple(flash_triton.FWD_VARIANTS)}")
        if flash_triton.FWD_VARIANTS[f] not in names:
            names.insert(1, flash_triton.FWD_VARIANTS[f])
    target_cells = [(shape[-1], bf16, True) for shape, _ in TARGETS]

    # 1) precompile what the targets need (autotuning spaces + EXPLORE), print the targets
    if args.jobs and not args.fixed and (args.targets or args.explore):
        tasks = kernel_tasks(target_cells, names, args.explore)
        pre.append(precompile(tasks, args.jobs, min(args.precompile_timeout, left() - 60), "targets"))
        save()
    if args.targets:
        run_e2e(TARGETS, bf16, variants, gen, args, rows, deadline, save, fwd_variants or (None,))
        for line in autotuned_choices():
            print("autotuned " + line, flush=True)
        save()
    # 2) every config of every kernel alone on the targets
    if args.explore:
        for shape, _ in TARGETS:
            if left() > 0:
                explored += explore(shape, bf16, names, gen, args.warmup, args.rep, deadline)
                save()
    # 3) precompile the checks' and fp32 kernels, run the per-config tests
    later = []
    if args.explore_fp32:
        later += kernel_tasks([(s[-1], torch.float32, True) for s in FP32_SHAPES], names, explore=True)
    if later and args.jobs and not args.fixed:
        done = kernel_tasks(target_cells, names, args.explore) if pre else []
        # bf16 first, then fp32 by tile size (the 64x64 fp32 tiles compile slowest)
        later.sort(key=lambda t: (t[1] == "float32", (t[4][0] * t[4][1]) if t[4] else 0))
        pre.append(precompile(later, args.jobs, min(args.precompile_timeout, left() - 90), "fp32",
                              skip=done))
        save()
    if args.check_configs:
        reserve = 60 if args.explore_fp32 else 0
        checks = run_config_checks(deadline - reserve, args.jobs or max(1, min(12, (os.cpu_count() or 2) - 2)))
        failures += sum(1 for s in checks.values() if s != "ok")
        save()
    # 4) fp32: kernels per config and end-to-end per variant
    if args.explore_fp32:
        for shape in FP32_SHAPES:
            if left() > 0:
                explored += explore(shape, torch.float32, names, gen, args.warmup, args.rep, deadline)
                save()
        run_e2e([(s, None) for s in FP32_SHAPES], torch.float32, variants, gen, args, rows, deadline, save)
    # 5) grid / long cells (default backward variant)
    impls = args.impls.split(",")
    dtypes = [getattr(torch, x) for x in args.dtypes.split(",")]
    cells = []
    if args.grid:
        for dtype in dtypes:
            for d in map(int, args.ds.split(",")):
                for s in map(int, args.seqs.split(",")):
                    cells.append(((8, s, d), dtype, True))
    if args.long:
        for dtype in dtypes:
            for d in (64, 128):
                cells.append(((1, 65536, d), dtype, True))
    if cells and args.jobs and not args.fixed and "flash" in impls:
        tasks = [t for shape, dtype, causal in cells for t in kernel_tasks(
            [(shape[-1], dtype, causal)], variant_kernels([flash_triton.bwd_variant(dtype, shape[-1])]))]
        pre.append(precompile(list(dict.fromkeys(tasks)), args.jobs,
                              min(args.precompile_timeout, left() - 60), "grid"))
    for shape, dtype, causal in cells:
        for impl in impls:
            if left() < 0:
                rows.append(dict(impl=impl, shape="x".join(map(str, shape)), dtype=dtype_name(dtype),
                                 causal=causal, error="not run: --budget used up"))
                continue
            t = time.time()
            r = bench_cell(impl, shape, dtype, causal, gen, args.warmup, args.rep)
            rows.append(r)
            print(row_line(r, time.time() - t), flush=True)
            save()
    save()
    print(f"total {time.time() - t0:.0f}s, check failures: {failures}")
    print(summary(rows, explored, checks, pre))
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
