"""Stage 2b, pivot: each kind of result pivoted once per report (cells.cells), for every table
and plot of the commit to read.

Before this, every table builder called ``cells`` itself: the same pivot ran once per table.
"""
from __future__ import annotations

from dataclasses import dataclass

import pandas as pd

from ..names import NA
from . import cells as T


@dataclass
class Pivot:
    commits: dict               # kind -> the commit its tables read (commits.tables_commits)
    attention: pd.DataFrame     # one row per attention cell, ``status`` of forward and backward
    model: pd.DataFrame         # one row per model cell
    warmup: pd.DataFrame        # one row per warm-up study cell
    orders: dict                # kind -> parameter -> its values in benchmarks.json's order
    split: tuple = ()           # the model's modes timed as parts of a train step (cells.split_modes)

    def order(self, kind: str, param: str, values) -> list:
        """The distinct ``values`` of a parameter in benchmarks.json's order."""
        return T.order(values, self.orders.get(kind, {}).get(param, []))

    def rank(self, kind: str, param: str):
        """A sort key for a parameter's values: their place in benchmarks.json."""
        return T.rank(self.orders.get(kind, {}).get(param, []))


def pivot(norm: pd.DataFrame, at: dict) -> Pivot:
    """``at``: kind -> the commit its tables read."""
    a = T.cells(norm, "attention", at["attention"])
    if not a.empty:
        a["status"] = [T.combined_status(T.get(r, "fwd_status", NA), T.get(r, "bwd_status", NA))
                       for r in a.to_dict("records")]
    return Pivot(at, a, T.cells(norm, "model", at["model"]), T.cells(norm, "warmup", at["warmup"]),
                 dict(norm.attrs.get("orders", {})), tuple(norm.attrs.get("split", ())))


def ran_rows(df: pd.DataFrame) -> pd.DataFrame:
    """Rows of cells that ran on this machine in at least one pass (OK, OOM or failed)."""
    if df.empty:
        return df
    return df[df["status"] != NA] if "status" in df else df
