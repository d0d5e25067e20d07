"""Where a GPU cell's spread between processes comes from: two questions, one table each.

    python3 -m tools.gpu_noise [--procs 5] [--json FILE]

1. A host-bound cell (the `small` model's forward+backward at ctx 512, bf16, sdpa): each fresh
   process times it by the protocol (host included, as asv does) and with the stream held long
   enough that the whole step is queued first (the GPU's own time), under each CPU affinity:
   none, the GPU's local CPUs (sysfs local_cpulist), one local core, and CPUs of another NUMA
   node where there is one. Settings alternate, so drift over time hits them all alike.
2. The cuDNN SDPA forward at s16384 (bf16, d128) that read 10% under do_bench: the protocol's
   hold, no hold, fixed holds of 0.05 and 0.5 ms, and do_bench, alternating, with the SM clock
   and power that nvidia-smi reports over each.
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from dataclasses import replace
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

# GPU_NOISE_DEVICE=cpu: a dry run of the script's plumbing where there is no GPU
DEVICE = os.environ.get("GPU_NOISE_DEVICE", "cuda")
MODEL = dict(preset="small", context=512, precision="bf16", attention="sdpa", mode="fwd_bwd")


def cpulist(text: str) -> list[int]:
    cpus = []
    for part in text.strip().split(","):
        if part:
            lo, _, hi = part.partition("-")
            cpus += list(range(int(lo), int(hi or lo) + 1))
    return cpus


def topology() -> dict:
    import torch  # noqa: PLC0415

    nodes = {}
    for node in sorted(Path("/sys/devices/system/node").glob("node[0-9]*")):
        nodes[int(node.name[4:])] = cpulist((node / "cpulist").read_text())
    props = torch.cuda.get_device_properties(0) if DEVICE == "cuda" else None
    bus = getattr(props, "pci_bus_id", None)
    local, numa = None, None
    if bus is not None:
        addr = f"{getattr(props, 'pci_domain_id', 0):04x}:{bus:02x}:{props.pci_device_id:02x}.0"
        dev = Path("/sys/bus/pci/devices") / addr
        if dev.exists():
            local = cpulist((dev / "local_cpulist").read_text())
            numa = int((dev / "numa_node").read_text())
    return {"cpus": os.cpu_count(), "allowed": sorted(os.sched_getaffinity(0)), "nodes": nodes,
            "gpu_numa_node": numa, "gpu_local_cpus": local}


def worker() -> None:
    """One process: the model cell by the protocol, then with a long hold (GPU time only)."""
    import torch  # noqa: PLC0415

    from perfmodel.measure import Protocol, open_cell  # noqa: PLC0415
    from perfmodel.workloads import ModelCell  # noqa: PLC0415

    dev = torch.device(DEVICE)
    opened = open_cell(ModelCell(**MODEL), dev)
    run = opened.runnable
    wall = statistics.median(run.sample() for _ in range(10))
    t0 = time.perf_counter()
    for _ in range(5):  # host time to queue a step, nothing waited for
        run.step(run.prepare())
    host = (time.perf_counter() - t0) / 5
    if dev.type == "cuda":
        torch.cuda.synchronize()
    run.protocol = replace(Protocol.for_device(dev), hold_factor=1.0, hold_min_s=0.2,
                           hold_max_s=0.2)  # the whole step queued before the GPU starts
    run.last = None
    gpu = statistics.median(run.timed_steps(1)[0] for _ in range(5))
    with open("/proc/self/stat") as f:
        cpu = int(f.read().rsplit(")", 1)[1].split()[37])
    print(json.dumps({"wall_ms": wall * 1e3, "host_ms": host * 1e3, "gpu_ms": gpu * 1e3,
                      "last_cpu": cpu}))


def host_bound(topo: dict, procs: int) -> list[dict]:
    local = topo["gpu_local_cpus"] or topo["allowed"]
    settings = {"none": None, "local": local, "one local core": local[len(local) // 2:][:1]}
    other = [c for n, cs in topo["nodes"].items() if n != topo["gpu_numa_node"] for c in cs]
    if other and topo["gpu_numa_node"] is not None:
        settings["other node"] = other
    rows = []
    for i in range(procs):
        for name, cpus in settings.items():
            cmd = [sys.executable, "-m", "tools.gpu_noise", "--worker"]
            if cpus:
                cmd = ["taskset", "-c", ",".join(map(str, cpus))] + cmd
            out = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=300)
            try:
                row = json.loads(out.stdout.strip().splitlines()[-1])
            except (IndexError, json.JSONDecodeError):
                row = {"error": (out.stderr.strip().splitlines() or ["?"])[-1][:200]}
            rows.append(dict(row, setting=name, proc=i))
            print(f"  {name:15s} {row}", flush=True)
    return rows


def clocks_during(fn):
    """fn()'s value and the mean SM clock (MHz) and power (W) nvidia-smi saw meanwhile."""
    log = Path("/tmp/gpu_noise_smi.csv")
    smi = subprocess.Popen(["nvidia-smi", "--query-gpu=clocks.sm,power.draw",
                            "--format=csv,noheader,nounits", "-lms", "50"],
                           stdout=log.open("w"), stderr=subprocess.DEVNULL)
    try:
        time.sleep(0.2)
        value = fn()
    finally:
        smi.terminate()
        smi.wait()
    vals = [tuple(float(x) for x in line.split(",")) for line in log.read_text().splitlines()
            if line.count(",") == 1 and "N/A" not in line]
    if not vals:
        return value, None, None
    return value, statistics.fmean(v[0] for v in vals), statistics.fmean(v[1] for v in vals)


