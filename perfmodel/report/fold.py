"""Runs of n/a rows folded into one line under their table.

A table holds every cell of its parameter grid, run or not, so on a machine that runs part of
the grid most rows can be n/a (15 of 18 in the CPU's warm-up study). Such rows are taken out and
one line says which they are and why they are n/a.
"""
from __future__ import annotations

from ..names import NA
from .cells import Table

WHY = "not run here at this commit (outside the machine's tier, or not in that version of the suite)"
STALE = "or timed by an older version of its benchmark (see the notes)"


def fold(t: Table, stale: bool = False) -> Table:
    """``t`` without its all-n/a rows (measured columns n/a), and ``t.folded`` saying which.
    ``stale``: some results of this commit were left out as an older benchmark version (load.py),
    which is the other reason a cell that ran can be n/a."""
    if t.keys is None or not t.rows:
        return t
    start = t.measured_from if t.measured_from is not None else max(t.keys) + 1
    keep, gone = [], []
    for row in t.rows:
        (gone if all(c == NA for c in row[start:]) else keep).append(row)
    if not gone:
        return t
    t.rows = keep
    count = (f"all {len(gone)} rows" if not keep and len(gone) > 1 else
             f"{len(gone)} row{'s' if len(gone) > 1 else ''}")
    t.folded = (f"n/a, {count} not shown: {describe(t, gone)}; {WHY}"
                f"{', ' + STALE if stale else ''}.")
    return t


def describe(t: Table, rows: list[list[str]]) -> str:
    """The folded rows by their key columns: the first key's values grouped by the second's (the
    same second-key values share a group); further keys listed once."""
    names = [t.columns[k] for k in t.keys]
    first = list(dict.fromkeys(r[t.keys[0]] for r in rows))
    if len(t.keys) == 1:
        return f"{names[0]} {', '.join(first)}"
    seconds = {v: tuple(dict.fromkeys(r[t.keys[1]] for r in rows if r[t.keys[0]] == v))
               for v in first}
    groups: dict[tuple, list[str]] = {}
    for v in first:
        groups.setdefault(seconds[v], []).append(v)
    text = "; ".join(f"{names[0]} {', '.join(vs)} at {names[1]} {', '.join(ss)}"
                     for ss, vs in groups.items())
    for k, name in zip(t.keys[2:], names[2:]):
        text += f", each at {name} {', '.join(dict.fromkeys(r[k] for r in rows))}"
    return text
