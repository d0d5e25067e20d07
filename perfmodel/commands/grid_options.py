"""What the grid commands (``perfmodel model``, ``perfmodel attention``) share: comma-separated
lists, the options of how a grid is measured and written, and running the grid into a table.

Nothing here imports torch at import time: the measuring modules come in when a grid runs."""
from __future__ import annotations

import argparse
import sys

from ..errors import UserError

BOOLS = {"on": True, "off": False, "true": True, "false": False, "1": True, "0": False,
         "yes": True, "no": False}

EXIT = """\
Exit status: 0 done (a cell that runs out of memory is a row that says OOM, and the grid goes
on), 2 a user's error (one line naming the valid choices; no cell runs)."""


def comma_list(kind):
    """An argparse type: a comma-separated list of ``kind`` (str, int, or bool as on/off)."""
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


def add_common(p) -> None:
    """How a grid is measured and written, the same for model and attention."""
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


def run(args, cells, table) -> int:
    """Check every cell, run the grid, print its table (and write it to --output)."""
    from ..grid import run_grid  # noqa: PLC0415
    from ..machine import resolve_device  # noqa: PLC0415
    from ..measure import PROTOCOL_VERSION  # noqa: PLC0415
    from ..tables import to_csv, to_json, why_not_ok  # noqa: PLC0415

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
        if getattr(args, "split", "off") == "on":
            how += "; bwd, fwd_bwd and train are parts of one marked train step"
        why = why_not_ok(results)
        text += f"\n\n{why}" if why else ""
        threads = f" | {env['threads']} CPU thread(s)" if env.get("threads") else ""
        text += (f"\n\ndevice: {env.get('name')} | torch {env.get('torch')} | "
                 f"CUDA {env.get('cuda')} | triton {env.get('triton')}{threads} | {how}; "
                 f"times are per step")
    print(text)
    if args.output:
        with open(args.output, "w") as f:
            f.write(text + "\n")
    return 0
