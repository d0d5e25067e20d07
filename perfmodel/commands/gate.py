"""``perfmodel gate BASE HEAD``: the merge gate, asv continuous in two stages.

1. **Screen**: plain ``asv continuous BASE HEAD`` over the tier (2 rounds per cell, interleaved
   between the commits), every cell's ratio kept (``--no-only-changed``).
2. **Confirm**: every time cell slower than ``--screen`` in the screen, and every other cell
   asv flagged, is measured again by ``asv continuous -b <those cells> -a rounds=N``, a few
   cells at a time (tiers.py GATE ``confirm_batch``), so each round's block of one commit lasts
   seconds instead of a tier (a minute and more on a CPU) and a change in the machine's own
   speed meets both commits alike. Its verdict is the gate's: asv's on the pooled samples, kept
   only when the rounds agree (the median over rounds of HEAD/BASE, each round's two processes
   paired, is beyond the factor as well, and at most one round in eight went the other way:
   perfmodel.verdict.confirm). Each benchmark process
   writes its samples to a round log for this (benchmarks/common.py ``log_round``).

Why: a shared 2-core CPU host changes speed by up to 1.45x for minutes at a time (a compute-
bound matmul took 4.3 ms, then 6.3 ms for minutes, in fresh processes; notes/journal.md), so two
commits measured a minute apart differ by that much whatever their code, and more rounds of the
whole tier cannot fix it (4 rounds: an unchanged commit still read 0.78). What a result means is
unchanged: every number is asv's, measured at the commit it is filed under.

Exit status: 0 nothing confirmed slower, 1 a confirmed slowdown (asv's exit status of the
confirm stage), 2 an error or no verdict (a usage error, asv gave no comparison, or cells the
gate must judge went unmeasured: n/a at HEAD, or too busy a machine), 3 an internal error
(perfmodel.names), 130 interrupted. The last lines are a table: every screened cell, both ratios.
"""
from __future__ import annotations

import ast
import json
import os
import re
import sys
import time

from .. import asvchild, verdict
from ..errors import UserError
from ..identity import register_machine, this_machine
from ..repo import load_tiers, repo_root, resolve, result_files
from ..untrusted import say, visible

ROUND_LOG = "PERFMODEL_ROUND_LOG"  # benchmarks/common.py writes each process's samples there

ROW = re.compile(r"^\|\s*([+!x-]?)\s*\|(.*)\|\s*$")  # a row of asv's comparison table
GATE_LIMIT_S = 4 * 3600


def add_parser(sub) -> None:
    p = sub.add_parser(
        "gate", help="the merge gate: asv continuous BASE HEAD, moved cells confirmed with "
                     "finely interleaved rounds",
        description="Did HEAD make anything slower than BASE on this machine? asv continuous "
        "BASE HEAD over the tier (the screen), then every cell slower than --screen (and any "
        "asv flagged) measured again, a few cells per asv call, in rounds alternating between "
        "the two commits (the confirm stage, whose verdict is the gate's: asv's on the pooled "
        "samples, kept only when the rounds, paired, agree). The last lines are a table of the "
        "cells confirmed and the verdict; asv's output goes to a new log each run.\n\n"
        "Exit status: 0 nothing confirmed slower; 1 a confirmed slowdown; 2 an error (an "
        "unknown commit, the same commit twice, asv gave no comparison, a bad option) or no "
        "verdict (time cells n/a at HEAD that BASE measured, or a machine too busy to time "
        "them): one line saying what to do; 130 interrupted (Ctrl-C): asv stopped, no verdict.")
    p.add_argument("base", help="the commit merged into (e.g. main)")
    p.add_argument("head", help="the commit to judge (e.g. HEAD)")
    p.add_argument("--factor", type=float, default=None,
                   help="asv's factor: a time must move by more than this (default: the "
                        "device's, benchmarks/tiers.py GATE: 1.2 on a CPU, 1.05 on a GPU)")
    p.add_argument("--tier", default="auto",
                   help="the cells compared: auto (the device's gate tier: cpu on a CPU, "
                        "gpu-quick on a GPU) or any tier of benchmarks/tiers.py")
    p.add_argument("--screen", type=float, default=None,
                   help="time cells slower than this in the screen are "
                        "measured again (default: the device's, 1.1 on a CPU, 1.03 on a GPU)")
    p.add_argument("--rounds", type=int, default=8,
                   help="asv rounds per cell in the confirm stage")
    p.add_argument("--bench", "-b", default=None,
                   help="asv -b regex for the screen, instead of the tier")
    p.add_argument("--machine", default=None,
                   help="asv machine name (default: from the device and stack, as perfmodel "
                        "track --print-machine prints it)")
    p.add_argument("--log", default=None,
                   help="asv's output (default: a new .asv/gate-DATE-TIME-BASE-HEAD.log each run)")
    p.set_defaults(func=main)


