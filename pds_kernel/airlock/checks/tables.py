"""Rules for tables: reading them, small cells, zeros, cells recoverable from margins, magnitudes.

A table is read into a :class:`LoadedTable`: its label columns (categories, from the declaration
and column names: :mod:`.declaration`) and its numeric block (the published values, ``NaN`` where
a cell is suppressed: empty, ``*``, ``<10``...). Cell findings use positions in that table (0-based
data row, 0-based column), which is also how the web page renders it, so failing cells can be
highlighted, and name the cell by its labels.

Counts: a cell in ``(0, min_cell)`` fails, a zero asks for review (it may be structural or may
reveal that nobody in a group has an attribute), a suppressed cell that is the only one of its row
or column next to a published total fails (total minus the others recovers it).

Magnitudes are judged in :mod:`.magnitudes` (from contributions) and from the ACRO record
:mod:`pds_kernel.sdc` attached for exactly these bytes (:func:`check_acro_record`).
"""

from __future__ import annotations

import itertools
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from ...errors import InvalidInput
from .content import COMPACT_DATE, table_script
from .declaration import Declaration, Roles, assign
from .result import MAX_FINDINGS_PER_RULE, Finding, Status, Thresholds

SUPPRESSION_MARKERS = frozenset({"", "*", "**", "x", "X", "c", "s", "NA", "N/A", "-", "..", "<10",
                                 "< 10", "<5", "< 5", "suppressed", "masqué", "secret"})
_TOTAL = re.compile(r"^\s*(?:grand\s+|sous[- ])?(?:total|totaux|totals?|subtotals?|sous-totaux|ensemble|all|sum|somme|"
                    r"margins?|overall|tous|toutes)(?:\s.*|\s*[:(].*)?$", re.IGNORECASE)
#: Tables larger than this are refused rather than loaded (the gate is not a data pipe).
MAX_CELLS = 5_000_000


@dataclass
class LoadedTable:
    frame: pd.DataFrame  #: as read, every column
    labels: list[int]  #: positions of label (category) columns
    numeric: list[int]  #: positions of value columns (counts, magnitudes, undeclared values)
    values: np.ndarray  #: float array rows x len(numeric); NaN = suppressed or missing
    suppressed: np.ndarray  #: bool array, True where a value cell holds a suppression marker/empty
    total_rows: list[int] = field(default_factory=list)
    total_cols: list[int] = field(default_factory=list)  #: positions within ``numeric``
    roles: Roles | None = None
    declaration: Declaration = field(default_factory=Declaration)
    numbers: dict[int, np.ndarray] = field(default_factory=dict)  #: every number-like column, by position
    _label_values: list | None = field(default=None, repr=False)
    _names: list[str] = field(default_factory=list, repr=False)

    @property
    def shape(self) -> tuple[int, int]:
        return self.frame.shape

    def value_index(self, positions) -> list[int]:
        """Indexes in ``numeric`` (columns of ``values``) of the frame positions ``positions``."""
        wanted = set(positions)
        return [j for j, pos in enumerate(self.numeric) if pos in wanted]

    def cell(self, row: int | None, pos: int | None) -> str:
        """A cell named by its labels, ``year=2020, BEN_SEX_COD=2 / persons`` (what a finding shows)."""
        if self._label_values is None:
            self._label_values = [(str(self.frame.columns[p]), self.frame.iloc[:, p].tolist()) for p in self.labels[:4]]
            self._names = [str(c) for c in self.frame.columns]
        parts = []
        if row is not None:
            for name, values in self._label_values:
                value = values[row]
                parts.append(f"{name}={'' if value != value else value}")
            if not parts:
                parts.append(f"row {row + 1}")
        where = ", ".join(parts)
        if pos is not None:
            where = f"{where} / {self._names[pos]}" if where else self._names[pos]
        return where


