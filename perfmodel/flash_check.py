"""Every config of every flash tuning space, each launched once in a process of its own.

Why a process per config: a kernel that faults on the GPU ("an illegal memory access") poisons
the CUDA context of its process, so every later launch in it fails too and the fault cannot be
told apart from what follows it (issue 17: one bad tf32x3 config in an autotuning space killed
a whole benchmark run).  Here each (kernel, dtype, head dim, config) is one fresh
``python -m perfmodel.flash_check --one CASE`` child: it pins that config with
:func:`perfmodel.flash_triton.forced` (the other kernels at the first config of their space,
``PERFMODEL_FLASH_AUTOTUNE=0`` so nothing is autotuned), runs forward + backward once at
b2 x s1024 causal with ``CUDA_LAUNCH_BLOCKING=1``, and compares out, logsumexp, dq, dk, dv with
float64 attention on fresh random inputs.  A fault then names its config; the parent collects
one status per config and prints a compact table.

    python -m perfmodel.flash_check --workers 14 --json $OUT/configs.json   # on a GPU
    python -m perfmodel.flash_check --dtypes bfloat16 --twins               # + the TMA kernels
    python -m perfmodel.flash_check --dtypes float32 --explore              # + the candidates
    tools/bench_flash.py --check-configs                                  # the same

Children run in parallel (``--workers``): they share Triton's on-disk kernel cache, and the GPU
work of one is milliseconds.  Without a GPU the children run through Triton's interpreter
(``--device cpu``, small shapes: for tests of this driver).
"""
from __future__ import annotations

import argparse
import concurrent.futures as cf
import json
import math
import os
import subprocess
import sys
import time

DTYPES = ("float32", "bfloat16")
# one head dim per BLOCK_D the spaces distinguish (16, 32, 64, 128, 256), and 80 (padded to
# 128: the 2.7B preset's, with the masked loads): the spaces and the compiled kernels differ
HEAD_DIMS = (16, 32, 64, 80, 128, 256)
BATCH, SEQ = 2, 1024
# relative-norm error bounds against float64, for every check of the Triton kernels (this one,
# tests/test_flash.py's, tools/bench_flash.py's float32 check): float32 is tf32x3, ~1e-6 (at
# most 1.3e-6 on an H100); plain TF32 products would show as ~1e-3, a running sum kept in the
# tensor cores' accumulation as 1e-5 (1.1e-5 at s1024 on an H100): both must fail
TOL = {"float32": 5e-6, "bfloat16": 1e-2, "float16": 5e-3}
STATUSES = ("ok", "wrong", "fault", "smem", "error", "timeout", "not run")


def cases(dtypes=DTYPES, head_dims=HEAD_DIMS, kernels=None, seq=SEQ, batch=BATCH, device="cuda",
          explore=False):
    """One case per config of every kernel's space, per dtype and head dim: float32 first (the
    tf32x3 configs are the ones that faulted), the largest head dims first.  ``explore``: the
    candidates beyond each space too (flash_triton.explore_configs, those that fit), which
    tools/bench_flash.py --explore times in one process: a candidate enters a space only once
    it has run here."""
    import torch

    from . import flash_triton as ft

    out = []
    for dt in dtypes:
        dtype = getattr(torch, dt)
        for d in sorted(head_dims, reverse=True):
            spaces = {n: ft.tuning_configs(n, dtype, d)
                      for n in dict.fromkeys(ft.KERNELS + tuple(kernels or ()))}
            base = {n: list(space[0]) for n, space in spaces.items() if space}
            for name in kernels or ft.KERNELS:
                # the descriptor (TMA) kernels where the launches take them: 16-bit inputs, each
                # with the descriptor forward, and float32's backward pair on TF32 parts split
                # beforehand (PRE_SPLIT), with the pointer forward
                twin = name in ft.DESC_TWINS
                if twin and not ft.twin_launched(name, dtype, d):
                    continue
                more = ft.explore_configs(name, dtype, d) if explore else []
                for cfg in spaces[name] + [c for c in more if c not in spaces[name]]:
                    out.append(dict(kernel=name, dtype=dt, d=d, cfg=list(cfg), base=base,
                                    variant=next((v for v, names in ft.BWD_VARIANTS.items()
                                                  if name in names), "split"),
                                    fwd="tma" if twin and dtype.itemsize == 2 else "pointer",
                                    batch=batch, seq=seq,
                                    device=device))
    return out


