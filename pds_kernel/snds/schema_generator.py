"""A generic synthetic generator driven by the table metadata: any ingestible table (profile or
catalogue), a few schema-valid rows per file.

The demo generator (:mod:`.generator`) writes coherent patients for the 10 tables of the profile;
this one writes any table from its definition (:func:`~.catalogue.ingestible_table`), so that
every catalogued table can be generated and loaded:

* a closed value set: one of its values; a column with a nomenclature: one of its codes (real
  codes: ICD-10 from MS_CIM_V, GHM, CCAM...), kept only when it also parses as the column's type
  and matches its pattern;
* a pattern without a nomenclature: a value built for it (ICD-10, ATC, GHM, ``YYYYMM``...);
* integers within the published ``minimum``/``maximum`` and length, texts within the length,
  floats with two decimals,
  dates (and years, months) within the file's period, so that a month check holds;
* primary key columns unique per row; a reference to another table (ER_PHA_F → IR_PHA_R): a value
  written in that table's file by the same call.

Deterministic: the same seed gives the same files.
"""

from __future__ import annotations

import functools
import random
import re
from dataclasses import dataclass, field
from datetime import date
from pathlib import Path

from .catalogue import entries, ingestible_names, ingestible_table, nomenclature_codes, schema
from .file_names import example_name
from .tables import YEARMONTH, Column, Table

_MONTHS = ("JAN", "FEB", "MAR", "APR", "MAY", "JUN", "JUL", "AUG", "SEP", "OCT", "NOV", "DEC")
#: Values for the patterns of the profile and the catalogue when no nomenclature gives one.
_PATTERN_VALUES = {
    r"^[A-Z][0-9]{2}[0-9A-Z+]{0,3}$": ("E119", "I10", "C509", "J45"),
    r"^[A-Z][0-9]{2}[A-Z]{2}[0-9]{2}$": ("A10BA02", "C10AA05", "N02BE01"),
    r"^[A-Z][0-9]{2}$": ("A10", "C10", "N02"),
    r"^[0-9]{2}[A-Z][0-9]{2}[0-9A-Z]$": ("05M092", "14Z131", "23M20T"),
    r"^[0-9]{2}$": ("00", "01"),
    r"^-?[0-9]+$": ("1234567890123456789012",),
}
_SAFE_TEXT = re.compile(r"^[^;\x00-\x1f\x7f-\x9f]+$")


@dataclass
class GeneratedFile:
    path: Path
    table: str
    period: str | None
    rows: int


@dataclass
class _Context:
    rng: random.Random
    period: str  #: YYYYMM or YYYY
    written: dict[tuple[str, str], list] = field(default_factory=dict)  #: (table, column) -> values


@functools.cache
def _bounds(table: str, column: str) -> tuple[int, int]:
    """``(minimum, maximum)`` of an integer column from its published constraints and length."""
    low, high = 0, 999
    if table in entries():
        for f in schema(table)["fields"]:
            if f["name"] == column:
                constraints = f.get("constraints") or {}
                length = str(f.get("length") or "").split(",")[0].strip()
                if length.isdigit():
                    high = min(10 ** min(int(length), 18) - 1, 999_999)
                low = int(constraints.get("minimum", low))
                high = int(constraints.get("maximum", max(high, low)))
                break
    return low, max(low, high)


def _parses(column: Column, text: str) -> bool:
    if not _SAFE_TEXT.fullmatch(text) or (column.pattern and not re.match(column.pattern, text)):
        return False
    if column.type in ("int", "year", "month"):
        try:
            value = int(text)
        except ValueError:
            return False
        return column.type != "month" or 1 <= value <= 12
    if column.type == "float":
        try:
            float(text)
        except ValueError:
            return False
    return column.type in ("str", "int", "year", "month", "float")


def _as_int(code: str) -> str | None:
    try:
        number = float(code)
    except ValueError:
        return None
    return str(int(number)) if number.is_integer() else None


