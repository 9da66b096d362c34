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

from .result import MAX_FINDINGS_PER_RULE, Finding, Status, Thresholds
from .tables import LoadedTable


@dataclass(frozen=True)
class Released:
    """A table the project already released: the request it left with, its name and its cells."""

    request_id: str
    name: str
    table: LoadedTable
    released: bool = True  #: False for another table of the same request (two populations at once)


def _judge(totals: np.ndarray, visible: np.ndarray, hidden: np.ndarray, thresholds: Thresholds,
           counts: bool) -> list[tuple[int, Status, str]]:
    """(index, status, message) for each total that disagrees with its cells: ``visible`` is the
    sum of the published cells of each line, ``hidden`` the number of suppressed ones."""
    out = []
    with np.errstate(invalid="ignore"):
        diff = totals - visible
        flagged = ~np.isnan(totals) & ((np.abs(diff) > 1e-9) | (hidden > 0))
    for i in np.nonzero(flagged)[0]:
        d, n_hidden = float(diff[i]), int(hidden[i])
        if counts and 0 < d < thresholds.min_cell:
            what = (f"the {n_hidden} suppressed cells add up to {d:g}" if n_hidden
                    else f"the total exceeds its visible cells by {d:g}")
            out.append((int(i), Status.FAIL, f"differencing: {what}, fewer than {thresholds.min_cell}: "
                                             "the difference isolates them"))
        elif not n_hidden:  # suppressed cells that hide enough persons are the usual secondary suppression
            out.append((int(i), Status.REVIEW, f"the total differs from the sum of its cells by {d:g}: a hidden "
                                               "category, or persons in several categories; a checker must confirm"))
    return out


def check_totals(table: LoadedTable, thresholds: Thresholds, count_columns: Iterable[int],
                 sum_columns: Iterable[int]) -> list[Finding]:
    """Total rows and columns against their cells, for count and sum columns (indexes in ``values``)."""
    out: list[Finding] = []
    counts, sums = set(count_columns), set(sum_columns)
    totals = set(table.total_cols)
    body_rows = np.array([r for r in range(table.values.shape[0]) if r not in set(table.total_rows)], dtype=int)
    v, hidden = table.values, table.suppressed

    def add(found, row_of, col_of):
        for i, status, message in found:
            if len(out) < MAX_FINDINGS_PER_RULE:
                r, c = row_of(i), table.numeric[col_of(i)]
                out.append(Finding("differencing", status, message, row=r, col=c, cell=table.cell(r, c)))

    for kind in (counts, sums):
        columns = np.array(sorted(c for c in kind if c not in totals), dtype=int)
        if len(columns) and len(body_rows):
            block, shut = v[np.ix_(body_rows, columns)], hidden[np.ix_(body_rows, columns)]
            visible = np.nansum(np.where(shut, np.nan, block), axis=0)
            for tr in table.total_rows:
                add(_judge(v[tr, columns], visible, shut.sum(axis=0), thresholds, kind is counts),
                    lambda i, tr=tr: tr, lambda i, columns=columns: int(columns[i]))
            row_visible = np.nansum(np.where(shut, np.nan, block), axis=1)
            for tc in sorted(totals & kind):
                add(_judge(v[body_rows, tc], row_visible, shut.sum(axis=1), thresholds, kind is counts),
                    lambda i: int(body_rows[i]), lambda i, tc=tc: tc)
    return out


