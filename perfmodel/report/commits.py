"""Commits: their order and subjects from git, and a user's ref resolved to a commit with results.

Every git call ends its options (``--end-of-options``) before anything that came from a user or a
results file, has a time limit, and reads only. Hashes from results files are checked as hex in
load.py; here git is asked for the whole log once instead of once per hash, so no hash from a
results file reaches a command line at all.
"""
from __future__ import annotations

from ..errors import UserError
from ..names import NA, WIDE_SHARE
from ..repo import git_output
from .cells import KINDS, kind_of
from .load import HEX, ResultSet, resolve_commit

GIT_TIMEOUT_S = 30


def _git(repo, *args: str) -> str | None:
    return git_output(repo, *args, limit_s=GIT_TIMEOUT_S)


def git_log(repo) -> tuple[list[str], dict[str, dict]]:
    """All commits of ``repo`` oldest first (topological) and hash -> {date, subject}."""
    out = _git(repo, "log", "--all", "--topo-order", "--reverse", "--format=%H%x09%cI%x09%s",
               "--end-of-options", "--")
    order, info = [], {}
    for line in (out or "").splitlines():
        parts = line.split("\t", 2)
        if len(parts) == 3 and HEX.fullmatch(parts[0]):
            order.append(parts[0])
            info[parts[0]] = {"date": parts[1][:10], "subject": one_line(parts[2])}
    return order, info


SUBJECT_CHARS = 72  # a subject in a table cell or a caption: one line, as git's own advice


def one_line(subject: str, width: int = SUBJECT_CHARS) -> str:
    """A commit subject short enough for one line of a table: cut at a word before ``width``
    characters, with an ellipsis (some of this project's subjects run to a paragraph)."""
    subject = " ".join(subject.split())
    if len(subject) <= width:
        return subject
    cut = subject[:width - 1]
    cut = cut[:cut.rfind(" ")] if " " in cut[width // 2:] else cut
    return cut.rstrip(" ,;:") + "…"


def git_resolve(repo, ref: str) -> str | None:
    """A user's ref (branch, tag, HEAD~1, prefix) -> full hash, as git sees it."""
    out = _git(repo, "rev-parse", "--verify", "--quiet", "--end-of-options", f"{ref}^{{commit}}")
    out = (out or "").strip()
    return out if HEX.fullmatch(out) else None


def commit_order(rs: ResultSet, git_order: list[str]) -> list[str]:
    """The result commits, oldest first: git's order where git knows them all, else asv's dates."""
    by_date = list(dict.fromkeys(rs.commits["commit"]))
    pos = {h: i for i, h in enumerate(git_order)}
    if all(h in pos for h in by_date):
        return sorted(by_date, key=pos.get)
    return by_date


def resolve(rs: ResultSet, ref: str | None, repo, order: list[str]) -> str:
    if ref is None:
        return order[-1]
    full = git_resolve(repo, ref)
    if full and full in set(rs.commits["commit"]):
        return full
    if full and not any(h.startswith(ref.lower()) for h in rs.commits["commit"]):
        raise UserError(f"{ref} ({full[:8]}) has no results on machine {rs.machine}; commits with "
                        f"results: {', '.join(h[:8] for h in reversed(list(rs.commits['commit'])))}")
    return resolve_commit(rs, ref)


def widest(rs: ResultSet, order: list[str], kind: str | None = None) -> tuple[str, dict[str, int]]:
    """The tables' default commit: the newest whose results hold at least WIDE_SHARE of the cells
    measured at the widest commit, and each commit's count of cells measured (OK, OOM or failed);
    of one class of benchmarks (cells.KINDS) when ``kind`` is given.

    A GPU box runs its whole tier at some commits and the quick tier at the others; the seed
    forms read one commit, and at the newest quick-only one they would be nearly all n/a. On a
    machine that runs the same tier at every commit this is the newest commit. The history and
    the change table still end at the newest commit (page.py)."""
    f = rs.frame
    if kind is not None:
        f = f[[kind_of(b) == kind for b in f["benchmark"]]] if not f.empty else f
    counts = {c: int(n) for c, n in f[f["status"] != NA].groupby("commit").size().items()}
    most = max(counts.values(), default=0)
    for c in reversed(order):
        if counts.get(c, 0) >= WIDE_SHARE * most:
            return c, counts
    return order[-1], counts


def tables_commits(rs: ResultSet, order: list[str]) -> dict[str, tuple[str, int, int]]:
    """Each class's tables' default commit: kind -> (commit, its cells of the class, the most
    any commit measured of the class), by ``widest`` within the class.

    A GPU box may run a class's chunks at a newer commit than the others (the model's, after a
    change that starts new lines for some of its benchmarks): the model tables then read that
    commit while the attention tables and the warm-up study keep the whole tier's, and the page
    names each (page.py). Where one commit is widest in every class, all read it."""
    out = {}
    for kind in KINDS:
        commit, counts = widest(rs, order, kind)
        out[kind] = (commit, counts.get(commit, 0), max(counts.values(), default=0))
    return out


def measured_cells(rs: ResultSet) -> dict[str, set]:
    """commit -> the (benchmark, cell) pairs it measured (OK, OOM or failed)."""
    f = rs.frame
    measured = f[f["status"] != NA]
    return {c: set(zip(g["benchmark"], g["cell"])) for c, g in measured.groupby("commit")}


def continued(rs: ResultSet, order: list[str]) -> str:
    """Where the history and the change table end by default: the newest commit that measured a
    cell also measured at the commit before it (of those with results), or the newest.

    A run of a few chunks (`CHUNKS=...` on a GPU box: the flash kernels' cells alone) shares no
    cell with the quick-tier commit before it; ending there would make the history's headlines
    that run's cells, n/a at every other commit, and leave the change table nothing to
    compare. Such commits keep their results (asv's graphs show them); the page says they are
    newer (page.py)."""
    cells = measured_cells(rs)
    for i in range(len(order) - 1, 0, -1):
        if cells.get(order[i], set()) & cells.get(order[i - 1], set()):
            return order[i]
    return order[-1]


def base(rs: ResultSet, order: list[str], last: str) -> str | None:
    """The change table's other commit by default: of the commits before ``last``, the newest
    whose cells in common with it are at least WIDE_SHARE of the most that any of them has in
    common (None: none has a cell in common).

    Where every commit runs the same tier this is the commit before. On a GPU box that runs the
    whole tier at one commit, the quick tier at others and a few chunks at others again, the
    commit right before may share few or none of ``last``'s cells (a run of the flash chunks
    alone, before a run of the model chunks): the table would then compare nothing, or a
    handful of cells, and call it the change."""
    cells = measured_cells(rs)
    mine = cells.get(last, set())
    before = order[:order.index(last)]
    common = {c: len(cells.get(c, set()) & mine) for c in before}
    most = max(common.values(), default=0)
    if not most:
        return None
    return next(c for c in reversed(before) if common[c] >= WIDE_SHARE * most)
