"""``perfmodel track``: the tracker end to end with asv (the README's main job).

Names this machine after what changes its numbers (perfmodel.identity) and records it for asv,
then runs plain asv: ``asv run`` over the last few commits of the branch (commits whose whole tier
this machine has measured are skipped, see why_measure) and ``asv publish``, whose perfmodel
publisher plugin (asv.conf.json) adds the summary tables. asv's full output goes to a log file;
the terminal gets one line per commit and a summary. Every child process has a time limit.
"""
from __future__ import annotations

import itertools
import json
import math
import os
import re
import sys
import time

from .. import asvchild, prewarm, suite_cost
from ..asvchild import AsvChild, asv_env
from ..errors import UserError
from ..identity import machine_record, print_machine, register_machine, this_machine
from ..names import EXIT_CLEAN, EXIT_LEFT_OUT
from ..repo import git, load_tiers, repo_root, resolve, result_files
from ..untrusted import Unreadable, log_text, read_json, say, visible

PUBLISH_LIMIT_S = 600
PREWARM_LIMIT_S = 900  # the compile caches' warming before a run (perfmodel/prewarm.py)
_COMMIT_LINE = re.compile(r"For \S+ commit ([0-9a-f]{6,40})\b")


def add_parser(sub) -> None:
    p = sub.add_parser(
        "track", help="run the asv tracker over the last commits and publish html/",
        description="Measure the last commits of the branch on this machine with asv run (a "
        "CPU measures the CPU tier, a GPU every cell of the seed tables), skipping the commits "
        "whose whole tier this machine has measured, then asv publish the site and the summary "
        "tables into html/. The terminal gets a line per commit; asv's full output, with the "
        "reason of every n/a cell, goes to the log.\n\n"
        "Exit status: 0 every cell measured or n/a here; 1 some cells failed (their errors are "
        "in the log) or asv run or asv publish failed (asv's own status where it is another); "
        "124 when --limit-per-commit stopped asv run; 2 a user's error (one line); 3 an "
        "internal error; 130 interrupted (Ctrl-C): asv stopped, the results of the commits it "
        "finished kept.")
    p.add_argument("--commits", type=int, default=3,
                   help="how many commits of the branch, newest first")
    p.add_argument("--commit", action="append", default=None, metavar="REF",
                   help="measure this commit (repeatable), instead of the last --commits of the "
                        "branch")
    p.add_argument("--branch", default=None,
                   help="the branch (default: the first branch in asv.conf.json, main)")
    p.add_argument("--tier", default="auto",
                   help="which cells: auto (this device's: cpu on a CPU, gpu on a GPU), cpu, "
                        "gpu-quick (the GPU gate's cells) or gpu (benchmarks/tiers.py); cells "
                        "outside it are not started at all")
    p.add_argument("--chunk", default=None, metavar="REGEX",
                   help="with --tier gpu: only the chunks of its plan whose names match "
                        "(python -m benchmarks.tiers --plan lists them)")
    p.add_argument("--each-chunk", action="store_true",
                   help="with --tier gpu: each chunk its own asv run, saved when it ends (for a "
                        "box whose time may run out); by default the gate's cells are one asv "
                        "run and the other chunks another, which saves asv's start per chunk")
    p.add_argument("--prewarm", type=int, default=None, metavar="N",
                   help="with --tier gpu: before asv measures them, compile the cells that "
                        "run torch.compile N at a time, so that asv's processes "
                        "find the caches warm (default: half this box's cores, at most "
                        f"{prewarm.MAX_WORKERS}; 0: not at all)")
    p.add_argument("--bench", "-b", action="append", default=None,
                   help="asv -b regex (repeatable): only these benchmarks, instead of the tier; "
                        "the commits stay incomplete, and the next run measures them whole")
    p.add_argument("--machine", default=None,
                   help="asv machine name (default: from the device and stack, as "
                        "--print-machine prints it)")
    p.add_argument("--rerun", action="store_true",
                   help="measure the commits again even where this machine has their whole tier")
    p.add_argument("--no-publish", action="store_true", help="skip asv publish")
    p.add_argument("--dry-run", action="store_true",
                   help="print what would be measured, and why, and the asv commands only")
    p.add_argument("--print-machine", action="store_true",
                   help="record this machine for asv and print its name (for asv --machine)")
    p.add_argument("--log", default=None,
                   help="asv's full output, n/a reasons included (default: .asv/track.log)")
    p.add_argument("--limit-per-commit", type=float, default=120, metavar="MIN",
                   help="stop asv run after this many minutes per commit")
    p.set_defaults(func=main)


