"""Stage 2, cells: the long frame from load.py -> one row per parameter cell, and how a cell
is written in a table.

``normalize`` maps the suite's names (benchmarks/README.md: classes Attention, Model, Warmup;
``time_<mode>`` with a ``track_status_<mode>`` each; memory as ``track_*_bytes*``/``peakmem_*``)
onto canonical columns: kind (the class), measure, role (value / status / mean / std), and the
parameters under the names benchmarks.json gives them. ``cells`` then gives one row per parameter
cell with ``<measure>_status``, ``_value`` (asv's median), ``_mean``, ``_std``, ``_n``, and on a GPU
``_issue`` (the host's seconds to issue the step), ``_backlog`` (the device's work left then),
``_free`` (the step's time with a head start, where taken), ``_host_bound`` and ``_host_unknown``
(names.host_bound could not tell). Values stay in seconds and
bytes; the formatters below write them in the tables' units (one unit per quantity: ms, MiB).

The tables' orderings (implementations, presets, dtypes, ...) are benchmarks.json's: the order of
each parameter's values there (``normalize`` keeps them as ``attrs["orders"]``).
"""
from __future__ import annotations

import math
import re
from dataclasses import dataclass

import pandas as pd

from ..names import (FAILED, HOST_FIGURE_METHOD, HOST_FIGURES, MODES, NA, OK, OOM, SPLIT_SUFFIX,
                     STATUS_OF_CODE, host_bound, with_body)

MiB = 2**20
KINDS = ("attention", "model", "warmup")  # the suite's classes the tables read
KIND_LABELS = {"attention": "attention", "model": "model", "warmup": "warm-up study"}


def kind_of(benchmark: str) -> str:
    """A benchmark's class, as the tables name it: bench_model.Model.time_forward -> model."""
    return benchmark.rsplit(".", 2)[-2].lower() if benchmark.count(".") else ""
# The parameters each class's tables read, and the type of their values (benchmarks/README.md).
# A benchmark of the class whose benchmarks.json entry lacks one, or holds another type, is left
# out of the tables with a note naming it (a renamed parameter is a new benchmark to the tables).
KIND_PARAMS = {
    "attention": {"impl": str, "dtype": str, "d": int, "seq": int},
    "model": {"preset": str, "context": int, "precision": str, "variant": str},
    "warmup": {"preset": str, "context": int, "mode": str, "warmup": int},
}
WORST_FIRST = [OOM, FAILED, NA, OK]
# bench_model.Model's cells are warmed up by the measurement protocol (perfmodel.measure: at least
# 2 steps and 0.1 s on a GPU, 1 step and 0.02 s on the CPU), then sampled.
MODEL_WARMUP_STEPS = "protocol"


def classify(method: str) -> tuple[str, str] | None:
    """asv method name -> (measure, role)."""
    m = re.fullmatch(r"time_(\w+)", method)
    if m and m.group(1) in MODES:
        return MODES[m.group(1)], "value"
    m = re.fullmatch(r"track_status_(\w+)", method)
    if m and m.group(1) in MODES:
        return MODES[m.group(1)], "status"
    m = re.fullmatch(HOST_FIGURE_METHOD, method)  # GPU: what names.host_bound reads
    if m and m.group(2) in MODES:
        return MODES[m.group(2)], m.group(1)
    if method == "track_status":
        return "step", "status"
    if method == "time_step":  # the warm-up study: its samples are the steps, in order
        return "step", "value"
    if method == "track_step_mean":
        return "step", "mean"
    if method == "track_step_std":
        return "step", "std"
    if method == "track_before_backward_bytes":
        return "mem_before_bwd", "value"
    m = re.fullmatch(r"track_gpu_peak_bytes_(\w+)", method)
    if m and m.group(1) in MODES:
        return f"gpu_peak_{MODES[m.group(1)]}", "value"
    m = re.fullmatch(r"peakmem_(\w+)", method)
    if m and m.group(1) in MODES:
        return f"host_peak_{MODES[m.group(1)]}", "value"
    m = re.fullmatch(r"track_(total|warmup)_seconds", method)  # the warm-up study's wall times
    if m:
        return f"{m.group(1)}_s", "value"
    return None


