"""Can one timed train step stand in for three modes? Times a model cell both ways and compares.

The suite times backward, forward+backward and the train step as three cells, each its own
steps (notes/gpu-box.md: they are 90% of a model chunk's GPU time). A train step is the loss
(forward), its backward, then the optimizer; timed with marks between the three, one burst of
train steps gives all three numbers: backward = before-backward mark to optimizer mark,
forward+backward = the step less its optimizer, train = the step. This tool measures a cell
both ways in one process and prints split / suite per mode, so the change can be judged before
the suite takes it (device-bound steps should agree within 1%; where the host paces a step they
may not, since the split backward starts right behind its forward instead of behind a stream
hold).

    python3 -m tools.split_step --preset small,medium,large,xl,2.7B --precision fp32,bf16
    python3 -m tools.split_step --samples 3 --repeats 2     # both ways twice, alternating
    python3 -m tools.split_step --preset nano --context 64 --samples 3     # a CPU dry run

The suite's way opens each mode's cell with perfmodel.measure.open_cell by the device's protocol
(its metered step tells whether the step is host-bound) and samples it; the split way opens and
samples the split train cell (perfmodel.workloads.ModelCell ``split``: the same step with
perfmodel.measure.Marks inside, CUDA events on a GPU and the host's clock on a CPU, where the
host is the device) the same way, and reads each mode from the same bursts.
"""
from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from dataclasses import replace

import torch

from perfmodel import measure
from perfmodel.errors import UserError
from perfmodel.memory import free_device_memory
from perfmodel.names import host_bound
from perfmodel.workloads import TRAIN_PARTS, ModelCell

# the modes one marked train step times: every mode of the suite's but the forward (which runs
# under no_grad, without the loss)
MODES = tuple(TRAIN_PARTS)


def split_samples(cell: ModelCell, device: torch.device, samples: int) -> dict[str, list[float]]:
    """Samples of each mode from bursts of marked train steps: the cell split
    (perfmodel.workloads.ModelCell ``split``), opened and sampled by perfmodel.measure as the
    suite's way is; each sample's parts (Runnable.parts_sample) are the medians over its burst."""
    opened = measure.open_cell(replace(cell, mode="train", split=True), device,
                               measure.Protocol.for_device(device))
    if opened.runnable is None:
        raise RuntimeError(f"split train step: {opened.status} {opened.error}")
    run = opened.runnable
    try:
        out: dict[str, list[float]] = {m: [] for m in MODES}
        for _ in range(samples):
            run.sample()
            for m in MODES:
                out[m].append(run.parts_sample[m])
        return out
    finally:
        run.release()
        opened.runnable = None
        del run
        free_device_memory(device)


def suite_cell(cell: ModelCell, device: torch.device, mode: str, samples: int):
    """The suite's way: the mode's own cell opened by the device's protocol (its metered step
    gives the figures that tell a host-bound step), then ``samples`` samples. Returns (median
    seconds, host-bound: True, False or None when the figures cannot tell, as on a CPU)."""
    opened = measure.open_cell(replace(cell, mode=mode), device,
                               measure.Protocol.for_device(device))
    if opened.runnable is None:
        raise RuntimeError(f"{mode}: {opened.status} {opened.error}")
    try:
        times = [opened.runnable.sample() for _ in range(samples)]
    finally:
        opened.runnable.release()
        opened.runnable = None
        free_device_memory(device)
    return statistics.median(times), host_bound(opened.step_s, opened.issue_s, opened.backlog_s,
                                                opened.free_s)


def compare(cell: ModelCell, device: torch.device, samples: int, split_first: bool = False) -> dict:
    """Both ways in turn (``split_first``: the split way first, so that repeats alternate and a
    drift of the host over the run falls on both ways alike)."""
    row = dict(preset=cell.preset, context=cell.context, precision=cell.precision,
               attention=cell.attention, split_first=split_first)

    def suite_way():
        t0 = time.perf_counter()
        got = {m: suite_cell(cell, device, m, samples) for m in MODES}
        row["suite_s"] = time.perf_counter() - t0
        row["host_bound"] = {m: bound for m, (_, bound) in got.items()}
        return {m: median for m, (median, _) in got.items()}

    def split_way():
        t0 = time.perf_counter()
        got = {m: statistics.median(v) for m, v in split_samples(cell, device, samples).items()}
        row["split_s"] = time.perf_counter() - t0
        return got

    if split_first:
        split, suite = split_way(), suite_way()
    else:
        suite, split = suite_way(), split_way()
    for m in MODES:
        row[m] = dict(suite=suite[m], split=split[m], ratio=split[m] / suite[m])
    return row


