"""``perfmodel attention``: the attention implementations over a grid of head dims, sequence
lengths, dtypes, ... printed as a table in the seeds' form."""
from __future__ import annotations

import itertools

from .grid_options import EXIT, add_common, comma_list, run


def add_parser(sub) -> None:
    from ..attention import IMPLEMENTATIONS  # noqa: PLC0415 (torch: only when the parser is built)

    a = sub.add_parser("attention", help="time attention implementations over d x seq",
                       description="Time attention implementations over every combination of "
                       "the comma-separated lists (head dim, sequence length, dtype, ...) and "
                       "print a table in the seeds' form.\n\n" + EXIT)
    a.add_argument("--impl", type=comma_list(str), default="eager,sdpa",
                   help=f"comma list of {', '.join(IMPLEMENTATIONS)}")
    a.add_argument("--d", type=comma_list(int), default="16,32,64", help="head dims")
    a.add_argument("--seq", type=comma_list(int), default="256,1024", help="sequence lengths")
    a.add_argument("--dtype", type=comma_list(str), default="float32", help="float32, bfloat16")
    a.add_argument("--batch", type=comma_list(int), default="8", help="batch sizes")
    a.add_argument("--heads", type=int, default=0,
                   help="heads; 0 gives (batch, seq, d) inputs, as the seeds' tables")
    a.add_argument("--causal", type=comma_list(bool), default="on", help="on, off")
    a.add_argument("--pass", dest="passes", type=comma_list(str), default="fwd,bwd",
                   help="fwd, bwd, fwd_bwd")
    add_common(a)
    a.set_defaults(func=main)


def cells(args):
    from ..workloads import AttentionCell  # noqa: PLC0415

    return [AttentionCell(impl=i, d=d, seq=s, dtype=dt, batch=b, heads=args.heads, causal=c,
                          pass_=p)
            for i, dt, d, s, b, c, p in itertools.product(
                args.impl, args.dtype, args.d, args.seq, args.batch, args.causal, args.passes)]


def main(args) -> int:
    from ..tables import attention_table  # noqa: PLC0415

    return run(args, cells(args), attention_table)
