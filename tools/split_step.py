"""Can one timed train step stand in for three modes? Times a model cell both ways and compares.

The suite times backward, forward+backward and the train step as three cells, each its own
steps (notes/gpu-box.md: they are 90% of a model chunk's GPU time). A train step is the loss
(forward), its backward, then the optimizer; timed with marks between the three, one burst of
train steps gives all three numbers: backward = loss mark to optimizer mark, forward+backward
= start to optimizer mark, train = start to end. This tool measures a cell both ways in one
process and prints split / suite per mode, so the change can be judged before the suite takes
it (device-bound steps should agree within 1%; where the host paces a step they may not, since
the split backward starts right behind its forward instead of behind a stream hold).

    python3 -m tools.split_step --preset small,medium,large,xl,2.7B --precision fp32,bf16
    python3 -m tools.split_step --preset nano --context 64 --samples 3     # a CPU dry run

The suite's way is perfmodel.measure.run_cell with the device's protocol; the split way uses
the same built train cell (perfmodel.workloads.ModelCell), the same hold and L2 flush before
each step and bursts of the size the protocol picks, with CUDA events as the marks (on a CPU,
the host's clock: the host is the device there).
"""
from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from dataclasses import replace

import torch
from torch.optim.optimizer import register_optimizer_step_pre_hook

from perfmodel import measure
from perfmodel.errors import UserError
from perfmodel.memory import free_device_memory
from perfmodel.measure import HOLD_CLOCK_HZ
from perfmodel.workloads import ModelCell

MODES = ("bwd", "fwd_bwd", "train")
SPANS = {"bwd": (1, 2), "fwd_bwd": (0, 2), "train": (0, 3)}  # (from mark, to mark)


class Marks:
    """Four marks per step: start, before the backward (the step marks it for the memory
    meter), before the optimizer's step, end. CUDA events on a GPU, the host's clock on a CPU."""

    def __init__(self, device: torch.device):
        self.device = device
        self.steps: list[list] = []

    def new_step(self) -> None:
        self.steps.append([])
        self.mark()

    def mark(self) -> None:
        if not self.steps or len(self.steps[-1]) >= 4:
            return  # a mark outside a timed step (warm-up of the suite's own cells)
        if self.device.type == "cuda":
            event = torch.cuda.Event(enable_timing=True)
            event.record()
            self.steps[-1].append(event)
        else:
            self.steps[-1].append(time.perf_counter())

    def spans(self) -> list[dict[str, float]]:
        """Seconds of each mode's span, step by step (call after a synchronize)."""
        out = []
        for marks in self.steps:
            if len(marks) != 4:
                raise RuntimeError(f"a train step gave {len(marks)} marks, not 4")

            def gap(a, b, marks=marks):
                if self.device.type == "cuda":
                    return marks[a].elapsed_time(marks[b]) / 1e3
                return marks[b] - marks[a]
            out.append({m: gap(*SPANS[m]) for m in MODES})
        self.steps = []
        return out


def split_samples(cell: ModelCell, device: torch.device, samples: int) -> dict[str, list[float]]:
    """Samples of each mode from bursts of train steps with marks: a sample is the median over
    its burst, as perfmodel.measure.Runnable.sample takes it."""
    run = cell.build(device)
    marks = Marks(device)
    meter_mark = run.meter.mark_before_backward

    def before_backward():
        meter_mark()
        marks.mark()
    run.meter.mark_before_backward = before_backward
    hook = register_optimizer_step_pre_hook(lambda *_: marks.mark())
    try:
        for _ in range(max(2, run.protocol.warmup_steps)):  # the protocol's warm-up
            run.last = run.timed_steps(1)[0]
        out: dict[str, list[float]] = {m: [] for m in MODES}
        for _ in range(samples):
            n = run.burst_size()
            for _ in range(n):
                state = run._prepare()  # the L2 flush, as every timed step has it
                if device.type == "cuda":
                    hold = run.hold_seconds()
                    if hold:
                        torch.cuda._sleep(int(hold * HOLD_CLOCK_HZ))
                marks.new_step()
                t0 = time.perf_counter()
                run.step(state)
                run.launch = time.perf_counter() - t0
                marks.mark()
                del state
            measure.synchronize(device)
            spans = marks.spans()
            for m in MODES:
                out[m].append(statistics.median(s[m] for s in spans))
            run.last = out["train"][-1]
        return out
    finally:
        hook.remove()
        run.release()
        del run
        free_device_memory(device)


def suite_median(cell: ModelCell, device: torch.device, mode: str, samples: int) -> float:
    """The suite's way: the mode's own cell, by the device's protocol (median of its samples)."""
    result = measure.run_cell(replace(cell, mode=mode), device, steps=samples)
    if result.stats is None:
        raise RuntimeError(f"{mode}: {result.status} {result.error}")
    return result.stats.median


def compare(cell: ModelCell, device: torch.device, samples: int) -> dict:
    row = dict(preset=cell.preset, context=cell.context, precision=cell.precision,
               attention=cell.attention)
    t0 = time.perf_counter()
    suite = {m: suite_median(cell, device, m, samples) for m in MODES}
    row["suite_s"] = time.perf_counter() - t0
    t0 = time.perf_counter()
    split = {m: statistics.median(v) for m, v in split_samples(cell, device, samples).items()}
    row["split_s"] = time.perf_counter() - t0
    for m in MODES:
        row[m] = dict(suite=suite[m], split=split[m], ratio=split[m] / suite[m])
    return row


def table(rows: list[dict]) -> str:
    out = ["| preset | precision | " + " | ".join(f"{m} suite ms | split ms | ratio" for m in MODES)
           + " | time both ways (s) |",
           "|---|---|" + "---:|---:|---:|" * len(MODES) + "---|"]
    for r in rows:
        if "error" in r:
            out.append(f"| {r['preset']} | {r['precision']} | {r['error']} |")
            continue
        cells = " | ".join(f"{r[m]['suite'] * 1e3:.2f} | {r[m]['split'] * 1e3:.2f} | "
                           f"{r[m]['ratio']:.3f}" for m in MODES)
        out.append(f"| {r['preset']} | {r['precision']} | {cells} | "
                   f"{r['suite_s']:.0f} / {r['split_s']:.0f} |")
    return "\n".join(out)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--preset", default="small,medium,large,xl,2.7B")
    p.add_argument("--precision", default="fp32,bf16")
    p.add_argument("--context", type=int, default=1024)
    p.add_argument("--attention", default="sdpa")
    p.add_argument("--samples", type=int, default=5)
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    p.add_argument("--json", default=None)
    args = p.parse_args(argv)
    device = torch.device(args.device)
    rows = []
    try:
        cells = [ModelCell(preset=pr, context=args.context, precision=pc, attention=args.attention,
                           mode="train")
                 for pr in args.preset.split(",") for pc in args.precision.split(",")]
        for c in cells:
            c.validate()
    except UserError as err:
        print(f"split_step: {err}", file=sys.stderr)
        return 2
    for c in cells:
        try:
            rows.append(compare(c, device, args.samples))
        except (RuntimeError, torch.OutOfMemoryError) as err:
            rows.append(dict(preset=c.preset, precision=c.precision,
                             error=measure.one_line(err)))
        print(table(rows[-1:]).splitlines()[-1], flush=True)
    if args.json:
        with open(args.json, "w") as f:
            json.dump(rows, f, indent=1)
    print(table(rows))
    return 0 if all("error" not in r for r in rows) else 1


if __name__ == "__main__":
    sys.exit(main())
