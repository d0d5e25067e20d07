"""The suite's grid and its tiers: which cells each kind of machine measures, said once.

A *cell* is one parameter set of a benchmark class, as a dict keyed by the class's
``param_names``. The grid (``GRID``) is the same on every machine (asv's benchmarks.json is
shared by all of them); a *tier* is the subset a kind of machine measures:

- ``cpu``: what a 2-core CPU measures for the README's main job; every cell is gated there.
- ``gpu-quick``: the GPU merge gate's cells (attention d128 at seq 4096 and 16384, eager and
  sdpa, both dtypes; the `small` model at ctx 1024 in fp32, which is not host-bound on the H200).
- ``gpu``: every GPU cell: the seeds' forms and more.

What the tiers decide:
- asv's selection: ``selection(tier)`` gives ``asv -b`` regexes naming exactly the tier's cells,
  so cells outside it are never started (each would still cost a process);
- the n/a verdict of a cell run outside its device's tier (``why_not``), with its reason;
- sampling: a gated cell is measured in 2 processes of at least 6 samples each (what asv's
  Mann-Whitney test needs; ``GATED``); every other cell of the GPU tier is history for the
  graphs and the seed forms, measured in one process of at least 3 samples (``HISTORY``),
  which is what keeps the full GPU tier within its time budget (notes/gpu-box.md).
- the order of a full GPU run (``GPU_CHUNKS``): each chunk is one ``asv run`` whose results are
  saved when it ends, most-read cells first, so a run cut short keeps what it finished.

Nothing here imports torch or perfmodel: the scripts and the package read it as plain data.
"""
from __future__ import annotations

import itertools
import os
import re

SEED_PRESETS = ("small", "medium", "large", "xl", "2.7B")
CPU_PRESETS = ("nano", "tiny")

# class -> (benchmark module, {param name: values}); the classes take their params from here
GRID = {
    "Attention": ("bench_attention", {
        "impl": ["eager", "compiled", "sdpa", "flash", "flash_torch"],
        "dtype": ["float32", "bfloat16"],
        "d": [16, 32, 64, 128],
        "seq": [256, 1024, 4096, 8192, 16384],
    }),
    "Model": ("bench_model", {
        "preset": list(CPU_PRESETS + SEED_PRESETS),
        "context": [128, 256, 512, 1024],
        "precision": ["fp32", "bf16"],
        "variant": ["eager", "sdpa", "compiled", "flash"],
    }),
    "Warmup": ("bench_model", {
        "preset": list(CPU_PRESETS[:1] + SEED_PRESETS),
        "context": [128, 256, 512, 1024],
        "mode": ["fwd", "fwd_bwd"],
        "warmup": [0, 1, 5],
    }),
}

# Model variant -> (attention implementation, torch.compile of the whole model)
MODEL_VARIANTS = {"eager": ("eager", False), "sdpa": ("sdpa", False),
                  "compiled": ("eager", True), "flash": ("flash", False)}

# The model's modes that the suite times as parts of one marked train step (perfmodel.workloads
# ModelCell ``split``, TRAIN_PARTS: a test checks the two agree), so that a history run's grid
# point samples its train step once for all three (benchmarks/common.py Group). On since
# 2026-12-04: the backward's and forward+backward's numbers started new graph lines there
# (benchmarks/bench_model.py; notes/gpu-box.md, the split).
SPLIT_TRAIN_STEP = True
SPLIT_MODES = ("bwd", "fwd_bwd", "train")

# asv sampling per process: (min samples, max samples, seconds after which to stop) and rounds
GATED = {"repeat_gpu": (6, 10, 0.6), "repeat_cpu": (6, 10, 0.8), "rounds": 2}
HISTORY = {"repeat_gpu": (3, 10, 0.5), "repeat_cpu": (4, 10, 0.4), "rounds": 1}
# How a grouped history cell is opened (perfmodel.measure.Protocol fields over the device's own):
# one untimed step (and the protocol's minimum warm-up time) instead of two, and its memory, step
# and issue times read over its samples instead of a metered step of its own. The H200's warm-up
# study (337beebc): every preset's steps after 1 and after 5 warm-up steps agree within 0.5%
# wherever the step is not host-bound (notes/gpu-box.md); the two steps saved are a third of a
# large model cell's cost. The gate's cells keep the device's protocol in every run.
HISTORY_OPEN = {"warmup_steps": 1, "meter_step": False}
# Set by `perfmodel track` for a run that only records history (a CPU's main job): every CPU cell
# is then sampled as history, in the rounds the run asks for (-a rounds=1). The gate measures
# its two commits itself (asv continuous), never from this history.
HISTORY_RUN_ENV = ("PERFMODEL_SAMPLING", "history")