def parse_table(stdout: str) -> dict[str, tuple[str, float | None]]:
    """benchmark name -> (asv's mark: '+', '-', 'x', '!' or '', ratio or None) from asv's table."""
    out = {}
    for line in stdout.splitlines():
        m = ROW.match(line.strip())
        if not m:
            continue
        cols = [c.strip() for c in m.group(2).split("|")]
        if len(cols) < 4 or not re.match(r"^[\w.]+\.(time|track|peakmem|mem)_", cols[-1]):
            continue
        ratio = cols[-2].lstrip("~")
        try:
            value = float(ratio)
        except ValueError:
            value = None
        out[cols[-1]] = (m.group(1), value)
    return out


def flagged(stdout: str) -> dict[str, str]:
    """The cells asv's table marks slower ('+'), faster ('-') or changed in status ('!')."""
    return {name: mark for name, (mark, _) in parse_table(stdout).items()
            if mark in ("+", "-", "!") and verdict.judged(name)}


BUSY = "machine too busy to measure"  # what the suite prints for a cell it would not time


def _has_value(text: str) -> bool:
    return text not in ("n/a", "failed", "")


def unmeasured(stdout: str) -> tuple[list[str], list[str]]:
    """Time cells of asv's table that give the gate nothing to judge although they should:
    (measured at BASE but n/a at HEAD, n/a at both commits). A cell n/a at BASE only is new at
    HEAD, and one that failed is flagged by asv itself ('x', '!')."""
    lost, neither = [], []
    for line in stdout.splitlines():
        m = ROW.match(line.strip())
        if not m:
            continue
        cols = [c.strip() for c in m.group(2).split("|")]
        if len(cols) < 4 or ".time_" not in cols[-1] or m.group(1) in ("x", "!"):
            continue
        before, after = cols[0], cols[1]
        if _has_value(before) and after == "n/a":
            lost.append(cols[-1])
        elif before == "n/a" and after == "n/a":
            neither.append(cols[-1])
    return lost, neither


def no_verdict(stdout: str, stage: str) -> str | None:
    """Why asv's run cannot give a verdict (None: it can). A cell the machine was too busy to
    time reads n/a, which asv does not flag: without this a gate on a loaded machine measured
    nothing and passed (1440 time cells n/a, exit 0)."""
    rows = parse_table(stdout)
    times = [n for n in rows if ".time_" in n]
    compared = [n for n in times if rows[n][1] is not None]
    lost, neither = unmeasured(stdout)
    busy = stdout.count(BUSY)
    if times and not compared:
        return f"the {stage} compared none of its {len(times)} time cells (all n/a)"
    if busy:
        return (f"the machine was too busy to time {busy} cell(s) in the {stage} (n/a, and asv "
                "flags no n/a); run the gate again on a quieter machine")
    if lost:
        return (f"{len(lost)} time cell(s) measured at BASE are n/a at HEAD in the {stage}, e.g. "
                f"{visible(lost[0])}; if HEAD drops them on purpose, choose the cells with "
                "--bench")
    return None