def case_id(c):
    return f"{c['kernel']} {c['dtype']} d{c['d']} {c['cfg'][0]}x{c['cfg'][1]} w{c['cfg'][2]} s{c['cfg'][3]}"


def run_one(case) -> dict:
    """The child's work: forward + backward once with ``case``'s config pinned, against float64."""
    import torch

    from . import flash_triton as ft
    from .attention import eager_attention
    from .flash_torch import saved_logsumexp

    t0 = time.time()
    device = torch.device(case["device"])
    dtype = getattr(torch, case["dtype"])
    b, s, d = case["batch"], case["seq"], case["d"]
    configs = {n: tuple(c) for n, c in case["base"].items()}
    configs[case["kernel"]] = tuple(case["cfg"])
    g = torch.Generator().manual_seed(int.from_bytes(os.urandom(4), "little"))
    q, k, v, do = (torch.randn(b, s, d, generator=g).to(dtype).to(device) for _ in range(4))
    for x in (q, k, v):
        x.requires_grad_()
    launched = []
    launch = ft.launch

    def recording(name, *a, **kw):
        launched.append(name)
        return launch(name, *a, **kw)

    ft.launch = recording
    with ft.forced(configs, variant=case["variant"], fwd=case.get("fwd", "pointer")):
        out = ft.FlashAttentionTriton.apply(q, k, v, True)
        lse = saved_logsumexp(out).detach()
        out.backward(do)
    if case["kernel"] not in launched:  # e.g. a descriptor kernel the inputs did not allow
        raise RuntimeError(f"{case['kernel']} was not launched (launched: {launched})")
    if device.type == "cuda":
        torch.cuda.synchronize()  # a fault surfaces here at the latest
    ran = time.time() - t0
    # float64 reference on the same device (perfmodel's eager attention, as reference_attention)
    q64, k64, v64 = (x.detach().double().requires_grad_() for x in (q, k, v))
    ref = eager_attention(q64, k64, v64, True)
    ref.backward(do.double())
    scores = (q64.detach() @ k64.detach().transpose(-2, -1)) / math.sqrt(d)
    scores = scores.masked_fill(~torch.ones(s, s, dtype=torch.bool, device=device).tril(), float("-inf"))
    ref_lse = torch.logsumexp(scores, dim=-1)

    def rel(x, want):
        return ((x.double() - want).norm() / want.norm()).item()

    errs = {"out": rel(out.detach(), ref.detach()), "lse": rel(lse, ref_lse), "dq": rel(q.grad, q64.grad),
            "dk": rel(k.grad, k64.grad), "dv": rel(v.grad, v64.grad)}
    return dict(errs=errs, ran_s=ran, seconds=time.time() - t0)


def child_command(case):
    return [sys.executable, "-m", "perfmodel.flash_check", "--one", json.dumps(case)]


def child_env(case):
    env = dict(os.environ, PERFMODEL_FLASH_AUTOTUNE="0", CUDA_LAUNCH_BLOCKING="1")
    if case["device"] == "cpu":
        env["TRITON_INTERPRET"] = "1"  # must be set before triton is imported
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    env["PYTHONPATH"] = root + os.pathsep + env.get("PYTHONPATH", "")
    return env


def classify(returncode, text, result, tol) -> tuple[str, str]:
    """(status, short note) of one child from its exit status, output and parsed result."""
    if result is not None and returncode == 0:
        errs = result["errs"]
        if all(e < tol for e in errs.values()):  # NaN is not < tol
            return "ok", f"max err {max(errs.values()):.1e}"
        return "wrong", " ".join(f"{n}={e:.1e}" for n, e in errs.items() if not e < tol)
    low = text.lower()
    if "illegal memory access" in low or "misaligned address" in low or "unspecified launch failure" in low:
        kind = "fault"
    elif "outofresources" in low or "out of resource" in low:
        kind = "smem"
    else:
        kind = "error"
    lines = [x.strip() for x in text.splitlines() if x.strip()]
    note = next((x for x in reversed(lines) if "Error" in x or "error" in x), lines[-1] if lines else "")
    return kind, f"exit {returncode}: {note[:160]}"