def params(kind: str) -> list[list]:
    return list(GRID[kind][1].values())


def param_names(kind: str) -> list[str]:
    return list(GRID[kind][1])


def cells(kind: str):
    """Every cell of a class, as dicts."""
    names = param_names(kind)
    for values in itertools.product(*params(kind)):
        yield dict(zip(names, values))


# ----------------------------------------------------------------- the tiers, as predicates
# Each returns None when the cell is in the tier, else the reason it is not (one line).

def _cpu(kind: str, c: dict) -> str | None:
    if kind == "Attention":
        ok = (c["impl"] in ("eager", "sdpa", "flash_torch") and c["dtype"] == "float32"
              and (c["d"], c["seq"]) in {(16, 256), (32, 256), (64, 256), (128, 256), (64, 1024)})
        return None if ok else "attention cell outside the CPU tier"
    if kind == "Model":
        ok = ((c["preset"], c["context"]) in {("nano", 128), ("nano", 256), ("tiny", 128)}
              and c["precision"] == "fp32" and c["variant"] in ("eager", "sdpa"))
        return None if ok else "model cell outside the CPU tier"
    ok = (c["preset"], c["context"]) == ("nano", 128)
    return None if ok else "warm-up cell outside the CPU tier"


FLASH_TORCH_MAX_SEQ = 4096  # tiled PyTorch: a reference, minutes per cell beyond this


def _gpu(kind: str, c: dict) -> str | None:
    if kind == "Attention":
        if c["impl"] == "flash_torch" and c["seq"] > FLASH_TORCH_MAX_SEQ:
            return f"flash_torch beyond seq {FLASH_TORCH_MAX_SEQ} is outside the GPU tier"
        return None
    if c["preset"] not in SEED_PRESETS:
        return "CPU-sized preset: CPU tier only"
    if kind == "Model" and c["variant"] == "compiled" and c["preset"] != "small":
        return ("compiled model: the small preset only in the GPU tier (a whole-model "
                "torch.compile costs 30-80 s per shape and process)")
    return None


def _gpu_quick(kind: str, c: dict) -> str | None:
    if kind == "Attention":
        ok = (c["impl"] in ("eager", "sdpa") and c["d"] == 128 and c["seq"] in (4096, 16384))
    elif kind == "Model":
        ok = (c["preset"], c["context"], c["precision"], c["variant"]) == ("small", 1024, "fp32",
                                                                             "sdpa")
    else:
        ok = False
    return None if ok else "outside the GPU merge gate's cells"


TIERS = {"cpu": _cpu, "gpu-quick": _gpu_quick, "gpu": _gpu}
DEVICE_TIER = {"cpu": "cpu", "cuda": "gpu"}  # the tier a device runs when asv runs everything
# The merge gate per device (perfmodel gate): the tier it compares; asv's factor (a time cell must
# move by more than this, and significantly: 1.2 on a shared 2-core CPU, 1.05 on the H200,
# notes/gate.md); the screen, beyond which a cell that moved either way is measured again; and
# how many cells one asv call of the confirm stage measures, so that a commit's block of a round
# lasts a few seconds (a CPU process about 1 s: with 18 cells a block lasted 18 s, longer than
# the host holds its speed, and an unchanged commit was confirmed 1.35x slower).
GATE = {"cpu": {"tier": "cpu", "factor": 1.2, "screen": 1.1, "confirm_batch": 4},
        "cuda": {"tier": "gpu-quick", "factor": 1.05, "screen": 1.03, "confirm_batch": 8}}
GATE_TIER = {device: gate["tier"] for device, gate in GATE.items()}


def why_not(tier: str, kind: str, cell: dict) -> str | None:
    return TIERS[tier](kind, cell)


def why_not_on(device: str, kind: str, cell: dict) -> str | None:
    """None when ``device`` ('cpu' or 'cuda') measures the cell, else why it does not."""
    return why_not(DEVICE_TIER[device], kind, cell)