def to_confirm(screen: dict, threshold: float) -> list[str]:
    """Cells the confirm stage measures again: time cells slower than ``threshold``, and anything
    asv marked (a slower or faster flag, a failure). A cell merely faster in the screen is left
    alone: the gate judges slowdowns, and on a shared CPU the screen moves a third of the tier
    beyond 1.1 either way (each confirmed cell costs about 40 s there)."""
    names = []
    for name, (mark, ratio) in screen.items():
        if not verdict.judged(name):  # a diagnostic (the host's issue time): never judged
            continue
        if mark or (".time_" in name and ratio is not None and ratio > threshold):
            names.append(name)
    return sorted(names)


ASV_NAME = re.compile(r"^(?:\w+\.)*?(\w+\.time_\w+)\((.*)\)$")  # module.Class.time_x(params)


def round_key(name: str) -> tuple | None:
    """('Class.time_x', (params as text)) of an asv benchmark name, as the round log keys it."""
    m = ASV_NAME.match(name)
    if not m:
        return None
    try:
        values = ast.literal_eval(f"({m.group(2)},)") if m.group(2).strip() else ()
    except (ValueError, SyntaxError):
        return None
    return m.group(1), tuple(str(v) for v in values)


def read_rounds(path: str, base: str, head: str) -> dict:
    """round_key -> (BASE's processes, HEAD's processes), each a list of sample lists in the
    order the processes ran (one per round). A process's last line counts (its samples grow)."""
    last: dict = {}
    try:
        with open(path, encoding="utf-8") as f:
            for line in f:
                try:
                    rec = json.loads(line)
                    key = (str(rec["benchmark"]), tuple(str(p) for p in rec["params"]))
                    commit, samples = str(rec["commit"]), [float(x) for x in rec["samples"]]
                    last[(key, commit, int(rec["pid"]))] = samples  # insertion: first line's place
                except (ValueError, KeyError, TypeError):
                    continue  # a torn or foreign line: that process is left out
    except OSError:
        return {}
    out: dict = {}
    for (key, commit, _pid), samples in last.items():
        runs = out.setdefault(key, ([], []))
        if commit and base.startswith(commit[:8]) and commit.startswith(base[:8]):
            runs[0].append(samples)
        elif commit and head.startswith(commit[:8]) and commit.startswith(head[:8]):
            runs[1].append(samples)
    return out


def batches(names: list[str], size: int) -> list[list[str]]:
    """The confirm stage's asv calls: ``size`` cells each (at least 1)."""
    size = max(1, int(size))
    return [names[i:i + size] for i in range(0, len(names), size)]


def new_log(root: str, base: str, head: str) -> str:
    """.asv/gate-<date>-<time>-<base>-<head>.log, never an earlier run's (a number is added
    within the same second); named by hashes, so digits, hex and dashes only."""
    stamp = time.strftime("%Y%m%d-%H%M%S")
    stem = os.path.join(root, ".asv", f"gate-{stamp}-{base[:8]}-{head[:8]}")
    return next(path for path in (stem + (f"-{i}" if i else "") + ".log" for i in range(1000))
                if not os.path.exists(path))


class KeptHistory:
    """The history of the two commits, as it was before the gate: asv continuous files its own
    readings of BASE and HEAD in results/<machine>/, over the history ``perfmodel track`` wrote
    there (and a gate on a busy machine writes n/a). On leaving, the gate's files move to
    ``keep`` (beside its log) and the history's files come back unchanged."""

    def __init__(self, root: str, machine: str, commits: tuple, keep: str):
        self.results = os.path.join(root, "results")
        self.machine, self.commits, self.keep = machine, commits, keep
        self.saved: list[tuple[str, bytes]] = []
        for commit in commits:
            for path in result_files(self.results, machine, commit):
                with open(path, "rb") as f:
                    self.saved.append((path, f.read()))

    def __enter__(self):
        return self

    def __exit__(self, *exc) -> bool:
        os.makedirs(self.keep, exist_ok=True)
        for commit in self.commits:
            for path in result_files(self.results, self.machine, commit):
                os.replace(path, os.path.join(self.keep, os.path.basename(path)))
        for path, data in self.saved:
            with open(path, "wb") as f:
                f.write(data)
        return False


