"""This machine as asv knows it: its name, which holds what changes the tracked numbers on its
device and nothing else, and the record asv keeps about it. Said once here: perfmodel track and
perfmodel gate name the machine with it, ``perfmodel track --print-machine`` prints the name
for asv's own commands (README), and tools/ import it.

Importing this module imports no torch: the stack is read (perfmodel.machine, which does) only
when stack() is called, so the CLI's parser, the report and the asv plugin load without it.
"""
from __future__ import annotations

import os
import platform
import re
import subprocess

from .errors import UserError
from .untrusted import say

MACHINE_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._+-]{0,199}")   # a file name, never an option
NVIDIA_SMI_LIMIT_S = 20


def cpu_model() -> str:
    """The processor's model name (/proc/cpuinfo), or what the platform module knows."""
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def cpu_name() -> str:
    """The CPU as a device: its model and how many cores this process may see."""
    return f"{cpu_model()} x{os.cpu_count()}"


def nvidia_driver() -> str | None:
    """The NVIDIA driver's version (nvidia-smi), None where there is none to ask."""
    try:
        out = subprocess.run(["nvidia-smi", "--query-gpu=driver_version", "--format=csv,noheader"],
                             capture_output=True, text=True, timeout=NVIDIA_SMI_LIMIT_S)
        return out.stdout.strip().splitlines()[0] if out.returncode == 0 else None
    except (OSError, subprocess.SubprocessError, IndexError):
        return None


def stack() -> dict:
    """What results depend on besides the code, on this machine's default device
    (perfmodel.machine.environment: the one import of torch here)."""
    from .machine import environment, resolve_device  # noqa: PLC0415

    return environment(resolve_device("auto"))


def _slug(text: str) -> str:
    return re.sub(r"[^a-z0-9.]+", "-", str(text).lower()).strip("-")


def machine_name(env: dict) -> str:
    """e.g. ``nvidia-h100-80gb-hbm3-drv570.86-cu13.0-torch2.11.0-triton3.5.0-tf32off`` or
    ``cpu-intel-xeon-x2-torch2.13.0-t1``: one graph line per device and the stack that changes
    its numbers, and nothing else, so that installing a tool does not make a box a new machine.

    triton is named on a GPU only: there it compiles the flash kernel; no cell of the CPU tier
    runs it (benchmarks/common.py, tests/test_track.py), and the test extra installs it into
    the same environment, which renamed the CPU box (issue 20).
    """
    parts = []
    if env.get("device") == "cuda":
        parts += [_slug(env.get("name")), f"drv{env.get('driver') or 'na'}",
                  f"cu{env.get('cuda') or 'na'}"]
    else:
        name = re.sub(r"\(r\)|\(tm\)|cpu|@.*?(?= x\d+$)|processor", " ", str(env.get("name")),
                      flags=re.I)
        parts += ["cpu", _slug(name)]
    parts.append(f"torch{_slug(env.get('torch')).replace('-', '')}")
    if env.get("device") == "cuda":
        parts.append(f"triton{env.get('triton') or 'na'}")
    if env.get("threads"):  # the CPU thread policy (perfmodel.cpu.cpu_threads)
        parts.append(f"t{env['threads']}")
    if env.get("device") == "cuda":
        parts.append("tf32on" if env.get("tf32") else "tf32off")
    return "-".join(p for p in parts if p)[:120]


def check_machine_name(name: str) -> str:
    if not MACHINE_NAME.fullmatch(name or ""):
        raise UserError(f"machine name {name!r}: use letters, digits and . _ + - (not first), "
                        "at most 200 characters")
    return name


def this_machine(requested: str | None = None) -> tuple[str, dict]:
    """(name, stack) of this machine: the name a user gave (--machine), checked, or the one
    its stack gives. Track and gate name it alike, so their results share a machine."""
    env = stack()
    return check_machine_name(requested or machine_name(env)), env


GiB = 2**30


def machine_record(name: str, env: dict) -> dict:
    """What asv keeps about a machine (os, arch, cpu, num_cpu, ram), as ``asv machine --yes``
    would ask for it; on a GPU the stack is added to ``os`` so the site's filters show it.

    asv copies the record into every result file and draws one graph per distinct record, so
    it holds what the machine's name stands for and nothing that differs between two boxes of
    it: the OS without its kernel build (the H200's boxes ran four: 6.18.44-fc-v973, v1147,
    v1252, v1294) and the memory in whole GiB (those boxes' totals differed by a few KiB), else
    a commit measured on another box of the same machine starts a graph of its own."""
    from asv.machine import Machine  # noqa: PLC0415

    record = Machine.get_defaults()
    record.update(machine=name, cpu=cpu_model() or record["cpu"], os=platform.system() or "unknown",
                  ram=stable_ram(record["ram"]))
    if env.get("threads"):
        record["os"] += f" | {env['threads']} CPU thread(s) per benchmark"
    if env.get("device") == "cuda":
        record["os"] += (f" | {env.get('name')} driver {env.get('driver')} CUDA {env.get('cuda')}"
                         f" torch {env.get('torch')} triton {env.get('triton')}"
                         f" tf32 {'on' if env.get('tf32') else 'off'}")
    return record


def stable_ram(ram) -> str:
    """asv's memory total (bytes, as text) rounded down to whole GiB, still in bytes."""
    try:
        return str(int(ram) // GiB * GiB)
    except (TypeError, ValueError):
        return str(ram)


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


def print_machine(name: str, env: dict) -> int:
    """``perfmodel track --print-machine``: record the machine for asv, print its name alone on
    stdout (for ``M=$(...)`` in a shell), exit status 0."""
    register_machine(name, env)
    say(name)
    return 0
