"""GPU fidelity check: asv's recorded medians vs triton.testing.do_bench for the same cells.

    python scripts/asv_fidelity.py MACHINE COMMIT [IMPL:DTYPE:D:SEQ ...]

Reads asv's result for the commit with asv's results API and times the same forward cells with
do_bench in this process (perfmodel's workload, do_bench's own L2 flush). Prints the ratio.
"""
import sys

import torch
import triton.testing
from asv.results import iter_results_for_machine_and_hash
from asv.util import load_json

from perfmodel.workloads import AttentionCell

CELLS = ["sdpa:bfloat16:64:4096", "eager:float32:64:1024", "flash:bfloat16:64:4096",
         "compiled:float32:64:4096", "sdpa:float32:64:1024"]


def main(machine, commit, *cells):
    conf = "results"
    name = "bench_attention.Attention.time_forward"
    params = load_json("results/benchmarks.json")[name]["params"]
    res = next(iter_results_for_machine_and_hash(conf, machine, commit[:8]))
    values = res.get_result_value(name, params)
    import itertools
    index = {tuple(p): i for i, p in enumerate(itertools.product(*params))}
    for spec in cells or CELLS:
        impl, dtype, d, seq = spec.split(":")
        key = (repr(impl), repr(dtype), d, seq)
        asv_s = values[index[key]] if key in index else None
        cell = AttentionCell(impl=impl, dtype=dtype, d=int(d), seq=int(seq))
        run = cell.build(torch.device("cuda"))
        ms = triton.testing.do_bench(lambda: run.step(None), warmup=25, rep=200,
                                     return_mode="median")
        ratio = (asv_s * 1e3 / ms) if asv_s == asv_s and asv_s else float("nan")
        print(f"{spec:28s} asv median {asv_s * 1e3 if asv_s else float('nan'):9.4f} ms   "
              f"do_bench {ms:9.4f} ms   asv/do_bench {ratio:6.3f}")


if __name__ == "__main__":
    main(*sys.argv[1:])