def tier_name(root: str, tier: str, env: dict) -> str:
    """The tier asked for, ``auto`` resolved to this device's; a one-line error otherwise."""
    tiers = load_tiers(root)
    if tier == "auto":
        return tiers.DEVICE_TIER["cuda" if env.get("device") == "cuda" else "cpu"]
    if tier not in tiers.TIERS:
        raise UserError(f"unknown tier {tier!r}; valid choices: auto, {', '.join(tiers.TIERS)}")
    return tier


def _printable(text: str, width: int = 50) -> str:
    text = visible(text.strip())
    return text if len(text) <= width else text[:width - 1] + "…"


def cell_counts(results_dir: str, machine: str, commit: str) -> dict | None:
    """measured / n/a / failed cells of one commit's asv result files (None: no file)."""
    paths = result_files(results_dir, machine, commit)
    if not paths:
        return None
    counts = {"measured": 0, "n/a": 0, "failed": 0}
    for path in paths:
        try:
            data = read_json(path)  # bare NaN (asv's "skipped") reads as nan
        except (Unreadable, MemoryError):
            continue
        cols = data.get("result_columns") if isinstance(data, dict) else None
        rows = data.get("results") if isinstance(data, dict) else None
        if not isinstance(cols, list) or "result" not in cols or not isinstance(rows, dict):
            continue
        column = cols.index("result")
        for row in rows.values():
            values = row[column] if isinstance(row, list) and len(row) > column else None
            for v in values if isinstance(values, list) else [values]:
                if v is None:
                    counts["failed"] += 1
                elif isinstance(v, float) and math.isnan(v):  # a JSON int may be too big for isnan
                    counts["n/a"] += 1
                else:
                    counts["measured"] += 1
    return counts


def load_suite(results_dir: str) -> dict | None:
    """The suite as asv last discovered it (results/benchmarks.json, committed with benchmarks/):
    benchmark name -> its version and parameters. None when there is no readable list."""
    try:
        data = read_json(os.path.join(results_dir, "benchmarks.json"))
    except (Unreadable, MemoryError):
        return None
    if not isinstance(data, dict):
        return None
    return {name: {"version": b.get("version"), "params": b.get("params") or []}
            for name, b in data.items() if isinstance(b, dict)}


def _rows(path: str) -> dict | None:
    """One result file's rows: benchmark name -> {column: value} (None: unreadable)."""
    try:
        data = read_json(path)
        columns = data["result_columns"]
        return {name: dict(zip(columns, row)) for name, row in data["results"].items()
                if isinstance(row, list)}
    except (Unreadable, MemoryError, KeyError, TypeError, AttributeError):
        return None


def _lacks(path: str, suite: dict, by_chunk: bool = False) -> str | None:
    """What one result file lacks of the suite (None: nothing, every benchmark has a row taken
    at its current version over its current parameters). ``by_chunk``: a missing row is left
    to the chunks' count (unmeasured_chunks), which sees it as cells never measured."""
    rows = _rows(path)
    if rows is None:
        return f"its result file is unreadable ({_printable(os.path.basename(path))})"
    missing = [n for n in suite if n not in rows]
    if missing and not by_chunk:
        return (f"its results here lack {len(missing)} of {len(suite)} benchmarks, e.g. "
                f"{_printable(missing[0], 70)} (asv find, a -b selection or an interrupted run)")
    suite = {n: b for n, b in suite.items() if n in rows}
    old = [n for n in suite if rows[n].get("version") != suite[n]["version"]]
    if old:
        return (f"{len(old)} of its benchmarks here were measured at an older version "
                f"({_printable(str(rows[old[0]].get('version')), 40)}, now "
                f"{_printable(str(suite[old[0]]['version']), 40)})")
    changed = [n for n in suite if (rows[n].get("params") or []) != suite[n]["params"]]
    if changed:
        return (f"the parameters of {len(changed)} of its benchmarks changed since, e.g. "
                f"{_printable(changed[0], 70)}")
    return None


