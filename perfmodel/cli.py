"""The ``perfmodel`` command (``python -m perfmodel``): the top-level parser, and the dispatch
to the command modules (perfmodel/commands/, one per verb) with one way of reporting a user's
error, an interrupt or a bug for all of them."""
from __future__ import annotations

import argparse
import importlib
import os
import sys
import traceback

from .errors import UserError
from .names import EXIT_INTERNAL, EXIT_USAGE
from .untrusted import say

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

# The verbs, in the order of --help; perfmodel/commands/<name>.py each.
COMMANDS = ("model", "attention", "presets", "env", "report", "track", "gate")


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


def build_parser() -> argparse.ArgumentParser:
    from . import __version__  # noqa: PLC0415

    parser = _Parser(prog="perfmodel", description=DESCRIPTION)
    parser.add_argument("--version", action="version", version=f"perfmodel {__version__}",
                        help="print perfmodel's version and exit")
    sub = parser.add_subparsers(dest="command", parser_class=_Parser, metavar="COMMAND")
    for name in COMMANDS:  # each module's add_parser(sub) adds its command and sets ``func``
        importlib.import_module(f"perfmodel.commands.{name}").add_parser(sub)
    return parser


def main(argv=None) -> int:
    try:
        parser = build_parser()
        args = parser.parse_args(argv)
        if args.command is None:
            parser.print_help()
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