def sdpa_gap() -> list[dict]:
    import torch  # noqa: PLC0415
    from triton.testing import do_bench  # noqa: PLC0415

    from perfmodel.attention import get_attention  # noqa: PLC0415
    from perfmodel.measure import Protocol, open_cell  # noqa: PLC0415
    from perfmodel.workloads import AttentionCell  # noqa: PLC0415

    dev = torch.device("cuda")
    cell = AttentionCell("sdpa", 128, 16384, "bfloat16")
    run = open_cell(cell, dev).runnable
    fn = get_attention("sdpa")
    q, k, v = (torch.randn(cell.shape, device=dev, dtype=torch.bfloat16) for _ in range(3))
    fixed = lambda s: replace(Protocol.for_device(dev), hold_factor=1.0,  # noqa: E731
                              hold_min_s=s, hold_max_s=s)
    ways = {
        "protocol (hold 1.5x launch)": Protocol.for_device(dev),
        "no hold": replace(Protocol.for_device(dev), hold_factor=0.0),
        "hold 0.05 ms": fixed(50e-6),
        "hold 0.5 ms (protocol 2)": fixed(0.5e-3),
    }
    rows = []
    for rep in range(3):
        for name, proto in ways.items():
            run.protocol, run.last = proto, None
            ms, clk, pw = clocks_during(lambda: statistics.median(run.sample()
                                                                  for _ in range(30)) * 1e3)
            rows.append({"way": name, "rep": rep, "ms": ms, "sm_mhz": clk, "watts": pw})
        ms, clk, pw = clocks_during(lambda: do_bench(lambda: fn(q, k, v, True), warmup=25,
                                                     rep=300, return_mode="median"))
        rows.append({"way": "do_bench", "rep": rep, "ms": ms, "sm_mhz": clk, "watts": pw})
    for r in rows:
        print(f"  {r}", flush=True)
    return rows


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--procs", type=int, default=5)
    p.add_argument("--json", default=None)
    p.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    p.add_argument("--skip", default="", help="comma list: host, sdpa")
    args = p.parse_args()
    if args.worker:
        worker()
        return 0
    topo = topology()
    print("topology:", topo, flush=True)
    out = {"topology": topo}
    if "host" not in args.skip:
        out["host_bound"] = host_bound(topo, args.procs)
    if "sdpa" not in args.skip:
        out["sdpa_gap"] = sdpa_gap()
    if args.json:
        Path(args.json).write_text(json.dumps(out, indent=1))
    print("\n| question | setting | n | median ms | min-max ms | host ms | GPU-only ms | SM MHz |")
    print("|---|---|---:|---:|---|---:|---:|---:|")
    for name in dict.fromkeys(r["setting"] for r in out.get("host_bound", [])):
        rs = [r for r in out["host_bound"] if r["setting"] == name and "wall_ms" in r]
        if rs:
            w = [r["wall_ms"] for r in rs]
            print(f"| small fwd_bwd | {name} | {len(rs)} | {statistics.median(w):.1f} | "
                  f"{min(w):.1f}-{max(w):.1f} | "
                  f"{statistics.median(r['host_ms'] for r in rs):.1f} | "
                  f"{statistics.median(r['gpu_ms'] for r in rs):.1f} | |")
    for name in dict.fromkeys(r["way"] for r in out.get("sdpa_gap", [])):
        rs = [r for r in out["sdpa_gap"] if r["way"] == name]
        ms = [r["ms"] for r in rs]
        clk = [r["sm_mhz"] for r in rs if r["sm_mhz"]]
        mhz = f"{statistics.fmean(clk):.0f}" if clk else ""
        print(f"| sdpa s16384 fwd | {name} | {len(rs)} | {statistics.median(ms):.4f} | "
              f"{min(ms):.4f}-{max(ms):.4f} | | | {mhz} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
