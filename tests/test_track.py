"""perfmodel track's pieces that need no asv run: the machine name, when a commit counts as
measured, and the child process that runs asv."""
from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from perfmodel.track import machine_name

ROOT = Path(__file__).resolve().parent.parent
CPU = {"device": "cpu", "name": "AMD EPYC 7B13 x2", "torch": "2.13.0+cpu", "cuda": None,
       "driver": None, "tf32": False, "threads": 1}


def test_a_cpu_box_keeps_one_name_whatever_extras_are_installed():
    # the test extra installs triton into the same venv: the name must not change with it
    names = {machine_name(dict(CPU, triton=t)) for t in (None, "3.6.0", "3.9.0")}
    assert len(names) == 1, names
    name = names.pop()
    assert name == "cpu-amd-epyc-7b13-x2-torch2.13.0cpu-t1"
    # what does change a CPU's numbers still changes the name
    assert machine_name(dict(CPU, torch="2.12.0")) != name
    assert machine_name(dict(CPU, threads=2)) != name
    assert machine_name(dict(CPU, name="Intel Xeon x2")) != name


def test_no_cell_of_the_cpu_tier_runs_triton():
    """Why triton is left out of a CPU's name: the Triton flash kernel (and torch.compile, whose
    GPU code is Triton) are outside the CPU tier. Adding them there means putting triton back."""
    from benchmarks.common import CPU_TIER, MODEL_VARIANTS

    assert not {"flash", "compiled"} & set(CPU_TIER["attention_impl"])
    assert not any(MODEL_VARIANTS[v][1] for v in CPU_TIER["model_variant"])  # no torch.compile


def _gpu_env(record: dict) -> dict:
    """The stack a shipped GPU machine was named from, read back from its ``os`` field."""
    m = re.search(r"\| (.+) driver (\S+) CUDA (\S+) torch (\S+) triton (\S+) tf32 (on|off)$",
                  record["os"])
    assert m, record["os"]
    name, driver, cuda, torch, triton, tf32 = m.groups()
    return {"device": "cuda", "name": name, "driver": driver, "cuda": cuda, "torch": torch,
            "triton": triton, "tf32": tf32 == "on"}


def test_shipped_gpu_machines_keep_their_names():
    shipped = [p for p in (ROOT / "results").glob("*/machine.json")
               if p.parent.name.startswith("nvidia-")]
    assert len(shipped) >= 2  # the H100 and the H200 histories
    for path in shipped:
        env = _gpu_env(json.loads(path.read_text()))
        assert machine_name(env) == path.parent.name
        # on a GPU triton runs the flash kernel: its version is part of the name
        assert machine_name(dict(env, triton="9.9.9")) != path.parent.name