def gated(device: str, kind: str, cell: dict) -> bool:
    """Whether the device's merge gate compares this cell (it is then sampled as GATED)."""
    return why_not(GATE_TIER[device], kind, cell) is None


def repeat(device: str, kind: str, cell: dict, history_run: bool = False) -> tuple:
    """asv's ``repeat`` (min samples, max samples, seconds) for a cell: GATED for a cell the
    device's gate compares, HISTORY otherwise, and HISTORY for every CPU cell in a history run.
    A GPU's gated cells keep the gate's sampling in every run, so their history is what the
    gate compares."""
    if device == "cuda":
        return GATED["repeat_gpu"] if gated(device, kind, cell) else HISTORY["repeat_gpu"]
    return HISTORY["repeat_cpu"] if history_run else GATED["repeat_cpu"]


def grouped(device: str, kind: str, cell: dict, history_run: bool = False) -> bool:
    """Whether a cell is measured with the other cells of its grid point in one process
    (benchmarks/common.py Group): in a history run, every cell sampled as history. A cell the
    GPU's gate compares keeps a process per round, as the gate measures it.
    ``PERFMODEL_ASV_GROUP=0`` turns grouping off (to compare costs)."""
    if not history_run or os.environ.get("PERFMODEL_ASV_GROUP", "1") == "0":
        return False
    return device != "cuda" or not gated(device, kind, cell)


# A torch.compile cell's group spans one parameter more: in a fresh process its first step pays
# Dynamo's tracing and AOTAutograd's set-up even with warm caches (3.6 s an attention process
# and 5.3 s a model process on the H100, 2026-12-06, notes/gpu-box.md), where a further shape in
# the same process costs a fraction of that (on the CPU, caches warm: the first shape 1.5 s, the
# next ones 0.1-0.2 s). So one process measures a compiled (impl, dtype, d)'s sequence lengths,
# or a compiled (preset, precision)'s contexts, one grid point after another.
# class -> (parameter, value that spans, the parameter spanned); PERFMODEL_ASV_SPAN=0: none.
SPANS = {"Attention": ("impl", "compiled", "seq"), "Model": ("variant", "compiled", "context")}


def span(device: str, kind: str, cell: dict, history_run: bool = False) -> list[dict]:
    """The grid points whose cells one process measures together with ``cell``'s in a history
    run, in grid order, ``cell`` among them: its own alone unless SPANS names it, and then only
    those the device measures and groups."""
    rule = SPANS.get(kind)
    if (rule is None or cell.get(rule[0]) != rule[1] or os.environ.get("PERFMODEL_ASV_SPAN") == "0"
            or not grouped(device, kind, cell, history_run)):
        return [cell]
    points = [dict(cell, **{rule[2]: value}) for value in GRID[kind][1][rule[2]]]
    return [c for c in points if c == cell or (why_not_on(device, kind, c) is None
                                               and grouped(device, kind, c, history_run))]


def tier_cells(tier: str, kind: str) -> list[dict]:
    return [c for c in cells(kind) if why_not(tier, kind, c) is None]


# ----------------------------------------------------------------- asv's selection

def asv_params(kind: str, cell: dict) -> str:
    """The cell's parameters as asv writes them in a benchmark's name: ``('sdpa', 128)``."""
    return "(" + ", ".join(repr(cell[n]) for n in param_names(kind)) + ")"


# Methods a CPU never measures: the suite skips them there (a memory figure is the CUDA
# allocator's count, and the host's issue time, backlog and free step describe a GPU's launch
# queue), so the CPU tier's regexes leave them out and asv starts no process for them (219 of
# a CPU commit's 345, about 15 s of it, 2026-12-03).
GPU_ONLY_METHODS = r"track_(?:gpu_peak_bytes|before_backward_bytes|issue_seconds|backlog_seconds|free_seconds)"
CPU_TIERS = ("cpu",)


def measures(tier: str, benchmark: str) -> bool:
    """Whether ``tier`` runs ``benchmark`` (a full name or a method's) at all."""
    return tier not in CPU_TIERS or not re.match(GPU_ONLY_METHODS, benchmark.rsplit(".", 1)[-1])


