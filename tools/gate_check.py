"""Show what the merge gate does: repeated `asv continuous` on an unchanged and a planted commit.

    python3 -m tools.gate_check --tier gpu --runs 3 --factor 1.05 --target 1.10 --out DIR
    python3 -m tools.gate_check --tier cpu --runs 3 --factor 1.2 --target 1.30 --out DIR

In a throwaway clone of HEAD it commits an empty change (noop), then a planted slowdown of a few
cells (planted): an extra call of the same attention over the first fraction f of the sequence,
for those cells' shapes only. f is calibrated per cell in this run so that an independent timer
(triton.testing.do_bench on a GPU; perfmodel's own samples on the CPU) puts the planted/base
ratio within --tolerance of --target, and checked again after the asv runs. Then, alternating,
`asv continuous main~2 main~1` (noop vs base: must flag nothing, exit 0) and
`asv continuous main~1 main` (planted vs noop: must flag every planted cell and nothing else,
exit 1), --runs times each, on the tier's gate cells. A compact table is printed last; every
asv log and a JSON summary go to --out.

Needs asv importable (on an offline GPU box: scripts/gpu_asv.sh's set-up, or PYTHONPATH to the
wheels it installs) and a git clone of the project.
"""
from __future__ import annotations

import argparse
import json
import os
import re
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

# (benchmark, params as asv prints them, planted?): attention cells are (impl, dtype, d, seq)
GATE_CELLS = {
    "gpu": [  # a planted extra call on a ~0.1 ms cell costs 13% by itself: planted cells are longer
        ("bench_attention.Attention.time_forward", ("sdpa", "bfloat16", 128, 16384), True),
        ("bench_attention.Attention.time_forward", ("sdpa", "float32", 128, 4096), True),
        ("bench_attention.Attention.time_forward", ("eager", "bfloat16", 128, 4096), True),
        ("bench_attention.Attention.time_forward", ("eager", "float32", 128, 4096), True),
        ("bench_attention.Attention.time_forward", ("sdpa", "bfloat16", 128, 4096), False),
        ("bench_attention.Attention.time_forward", ("eager", "bfloat16", 128, 16384), False),
        ("bench_attention.Attention.time_backward", ("sdpa", "bfloat16", 128, 4096), False),
        ("bench_attention.Attention.time_backward", ("eager", "bfloat16", 128, 4096), False),
        ("bench_model.Model.time_forward_backward", ("small", 1024, "fp32", "sdpa"), False),
    ],
    "cpu": [
        ("bench_attention.Attention.time_forward", ("eager", "float32", 64, 1024), True),
    ],
}

# How the plant adds work. GPU: the same attention over the first fraction f of the sequence (a
# small square problem: calibrated with do_bench, 1.10-1.13 in every run), called before the
# cell's own attention so that it adds time and no memory: called after it (until 2026-12-04),
# its output sat beside the cell's own and raised sdpa's forward peak by about f/4, which the
# gate rightly confirmed (1.06 and 1.08 on the H200), beside the planted times. CPU: the first f of
# the queries against every key, so the extra work streams the same full-length score rows as
# the cell itself; a small square extra call fits in cache and its cost relative to the cell
# moved between 1.14 and 1.39 within half an hour as the shared host's memory bandwidth moved.
ROWS = {"cpu": True, "cuda": False}

PLANT_CODE = '''

# planted by tools/gate_check.py: the same attention once more over the first fraction of the
# sequence (_ROWS: the first fraction of the queries against every key), for these
# (impl, dtype, d, seq) only
_PLANT = {table!r}
_ROWS = {rows!r}


def _planted(name, fn):
    def attention(q, k, v, is_causal=True):
        f = _PLANT.get((name, str(q.dtype).replace("torch.", ""), q.shape[-1], q.shape[-2]))
        if f and q.dim() == 3:
            # before the cell's own call, its result dropped at once: time only, no memory
            n = max(1, int(q.shape[-2] * f))
            m = q.shape[-2] if _ROWS else n
            fn(q[:, :n].detach(), k[:, :m].detach(), v[:, :m].detach(), is_causal)
        return fn(q, k, v, is_causal)
    return attention


IMPLEMENTATIONS["eager"] = _planted("eager", eager_attention)
IMPLEMENTATIONS["sdpa"] = _planted("sdpa", sdpa_attention)
'''

def asv_name(bench: str, params: tuple) -> str:
    return f"{bench}({', '.join(repr(p) for p in params)})"


