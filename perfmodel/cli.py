"""The ``perfmodel`` command (``python -m perfmodel``): the grid commands and the parser that
holds every command, with the ones of report, track and gate from their own modules."""
from __future__ import annotations

import argparse
import importlib
import itertools
import os
import sys
import traceback

from .errors import UserError
from .names import EXIT_INTERNAL, EXIT_USAGE
from .untrusted import say

BOOLS = {"on": True, "off": False, "true": True, "false": False, "1": True, "0": False,
         "yes": True, "no": False}


def _list(kind):
    def parse(text: str):
        items = [t.strip() for t in text.split(",") if t.strip()]
        if not items:
            raise argparse.ArgumentTypeError("empty list")
        if kind is int:
            try:
                return [int(t) for t in items]
            except ValueError:
                raise argparse.ArgumentTypeError(f"expected whole numbers, got {text!r}") from None
        if kind is bool:
            bad = [t for t in items if t.lower() not in BOOLS]
            if bad:
                raise argparse.ArgumentTypeError(f"expected on/off, got {bad[0]!r}")
            return [BOOLS[t.lower()] for t in items]
        return items
    return parse


DESCRIPTION = """\
Time a Transformer LM and its attention kernels, and track those times over the project's
commits with asv.

Without asv, one cell or a grid of them, printed as a table: model (forward, backward and
training steps), attention (the implementations over head dims and sequence lengths); presets
and env say what the sizes are and what a number depends on. With asv, in a clone of the
project: track (measure the last commits on this machine and publish html/), gate (did HEAD
make anything slower than main?) and report (the summary tables from asv's results).

'perfmodel COMMAND --help' gives a command's options and their defaults. Exit status: 0 done,
2 a user's error (one line saying what to do), 130 interrupted; gate, report and track say
what else theirs can be."""

GRID_EXIT = """\
Exit status: 0 done (a cell that runs out of memory is a row that says OOM, and the grid goes
on), 2 a user's error (one line naming the valid choices; no cell runs)."""


class _Formatter(argparse.HelpFormatter):
    """Each option's default shown where its help does not already say it; descriptions keep
    their paragraphs (argparse would run them into one)."""

    def _get_help_string(self, action):
        text = action.help or ""
        if action.option_strings and action.default not in (None, False, argparse.SUPPRESS) \
                and "default" not in text:
            text += " (default: %(default)s)"
        return text

    def _fill_text(self, text, width, indent):
        return "\n\n".join(super(_Formatter, self)._fill_text(part, width, indent)
                            for part in text.split("\n\n"))


class _Parser(argparse.ArgumentParser):
    def __init__(self, *args, **kwargs):
        kwargs.setdefault("formatter_class", _Formatter)
        super().__init__(*args, **kwargs)

    def error(self, message):  # one line, no usage dump; main() prints it after the prog
        err = UserError(f"{message} ({self.prog} --help lists the options)")
        err.prog = self.prog
        raise err


def _common(p):
    p.add_argument("--warmup", type=int, default=None,
                   help="the warm-up study: exactly this many untimed steps, then single steps "
                        "(default: the device's protocol, as asv measures: warm up, then samples "
                        "that are each the median step of a burst)")
    p.add_argument("--steps", type=int, default=10, help="samples per cell")
    p.add_argument("--device", default="auto", help="auto (the GPU if there is one), cpu, cuda")
    p.add_argument("--format", default="markdown", choices=["markdown", "csv", "json"],
                   help="how the table is written")
    p.add_argument("--output", "-o", help="write the table here as well as to stdout")
    p.add_argument("--peak-tflops", type=float, help="peak rate for MFU (default: the GPU's "
                                                     "datasheet dense peak for the dtype)")
    p.add_argument("--quiet", action="store_true", help="no progress bar")


