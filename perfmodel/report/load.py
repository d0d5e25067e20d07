"""asv results -> pandas, through asv's own results API.

Files are found with ``asv.results.iter_results_paths`` and read with ``asv.results.Results.load``;
values, statistics and samples come from ``Results.get_result_value / get_result_stats /
get_result_samples``; parameter lists, units and benchmark versions from ``benchmarks.json`` via
``asv.benchmarks.Benchmarks.load``. A file asv cannot read (truncated, corrupt, another machine) is
left out with a one-line note; the good files still load.
"""
from __future__ import annotations

import ast
import itertools
import logging
import math
import os
import statistics
from dataclasses import dataclass, field
from pathlib import Path
from types import SimpleNamespace

import pandas as pd

from ..errors import UserError

# asv's per-cell value: None = failed, NaN = skipped (or not selected by -b in that run)
OK, OOM, FAILED, NOT_RUN = "OK", "OOM", "failed", "not run"


def _asv():
    """asv logs its own warnings on import paths; keep them off the user's terminal."""
    from asv import benchmarks as asv_benchmarks  # noqa: PLC0415
    from asv import results as asv_results  # noqa: PLC0415
    from asv import util as asv_util  # noqa: PLC0415

    logging.getLogger("asv").setLevel(logging.ERROR)
    return asv_results, asv_benchmarks, asv_util


def literal(text: str):
    """A parameter value as asv stores it (its repr) -> the Python value, else the text."""
    try:
        return ast.literal_eval(text)
    except (ValueError, SyntaxError):
        return text


@dataclass
class ResultSet:
    results_dir: Path
    machine: str
    machines: list[str]
    frame: pd.DataFrame           # one row per (commit, env, benchmark, parameter cell)
    commits: pd.DataFrame         # commit, date, env, file: one row per loaded result file
    benchmarks: dict              # name -> benchmarks.json entry ({} when that file is missing)
    machine_info: dict = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)  # files and results left out, one line each

    def at(self, commit: str) -> pd.DataFrame:
        return self.frame[self.frame["commit"] == commit]


def _machines(results_dir: Path) -> dict[str, Path]:
    found = {}
    for sub in sorted(results_dir.iterdir()):
        if (sub / "machine.json").is_file():
            found[sub.name] = sub
    return found


def _newest(results_dir: Path, machines: dict[str, Path]) -> str:
    def stamp(path: Path) -> float:
        files = [f for f in path.glob("*.json") if f.name != "machine.json"]
        return max((f.stat().st_mtime for f in files), default=0.0)
    return max(machines, key=lambda m: stamp(machines[m]))


def load_benchmarks(results_dir: Path, notes: list[str]) -> dict:
    _, asv_benchmarks, asv_util = _asv()
    conf = SimpleNamespace(results_dir=str(results_dir), benchmark_dir="benchmarks")
    try:
        return dict(asv_benchmarks.Benchmarks.load(conf))
    except (asv_util.UserError, ValueError, KeyError, TypeError) as err:
        first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        notes.append(f"benchmarks.json not usable ({first}); parameters come from the result files "
                     "and benchmark versions are not checked")
        return {}


def _stat(stats: dict | None, key: str):
    if not stats:
        return None
    value = stats.get(key)
    return None if value is None else float(value)


def _rows_for(result, key: str, bench: dict | None, notes: list[str], fname: str) -> list[dict]:
    own_params = result.get_result_params(key) or []
    if bench is not None:
        params, names = bench.get("params") or [], bench.get("param_names") or []
        version, unit = bench.get("version"), bench.get("unit")
    else:
        params, names, version, unit = own_params, [f"param{i + 1}" for i in
                                                     range(len(own_params))], None, None
    values = result.get_result_value(key, params)
    stats = result.get_result_stats(key, params)
    samples = result.get_result_samples(key, params)
    ran = set(itertools.product(*own_params))
    rows = []
    cells = list(itertools.product(*params)) if params else [()]
    for i, cell in enumerate(cells):
        value = values[i] if params else (values[0] if isinstance(values, list) else values)
        st = stats[i] if isinstance(stats, list) and params else (
            stats[0] if isinstance(stats, list) and stats else stats)
        sm = samples[i] if isinstance(samples, list) and params else (
            samples[0] if isinstance(samples, list) and samples else samples)
        if params and cell not in ran:
            status = NOT_RUN  # the result file has no such cell (older parameter list)
        elif value is None:
            status = FAILED
        elif isinstance(value, float) and math.isnan(value):
            status = NOT_RUN  # asv: skipped (NotImplementedError in setup) or not selected
        else:
            status = OK
        sm = [float(s) for s in sm if s is not None] if isinstance(sm, list) else None
        row = {
            "commit": result.commit_hash, "env": result.env_name, "benchmark": key,
            "method": key.rsplit(".", 1)[-1], "unit": unit, "file": fname,
            "status": status, "value": float(value) if status == OK else math.nan,
            "median": _stat(st, "median") if st else None,
            "ci_lo": _stat(st, "ci_99_a"), "ci_hi": _stat(st, "ci_99_b"),
            "q25": _stat(st, "q_25"), "q75": _stat(st, "q_75"),
            "repeat": _stat(st, "repeat"), "number": _stat(st, "number"),
            "n_samples": len(sm) if sm else 0,
            "mean": statistics.fmean(sm) if sm and status == OK else math.nan,
            "std": statistics.stdev(sm) if sm and len(sm) > 1 and status == OK else math.nan,
            "samples": sm if status == OK else None,
            "stats": st if status == OK else None,  # asv's stats dict (for asv's comparison)
            "params": {n: literal(v) for n, v in zip(names, cell)},
            "cell": ", ".join(cell),
        }
        if version is not None and result.benchmark_version.get(key) not in (None, version):
            row["status"] = "stale"
        rows.append(row)
    return rows