def check(case, timeout=150, command=None) -> dict:
    """Run one case in a fresh child process; returns the case with its status."""
    cmd = (command or child_command)(case)
    t0 = time.time()
    row = dict(case, id=case_id(case))
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, env=child_env(case))
    except subprocess.TimeoutExpired:
        row.update(status="timeout", note=f"no result after {timeout:.0f}s", seconds=time.time() - t0)
        return row
    result = None
    for line in proc.stdout.splitlines():
        if line.startswith("RESULT "):
            result = json.loads(line[len("RESULT "):])
    status, note = classify(proc.returncode, proc.stdout + proc.stderr, result, TOL[case["dtype"]])
    row.update(status=status, note=note, seconds=time.time() - t0)
    if result:
        row["errs"] = result["errs"]
    return row


def waves(all_cases) -> list[list[int]]:
    """Indices of ``all_cases`` in three waves.  Every child of a (dtype, d) runs the kernels it
    does not test at their base config; were the first children of a group to start together,
    each would compile those same base kernels at once.  So first one child per (dtype, d) that
    runs only base configs (the forward's base case: fwd, dkdv, dq, preprocess), then the base
    cases of the atomic and fused kernels, then everything else, each compiling one new kernel
    (Triton's disk cache is shared)."""
    first, second, rest = [], [], []
    for i, c in enumerate(all_cases):
        is_base = c["cfg"] == c["base"][c["kernel"]]
        if is_base and c["kernel"] == "fwd":
            first.append(i)
        elif is_base and c["variant"] != "split":
            second.append(i)
        else:
            rest.append(i)
    return [w for w in (first, second, rest) if w]


def check_all(all_cases, workers=8, timeout=150, deadline=None, command=None, log=print) -> list[dict]:
    """Every case in its own child, ``workers`` at a time, in :func:`waves`; cases not started
    by ``deadline`` (time.time()) are reported as not run.  Prints one line per case that is
    not ok.  Returns the rows in the order of ``all_cases``."""
    rows = [None] * len(all_cases)

    def one(i):
        c = all_cases[i]
        if deadline is not None and time.time() > deadline:
            rows[i] = dict(c, id=case_id(c), status="not run", note="deadline", seconds=0.0)
        else:
            rows[i] = check(c, timeout=timeout, command=command)
            if rows[i]["status"] != "ok" and log:
                log(f"config {rows[i]['id']}: {rows[i]['status'].upper()} {rows[i]['note']}")
        return rows[i]

    with cf.ThreadPoolExecutor(max(1, workers)) as ex:
        for wave in waves(all_cases):
            list(ex.map(one, wave))
    return rows


def table(rows) -> str:
    """The compact table: one line per (dtype, d, kernel), every config that is not ok named."""
    out = ["| dtype | d | kernel | configs | ok | not ok: config status | worst err | slowest s |",
           "|---|---:|---|---:|---:|---|---:|---:|"]
    groups = {}
    for r in rows:
        groups.setdefault((r["dtype"], r["d"], r["kernel"]), []).append(r)
    for (dt, d, kernel), rs in groups.items():
        ok = [r for r in rs if r["status"] == "ok"]
        bad = ", ".join(f"{r['cfg'][0]}x{r['cfg'][1]} w{r['cfg'][2]} s{r['cfg'][3]} {r['status']}"
                        for r in rs if r["status"] != "ok")
        worst = max((max(r["errs"].values()) for r in rs if r.get("errs")), default=float("nan"))
        slow = max(r["seconds"] for r in rs)
        out.append(f"| {dt} | {d} | {kernel} | {len(rs)} | {len(ok)} | {bad or '-'} | {worst:.1e} | {slow:.0f} |")
    counts = {s: sum(r["status"] == s for r in rows) for s in STATUSES}
    out.append("configs: " + ", ".join(f"{s} {n}" for s, n in counts.items() if n) + f" (of {len(rows)})")
    return "\n".join(out)