def build_parser() -> argparse.ArgumentParser:
    from . import __version__  # noqa: PLC0415
    from .attention import IMPLEMENTATIONS  # noqa: PLC0415
    from .model import PRESETS  # noqa: PLC0415

    parser = _Parser(prog="perfmodel", description=DESCRIPTION)
    parser.add_argument("--version", action="version", version=f"perfmodel {__version__}",
                        help="print perfmodel's version and exit")
    sub = parser.add_subparsers(dest="command", parser_class=_Parser, metavar="COMMAND")

    # List defaults are strings: argparse parses them like typed ones and help shows them so.
    m = sub.add_parser("model", help="time forward / backward / training steps of the LM",
                       description="Time forward, backward and training steps of the LM for "
                       "every combination of the comma-separated lists, and print a table in "
                       "the seeds' form.\n\n" + GRID_EXIT)
    m.add_argument("--preset", type=_list(str), default="tiny",
                   help=f"comma list of {', '.join(PRESETS)}")
    m.add_argument("--context", type=_list(int), default="128,256",
                   help="context lengths, tokens")
    m.add_argument("--batch", type=_list(int), default="4", help="batch sizes")
    m.add_argument("--precision", type=_list(str), default="fp32", help="fp32, bf16 (autocast)")
    m.add_argument("--compile", type=_list(bool), default="off",
                   help="off, on (torch.compile of the model)")
    m.add_argument("--attention", type=_list(str), default="sdpa",
                   help=f"comma list of {', '.join(IMPLEMENTATIONS)}")
    m.add_argument("--mode", type=_list(str), default="fwd,fwd_bwd,train",
                   help="fwd, bwd, fwd_bwd, train")
    m.add_argument("--tf32", type=_list(bool), default="off", help="TF32 matmuls: off, on")
    m.add_argument("--vocab-size", type=int, default=10_000, help="vocabulary size")
    _common(m)

    a = sub.add_parser("attention", help="time attention implementations over d x seq",
                       description="Time attention implementations over every combination of "
                       "the comma-separated lists (head dim, sequence length, dtype, ...) and "
                       "print a table in the seeds' form.\n\n" + GRID_EXIT)
    a.add_argument("--impl", type=_list(str), default="eager,sdpa",
                   help=f"comma list of {', '.join(IMPLEMENTATIONS)}")
    a.add_argument("--d", type=_list(int), default="16,32,64", help="head dims")
    a.add_argument("--seq", type=_list(int), default="256,1024", help="sequence lengths")
    a.add_argument("--dtype", type=_list(str), default="float32", help="float32, bfloat16")
    a.add_argument("--batch", type=_list(int), default="8", help="batch sizes")
    a.add_argument("--heads", type=int, default=0,
                   help="heads; 0 gives (batch, seq, d) inputs, as the seeds' tables")
    a.add_argument("--causal", type=_list(bool), default="on", help="on, off")
    a.add_argument("--pass", dest="passes", type=_list(str), default="fwd,bwd",
                   help="fwd, bwd, fwd_bwd")
    _common(a)

    sub.add_parser("presets", help="list the model presets and their parameter counts",
                   description="List the model presets: sizes and exact parameter counts.")
    sub.add_parser("env", help="print what results depend on: device, driver, CUDA, torch, triton",
                   description="Print what a number depends on besides the code: device, "
                   "driver, CUDA, torch, triton, the TF32 setting and the CPU threads.")

    # Commands that live in their own modules: each has add_parser(sub), which sets ``func``.
    for module in ("report", "track", "gate"):
        importlib.import_module(f"perfmodel.commands.{module}").add_parser(sub)
    return parser


def model_cells(args):
    from .workloads import ModelCell  # noqa: PLC0415

    return [ModelCell(preset=p, context=c, batch=b, precision=pr, compile=co, attention=at,
                      mode=mo, tf32=tf, vocab_size=args.vocab_size)
            for p, c, b, pr, co, at, tf, mo in itertools.product(
                args.preset, args.context, args.batch, args.precision, args.compile,
                args.attention, args.tf32, args.mode)]