def kind_problem(kind: str, bench: dict) -> str | None:
    """Why a benchmark of ``kind`` cannot be a cell of its tables, or None."""
    from .load import COLUMNS, literal  # noqa: PLC0415

    want = KIND_PARAMS[kind]
    values = dict(zip(bench["param_names"], bench["params"]))
    clash = [n for n in values if not n.isidentifier() or n in COLUMNS]
    if clash:  # each parameter becomes a column beside the report's own
        return f"parameter name {clash[0]!r:.40} is not an identifier free for a column"
    for name, typ in want.items():
        if name not in values:
            return f"no parameter {name!r} (the tables read {', '.join(want)})"
        bad = [v for v in values[name] if type(literal(v)) is not typ
               or (typ is int and literal(v) < 0)]
        if bad:
            return (f"parameter {name} holds {bad[0]!r:.40}, not "
                    + ("a whole number >= 0" if typ is int else "a string"))
    return None


def normalize(frame: pd.DataFrame, benchmarks: dict, notes=None) -> pd.DataFrame:
    """Rows the tables read, with each parameter as a column named as in benchmarks.json."""
    rows, keys, usable, orders = [], {}, {}, {}
    for rec in frame.to_dict("records"):
        name = rec["benchmark"]
        if name not in usable:
            usable[name] = None
            what = classify(rec["method"])
            cls = kind_of(name)
            if what is not None and cls in KINDS:
                why = kind_problem(cls, benchmarks[name])
                if why is None:
                    usable[name] = (cls, what)
                elif notes is not None:
                    notes.leave("benchmarks.json", f"{name} params", f"{why}; not in the tables")
        if usable[name] is None:
            continue
        cls, what = usable[name]
        names = benchmarks[name]["param_names"]
        if keys.setdefault(cls, names) != names:
            continue  # a method of the class with other parameters: not a cell of its grid
        if cls not in orders:  # the parameters' values in benchmarks.json's order
            from .load import literal  # noqa: PLC0415
            orders[cls] = {n: [literal(v) for v in vals]
                           for n, vals in zip(names, benchmarks[name]["params"])}
        rows.append(dict(rec, kind=cls, measure=what[0], role=what[1], **rec["params"]))
    out = pd.DataFrame(rows)
    out.attrs["keys"] = keys
    out.attrs["orders"] = orders
    out.attrs["split"] = split_modes(benchmarks)
    return out


def split_modes(benchmarks: dict) -> tuple[str, ...]:
    """The model's modes that benchmarks.json files as parts of one marked train step (their
    ``time_`` version ends in names.SPLIT_SUFFIX): results of other versions are left out
    (load.py), so every number the tables show of such a mode was timed that way."""
    out = []
    for suffix, mode in MODES.items():
        version = (benchmarks.get(f"bench_model.Model.time_{suffix}") or {}).get("version")
        if isinstance(version, str) and version.endswith(SPLIT_SUFFIX):
            out.append(mode)
    return tuple(out)


# A split train step and its body, the part whose verdict the step's own joins (names.with_body),
# by MODES: its keys are the suite's method suffixes, its values the report's measures
BODY_SUFFIX = "forward_backward"
BODY, TRAIN = MODES[BODY_SUFFIX], MODES["train_step"]


def own_backlog(split: tuple, measure: str) -> bool:
    """Whether a measure's recorded backlog is its own: not for a part of a split train step
    (``split_modes``: the backward, the forward+backward, whose spans end inside the step),
    whose results before 2026-12-07 carry the whole step's backlog (benchmarks/common.py
    ``_own_backlog``); for them only the issue time and the head-start step tell
    (names.host_bound)."""
    return measure not in split


