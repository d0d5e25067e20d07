"""Which modules asv's forkserver may import ahead of its benchmark processes on a GPU box.

asv forks each benchmark process from a server that imported the suite (benchmarks/common.py
``_preimport``). A module may be imported there only if a child forked afterwards can still use
CUDA: once the parent has asked the CUDA driver anything, a forked child cannot ("Cannot
re-initialize CUDA in forked subprocess"). Inductor's compiler is not imported there today, so
every process whose first step compiles imports it by itself (seconds a process, even with warm
compile caches). This tool says, per candidate module, on the box it runs on:

    python3 -m tools.fork_safe [MODULE ...] [--nvml] [--json F]

each in a fresh interpreter: how long the import took, whether the parent touched CUDA doing it
(and where: the first call into torch.cuda that can start the driver), and whether a child
forked afterwards ran a CUDA op. ``--nvml`` also tries each with PYTORCH_NVML_BASED_CUDA_CHECK=1
(torch.cuda.is_available() through NVML, which leaves the driver alone). Without a GPU the
children run a CPU op: only the plumbing is checked. Table last.
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys

# Inductor's compiler and the pieces of it a warm first step loads (the FX graph and AOTAutograd
# caches, the generated code's runtime), heaviest first
CANDIDATES = (
    "torch._inductor.compile_fx",
    "torch._inductor.codecache",
    "torch._functorch._aot_autograd.autograd_cache",
    "torch._inductor.runtime.triton_heuristics",
    "torch._inductor.async_compile",
    "torch._inductor.graph",
)
# what the forkserver imports today (benchmarks/common.py _preimport), imported first
BASE = ("torch", "torch._dynamo")
LIMIT_S = 120  # one probe

PROBE = r"""
import json, os, sys, time, traceback
import importlib
for name in BASE:
    importlib.import_module(name)
import torch
touched = []
def watch(obj, name):
    orig = getattr(obj, name, None)
    if orig is None:
        return
    def call(*a, **k):
        if not touched:
            stack = [f for f in traceback.extract_stack()[:-1] if "importlib" not in f.filename]
            touched.append(f"{name} <- " + " | ".join(
                f"{f.filename.split('site-packages/')[-1]}:{f.lineno}" for f in stack[-3:]))
        return orig(*a, **k)
    setattr(obj, name, call)
for name in ("is_available", "device_count", "get_device_properties", "get_device_capability",
             "_lazy_init", "current_device", "get_device_name", "init"):
    watch(torch.cuda, name)
for name in ("_cuda_getDeviceCount", "_cuda_init"):
    watch(torch._C, name)
t0 = time.perf_counter()
error = ""
try:
    importlib.import_module(MODULE)
except Exception as exc:
    error = f"{type(exc).__name__}: {exc}"[:200]
seconds = time.perf_counter() - t0
initialized = torch.cuda.is_initialized()
device = "cuda" if DEVICE == "cuda" else "cpu"
read, write = os.pipe()
pid = os.fork()
if pid == 0:
    os.close(read)
    try:
        x = torch.ones(4, device=device) * 2
        answer = "ok" if float(x.sum()) == 8.0 else "wrong"
    except Exception as exc:
        answer = f"{type(exc).__name__}: {exc}"[:200]
    os.write(write, answer.encode())
    os._exit(0)
os.close(write)
answer = os.read(read, 4096).decode() or "no answer"
os.waitpid(pid, 0)
print(json.dumps(dict(module=MODULE, import_s=round(seconds, 2), error=error,
                      initialized=initialized, touched=touched[0] if touched else "",
                      child=answer)))
"""


def probe(module: str, device: str, nvml: bool) -> dict:
    """One module in a fresh interpreter (BASE imported first): see PROBE."""
    code = f"BASE = {BASE!r}\nMODULE = {module!r}\nDEVICE = {device!r}\n" + PROBE
    env = dict(os.environ)
    env.pop("PYTORCH_NVML_BASED_CUDA_CHECK", None)
    if nvml:
        env["PYTORCH_NVML_BASED_CUDA_CHECK"] = "1"
    try:
        out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                             timeout=LIMIT_S, env=env)
    except subprocess.TimeoutExpired:
        return dict(module=module, nvml=nvml, error=f"over {LIMIT_S} s")
    lines = [ln for ln in out.stdout.splitlines() if ln.startswith("{")]
    if not lines:
        return dict(module=module, nvml=nvml, error=(out.stderr.strip().splitlines() or
                                                     [f"exit {out.returncode}"])[-1][:200])
    return dict(json.loads(lines[-1]), nvml=nvml)


def table(rows: list[dict]) -> str:
    out = ["| module | NVML check | import s | parent touched CUDA | forked child | error |",
           "|---|---|---:|---|---|---|"]
    for r in rows:
        out.append(f"| {r['module']} | {'on' if r['nvml'] else 'off'} | "
                   f"{r.get('import_s', '')} | {r.get('touched') or ('yes' if r.get('initialized') else 'no')} | "
                   f"{r.get('child', '')} | {r.get('error', '')} |")
    return "\n".join(out)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog="python3 -m tools.fork_safe", description=__doc__.split("\n\n")[0])
    ap.add_argument("modules", nargs="*", default=list(CANDIDATES))
    ap.add_argument("--nvml", action="store_true",
                    help="also with PYTORCH_NVML_BASED_CUDA_CHECK=1")
    ap.add_argument("--json", default=None, help="write the rows here")
    args = ap.parse_args(argv)
    import torch  # noqa: PLC0415 (the parent only asks NVML-free questions: it forks nothing)

    device = "cuda" if torch.cuda.device_count() > 0 else "cpu"
    rows = []
    for module in args.modules:
        for nvml in (False, True) if args.nvml else (False,):
            rows.append(probe(module, device, nvml))
            r = rows[-1]
            print(f"{module} (NVML {'on' if nvml else 'off'}): child {r.get('child', '-')}, "
                  f"import {r.get('import_s', '-')} s {r.get('error', '')}", flush=True)
    if args.json:
        with open(args.json, "w") as f:
            json.dump(rows, f, indent=1)
    print(f"\n## importing in the forkserver: a child's CUDA afterwards ({device})\n" + table(rows))
    return 0 if all("error" not in r or not r["error"] for r in rows) else 1


if __name__ == "__main__":
    raise SystemExit(main())
