"""One cell, three timers: asv's recorded median, the CLI's (perfmodel.measure.run_cell) and
triton.testing.do_bench's, side by side on the GPU.

    python3 -m tools.agreement --results DIR --machine NAME --commit HASH [--out FILE]

The cells are the merge gate's (tools/gate_check.py); asv's values are read from its results
for that commit (e.g. the gate's base commit), the other two are measured here, now.
"""
from __future__ import annotations

import argparse
import itertools
import statistics
import sys
from pathlib import Path

import torch

from perfmodel.measure import run_cell
from perfmodel.tables import markdown
from perfmodel.workloads import AttentionCell, ModelCell
from tools.cellbench import cell_ms
from tools.gate_check import GATE_CELLS, asv_name

PASSES = {"time_forward": "fwd", "time_backward": "bwd", "time_forward_backward": "fwd_bwd"}


def cell_of(bench: str, params: tuple):
    method = bench.rsplit(".", 1)[-1]
    if ".Attention." in bench:
        impl, dtype, d, seq = params
        return AttentionCell(impl, d, seq, dtype, pass_=PASSES[method])
    preset, context, precision, variant = params
    return ModelCell(preset, context, precision=precision, attention=variant, mode=PASSES[method])


def asv_values(results: str, machine: str, commit: str) -> dict:
    from asv.results import iter_results_for_machine_and_hash  # noqa: PLC0415
    from asv.util import load_json  # noqa: PLC0415

    benchmarks = load_json(str(Path(results) / "benchmarks.json"))
    res = next(iter_results_for_machine_and_hash(results, machine, commit))
    out = {}
    for bench, params, _ in GATE_CELLS["gpu"]:
        grid = benchmarks[bench]["params"]
        values = res.get_result_value(bench, grid)
        index = list(itertools.product(*grid)).index(tuple(repr(p) for p in params))
        out[asv_name(bench, params)] = values[index] if values else None
    return out


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--results", required=True)
    p.add_argument("--machine", required=True)
    p.add_argument("--commit", required=True)
    p.add_argument("--out", default=None)
    args = p.parse_args()
    device = torch.device("cuda")
    recorded = asv_values(args.results, args.machine, args.commit)
    rows = []
    for bench, params, _ in GATE_CELLS["gpu"]:
        cell = cell_of(bench, params)
        cli = run_cell(cell, device).stats.median * 1e3
        bench_ms = statistics.median(cell_ms(cell, device) for _ in range(3))
        got = recorded.get(asv_name(bench, params))
        asv_ms = got * 1e3 if got == got and got is not None else float("nan")
        rows.append([asv_name(bench, params).split(".", 1)[1], asv_ms, cli, bench_ms,
                     asv_ms / bench_ms, cli / bench_ms])
    text = markdown(["cell", "asv median ms", "CLI median ms", "do_bench median ms",
                     "asv/do_bench", "CLI/do_bench"], rows)
    worst = max(max(abs(r[4] - 1), abs(r[5] - 1)) for r in rows if r[4] == r[4])
    text += f"\n\nworst deviation from do_bench: {worst:.1%}"
    if args.out:
        Path(args.out).write_text(text + "\n")
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
