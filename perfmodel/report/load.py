"""Stage 1, load: asv results -> one long DataFrame, every value checked on the way in.

Results directories are copied between machines and merged from other people, so each file is
untrusted: it is read by perfmodel.untrusted (regular files only, at most MAX_FILE_BYTES read,
asv's format version checked), and every field the report uses is checked before use: the commit
hash (hex, so it can never become a git option), the date, the parameters (against
benchmarks.json, which names them and their units: distinct names, values that are strings or
numbers of one type per parameter), and each value (a finite number within
MAX_VALUE, or asv's None = failed / NaN = not run). Anything else is left out with one note per
file and field (``Notes``), and the rest loads.

Memory and time follow the data present, not what a file declares: a benchmark whose
benchmarks.json grid is far larger than the values a results file holds for it (GRID_SLACK,
GRID_FLOOR) is left out of that file, and one report reads at most MAX_CELLS cells.
"""
from __future__ import annotations

import ast
import functools
import itertools
import math
import os
import re
import statistics
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

from ..errors import UserError
from ..names import FAILED, NA, OK, STATUS_OF_CODE
from ..untrusted import MAX_FILE_BYTES, Unreadable
from ..untrusted import read_json as _read_json

UNITS = ("seconds", "bytes", "status", "unit")  # asv's units for time_/peakmem_/track_ and ours
HEX = re.compile(r"[0-9a-fA-F]{7,40}")
MAX_DATE_MS = 9.2e12  # the last millisecond pandas can hold (year 2262)
STATS = ("ci_99_a", "ci_99_b", "q_25", "q_75", "number", "repeat")
# Larger than any real measurement (seconds: 3e10 years; bytes: an exabyte), small enough that the
# tables' arithmetic (ms, squares for the std) stays finite.
MAX_VALUE = 1e18
SCALARS = (str, int, float, bool)  # what a parameter value may be: hashable, and ordered per type
# A results file's values may cover fewer cells than benchmarks.json declares (a parameter added
# since that commit); GRID_SLACK times as many, plus GRID_FLOOR, is history; more is a grid that
# its results do not describe (each declared cell costs a row).
GRID_SLACK, GRID_FLOOR = 8, 1024
MAX_CELLS = 500_000  # cells of one report (about 1 GiB of rows); the suite's history is 1-10k a commit
# the frame's columns; a parameter of the tables' benchmarks may not take one of these names
# (cells.normalize puts both in one row)
COLUMNS = ("commit", "env", "file", "date", "benchmark", "method", "unit", "status", "value",
           "ci_lo", "ci_hi", "q25", "q75", "repeat", "number", "n_samples", "mean", "std",
           "samples", "stats", "params", "cell", "kind", "measure", "role")


# how a note about results of an older benchmark version starts (history, not a loss: Notes.info)
STALE_NOTE = "not shown: "


class Notes(list):
    """One line per file and field left out (repeats are counted, not listed). ``left_out`` counts
    what was left out (the report's exit status 1); ``info`` adds a line that is no such loss
    (older benchmark versions are history, not bad data); ``internal`` counts tables that failed
    for a reason the checks did not foresee (a bug: exit status 3)."""

    def __init__(self):
        super().__init__()
        self._seen: dict[tuple, list] = {}  # (where, what) -> [index, count, first line]
        self.left_out = 0
        self.internal = 0

    def info(self, line: str) -> None:
        self.append(line)

    def leave(self, where: str, what: str, why: str) -> None:
        self.left_out += 1
        seen = self._seen.get((where, what))
        if seen is None:
            self._seen[(where, what)] = [len(self), 1, f"left out {what} in {where}: {why}"]
            self.append(self._seen[(where, what)][2])
            return
        seen[1] += 1
        self[seen[0]] = f"{seen[2]} ({seen[1]} times)"


@functools.lru_cache(maxsize=4096)  # the same few reprs, once per cell of every file
def literal(text: str):
    """A parameter value as asv stores it (its repr) -> the Python value, else the text."""
    try:
        return ast.literal_eval(text)
    except (ValueError, SyntaxError, TypeError, MemoryError, RecursionError):
        return text


