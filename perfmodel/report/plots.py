"""Stage 5, plots: PNG figures (matplotlib, Agg) of the tables' cells and the history.

A point whose step was host-bound (names.host_bound) is drawn again as a large hollow red
square, with its own legend entry, as the tables mark it with a dagger; one whose host's share
was not told (the tables' double dagger) as a hollow blue one."""
from __future__ import annotations

from pathlib import Path

import pandas as pd

from ..names import OK
from ..untrusted import visible
from .cells import HOST_BOUND_MARK, HOST_UNKNOWN_MARK, MODE_LABELS, MiB
from .pivot import Pivot, ran_rows

HOST_BOUND_STYLE = dict(marker="s", markersize=11, markerfacecolor="none", markeredgecolor="red",
                        markeredgewidth=1.5, linestyle="none", zorder=5)
HOST_BOUND_LABEL = f"host-bound step ({HOST_BOUND_MARK}): measures the host"
HOST_UNKNOWN_STYLE = dict(HOST_BOUND_STYLE, markeredgecolor="blue")
HOST_UNKNOWN_LABEL = f"host's share not told ({HOST_UNKNOWN_MARK}): may measure the host"
# (flag column, after the measure's name and "_", legend label, style) of the marks drawn
# over a line's points
HOST_MARKS = (("host_bound", HOST_BOUND_LABEL, HOST_BOUND_STYLE),
              ("host_unknown", HOST_UNKNOWN_LABEL, HOST_UNKNOWN_STYLE))


def _plt():
    import matplotlib  # noqa: PLC0415
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt  # noqa: PLC0415
    return plt


def _text(data) -> str:
    """A label from results: control characters as escapes, "$" as text (not mathtext)."""
    return visible(data).replace("$", r"\$")


def _save(plt, fig, path: Path, title: str | None = None) -> Path:
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=90)
    plt.close(fig)
    return path


def _legend(axes, **kwargs) -> None:
    """The legend on the first panel that has labelled lines; each host mark's entry once, last."""
    marks = [label for _, label, _ in HOST_MARKS]
    for ax in axes:
        handles, labels = ax.get_legend_handles_labels()
        if handles:
            for other in axes:  # a marked point may be on another panel only
                for h, lab in zip(*other.get_legend_handles_labels()):
                    if lab in marks and lab not in labels:
                        handles.append(h)
                        labels.append(lab)
            pairs = [(h, lab) for h, lab in zip(handles, labels) if lab not in marks]
            for mark in marks:
                pairs += [(h, lab) for h, lab in zip(handles, labels) if lab == mark][:1]
            ax.legend(*zip(*pairs), **kwargs)
            return


def _mark_host(ax, pts, x: str, y, measure: str = "") -> None:
    """Draw the points of ``pts`` whose step ``measure`` was host-bound, or not told, over their
    line (columns ``<measure>_host_bound`` / ``<measure>_host_unknown``; the history's without
    a measure)."""
    for column, label, style in HOST_MARKS:
        flag = f"{measure}_{column}" if measure else column
        if flag not in pts:
            continue
        hit = pts[pts[flag].fillna(False).astype(bool)]
        if not hit.empty:
            ax.plot(hit[x], y(hit), label=label, **style)


def _log_axes(ax, xbase: int) -> None:
    """Log-log where the axes hold positive data; an empty panel says so (log of nothing fails)."""
    data = [line for line in ax.get_lines() if (line.get_ydata() > 0).any()]
    if data:
        ax.set_xscale("log", base=xbase)
        ax.set_yscale("log")
    else:
        ax.text(0.5, 0.5, "no OK cells", ha="center", va="center", transform=ax.transAxes)