def _check_flat_parquet(path: Path, name: str) -> None:
    """A table holds one value per cell: a Parquet column of lists, structs or maps is refused (a
    list per row can carry a whole person's record, and the rules judge cells)."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    for column in pq.read_schema(path):
        if pa.types.is_nested(column.type):
            raise InvalidInput(f"{name}: column {column.name!r} holds {column.type} values, not one value per cell: "
                               "export a flat table")


def csv_separator(path: Path, name: str) -> str:
    """The separator of a CSV (the most frequent of comma, semicolon and tab in its header) or TSV."""
    if Path(name).suffix.lower() == ".tsv":
        return "\t"
    with open(path, "rb") as fh:
        head = fh.readline().decode("utf-8", "replace")
    return max([",", ";", "\t"], key=head.count)


def read_table(path: Path, name: str, as_written: bool = False) -> pd.DataFrame:
    """Read a CSV/TSV/Parquet/XLSX table into pandas (first and only sheet of a workbook);
    ``as_written``: a CSV's cells as the text the file holds (``0120``, not 120: the review page)."""
    ext = Path(name).suffix.lower()
    try:
        if ext in {".csv", ".tsv"}:
            written = {"dtype": str, "keep_default_na": False} if as_written else {}
            frame = pd.read_csv(path, sep=csv_separator(path, name), encoding_errors="replace", low_memory=False,
                                **written)
            if not isinstance(frame.index, pd.RangeIndex):  # pandas made the extra fields an index
                raise InvalidInput(f"{name}: rows hold more fields than the header names: every value needs "
                                   "its column")
        elif ext == ".parquet":
            _check_flat_parquet(path, name)
            frame = pd.read_parquet(path)
            if not isinstance(frame.index, pd.RangeIndex):
                frame = frame.reset_index()
        elif ext == ".xlsx":
            sheets = pd.read_excel(path, sheet_name=None, engine="openpyxl")
            if len(sheets) != 1:
                raise InvalidInput(f"{name} has {len(sheets)} sheets: submit one table per file")
            frame = next(iter(sheets.values()))
        else:
            raise InvalidInput(f"{name} is not a table")
    except InvalidInput:
        raise
    except Exception as exc:  # a malformed file is the user's input, say so in one line
        raise InvalidInput(f"{name} cannot be read as a table: {type(exc).__name__}: {exc}") from None
    if frame.size > MAX_CELLS:
        raise InvalidInput(f"{name} has {frame.size} cells, more than {MAX_CELLS}: outputs are aggregates")
    frame.columns = [str(c) for c in frame.columns]
    return frame


_GROUPED = re.compile(r"^-?\d{1,3}(?:[ \u00a0\u202f']\d{3})+(?:[.,]\d+)?$")
_DECIMAL_COMMA = re.compile(r"^-?\d+,\d+$")


def _plain_numbers(text: pd.Series) -> pd.Series:
    """Numbers as French and spreadsheet exports write them (``1 234``, ``12,5``) in plain form, so a
    count with a thousands separator is judged as a count, not taken for a category."""
    grouped = text.str.match(_GROUPED.pattern).fillna(False)
    comma = text.str.match(_DECIMAL_COMMA.pattern).fillna(False)
    if not (grouped.any() or comma.any()):
        return text
    out = text.copy()
    out[grouped] = text[grouped].str.replace(r"[ \u00a0\u202f']", "", regex=True)
    fixed = grouped | comma
    out[fixed] = out[fixed].str.replace(",", ".", regex=False)
    return out


def _numeric_column(series: pd.Series) -> tuple[np.ndarray, np.ndarray] | None:
    """(values, suppressed) when the column holds numbers and suppression markers only."""
    if pd.api.types.is_bool_dtype(series):
        return None
    if pd.api.types.is_numeric_dtype(series):
        values = series.to_numpy(dtype=float, na_value=np.nan)
        return values, np.isnan(values)
    if not (pd.api.types.is_object_dtype(series) or pd.api.types.is_string_dtype(series)):
        return None
    # judged on the distinct values first: a text column of categories is rejected at little cost
    uniques = _plain_numbers(pd.Series(pd.unique(series.dropna()), dtype="string").str.strip())
    known = pd.to_numeric(uniques, errors="coerce").isna() & ~uniques.isin(SUPPRESSION_MARKERS)
    if known.any():
        return None
    text = _plain_numbers(series.astype("string").str.strip())
    values = pd.to_numeric(text, errors="coerce").to_numpy(dtype=float, na_value=np.nan)
    bad = np.isnan(values)
    markers = text.isna() | text.isin(SUPPRESSION_MARKERS)
    if (bad & ~markers.to_numpy(dtype=bool, na_value=True)).any() or bad.all():
        return None
    return values, bad


def analyse(frame: pd.DataFrame, declaration: Declaration | int | None = None) -> LoadedTable:
    """Split ``frame`` into label and value columns (:func:`.declaration.assign`) and find suppressed
    cells and margins (declared totals, and rows/columns named Total, All...)."""
    if not isinstance(declaration, Declaration):
        declaration = Declaration(labels=declaration) if isinstance(declaration, int) else Declaration()
    parsed = {}
    for pos in range(frame.shape[1]):
        column = _numeric_column(frame.iloc[:, pos])
        if column is not None:
            parsed[pos] = column
    roles = assign(frame, {p: v for p, (v, _) in parsed.items()}, declaration)
    numeric = sorted(roles.counts + list(roles.magnitudes) + roles.unknown)
    rows = len(frame)
    values = np.column_stack([parsed[p][0] for p in numeric]) if numeric else np.zeros((rows, 0))
    suppressed = (np.column_stack([parsed[p][1] for p in numeric]) if numeric
                  else np.zeros((rows, 0), dtype=bool))
    total_names = set(declaration.total_rows)
    total_rows = set()
    for pos in roles.labels:
        column = frame.iloc[:, pos]
        if pd.api.types.is_numeric_dtype(column):
            continue
        distinct = pd.unique(column.dropna())
        named = {v for v in distinct if _TOTAL.match(str(v).strip()) or str(v).strip() in total_names}
        if named:
            hit = column.isin(list(named)).to_numpy(dtype=bool, na_value=False)
            total_rows.update(np.nonzero(hit)[0].tolist())
    total_cols = [j for j, pos in enumerate(numeric)
                  if _TOTAL.match(str(frame.columns[pos])) or str(frame.columns[pos]) in declaration.total_cols]
    return LoadedTable(frame, roles.labels, numeric, values, suppressed, sorted(total_rows), total_cols,
                       roles, declaration, {p: v for p, (v, _) in parsed.items()})


