"""``perfmodel model``: forward, backward and training steps of the LM over a grid of presets,
context lengths, batch sizes, precisions, ... printed as a table in the seeds' form."""
from __future__ import annotations

import itertools

from .grid_options import EXIT, add_common, comma_list, run


def add_parser(sub) -> None:
    from ..attention import IMPLEMENTATIONS  # noqa: PLC0415 (torch: only when the parser is built)
    from ..model import PRESETS  # noqa: PLC0415

    # List defaults are strings: argparse parses them like typed ones and help shows them so.
    m = sub.add_parser("model", help="time forward / backward / training steps of the LM",
                       description="Time forward, backward and training steps of the LM for "
                       "every combination of the comma-separated lists, and print a table in "
                       "the seeds' form.\n\n" + EXIT)
    m.add_argument("--preset", type=comma_list(str), default="tiny",
                   help=f"comma list of {', '.join(PRESETS)}")
    m.add_argument("--context", type=comma_list(int), default="128,256",
                   help="context lengths, tokens")
    m.add_argument("--batch", type=comma_list(int), default="4", help="batch sizes")
    m.add_argument("--precision", type=comma_list(str), default="fp32",
                   help="fp32, bf16 (autocast)")
    m.add_argument("--compile", type=comma_list(bool), default="off",
                   help="off, on (torch.compile of the model)")
    m.add_argument("--attention", type=comma_list(str), default="sdpa",
                   help=f"comma list of {', '.join(IMPLEMENTATIONS)}")
    m.add_argument("--mode", type=comma_list(str), default="fwd,fwd_bwd,train",
                   help="fwd, bwd, fwd_bwd, train")
    m.add_argument("--split", choices=("off", "on"), default="off",
                   help="on: time bwd, fwd_bwd and train as parts of one marked train step "
                        "(its backward right behind its forward, as in training) instead of "
                        "steps of their own; fwd is its own step either way")
    m.add_argument("--tf32", type=comma_list(bool), default="off", help="TF32 matmuls: off, on")
    m.add_argument("--vocab-size", type=int, default=10_000, help="vocabulary size")
    add_common(m)
    m.set_defaults(func=main)


def cells(args):
    from ..workloads import TRAIN_PARTS, ModelCell  # noqa: PLC0415

    return [ModelCell(preset=p, context=c, batch=b, precision=pr, compile=co, attention=at,
                      mode=mo, tf32=tf, vocab_size=args.vocab_size,
                      split=args.split == "on" and mo in TRAIN_PARTS)
            for p, c, b, pr, co, at, tf, mo in itertools.product(
                args.preset, args.context, args.batch, args.precision, args.compile,
                args.attention, args.tf32, args.mode)]


def main(args) -> int:
    from ..tables import model_table  # noqa: PLC0415

    return run(args, cells(args), model_table)