def load(results_dir: str | os.PathLike = "results", machine: str | None = None) -> ResultSet:
    """Every readable result of one machine as a long DataFrame.

    Raises UserError (one line) when the directory or the machine is missing or nothing is
    readable. Unreadable files, results of an older benchmark version and results of benchmarks
    that no longer exist are left out and listed in ``notes``.
    """
    asv_results, _, asv_util = _asv()
    results_dir = Path(results_dir)
    if not results_dir.is_dir():
        raise UserError(f"no results directory {str(results_dir)!r} (run `asv run` first, or "
                        "pass --results DIR)")
    machines = _machines(results_dir)
    if not machines:
        raise UserError(f"{results_dir} holds no machine's results (no */machine.json)")
    notes: list[str] = []
    if machine is None:
        machine = _newest(results_dir, machines)
        if len(machines) > 1:
            notes.append(f"machine {machine} (newest results) of {', '.join(machines)}; "
                         "choose with --machine")
    elif machine not in machines:
        raise UserError(f"no results for machine {machine!r} in {results_dir}; machines there: "
                        f"{', '.join(machines)}")
    try:
        info = asv_util.load_json(str(machines[machine] / "machine.json"))
    except asv_util.UserError:
        info = {}
    benchmarks = load_benchmarks(results_dir, notes)

    rows, commits = [], []
    stale: dict[str, set] = {}
    gone: set[str] = set()
    for root, fname, mname in asv_results.iter_results_paths(str(machines[machine])):
        path = os.path.join(root, fname)
        try:
            result = asv_results.Results.load(path, machine_name=machine)
        except (asv_util.UserError, ValueError, KeyError, TypeError, AttributeError) as err:
            msg = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
            notes.append(f"left out {fname}: {msg.replace(path, fname)}")
            continue
        commits.append({"commit": result.commit_hash, "env": result.env_name, "file": fname,
                        "date": pd.to_datetime(result.date, unit="ms", utc=True)
                        if result.date else pd.NaT})
        for key in sorted(result.get_all_result_keys()):
            bench = benchmarks.get(key) if benchmarks else None
            if benchmarks and bench is None:
                gone.add(key)
                continue
            try:
                new = _rows_for(result, key, bench, notes, fname)
            except (TypeError, ValueError, KeyError, IndexError) as err:
                notes.append(f"left out {key} in {fname}: malformed ({type(err).__name__})")
                continue
            for row in new:
                if row["status"] == "stale":
                    stale.setdefault(key, set()).add(result.commit_hash[:8])
                else:
                    rows.append(row)
    if not commits:
        raise UserError(f"no readable results for machine {machine!r} in {results_dir}"
                        + (f" ({notes[-1]})" if notes else ""))
    for key, hashes in sorted(stale.items()):
        notes.append(f"left out {key} at {', '.join(sorted(hashes))}: measured by an older "
                     "version of the benchmark (not comparable)")
    if gone:
        notes.append(f"left out {len(gone)} benchmark(s) no longer in benchmarks.json: "
                     + ", ".join(sorted(gone)[:5]) + (" ..." if len(gone) > 5 else ""))
    frame = pd.DataFrame(rows)
    cdf = pd.DataFrame(commits).sort_values("date", kind="stable").reset_index(drop=True)
    if not frame.empty:
        frame = frame.merge(cdf[["file", "date"]], on="file", how="left")
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
