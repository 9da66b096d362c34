"""Differencing: totals against their cells, and a new table against the project's released ones.

- A total (a row or column named Total/All, or declared) that exceeds the sum of its visible cells
  reveals the cells that are not shown: when nothing is suppressed the difference is a hidden
  category, when cells are suppressed it is their sum; either fails when it isolates fewer persons
  than the threshold, and needs review whenever the total and its cells disagree otherwise.
- A table of the same shape as one already released for the project (same columns, mostly the same
  categories) is compared cell by cell: a count that differs by fewer persons than the threshold
  isolates them (two tables, two populations that differ by a few persons), so the request is
  flagged for review with both request ids.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

import numpy as np
import pandas as pd

from .result import MAX_FINDINGS_PER_RULE, Finding, Status, Thresholds
from .tables import LoadedTable


@dataclass(frozen=True)
class Released:
    """A table the project already released: the request it left with, its name and its cells."""

    request_id: str
    name: str
    table: LoadedTable


def _check_line(total: float, cells: np.ndarray, hidden: np.ndarray, thresholds: Thresholds,
                counts: bool) -> tuple[Status, str] | None:
    visible = float(np.nansum(np.where(hidden, np.nan, cells)))
    diff = total - visible
    if abs(diff) < 1e-9 and not hidden.any():
        return None
    n_hidden = int(hidden.sum())
    if counts and 0 < diff < thresholds.min_cell:
        what = (f"the {n_hidden} suppressed cells add up to {diff:g}" if n_hidden
                else f"the total exceeds its visible cells by {diff:g}")
        return Status.FAIL, f"differencing: {what}, fewer than {thresholds.min_cell}: the difference isolates them"
    if n_hidden:
        return None  # several suppressed cells that hide enough persons: the usual secondary suppression
    return Status.REVIEW, (f"the total differs from the sum of its cells by {diff:g}: a hidden category, or "
                           "persons in several categories; a checker must confirm")


def check_totals(table: LoadedTable, thresholds: Thresholds, count_columns: Iterable[int],
                 sum_columns: Iterable[int]) -> list[Finding]:
    """Total rows and columns against their cells, for count and sum columns (indexes in ``values``)."""
    out: list[Finding] = []
    counts, sums = set(count_columns), set(sum_columns)
    additive = sorted(counts | sums)
    body_rows = [r for r in range(table.values.shape[0]) if r not in table.total_rows]
    body_cols = [c for c in additive if c not in table.total_cols]
    v, hidden = table.values, table.suppressed
    for tr in table.total_rows:
        for c in additive:
            if c in table.total_cols or np.isnan(v[tr, c]):
                continue
            found = _check_line(v[tr, c], v[body_rows, c], hidden[body_rows, c], thresholds, c in counts)
            if found and len(out) < MAX_FINDINGS_PER_RULE:
                out.append(Finding("differencing", found[0], found[1], row=tr, col=table.numeric[c],
                                   cell=table.cell(tr, table.numeric[c])))
    for tc in table.total_cols:
        if tc not in additive:
            continue
        for r in body_rows:
            if np.isnan(v[r, tc]) or not body_cols:
                continue
            found = _check_line(v[r, tc], v[r, body_cols], hidden[r, body_cols], thresholds, tc in counts)
            if found and len(out) < MAX_FINDINGS_PER_RULE:
                out.append(Finding("differencing", found[0], found[1], row=r, col=table.numeric[tc],
                                   cell=table.cell(r, table.numeric[tc])))
    return out


def _keyed(table: LoadedTable) -> pd.DataFrame:
    keys = table.frame.iloc[:, table.labels].astype("string").fillna("")
    index = pd.MultiIndex.from_frame(keys) if len(table.labels) > 1 else pd.Index(keys.iloc[:, 0])
    names = [str(table.frame.columns[p]) for p in table.numeric]
    return pd.DataFrame(table.values, index=index, columns=names)


def same_shape(new: LoadedTable, old: LoadedTable) -> bool:
    return (list(map(str, new.frame.columns)) == list(map(str, old.frame.columns))
            and new.labels == old.labels and new.numeric == old.numeric and bool(new.labels))


def check_history(table: LoadedTable, thresholds: Thresholds, count_columns: list[int],
                  released: Iterable[Released], request_id: str | None = None) -> list[Finding]:
    """Compare ``table`` with the project's released tables of the same shape (counts only)."""
    out = []
    if not count_columns or not table.labels:
        return out
    names = [str(table.frame.columns[table.numeric[c]]) for c in count_columns]
    mine = _keyed(table)
    if not mine.index.is_unique:
        return out
    for old in released:
        if not same_shape(table, old.table):
            continue
        theirs = _keyed(old.table)
        if not theirs.index.is_unique:
            continue
        common = mine.index.intersection(theirs.index)
        if len(common) < 0.5 * max(len(mine), 1):
            continue
        diff = (mine.loc[common, names] - theirs.loc[common, names]).abs().to_numpy()
        with np.errstate(invalid="ignore"):
            small = (diff > 0) & (diff < thresholds.min_cell)
        if small.any():
            r, c = (int(x[0]) for x in np.nonzero(small))
            row = int(np.nonzero(mine.index == common[r])[0][0])
            col = table.numeric[count_columns[c]]
            this = f"request {request_id}" if request_id else "this request"
            out.append(Finding("differencing", Status.REVIEW,
                               f"{int(small.sum())} cell(s) differ by fewer than {thresholds.min_cell} from "
                               f"{old.name} released by request {old.request_id}: comparing the two tables "
                               f"({this} and request {old.request_id}) isolates those persons",
                               row=row, col=col, cell=table.cell(row, col)))
    return out
