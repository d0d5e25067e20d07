"""Where an asv run's time went: ``python -m perfmodel.suite_cost COST_LOG [--wall SECONDS]``.

The suite (benchmarks/common.py) appends one JSON line per benchmark process to the file named by
$PERFMODEL_COST_LOG: the class and parameters, how long the process lived (``age_s``, from its
fork to its teardown), whether the cell was n/a, and for each cell it opened the wall seconds of
the driver's start, building, the first step (where torch.compile and Triton's autotuner run),
the rest of the warm-up, the metered step and the samples. This module adds them up:

- per kind of process (a timed cell, a status/memory read, n/a) and benchmark class;
- per phase, over the timed processes;
- per group of cells (attention implementation, model variant and preset, warm-up preset);
- the costliest cells (a cell that a span's process measured for another grid point, its own
  phases under its own point, benchmarks/tiers.py SPANS);
- per group, the compile caches' hits and misses, where the lines carry them (``caches``: the
  FX graph cache's and AOTAutograd's counters, since 2026-12-07).

Where the lines carry the wall clock (``t``, since 2026-12-07), it also says how long asv took
between one process's last teardown and the next one's fork (its own bookkeeping, the
process's exit and the fork: what ``other`` in the phases does not see), per class, with the long
pauses (asv's start of a run, the warming between chunks) apart. perfmodel track writes a line of
its own for each warming (``WARMING``, since 2026-12-07): the pause after it is then the next
asv run's start alone.

``--wall`` (the run's wall seconds) adds the share spent outside benchmark processes (asv's
discovery, environment builds, process start-up in asv itself).
"""
from __future__ import annotations

import argparse
import gzip
import json
import sys
from collections import defaultdict

PHASES = ("cuda_init_s", "build_s", "first_step_s", "warmup_rest_s", "meter_s", "sampling_s")


COST_LOG = "PERFMODEL_COST_LOG"  # the environment variable naming the log (benchmarks/common.py)

# perfmodel track's line for the compile caches' warming before an asv run (perfmodel/prewarm.py):
# {"event": WARMING, "t": its end on the wall clock, "age_s": its seconds, "cells": how many}
WARMING = "warming"


def read(paths: list[str]) -> tuple[list[dict], int]:
    """One record per benchmark process (and per warming, ``event``), and how many lines could
    not be read (a process killed mid-write). asv tears a cell down and sets it up again around
    every sample, so a process writes a line each time, each with its costs so far: its last
    line counts."""
    last, bad = {}, 0
    for path in paths:
        opener = gzip.open if path.endswith(".gz") else open
        with opener(path, "rt", encoding="utf-8", errors="replace") as f:
            for line in f:
                try:
                    rec = json.loads(line)
                except ValueError:
                    bad += 1
                    continue
                if isinstance(rec, dict) and rec.get("event") == WARMING:
                    last[(path, WARMING, rec.get("t"))] = rec  # perfmodel track's, once a warming
                elif isinstance(rec, dict) and isinstance(rec.get("cells"), list):
                    key = (path, rec.get("pid"), rec.get("benchmark"), str(rec.get("params")))
                    if float(rec.get("age_s") or 0) >= float(last.get(key, {}).get("age_s") or 0):
                        last[key] = rec
                else:
                    bad += 1
    return list(last.values()), bad


def kind_of(rec: dict) -> str:
    """'timed' (took samples), 'opened' (opened a cell for a read), 'read' (a side file), 'n/a'."""
    if rec.get("na"):
        return "n/a"
    cells = rec["cells"]
    if any(c.get("samples") for c in cells):
        return "timed"
    if any("build_s" in c for c in cells):
        return "opened"
    return "read"


def cell_phases(c: dict) -> dict:
    """One cell's own seconds in a cost-log line, by phase (PHASES)."""
    out = {key: float(c.get(key) or 0.0)
           for key in ("cuda_init_s", "build_s", "first_step_s", "meter_s", "sampling_s")}
    out["warmup_rest_s"] = max(0.0, float(c.get("warmup_s") or 0.0) - out["first_step_s"])
    return out