def finite(v) -> bool:
    """A real number a float can hold (JSON also allows NaN, Infinity, 1e999 and huge ints)."""
    if not isinstance(v, (int, float)) or isinstance(v, bool):
        return False
    try:
        return math.isfinite(v)
    except OverflowError:
        return False


def read_json(path: Path, where: str, notes: Notes, api_version=None):
    """A JSON file read by perfmodel.untrusted; None (and a note) when it is not read."""
    try:
        return _read_json(path, MAX_FILE_BYTES, api_version)
    except Unreadable as err:
        notes.leave(where, "the file", str(err))
        return None
    except MemoryError:  # a document that fits the limit but not in memory as Python objects
        notes.leave(where, "the file", "too large to hold in memory")
        return None


def _param_lists(params) -> bool:
    return isinstance(params, list) and all(
        isinstance(p, list) and p and all(isinstance(v, str) for v in p) for p in params)


def _param_problem(params: list, names: list) -> str | None:
    """Why benchmarks.json's parameters of a benchmark cannot be tabulated, or None."""
    if len(set(names)) != len(names):
        return "parameter names repeat"
    for name, values in zip(names, params):
        kinds = {type(literal(v)) for v in values}
        if not kinds <= set(SCALARS):
            return f"{name} holds a value that is not a string or a number"
        if len(kinds) > 1:
            return f"{name} mixes values of types {', '.join(sorted(k.__name__ for k in kinds))}"
    return None


def load_benchmarks(results_dir: Path, notes: Notes) -> dict:
    """benchmarks.json -> name -> {params, param_names, unit, version}; raises UserError when it
    is missing or unreadable (it alone names the parameters and units)."""
    path = results_dir / "benchmarks.json"
    if not os.path.lexists(path):
        raise UserError(f"{path} is missing: it names the benchmarks' parameters and units; "
                        "`asv run` (or `asv run --bench just-discover`) writes it")
    seen = len(notes)
    raw = read_json(path, "benchmarks.json", notes, api_version=2)
    if not isinstance(raw, dict):
        why = notes[seen].split(": ", 1)[-1] if len(notes) > seen else "not a JSON object"
        raise UserError(f"{path} is not usable ({why}); `asv run --bench just-discover` "
                        "rewrites it")
    out = {}  # a benchmark left out here maps to None: its results are left out without more notes
    for name, b in raw.items():
        if name == "version":
            continue
        out[name] = None
        if not isinstance(b, dict):
            notes.leave("benchmarks.json", name, "not a benchmark entry")
            continue
        params, names = b.get("params") or [], b.get("param_names") or []
        if not _param_lists(params) or not isinstance(names, list) or len(names) != len(params) \
                or not all(isinstance(n, str) for n in names):
            notes.leave("benchmarks.json", f"{name} params", "not a parameter list per name")
        elif math.prod(map(len, params)) > MAX_CELLS:  # before each value is parsed
            notes.leave("benchmarks.json", f"{name} params", f"over {MAX_CELLS} parameter cells")
        elif (why := _param_problem(params, names)) is not None:
            notes.leave("benchmarks.json", f"{name} param_names/params", why)
        elif b.get("unit") not in UNITS:
            notes.leave("benchmarks.json", f"{name} unit", f"unknown unit (known: {', '.join(UNITS)})")
        elif not isinstance(b.get("version"), (str, type(None))):
            notes.leave("benchmarks.json", f"{name} version", "not a string")
        else:
            out[name] = {"params": params, "param_names": names, "unit": b["unit"],
                         "version": b.get("version"), "cells": math.prod(map(len, params))}
    return out


@dataclass
class ResultSet:
    results_dir: Path
    machine: str
    machines: list[str]
    frame: pd.DataFrame           # one row per (commit, env, benchmark, parameter cell)
    commits: pd.DataFrame         # commit, date, env, file: one row per loaded result file
    benchmarks: dict              # name -> checked benchmarks.json entry
    machine_info: dict = field(default_factory=dict)
    notes: Notes = field(default_factory=Notes)  # what was left out, one line per file and field

    def at(self, commit: str) -> pd.DataFrame:
        return self.frame[self.frame["commit"] == commit]


