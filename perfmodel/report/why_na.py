"""Why a cell is n/a: the summary's last table, each class's n/a time cells grouped by reason.

n/a is one mark for several things (legend.txt). A reader who meets it in a table finds here
which of them it is, for that cell: the machine's tier leaves the cell out (the reason is the
tier's own, benchmarks/tiers.py ``why_not_on``, from the clone the report runs in, as the change
table's gate settings are), or the tier holds it and this commit has no time for it. asv writes
NaN for every parameter cell a run did not time, whether the run did not select it (a part of
the tier still to run) or the suite skipped it (asv's log of the run says why), and drops a time
taken by an older version of its benchmark (the notes name it). On a GPU, whose full tier runs
in chunks each saved when it ends (``gpu_chunk``), the first is told from the others: a chunk
with no time of its class at the commit never ran there (or was cut short). A cell the suite ran
and recorded as out of memory or failed (its track_status code) says that instead: the tables
show the status, and this table does not send the reader to the run's log for it.

The grid is benchmarks.json's (every parameter cell of every ``time_`` method of the tables'
classes), so a whole class this commit has no result for still gets its line.
"""
from __future__ import annotations

import itertools

import pandas as pd

from ..names import FAILED, NA, OK, OOM, STATUS_OF_CODE
from .cells import KINDS, Table, classify, kind_problem
from .load import literal

# asv writes NaN for every parameter cell of a benchmark that a run did not time: one it did not
# select (a part of the tier) and one the suite skipped look the same in the results
IN_TIER = ("in this machine's tier, no time at this commit: not measured here yet (a part of the "
           "tier still to run, or a run cut short), skipped by the suite (its run's log, "
           ".asv/track.log for perfmodel track, says why: e.g. a commit without the feature), "
           "or timed by an older version of its benchmark (the notes name it)")
# the full GPU tier runs in chunks (benchmarks/tiers.py gpu_plan), each saved when it ends: a chunk
# without one time at the commit never ran (or was cut short), and a NaN in a chunk that ran is
# the suite's skip or an older version
CHUNK_NEVER = ("in this machine's tier, in a chunk of it ({chunk}) with no time at this commit: "
               "not run here yet, or cut short (perfmodel track --tier gpu measures that chunk "
               "next)")
CHUNK_RAN = ("in this machine's tier, in a chunk of it that ran at this commit: skipped by the "
             "suite (its run's log, .asv/track.log for perfmodel track, says why), or timed by an "
             "older version of its benchmark (the notes name it)")
# the suite ran the cell and recorded why it has no time (its track_status code): the tables show
# the status beside the n/a
STATUS_REASONS = {
    OOM: "out of memory on this machine: the suite ran the cell and it did not fit (the tables "
         "show OOM)",
    FAILED: "failed on this machine: the suite ran the cell and it raised (the tables show "
            "failed; its run's log, .asv/track.log for perfmodel track, says why)"}
WHICH_MAX = 400  # characters of the cells' description before it is cut
GRID_MAX = 20_000  # cells of one class's grid (the suite's largest, Model, has 640)


def why_na(norm: pd.DataFrame, benchmarks: dict, commits: dict, device: str,
           tiers) -> list[Table]:
    """The table: class, reason, how many grid cells, which (their parameters), each class at
    its tables' commit (kind -> commit). ``tiers`` is the clone's benchmarks/tiers.py (None: the
    tier's reasons are not known, only the other two)."""
    reasons: dict[tuple[str, str], list[tuple]] = {}
    grids: dict[str, dict] = {}
    for cls, grid, methods in _grids(benchmarks):
        grids[cls] = grid
        seen = _statuses(norm, cls.lower(), commits.get(cls.lower(), ""), list(grid))
        codes = _codes(norm, cls.lower(), commits.get(cls.lower(), ""), list(grid))
        cells = list(itertools.product(*grid.values()))
        chunk = {cell: _chunk(tiers, device, cls, dict(zip(grid, cell))) for cell in cells}
        ran = {chunk.get(cell) for (_, cell), s in seen.items() if s is not None and s != NA}
        for cell in cells:
            statuses = [seen.get((m, cell)) for m in methods]
            if all(s is not None and s != NA for s in statuses):
                continue  # every time of the cell ran (OK, OOM or failed: the tables say which)
            why = _tier_reason(tiers, device, cls, dict(zip(grid, cell)))
            told = {codes.get((_measure(m), cell)) for m, s in zip(methods, statuses)
                    if s is None or s == NA}
            why = why or next((STATUS_REASONS[c] for c in STATUS_REASONS if c in told), None)
            if why is None and chunk[cell] is not None:
                why = CHUNK_RAN if chunk[cell] in ran else CHUNK_NEVER.format(chunk=chunk[cell])
            reasons.setdefault((cls, why or IN_TIER), []).append(cell)
    rows = []
    for (cls, why), cells in reasons.items():
        which = which_cells(set(cells), list(grids[cls]), list(grids[cls].values()))
        if len(which) > WHICH_MAX:
            which = which[:WHICH_MAX].rsplit(" ", 1)[0] + " …"
        rows.append([cls, why, str(len(cells)), which])
    if not rows:
        return []
    return [Table(
        "why_na", "Why cells are n/a at the tables' commits",
        ["class", "why n/a", "grid cells", "which"], rows,
        caption="Every grid cell of the tables' classes with a time that is n/a here, grouped by "
                "the reason (a cell counts once, whichever of its times is n/a).",
        left=4, section="Why n/a")]


