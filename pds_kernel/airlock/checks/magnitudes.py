"""Magnitude tables (sums, means...): dominance (n, k), p-ratio and contributor counts, computed by
the gate from the contributions a table carries, else review with "dominance not verifiable".

The contributions of a cell are ``[n, total, [x1, x2, ...]]``: the number of contributors (persons,
or rows for a table of rows), the cell total, and the largest contributions in decreasing order (at
least ``dominance_n``, and two for the p-ratio). :mod:`pds_kernel.sdc` writes them into the table's
declaration, bound to the file's SHA-256; they never leave with the table (the largest
contribution of a cell is one person's value). Before using them the gate checks that they
reproduce the published cell (a sum is the total, a mean the total over n): contributions that do
not are ignored and the cell needs review.

- dominance: ``x1 + ... + xn > k % of |total|`` fails;
- p-ratio: ``|total| - x1 - x2 < p % of x1`` fails (the second largest contributor could estimate
  the largest within p %);
- contributors: fewer than ``min_cell`` contributors fails (``small-cell``).
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from .declaration import DERIVED, ESTIMATES
from .result import MAX_FINDINGS_PER_RULE, Finding, Status, Thresholds
from .tables import LoadedTable

NOT_VERIFIABLE = "dominance not verifiable"
#: relative difference between a published cell and what its contributions give, beyond rounding
TOLERANCE = 0.005


def _reproduces(value: float, agg: str, n: float, total: float) -> bool:
    expected = total if agg == "sum" else total / n if agg == "mean" and n else None
    if expected is None:
        return True  # medians and the like: nothing to compare
    return abs(value - expected) <= max(0.51, TOLERANCE * abs(expected))


def _cell_contribution(raw: Any) -> tuple[float, float, list[float]] | None:
    if not isinstance(raw, (list, tuple)) or len(raw) != 3 or not isinstance(raw[2], (list, tuple)):
        return None
    try:
        n, total = float(raw[0]), float(raw[1])
        top = sorted((abs(float(x)) for x in raw[2]), reverse=True)
    except (TypeError, ValueError):
        return None
    if not (math.isfinite(n) and math.isfinite(total)) or n < 0 or any(not math.isfinite(x) for x in top):
        return None
    return n, total, top


def check_cell(value: float, agg: str, contribution: tuple[float, float, list[float]],
               thresholds: Thresholds) -> list[tuple[str, Status, str]]:
    """(rule, status, message) for one published magnitude cell and its contributions."""
    n, total, top = contribution
    if not _reproduces(value, agg, n, total):
        return [("magnitude", Status.REVIEW, f"{NOT_VERIFIABLE}: the declared contributions do not reproduce "
                                             "this cell")]
    out = []
    if n < thresholds.min_cell:
        out.append(("small-cell", Status.FAIL, f"{int(n)} contributors: a cell needs at least {thresholds.min_cell}"))
    size = abs(total)
    k = thresholds.dominance_n
    if len(top) < min(k, int(n)) or len(top) < min(2, int(n)):
        return out + [("magnitude", Status.REVIEW, f"{NOT_VERIFIABLE}: fewer top contributions than needed")]
    if size > 0 and sum(top[:k]) > thresholds.dominance_k / 100 * size:
        share = 100 * sum(top[:k]) / size
        out.append(("dominance", Status.FAIL, f"the largest {k} contributors make {share:.0f} % of this cell "
                                              f"(at most {thresholds.dominance_k:g} %)"))
    if top and top[0] > 0:
        rest = size - top[0] - (top[1] if len(top) > 1 else 0)
        if rest < thresholds.p_ratio / 100 * top[0]:
            out.append(("p-ratio", Status.FAIL, f"the other contributors are within {thresholds.p_ratio:g} % of "
                                                "the largest: the second largest could estimate it"))
    return out


#: derived columns that are a share of a count of the same row (or of the column's total)
SHARES = {"percent": 100.0, "proportion": 1.0}


def _column_shares(shares: np.ndarray, counts: np.ndarray, scale: float) -> bool:
    """Shares that are each row's count over one total (the column's, suppressed rows included):
    ``share = scale * count / N`` for one N, within the rounding of the published shares."""
    ok = ~np.isnan(shares) & ~np.isnan(counts) & (shares > 0)
    if ok.sum() < 2:
        return False
    total = counts[ok].sum() / shares[ok].sum() * scale
    expected = scale * counts[ok] / total
    return bool(np.all(np.abs(shares[ok] - expected) <= 0.02 * expected + 0.0005 * scale))


def _hidden_by_shares(shares: np.ndarray, counts: np.ndarray, scale: float) -> float | None:
    """The persons of the rows whose count is suppressed, from the total the shares imply (None when
    no count is suppressed)."""
    if not np.isnan(counts).any():
        return None
    ok = ~np.isnan(shares) & ~np.isnan(counts) & (shares > 0)
    total = counts[ok].sum() / shares[ok].sum() * scale
    return float(total - np.nansum(counts))


def check_shares(table: LoadedTable, pos: int, agg: str, thresholds: Thresholds) -> list[tuple[str, Status, str, int]]:
    """A percentage (or proportion) next to a published count gives back the persons it is a share
    of: ``1.2 %`` of 250 persons is 3 persons, ``99.2 %`` leaves 2 out. Shares of the column's total
    (the body adds up to 100 %, or every share is its count over one total) are the counts
    themselves, but they give that total, hence the persons of the rows whose count is suppressed
    (review when fewer than the threshold)."""
    scale = SHARES[agg]
    j = table.numeric.index(pos)
    body = np.array([r for r in range(table.values.shape[0]) if r not in set(table.total_rows)], dtype=int)
    shares = table.values[:, j]
    adds_up = len(body) > 1 and abs(np.nansum(shares[body]) - scale) <= 0.015 * scale
    out = []
    for c in table.value_index(table.roles.counts):
        counts = table.values[:, c]
        if adds_up or _column_shares(shares[body], counts[body], scale):
            hidden = _hidden_by_shares(shares[body], counts[body], scale)
            if hidden is not None and 0.5 <= hidden and round(hidden) < thresholds.min_cell:
                out.append(("differencing", Status.REVIEW,
                            f"these shares give the total ({round(np.nansum(counts[body]) + hidden)} persons), hence "
                            f"the suppressed rows: about {round(hidden)} persons, fewer than {thresholds.min_cell}",
                            int(body[np.argmax(np.isnan(counts[body]))])))
            continue
        with np.errstate(invalid="ignore"):
            part = shares / scale * counts
        for r in np.nonzero(~np.isnan(part) & (shares > 0) & (shares < scale))[0]:
            for size, what in ((part[r], "with"), (counts[r] - part[r], "without")):
                if 0.5 <= size and round(size) < thresholds.min_cell:
                    out.append(("small-cell", Status.FAIL,
                                f"this {agg} of the {table.frame.columns[table.numeric[c]]!r} count of its row gives "
                                f"back about {round(size)} persons ({what}), below the threshold of "
                                f"{thresholds.min_cell}", int(r)))
                    break
        if out:
            break
    return out


def check_survival(table: LoadedTable, pos: int, thresholds: Thresholds) -> list[tuple[str, Status, str, int]]:
    """A Kaplan-Meier curve next to the numbers at risk gives back the events of each step:
    ``d = n (1 - S(t) / S(t-1))``; a step of fewer events than the threshold fails like the count."""
    counts = table.value_index(table.roles.counts)
    if not counts:
        return []
    with np.errstate(all="ignore"):
        risk = max(counts, key=lambda c: np.nanmedian(table.values[:, c]))
    at_risk = table.values[:, risk]
    others = table.values[:, [c for c in counts if c != risk]]
    survival = table.values[:, table.numeric.index(pos)]
    body = [r for r in range(len(survival)) if r not in set(table.total_rows)]
    previous = 1.0 if np.nanmax(survival[body], initial=0) <= 1 else 100.0
    for r in body:
        s, n = survival[r], at_risk[r]
        if np.isnan(s):
            continue
        if previous > 0 and not np.isnan(n):
            events = n * (1 - s / previous)
            published = bool(np.any(np.abs(others[r] - events) < 0.5))  # judged as a count already
            if 0.5 <= events and round(events) < thresholds.min_cell and not published:
                return [("small-cell", Status.FAIL, f"this step of the curve is about {round(events)} events among "
                                                    f"{int(n)} at risk, below the threshold of {thresholds.min_cell}",
                         int(r))]
        previous = s
    return []


def check_magnitudes(table: LoadedTable, thresholds: Thresholds) -> list[Finding]:
    """Findings for every declared magnitude column of ``table``."""
    roles, declaration = table.roles, table.declaration
    if roles is None:
        return []
    out: list[Finding] = []
    kept: dict[str, int] = {}

    def add(rule, status, message, row=None, col=None):
        if kept.get(rule, 0) < MAX_FINDINGS_PER_RULE:
            kept[rule] = kept.get(rule, 0) + 1
            out.append(Finding(rule, status, message, row=row, col=col,
                               cell=table.cell(row, col) if col is not None else None))

    for pos, agg in sorted(roles.magnitudes.items()):
        name = str(table.frame.columns[pos])
        if agg in DERIVED:
            if not roles.counts:
                add("magnitude", Status.REVIEW, f"{agg} column {name!r} without its counts: publish the counts it "
                                                "is computed from (and declare them) so the gate can check them",
                    col=pos)
            elif agg in SHARES:
                for rule, status, message, row in check_shares(table, pos, agg, thresholds):
                    add(rule, status, message, row=row, col=pos)
            elif agg == "survival":
                for rule, status, message, row in check_survival(table, pos, thresholds):
                    add(rule, status, message, row=row, col=pos)
            continue
        if agg in ESTIMATES:
            if declaration.dof is None:
                add("dof", Status.REVIEW, f"model output {name!r}: residual degrees of freedom unknown (save it "
                                          "with pds_kernel.sdc, which records them)", col=pos)
            continue
        if agg in {"min", "max"}:
            add("magnitude", Status.FAIL, f"{agg} of a group is one person's value: publish it only with a "
                                          "checker's exception", col=pos)
            continue
        j = table.numeric.index(pos)
        values = table.values[:, j]
        cells = declaration.contributions.get(name)
        if not isinstance(cells, list) or len(cells) != len(values):
            add("magnitude", Status.REVIEW, f"{NOT_VERIFIABLE}: column {name!r} ({agg}) carries no contributions "
                                            f"per cell; dominance (n={thresholds.dominance_n}, "
                                            f"k={thresholds.dominance_k:g} %) and p-ratio ({thresholds.p_ratio:g} %) "
                                            "need them (build the table with pds_kernel.sdc)", col=pos)
            continue
        for r in np.nonzero(~np.isnan(values))[0]:
            contribution = _cell_contribution(cells[r])
            if contribution is None:
                add("magnitude", Status.REVIEW, f"{NOT_VERIFIABLE}: no usable contributions for this cell",
                    row=int(r), col=pos)
                continue
            for rule, status, message in check_cell(float(values[r]), agg, contribution, thresholds):
                add(rule, status, message, row=int(r), col=pos)
    return out


def check_dof(table_dof: int | None, thresholds: Thresholds) -> list[Finding]:
    if table_dof is not None and table_dof < thresholds.min_dof:
        return [Finding("dof", Status.FAIL, f"{table_dof} residual degrees of freedom: a model needs at least "
                                            f"{thresholds.min_dof}")]
    return []
