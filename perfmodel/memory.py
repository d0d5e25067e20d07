"""Memory of the device that runs a cell: the meter a workload reports to, and the host's room.

CUDA: the caching allocator's counters. CPU: the process's resident set. The protocol that decides
when memory is metered is perfmodel.measure's.
"""
from __future__ import annotations

import gc

import torch


def _proc_status_bytes(key: str) -> int:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(key + ":"):
                return int(line.split()[1]) * 1024
    raise OSError(f"{key} not in /proc/self/status")


class MemoryMeter:
    """Peak and current memory of the device that runs the work.

    CUDA: the caching allocator's counters. CPU: the process's resident set (VmRSS / VmHWM);
    writing 5 to /proc/self/clear_refs resets VmHWM so that each measurement has its own peak.
    ``offset`` is memory the measurement itself holds (the L2 flush buffer) and is left out.
    """

    def __init__(self, device: torch.device):
        self.device = device
        self.offset = 0
        self.before_backward: int | None = None
        self._cpu_peak_resettable = True

    def current(self) -> int:
        if self.device.type == "cuda":
            return torch.cuda.memory_allocated(self.device) - self.offset
        return _proc_status_bytes("VmRSS")

    def reset(self) -> None:
        self.before_backward = None
        if self.device.type == "cuda":
            torch.cuda.reset_peak_memory_stats(self.device)
            return
        try:
            with open("/proc/self/clear_refs", "w") as f:
                f.write("5")
        except OSError:
            self._cpu_peak_resettable = False  # peak then covers the process's whole life

    def peak(self) -> int:
        if self.device.type == "cuda":
            return torch.cuda.max_memory_allocated(self.device) - self.offset
        return _proc_status_bytes("VmHWM")

    def mark_before_backward(self) -> None:
        """Called by a workload between its forward and its backward."""
        now = self.current()
        self.before_backward = now if self.before_backward is None else max(now, self.before_backward)


def available_host_bytes() -> int:
    """MemAvailable from /proc/meminfo (8 GiB assumed where there is no such file)."""
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return 8 * 1024**3


# Fraction of available host memory a cell may be predicted to use before it is called OOM.
HOST_MEMORY_FRACTION = 0.8


def free_device_memory(device: torch.device) -> None:
    gc.collect()
    if device.type == "cuda":
        torch.cuda.synchronize(device)
        torch.cuda.empty_cache()