# how the tables' captions and the plots' axes name the model's modes
MODE_LABELS = {"fwd": "forward", "bwd": "backward", "fwd_bwd": "forward+backward",
               "train": "training step"}


def split_note(split: tuple, *modes: str, memory: bool = False) -> str:
    """A caption's sentence on how ``modes`` were timed, when any of them was split."""
    parts = [MODE_LABELS.get(m, m) for m in modes if m in split]
    if not parts:
        return ""
    return (f" The {' and '.join(parts)} {'is' if len(parts) == 1 else 'are'} timed as "
            "part of a train step (marks inside it: the backward right behind its forward)"
            + (", so the memory before the backward includes AdamW's state." if memory else "."))


def param_order(norm: pd.DataFrame, kind: str, param: str) -> list:
    """The values of a parameter in benchmarks.json's order."""
    return list(norm.attrs.get("orders", {}).get(kind, {}).get(param, []))


def kind_keys(norm: pd.DataFrame, kind: str) -> list[str]:
    return list(norm.attrs.get("keys", {}).get(kind, []))


def cells(norm: pd.DataFrame, kind: str, commit: str) -> pd.DataFrame:
    """One row per parameter cell of ``kind`` at ``commit`` (every cell of the parameter grid,
    run or not): for each measure m, m_status (OK/OOM/failed/n/a), m_value (asv's median),
    m_mean, m_std (from asv's samples when recorded, else NaN), m_n (samples)."""
    keys = kind_keys(norm, kind)
    if norm.empty or not keys:
        return pd.DataFrame(columns=keys)
    part = norm[(norm["kind"] == kind) & (norm["commit"] == commit)]
    if part.empty:
        return pd.DataFrame(columns=keys)
    out: dict[tuple, dict] = {}
    for r in part.to_dict("records"):
        key = tuple(r["params"][k] for k in keys)  # the Python values (ints stay ints)
        row = out.setdefault(key, dict(zip(keys, key)))
        m, role = r["measure"], r["role"]
        if role in HOST_FIGURES:
            row[f"{m}_{role}"] = r["value"] if r["status"] == OK else math.nan
            continue
        if role == "status":
            code = r["value"]
            if r["status"] == FAILED:
                row[f"{m}_code"] = FAILED  # the status benchmark itself crashed
            elif r["status"] == OK:
                row[f"{m}_code"] = STATUS_OF_CODE[float(code)]  # load.py checked the code
            continue
        if role in ("mean", "std"):
            row[f"{m}_{role}"] = r["value"] if r["status"] == OK else math.nan
            row.setdefault(f"{m}_asv_status", r["status"])
            if r["status"] != OK:
                row[f"{m}_asv_status"] = r["status"]
            continue
        row[f"{m}_asv_status"] = r["status"]
        row[f"{m}_value"] = r["value"]
        # Without samples (asv run without --record-samples) asv keeps only the median: the
        # tables show it in the mean column, as the summary's header says.
        row[f"{m}_mean"] = r["mean"] if r["n_samples"] else r["value"]
        row[f"{m}_std"] = r["std"]
        row[f"{m}_n"] = r["n_samples"] or (r["repeat"] or 0) * (r["number"] or 1)
        row[f"{m}_median_only"] = r["status"] == OK and not r["n_samples"]
        row[f"{m}_samples"] = r.get("samples") if r["status"] == OK else None
    df = pd.DataFrame(list(out.values()))
    for k in keys:  # parameters stay ints (pandas would widen a column with gaps to float)
        df[k] = df[k].astype(object)
    # The status of a measure: its track_status_* code when there is one, else what asv recorded.
    measures = {c.rsplit("_", 2)[0] for c in df.columns if c.endswith("_asv_status")} | \
               {c[:-5] for c in df.columns if c.endswith("_code")}
    for m in measures:
        code = df[f"{m}_code"] if f"{m}_code" in df else pd.Series([None] * len(df))
        asv = df[f"{m}_asv_status"] if f"{m}_asv_status" in df else pd.Series([None] * len(df))
        df[f"{m}_status"] = [_status(c, a) for c, a in zip(code, asv)]
    split = norm.attrs.get("split", ())
    told = {}
    for m in measures:  # the step measured the host rather than the model (names.host_bound)
        if f"{m}_issue" in df and f"{m}_value" in df:
            backlog, free = (df[f"{m}_{k}"] if f"{m}_{k}" in df else [None] * len(df)
                             for k in ("backlog", "free"))
            if not own_backlog(split, m):
                backlog = [None] * len(df)
            told[m] = [host_bound(v, i, b, f) for v, i, b, f in
                       zip(df[f"{m}_value"], df[f"{m}_issue"], backlog, free)]
    if BODY in split and TRAIN in told and BODY in told:
        told[TRAIN] = [with_body(t, b) for t, b in zip(told[TRAIN], told[BODY])]
    for m, verdicts in told.items():
        df[f"{m}_host_bound"] = [bool(t) for t in verdicts]
        df[f"{m}_host_unknown"] = [untold(t, i) for t, i in zip(verdicts, df[f"{m}_issue"])]
    return df


