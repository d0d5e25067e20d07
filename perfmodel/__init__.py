"""perfmodel: a Transformer LM, its attention kernels, and a tracker of how fast they run.

Importing the package imports nothing heavy: torch comes with the first name that needs it
(``perfmodel.run_cell``, ``perfmodel.TransformerLM``, ...), so the asv publisher plugin and the
report load where torch is not installed.
"""
from __future__ import annotations

import importlib

__version__ = "0.1.0"

# public name -> the module that defines it (loaded on first use, PEP 562)
_LAZY = {
    # (perfmodel.attention is the module; its function is perfmodel.attention.attention)
    "IMPLEMENTATIONS": "attention", "reference_attention": "attention",
    "UserError": "errors",
    "Result": "measure", "resolve_device": "measure", "run_cell": "measure",
    "PRESETS": "model", "ModelConfig": "model", "TransformerLM": "model",
    "count_params": "model", "get_config": "model",
    "AttentionCell": "workloads", "ModelCell": "workloads",
}
__all__ = sorted(_LAZY)


def __getattr__(name: str):
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'perfmodel' has no attribute {name!r}")
    value = getattr(importlib.import_module(f".{module}", __name__), name)
    globals()[name] = value
    return value


def __dir__():
    return sorted(set(globals()) | set(_LAZY))