def why_measure(results_dir: str, machine: str, commit: str, suite: dict | None,
                by_chunk: bool = False) -> str | None:
    """None when this machine has measured the commit's whole tier; otherwise why it is measured:
    "" when it has no results here, else what its results lack.

    Complete means: one result file of the commit (one per asv environment) has a row for every
    benchmark of the suite, at the suite's version and over its parameters. A cell that is n/a
    here is a row like any other (asv writes NaN). What this cannot see: a -b regex that picked
    some parameters of every benchmark, since asv writes the cells it left out as NaN too; for
    the full GPU tier, which runs as such regexes, ``by_chunk`` leaves missing rows out of the
    reasons and unmeasured_chunks says which of its chunks never ran.
    """
    paths = result_files(results_dir, machine, commit)
    if not paths:
        return ""
    if suite is None:
        return "no readable results/benchmarks.json to check its results against"
    reasons = [_lacks(path, suite, by_chunk) for path in paths]
    return None if None in reasons else reasons[0]


def _cells(row: dict, name: str):
    """(cell name as asv's -b regexes see it, result) for each cell of one result row."""
    values, params = row.get("result"), row.get("params") or []
    if not isinstance(values, list) or not all(isinstance(p, list) for p in params):
        return
    combos = itertools.product(*params) if params else [()]
    for combo, value in zip(combos, values):
        yield (f"{name}({', '.join(map(str, combo))})" if combo else name), value


def failed_cells(results_dir: str, machine: str, commit: str) -> set[str]:
    """The cells of the commit that failed here (asv's null), named as asv's -b regexes see
    them."""
    return {cell for path in result_files(results_dir, machine, commit)
            for bench, row in (_rows(path) or {}).items()
            for cell, value in _cells(row, bench) if value is None}


def unmeasured_chunks(results_dir: str, machine: str, commit: str,
                      chunks: list[tuple[str, list[str], int | None]]) -> list[str]:
    """The chunks of the full GPU tier's plan (name, asv -b regexes, rounds) that this machine
    never measured for the commit, in plan order.

    A chunk counts as measured when a cell of it holds a number, or failed (asv's null), in a
    result file of the commit. asv writes NaN both for a cell that is n/a here and for one its
    -b regexes left out, and a run cut off saves nothing of its chunk, so a chunk whose every
    cell is NaN was not measured; one that is n/a as a whole here is measured again (quickly:
    its cells' setups say n/a)."""
    pending = {name: [re.compile(r) for r in regexes] for name, regexes, _ in chunks}
    for path in result_files(results_dir, machine, commit):
        for bench, row in (_rows(path) or {}).items():
            for cell, value in _cells(row, bench):
                if not pending:
                    break
                if isinstance(value, float) and math.isnan(value):
                    continue
                for chunk in [c for c, res in pending.items() if any(r.search(cell) for r in res)]:
                    del pending[chunk]
    return [name for name, _, _ in chunks if name in pending]


def _kept(todo: list[str], results_dir: str, name: str, since: float) -> str:
    """What an interrupted run kept: asv saves a commit's results when it has measured it."""
    kept = [h for h in todo if any(os.path.getmtime(p) >= since - 1
                                   for p in result_files(results_dir, name, h))]
    rest = [h[:8] for h in todo if h not in kept]
    text = (f"kept the results of {len(kept)} commit(s): {' '.join(h[:8] for h in kept)} in "
            f"{os.path.join(results_dir, name)}" if kept else "no new results were kept")
    return text + (f"; not measured: {' '.join(rest)} (perfmodel track measures them next time)"
                   if rest else "")


def _minutes(seconds: float) -> str:
    return f"{seconds / 60:.1f} min" if seconds >= 90 else f"{seconds:.0f} s"