def attention_cells(args):
    from .workloads import AttentionCell  # noqa: PLC0415

    return [AttentionCell(impl=i, d=d, seq=s, dtype=dt, batch=b, heads=args.heads, causal=c,
                          pass_=p)
            for i, dt, d, s, b, c, p in itertools.product(
                args.impl, args.dtype, args.d, args.seq, args.batch, args.causal, args.passes)]


def _run(args, cells, table) -> int:
    from .grid import run_grid  # noqa: PLC0415
    from .machine import resolve_device  # noqa: PLC0415
    from .measure import PROTOCOL_VERSION  # noqa: PLC0415
    from .tables import to_csv, to_json  # noqa: PLC0415

    if (args.warmup is not None and args.warmup < 0) or args.steps < 1:
        raise UserError(f"need --warmup >= 0 and --steps >= 1, got {args.warmup} and {args.steps}")
    for cell in cells:  # every mistake is reported before any cell runs
        cell.validate()
    device = resolve_device(args.device)
    results = run_grid(cells, device, args.warmup, args.steps, args.peak_tflops,
                       progress=None if args.quiet else sys.stderr)
    text = {"markdown": table, "csv": to_csv, "json": to_json}[args.format](results)
    env = results[0].env if results else {}
    if args.format == "markdown":
        how = (f"warm-up study: {args.warmup} untimed steps, then {args.steps} single steps"
               if args.warmup is not None else
               f"protocol {PROTOCOL_VERSION}: {args.steps} samples, each the median step of a burst")
        threads = f" | {env['threads']} CPU thread(s)" if env.get("threads") else ""
        text += (f"\n\ndevice: {env.get('name')} | torch {env.get('torch')} | "
                 f"CUDA {env.get('cuda')} | triton {env.get('triton')}{threads} | {how}; "
                 f"times are per step")
    print(text)
    if args.output:
        with open(args.output, "w") as f:
            f.write(text + "\n")
    return 0


def main(argv=None) -> int:
    try:
        parser = build_parser()
        args = parser.parse_args(argv)
        if args.command is None:
            parser.print_help()
            return 0
        if args.command == "model":
            from .tables import model_table  # noqa: PLC0415
            return _run(args, model_cells(args), model_table)
        if args.command == "attention":
            from .tables import attention_table  # noqa: PLC0415
            return _run(args, attention_cells(args), attention_table)
        if args.command == "presets":
            from .model import PRESETS, count_params  # noqa: PLC0415
            from .tables import markdown  # noqa: PLC0415
            print(markdown(["preset", "d_model", "d_ff", "n_layers", "n_heads", "params"],
                           [[n, c.d_model, c.d_ff, c.n_layers, c.n_heads, count_params(c)]
                            for n, c in PRESETS.items()]))
            return 0
        if args.command == "env":
            from .machine import environment, resolve_device  # noqa: PLC0415
            for k, v in environment(resolve_device("auto")).items():
                print(f"{k}: {v}")
            return 0
        return args.func(args)
    except UserError as err:
        say(f"{getattr(err, 'prog', 'perfmodel')}: error: {err}", file=sys.stderr)
        return EXIT_USAGE
    except KeyboardInterrupt:  # track and gate say themselves what they kept
        print("perfmodel: interrupted", file=sys.stderr)
        return 130
    except Exception as err:  # noqa: BLE001 (a bug: one line and its own status, not a traceback)
        if os.environ.get("PERFMODEL_DEBUG"):
            raise
        where = traceback.extract_tb(err.__traceback__)[-1] if err.__traceback__ else None
        say(f"perfmodel: internal error: {type(err).__name__}: {str(err)[:300]}"
            + (f" (at {os.path.basename(where.filename)}:{where.lineno})" if where else "")
            + "; please report it (PERFMODEL_DEBUG=1 shows the traceback)", file=sys.stderr)
        return EXIT_INTERNAL