def _continuous(base, head, machine, factor, extra, root, env, log) -> tuple[int, str]:
    code, out = asvchild.run(
        asvchild.asv_argv("continuous", f"--machine={machine}", f"--factor={factor}",
                          "--no-only-changed", "--show-stderr", *extra, "--", base, head),
        root, env, log, GATE_LIMIT_S)
    if code == 124:
        raise UserError(f"asv continuous stopped after {GATE_LIMIT_S // 3600} hours, the gate's "
                        f"time limit; its output: {log.name}")
    return code, out


def _last_words(out: str) -> str:
    """asv's last line that says something, for a message (escaped, shortened)."""
    lines = [line.strip() for line in out.splitlines() if line.strip()]
    text = visible(lines[-1] if lines else "no output")
    return text if len(text) <= 160 else text[:159] + "…"


def main(args) -> int:
    def check_settings():
        if args.factor is not None and args.screen is not None and (
                args.factor <= 1 or args.screen <= 1 or args.screen > args.factor):
            raise UserError(f"need 1 < --screen <= --factor, got screen {args.screen}, "
                            f"factor {args.factor}")

    check_settings()  # a user's own values first, before anything runs
    if args.rounds < 3:
        raise UserError(f"--rounds must be at least 3, got {args.rounds}")
    root = repo_root("perfmodel gate")
    base, head = resolve(root, args.base), resolve(root, args.head)
    if base == head:
        raise UserError(f"{args.base!r} and {args.head!r} are the same commit ({base[:8]}): "
                        "nothing to compare. Check out the branch to judge and run perfmodel "
                        "gate main HEAD there, or name two different commits (e.g. HEAD~1 HEAD)")
    name, env_stack = this_machine(args.machine)
    device = "cuda" if env_stack.get("device") == "cuda" else "cpu"
    tiers = load_tiers(root)  # the device's gate: its tier, factor and screen (tiers.py GATE)
    tier = tiers.GATE_TIER[device] if args.tier == "auto" else args.tier
    if tier not in tiers.TIERS:
        raise UserError(f"unknown tier {tier!r}; valid choices: auto, {', '.join(tiers.TIERS)}")
    if args.factor is None:
        args.factor = tiers.GATE[device]["factor"]
    if args.screen is None:
        args.screen = min(tiers.GATE[device]["screen"], args.factor)
    args.confirm_batch = tiers.GATE[device].get("confirm_batch", 4)
    check_settings()
    register_machine(name, env_stack)
    env = asvchild.asv_env()
    log_path = os.path.abspath(args.log or new_log(root, base, head))
    os.makedirs(os.path.dirname(log_path), exist_ok=True)
    t0 = time.monotonic()
    say(f"perfmodel gate: {_show(args.base)} ({base[:8]}) -> {_show(args.head)} ({head[:8]}) "
        f"on {name}, " + (f"asv -b {args.bench}" if args.bench else f"tier {tier}")
        + f", factor {args.factor}; asv's output: {log_path}", flush=True)
    keep = (log_path[: -len(".log")] if log_path.endswith(".log") else log_path) + "-results"
    with KeptHistory(root, name, (base, head), keep):
        return _judge(args, base, head, name, tier, tiers, root, env, log_path, t0, keep)