def main(args) -> int:
    root = repo_root("perfmodel track")
    name, env = this_machine(args.machine)
    if args.print_machine:
        return print_machine(name, env)
    from asv.util import load_json  # noqa: PLC0415 (asv's own reader: // comments allowed)

    conf = load_json(os.path.join(root, "asv.conf.json"), js_comments=True)
    branch = args.branch or (conf.get("branches") or ["main"])[0]
    results_dir = os.path.join(root, conf.get("results_dir", "results"))
    if args.commits < 1:
        raise UserError(f"--commits must be at least 1, got {args.commits}")
    if args.prewarm is not None and args.prewarm < 0:
        raise UserError(f"--prewarm must be 0 (no warming) or more workers, got {args.prewarm}")
    if branch.startswith("-"):
        raise UserError(f"branch {branch!r}: a branch name cannot start with '-'")
    if args.commit:
        hashes = list(dict.fromkeys(resolve(root, ref) for ref in args.commit))
    else:
        hashes = git(root, "rev-list", "--first-parent", f"-n{args.commits}",
                      "--end-of-options", branch, "--").split()
    if not all(re.fullmatch(r"[0-9a-f]{40}", h) for h in hashes):
        raise UserError(f"git rev-list {branch} gave something other than commit hashes")
    subjects = {h: _printable(git(root, "log", "-1", "--format=%s", h, "--")) for h in hashes}
    tier = None if args.bench else tier_name(root, args.tier, env)
    suite = load_suite(results_dir)
    if suite is not None and tier is not None:  # what the tier never runs is not missing
        tiers = load_tiers(root)
        suite = {n: b for n, b in suite.items() if tiers.measures(tier, n)}
    chunked = tier == "gpu"  # the full GPU tier runs as chunks: a commit may have some of them
    why = {h: why_measure(results_dir, name, h, suite, chunked) for h in hashes}
    chunks_todo = None  # the chunks to run: all of the plan's (chosen by --chunk)
    if chunked and not args.rerun:
        chosen = [c for c in load_tiers(root).gpu_plan() if _chunk_regex(args.chunk).search(c[0])]
        lacking = {h: unmeasured_chunks(results_dir, name, h, chosen)
                   for h in hashes if why[h] is None}
        for h, names in lacking.items():
            if names:
                why[h] = "never measured here: " + "; ".join(names)
        if not any(why[h] is not None and h not in lacking for h in hashes):
            # every commit to measure has results at the suite's versions: only what it lacks
            chunks_todo = {n for names in lacking.values() for n in names}
    if args.rerun:
        why = {h: "--rerun" if w is None else w for h, w in why.items()}
    done = {h for h in hashes if why[h] is None}
    todo = [h for h in hashes if h not in done]
    again = [h for h in todo if why[h]]

    hashfile = os.path.join(root, ".asv", "track-commits.txt")
    # No --skip-existing-commits: asv would skip any commit with a result file, complete or
    # not; which commits to run is decided above and handed over in the hash file.
    # Samples kept so that the summary tables can give mean and std, not only asv's median.
    run = ["run", f"HASHFILE:{hashfile}", f"--machine={name}", "--record-samples",
           "--show-stderr"]
    child_env = asv_env()
    runs = plan(root, tier, args.bench, env, child_env, args.chunk, args.each_chunk, chunks_todo)
    publish = ["publish", "--no-pull"]
    log_path = os.path.abspath(args.log or os.path.join(root, ".asv", "track.log"))

    say(f"perfmodel track: machine {name}"
        + (f", tier {tier}" if tier else ", asv -b " + " ".join(args.bench)),
        f"  {len(hashes)} commit(s) " + ("given" if args.commit else f"of {branch}")
        + f", {len(done)} already measured here"
        + (f", {len(again)} to measure again" if again else "")
        + f"; asv's full output: {log_path}", flush=True)
    if args.dry_run:
        for h in again:
            say(f"  {h[:8]} {subjects[h]}: to measure again: {why[h]}")
        say(f"asv machine record for {name}: {json.dumps(machine_record(name, env))}")
        for label, extra in runs:
            todo_warm = warming(root, tier, extra, args.prewarm)
            if todo_warm:
                say(f"warm first: {len(todo_warm)} cells whose first step compiles, "
                    f"{_workers(args.prewarm)} at a time (perfmodel/prewarm.py)")
            if label:
                say(f"# {label}")
            say("$ asv " + " ".join(run + extra) + "    # " + " ".join(h[:8] for h in todo))
        if not args.no_publish:
            say("$ asv " + " ".join(publish))
        return 0

    register_machine(name, env)
    os.makedirs(os.path.dirname(hashfile), exist_ok=True)
    with open(hashfile, "w") as f:
        f.write("\n".join(todo) + "\n")
    os.makedirs(os.path.dirname(log_path), exist_ok=True)
    t_start, t_wall = time.monotonic(), time.time()
    try:
        status, failed, pages = _run_and_publish(
            args, run, runs, publish, todo, subjects, why, root, child_env, log_path, results_dir, name,
            hashes, done, tier)
    except KeyboardInterrupt:
        say(f"perfmodel track: interrupted; asv and the processes it started are stopped; "
            f"{_kept(todo, results_dir, name, t_wall)}; asv's output: {log_path}",
            file=sys.stderr, flush=True)
        return 130

    html = os.path.join(root, conf.get("html_dir", "html"))
    say("", f"done in {_minutes(time.monotonic() - t_start)}"
        + (f"; {failed} cell(s) failed (their errors are in the log)" if failed else ""))
    say(f"results: {os.path.join(results_dir, name)}{os.sep}   (new files: commit them with "
        f"`git add {os.path.relpath(os.path.join(results_dir, name), root)}`)")
    if not args.no_publish:
        say(f"site:    {os.path.join(html, 'index.html')}   (view it: asv preview, then open "
            "the address it prints)")
        for page in pages:
            say(f"         {page}")
    if len(hashes) > 1:
        say(f"compare: asv compare --machine {name} {hashes[-1][:8]} {hashes[0][:8]}")
    say(f"log:     {log_path}")
    return status


