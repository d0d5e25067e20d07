"""Everything the GPU box has to check, in one call: tests, grids, and agreement with do_bench.

    python3 -m tools.gpu_check [--sections env,tests,attention,dobench,model] [--out DIR]

Full results go to DIR (JSON + markdown per section); a compact table is printed last.
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import torch

from perfmodel.grid import run_grid
from perfmodel.machine import environment, resolve_device
from perfmodel.measure import run_cell
from perfmodel.model import SEED_PRESETS
from perfmodel.tables import attention_table, markdown, model_table, to_json
from perfmodel.workloads import (SEED_ATTENTION_D, SEED_ATTENTION_SEQ, SEED_CONTEXTS,
                                 AttentionCell, ModelCell)
from tools.cellbench import cell_ms

SUMMARY: list[str] = []


def save(out: Path, name: str, results, table) -> str:
    text = table(results)
    (out / f"{name}.md").write_text(text + "\n")
    (out / f"{name}.json").write_text(to_json(results))
    return text


def section_tests(out: Path, args) -> None:
    cmd = [sys.executable, "-m", "pytest", "-q", "-x", "-p", "no:cacheprovider",
           "tests/test_attention.py", "tests/test_measure.py", "-k", "gpu"]
    if Path("tests/test_flash.py").exists():
        cmd.append("tests/test_flash.py")
    t0 = time.time()
    proc = subprocess.run(cmd, capture_output=True, text=True)
    (out / "tests.log").write_text(proc.stdout + proc.stderr)
    last = (proc.stdout.strip().splitlines() or ["(no output)"])[-1]
    print(proc.stdout[-3000:], proc.stderr[-2000:])
    SUMMARY.append(f"tests: rc={proc.returncode} {last} ({time.time() - t0:.0f} s)")


def section_attention(out: Path, args) -> None:
    impls = args.impls.split(",")
    cells = [AttentionCell(i, d, s, dt, pass_=p)
             for dt in ("float32", "bfloat16") for i in impls for d in SEED_ATTENTION_D
             for s in SEED_ATTENTION_SEQ for p in ("fwd", "bwd")]
    t0 = time.time()
    results = run_grid(cells, args.device, warmup=2, steps=args.steps, progress=None)
    save(out, "attention", results, attention_table)
    counts: dict[str, int] = {}
    for r in results:
        counts[r.status] = counts.get(r.status, 0) + 1
    SUMMARY.append(f"attention grid: {len(cells)} cells {counts} in {time.time() - t0:.0f} s")


def asv_style_median(cell, device, samples: int = 20) -> float:
    """What an asv time_ sample records (benchmarks/common.py): the cell opened once by the
    protocol (perfmodel.measure.open_cell), then one ``Runnable.sample()`` per sample. Median of
    the samples, in ms."""
    import statistics

    from perfmodel.measure import open_cell

    opened = open_cell(cell, device)
    if opened.runnable is None:
        return float("nan")
    try:
        return statistics.median(opened.runnable.sample() for _ in range(samples)) * 1e3
    finally:
        opened.runnable.release()
        torch.cuda.empty_cache()


def section_dobench(out: Path, args) -> None:
    """The core's medians (single steps, and asv's bursts) against triton.testing.do_bench's in
    this process, same shapes, forward and backward."""
    rows = []
    shapes = [("sdpa", 64, 4096, "bfloat16"), ("sdpa", 128, 16384, "bfloat16"),
              ("eager", 64, 4096, "float32"), ("eager", 128, 8192, "bfloat16"),
              ("sdpa", 64, 1024, "float32"), ("eager", 64, 1024, "float32"),
              ("eager", 64, 1024, "bfloat16"), ("flash", 64, 4096, "bfloat16")]
    for impl, d, seq, dt in shapes:
        for pass_ in ("fwd", "bwd"):
            cell = AttentionCell(impl, d, seq, dt, pass_=pass_)
            core = run_cell(cell, args.device, warmup=5, steps=100).stats.median * 1e3  # single steps
            burst = asv_style_median(cell, args.device)
            ms = cell_ms(cell, args.device)
            rows.append([impl, dt, d, seq, pass_, core, burst, ms, core / ms, burst / ms])
            torch.cuda.empty_cache()
    text = markdown(["impl", "dtype", "d", "seq", "pass", "core single-step median ms",
                     "asv-style median ms", "do_bench median ms", "single/do_bench",
                     "asv-style/do_bench"], rows)
    (out / "dobench.md").write_text(text + "\n")
    worst = max(abs(r[-1] - 1) for r in rows)
    SUMMARY.append("core vs do_bench:\n" + text + f"\nworst asv-style deviation {worst:.1%}")


def section_model(out: Path, args) -> None:
    cells = [ModelCell(p, c, precision=args.precision, mode=m)
             for p in SEED_PRESETS for c in SEED_CONTEXTS for m in args.modes.split(",")]
    t0 = time.time()
    results = run_grid(cells, args.device, warmup=2, steps=5, progress=None)
    text = save(out, "model", results, model_table)
    SUMMARY.append(f"model presets ({args.precision}), {time.time() - t0:.0f} s:\n" + text)


SECTIONS = {"tests": section_tests, "attention": section_attention, "dobench": section_dobench,
            "model": section_model}


def main() -> int:
    p = argparse.ArgumentParser()
    p.add_argument("--sections", default="tests,attention,dobench,model")
    p.add_argument("--out", default=os.environ.get("OUT", "gpu-results"))
    p.add_argument("--impls", default="eager,compiled,sdpa")
    p.add_argument("--steps", type=int, default=10)
    p.add_argument("--precision", default="bf16")
    p.add_argument("--modes", default="fwd,fwd_bwd,train")
    args = p.parse_args()
    args.device = resolve_device("cuda")
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    env = environment(args.device)
    (out / "env.json").write_text(json.dumps(env, indent=1))
    SUMMARY.append("env: " + ", ".join(f"{k}={v}" for k, v in env.items()))
    for name in args.sections.split(","):
        t0 = time.time()
        try:
            SECTIONS[name](out, args)
        except Exception as err:  # one section's failure must not hide the others
            SUMMARY.append(f"{name}: FAILED {type(err).__name__}: {err}")
        print(f"== {name} done in {time.time() - t0:.0f} s", flush=True)
    print("\n\n".join(SUMMARY))
    return 0


if __name__ == "__main__":
    sys.exit(main())