def check_unnamed_totals(table: LoadedTable, thresholds: Thresholds, count_columns: Iterable[int]) -> list[Finding]:
    """A row (or count column) that is not named a total but equals the sum of the other rows (or
    columns) plus fewer persons than the threshold: a total under another name that reveals a
    hidden category. Review: the gate cannot tell a total from a coincidence."""
    columns = [c for c in count_columns if c not in set(table.total_cols)]
    body = np.array([r for r in range(table.values.shape[0]) if r not in set(table.total_rows)], dtype=int)
    if len(body) < 3 or not columns:
        return []
    block = table.values[np.ix_(body, columns)]
    out = []
    full = ~np.isnan(block).any(axis=0)
    if full.any():
        sub = block[:, full]
        excess = 2 * sub - sub.sum(axis=0)  # each row minus the sum of the other rows
        hits = np.nonzero(np.all((excess >= 0) & (excess < thresholds.min_cell), axis=1) & np.any(excess > 0, axis=1))[0]
        for i in hits[:1]:
            r, c = int(body[i]), table.numeric[columns[int(np.argmax(excess[i] > 0))]]
            out.append(Finding("differencing", Status.REVIEW, "this row is the sum of the other rows plus "
                                                              f"{int(excess[i].max())} persons at most: a total "
                                                              "under another name isolates a hidden category; "
                                                              "name it Total (or declare it) or drop it",
                               row=r, col=c, cell=table.cell(r, c)))
    if len(columns) >= 3:
        rows_full = ~np.isnan(block).any(axis=1)
        sub = block[rows_full]
        if len(sub):
            excess = 2 * sub - sub.sum(axis=1, keepdims=True)
            hits = np.nonzero(np.all((excess >= 0) & (excess < thresholds.min_cell), axis=0) & np.any(excess > 0, axis=0))[0]
            for k in hits[:1]:
                c = table.numeric[columns[int(k)]]
                out.append(Finding("differencing", Status.REVIEW, "this column is the sum of the other columns plus "
                                                                  "fewer persons than the threshold: a total under "
                                                                  "another name isolates a hidden category",
                                   col=c, cell=table.cell(None, c)))
    return out


def _keys(table: LoadedTable) -> list[tuple]:
    """The label combination of each row, as text."""
    columns = [table.frame.iloc[:, p].astype("string").fillna("").tolist() for p in table.labels]
    return list(zip(*columns))


def same_shape(new: LoadedTable, old: LoadedTable) -> bool:
    """Same layout (label and value columns at the same places), whatever the columns are called:
    renaming ``persons`` to ``n_persons`` does not make another table."""
    return (new.frame.shape[1] == old.frame.shape[1] and new.labels == old.labels and new.numeric == old.numeric
            and bool(new.labels))


def _same_names(new: LoadedTable, old: LoadedTable) -> bool:
    return list(map(str, new.frame.columns)) == list(map(str, old.frame.columns))


def check_history(table: LoadedTable, thresholds: Thresholds, count_columns: list[int],
                  released: Iterable[Released], request_id: str | None = None) -> list[Finding]:
    """Compare ``table`` with the project's released tables of the same shape (counts only)."""
    out = []
    released = [old for old in released if same_shape(table, old.table)]
    if not count_columns or not table.labels or not released:
        return out
    mine = _keys(table)
    if len(set(mine)) != len(mine):
        return out
    for old in released:
        theirs = _keys(old.table)
        where = {key: i for i, key in enumerate(theirs)}
        if len(where) != len(theirs):
            continue
        pairs = [(i, where[key]) for i, key in enumerate(mine) if key in where]
        if len(pairs) < 0.5 * max(len(mine), 1):
            continue
        new_rows, old_rows = (np.array(x, dtype=int) for x in zip(*pairs))
        cols = np.array(count_columns, dtype=int)
        diff = np.abs(table.values[np.ix_(new_rows, cols)] - old.table.values[np.ix_(old_rows, cols)])
        with np.errstate(invalid="ignore"):
            small = (diff > 0) & (diff < thresholds.min_cell)
            close = np.mean(diff[~np.isnan(diff)] < thresholds.min_cell) if (~np.isnan(diff)).any() else 0.0
        if not _same_names(table, old.table) and close < 0.5:
            continue  # renamed columns: the same table only when most cells agree within the threshold
        if small.any():
            r, c = (int(x[0]) for x in np.nonzero(small))
            row, col = int(new_rows[r]), table.numeric[count_columns[c]]
            this = f"request {request_id}" if request_id else "this request"
            where = (f"{old.name} released by request {old.request_id}: comparing the two tables ({this} and "
                     f"request {old.request_id})" if old.released else
                     f"{old.name} of the same request: comparing the two tables")
            out.append(Finding("differencing", Status.REVIEW,
                               f"{int(small.sum())} cell(s) differ by fewer than {thresholds.min_cell} from "
                               f"{where} isolates those persons", row=row, col=col, cell=table.cell(row, col)))
    return out