def whole_columns(table: LoadedTable, indexes: list[int]) -> list[int]:
    """Those of ``indexes`` (columns of ``values``) holding only non-negative whole numbers."""
    out = []
    for j in indexes:
        finite = table.values[:, j][~np.isnan(table.values[:, j])]
        if finite.size and np.all(finite >= 0) and np.all(finite == np.floor(finite)):
            out.append(j)
    return out


def check_counts(table: LoadedTable, thresholds: Thresholds, columns: list[int] | None = None,
                 cap: int = MAX_FINDINGS_PER_RULE, unit: str = "persons") -> tuple[list[Finding], dict[str, int]]:
    """Small cells (fail) and zeros (review), cell by cell, margins included, in the value columns
    ``columns`` (indexes in ``values``; every value column when None).

    Returns the findings (at most ``cap`` per rule) and the number of further ones per rule.
    """
    findings = []
    omitted = {}
    v = table.values.copy()
    if columns is not None:
        keep = np.zeros(v.shape[1], dtype=bool)
        keep[columns] = True
        v[:, ~keep] = np.nan
    with np.errstate(invalid="ignore"):
        small = (v != 0) & (np.abs(v) < thresholds.min_cell)  # a negative count is a count
        zero = v == 0
    rows, cols = np.nonzero(small)
    omitted["small-cell"] = max(0, len(rows) - cap)
    for r, c in zip(rows[:cap], cols[:cap]):
        findings.append(Finding("small-cell", Status.FAIL,
                                f"{int(v[r, c])} is below the threshold of {thresholds.min_cell} {unit}",
                                row=int(r), col=table.numeric[c], cell=table.cell(int(r), table.numeric[c])))
    rows, cols = np.nonzero(zero)
    omitted["zero"] = max(0, len(rows) - cap)
    for r, c in zip(rows[:cap], cols[:cap]):
        findings.append(Finding("zero", Status.REVIEW,
                                "zero cell: confirm it is structural (impossible combination), "
                                "else it reveals that nobody in this group has the attribute",
                                row=int(r), col=table.numeric[c], cell=table.cell(int(r), table.numeric[c])))
    return findings, omitted


def check_margins(table: LoadedTable) -> list[Finding]:
    """A suppressed cell alone in its row (or column) next to a published total can be recovered."""
    findings = []
    supp = table.suppressed
    body_rows = np.array([r for r in range(supp.shape[0]) if r not in set(table.total_rows)], dtype=int)
    body_cols = np.array([c for c in range(supp.shape[1]) if c not in set(table.total_cols)], dtype=int)
    if not len(body_rows) or not len(body_cols):
        return findings
    block = supp[np.ix_(body_rows, body_cols)]
    per_row, per_col = block.sum(axis=1), block.sum(axis=0)
    for tc in table.total_cols:
        for i in np.nonzero((per_row == 1) & ~supp[body_rows, tc])[0]:
            r, c = int(body_rows[i]), int(body_cols[np.argmax(block[i])])
            findings.append(Finding("margin-recovery", Status.FAIL,
                                    "the only suppressed cell of its row: the row total minus the "
                                    "other cells gives it back; suppress a second cell or the total",
                                    row=r, col=table.numeric[c], cell=table.cell(r, table.numeric[c])))
    for tr in table.total_rows:
        for j in np.nonzero((per_col == 1) & ~supp[tr, body_cols])[0]:
            r, c = int(body_rows[np.argmax(block[:, j])]), int(body_cols[j])
            findings.append(Finding("margin-recovery", Status.FAIL,
                                    "the only suppressed cell of its column: the column total minus "
                                    "the other cells gives it back; suppress a second cell or the total",
                                    row=r, col=table.numeric[c], cell=table.cell(r, table.numeric[c])))
    return findings