def _chunk_regex(chunk: str | None) -> re.Pattern:
    try:
        return re.compile(chunk or "")
    except re.error as err:
        raise UserError(f"--chunk {chunk!r} is not a regular expression: {err}") from None


def plan(root: str, tier: str | None, bench: list[str] | None, env: dict,
         child_env: dict, chunk: str | None = None, each_chunk: bool = False,
         only: set[str] | None = None) -> list[tuple[str, list[str]]]:
    """The asv runs of a tracking job, as (label, asv run arguments beyond the common ones):
    the user's -b regexes; or the tier's cells in one run; or, for the full GPU tier, its plan
    (benchmarks/tiers.py gpu_plan: the gate's cells in their 2 rounds, then the rest in one
    round: one asv run, or with ``each_chunk`` one asv run per chunk, each saved when it ends;
    ``only``: of those, the chunks named, the ones the commits lack, unmeasured_chunks).
    A CPU's history is history, not a verdict (perfmodel gate measures its own two commits):
    one round of history sampling a cell, asked of the suite through ``child_env``, as the full
    GPU tier's chunks are; a history run measures each grid point's cells in one process
    (benchmarks/common.py Group)."""
    if bench:
        return [("", [f"--bench={pattern}" for pattern in bench])]
    tiers = load_tiers(root)
    if tier == "gpu":
        chunks = [c for c in tiers.gpu_plan() if _chunk_regex(chunk).search(c[0])]
        if not chunks:
            raise UserError(f"--chunk {chunk!r} names no chunk; the chunks: "
                            + ", ".join(name for name, _, _ in tiers.gpu_plan()))
        if only is not None:
            chunks = [c for c in chunks if c[0] in only]
        runs = [(name, [f"--bench={r}" for r in regexes]
                 + (["-a", f"rounds={rounds}"] if rounds else []))
                for name, regexes, rounds in (chunks if each_chunk else merged(chunks))]
        # a history run: the chunks' cells are measured a grid point per process (the gate's
        # cells keep their process per round: tiers.grouped)
        child_env.update([tiers.HISTORY_RUN_ENV])
        return runs
    extra = [f"--bench={r}" for r in tiers.selection(tier)]
    if env.get("device") != "cuda":
        extra += ["-a", f"rounds={tiers.HISTORY['rounds']}"]
        child_env.update([tiers.HISTORY_RUN_ENV])
    return [("", extra)]


def _workers(asked: int | None) -> int:
    return prewarm.default_workers() if asked is None else asked


def warming(root: str, tier: str | None, extra: list[str], asked: int | None) -> list:
    """The cells an asv run of the full GPU tier (its -b regexes in ``extra``) compiles, which
    perfmodel/prewarm.py opens several at a time before it; none elsewhere (a CPU tier
    compiles nothing; the quick tier and a -b choice are left as asv runs them)."""
    if tier != "gpu" or _workers(asked) < 1:
        return []
    regexes = [a.split("=", 1)[1] for a in extra if a.startswith("--bench=")]
    return prewarm.cells(load_tiers(root), tier, regexes)


def _env_python(root: str) -> str:
    """The Python of asv's newest environment (the commit asv installed last, the box's torch),
    or this one before asv has made any."""
    env_dir = os.path.join(root, ".asv", "env")
    found = []
    for name in os.listdir(env_dir) if os.path.isdir(env_dir) else []:
        python = os.path.join(env_dir, name, "bin", "python")
        if os.path.isfile(python):
            found.append((os.path.getmtime(os.path.join(env_dir, name)), python))
    return max(found)[1] if found else sys.executable


