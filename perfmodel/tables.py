"""Results of a CLI run as tables in the seeds' forms (markdown) or as CSV / JSON."""
from __future__ import annotations

import csv
import io
import json

from .measure import Result
from .names import OK, MiB



def markdown(columns: list[str], rows: list[list]) -> str:
    def fmt(value):
        if value is None:
            return ""
        if isinstance(value, float):
            return f"{value:.4g}" if abs(value) < 1e4 else f"{value:.0f}"
        return str(value)

    text = [[fmt(v) for v in row] for row in rows]
    right = [all(isinstance(r[i], (int, float)) or r[i] is None for r in rows) for i in
             range(len(columns))]
    lines = ["| " + " | ".join(columns) + " |",
             "|" + "|".join("---:" if r else ":---" for r in right) + "|"]
    lines += ["| " + " | ".join(row) + " |" for row in text]
    return "\n".join(lines)


def _ms(result: Result, what: str):
    return None if result.stats is None else getattr(result.stats, what) * 1e3


def _mib(value):
    return None if value is None else value / MiB


def _group(results: list[Result], pass_key: str):
    """Rows keyed by everything but the pass (and whether it was a part of a split train step,
    which a run chooses for all its modes at once), in first-seen order."""
    rows: dict[tuple, dict[str, Result]] = {}
    for r in results:
        key = tuple((k, v) for k, v in r.cell.items() if k not in (pass_key, "split"))
        rows.setdefault(key, {})[r.cell[pass_key]] = r
    return rows


def attention_table(results: list[Result]) -> str:
    passes = list(dict.fromkeys(r.cell["pass"] for r in results))
    columns = ["impl", "dtype", "d", "seq", "batch"]
    for p in passes:
        columns += [f"{p} status", f"{p} mean ms", f"{p} std ms", f"{p} TFLOP/s"]
    columns += ["mem before bwd MiB", "peak MiB"]
    rows = []
    for key, by_pass in _group(results, "pass").items():
        cell = dict(key)
        row = [cell["impl"], cell["dtype"], cell["d"], cell["seq"], cell["batch"]]
        for p in passes:
            r = by_pass.get(p)
            row += [r.status if r else "not run", _ms(r, "mean") if r else None,
                    _ms(r, "std") if r else None, r.tflops if r else None]
        before = [r.before_backward_bytes for r in by_pass.values() if r.before_backward_bytes]
        peaks = [r.peak_bytes for r in by_pass.values() if r.peak_bytes]
        row += [_mib(max(before)) if before else None, _mib(max(peaks)) if peaks else None]
        rows.append(row)
    return markdown(columns, rows)


def model_table(results: list[Result]) -> str:
    modes = list(dict.fromkeys(r.cell["mode"] for r in results))
    columns = ["preset", "ctx", "batch", "precision", "compile", "attention", "warmup", "d_model",
               "d_ff", "n_layers", "n_heads"]
    for m in modes:
        columns += [f"{m} status", f"{m} mean ms", f"{m} std ms"]
    columns += ["peak MiB", "TFLOP/s", "MFU %"]
    rows = []
    for key, by_mode in _group(results, "mode").items():
        cell = dict(key)
        any_r = next(iter(by_mode.values()))
        row = [cell["preset"], cell["context"], cell["batch"], cell["precision"],
               "on" if cell["compile"] else "off", cell["attention"], any_r.warmup,
               cell["d_model"], cell["d_ff"], cell["n_layers"], cell["n_heads"]]
        for m in modes:
            r = by_mode.get(m)
            row += [r.status if r else "not run", _ms(r, "mean") if r else None,
                    _ms(r, "std") if r else None]
        heaviest = [by_mode[m] for m in modes if m in by_mode and by_mode[m].status == OK]
        last = heaviest[-1] if heaviest else None
        row += [_mib(last.peak_bytes) if last else None, last.tflops if last else None,
                100 * last.mfu if last and last.mfu else None]
        rows.append(row)
    return markdown(columns, rows)


def why_not_ok(results: list[Result]) -> str:
    """One line per cell that did not run OK and says why (a failure's error, what an OOM or a
    busy machine reported), under the markdown table, whose status column only names it."""
    from .grid import label  # noqa: PLC0415

    return "\n".join(f"- {r.status}: {label(r.cell)}: {r.error}" for r in results
                     if r.status != OK and r.error)


def to_csv(results: list[Result]) -> str:
    flat = [flatten(r) for r in results]
    out = io.StringIO()
    keys = list(dict.fromkeys(k for row in flat for k in row))
    writer = csv.DictWriter(out, fieldnames=keys)
    writer.writeheader()
    writer.writerows(flat)
    return out.getvalue()


def to_json(results: list[Result]) -> str:
    return json.dumps([r.to_dict() for r in results], indent=1)


def flatten(result: Result) -> dict:
    d = result.to_dict()
    row = dict(d.pop("cell"))
    stats = d.pop("stats") or {}
    env = d.pop("env")
    row.update(d)
    row.update({f"{k}_s" if k != "n" else "steps": v for k, v in stats.items()})
    row.update({f"env_{k}": v for k, v in env.items()})
    return row
