"""The CPU's side of the measurement protocol: one thread, a steady malloc, and knowing when
another process took the core (perfmodel.measure decides what to do about it)."""
from __future__ import annotations

import os

import torch

from .errors import UserError


# A CPU burst whose thread waited on the run queue (runnable, but another process had the core:
# /proc/thread-self/schedstat) for more than this share of its wall time was interrupted; it is
# taken again, up to CPU_RETRIES times. Sleeping or waiting on I/O is not waiting on the run
# queue, so code that starts to block still reads as slower, never as "busy".
CPU_DISTURBED_SHARE = 0.2
CPU_RETRIES = 3
# More than this share of a cell's samples disturbed even after retries: the machine is too busy
# to measure, and the cell says so (MachineBusy) instead of recording a number. 1 never gives up
# (PERFMODEL_CPU_BUSY_SHARE=1: e.g. a test whose planted change is far beyond any noise).
CPU_BUSY_SHARE = float(os.environ.get("PERFMODEL_CPU_BUSY_SHARE", "0.34"))


def run_queue_seconds() -> float | None:
    """Seconds this thread has spent runnable but not running (None where Linux does not say)."""
    try:
        with open("/proc/thread-self/schedstat") as f:
            return int(f.read().split()[1]) / 1e9
    except (OSError, ValueError, IndexError):
        return None


class MachineBusy(RuntimeError):
    """Other processes took so much of the CPU that a cell's samples would be nonsense."""


def cpu_threads() -> int:
    """Threads torch uses for CPU cells: 1 unless PERFMODEL_CPU_THREADS says otherwise.

    One thread, deliberately: with two or more, every parallel region waits for its slowest
    thread, so one other busy process on a shared core stretched a step 2.5x and made samples
    200x apart; a single thread keeps its core, and its time can be checked against its own CPU
    time. Recorded with every result (``environment()['threads']``) and in the machine name.
    """
    try:
        n = int(os.environ.get("PERFMODEL_CPU_THREADS", "1"))
    except ValueError:
        raise UserError("PERFMODEL_CPU_THREADS must be a whole number of threads, e.g. 1") from None
    if n < 1:
        raise UserError(f"PERFMODEL_CPU_THREADS must be at least 1, got {n}")
    return n


def apply_thread_policy(device: torch.device) -> None:
    """The CPU's side of the protocol: a fixed number of threads and a steady malloc."""
    if device.type != "cpu":
        return
    if torch.get_num_threads() != cpu_threads():
        torch.set_num_threads(cpu_threads())
    steady_malloc()


_MALLOC_FIXED = False


def steady_malloc() -> None:
    """Fix glibc's mmap and trim thresholds (1 GiB) for the rest of the process.

    By default glibc serves blocks over 128 KiB with mmap and raises that threshold as the
    process frees such blocks, so whether a step's temporaries (eager attention's 2 MiB scores at
    seq 256) cost fresh zeroed pages every step depends on the process's history: the same cell
    measured 1.28 ms in one process and 2.62 ms in five others. Fixed thresholds keep freed
    memory in the heap: 1.22 ms in six processes of six (notes/journal.md). Nothing changes where
    the C library is not glibc.
    """
    global _MALLOC_FIXED
    if _MALLOC_FIXED:
        return
    _MALLOC_FIXED = True
    try:
        import ctypes  # noqa: PLC0415

        libc = ctypes.CDLL("libc.so.6")
        libc.mallopt(-3, 1 << 30)  # M_MMAP_THRESHOLD (a fixed value also stops its adjusting)
        libc.mallopt(-1, 1 << 30)  # M_TRIM_THRESHOLD
    except (OSError, AttributeError):
        pass