def _stats(columns: dict, i: int) -> dict | None:
    out = {}
    for k in STATS:
        col = columns.get(f"stats_{k}")
        if isinstance(col, list) and i < len(col) and col[i] is not None:
            out[k] = col[i]
    return out or None


@dataclass
class _Reading:
    """What reading one machine's files collects besides rows."""
    notes: Notes
    stale: dict = field(default_factory=dict)   # benchmark -> commits of an older version
    gone: set = field(default_factory=set)      # benchmarks no longer in benchmarks.json
    cells: int = 0                              # rows so far (MAX_CELLS)


def _file_rows(d, fname: str, machine: str, benchmarks: dict,
               reading: _Reading) -> tuple[dict, list[dict]] | None:
    """The checked header and rows of one results file (None when the file is left out)."""
    notes = reading.notes
    if not isinstance(d, dict):
        notes.leave(fname, "the file", "not a results object")
        return None
    h, date, env = d.get("commit_hash"), d.get("date"), d.get("env_name")
    if not isinstance(h, str) or not HEX.fullmatch(h):
        notes.leave(fname, "commit_hash", "not a hex commit hash of 7 to 40 digits")
        return None
    if not finite(date) or not 0 < date <= MAX_DATE_MS:
        notes.leave(fname, "date", "not a time in milliseconds since 1970")
        return None
    if not isinstance(env, str) or not isinstance(d.get("params"), dict) \
            or d["params"].get("machine") != machine:
        notes.leave(fname, "env_name/params", f"not an environment of machine {machine}")
        return None
    cols, results = d.get("result_columns"), d.get("results")
    if not isinstance(cols, list) or not all(isinstance(c, str) for c in cols) \
            or not isinstance(results, dict) or "result" not in cols:
        notes.leave(fname, "results", "not asv's result columns")
        return None
    h = h.lower()
    head = {"commit": h, "env": env, "file": fname, "date": pd.to_datetime(date, unit="ms", utc=True)}
    rows = []
    for key in sorted(results):
        if key not in benchmarks:
            reading.gone.add(key)
            continue
        bench = benchmarks[key]
        if bench is None:
            continue
        vals = results[key]
        if not isinstance(vals, list):
            notes.leave(fname, key, "not a list of result columns")
            continue
        c = dict(zip(cols, vals))
        if bench["version"] is not None and c.get("version") not in (None, bench["version"]):
            reading.stale.setdefault(key, set()).add(h[:8])
            continue
        got = _bench_rows(c, key, bench, head, fname, notes, MAX_CELLS - reading.cells)
        reading.cells += len(got)
        rows += got
    return head, rows


def measurement(value, unit: str) -> bool:
    """A value the tables can show: finite, within MAX_VALUE, not negative for a time or a size,
    and a known code for a status."""
    if not finite(value) or abs(value) > MAX_VALUE:
        return False
    if unit == "status":
        return float(value) in STATUS_OF_CODE
    return value >= 0 or unit not in ("seconds", "bytes")


def _numbers(values) -> bool:
    return all(finite(v) and abs(v) <= MAX_VALUE for v in values)


def _index(positions: list[dict], cell: tuple) -> int | None:
    """Where ``cell`` is in asv's flat list of a results file's cells (``itertools.product`` of
    its own parameter lists; ``positions`` maps each list's values to their last index), found
    without making that list: it may be far longer than the cells benchmarks.json asks for."""
    i = 0
    for pos, v in zip(positions, cell):
        at = pos.get(v)
        if at is None:
            return None
        i = i * len(pos) + at
    return i