def sh(cmd, cwd, env=None, timeout=900, check=True) -> subprocess.CompletedProcess:
    proc = subprocess.run(cmd, cwd=cwd, env=env, text=True, capture_output=True, timeout=timeout)
    if check and proc.returncode != 0:
        raise SystemExit(f"{' '.join(map(str, cmd))} exited {proc.returncode}:\n"
                         f"{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}")
    return proc


# ----------------------------------------------------------------- calibration of the plant

CPU_TIMER = """
import importlib, sys, torch
attention = importlib.import_module("perfmodel.attention")  # the module (the package exports a function of that name)
from perfmodel.measure import run_cell
from perfmodel.workloads import AttentionCell
impl, dtype, d, seq, f, plant = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4]), float(sys.argv[5]), sys.argv[6]
if f:  # the very code the planted commit adds, into this process's perfmodel.attention
    exec(plant.format(table={(impl, dtype, d, seq): f}, rows=sys.argv[7] == "rows"), attention.__dict__)
print(run_cell(AttentionCell(impl, d, seq, dtype), torch.device("cpu"), steps=8).stats.median)
"""


# base/planted process pairs per CPU calibration point: a CPU process's speed differs from the
# next one's by up to ~10% on a shared 2-core host, so three pairs left f 30% off target
CPU_PAIRS = 7


def _ratio(impl, dtype, d, seq, f, device) -> float:
    """planted/base time of the cell's forward, by a timer independent of asv: do_bench in this
    process on a GPU; on the CPU the cell itself measured by perfmodel (run_cell, the protocol
    asv's samples take) in fresh processes, with and without the planted code, in turn (a CPU
    cell's speed moves with its process and with the shared host's state)."""
    n = max(1, int(seq * f))
    if device.type == "cpu":
        def proc(frac):
            out = subprocess.run([sys.executable, "-c", CPU_TIMER, impl, dtype, str(d), str(seq),
                                  str(frac), PLANT_CODE, "rows" if ROWS["cpu"] else "square"],
                                 cwd=ROOT, capture_output=True,
                                 text=True, timeout=300)
            return float(out.stdout.strip().splitlines()[-1])
        base, planted = [], []
        for _ in range(CPU_PAIRS):
            base.append(proc(0))
            planted.append(proc(f))
        return statistics.median(planted) / statistics.median(base)

    from tools.cellbench import attention_inputs, fn_ms  # noqa: PLC0415 (GPU boxes only)

    fn, q, k, v = attention_inputs(impl, dtype, d, seq, device)

    def base():
        fn(q, k, v, True)

    def planted():
        fn(q, k, v, True)
        fn(q[:, :n], k[:, :n], v[:, :n], True)

    ratios = []
    for _ in range(3):  # alternate, so that drift hits both
        ratios.append(fn_ms(planted, warmup=25, rep=150) / fn_ms(base, warmup=25, rep=150))
    return statistics.median(ratios)


def calibrate(cells, target, tol, device, log) -> dict:
    table = {}
    for bench, (impl, dtype, d, seq), planted in cells:
        if not planted:
            continue
        # the extra work grows as f (rows) or f^2 (a square causal problem)
        power = 1.0 if ROWS[device.type] else 2.0
        f = (target - 1) ** (1 / power)
        best = None
        for attempt in range(5):
            r = _ratio(impl, dtype, d, seq, f, device)
            log(f"calibrate {impl} {dtype} d{d} s{seq}: f={f:.3f} ratio={r:.3f}")
            if best is None or abs(r - target) < abs(best[1] - target):
                best = (f, r)
            if abs(r - target) <= tol:
                break
            f = min(0.95, max(0.02, f * ((target - 1) / max(r - 1, 1e-3)) ** (1 / power)))
        f, r = best
        if abs(r - target) > tol:
            log(f"WARNING: {impl} {dtype} d{d} s{seq}: no f within {tol} of {target}; "
                f"planting f={f:.3f} (ratio {r:.3f})")
        table[(impl, dtype, d, seq)] = round(f, 4)
    return table


# ----------------------------------------------------------------- the asv runs

# perfmodel gate's table: | cell | screen | confirm, pooled | confirm, paired rounds | verdict |
GATE_ROW = re.compile(r"^\| (\S+\(.*\)) \| (.*) \| (.*) \| (.*) \| (.*) \|$")
MARKS = {"regressed": "+", "improved": "-", "new failure": "!", "fixed": "*"}


