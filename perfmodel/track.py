"""``perfmodel track``: the tracker end to end with asv (the README's main job).

Names this machine after its stack (GPU or CPU, driver, CUDA, torch, triton, TF32) and records it
for asv, then runs plain asv: ``asv run`` over the last few commits of the branch (commits this
machine already measured are skipped) and ``asv publish``, whose perfmodel publisher plugin
(asv.conf.json) adds the summary tables. asv's full output goes to a log file; the terminal gets
one line per commit and a summary. Every child process has a time limit.

Exit status: 0 every commit measured and the site published, 1 some cells failed or an asv
command failed (the lines above say which), 124 a time limit, 2 a usage error, 3 an internal
error (perfmodel.names).
"""
from __future__ import annotations

import glob
import json
import math
import os
import re
import signal
import subprocess
import sys
import sysconfig
import time

from .errors import UserError
from .names import EXIT_CLEAN, EXIT_LEFT_OUT
from .untrusted import log_text, say, visible

GIT_LIMIT_S = 60
PUBLISH_LIMIT_S = 600
MACHINE_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._+-]{0,199}")   # a file name, never an option
_COMMIT_LINE = re.compile(r"For \S+ commit ([0-9a-f]{6,40})\b")


def add_parser(sub) -> None:
    p = sub.add_parser("track", help="run the asv tracker over the last commits and publish html/")
    p.add_argument("--commits", type=int, default=3,
                   help="how many commits of the branch, newest first (default 3)")
    p.add_argument("--branch", default=None, help="default: the first branch in asv.conf.json")
    p.add_argument("--bench", "-b", action="append", default=None,
                   help="asv -b regex (repeatable): only these benchmarks")
    p.add_argument("--machine", default=None, help="asv machine name (default: from the stack)")
    p.add_argument("--rerun", action="store_true",
                   help="measure commits again even if this machine has results for them")
    p.add_argument("--no-publish", action="store_true", help="skip asv publish")
    p.add_argument("--dry-run", action="store_true", help="print the asv commands only")
    p.add_argument("--print-machine", action="store_true",
                   help="record this machine for asv and print its name (for asv --machine)")
    p.add_argument("--log", default=None,
                   help="asv's full output, n/a reasons included (default .asv/track.log)")
    p.add_argument("--limit-per-commit", type=float, default=120, metavar="MIN",
                   help="stop asv run after this many minutes per commit (default 120)")
    p.set_defaults(func=main)


def _slug(text: str) -> str:
    return re.sub(r"[^a-z0-9.]+", "-", str(text).lower()).strip("-")


def stack() -> dict:
    """What results depend on besides the code (perfmodel.measure.environment)."""
    from .measure import environment, resolve_device  # noqa: PLC0415

    return environment(resolve_device("auto"))


def machine_name(env: dict) -> str:
    """e.g. ``nvidia-h100-80gb-hbm3-drv570.86-cu13.0-torch2.11.0-triton3.5.0-tf32off`` or
    ``cpu-intel-xeon-x2-torch2.13.0-triton3.5.0-t1``: one graph line per device and stack."""
    parts = []
    if env.get("device") == "cuda":
        parts += [_slug(env.get("name")), f"drv{env.get('driver') or 'na'}",
                  f"cu{env.get('cuda') or 'na'}"]
    else:
        name = re.sub(r"\(r\)|\(tm\)|cpu|@.*?(?= x\d+$)|processor", " ", str(env.get("name")),
                      flags=re.I)
        parts += ["cpu", _slug(name)]
    parts += [f"torch{_slug(env.get('torch')).replace('-', '')}",
              f"triton{env.get('triton') or 'na'}"]
    if env.get("threads"):  # the CPU thread policy (perfmodel.measure.cpu_threads)
        parts.append(f"t{env['threads']}")
    if env.get("device") == "cuda":
        parts.append("tf32on" if env.get("tf32") else "tf32off")
    return "-".join(p for p in parts if p)[:120]


def check_machine_name(name: str) -> str:
    if not MACHINE_NAME.fullmatch(name or ""):
        raise UserError(f"machine name {name!r}: use letters, digits and . _ + - (not first), "
                        "at most 200 characters")
    return name


def machine_record(name: str, env: dict) -> dict:
    """What asv keeps about a machine (os, arch, cpu, num_cpu, ram), as ``asv machine --yes``
    would ask for it; on a GPU the stack is added to ``os`` so the site's filters show it."""
    from asv.machine import Machine  # noqa: PLC0415

    from .measure import cpu_model  # noqa: PLC0415

    record = Machine.get_defaults()
    record.update(machine=name, cpu=cpu_model() or record["cpu"])
    if env.get("threads"):
        record["os"] += f" | {env['threads']} CPU thread(s) per benchmark"
    if env.get("device") == "cuda":
        record["os"] += (f" | {env.get('name')} driver {env.get('driver')} CUDA {env.get('cuda')}"
                         f" torch {env.get('torch')} triton {env.get('triton')}"
                         f" tf32 {'on' if env.get('tf32') else 'off'}")
    return record