def _bench_rows(c: dict, key: str, bench: dict, head: dict, fname: str, notes: Notes,
                room: int) -> list:
    own = c.get("params") or []
    if not _param_lists(own) or len(own) != len(bench["params"]):
        notes.leave(fname, f"{key} params", "not one parameter list per benchmarks.json name")
        return []
    values, samples = c.get("result"), c.get("samples")
    n_own = math.prod(map(len, own))  # counted before any cell is made: it may be huge
    if values is not None and (not isinstance(values, list) or len(values) != n_own):
        notes.leave(fname, f"{key} result", "not one value per parameter cell")
        return []
    present = len(values) if values is not None else 0
    if bench["cells"] > GRID_SLACK * present + GRID_FLOOR:
        notes.leave(fname, key, f"benchmarks.json declares {bench['cells']} parameter cells, far "
                    f"more than the {present} values here")
        return []
    if bench["cells"] > room:
        notes.leave(fname, key, f"over the limit of {MAX_CELLS} cells for one report")
        return []
    # nothing is made n_own long: a file of a few lists may declare 10^16 cells (all failed)
    samples = samples if isinstance(samples, list) and len(samples) == n_own else None
    unit, names, rows = bench["unit"], bench["param_names"], []
    positions = [{v: i for i, v in enumerate(p)} for p in own]
    if any(len(pos) != len(p) for pos, p in zip(positions, own)):  # a value repeated
        notes.leave(fname, f"{key} params", "a parameter value repeats")
        return []
    for cell in itertools.product(*bench["params"]):
        i = _index(positions, cell)
        value = math.nan if i is None else None if values is None else values[i]
        if value is None:
            status = FAILED
        elif isinstance(value, float) and math.isnan(value):
            status = NA  # asv: skipped (NotImplementedError in setup), not selected or not present
        elif not measurement(value, unit):
            notes.leave(fname, f"{key} result", f"{value!r:.40} is not a measurement")
            status = NA  # shown as n/a, never as a number
        else:
            status = OK
        st = _stats(c, i) if status == OK else None
        if st and not _numbers(st.values()):
            notes.leave(fname, f"{key} stats", "statistics out of range (asv's median kept)")
            st = None
        sm = samples[i] if status == OK and samples is not None else None
        if sm is not None and (not isinstance(sm, list) or not _numbers(sm)):
            notes.leave(fname, f"{key} samples", "not a list of finite numbers (median kept)")
            sm = None
        sm = [float(s) for s in sm] if sm else None
        get = (st or {}).get
        rows.append({
            **head, "benchmark": key, "method": key.rsplit(".", 1)[-1], "unit": unit,
            "status": status, "value": float(value) if status == OK else math.nan,
            "ci_lo": get("ci_99_a"), "ci_hi": get("ci_99_b"), "q25": get("q_25"),
            "q75": get("q_75"), "repeat": get("repeat"), "number": get("number"),
            "n_samples": len(sm) if sm else 0,
            "mean": statistics.fmean(sm) if sm else math.nan,
            "std": statistics.stdev(sm) if sm and len(sm) > 1 else math.nan,
            "samples": sm, "stats": st,  # asv's stats dict and samples (for asv's comparison)
            "params": {n: literal(v) for n, v in zip(names, cell)}, "cell": ", ".join(cell),
        })
    return rows


def _machines(results_dir: Path) -> dict[str, Path]:
    return {sub.name: sub for sub in sorted(results_dir.iterdir())
            if sub.is_dir() and (sub / "machine.json").is_file()}


def _stamp(path: Path) -> float:
    """When a machine's newest results file was written (0 for none; a dangling link counts 0)."""
    def mtime(f: Path) -> float:
        try:
            return f.stat().st_mtime
        except OSError:
            return 0.0
    return max((mtime(f) for f in path.glob("*.json") if f.name != "machine.json"), default=0.0)


def newest_first(results_dir: str | os.PathLike) -> list[str]:
    """The machines of results_dir, the one with the newest results first."""
    root = Path(results_dir)
    if not root.is_dir():
        return []
    machines = _machines(root)
    return sorted(machines, key=lambda m: -_stamp(machines[m]))