def phases(rec: dict) -> dict:
    out = dict.fromkeys(PHASES, 0.0)
    for c in rec["cells"]:
        for key, value in cell_phases(c).items():
            out[key] += value
    age = float(rec.get("age_s") or 0.0)
    out["other_s"] = max(0.0, age - sum(out.values()))
    return out


def group_of(rec: dict) -> str:
    """A readable group: the attention implementation, the model variant and preset, ..."""
    p = rec.get("params") or []
    name = rec.get("benchmark", "?")
    if name == "Attention" and len(p) >= 2:
        return f"Attention {p[0].strip(chr(39))} {p[1].strip(chr(39))}"
    if name == "Model" and len(p) >= 4:
        return f"Model {p[3].strip(chr(39))} {p[0].strip(chr(39))} {p[2].strip(chr(39))}"
    if name == "Warmup" and len(p) >= 1:
        return f"Warmup {p[0].strip(chr(39))}"
    return name


LONG_GAP_S = 5.0  # longer is not one process's hand-over: asv's start, the warming


def gaps(records: list[dict]) -> list[tuple[str, float]]:
    """(class of the next process, seconds) between consecutive processes of one log: from a
    process's last line to the next one's fork (its clock less its age). Lines without a clock
    (before 2026-12-07) give none; processes that overlap give 0. A warming (perfmodel track's
    line) is a span of its own, named WARMING: the pause after it is the next asv run's start."""
    spans = sorted((float(r["t"]) - float(r.get("age_s") or 0.0), float(r["t"]),
                    r.get("event") or r.get("benchmark", "?")) for r in records
                   if isinstance(r.get("t"), (int, float)) and r.get("age_s") is not None)
    out, end = [], None
    for start, stop, name in spans:
        if end is not None:
            out.append((name, max(0.0, start - end)))
        end = stop if end is None else max(end, stop)
    return out


