"""asv's Regressions page by the merge gate's rule (perfmodel.verdict), not by asv's step detection.

asv 0.6's Regressions publisher (order 3) runs its step detection over every graph and writes
html/regressions.json ([name, graph path, graph params, param index, last value, best value,
jumps]; a jump is [rev before or None, rev after, level before, level after]) and the Atom feed
regressions.xml from it. Its test is a step of more than ``regressions_thresholds`` (5% here)
between noisy levels: on a shared 2-core CPU three commits that change no code gave 22 entries.

``judge_regressions`` runs after it (the publisher GateVerdicts, order 4) and rewrites both files:
each jump is judged between the commit before it and the commit after it with the stored results
of the graph's machine, at that device's factor, as the summary's change table does. It is kept only
when the rule says slower or a status got worse, and only for the gate's cells (status changes
everywhere); a kept time jump is one measurement per commit, so its name carries
"(unconfirmed: perfmodel gate A B)". asv's page shows the name as text and strips everything
from the first "(" to find the benchmark, so the added words change nothing else on it.
"""
from __future__ import annotations

import json
import math
import os

from ..errors import UserError
from ..names import FAILED, OK
from ..verdict import SLOWER, STATUS, Measured, judge
from .gaterule import gate_rule

FILE = "regressions.json"


def _measured(row) -> Measured:
    if row is None or row["status"] not in (OK, FAILED):
        return Measured(math.nan)
    if row["status"] == FAILED:
        return Measured(None)
    return Measured(row["value"], row["stats"] or None, row["samples"])


class _Machine:
    """One machine's stored results, indexed for the jumps (read once, through load.py)."""

    def __init__(self, results_dir, machine, revisions, benchmarks=None):
        from .load import load  # noqa: PLC0415 (pandas)

        self.rule = None
        self.rows: dict = {}
        frame = load(str(results_dir), machine).frame
        if benchmarks is not None:  # only the benchmarks asv's list names: the rest is never
            frame = frame[frame["benchmark"].isin(benchmarks)]  # read (3 s of a 36 s publish)
        for r in frame.to_dict("records"):
            rev = revisions.get(r["commit"])
            if rev is not None:
                self.rows.setdefault((r["benchmark"], r["cell"]), {})[rev] = r

    def pair(self, bench, cell, rev_before, rev_after):
        """The rows of the commit before the jump (asv's, or the last commit before the commit
        after that has a value there: asv's graph skips n/a points) and of the commit after;
        None where there is none."""
        series = self.rows.get((bench, cell), {})
        if rev_before is None:
            earlier = [r for r, row in series.items() if r < rev_after
                       and row["status"] in (OK, FAILED)]
            rev_before = max(earlier) if earlier else None
        return series.get(rev_before), series.get(rev_after)


def judge_regressions(html_dir, results_dir, repo, benchmarks, graphs, revisions) -> list[str]:
    """Rewrite asv's regressions.json (and its feed) to what the gate's rule calls a regression.
    Returns the lines for asv publish's log. ``revisions``: commit hash -> asv's revision."""
    path = os.path.join(html_dir, FILE)
    try:
        with open(path, encoding="utf-8") as fh:
            entries = json.load(fh)["regressions"]
    except (OSError, ValueError, KeyError, TypeError) as err:
        return [f"warning: {FILE} not judged ({type(err).__name__}): asv's list is as asv made it"]
    machine_of = {graph.path + ".json": graph.params.get("machine") for _, graph in graphs}
    hash_of = {rev: h for h, rev in revisions.items()}
    machines: dict = {}
    named: dict = {}  # machine -> the benchmarks its entries name
    for entry in entries:
        try:
            named.setdefault(machine_of.get(entry[1]), set()).add(entry[0].partition("(")[0])
        except (TypeError, IndexError, AttributeError):
            pass  # a malformed entry: the loop below says so
    kept, unconfirmed, dropped, problems = [], 0, 0, []
    for entry in entries:
        name, graph_path, graph_params, idx, last_v, best_v, jumps = entry
        bench, _, rest = name.partition("(")
        cell = rest[:-1] if rest.endswith(")") else ""
        machine = machine_of.get(graph_path)
        if machine is None:
            dropped += len(jumps or [])
            continue
        if machine not in machines:
            try:
                m = _Machine(results_dir, machine, revisions, named.get(machine))
            except UserError as err:  # its results unreadable: nothing of it can be judged
                problems.append(f"warning: {machine}: its steps left out: {err}")
                m = None
            else:
                m.rule = gate_rule(machine, repo)
            machines[machine] = m
        m = machines[machine]
        if m is None:
            dropped += len(jumps or [])
            continue
        status = (benchmarks.get(bench) or {}).get("unit") == "status"
        for jump in jumps or []:
            ra, rb = m.pair(bench, cell, jump[0], jump[1])
            a = ra["commit"] if ra is not None else hash_of.get(jump[0], "")
            v = judge(_measured(ra), _measured(rb), m.rule.factor, status=status,
                      commits=(a, hash_of.get(jump[1], "")))
            worse = v.change == STATUS and v.worse
            if not (worse or (v.change == SLOWER and m.rule.gated(name))):
                dropped += 1
                continue
            label = name
            if v.change == SLOWER and not v.confirmed:
                unconfirmed += 1
                label = f"{name} (unconfirmed: {v.command})" if v.command else name
            kept.append([label, graph_path, graph_params, idx, last_v, best_v, [jump]])
    with open(path, "w", encoding="utf-8") as fh:
        json.dump({"regressions": kept}, fh, separators=(",", ":"))
    return [f"Regressions page by the gate's rule: {len(kept)} kept ({unconfirmed} unconfirmed, "
            f"each with the perfmodel gate command that confirms it), {dropped} of asv's steps "
            "dropped (within the device's factor, not significant, or outside the gate's cells)"
            ] + problems


def rewrite_feed(conf, benchmarks, revisions) -> None:
    """asv's Atom feed (regressions.xml) again, from the judged list."""
    from asv.plugins.regressions import Regressions  # noqa: PLC0415

    with open(os.path.join(conf.html_dir, FILE), encoding="utf-8") as fh:
        data = json.load(fh)["regressions"]
    # asv 0.6's own writer of the feed (a classmethod of its publisher); tests/test_site.py
    # fails if it changes
    Regressions._save_feed(conf, benchmarks, data, revisions,
                           {r: h for h, r in revisions.items()})