def check_args(ap, args):
    """The dtypes, head dims and kernels asked for, or a one-line usage error naming the valid
    choices (a user's typo is no traceback)."""
    from .flash_torch import HEAD_DIM_STEP, MAX_HEAD_DIM
    from .flash_triton import ALL_KERNELS, INTERPRETER_BF16

    if args.device not in ("cuda", "cpu"):
        ap.error(f"unknown --device {args.device!r}; valid choices: cuda, cpu")
    if args.dtypes is None:  # the interpreter's 16-bit type is float16 (flash_triton.INTERPRETER_BF16)
        args.dtypes = ",".join(DTYPES if args.device == "cuda" else ("float32", "float16"))
    dtypes = [x for x in args.dtypes.split(",") if x]
    for dt in dtypes:
        if dt not in TOL:
            ap.error(f"unknown dtype {dt!r} in --dtypes; valid choices: {', '.join(TOL)}")
    if args.device == "cpu" and "bfloat16" in dtypes:
        ap.error(f"--dtypes bfloat16 with --device cpu: {INTERPRETER_BF16}")
    try:
        ds = [int(x) for x in args.ds.split(",") if x]
    except ValueError:
        ds = [0]
    if not ds or any(d < HEAD_DIM_STEP or d > MAX_HEAD_DIM or d % HEAD_DIM_STEP for d in ds):
        ap.error(f"bad --ds {args.ds!r}: head dims are multiples of {HEAD_DIM_STEP} from "
                 f"{HEAD_DIM_STEP} to {MAX_HEAD_DIM}, comma-separated")
    kernels = [x for x in args.kernels.split(",") if x]
    for k in kernels:
        if k not in ALL_KERNELS:
            ap.error(f"unknown kernel {k!r} in --kernels; valid choices: {', '.join(ALL_KERNELS)}")
    if args.seq < 1 or args.workers < 1:
        ap.error("--seq and --workers must be at least 1")
    return dtypes, ds, kernels


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--one", help="(internal) run one case, given as JSON, in this process")
    ap.add_argument("--workers", type=int, default=max(1, min(12, (os.cpu_count() or 2) - 2)))
    ap.add_argument("--dtypes", default=None,
                    help=f"comma-separated (default: {','.join(DTYPES)}; with --device cpu float32,float16)")
    ap.add_argument("--ds", default=",".join(map(str, HEAD_DIMS)))
    ap.add_argument("--kernels", default="", help="comma-separated kernel names (default: all)")
    ap.add_argument("--twins", action="store_true",
                    help="the descriptor kernels too (16-bit dtypes; float32's backward pair, d <= 128)")
    ap.add_argument("--explore", action="store_true",
                    help="the candidates beyond each space too (flash_triton.explore_configs)")
    ap.add_argument("--seq", type=int, default=SEQ)
    ap.add_argument("--device", default="cuda", help="cuda, or cpu (Triton's interpreter: small --seq)")
    # budget + timeout + the table stay under 9 minutes: a device call that is cut off prints nothing
    ap.add_argument("--timeout", type=float, default=150, help="per child, s (then: status timeout)")
    ap.add_argument("--budget", type=float, default=380, help="start no child after this many s")
    ap.add_argument("--json", default=None, help="write every row here")
    args = ap.parse_args(argv)
    if args.one:
        res = run_one(json.loads(args.one))
        print("RESULT " + json.dumps(res), flush=True)
        return 0
    os.environ.setdefault("PERFMODEL_FLASH_CANDIDATES", "1")  # the candidate spaces, as the bench
    t0 = time.time()
    dtypes, ds, kernels = check_args(ap, args)
    if args.twins:
        from .flash_triton import DESC_TWINS, KERNELS

        kernels = (kernels or list(KERNELS)) + [t for t in DESC_TWINS if t not in kernels]
    all_cases = cases(dtypes, ds, kernels or None, seq=args.seq, device=args.device, explore=args.explore)
    print(f"flash configs: {len(all_cases)} cases, {args.workers} workers, b{BATCH} x s{args.seq} causal, "
          f"fwd+bwd once each in its own process", flush=True)
    rows = check_all(all_cases, workers=args.workers, timeout=args.timeout, deadline=t0 + args.budget)
    if args.json:
        with open(args.json, "w") as f:
            json.dump(dict(seconds=time.time() - t0, rows=rows), f, indent=1)
    print(f"flash configs: done in {time.time() - t0:.0f}s")
    print(table(rows))
    return 0 if all(r["status"] == "ok" for r in rows) else 1


if __name__ == "__main__":
    sys.exit(main())
