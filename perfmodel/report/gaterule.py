"""The gate's settings for a machine's results: which device, factor and cells (benchmarks/tiers.py
``GATE``), for the pages that judge stored results with perfmodel.verdict.

tiers.py is read from the clone the report runs in (its suite made the results), else from the
tree perfmodel was installed from; it is the project's own code, never a results file.
"""
from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path

from ..errors import UserError
from ..repo import load_tiers
from .. import verdict
from ..verdict import device_of


@dataclass(frozen=True)
class GateRule:
    device: str                 # 'cpu' or 'cuda'
    factor: float
    tier: str
    patterns: tuple = field(default=())  # asv -b regexes of the gate's cells (tiers.selection)

    def gated(self, name: str) -> bool:
        """Whether the gate compares this asv name, ``bench.Class.method(params)``, as
        ``asv -b`` selects it (a search)."""
        return verdict.judged(name) and any(p.search(name) for p in self.patterns)


def _tiers_path(repo) -> Path:
    for root in ([Path(repo)] if repo else []) + [Path(__file__).resolve().parents[2]]:
        path = root / "benchmarks" / "tiers.py"
        if path.is_file():
            return path
    raise UserError("no benchmarks/tiers.py (the gate's settings) in the repository or next to "
                    "the perfmodel package: run in the project's clone (--repo)")


_CACHE: dict = {}


def clone_tiers(repo="."):
    """The clone's benchmarks/tiers.py, loaded once, as track and gate load it."""
    path = _tiers_path(repo)
    if path not in _CACHE:
        _CACHE[path] = load_tiers(str(path.parent.parent))
    return _CACHE[path]


def gate_rule(machine: str, repo=".") -> GateRule:
    """The gate of the device whose results ``machine`` names (a GPU's name starts 'nvidia-')."""
    tiers = clone_tiers(repo)
    device = device_of(machine)
    gate = tiers.GATE[device]
    return GateRule(device, float(gate["factor"]), gate["tier"],
                    tuple(re.compile(r) for r in tiers.selection(gate["tier"])))
