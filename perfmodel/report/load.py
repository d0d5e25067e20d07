"""Stage 1, load: asv results -> one long DataFrame, every value checked on the way in.

Results directories are copied between machines and merged from other people, so each file is
untrusted: it is size-checked before it is read (MAX_FILE_BYTES), read with asv's own JSON reader
(``asv.util.load_json``, which checks the format version), and every field the report uses is
checked before use: the commit hash (hex, so it can never become a git option), the date, the
parameter lists (against benchmarks.json, which names the parameters and units), and each value
(a number that is finite, or asv's None = failed / NaN = not run). Anything else is left out with
one note per file and field (``Notes``), and the rest loads.
"""
from __future__ import annotations

import ast
import functools
import itertools
import logging
import math
import os
import re
import statistics
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

from ..errors import UserError
from ..names import FAILED, NA, OK, STATUS_OF_CODE

MAX_FILE_BYTES = 64 * 2**20  # per results file (and benchmarks.json, machine.json); checked first
UNITS = ("seconds", "bytes", "status", "unit")  # asv's units for time_/peakmem_/track_ and ours
HEX = re.compile(r"[0-9a-fA-F]{7,40}")
MAX_DATE_MS = 9.2e12  # the last millisecond pandas can hold (year 2262)
STATS = ("ci_99_a", "ci_99_b", "q_25", "q_75", "number", "repeat")


class Notes(list):
    """One line per file and field left out (repeats are counted, not listed)."""

    def __init__(self):
        super().__init__()
        self._seen: dict[tuple, list] = {}  # (where, what) -> [index, count, first line]
        self.left_out = 0

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
    """asv's JSON reader, after a size check; None (and a note) when unreadable."""
    from asv import util as asv_util  # noqa: PLC0415

    logging.getLogger("asv").setLevel(logging.ERROR)
    try:
        size = path.stat().st_size
    except OSError as err:
        notes.leave(where, "the file", f"cannot be read ({err.strerror})")
        return None
    if size > MAX_FILE_BYTES:
        notes.leave(where, "the file", f"{size / 2**20:.0f} MiB, over the {MAX_FILE_BYTES >> 20} "
                    "MiB limit for a results file")
        return None
    try:
        return asv_util.load_json(str(path), api_version)
    except Exception as err:  # noqa: BLE001 (json, asv and the OS raise many kinds)
        text = str(err).replace(str(path.resolve()), where).replace(str(path), where).strip()
        notes.leave(where, "the file", (text.splitlines() or [type(err).__name__])[0][:200])
        return None


def _param_lists(params) -> bool:
    return isinstance(params, list) and all(
        isinstance(p, list) and p and all(isinstance(v, str) for v in p) for p in params)


def load_benchmarks(results_dir: Path, notes: Notes) -> dict:
    """benchmarks.json -> name -> {params, param_names, unit, version}; raises UserError when it
    is missing or unreadable (it alone names the parameters and units)."""
    path = results_dir / "benchmarks.json"
    if not path.is_file():
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
        elif b.get("unit") not in UNITS:
            notes.leave("benchmarks.json", f"{name} unit", f"unknown unit (known: {', '.join(UNITS)})")
        elif not isinstance(b.get("version"), (str, type(None))):
            notes.leave("benchmarks.json", f"{name} version", "not a string")
        else:
            out[name] = {"params": params, "param_names": names, "unit": b["unit"],
                         "version": b.get("version")}
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


def _file_rows(d: dict, fname: str, machine: str, benchmarks: dict, notes: Notes,
               stale: dict, gone: set) -> tuple[dict, list[dict]] | None:
    """The checked header and rows of one results file (None when the file is left out)."""
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
            gone.add(key)
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
            stale.setdefault(key, set()).add(h[:8])
            continue
        rows += _bench_rows(c, key, bench, head, fname, notes)
    return head, rows


def _bench_rows(c: dict, key: str, bench: dict, head: dict, fname: str, notes: Notes) -> list:
    own = c.get("params") or []
    if not _param_lists(own) or len(own) != len(bench["params"]):
        notes.leave(fname, f"{key} params", "not one parameter list per benchmarks.json name")
        return []
    ran = list(itertools.product(*own))
    values, samples = c.get("result"), c.get("samples")
    if values is not None and (not isinstance(values, list) or len(values) != len(ran)):
        notes.leave(fname, f"{key} result", f"not one value per parameter cell ({len(ran)})")
        return []
    values = values if values is not None else [None] * len(ran)
    samples = samples if isinstance(samples, list) and len(samples) == len(ran) else [None] * len(ran)
    at = {cell: i for i, cell in enumerate(ran)}
    unit, names, rows = bench["unit"], bench["param_names"], []
    for cell in itertools.product(*bench["params"]):
        i = at.get(cell)
        value = values[i] if i is not None else math.nan
        if value is None:
            status = FAILED
        elif isinstance(value, float) and math.isnan(value):
            status = NA  # asv: skipped (NotImplementedError in setup), not selected or not present
        elif not finite(value) or (unit == "status" and float(value) not in STATUS_OF_CODE):
            notes.leave(fname, f"{key} result", f"{value!r:.40} is not a measurement")
            status = NA  # shown as n/a, never as a number
        else:
            status = OK
        st = _stats(c, i) if status == OK else None
        if st and not all(finite(v) for v in st.values()):
            notes.leave(fname, f"{key} stats", "non-finite statistics (asv's median kept)")
            st = None
        sm = samples[i] if status == OK and i is not None else None
        if sm is not None and (not isinstance(sm, list) or not all(finite(s) for s in sm)):
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


def _newest(machines: dict[str, Path]) -> str:
    def stamp(path: Path) -> float:
        files = [f for f in path.glob("*.json") if f.name != "machine.json"]
        return max((f.stat().st_mtime for f in files), default=0.0)
    return max(machines, key=lambda m: stamp(machines[m]))


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
        machine = _newest(machines)
        if len(machines) > 1:
            notes.append(f"machine {machine} (newest results) of {', '.join(machines)}; "
                         "choose with --machine")
    elif machine not in machines:
        raise UserError(f"no results for machine {machine!r} in {results_dir}; machines there: "
                        f"{', '.join(machines)}")
    info = read_json(machines[machine] / "machine.json", f"{machine}/machine.json", notes)
    info = {k: v for k, v in info.items() if isinstance(v, str)} if isinstance(info, dict) else {}
    benchmarks = load_benchmarks(results_dir, notes)

    rows, commits, stale, gone = [], [], {}, set()
    for path in sorted(machines[machine].glob("*.json")):
        if path.name == "machine.json":
            continue
        d = read_json(path, path.name, notes, api_version=2)
        try:
            got = _file_rows(d, path.name, machine, benchmarks, notes, stale, gone) \
                if d is not None else None
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
    for key, hashes in sorted(stale.items()):
        notes.leave(", ".join(sorted(hashes)), key, "measured by an older version of the "
                    "benchmark (not comparable)")
    if gone:
        notes.append(f"left out {len(gone)} benchmark(s) no longer in benchmarks.json: "
                     + ", ".join(sorted(gone)[:5]) + (" ..." if len(gone) > 5 else ""))
    frame = pd.DataFrame(rows)
    cdf = pd.DataFrame(commits).sort_values("date", kind="stable").reset_index(drop=True)
    return ResultSet(results_dir, machine, list(machines), frame, cdf, benchmarks, info, notes)


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