def _status(code, asv_status) -> str:
    if isinstance(code, str):
        if code == OK and asv_status in (FAILED, NA):
            return asv_status  # the status ran but the value is missing: no number to show
        return code
    if isinstance(asv_status, str):
        return asv_status
    return NA


def combined_status(*statuses) -> str:
    """One status for several measures of a cell: OK when all are, else the worst of them."""
    statuses = [s for s in statuses if isinstance(s, str)]
    if not statuses:
        return NA
    return min(statuses, key=WORST_FIRST.index)


def order(values, preferred) -> list:
    """The distinct values, in ``preferred``'s order (benchmarks.json's, ``param_order``); any
    other after them."""
    values = list(dict.fromkeys(v for v in values if v is not None and v == v))
    return sorted(values, key=lambda v: (preferred.index(v) if v in preferred else len(preferred),
                                          str(v) if not isinstance(v, (int, float)) else "", v
                                          if isinstance(v, (int, float)) else 0))


def rank(preferred):
    """A sort key: a value's place in ``preferred`` (unknown values last)."""
    return lambda v: preferred.index(v) if v in preferred else len(preferred)


def get(row, col, default=math.nan):
    v = row.get(col, default) if isinstance(row, dict) else getattr(row, col, default)
    return default if v is None else v


def preset_dims(preset: str) -> dict:
    """d_model, d_ff, n_layers, n_heads of a preset as this perfmodel defines it."""
    try:
        from ..model import get_config  # noqa: PLC0415
        cfg = get_config(preset)
        return {"d_model": cfg.d_model, "d_ff": cfg.d_ff, "n_layers": cfg.n_layers,
                "n_heads": cfg.n_heads}
    except Exception:  # noqa: BLE001 (a preset of another version: sizes unknown)
        return {"d_model": None, "d_ff": None, "n_layers": None, "n_heads": None}


# ------------------------------------------------------------------ how a cell is written
# (units are in the column headers)

def nan(v) -> bool:
    return v is None or (isinstance(v, float) and math.isnan(v))


def div(a, b, zero=math.nan) -> float:
    """a / b for the tables: NaN when either is missing, ``zero`` when b is 0 (a value of 0 is
    data the tables show, not a reason to fail)."""
    if nan(a) or nan(b):
        return math.nan
    return a / b if b else zero


# A time whose step was host-bound (names.host_bound) carries this mark; the legend says it.
HOST_BOUND_MARK = "†"
# A time whose step the host took most of to issue, where the figures that would tell whether the
# device waited were not recorded (names.host_bound None): such a number may measure the host,
# and moves with the box's host (a bf16 model backward on two H200 boxes: 1.3-2.2x), so it is
# marked apart rather than shown like a clean one.
HOST_UNKNOWN_MARK = "‡"