def gate_flagged(stdout: str) -> dict[str, str]:
    """perfmodel gate's verdict: the cells it confirmed ('+' slower, '-' faster, '!' failed)."""
    out = {}
    for line in stdout.splitlines():
        m = GATE_ROW.match(line.strip())
        if m and m.group(5).strip() in MARKS:
            out[m.group(1)] = MARKS[m.group(5).strip()]
    return out


def gate_ratios(stdout: str) -> dict[str, str]:
    """'screen>pooled>paired' ratios of the cells perfmodel gate measured again."""
    return {m.group(1): f"{m.group(2)}>{m.group(3).rstrip('+-x!')}>{m.group(4)}"
            for line in stdout.splitlines() if (m := GATE_ROW.match(line.strip()))}


def ratios(stdout: str, names) -> dict[str, str]:
    """The ratio column of asv's table for each gate cell (also the unflagged ones)."""
    out = {}
    for line in stdout.splitlines():
        for name in names:
            if line.rstrip(" |").endswith(name):
                cols = [c.strip() for c in line.strip().strip("|").split("|")]
                out[name] = cols[-2] if len(cols) >= 2 else "?"
    return out


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--tier", choices=sorted(GATE_CELLS), required=True)
    p.add_argument("--runs", type=int, default=3)
    p.add_argument("--factor", type=float, default=None)
    p.add_argument("--target", type=float, default=None, help="planted/base ratio to plant")
    p.add_argument("--tolerance", type=float, default=None,
                   help="calibration tolerance (default: 0.02 on a GPU, 0.05 on the CPU)")
    p.add_argument("--bench", default=None,
                   help="asv -b regex (default: the tier's gate cells for plain asv, the gate's "
                        "own tier for --gate perfmodel); every benchmark: '.'")
    p.add_argument("--out", default=os.environ.get("OUT", "gate-out"))
    p.add_argument("--work", default="/tmp/perfmodel-gate")
    p.add_argument("--machine", default=None)
    p.add_argument("--kinds", default="noop,planted", help="which runs: noop, planted or both")
    p.add_argument("--gate", choices=("asv", "perfmodel"), default="asv",
                   help="what each run is: plain `asv continuous` (default) or `perfmodel gate` "
                        "(asv continuous, then the moved cells confirmed with interleaved rounds)")
    p.add_argument("--asv-args", default="",
                   help="more arguments for asv continuous, as the README's gate command has them "
                        "(e.g. '-a rounds=4')")
    p.add_argument("--print-bench", action="store_true",
                   help="print the tier's gate cells as an asv -b regex and stop")
    args = p.parse_args()
    if args.print_bench:
        print("|".join(re.escape(asv_name(b, prm)) for b, prm, _ in GATE_CELLS[args.tier]))
        return 0
    if args.factor is None or args.target is None:
        p.error("--factor and --target are required")

    import torch  # noqa: PLC0415

    from perfmodel.commands.gate import flagged as asv_flagged  # noqa: PLC0415 (the gate's reading)
    from perfmodel.asvchild import asv_env  # noqa: PLC0415
    from perfmodel.identity import machine_name, register_machine, stack  # noqa: PLC0415

    device = torch.device("cuda" if args.tier == "gpu" else "cpu")
    tol = args.tolerance if args.tolerance is not None else (0.02 if args.tier == "gpu" else 0.05)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    lines: list[str] = []

    def log(msg):
        print(msg, flush=True)
        lines.append(msg)

    env = asv_env()
    if args.tier == "cpu":
        env["PERFMODEL_ASV_DEVICE"] = "cpu"
    cells = GATE_CELLS[args.tier]
    from benchmarks import tiers  # noqa: PLC0415 (the gate's cells are its tier's)

    gate_tier = tiers.GATE_TIER["cuda" if args.tier == "gpu" else "cpu"]
    outside = [asv_name(b, prm) for b, prm, _ in cells
               if tiers.why_not(gate_tier, b.split(".")[1], dict(zip(tiers.param_names(
                   b.split(".")[1]), prm))) is not None]
    if outside:
        p.error(f"cells outside the {gate_tier} tier (benchmarks/tiers.py): {outside}")
    names = [asv_name(b, prm) for b, prm, _ in cells]
    planted_names = {asv_name(b, prm) for b, prm, planted in cells if planted}
    bench = args.bench or "|".join(re.escape(n) for n in names)

    t0 = time.time()
    table = calibrate(cells, args.target, tol, device, log)
    log(f"plant: {table} ({time.time() - t0:.0f} s)")

    work = Path(args.work)
    sh(["rm", "-rf", str(work)], ROOT)
    sh(["git", "clone", "-q", str(ROOT), str(work)], ROOT)
    if (ROOT / ".whl").is_dir():
        sh(["cp", "-r", str(ROOT / ".whl"), str(work)], ROOT)
    git = ["git", "-c", "user.name=gate", "-c", "user.email=gate@localhost"]
    sh(git + ["commit", "-q", "--allow-empty", "-m", "noop"], work)
    attention = work / "perfmodel" / "attention.py"
    attention.write_text(attention.read_text() + PLANT_CODE.format(table=table, rows=ROWS[device.type]))
    sh(git + ["commit", "-q", "-am", "planted slowdown"], work)

    name = args.machine or machine_name(stack())
    register_machine(name, stack())
    runs = []
    for i in range(1, args.runs + 1):
        for kind, base, head in (("noop", "main~2", "main~1"), ("planted", "main~1", "main")):
            if kind not in args.kinds.split(","):
                continue
            t1 = time.time()
            if args.gate == "perfmodel":  # the gate's own tier unless --bench says otherwise
                cmd = [sys.executable, "-m", "perfmodel", "gate", base, head,
                       *(["--bench", args.bench] if args.bench else []),
                       "--machine", name, "--factor", str(args.factor),
                       "--log", str((out / f"asv-{kind}-{i}.log").resolve())]
            else:
                cmd = [sys.executable, "-m", "asv", "continuous", base, head, "-b", bench,
                       "--machine", name, "--factor", str(args.factor), "--show-stderr",
                       "--no-only-changed"] + args.asv_args.split()
            proc = sh(cmd, work, env, timeout=3600, check=False)
            name_log = f"{'gate' if args.gate == 'perfmodel' else 'asv'}-{kind}-{i}.log"
            (out / name_log).write_text(proc.stdout + proc.stderr)
            flags = (gate_flagged(proc.stdout) if args.gate == "perfmodel"
                     else asv_flagged(proc.stdout))
            expect = set() if kind == "noop" else planted_names
            ok = (set(flags) == expect and all(m == "+" for m in flags.values())
                  and proc.returncode == (0 if kind == "noop" else 1))
            runs.append({"run": i, "kind": kind, "exit": proc.returncode, "flagged": flags,
                         "ratios": (gate_ratios(proc.stdout) if args.gate == "perfmodel"
                                    else ratios(proc.stdout, names)), "ok": ok,
                         "seconds": round(time.time() - t1)})
            log(f"{kind} run {i}: exit {proc.returncode}, flagged {sorted(flags)}, "
                f"{'as expected' if ok else 'NOT as expected'} ({time.time() - t1:.0f} s)")
    check = {f"{k[0]} {k[1]} d{k[2]} s{k[3]}": round(_ratio(*k, f, device), 3)
             for k, f in table.items()}
    log(f"plant re-checked after the runs (independent timer, planted/base): {check}")
    summary = {"tier": args.tier, "machine": name, "factor": args.factor, "target": args.target,
               "gate": args.gate, "asv_args": args.asv_args,
               "plant": {" ".join(map(str, k)): f for k, f in table.items()},
               "plant_check": check, "runs": runs, "seconds": round(time.time() - t0)}
    (out / "gate.json").write_text(json.dumps(summary, indent=1))

    # compact table last: one row per gate cell, its asv ratio in each run
    header = ["cell", "planted"] + [f"{r['kind'][0]}{r['run']}" for r in runs]
    print("\n| " + " | ".join(header) + " |\n|" + "---|" * len(header))
    for n in names:
        marks = []
        for r in runs:
            mark = r["flagged"].get(n, "")
            marks.append(f"{r['ratios'].get(n, '?')}{mark}")
        print(f"| {n.split('.', 1)[1]} | {'yes' if n in planted_names else ''} | "
              + " | ".join(marks) + " |")
    print("| exit | | " + " | ".join(str(r["exit"]) for r in runs) + " |")
    verdict = all(r["ok"] for r in runs)
    print(f"\ngate {'behaves' if verdict else 'MISBEHAVES'}: factor {args.factor} {args.gate} {args.asv_args}, plant "
          f"{check}, {len(runs)} runs in {time.time() - t0:.0f} s")
    return 0 if verdict else 1


if __name__ == "__main__":
    sys.exit(main())