def _judge(args, base, head, name, tier, tiers, root, env, log_path, t0, keep) -> int:
    """The two stages and the verdict (the history of both commits is kept by the caller)."""
    try:
        with open(log_path, "w", encoding="utf-8") as log:
            extra = ["-b", args.bench] if args.bench else \
                [a for r in tiers.selection(tier) for a in ("-b", r)]
            code, out = _continuous(base, head, name, args.factor, extra, root, env, log)
            screen = parse_table(out)
            if not screen:
                raise UserError(f"asv continuous gave no comparison (exit {code}): "
                                f"{_last_words(out)}; its output: {log_path}")
            why = no_verdict(out, "screen")
            if why:
                say(f"perfmodel gate: no verdict: {why}; asv's output: {log_path}",
                    file=sys.stderr)
                return 2
            again = to_confirm(screen, args.screen)
            say(f"  screen: {len(screen)} cells compared in {time.monotonic() - t0:.0f} s, "
                  f"asv exit {code}; {len(again)} to confirm", flush=True)
            confirm: dict = {}
            codes: list[int] = []
            rounds_log = (log_path[: -len(".log")] if log_path.endswith(".log") else log_path) \
                + "-rounds.jsonl"
            if again:
                t1 = time.monotonic()
                size = args.confirm_batch
                for part in batches(again, size):
                    regex = "^(" + "|".join(re.escape(n) for n in part) + ")$"
                    code, out = _continuous(base, head, name, args.factor,
                                            ["-b", regex, "-a", f"rounds={args.rounds}"], root,
                                            dict(env, **{ROUND_LOG: rounds_log}), log)
                    codes.append(code)
                    confirm.update(parse_table(out))
                    why = no_verdict(out, "confirm stage")
                    if why:
                        say(f"perfmodel gate: no verdict: {why}; asv's output: {log_path}",
                            file=sys.stderr)
                        return 2
                say(f"  confirm: {len(again)} cells in {len(codes)} call(s) of at most {size}, "
                    f"{args.rounds} rounds each, in {time.monotonic() - t1:.0f} s, asv exit "
                    f"{max(codes)}", flush=True)
    except KeyboardInterrupt:
        say(f"perfmodel gate: interrupted after {time.monotonic() - t0:.0f} s; asv and the "
              "processes it started are stopped; no verdict. What asv saved of the two commits "
              f"is in {keep}/; its output: {log_path}", file=sys.stderr, flush=True)
        return 130
    rounds = read_rounds(rounds_log, base, head) if again else {}
    judged, paired = {}, {}
    for n in again:
        pooled = verdict.from_asv(n, *confirm.get(n, ("", None)), confirmed=True)
        if ".time_" in n:
            runs = rounds.get(round_key(n), ([], []))
            paired[n] = verdict.pair_rounds(*runs)
            if pooled.change in (verdict.SLOWER, verdict.FASTER) and paired[n] is None:
                say(f"perfmodel gate: no verdict: asv found {visible(n)} {pooled.change} but the "
                    f"round log has {len(runs[0])} and {len(runs[1])} of its processes (need "
                    f"{verdict.MIN_PAIRS} rounds of each); asv's output: {log_path}",
                    file=sys.stderr)
                return 2
            pooled = verdict.confirm(pooled, paired[n], args.factor)
        judged[n] = pooled
    slower = [n for n in again if judged[n].regression]  # the gate's verdict (perfmodel.verdict)
    say("", "| cell | screen | confirm, pooled | confirm, paired rounds | verdict |",
        "|---|---|---|---|---|")
    for n in again:  # every cell asv marked is among them (to_confirm)
        p = paired.get(n)
        say(f"| {n} | {_fmt(screen[n])} | {_fmt(confirm.get(n, ('', None)))} | "
            f"{'' if p is None else p} | {judged[n].label} |")
    outcome = ("slower: " + ", ".join(slower)) if slower else "no confirmed slowdown"
    say("", f"gate: {outcome} ({len(screen)} cells, {time.monotonic() - t0:.0f} s); the "
        f"gate's readings: {keep}/ (results/{name}/ keeps the history)")
    if slower:
        return 1
    return 0 if all(c in (0, 1) for c in codes) else 2


def _show(ref: str) -> str:
    """A ref as typed, for the terminal: no control characters, not too long."""
    text = visible(ref)
    return text if len(text) <= 40 else text[:39] + "…"


def _fmt(cell) -> str:
    mark, ratio = cell
    return "" if ratio is None and not mark else f"{ratio if ratio is not None else 'n/a'}{mark}"