def summary(rows: list[dict]) -> str:
    """Per cell over its repeats: each mode's median ratio, and the train column's spread as the
    check's own noise (train is timed the same way both ways: only the marks differ)."""
    cells: dict[tuple, list[dict]] = {}
    for r in rows:
        if "error" not in r:
            cells.setdefault((r["preset"], r["precision"]), []).append(r)
    out = ["| preset | precision | repeats | bwd ratio | fwd_bwd ratio | train ratio "
           "| train ratios, min-max | host-bound (suite) |", "|---|---|---:|---:|---:|---:|---|---|"]
    for (preset, precision), rs in cells.items():
        med = {m: statistics.median(r[m]["ratio"] for r in rs) for m in MODES}
        train = [r["train"]["ratio"] for r in rs]
        out.append(f"| {preset} | {precision} | {len(rs)} | " + " | ".join(
            f"{med[m]:.3f}" for m in MODES) + f" | {min(train):.3f}-{max(train):.3f} | "
            f"{bound_modes(rs)} |")
    return "\n".join(out)


def bound_modes(rows: list[dict]) -> str:
    """The modes the suite's way found host-bound in any of ``rows`` ("-": none; "n/a": the
    figures could not tell, as on a CPU, where the host is the device)."""
    marks = [r.get("host_bound", {}) for r in rows]
    if all(mark.get(m) is None for mark in marks for m in MODES):
        return "n/a"
    return ", ".join(m for m in MODES if any(mark.get(m) for mark in marks)) or "-"


def table(rows: list[dict]) -> str:
    out = ["| preset | precision | " + " | ".join(f"{m} suite ms | split ms | ratio" for m in MODES)
           + " | host-bound (suite) | time both ways (s) |",
           "|---|---|" + "---:|---:|---:|" * len(MODES) + "---|---|"]
    for r in rows:
        if "error" in r:
            out.append(f"| {r['preset']} | {r['precision']} | {r['error']} |")
            continue
        cells = " | ".join(f"{r[m]['suite'] * 1e3:.2f} | {r[m]['split'] * 1e3:.2f} | "
                           f"{r[m]['ratio']:.3f}" for m in MODES)
        out.append(f"| {r['preset']} | {r['precision']} | {cells} | {bound_modes([r])} | "
                   f"{r['suite_s']:.0f} / {r['split_s']:.0f} |")
    return "\n".join(out)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--preset", default="small,medium,large,xl,2.7B")
    p.add_argument("--precision", default="fp32,bf16")
    p.add_argument("--context", type=int, default=1024)
    p.add_argument("--attention", default="sdpa")
    p.add_argument("--samples", type=int, default=5)
    p.add_argument("--repeats", type=int, default=1,
                   help="both ways this many times per cell, the order alternating")
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
    if args.repeats < 1 or args.samples < 1:
        print("split_step: --repeats and --samples must be at least 1", file=sys.stderr)
        return 2
    for repeat in range(args.repeats):
        for c in cells:
            try:
                rows.append(compare(c, device, args.samples, split_first=bool(repeat % 2)))
            except (RuntimeError, torch.OutOfMemoryError) as err:
                rows.append(dict(preset=c.preset, precision=c.precision,
                                 error=measure.one_line(err)))
            print(table(rows[-1:]).splitlines()[-1], flush=True)
            if args.json:  # after every cell: a run cut short keeps what it measured
                with open(args.json, "w") as f:
                    json.dump(rows, f, indent=1)
    print(table(rows))
    if args.repeats > 1:
        print(summary(rows))
    return 0 if all("error" not in r for r in rows) else 1


if __name__ == "__main__":
    sys.exit(main())