def plot_attention(p: Pivot, path: Path) -> Path | None:
    a, commit = p.attention, p.commits["attention"]
    if a.empty or ran_rows(a).empty:
        return None
    plt = _plt()
    dtype = p.order("attention", "dtype", ran_rows(a)["dtype"])[0]
    sub = a[a["dtype"] == dtype]
    impls = p.order("attention", "impl", ran_rows(sub)["impl"])
    ds = sorted(set(ran_rows(sub)["d"]))
    markers = "os^vDP*X"
    fig, axes = plt.subplots(1, 3, figsize=(15, 4.5))
    drawn = False
    for ax, (col, ylabel, scale) in zip(axes, [("fwd_mean", "forward (ms)", 1e3),
                                               ("bwd_mean", "backward (ms)", 1e3),
                                               ("mem_before_bwd_value", "memory before backward "
                                                                        "(MiB)", 1 / MiB)]):
        for ci, impl in enumerate(impls):
            for di, d in enumerate(ds):
                pts = sub[(sub["impl"] == impl) & (sub["d"] == d)].sort_values("seq")
                status_col = "fwd_status" if col.startswith("fwd") else "bwd_status"
                if status_col in pts:
                    pts = pts[pts[status_col] == OK]
                if col not in pts or pts[col].dropna().empty:
                    continue
                pts = pts.dropna(subset=[col])
                ax.plot(pts["seq"], pts[col] * scale, marker=markers[di % len(markers)],
                        color=f"C{ci}", label=_text(f"{impl} d={d}"))
                _mark_host(ax, pts, "seq", lambda q, c=col, k=scale: q[c] * k, col[:3])
                drawn = True
        _log_axes(ax, 2)
        ax.set_xlabel("seq_len")
        ax.set_ylabel(ylabel)
        ax.grid(True, which="both", alpha=0.3)
    if not drawn:
        plt.close(fig)
        return None
    _legend(axes, fontsize=7, ncol=2)
    return _save(plt, fig, path, f"attention, {dtype}, commit {commit[:8]}")


def plot_model(p: Pivot, path: Path) -> Path | None:
    m, commit = p.model, p.commits["model"]
    if m.empty:
        return None
    preset, prec_rank = p.rank("model", "preset"), p.rank("model", "precision")
    plt = _plt()
    fig, axes = plt.subplots(1, 3, figsize=(15, 4.5))
    drawn = False
    for ax, mode in zip(axes, ("fwd", "fwd_bwd", "train")):
        label = MODE_LABELS[mode]
        if f"{mode}_mean" not in m:
            continue
        ok = m[m.get(f"{mode}_status") == OK]
        for i, ((pre, prec, var), g) in enumerate(sorted(
                ok.groupby(["preset", "precision", "variant"]),
                key=lambda kv: (preset(kv[0][0]), prec_rank(kv[0][1]), kv[0][2]))):
            g = g.sort_values("context")
            ax.plot(g["context"], g[f"{mode}_mean"] * 1e3, marker="o",
                    linestyle="-" if var == "sdpa" else "--",
                    label=_text(f"{pre} {prec} {var}"))
            _mark_host(ax, g, "context", lambda q, c=f"{mode}_mean": q[c] * 1e3, mode)
            drawn = True
        _log_axes(ax, 2)
        ax.set_xlabel("context (tokens)")
        ax.set_ylabel(f"{label} per step (ms)")
        if mode in p.split and mode != "train":  # timed as its part of a train step
            ax.set_title(f"{label}: part of a train step", fontsize=9)
        ax.grid(True, which="both", alpha=0.3)
    if not drawn:
        plt.close(fig)
        return None
    _legend(axes, fontsize=7)
    return _save(plt, fig, path, f"model step time, batch 4, commit {commit[:8]}")


def plot_history(hist: pd.DataFrame, path: Path) -> Path | None:
    if hist.empty or hist[hist["status"] == OK].empty:
        return None
    plt = _plt()
    names = list(dict.fromkeys(hist["benchmark"]))
    fig, axes = plt.subplots(len(names), 1, figsize=(10, 2.2 * len(names)), squeeze=False)
    for ax, name in zip(axes[:, 0], names):
        g = hist[hist["benchmark"] == name].reset_index(drop=True)
        unit = next((u for u in g["unit"] if isinstance(u, str)), None)
        scale, ylabel = (1e3, "ms") if unit == "seconds" else (1 / MiB, "MiB") \
            if unit == "bytes" else (1, unit or "")
        ok = g[g["status"] == OK]
        ax.plot(ok.index, ok["value"] * scale, marker="o")
        _mark_host(ax, ok.assign(at=ok.index), "at", lambda q: q["value"] * scale)
        if ax.get_legend_handles_labels()[0]:
            ax.legend(fontsize=7)
        ax.set_xticks(range(len(g)))
        ax.set_xticklabels([c[:8] for c in g["commit"]], fontsize=7)
        ax.set_ylabel(ylabel)
        ax.set_title(_text(name), fontsize=8)
        ax.grid(True, alpha=0.3)
    return _save(plt, fig, path)


def safe_plot(notes: list, title: str, fn, *args):
    """A plot that cannot be drawn is a note under the tables, never a lost report."""
    try:
        return fn(*args)
    except Exception as err:  # noqa: BLE001 (matplotlib raises many kinds)
        notes.append(f"plot '{title}' not drawn: {type(err).__name__}: {str(err)[:200]}")
        return None