def register_machine(name: str, env: dict) -> dict:
    """Store the machine's record in ~/.asv-machine.json, where ``asv run --machine`` reads it.

    Done with asv's own writer rather than ``asv machine --yes --machine NAME ...``: that command
    keeps only the fields that differ from its defaults (asv/commands/machine.py), so a new name
    would be saved with nothing but the name, and the site's machine filters would show "[none]".
    """
    from asv.machine import MachineCollection  # noqa: PLC0415

    record = machine_record(check_machine_name(name), env)
    MachineCollection.save(name, record)
    return record


def machine_args(name: str, env: dict) -> list[str]:
    """The same record as ``asv machine`` arguments (only the fields that differ from asv's
    defaults are kept by that command: prefer register_machine)."""
    record = machine_record(check_machine_name(name), env)
    return ["machine", "--yes"] + [f"--{k}={v}" for k, v in record.items()]


def _git(root: str, *args: str) -> str:
    try:
        return subprocess.run(["git", *args], cwd=root, capture_output=True, text=True,
                              timeout=GIT_LIMIT_S, check=True).stdout
    except subprocess.TimeoutExpired:
        raise UserError(f"git {args[0]} took more than {GIT_LIMIT_S} s") from None
    except subprocess.CalledProcessError as err:
        raise UserError(f"git {args[0]}: {(err.stderr or '').strip() or 'failed'}") from None


def _repo_root() -> str:
    try:
        root = _git(".", "rev-parse", "--show-toplevel").strip()
    except (OSError, UserError):
        raise UserError("perfmodel track runs inside a git clone of the project "
                        "(no git repository here)") from None
    if not os.path.exists(os.path.join(root, "asv.conf.json")):
        raise UserError(f"no asv.conf.json in {root}: run perfmodel track in the project's clone")
    return root


def _printable(text: str, width: int = 50) -> str:
    text = visible(text.strip())
    return text if len(text) <= width else text[:width - 1] + "…"


def asv_env() -> dict:
    """The environment asv runs in: output unbuffered (progress lines as they come), and the
    site-packages whose torch every per-commit environment reuses (benchmarks/env_hook.py)."""
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    env.setdefault("PERFMODEL_BASE_SITE", sysconfig.get_paths()["purelib"])
    return env


def _asv(*args: str) -> list[str]:
    return [sys.executable, "-m", "asv", *args]


def cell_counts(results_dir: str, machine: str, commit: str) -> dict | None:
    """measured / n/a / failed cells of one commit's asv result files (None: no file)."""
    paths = glob.glob(os.path.join(glob.escape(results_dir), glob.escape(machine),
                                   glob.escape(commit[:8]) + "-*.json"))
    if not paths:
        return None
    from .untrusted import Unreadable, read_json  # noqa: PLC0415

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


class _Child:
    """One asv command, its output appended to the log, stopped after ``limit`` seconds."""

    def __init__(self, argv: list[str], root: str, env: dict, log, limit: float):
        import threading  # noqa: PLC0415

        self.log, self.timed_out = log, False
        log.write(log_text(f"\n$ {' '.join(argv)}\n"))
        log.flush()
        self.proc = subprocess.Popen(argv, cwd=root, env=env, stdout=subprocess.PIPE,
                                     stderr=subprocess.STDOUT, text=True, errors="replace",
                                     start_new_session=True)
        # a timer, not a deadline checked between lines: asv may hang in the middle of a line
        self.timer = threading.Timer(limit, self._stop)
        self.timer.daemon = True
        self.timer.start()

    def _stop(self) -> None:
        self.timed_out = True
        for sig, grace in ((signal.SIGTERM, 30), (signal.SIGKILL, None)):
            try:
                os.killpg(self.proc.pid, sig)  # asv and the benchmark processes it started
                self.proc.wait(grace)
                return
            except (ProcessLookupError, subprocess.TimeoutExpired):
                if self.proc.poll() is not None:
                    return

    def lines(self):
        for line in self.proc.stdout:  # asv's output names results files, benchmarks, commits
            self.log.write(log_text(line))
            yield line
        self.log.flush()

    def wait(self) -> int:
        code = self.proc.wait()
        self.timer.cancel()
        self.proc.stdout.close()
        return 124 if self.timed_out else code