def regex(kind: str, chosen: list[dict], tier: str | None = None) -> str | None:
    """One ``asv -b`` regex matching every benchmark of ``kind`` that ``tier`` runs (every one
    when None) at exactly these cells."""
    if not chosen:
        return None
    module = GRID[kind][0]
    alternatives = "|".join(re.escape(asv_params(kind, c)[1:-1]) for c in chosen)
    method = rf"(?!{GPU_ONLY_METHODS})[a-z_]+" if tier in CPU_TIERS else "[a-z_]+"
    return rf"^{module}\.{kind}\.{method}\((?:{alternatives})\)$"


def selection(tier: str, keep=None) -> list[str]:
    """``asv -b`` regexes naming the tier's cells (those ``keep(kind, cell)`` accepts) in the
    methods it runs (``measures``)."""
    out = []
    for kind in GRID:
        chosen = [c for c in tier_cells(tier, kind) if keep is None or keep(kind, c)]
        if (r := regex(kind, chosen, tier)) is not None:
            out.append(r)
    return out


def compiles(kind: str, c: dict) -> bool:
    """Whether the cell's first step runs torch.compile (Inductor's graphs and kernels): what
    perfmodel track warms several at a time before asv measures (perfmodel/prewarm.py).

    Flash's cells compile too (Triton kernels, their autotuning) but are left to asv: warming
    them cost more wall than it saved on a cold box, every time it was measured (notes/gpu-box.md:
    H100 attention flash 2.8 min warming for 2.2 saved; H200 attention flash 2.6 for 2.5, model
    flash 3.8 for 2.5). A flash kernel compiles in seconds and its tuning must be timed alone
    anyway; a compiled model takes Inductor about 70 s."""
    return ((kind == "Attention" and c["impl"] == "compiled")
            or (kind == "Model" and c["variant"] == "compiled"))


def _not_gated(kind, c):
    return why_not("gpu-quick", kind, c) is not None


# (name, which cells of the GPU tier outside the gate, asv rounds): a full GPU run takes these
# in order, after the gate's cells (2 rounds); the seed forms' cells first, compiles last.
GPU_CHUNKS = [
    ("attention eager, sdpa",
     lambda k, c: k == "Attention" and c["impl"] in ("eager", "sdpa")),
    ("model eager, sdpa",
     lambda k, c: k == "Model" and c["variant"] in ("eager", "sdpa")),
    ("warm-up study", lambda k, c: k == "Warmup"),
    ("attention flash, flash_torch",
     lambda k, c: k == "Attention" and c["impl"] in ("flash", "flash_torch")),
    ("model flash", lambda k, c: k == "Model" and c["variant"] == "flash"),
    ("attention compiled", lambda k, c: k == "Attention" and c["impl"] == "compiled"),
    ("model compiled", lambda k, c: k == "Model" and c["variant"] == "compiled"),
]


GATE_CHUNK = "gate cells"  # the full GPU run's first chunk: the GPU gate's cells, its rounds


def gpu_plan() -> list[tuple[str, list[str], int | None]]:
    """The full GPU run as (chunk name, asv -b regexes, rounds or None for the class's)."""
    plan = [(GATE_CHUNK, selection("gpu-quick"), None)]
    for name, keep in GPU_CHUNKS:
        plan.append((name, selection("gpu", lambda k, c, keep=keep: _not_gated(k, c) and keep(k, c)),
                     HISTORY["rounds"]))
    return plan


def gpu_chunk(kind: str, cell: dict) -> str | None:
    """The chunk of gpu_plan that measures the cell (None: the GPU tier leaves it out)."""
    if why_not("gpu", kind, cell) is not None:
        return None
    if not _not_gated(kind, cell):
        return GATE_CHUNK
    return next((name for name, keep in GPU_CHUNKS if keep(kind, cell)), None)


def main(argv=None) -> int:
    """``python -m benchmarks.tiers TIER``: the tier's asv -b regexes, one per line;
    ``python -m benchmarks.tiers --plan``: the full GPU run, one chunk per line as
    ``rounds<TAB>name<TAB>regex1<TAB>regex2...`` (rounds 0: the class's own)."""
    import sys  # noqa: PLC0415

    argv = sys.argv[1:] if argv is None else argv
    if argv == ["--plan"]:
        for name, regexes, rounds in gpu_plan():
            print("\t".join([str(rounds or 0), name, *regexes]))
        return 0
    if len(argv) != 1 or argv[0] not in TIERS:
        print(f"usage: python -m benchmarks.tiers {{{','.join(TIERS)}}} | --plan", file=sys.stderr)
        return 2
    print("\n".join(selection(argv[0])))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
