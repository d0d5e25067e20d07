"""``perfmodel report``: the seed tables, history and changes from asv results; its pipeline is
perfmodel/report/.

Heavy imports (pandas, asv, matplotlib, jinja2) happen only when the command runs, so the rest
of the CLI stays quick.
"""
from __future__ import annotations

import sys

from ..names import WIDE_SHARE

__all__ = ["add_parser", "main"]


def add_parser(sub) -> None:
    p = sub.add_parser("report", help="summary tables (markdown) and plots from asv results",
                       description="Render the seed tables, the history of the headline "
                       "benchmarks and the changes between two commits from asv results. "
                       "Results files are untrusted input: a file that is not a regular file or "
                       "is over 64 MiB, or a value that is malformed (hash, date, parameters, a "
                       "number out of range, unknown unit), is left out with one note naming the "
                       "file and the field, and the rest is rendered. Exit status: 0 everything "
                       "read (results of older benchmark versions are history, noted, not left "
                       "out), 1 something left out (see the notes), 2 a usage error (one line, "
                       "nothing written), 3 an internal error (a bug; please report it).")
    p.add_argument("--results", default="results", help="asv results directory (default results)")
    p.add_argument("--machine", help="asv machine name (default: the one with the newest results)")
    p.add_argument("--commit", help="commit (hash prefix or git ref) to tabulate (default: for each "
                   "class of benchmarks, the newest commit that measured at least "
                   f"{WIDE_SHARE * 100:.0f}%% of the class's cells measured at any one commit; "
                   "the history and the changes end at the newest that measured a cell of the "
                   "commit before it)")
    p.add_argument("--output", "-o", default="html/summary.md",
                   help="markdown file to write (default html/summary.md); plots go beside it")
    p.add_argument("--history", type=int, default=10, metavar="N",
                   help="commits in the history table (default 10)")
    p.add_argument("--compare", nargs=2, metavar=("A", "B"),
                   help="changes from A to B, as `asv continuous A B` (default: to --commit, "
                        "or where the history ends, from the newest commit before it that "
                        f"shares at least {WIDE_SHARE * 100:.0f}%% as many cells with it as any "
                        "earlier commit)")
    p.add_argument("--repo", default=".", help="git repository for commit subjects (default .)")
    p.add_argument("--html", action="store_true", help="also write an HTML rendering beside it")
    p.add_argument("--no-plots", dest="plots", action="store_false", help="skip the PNG plots")
    p.set_defaults(func=main)


def main(args) -> int:
    from ..errors import UserError  # noqa: PLC0415
    from ..names import EXIT_CLEAN, EXIT_INTERNAL, EXIT_LEFT_OUT  # noqa: PLC0415
    from ..untrusted import say  # noqa: PLC0415
    from ..report.page import write_report as _write  # noqa: PLC0415

    if args.history < 1:
        raise UserError(f"--history must be at least 1, got {args.history}")
    written = _write(results_dir=args.results, machine=args.machine, commit=args.commit,
                     output=args.output, history=args.history, compare=args.compare,
                     repo=args.repo, plots=args.plots, html=args.html)
    r = written.report
    say(f"wrote {written.markdown}" + (f" and {written.html}" if written.html else "")
        + f": {len(r.tables)} tables, {len(r.plots)} plots ({r.machine} at {r.commit[:8]})")
    if written.notes:
        say(*(f"note: {note}" for note in written.notes), file=sys.stderr)
    return EXIT_INTERNAL if r.internal else EXIT_LEFT_OUT if r.left_out else EXIT_CLEAN