def _minutes(seconds: float) -> str:
    return f"{seconds / 60:.1f} min" if seconds >= 90 else f"{seconds:.0f} s"


def main(args) -> int:
    root = _repo_root()
    env = stack()
    name = check_machine_name(args.machine or machine_name(env))
    if args.print_machine:
        register_machine(name, env)
        say(name)
        return 0
    from asv.util import load_json  # noqa: PLC0415 (asv's own reader: // comments allowed)

    conf = load_json(os.path.join(root, "asv.conf.json"), js_comments=True)
    branch = args.branch or (conf.get("branches") or ["main"])[0]
    results_dir = os.path.join(root, conf.get("results_dir", "results"))
    if args.commits < 1:
        raise UserError(f"--commits must be at least 1, got {args.commits}")
    if branch.startswith("-"):
        raise UserError(f"branch {branch!r}: a branch name cannot start with '-'")
    hashes = _git(root, "rev-list", "--first-parent", f"-n{args.commits}", "--end-of-options",
                  branch, "--").split()
    if not all(re.fullmatch(r"[0-9a-f]{40}", h) for h in hashes):
        raise UserError(f"git rev-list {branch} gave something other than commit hashes")
    subjects = {h: _printable(_git(root, "log", "-1", "--format=%s", h, "--")) for h in hashes}
    done = {h for h in hashes if not args.rerun and cell_counts(results_dir, name, h) is not None}
    todo = [h for h in hashes if h not in done]

    hashfile = os.path.join(root, ".asv", "track-commits.txt")
    # samples kept so that the summary tables can give mean and std, not only asv's median
    run = ["run", f"HASHFILE:{hashfile}", f"--machine={name}", "--record-samples",
           "--show-stderr"]
    if not args.rerun:
        run.append("--skip-existing-commits")
    run += [f"--bench={pattern}" for pattern in args.bench or []]
    publish = ["publish", "--no-pull"]
    log_path = os.path.abspath(args.log or os.path.join(root, ".asv", "track.log"))

    say(f"perfmodel track: machine {name}", f"  {len(hashes)} commit(s) of {branch}, "
        f"{len(done)} already measured here; asv's full output: {log_path}", flush=True)
    if args.dry_run:
        say(f"asv machine record for {name}: {json.dumps(machine_record(name, env))}")
        say("$ asv " + " ".join(run) + "    # " + " ".join(h[:8] for h in todo))
        if not args.no_publish:
            say("$ asv " + " ".join(publish))
        return 0

    register_machine(name, env)
    os.makedirs(os.path.dirname(hashfile), exist_ok=True)
    with open(hashfile, "w") as f:
        f.write("\n".join(todo) + "\n")
    os.makedirs(os.path.dirname(log_path), exist_ok=True)
    child_env = asv_env()
    t_start = time.monotonic()
    status, failed = 0, 0
    with open(log_path, "w", encoding="utf-8") as log:
        log.write(log_text(f"perfmodel track: machine {name}, commits {' '.join(hashes)}\n"))
        if todo:
            status, failed = _run(run, todo, subjects, root, child_env, log, results_dir, name,
                                  args.limit_per_commit * 60 * len(todo))
        for h in hashes:
            if h in done:
                say(f"  {h[:8]} {subjects[h]}: already measured on this machine "
                    "(--rerun measures it again)", flush=True)
        pages = []
        if not args.no_publish and status in (EXIT_CLEAN, EXIT_LEFT_OUT):
            t0 = time.monotonic()
            child = _Child(_asv(*publish), root, child_env, log, PUBLISH_LIMIT_S)
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


def _run(run, todo, subjects, root, env, log, results_dir, name, limit) -> tuple[int, int]:
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
            f"{counts['n/a']} n/a here, {counts['failed']} failed", flush=True)

    child = _Child(_asv(*run), root, env, log, limit)
    for line in child.lines():
        match = _COMMIT_LINE.search(line)
        if match and match.group(1)[:8] in order:
            if current:
                finish(current)
            current = next(h for h in todo if h.startswith(match.group(1)[:8]))
            t_commit = time.monotonic()
    code = child.wait()
    if current:
        finish(current)
    if code == 124:
        say(f"asv run stopped after {_minutes(limit)} (--limit-per-commit); the commits "
            "finished before are kept", flush=True)
    elif code not in (0, 2):
        say(f"asv run failed (exit {code}); the end of {log.name}:", flush=True)
        with open(log.name, encoding="utf-8", errors="replace") as f:
            say(*(line.rstrip("\n") for line in f.readlines()[-15:]), flush=True)
        return code, failed
    # asv run's 2 is "some benchmarks failed": the commits ran, the failed cells are noted
    return (EXIT_LEFT_OUT if code == 2 or failed else code), failed
