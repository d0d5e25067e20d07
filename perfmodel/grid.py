"""Run a grid of cells one after another, with a progress bar, keeping every cell's result."""
from __future__ import annotations

import sys
import time
from typing import Iterable

from .measure import Result, run_cell


def label(d: dict) -> str:
    """A cell by the fields a grid varies, from its describe() dict."""
    keys = ("preset", "context", "precision", "attention", "mode") if "preset" in d else (
        "impl", "dtype", "d", "seq", "pass")
    return " ".join(f"{k}={d[k]}" for k in keys)


def run_grid(cells: Iterable, device, warmup: int | None, steps: int,
             peak_tflops: float | None = None, progress=sys.stderr) -> list[Result]:
    """Every cell by perfmodel.measure.run_cell (``warmup`` None: the device's protocol)."""
    cells = list(cells)
    results = []
    tty = progress is not None and progress.isatty()
    start = time.perf_counter()
    for i, cell in enumerate(cells, 1):
        if progress is not None:
            done = int(20 * (i - 1) / len(cells))
            line = f"[{'#' * done}{'.' * (20 - done)}] {i}/{len(cells)} {label(cell.describe())}"
            progress.write(("\r\033[K" + line) if tty else line + "\n")
            progress.flush()
        results.append(run_cell(cell, device, warmup, steps, peak_tflops))
    if progress is not None:
        elapsed = time.perf_counter() - start
        progress.write(("\r\033[K" if tty else "") + f"{len(cells)} cells in {elapsed:.1f} s\n")
    return results