def gap_table(records: list[dict]) -> str:
    """asv's own time between processes, per class: the hand-overs and the long pauses."""
    by = defaultdict(list)
    for name, g in gaps(records):
        by[name].append(g)
    if not by:
        return ""
    warmed = [float(r.get("age_s") or 0.0) for r in records if r.get("event") == WARMING]
    rows = []
    for name, gs in sorted(by.items()):
        short = sorted(g for g in gs if g < LONG_GAP_S)
        long_ = [g for g in gs if g >= LONG_GAP_S]
        median = short[len(short) // 2] * 1000 if short else 0.0
        rows.append([name, len(short), f"{sum(short):.1f}", f"{median:.0f}",
                     len(long_), f"{sum(long_):.1f}"])
    return ("Between processes (asv's hand-over: a process's last line to the next one's fork; "
            f"pauses of {LONG_GAP_S:.0f} s and more apart; a class's pause after the warming is "
            "its asv run's start):\n"
            + _table(["class", "hand-overs", "seconds", "median ms", "pauses", "pause seconds"],
                     rows)
            + (f"\nThe warming (perfmodel track, before an asv run): {len(warmed)} time(s), "
               f"{sum(warmed):.1f} s" if warmed else ""))


def _cell_label(rec: dict, params) -> str:
    return f"{rec.get('benchmark')}({', '.join(str(p) for p in params or [])})"


def _table(header: list[str], rows: list[list]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(str(x) for x in row) + " |" for row in rows]
    return "\n".join(lines)


def summary(records: list[dict], wall: float | None = None, top: int = 12) -> str:
    between = gap_table(records)  # the warming's lines too; the tables below are processes'
    records = [r for r in records if not r.get("event")]
    out = []
    total = sum(float(r.get("age_s") or 0.0) for r in records)
    by_kind = defaultdict(lambda: [0, 0.0])
    for r in records:
        k = (r.get("benchmark", "?"), kind_of(r))
        by_kind[k][0] += 1
        by_kind[k][1] += float(r.get("age_s") or 0.0)
    out.append(f"{len(records)} benchmark processes, {total:.0f} s inside them"
               + (f", {wall:.0f} s wall ({max(0.0, wall - total):.0f} s outside them: asv's "
                  "discovery, environments, process start-up)" if wall else ""))
    out.append("")
    out.append(_table(["class", "process", "count", "seconds", "mean s"],
                      [[c, k, n, f"{s:.1f}", f"{s / n:.3f}"]
                       for (c, k), (n, s) in sorted(by_kind.items(), key=lambda kv: -kv[1][1])]))
    timed = [r for r in records if kind_of(r) in ("timed", "opened")]
    if timed:
        sums = defaultdict(float)
        for r in timed:
            for key, value in phases(r).items():
                sums[key] += value
        t = sum(sums.values()) or 1.0
        out.append("")
        out.append(f"Phases of the {len(timed)} processes that opened a cell "
                   "(first_step: compilation and autotuning happen there):")
        out.append(_table(["phase", "seconds", "share"],
                          [[k, f"{v:.1f}", f"{v / t:.0%}"] for k, v in
                           sorted(sums.items(), key=lambda kv: -kv[1])]))
    groups = defaultdict(lambda: [0, 0.0, 0.0])
    for r in records:
        g = groups[group_of(r)]
        g[0] += 1
        g[1] += float(r.get("age_s") or 0.0)
        g[2] += phases(r)["first_step_s"] if kind_of(r) != "n/a" else 0.0
    out.append("")
    out.append(_table(["group", "processes", "seconds", "of which first steps"],
                      [[g, n, f"{s:.1f}", f"{f:.1f}"] for g, (n, s, f) in
                       sorted(groups.items(), key=lambda kv: -kv[1][1])]))
    caches = defaultdict(lambda: defaultdict(int))
    for r in records:
        for key, n in (r.get("caches") or {}).items():
            caches[group_of(r)][key] += int(n)
    if caches:
        keys = sorted({k for counts in caches.values() for k in counts})
        out.append("")
        out.append("Compile caches per group (hits and misses, summed over its processes; a miss "
                   "compiled):")
        out.append(_table(["group"] + keys,
                          [[g] + [counts.get(k, 0) for k in keys] for g, counts in
                           sorted(caches.items())]))
    if between:
        out.append("")
        out.append(between)
    cells = defaultdict(float)
    for r in records:
        own = float(r.get("age_s") or 0.0)
        for c in r["cells"]:  # a cell of another grid point, measured here (a span): its own
            if isinstance(c.get("params"), list):
                spent = sum(cell_phases(c).values())
                cells[_cell_label(r, c["params"])] += spent
                own -= spent
        cells[_cell_label(r, r.get("params"))] += max(0.0, own)
    out.append("")
    out.append(f"The {top} costliest cells (all their processes):")
    out.append(_table(["cell", "seconds"], [[c, f"{s:.1f}"] for c, s in
                                              sorted(cells.items(), key=lambda kv: -kv[1])[:top]]))
    return "\n".join(out)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="python -m perfmodel.suite_cost",
                                description="Where an asv run's time went, from the suite's "
                                            "cost log ($PERFMODEL_COST_LOG).")
    p.add_argument("logs", nargs="+", help="cost log files (JSON lines)")
    p.add_argument("--wall", type=float, default=None, help="the run's wall seconds")
    p.add_argument("--top", type=int, default=12, help="how many costliest cells (default 12)")
    args = p.parse_args(argv)
    try:
        records, bad = read(args.logs)
    except OSError as err:
        print(f"suite_cost: error: cannot read {err.filename}: {err.strerror}", file=sys.stderr)
        return 2
    print(summary(records, args.wall, args.top))
    if bad:
        print(f"\n({bad} unreadable line(s) left out)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