def _warm(root, tier, extra, asked, warmed: set, env: dict, log) -> None:
    """Warm the compile caches for one asv run's cells not warmed before in this job."""
    todo = [c for c in warming(root, tier, extra, asked) if json.dumps(c) not in warmed]
    if not todo:
        return
    warmed.update(json.dumps(c) for c in todo)
    workers = _workers(asked)
    say(f"  warming the compile caches: {len(todo)} cells, {workers} at a time", flush=True)
    got = prewarm.warm(root, _env_python(root), todo, workers, PREWARM_LIMIT_S, env)
    say(f"  warmed in {_minutes(got['s'])}: {got['warm']} warm, {got['n/a']} n/a, "
        f"{got['oom']} OOM alone, {got['error']} failed, {got['not run']} not run"
        + (f"; slowest {got['slowest'][1]} {got['slowest'][0]:.0f} s" if got["slowest"] else ""),
        flush=True)
    log.write(log_text("perfmodel prewarm: " + json.dumps(got) + "\n"))
    log.flush()
    cost_log = (env or os.environ).get(suite_cost.COST_LOG)
    if cost_log:  # beside the benchmark processes' lines: suite_cost tells asv's starts from it
        try:
            with open(cost_log, "a", encoding="utf-8") as f:
                f.write(json.dumps({"event": suite_cost.WARMING, "t": time.time(),
                                    "age_s": got["s"], "cells": len(todo)}) + "\n")
        except OSError:
            pass  # the cost log is a diagnostic: the run goes on without this line


# A chunk of the full GPU tier's plan (benchmarks/tiers.py gpu_plan): name, asv -b regexes,
# rounds (None: the class's own)
Chunk = tuple[str, list[str], int | None]


def merged(chunks: list[Chunk]) -> list[Chunk]:
    """Consecutive chunks of the same rounds as one asv run. Each asv run discovers the suite
    and starts its forkserver, both importing torch (8 s a run on a 2-core CPU; 10-25 s per
    chunk on the H200, from the chunks' wall time less their processes'), and saves a commit's
    results only when it ends: separate chunks trade that start for a save each
    (``--each-chunk``)."""
    out: list[Chunk] = []
    for name, regexes, rounds in chunks:
        if out and out[-1][2] == rounds:
            out[-1] = (f"{out[-1][0]}; {name}", out[-1][1] + list(regexes), rounds)
        else:
            out.append((name, list(regexes), rounds))
    return out


def _run_and_publish(args, run, runs, publish, todo, subjects, why, root, child_env, log_path,
                     results_dir, name, hashes, done, tier) -> tuple[int, int, list[str]]:
    """asv run over ``todo`` (once per entry of ``runs``, the compile caches warmed before the
    runs that compile), then asv publish. Returns (status, failed cells, pages written)."""
    status, failed, pages = 0, 0, []
    with open(log_path, "w", encoding="utf-8") as log:
        log.write(log_text(f"perfmodel track: machine {name}, commits {' '.join(hashes)}\n"))
        warmed: set = set()
        for label, extra in runs if todo else []:
            _warm(root, tier, extra, args.prewarm, warmed, child_env, log)
            if label:
                say(f"  {label}:", flush=True)
            before = {h: failed_cells(results_dir, name, h) for h in todo}
            code, _ = _run(run + extra, todo, subjects, why, root, child_env, log, results_dir,
                           name, args.limit_per_commit * 60 * len(todo))
            if code not in (EXIT_CLEAN, EXIT_LEFT_OUT):
                status = code
                break  # a time limit or asv's own failure: what ran is kept, the rest waits
            status = max(status, code)
            code = _again(run, extra, todo, before, subjects, root, child_env, log, results_dir,
                          name, args.limit_per_commit * 60)
            if code not in (EXIT_CLEAN, EXIT_LEFT_OUT):
                status = code
                break
        failed = sum((cell_counts(results_dir, name, h) or {}).get("failed", 0) for h in todo)
        if status in (EXIT_CLEAN, EXIT_LEFT_OUT):  # asv's "some failed" counts as the cells do,
            status = EXIT_LEFT_OUT if failed else EXIT_CLEAN  # after they were measured again
        for h in hashes:
            if h in done:
                say(f"  {h[:8]} {subjects[h]}: already measured on this machine, "
                    + ("the chunks asked for" if args.chunk else "its whole tier")
                    + " (--rerun measures it again)", flush=True)
        if not args.no_publish and status in (EXIT_CLEAN, EXIT_LEFT_OUT):
            t0 = time.monotonic()
            with AsvChild(asvchild.asv_argv(*publish), root, child_env, log,
                          PUBLISH_LIMIT_S) as child:
                pages = [line.split("perfmodel: ", 1)[1].strip() for line in child.lines()
                         if "perfmodel: " in line]
                code = child.wait()
            if code != 0:
                say(f"asv publish failed (exit {code}"
                    + (f", stopped after {PUBLISH_LIMIT_S} s" if code == 124 else "")
                    + f"); see {log_path}", flush=True)
                status = status or code
            else:
                say(f"  asv publish: {_minutes(time.monotonic() - t0)}", flush=True)
    return status, failed, pages


