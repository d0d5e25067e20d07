"""``perfmodel gate BASE HEAD``: the merge gate, asv continuous in two stages.

1. **Screen**: plain ``asv continuous BASE HEAD`` over the tier (2 rounds per cell, interleaved
   between the commits), every cell's ratio kept (``--no-only-changed``).
2. **Confirm**: every time cell that moved beyond ``--screen`` either way, and every other cell
   asv flagged, is measured again by ``asv continuous -b <those cells> -a rounds=N``. Its rounds
   now alternate between the two commits every second or so instead of once per tier (a minute
   and more on a CPU), so a change in the machine's own speed meets both commits alike. The
   confirm stage's verdict is the gate's.

Why: a shared 2-core CPU host changes speed by up to 1.45x for minutes at a time (a compute-
bound matmul took 4.3 ms, then 6.3 ms for minutes, in fresh processes; notes/gate.md), so two
commits measured a minute apart differ by that much whatever their code, and more rounds of the
whole tier cannot fix it (4 rounds: an unchanged commit still read 0.78). What a result means is
unchanged: every number is asv's, measured at the commit it is filed under.

Exit status: 0 nothing confirmed slower, 1 a confirmed slowdown (asv's exit status of the
confirm stage), 2 an error (a usage error, or asv gave no comparison), 3 an internal error
(perfmodel.names). The last lines are a table: every screened cell, both ratios.
"""
from __future__ import annotations

import os
import re
import subprocess
import sys
import time

from .errors import UserError
from .untrusted import log_text, say

ROW = re.compile(r"^\|\s*([+!x-]?)\s*\|(.*)\|\s*$")  # a row of asv's comparison table
GATE_LIMIT_S = 4 * 3600


def add_parser(sub) -> None:
    p = sub.add_parser("gate", help="the merge gate: asv continuous BASE HEAD, moved cells "
                                    "confirmed with finely interleaved rounds")
    p.add_argument("base", help="the commit merged into (e.g. main)")
    p.add_argument("head", help="the commit to judge (e.g. HEAD)")
    p.add_argument("--factor", type=float, default=1.2,
                   help="asv's factor: a time must move by more than this (default 1.2, the "
                        "CPU's; the GPU gate uses 1.05)")
    p.add_argument("--screen", type=float, default=1.1,
                   help="time cells that moved more than this either way in the screen are "
                        "measured again (default 1.1)")
    p.add_argument("--rounds", type=int, default=8,
                   help="asv rounds per cell in the confirm stage (default 8)")
    p.add_argument("--bench", "-b", default=None, help="asv -b regex for the screen")
    p.add_argument("--machine", default=None, help="asv machine name (default: from the stack)")
    p.add_argument("--log", default=None, help="asv's output (default .asv/gate.log)")
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


def to_confirm(screen: dict, threshold: float) -> list[str]:
    """Cells the confirm stage measures again: time cells beyond ``threshold`` either way, and
    anything asv marked (a slower or faster flag, a failure)."""
    names = []
    for name, (mark, ratio) in screen.items():
        moved = ratio is not None and (ratio > threshold or ratio < 1 / threshold)
        is_time = ".time_" in name
        if mark or (is_time and moved):
            names.append(name)
    return sorted(names)


def _continuous(base, head, machine, factor, extra, root, env, log) -> tuple[int, str]:
    cmd = [sys.executable, "-m", "asv", "continuous", f"--machine={machine}",
           f"--factor={factor}", "--no-only-changed", "--show-stderr", *extra, "--", base, head]
    log.write(log_text("$ " + " ".join(cmd) + "\n"))
    log.flush()
    try:
        proc = subprocess.run(cmd, cwd=root, env=env, capture_output=True, text=True,
                              errors="replace", timeout=GATE_LIMIT_S)
    except subprocess.TimeoutExpired:
        raise UserError(f"asv continuous took more than {GATE_LIMIT_S // 3600} hours") from None
    log.write(log_text(proc.stdout + proc.stderr))
    log.flush()
    return proc.returncode, proc.stdout


def main(args) -> int:
    from .track import (_repo_root, asv_env, check_machine_name, machine_name,  # noqa: PLC0415
                         register_machine, stack)

    for ref in (args.base, args.head):
        if not ref or ref.startswith("-"):
            raise UserError(f"commit {ref!r}: a commit cannot start with '-'")
    if args.factor <= 1 or args.screen <= 1 or args.screen > args.factor:
        raise UserError(f"need 1 < --screen <= --factor, got screen {args.screen}, "
                        f"factor {args.factor}")
    if args.rounds < 3:
        raise UserError(f"--rounds must be at least 3, got {args.rounds}")
    root = _repo_root()
    env_stack = stack()
    name = check_machine_name(args.machine or machine_name(env_stack))
    register_machine(name, env_stack)
    env = asv_env()
    log_path = os.path.abspath(args.log or os.path.join(root, ".asv", "gate.log"))
    os.makedirs(os.path.dirname(log_path), exist_ok=True)
    t0 = time.monotonic()
    with open(log_path, "w", encoding="utf-8") as log:
        say(f"perfmodel gate: {args.base} -> {args.head} on {name}, factor {args.factor}; "
            f"asv's output: {log_path}", flush=True)
        extra = ["-b", args.bench] if args.bench else []
        code, out = _continuous(args.base, args.head, name, args.factor, extra, root, env, log)
        screen = parse_table(out)
        if not screen:
            raise UserError(f"asv continuous gave no comparison (exit {code}); see {log_path}")
        again = to_confirm(screen, args.screen)
        say(f"  screen: {len(screen)} cells compared in {time.monotonic() - t0:.0f} s, "
            f"asv exit {code}; {len(again)} to confirm", flush=True)
        confirm: dict = {}
        final = 0
        if again:
            regex = "^(" + "|".join(re.escape(n) for n in again) + ")$"
            t1 = time.monotonic()
            final, out = _continuous(args.base, args.head, name, args.factor,
                                     ["-b", regex, "-a", f"rounds={args.rounds}"], root, env, log)
            confirm = parse_table(out)
            say(f"  confirm: {len(again)} cells, {args.rounds} rounds each, in "
                f"{time.monotonic() - t1:.0f} s, asv exit {final}", flush=True)
    slower = [n for n in again if confirm.get(n, ("", None))[0] == "+"]
    say("", "| cell | screen | confirm |", "|---|---|---|")
    for n in again:  # every cell asv marked is among them (to_confirm)
        say(f"| {n} | {_fmt(screen[n])} | {_fmt(confirm.get(n, ('', None)))} |")
    verdict = ("slower: " + ", ".join(slower)) if slower else "no confirmed slowdown"
    say("", f"gate: {verdict} ({len(screen)} cells, {time.monotonic() - t0:.0f} s)")
    return final if final in (0, 1, 2) else 2


def _fmt(cell) -> str:
    mark, ratio = cell
    return "" if ratio is None and not mark else f"{ratio if ratio is not None else 'n/a'}{mark}"
