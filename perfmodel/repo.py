"""The project's clone as the commands use it: its root, git (read-only, with a time limit,
options ended before anything a user or a results file gave), a user's ref turned into a hash,
and the tiers of the clone's own suite (benchmarks/tiers.py).

Two ways to call git: ``git`` for a clone the command needs (a failure is a one-line UserError),
``git_output`` where git is optional (the report's commit subjects: no answer is None).
"""
from __future__ import annotations

import glob
import importlib.util
import os
import re
import subprocess

from .errors import UserError

GIT_LIMIT_S = 60


def result_files(results_dir, machine: str, commit: str) -> list[str]:
    """asv's result files of one commit on one machine (one per environment), sorted; the
    names are matched literally, whatever characters they hold."""
    return sorted(glob.glob(os.path.join(glob.escape(os.fspath(results_dir)),
                                         glob.escape(machine), glob.escape(commit[:8]) + "-*.json")))


def git(root, *args: str) -> str:
    """stdout of ``git ARGS`` in ``root``; a one-line UserError naming the git command if it
    fails or takes more than GIT_LIMIT_S."""
    try:
        return subprocess.run(["git", *args], cwd=root, capture_output=True, text=True,
                              timeout=GIT_LIMIT_S, check=True, stdin=subprocess.DEVNULL).stdout
    except subprocess.TimeoutExpired:
        raise UserError(f"git {args[0]} took more than {GIT_LIMIT_S} s") from None
    except subprocess.CalledProcessError as err:
        raise UserError(f"git {args[0]}: {(err.stderr or '').strip() or 'failed'}") from None


def git_output(repo, *args: str, limit_s: float = GIT_LIMIT_S) -> str | None:
    """stdout of a read-only ``git ARGS`` in ``repo``, or None (no repo given, no git, not a
    repository, too slow): for what is shown when git can tell, and left out when not."""
    if repo is None:
        return None
    try:
        proc = subprocess.run(["git", "-C", str(repo), *args], capture_output=True, text=True,
                              timeout=limit_s, stdin=subprocess.DEVNULL,
                              encoding="utf-8", errors="replace")
    except (OSError, subprocess.TimeoutExpired, ValueError):
        return None
    return proc.stdout if proc.returncode == 0 else None


def repo_root(command: str = "perfmodel") -> str:
    """The top of the clone the current directory is in, which must be the project's (it has
    asv.conf.json); ``command`` names who asks, in the error."""
    try:
        root = git(".", "rev-parse", "--show-toplevel").strip()
    except (OSError, UserError):
        raise UserError(f"{command} runs inside a git clone of the project "
                        "(no git repository here)") from None
    if not os.path.exists(os.path.join(root, "asv.conf.json")):
        raise UserError(f"no asv.conf.json in {root}: run {command} in the project's clone")
    return root


def resolve(root: str, ref: str) -> str:
    """The full hash of the commit ``ref`` names; a one-line error naming ``ref`` if none.

    Resolved here, not by asv: asv's error for an unknown name is a traceback in the log, and
    the hashes handed on mean the same commits whatever happens to the refs meanwhile."""
    try:
        proc = subprocess.run(["git", "rev-parse", "--verify", "--quiet", "--end-of-options",
                               f"{ref}^{{commit}}"], cwd=root, capture_output=True, text=True,
                              timeout=GIT_LIMIT_S)
    except (OSError, subprocess.TimeoutExpired) as err:
        raise UserError(f"git rev-parse {ref!r} failed: {err}") from None
    found = proc.stdout.strip()
    if proc.returncode != 0 or not re.fullmatch(r"[0-9a-f]{40}|[0-9a-f]{64}", found):
        raise UserError(f"unknown commit {ref!r}: no branch, tag or commit of that name in this "
                        "clone (git log --oneline --all lists them)")
    return found


def load_tiers(root: str):
    """benchmarks/tiers.py of the clone at ``root``: the suite's tiers, as asv runs the working
    tree's suite. Loaded from its file: benchmarks/ is asv's folder, not part of the package,
    and it is the clone's suite that counts, not one on sys.path."""
    path = os.path.join(root, "benchmarks", "tiers.py")
    spec = importlib.util.spec_from_file_location("perfmodel_suite_tiers", path)
    if spec is None or not os.path.isfile(path):
        raise UserError(f"no benchmarks/tiers.py in {root}: run perfmodel in the project's clone")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module
