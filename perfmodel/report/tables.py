"""The summary's tables as DataFrames, from the long frame that load.py makes.

``normalize`` maps the suite's names (benchmarks/README.md: classes Attention, Model, Warmup;
``time_<mode>`` with a ``track_status_<mode>`` each; memory as ``track_*_bytes*``/``peakmem_*``)
onto canonical columns: kind, measure, role (value / status / mean / std) and the parameters.
``cells`` then gives one row per parameter cell with ``<measure>_status``, ``_value`` (asv's
median), ``_mean``, ``_std``, ``_n``. Values stay in seconds and bytes here; render.py formats them.
"""
from __future__ import annotations

import math
import re

import pandas as pd

from .load import FAILED, NOT_RUN, OK, OOM

MODES = {"forward": "fwd", "backward": "bwd", "forward_backward": "fwd_bwd", "train_step": "train"}
# benchmarks/README.md: track_status_* values
STATUS_CODES = {1.0: OK, 2.0: OOM, 3.0: FAILED}
IMPL_ORDER = ["eager", "compiled", "sdpa", "flash", "flash_torch", "flash_triton"]
VARIANT_ORDER = ["eager", "sdpa", "compiled", "flash"]
PRESET_ORDER = ["nano", "tiny", "small", "medium", "large", "xl", "2.7B"]
WORST_FIRST = [OOM, FAILED, NOT_RUN, OK]
# bench_model.Model samples one step at a time after the core's one warm-up step
# (benchmarks/common.py, CellHandle.prepare: measure(runnable, 1, 1)).
MODEL_WARMUP_STEPS = 1


def classify(method: str) -> tuple[str, str] | None:
    """asv method name -> (measure, role)."""
    m = re.fullmatch(r"time_(\w+)", method)
    if m and m.group(1) in MODES:
        return MODES[m.group(1)], "value"
    m = re.fullmatch(r"track_status_(\w+)", method)
    if m and m.group(1) in MODES:
        return MODES[m.group(1)], "status"
    if method == "track_status":
        return "step", "status"
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
    return None


KIND_KEYS = {"attention": ["impl", "dtype", "d", "seq"],
             "model": ["preset", "context", "precision", "variant"],
             "warmup": ["preset", "context", "mode", "warmup"]}


def normalize(frame: pd.DataFrame) -> pd.DataFrame:
    rows = []
    for rec in frame.to_dict("records"):
        what = classify(rec["method"])
        cls = rec["benchmark"].rsplit(".", 2)[-2].lower() if rec["benchmark"].count(".") else ""
        if what is None or cls not in KIND_KEYS:
            continue
        params = rec["params"]
        if any(k not in params for k in KIND_KEYS[cls]):
            continue
        rows.append(dict(rec, kind=cls, measure=what[0], role=what[1],
                         **{k: params[k] for k in KIND_KEYS[cls]}))
    return pd.DataFrame(rows)


def cells(norm: pd.DataFrame, kind: str, commit: str) -> pd.DataFrame:
    """One row per parameter cell of ``kind`` at ``commit`` (every cell of the parameter grid,
    run or not): for each measure m, m_status (OK/OOM/failed/not run), m_value (asv's median),
    m_mean, m_std (from asv's samples when recorded, else NaN), m_n (samples)."""
    keys = KIND_KEYS[kind]
    if norm.empty:
        return pd.DataFrame(columns=keys)
    part = norm[(norm["kind"] == kind) & (norm["commit"] == commit)]
    if part.empty:
        return pd.DataFrame(columns=keys)
    out: dict[tuple, dict] = {}
    for r in part.to_dict("records"):
        key = tuple(r["params"][k] for k in keys)  # the Python values (ints stay ints)
        row = out.setdefault(key, dict(zip(keys, key)))
        m, role = r["measure"], r["role"]
        if role == "status":
            code = r["value"]
            if r["status"] == FAILED:
                row[f"{m}_code"] = FAILED  # the status benchmark itself crashed
            elif r["status"] == OK:
                row[f"{m}_code"] = STATUS_CODES.get(float(code), FAILED)
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
    return df


def _status(code, asv_status) -> str:
    if isinstance(code, str):
        if code == OK and asv_status not in (None, OK) and isinstance(asv_status, str):
            return asv_status if asv_status == FAILED else OK
        return code
    if isinstance(asv_status, str):
        return asv_status
    return NOT_RUN


def combined_status(*statuses) -> str:
    """One status for several measures of a cell: OK when all are, else the worst of them."""
    statuses = [s for s in statuses if isinstance(s, str)]
    if not statuses:
        return NOT_RUN
    return min(statuses, key=WORST_FIRST.index)


def order(values, preferred) -> list:
    values = list(dict.fromkeys(v for v in values if v is not None and v == v))
    return sorted(values, key=lambda v: (preferred.index(v) if v in preferred else len(preferred),
                                          str(v) if not isinstance(v, (int, float)) else "", v
                                          if isinstance(v, (int, float)) else 0))


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


def headline_cells(norm: pd.DataFrame, commit: str) -> list[dict]:
    """The benchmarks the history follows: per kind, one representative cell that ran OK at
    ``commit`` (model: the training step of the largest preset run, smallest context, fp32,
    sdpa; attention: forward and backward of eager and sdpa, float32, the middle d, longest seq;
    eager's memory before backward)."""
    out = []
    at = norm[(norm["commit"] == commit) & (norm["status"] == OK) & (norm["role"] == "value")]
    model = at[(at["kind"] == "model") & (at["measure"] == "train")]
    if not model.empty:
        pick = model.assign(p=model["preset"].map(lambda p: PRESET_ORDER.index(p)
                                                  if p in PRESET_ORDER else -1))
        pick = pick[(pick["precision"] == "fp32")] if (pick["precision"] == "fp32").any() else pick
        pick = pick[pick["variant"] == "sdpa"] if (pick["variant"] == "sdpa").any() else pick
        pick = pick.sort_values(["p", "context"], ascending=[False, True]).iloc[0]
        out.append({"benchmark": pick["benchmark"], "cell": pick["cell"]})
    att = at[at["kind"] == "attention"]
    if not att.empty:
        f32 = att[att["dtype"] == "float32"] if (att["dtype"] == "float32").any() else att
        ds = sorted(set(f32["d"]))
        d = ds[len(ds) // 2]
        sub = f32[f32["d"] == d]
        seq = max(sub["seq"])
        sub = sub[sub["seq"] == seq]
        for impl in ("eager", "sdpa"):
            for measure in ("fwd", "bwd", "mem_before_bwd"):
                if measure == "mem_before_bwd" and impl != "eager":
                    continue
                hit = sub[(sub["impl"] == impl) & (sub["measure"] == measure)]
                if not hit.empty:
                    out.append({"benchmark": hit.iloc[0]["benchmark"], "cell": hit.iloc[0]["cell"]})
    return out