def load(results_dir: str | os.PathLike = "results", machine: str | None = None) -> ResultSet:
    """Every readable result of one machine as a long DataFrame.

    Raises UserError (one line) when the directory, the machine or benchmarks.json is missing
    or nothing is readable. What is left out is listed in ``notes`` (``notes.left_out`` counts).
    """
    results_dir = Path(results_dir)
    if not results_dir.is_dir():
        raise UserError(f"no results directory {str(results_dir)!r} (run `asv run` first, or "
                        "pass --results DIR)")
    machines = _machines(results_dir)
    if not machines:
        raise UserError(f"{results_dir} holds no machine's results (no */machine.json)")
    notes = Notes()
    if machine is None:
        machine = newest_first(results_dir)[0]
        if len(machines) > 1:
            notes.append(f"machine {machine} (newest results) of {', '.join(machines)}; "
                         "choose with --machine")
    elif machine not in machines:
        raise UserError(f"no results for machine {machine!r} in {results_dir}; machines there: "
                        f"{', '.join(machines)}")
    info = machine_info(machines[machine] / "machine.json", f"{machine}/machine.json", notes)
    benchmarks = load_benchmarks(results_dir, notes)

    rows, commits, reading = [], [], _Reading(notes)
    for path in sorted(machines[machine].glob("*.json")):
        if path.name == "machine.json":
            continue
        d = read_json(path, path.name, notes, api_version=2)
        try:
            got = _file_rows(d, path.name, machine, benchmarks, reading) if d is not None else None
        except (TypeError, ValueError, KeyError, IndexError, AttributeError, OverflowError) as err:
            # a shape the checks above did not foresee: this file only, never the report
            notes.leave(path.name, "the file", f"malformed ({type(err).__name__})")
            got = None
        if got:
            commits.append(got[0])
            rows += got[1]
    if not commits:
        raise UserError(f"no readable results for machine {machine!r} in {results_dir}"
                        + (f" ({notes[-1]})" if notes else ""))
    for key, hashes in sorted(reading.stale.items()):
        # asv's own rule, and ordinary history after a change of method: a note, not a loss
        notes.info(f"{STALE_NOTE}{key} at {', '.join(sorted(hashes))}, measured by an older "
                   "version of the benchmark (not comparable)")
    if reading.gone:
        gone = sorted(reading.gone)
        notes.left_out += len(gone)
        notes.append(f"left out {len(gone)} benchmark(s) not in benchmarks.json: "
                     + ", ".join(gone[:5]) + (" ..." if len(gone) > 5 else ""))
    frame = pd.DataFrame(rows, columns=list(COLUMNS[:COLUMNS.index("cell") + 1]))
    cdf = pd.DataFrame(commits).sort_values("date", kind="stable").reset_index(drop=True)
    return ResultSet(results_dir, machine, list(machines), frame, cdf, benchmarks, info, notes)


def machine_info(path: Path, where: str, notes: Notes) -> dict:
    """machine.json's text fields the page shows; ``ram`` only as a whole number of bytes."""
    info = read_json(path, where, notes)
    if info is None:
        return {}
    if not isinstance(info, dict):
        notes.leave(where, "the file", "not a JSON object")
        return {}
    out = {k: v for k, v in info.items() if isinstance(k, str) and isinstance(v, str)}
    if "ram" in out and not re.fullmatch(r"[0-9]{1,20}", out["ram"]):
        notes.leave(where, "ram", "not a whole number of bytes")
        del out["ram"]
    return out


def resolve_commit(rs: ResultSet, commit: str | None) -> str:
    """A full commit hash of ``rs`` from a prefix (default: the newest commit by date)."""
    hashes = list(dict.fromkeys(rs.commits["commit"]))
    if commit is None:
        return rs.commits.iloc[-1]["commit"]
    matches = [h for h in hashes if h.startswith(commit.lower())]
    if not matches:
        raise UserError(f"no results for commit {commit!r} on machine {rs.machine}; commits with "
                        f"results: {', '.join(h[:8] for h in reversed(hashes))}")
    if len(matches) > 1:
        raise UserError(f"commit prefix {commit!r} is ambiguous: {', '.join(m[:8] for m in matches)}")
    return matches[0]