@functools.cache
def _candidates(column: Column) -> tuple[str, ...] | None:
    """Texts a value may take, when the metadata restricts it (set, nomenclature, pattern)."""
    if column.values is not None:
        return tuple(sorted(str(v) for v in column.values))
    if column.nomenclature is not None:
        codes = nomenclature_codes(*column.nomenclature)
        if column.type == "int":  # "001", "1.00": the integer 1 in the lake
            codes = [_as_int(c) for c in codes if _as_int(c) is not None]
        codes = [c for c in codes if c.isascii() and _parses(column, c)
                 and (column.length is None or len(c) <= column.length)]
        if codes:
            return tuple(codes[:500])
    if column.pattern is not None:
        return _PATTERN_VALUES.get(column.pattern, ())
    return None


def _format_date(column: Column, day: date) -> str:
    if column.fmt == "sas_datetime":
        return f"{day.day:02d}{_MONTHS[day.month - 1]}{day.year}:00:00:00"
    if column.fmt == "dmy":
        return day.strftime("%d%m%Y")
    return day.isoformat()


def _value(table: Table, column: Column, row: int, ctx: _Context) -> str:
    rng = ctx.rng
    year = int(ctx.period[:4])
    month = int(ctx.period[4:6]) if len(ctx.period) == 6 else rng.randint(1, 12)
    in_key = column.name in table.primary_key
    if column.references is not None:
        pool = ctx.written.get(column.references, [])
        if pool:
            return pool[row % len(pool)]
    if column.type == "date":
        return _format_date(column, date(year, month, 1 + (row % 28 if in_key else rng.randint(0, 27))))
    if column.type == "year":
        return str(year)
    if column.pattern == YEARMONTH:
        return f"{year}{month:02d}"
    candidates = _candidates(column)
    if candidates:
        return candidates[row % len(candidates)] if in_key else rng.choice(candidates)
    if column.type == "month":
        return str(month)
    if column.type == "int":
        low, high = _bounds(table.name, column.name)
        return str(low + row % (high - low + 1) if in_key else rng.randint(low, high))
    if column.type == "float":
        return f"{rng.uniform(0, 500):.2f}"
    width = min(9 if in_key else 6, column.length or 9)  # within the published length
    if in_key:
        return f"K{row:0{width - 1}d}" if width > 1 else str(row % 10)
    return "".join(rng.choice("ABCDEFGHJKLMNPQRSTUVWXYZ0123456789") for _ in range(width))


@functools.cache
def _referenced() -> frozenset:
    """The ``(table, column)`` pairs some column references (their values are kept)."""
    return frozenset(c.references for n in ingestible_names() for c in ingestible_table(n).columns
                     if c.references is not None)


def generate_table(out: Path, name: str, *, rows: int = 3, period: str = "202301", seed: int = 0,
                   ctx: _Context | None = None, first_key: int = 0) -> GeneratedFile:
    """Write one delivery file of table ``name`` for ``period`` (a month; its year for a yearly
    table) with ``rows`` schema-valid rows; returns what was written. Key values are numbered
    from ``first_key``: files of one table given disjoint ranges never share a key."""
    table = ingestible_table(name)
    ctx = ctx or _Context(random.Random(f"{seed}:{name}"), period)
    file_period = None if table.split == "snapshot" else (period[:4] if table.split == "yearly" else period)
    path = Path(out) / example_name(name, file_period or period)
    lines = [";".join(table.column_names)]
    for i in range(rows):
        values = [_value(table, c, first_key + i, ctx) for c in table.columns]
        lines.append(";".join(values))
        for c, v in zip(table.columns, values):
            if (name, c.name) in _referenced():
                ctx.written.setdefault((name, c.name), []).append(v)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(("\n".join(lines) + "\n").encode("latin-1"))
    return GeneratedFile(path, name, file_period, rows)


def generate_catalogue(out: Path, *, rows: int = 3, period: str = "202301", seed: int = 0,
                       tables: list[str] | None = None) -> list[GeneratedFile]:
    """One file of every ingestible table (or of ``tables``), referenced tables first."""
    names = tables or ingestible_names()
    ctx = _Context(random.Random(seed), period)
    referenced = {c.references[0] for n in names for c in ingestible_table(n).columns if c.references}
    ordered = [n for n in names if n in referenced] + [n for n in names if n not in referenced]
    return [generate_table(out, n, rows=rows, period=period, seed=seed, ctx=ctx) for n in ordered]