AGAIN_AT_MOST = 20  # more failed cells in one run than this: not a passing fault, left as they are


def _again(run, extra, todo, before, subjects, root, env, log, results_dir, name, limit) -> int:
    """Measure once more, each commit in an asv run of its own, the cells that failed in the
    run just ended (``before``: each commit's failed cells before it). A failure can be the
    box's rather than the cell's: on the H200 two of 8038 processes died in asv_runner's own
    lookup of a benchmark every other process found ("Could not find benchmark", 2026-12-06),
    and a cell's results then lacked a status that one more process records. A cell that
    fails again stays failed, its errors in the log twice; the retry's own line says so.
    Returns asv's status (EXIT_CLEAN when nothing was measured again)."""
    status = EXIT_CLEAN
    for h in todo:
        cells = sorted(failed_cells(results_dir, name, h) - before.get(h, set()))
        if not cells or len(cells) > AGAIN_AT_MOST:
            continue
        say(f"  measuring again, once, the {len(cells)} cell(s) that failed at {h[:8]}:",
            flush=True)
        hashfile = os.path.join(root, ".asv", "track-again.txt")
        with open(hashfile, "w") as f:
            f.write(h + "\n")
        pick = "^(?:" + "|".join(re.escape(c) for c in cells) + ")$"
        rest = [a for a in extra if not a.startswith("--bench=")]
        code, _ = _run([run[0], f"HASHFILE:{hashfile}", *run[2:], f"--bench={pick}", *rest],
                       [h], subjects, {h: None}, root, env, log, results_dir, name, limit)
        if code not in (EXIT_CLEAN, EXIT_LEFT_OUT):
            return code
        status = max(status, code)
    return status


def _run(run, todo, subjects, why, root, env, log, results_dir, name, limit) -> tuple[int, int]:
    """asv run, printing one line per commit as asv moves on. Returns (status, failed cells)."""
    order = {h[:8]: i for i, h in enumerate(todo)}
    failed = 0
    current, t_commit = None, time.monotonic()

    def finish(commit):
        nonlocal failed
        counts = cell_counts(results_dir, name, commit) or {"measured": 0, "n/a": 0, "failed": 0}
        failed += counts["failed"]
        say(f"  [{order[commit[:8]] + 1}/{len(todo)}] {commit[:8]} {subjects[commit]}: "
            f"{_minutes(time.monotonic() - t_commit)}, {counts['measured']} cells measured, "
            f"{counts['n/a']} n/a here, {counts['failed']} failed"
            + (f"; measured again: {why[commit]}" if why[commit] else ""), flush=True)

    t_wall = time.time()
    with AsvChild(asvchild.asv_argv(*run), root, env, log, limit) as child:
        for line in child.lines():
            match = _COMMIT_LINE.search(line)
            if match and match.group(1)[:8] in order:
                if current:
                    finish(current)
                current = next(h for h in todo if h.startswith(match.group(1)[:8]))
                t_commit = time.monotonic()
        code = child.wait()
    if code == 124:  # the commit in progress was not saved: no line for it
        say(f"asv run stopped after {_minutes(limit)} (--limit-per-commit); "
            f"{_kept(todo, results_dir, name, t_wall)}", flush=True)
        return code, failed
    if current:
        finish(current)
    if code not in (0, 2):
        say(f"asv run failed (exit {code}); the end of {log.name}:", flush=True)
        with open(log.name, encoding="utf-8", errors="replace") as f:
            say(*(line.rstrip("\n") for line in f.readlines()[-15:]), flush=True)
        return code, failed
    # asv run's 2 is "some benchmarks failed": the commits ran, the failed cells are noted
    return (EXIT_LEFT_OUT if code == 2 or failed else code), failed
