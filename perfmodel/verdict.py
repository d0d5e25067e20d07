"""The merge gate's rule, said once: what "slower", "faster" and "regression" mean.

Every place that says a cell got slower uses this module: ``perfmodel gate`` (its screen and
confirm stages read asv's table, ``from_asv``), the summary's change table and the filter over
asv's Regressions page (both read stored results, ``judge``). The rule is asv continuous's
comparison at the device's factor (benchmarks/tiers.py ``GATE``: 1.2 on a CPU, 1.05 on a GPU):

- a number moved when after/before is beyond the factor and, where both commits carry samples
  (or asv's stats), asv's significance test (Mann-Whitney, p < 0.002) finds them different;
- a status cell (``track_status*``: 1 OK, 2 OOM, 3 failed) or a value that became a failure
  changed status; that is never noise, so it needs no confirming;
- a move is *confirmed* only when the gate's confirm stage measured it: the two commits
  alternating every few seconds, and the move holds round by round as well as pooled: the
  median over rounds of HEAD's process median / BASE's in the same round is beyond the factor
  too, with at most one round in eight against it (``pair_rounds``, ``confirm``). Pooled samples
  alone once confirmed an unchanged commit 1.35x slower: the host's speed had changed between a
  round's two blocks in 3 of 8 rounds. A published history holds one measurement per commit, taken
  minutes or days apart; a shared 2-core CPU host changes speed by up to 1.45x for minutes by
  itself (notes/gate.md), so such a move is *unconfirmed* and carries the command that settles it.

A regression is a confirmed slowdown or a status change for the worse; nothing else.
Pure functions: no torch, no pandas, no asv needed (asv's test is used when asv is installed,
as it always is next to perfmodel; without it only the factor decides).
"""
from __future__ import annotations

import math
import re
from dataclasses import dataclass

from .names import HOST_FIGURE_METHOD

SLOWER, FASTER, UNCHANGED, STATUS = "slower", "faster", "unchanged", "status-change"
NOT_COMPARABLE = "not comparable"  # a side is n/a (NaN) or missing: asv flags nothing either
GPU_PREFIX = "nvidia-"  # perfmodel track names a GPU machine after its model (identity.machine_name)
HEX = re.compile(r"[0-9a-f]{7,64}")


def device_of(machine: str) -> str:
    """'cuda' for a GPU machine's results, 'cpu' otherwise, from the machine name alone."""
    return "cuda" if str(machine).startswith(GPU_PREFIX) else "cpu"


def confirm_command(before: str, after: str) -> str:
    """The command that settles an unconfirmed move (hashes only: results are data, and
    load.py let through nothing but hex here; anything else gives no command)."""
    a, b = str(before)[:8], str(after)[:8]
    if not (HEX.fullmatch(a) and HEX.fullmatch(b)):
        return ""
    return f"perfmodel gate {a} {b}"


@dataclass(frozen=True)
class Measured:
    """One commit's asv result for one cell: value (None: failed, NaN: n/a), asv's stats dict
    and samples where the results file has them."""
    value: float | None
    stats: dict | None = None
    samples: list | None = None


@dataclass(frozen=True)
class Verdict:
    change: str                 # SLOWER, FASTER, UNCHANGED, STATUS or NOT_COMPARABLE
    ratio: float = math.nan     # after / before where both are numbers
    confirmed: bool = False     # the gate's confirm stage measured it (or a status change)
    worse: bool = False         # for STATUS: a new failure or OOM (True) or a fix
    command: str = ""           # for an unconfirmed move: the command that confirms it

    @property
    def regression(self) -> bool:
        return (self.change == SLOWER and self.confirmed) or (self.change == STATUS
                                                              and self.worse)

    @property
    def label(self) -> str:
        """How a table says it: 'regressed', 'improved', 'new failure', 'fixed',
        'slower (unconfirmed)', 'faster (unconfirmed)', or the change itself."""
        if self.change == STATUS:
            return "new failure" if self.worse else "fixed"
        if self.change in (SLOWER, FASTER):
            if self.confirmed:
                return "regressed" if self.change == SLOWER else "improved"
            return f"{self.change} (unconfirmed)"
        return self.change


def _finite(x) -> bool:
    return isinstance(x, (int, float)) and not isinstance(x, bool) and math.isfinite(x)


def _significant(before: Measured, after: Measured) -> bool:
    """asv's test, as asv continuous applies it: samples (or stats) on both sides, neither a
    single-sample run; otherwise there is nothing to test and the factor alone decides."""
    sa, sb = before.stats, after.stats
    if not (isinstance(sa, dict) and isinstance(sb, dict) and sa and sb):
        return True
    if sa.get("repeat", 0) == 1 or sb.get("repeat", 0) == 1:
        return True
    try:
        from asv import _stats  # noqa: PLC0415 (asv is installed with perfmodel; imported late)
    except ImportError:
        return True
    try:
        return bool(_stats.is_different(before.samples, after.samples, sa, sb))
    except (ArithmeticError, ValueError, TypeError, KeyError, RecursionError):
        return True  # stats asv's test cannot take: the factor alone, as without stats