def which_cells(cells: set, names: list[str], values: list[list]) -> str:
    """An exact, short description of a set of grid cells (tuples over ``names``, each taking
    ``values``): "every cell", or by parameter, values that share what follows them grouped and a
    parameter that every value of takes alike left out ("preset medium, xl (variant compiled)"),
    or "every cell but ..." when the cells not in the set are said more shortly."""
    full = set(itertools.product(*values))
    if cells >= full:
        return "every cell"
    said = _nested(cells, names, values)
    other = _nested(full - cells, names, values)
    return f"every cell but {other}" if len(other) + 15 < len(said) else said


def _nested(cells: set, names: list[str], values: list[list]) -> str:
    if cells >= set(itertools.product(*values)):
        return ""  # every cell of what is left: nothing to say
    if len(names) == 1:
        return f"{names[0]} " + ", ".join(str(v) for v in values[0] if (v,) in cells)
    subs: dict[str, list] = {}  # what follows -> the values of this parameter it follows
    for v in values[0]:
        rest = {c[1:] for c in cells if c[0] == v}
        if rest:
            subs.setdefault(_nested(rest, names[1:], values[1:]), []).append(v)
    if len(subs) == 1 and len(next(iter(subs.values()))) == len(values[0]):
        return next(iter(subs))  # every value of this parameter alike: it is not said
    return "; ".join(f"{names[0]} {', '.join(map(str, vs))}" + (f" ({sub})" if sub else "")
                     for sub, vs in subs.items())


def _grids(benchmarks: dict):
    """(class, {parameter: values}, time_ methods) per class of the tables, from
    benchmarks.json: the entries load.py kept and the tables can read (cells.normalize's test),
    of a grid no larger than a suite's (GRID_MAX)."""
    out: dict[str, tuple[dict, list[str]]] = {}
    for name, bench in benchmarks.items():
        parts = name.split(".")
        if bench is None or len(parts) < 3 or not parts[-1].startswith("time_"):
            continue
        cls = parts[-2]
        if (cls.lower() not in KINDS or bench["cells"] > GRID_MAX
                or kind_problem(cls.lower(), bench)):
            continue
        grid = {n: [literal(v) for v in vals]
                for n, vals in zip(bench["param_names"], bench["params"])}
        if cls in out and list(out[cls][0]) != list(grid):
            continue  # a method with other parameters is not a cell of the class's grid
        out.setdefault(cls, (grid, []))[1].append(name)
    return [(c, g, ms) for c, (g, ms) in out.items()]


def _measure(benchmark: str) -> str | None:
    what = classify(benchmark.rpartition(".")[2])
    return what[0] if what else None


def _codes(norm: pd.DataFrame, kind: str, commit: str, keys: list[str]) -> dict:
    """(measure, cell) -> the status the suite recorded for it at the commit (its track_status_*
    code: OK, OOM, failed), where it recorded one."""
    if norm.empty or "kind" not in norm:
        return {}
    part = norm[(norm["kind"] == kind) & (norm["commit"] == commit) & (norm["role"] == "status")
                & (norm["status"] == OK)]
    return {(r["measure"], tuple(r["params"].get(k) for k in keys)):
            STATUS_OF_CODE.get(float(r["value"])) for r in part.to_dict("records")}


def _statuses(norm: pd.DataFrame, kind: str, commit: str, keys: list[str]) -> dict:
    """(benchmark, cell) -> the status asv recorded at the commit, for the class's time_ rows."""
    if norm.empty or "kind" not in norm:
        return {}
    part = norm[(norm["kind"] == kind) & (norm["commit"] == commit) & (norm["role"] == "value")
                & norm["method"].str.startswith("time_")]
    return {(r["benchmark"], tuple(r["params"].get(k) for k in keys)): r["status"]
            for r in part.to_dict("records")}


def _chunk(tiers, device: str, cls: str, params: dict) -> str | None:
    """The chunk of the full GPU run that measures the cell (None: not a GPU's, or unknown)."""
    if tiers is None or device != "cuda" or not hasattr(tiers, "gpu_chunk"):
        return None
    try:
        return tiers.gpu_chunk(cls, params)
    except (KeyError, TypeError, ValueError, AttributeError):
        return None


def _tier_reason(tiers, device: str, cls: str, params: dict) -> str | None:
    if tiers is None:
        return None
    try:
        return tiers.why_not_on(device, cls, params)
    except (KeyError, TypeError, ValueError, AttributeError):
        return None  # a cell the clone's tiers do not know (an older grid): the other reasons