# ---- magnitudes (from ACRO) -------------------------------------------------------------------
_ACRO_RULES = {"NKCheck": ("dominance", "dominance: the largest contributors make most of this cell"),
               "PPercentCheck": ("p-ratio", "p-ratio: the other contributors are too small to hide the largest"),
               "MinimumThresholdCheck": ("small-cell", "fewer contributors than the threshold in this cell"),
               "RequiredZeroCheck": ("zero", "zero cell flagged by ACRO"),
               "PresenceOfZeroCheck": ("zero", "zero cell flagged by ACRO"),
               "AllSameValuesCheck": ("all-same", "every contributor has the same value"),
               "MissingCheck": ("missing", "missing values in the contributors")}


def check_acro_record(table: LoadedTable | None, record: Mapping[str, Any],
                      thresholds: Thresholds) -> list[Finding]:
    """Findings from an ACRO record attached by :mod:`pds_kernel.sdc`: failing cells and dof.

    The record comes from the workspace, so a malformed one is a finding (review), never a crash.
    """
    try:
        return _acro_findings(table, record, thresholds)
    except (AttributeError, IndexError, KeyError, TypeError, ValueError) as exc:
        return [Finding("acro", Status.REVIEW,
                        f"the ACRO record of this file is malformed ({type(exc).__name__}): review by hand")]


def _acro_findings(table: LoadedTable | None, record: Mapping[str, Any], thresholds: Thresholds) -> list[Finding]:
    findings = []
    sdc = record.get("sdc") or {}
    cells = sdc.get("cells") or {}
    offset = int(record.get("label_columns", len(table.labels))) if table is not None else 0
    if table is not None and table.declaration.labels is None and isinstance(record.get("label_columns"), int):
        offset = int(record["label_columns"])
    for check, positions in cells.items():
        rule, message = _ACRO_RULES.get(check, (check, f"ACRO {check}"))
        status = Status.REVIEW if rule in {"zero", "missing"} else Status.FAIL
        for pos in positions or []:
            r, c = int(pos[0]), int(pos[1])
            findings.append(Finding(rule, status, f"{message} (ACRO {check})", row=r, col=c + offset))
    dof = (record.get("properties") or {}).get("dof")
    if dof is not None and int(dof) < thresholds.min_dof:
        findings.append(Finding("dof", Status.FAIL,
                                f"{int(dof)} residual degrees of freedom, fewer than {thresholds.min_dof}"))
    status = str(record.get("status", "review"))
    if status == "review" and not findings:
        findings.append(Finding("acro", Status.REVIEW, f"ACRO asks for review: {record.get('summary', '')}"))
    return findings


def _compact_days(column: pd.Series) -> bool:
    """A column of whole numbers that are all dates written ``yyyymmdd``, not all on the 1st."""
    values = column.dropna().to_numpy(dtype=float)
    if not values.size or np.any(values != np.floor(values)) or values.min() < 19000101 or values.max() > 21001231:
        return False
    written = [str(int(v)) for v in np.unique(values)[:1000]]
    return all(COMPACT_DATE.match(v) for v in written) and any(not v.endswith("01") for v in written)


def check_text_cells(table: LoadedTable, scan) -> list[Finding]:
    """Run the content rules on headers and on every text cell (label columns included)."""
    findings = []
    text_positions = [p for p in range(table.frame.shape[1]) if p in table.labels]
    texts = {p: table.frame.iloc[:, p].dropna().astype(str).unique() for p in text_positions
             if pd.api.types.is_object_dtype(table.frame.iloc[:, p]) or pd.api.types.is_string_dtype(table.frame.iloc[:, p])}
    around = table_script(itertools.chain(table.frame.columns, *texts.values()))
    for pos, name in enumerate(table.frame.columns):
        if name.startswith("Unnamed"):
            continue
        for rule, status, message in scan(name, header=True, around=around):
            findings.append(Finding(rule, status, f"header: {message}", row=None, col=pos))
    for pos in text_positions:
        column = table.frame.iloc[:, pos]
        if pd.api.types.is_datetime64_any_dtype(column):
            findings.append(Finding("day-date", Status.REVIEW,
                                    "date column: publish months or years unless the day is needed", col=pos))
            continue
        if pd.api.types.is_numeric_dtype(column):
            if _compact_days(column):
                findings.append(Finding("day-date", Status.REVIEW, "whole numbers written yyyymmdd: day-level "
                                                                    "dates; publish months or years unless the day "
                                                                    "is needed", col=pos))
            continue  # numbers that are identifiers are a pre-gate (pregates.check_identifiers)
        uniques = texts[pos] if pos in texts else column.dropna().astype(str).unique()
        flagged = {u: scan(u, header=False, around=around) for u in uniques}
        flagged = {u: f for u, f in flagged.items() if f}
        if not flagged:
            continue
        for r, value in enumerate(column.astype("string").fillna("")):
            for rule, status, message in flagged.get(value, ()):
                findings.append(Finding(rule, status, message, row=r, col=pos))
    return findings