def judge(before: Measured, after: Measured, factor: float, *, status: bool = False,
          confirmed: bool = False, commits: tuple[str, str] = ("", "")) -> Verdict:
    """The verdict on one cell between two commits (``commits`` = (before, after) hashes, for
    the command an unconfirmed move carries). ``status``: the cell is a status code."""
    va, vb = before.value, after.value
    if va is None or vb is None:  # asv's failure: '!' / '*' in asv's table
        if va is None and vb is None:
            return Verdict(UNCHANGED)
        if not (_finite(va) or _finite(vb)):
            return Verdict(NOT_COMPARABLE)
        return Verdict(STATUS, confirmed=True, worse=vb is None)
    if not (_finite(va) and _finite(vb)):
        return Verdict(NOT_COMPARABLE)
    ratio = vb / va if va else (math.inf if vb else 1.0)
    if status:
        if va == vb:
            return Verdict(UNCHANGED, ratio)
        return Verdict(STATUS, ratio, confirmed=True, worse=vb > va)
    if vb > va * factor:
        change = SLOWER
    elif va > vb * factor:
        change = FASTER
    else:
        return Verdict(UNCHANGED, ratio)
    if not _significant(before, after):
        return Verdict(UNCHANGED, ratio)
    return Verdict(change, ratio, confirmed=confirmed,
                   command="" if confirmed else confirm_command(*commits))


# What the rule never judges: the host's time to issue one step (``track_issue_seconds_*``), the
# device's work left when it had (``track_backlog_seconds_*``) and the step's time with a head
# start (``track_free_seconds_*``), read from a single step or burst beside the device's time so
# the report can mark host-bound cells. They are diagnostics of the host, not speeds of the model:
# between two H200 commits with no change in the timed code the issue time moved 0.39-1.74x while
# every time cell stayed put (0826827b -> 337beebc).
DIAGNOSTIC = re.compile(r"\.%s(\(|$)" % HOST_FIGURE_METHOD)


def judged(name: str) -> bool:
    """Whether the rule judges this asv benchmark name (``bench.Class.method(params)``)."""
    return not DIAGNOSTIC.search(str(name))


MIN_PAIRS = 3  # rounds with both commits measured, for a paired ratio to mean anything
# Rounds that may go against a confirmed move, per 8 rounds: a change in the machine's speed
# that lasts about a round can turn one round in eight. On an unchanged commit in the CPU gate's
# planted run 1 (notes/gate.md), a cell whose process medians spread 2x in either commit had a
# paired median of 0.79 with 2 rounds of 8 against it; every planted cell moved in 8 of 8.
AGAINST_PER_8 = 1


def _median(xs: list[float]) -> float:
    xs = sorted(xs)
    n = len(xs)
    return xs[n // 2] if n % 2 else (xs[n // 2 - 1] + xs[n // 2]) / 2


@dataclass(frozen=True)
class Paired:
    """The confirm stage's rounds of one cell, paired: each round's processes compared by their
    sample medians (round i: the i-th process of each commit)."""
    ratios: tuple[float, ...]   # after/before, round by round

    @property
    def ratio(self) -> float:
        """The median over rounds: a change in the machine's speed that lasts about a round
        moves one ratio, not the median; a change in the code moves every round."""
        return _median(list(self.ratios))

    def against(self, change: str) -> int:
        """How many rounds went the other way from ``change`` (SLOWER or FASTER)."""
        return sum(1 for r in self.ratios if (r <= 1 if change == SLOWER else r >= 1))

    def holds(self, change: str, factor: float) -> bool:
        """Whether the rounds bear out ``change`` at ``factor``: their median is beyond it, and
        no more than AGAINST_PER_8 rounds in 8 went the other way."""
        beyond_factor = self.ratio > factor if change == SLOWER else self.ratio * factor < 1
        return beyond_factor and self.against(change) <= len(self.ratios) * AGAINST_PER_8 // 8

    def __str__(self) -> str:
        slower = sum(1 for r in self.ratios if r > 1)
        faster = sum(1 for r in self.ratios if r < 1)
        return f"{self.ratio:.2f} ({slower} of {len(self.ratios)} rounds slower, {faster} faster)"


def pair_rounds(before: list[list[float]], after: list[list[float]]) -> Paired | None:
    """Each round's two processes paired; None with fewer than MIN_PAIRS rounds of both."""
    ratios = tuple(_median(b) / _median(a) for a, b in zip(before, after)
                   if a and b and _median(a) > 0)
    return Paired(ratios) if len(ratios) >= MIN_PAIRS else None


def confirm(pooled: Verdict, paired: Paired | None, factor: float) -> Verdict:
    """The confirm stage's verdict on a time cell: asv's (pooled samples, ``from_asv``), kept only
    when the paired rounds bear it out (``Paired.holds``); otherwise unchanged. A move without
    paired rounds (``paired`` None) cannot be confirmed: the caller says no verdict."""
    if pooled.change in (SLOWER, FASTER):
        if paired is not None and paired.holds(pooled.change, factor):
            return pooled
        return Verdict(UNCHANGED, pooled.ratio)
    return pooled


def from_asv(name: str, mark: str, ratio: float | None, *, confirmed: bool) -> Verdict:
    """The same verdict from a row of asv continuous's table (asv applied the rule above at the
    gate's factor): '+' slower, '-' faster, '!' a new failure, '*' fixed; a status cell's
    '+' or '-' is a status change."""
    r = ratio if ratio is not None else math.nan
    if mark == "!":
        return Verdict(STATUS, r, confirmed=True, worse=True)
    if mark == "*":
        return Verdict(STATUS, r, confirmed=True, worse=False)
    if mark in ("+", "-"):
        if ".track_status" in name:
            return Verdict(STATUS, r, confirmed=True, worse=mark == "+")
        return Verdict(SLOWER if mark == "+" else FASTER, r, confirmed=confirmed)
    return Verdict(UNCHANGED, r)


def beyond(ratio: float | None, threshold: float) -> bool:
    """Whether a ratio moved beyond ``threshold`` either way (the gate's screen)."""
    return ratio is not None and (ratio > threshold or ratio < 1 / threshold)
