"""asv as a child process of ``perfmodel track`` and ``perfmodel gate``: its output copied to a
log, a time limit, and Ctrl-C.

asv starts children of its own (builds, its forkserver, the benchmark processes it forks), each
in a process group of its own (asv/util.py calls setpgid), so stopping asv's process group would
leave them running. The child therefore starts in a session of its own (which also keeps the
terminal's Ctrl-C from reaching asv half-way through writing), and stopping it signals every
process of that session: asv and all it started, since none of them starts a session.
"""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import sysconfig
import threading
import time

from .untrusted import log_text

STOP_GRACE_S = 5   # between SIGTERM and SIGKILL: someone is waiting at the terminal


def asv_argv(*args: str) -> list[str]:
    """asv of the Python that runs perfmodel (the venv's), whatever ``asv`` is on PATH."""
    return [sys.executable, "-m", "asv", *args]


def asv_env() -> dict:
    """The environment asv runs in: output unbuffered (progress lines as they come), and the
    site-packages whose torch every per-commit environment reuses (benchmarks/env_hook.py)."""
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    env.setdefault("PERFMODEL_BASE_SITE", sysconfig.get_paths()["purelib"])
    return env


def _session(sid: int) -> list[int] | None:
    """The live processes of session ``sid`` (None where there is no /proc to list them).

    Zombies are left out: they are dead already, and in a container whose first process does
    not reap them they would stay in the list for good."""
    try:
        entries = os.listdir("/proc")
    except OSError:
        return None
    pids = []
    for entry in entries:
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat", encoding="ascii", errors="replace") as f:
                # pid (comm) state ppid pgrp session ...; comm may hold spaces and parentheses
                fields = f.read().rsplit(")", 1)[1].split()
        except (OSError, IndexError):  # gone meanwhile
            continue
        if len(fields) > 3 and fields[0] not in "ZX" and fields[3] == str(sid):
            pids.append(int(entry))
    return pids


def _signal_session(sid: int, sig: int) -> None:
    pids = _session(sid)
    if pids is None:  # asv's own process group at least
        pids, kill = [sid], os.killpg
    else:
        kill = os.kill
    for pid in pids:
        try:
            kill(pid, sig)
        except OSError:
            pass


class AsvChild:
    """One asv command, its output appended to ``log``, stopped after ``limit`` seconds.

    Use it as a context manager: leaving the block by an exception (KeyboardInterrupt from
    Ctrl-C included) stops asv and everything it started before the exception goes on.
    """

    def __init__(self, argv: list[str], root: str, env: dict, log, limit: float):
        self.log, self.timed_out = log, False
        log.write(log_text(f"\n$ {' '.join(argv)}\n"))
        log.flush()
        self.proc = subprocess.Popen(argv, cwd=root, env=env, stdout=subprocess.PIPE,
                                     stderr=subprocess.STDOUT, text=True, errors="replace",
                                     start_new_session=True)
        # a timer, not a deadline checked between lines: asv may hang in the middle of a line
        self.timer = threading.Timer(limit, self._time_up)
        self.timer.daemon = True
        self.timer.start()

    def __enter__(self):
        return self

    def __exit__(self, kind, value, tb) -> bool:
        self.timer.cancel()
        if kind is not None:
            self.stop()
            self.log.write(f"\n[perfmodel: stopped asv ({kind.__name__})]\n")
            self.log.flush()
        return False

    def _time_up(self) -> None:
        self.timed_out = True
        self.stop()

    def stop(self) -> None:
        """SIGTERM to every process of asv's session, SIGKILL to what is left after a grace."""
        self._signal_and_wait(signal.SIGTERM, resend=False)
        # SIGKILL is delivered, not yet acted on, when kill() returns: wait for it too, sending
        # it again to whatever started meanwhile
        self._signal_and_wait(signal.SIGKILL, resend=True)
        try:
            self.proc.wait(STOP_GRACE_S)
        except subprocess.TimeoutExpired:
            pass

    def _signal_and_wait(self, sig: int, resend: bool) -> None:
        """``sig`` to asv's session, then wait at most STOP_GRACE_S until the session is empty
        (zombies aside); ``resend``: the signal again at each look."""
        sid = self.proc.pid
        deadline = time.monotonic() + STOP_GRACE_S
        try:
            _signal_session(sid, sig)
            while time.monotonic() < deadline and self._running():
                time.sleep(0.05)
                if resend:
                    _signal_session(sid, sig)
        except KeyboardInterrupt:  # Ctrl-C again: no more waiting, but asv is still stopped
            pass

    def _running(self) -> bool:
        members = _session(self.proc.pid)
        return self.proc.poll() is None if members is None else bool(members)

    def lines(self):
        for line in self.proc.stdout:
            self.log.write(log_text(line))  # asv names results files, benchmarks, commits
            yield line
        self.log.flush()

    def wait(self) -> int:
        """asv's exit status, 124 when the time limit stopped it."""
        code = self.proc.wait()
        # asv's output ends when its last process closes it, which a child stopped by the time
        # limit may do before it exits: the stop the timer began must end first
        self.timer.cancel()
        self.timer.join()
        self.proc.stdout.close()
        return 124 if self.timed_out else code


def run(argv: list[str], root: str, env: dict, log, limit: float) -> tuple[int, str]:
    """Run asv to its end: (its exit status, or 124 if the time limit stopped it; its output)."""
    with AsvChild(argv, root, env, log, limit) as child:
        out = "".join(child.lines())
        return child.wait(), out