def ms(seconds) -> str:
    if nan(seconds):
        return NA
    v = seconds * 1e3
    return f"{v:.3f}" if abs(v) < 100 else f"{v:.1f}"


def mib(nbytes) -> str:
    return NA if nan(nbytes) else f"{nbytes / MiB:.2f}"


def ratio(x) -> str:
    return NA if nan(x) or x == math.inf else f"{x:.2f}×"


def pct(x) -> str:
    return "" if nan(x) else f"{x * 100:+.1f}%"


def human(value, unit) -> str:
    if nan(value):
        return NA
    if unit == "seconds":
        return f"{ms(value)} ms"
    if unit == "bytes":
        return f"{mib(value)} MiB"
    if unit == "status":
        return STATUS_OF_CODE.get(float(value), f"{value:g}")
    return f"{value:.4g} {unit or ''}".strip()


@dataclass
class Table:
    key: str
    title: str                                 # unique in the summary; page.py numbers it
    columns: list[str]
    rows: list[list[str]]
    caption: str = ""
    left: int = 1                              # how many leading columns are labels
    frame: pd.DataFrame | None = None          # the numbers behind it (tests, CSV)
    section: str = ""                          # the summary's section it belongs to
    # the columns that name a row (fold.py folds runs of rows that are n/a beyond them into one
    # line); None: never folded
    keys: list[int] | None = None
    measured_from: int | None = None           # the first measured column (default: after keys)
    number: str = ""                           # "2.3": section 2, its third table (page.py)
    folded: str = ""                           # the line that stands for the folded rows

    @property
    def align(self) -> list[str]:
        """Numbers right, words left: a column is numeric when its filled cells all start like
        a number (statuses such as OOM in a number column keep it numeric)."""
        def numeric(i):
            cells = [r[i] for r in self.rows if i < len(r) and r[i]]
            nums = [c for c in cells if c[0].isdigit() or c[0] in "+-."]
            return bool(nums) and all(c[0].isdigit() or c[0] in "+-." or c in
                                      (OK, OOM, FAILED, NA) or c.startswith("eager ")
                                      for c in cells)
        return ["---:" if i >= self.left and numeric(i) else ":---"
                for i in range(len(self.columns))]


def show(status, value, fmt, mark: str = "") -> str:
    """A cell: its value when it ran OK and one was recorded, followed by ``mark`` (``bound``'s:
    host-bound, or its host's share not told), else its status (OOM, failed), else n/a: the one
    spelling of "not measured"."""
    if status == OK:
        return NA if nan(value) else fmt(value) + mark
    return status if isinstance(status, str) else NA


def untold(verdict, issue_s) -> bool:
    """Whether a step's host share is not told: names.host_bound said None although its issue
    time was recorded (issued in most of its time, without the figures that tell)."""
    return verdict is None and not nan(issue_s)


def host_mark(bound: bool, unknown: bool) -> str:
    """A step's mark: HOST_BOUND_MARK when host-bound, HOST_UNKNOWN_MARK when not told."""
    return HOST_BOUND_MARK if bound else HOST_UNKNOWN_MARK if unknown else ""


def either(*marks: str) -> str:
    """The mark of a figure computed from several steps (a ratio): host-bound when any step is,
    else not told when any step is not, else none."""
    for m in (HOST_BOUND_MARK, HOST_UNKNOWN_MARK):
        if m in marks:
            return m
    return ""


def bound(row, *measures) -> str:
    """The mark of the cell's steps ``measures``: HOST_BOUND_MARK when any was host-bound,
    HOST_UNKNOWN_MARK when any was issued in most of its time without the figures that tell,
    else none."""
    def flag(col):
        v = get(row, col, False)
        return not nan(v) and bool(v)
    return either(*(host_mark(flag(f"{m}_host_bound"), flag(f"{m}_host_unknown"))
                    for m in measures))
