"""Row checks of one table, as polars expressions (pure: no I/O).

Each column of a delivered file arrives as text (``null`` when the field is empty). For each column
this module builds the typed value and the list of checks that can fail on it, in the order they
are reported: a missing required value, an unparsable value, a value outside its closed set, a
value not matching its pattern, a text longer than its published length, a code missing from its
referential, a date outside the month of its monthly file (the column that decides the month, see
``Table.month_from``). Red team 15A added a blank around a code, a text longer than the
catalogue's length and a date after the ingest (:data:`FUTURE_MARGIN`); red team 19C a date
before 1900 (:data:`OLDEST_DATE`); red team 20D a year outside its plausible range
(:func:`year_bounds`). A row is quarantined for
the first check that fails, so each quarantined row has exactly one reason.

Keeping the checks vectorised (one expression per check over a whole batch) is what makes the
ingestion as fast as a plain CSV → Parquet conversion: no Python code runs per row.
"""

from __future__ import annotations

import calendar
import functools
from collections.abc import Collection
from dataclasses import dataclass
from datetime import date, timedelta

import polars as pl

from ..snds.tables import MISSING_DATE, YEARMONTH, Column, Table, polars_type

#: Text formats of dates in delivered files (see ``pds_kernel.snds.tables``).
DATE_FORMATS = {"sas_datetime": "%d%b%Y:%H:%M:%S", "dmy": "%d%m%Y"}
#: Dates before this one do not parse: the parser's ``%Y`` takes any number of digits and a sign,
#: and ``%d`` and ``%m`` one digit as well as two, so ``05JAN23:00:00:00`` read as the year 23 and
#: ``1012023`` (1 January 2023 without its leading zero) as 10 December 0023, loaded silently. The
#: years 0000 to 0999, which four digits can also write, are refused with them: no SNDS date is
#: earlier than the missing date 1600-01-01, and Python's dates start at the year 1.
EARLIEST_DATE = date(1000, 1, 1)
#: A date before this one, other than the SNDS's missing date 1600-01-01, is quarantined
#: (``date_too_old``; red team 19C: ``01JAN1601`` and ``30DEC1899`` loaded). No date of the
#: catalogue is older: claims start in 2006, PMSI stays in the 1990s (a long psychiatric stay
#: may have begun decades before its exit), exonerations and the dates of effect of the health
#: insurance's referentials after 1945; births are years, not dates (``BEN_NAI_ANN``: 1905
#: loads). End dates are bounded too (a right never ended before 1900). Before it lie
#: typing slips of the missing date (1601) and the zero dates of spreadsheets and ODBC drivers
#: (1899-12-30, 1899-12-31), a null turned into a date on the way.
OLDEST_DATE = date(1900, 1, 1)
#: A date later than the ingest's day by more than this is quarantined (``future_date``): no
#: care, flux or death of a delivery lies after its extraction (red team 15A: ``31DEC2999`` and
#: ``31DEC9999`` loaded). A week covers clocks and time zones. End dates (:func:`is_end_date`)
#: may lie in the future: rights, exonerations, rentals and conventions end after an extraction.
FUTURE_MARGIN = timedelta(days=7)
#: A birth year before this one is quarantined (``year_out_of_range``, red team 20D): nobody born
#: earlier lived into the SNDS's years (the oldest person on record, born in 1875, died in 1997,
#: before the first claims of 2006). Birth years between it and 1900 are real (a person born in
#: 1895 was 111 in 2006); every other year column is bounded by :data:`OLDEST_DATE`'s year.
OLDEST_BIRTH_YEAR = 1870
#: The year of the SNDS's missing date 1600-01-01: a year, or year-month (``160001``), derived
#: from a missing date (a death year-month ``BEN_DCD_AME`` of a living person) loads, as the
#: missing date does.
MISSING_YEAR = MISSING_DATE.year


def is_birth_year(column: Column) -> bool:
    """A year of birth (``BEN_NAI_ANN``, ``IPP_ANN_NAI``: a name holding ``NAI``)."""
    return "NAI" in column.name.upper()


def is_year_column(column: Column) -> bool:
    """A year (``year``: ``BEN_NAI_ANN``, ``SOR_ANN``, ``ENT_ANN``...) or a year-month held as
    text (the catalogue's ``yearmonth``: ``MOI_ANN_SOR_SEJ``, ``EXD_ANN_MOI``, ``BEN_DCD_AME``)."""
    return column.type == "year" or (column.type == "str" and column.pattern == YEARMONTH)


def year_bounds(column: Column, latest: date) -> tuple[int, int | None]:
    """The first and last years (None: no last one) a year column of the catalogue may hold.

    Both kinds are quarantined outside them (``year_out_of_range``), not only counted, because
    what lies outside is never a year of the data but damage a query cannot tell from one:
    ``0000`` (a null written as a number), ``1601`` (a slip of the missing year), ``2999``
    (a placeholder or a shifted field). Loaded, a birth year ``0000`` makes a person 2023 years
    old in every mean age, and a stay of the year 2999 counts in no study's years.

    * **Birth years** (:func:`is_birth_year`): from :data:`OLDEST_BIRTH_YEAR`, not 1900: people
      born in the 1890s are in the SNDS's first years, and quarantining their beneficiary row
      would drop them from every study. An unknown birth year is delivered empty (null).
    * **Care years** (exits, entries, years of care or of an act): from :data:`OLDEST_DATE`'s
      year, the bound of every date (``date_too_old``): a stay or a care is never older; one
      between 1900 and the SNDS's start is suspicious but can be real (a long psychiatric stay),
      so it loads, as such dates do.
    * Both end at the year of ``latest`` (the ingest's day and :data:`FUTURE_MARGIN`:
      ``future_date`` for dates), except an end year-month (a name holding ``DTF``, ``FIN``,
      ``AMF`` or ``EXF``), which may lie after the extraction as end dates do.
    """
    first = OLDEST_BIRTH_YEAR if is_birth_year(column) else OLDEST_DATE.year
    ends = column.type == "str" and any(part in column.name for part in ("DTF", "FIN", "AMF", "EXF"))
    return first, None if ends else latest.year


def latest_date(today: date | None = None) -> date:
    """The last date a delivery ingested on ``today`` (default: the machine's) may hold."""
    return (today or date.today()) + FUTURE_MARGIN


def is_end_date(column: Column) -> bool:
    """An end date (``IMB_ALD_DTF``, ``ORG_AFF_DTF``, ``MTT_FIN_DTE``, ``DAT_FIN_CON``): the end
    of a right, an exoneration, a rental or a convention, which may lie after the extraction,
    up to ``31DEC9999``, the open end of the systems that write one. ``EXE_SOI_DTF`` is one too."""
    return column.type == "date" and any(part in column.name for part in ("DTF", "FIN"))


class Check:
    """Names of the checks, as written in quarantine files and reports."""

    CONTROL_CHARACTER = "control_character"
    LAST_LINE_CUT = "last_line_cut"
    COLUMN_COUNT = "column_count"
    MISSING = "missing_value"
    UNPARSABLE = "unparsable"
    NOT_IN_SET = "not_in_set"
    PATTERN = "bad_pattern"
    REFERENCE = "unknown_reference"
    WRONG_MONTH = "wrong_month"
    DUPLICATE = "duplicate_key"
    QUOTE = "quote"  #: a line holding a double quote (red team 14B)
    INVISIBLE = "invisible_character"  #: a soft hyphen, a zero-width space... (red team 14B)
    HEADER_LINE = "header_line"  #: a line of column names after the header (red team 14B)
    EMPTY_ROW = "empty_row"  #: a line of empty fields in a table without a required column
    BLANK = "blank_around_code"  #: a code or identifier with a blank before or after it (15A)
    TOO_LONG = "too_long"  #: a text longer than the catalogue's length (red team 15A)
    FUTURE = "future_date"  #: a date after the ingest (red team 15A)
    TOO_OLD = "date_too_old"  #: a date before OLDEST_DATE, not the missing date (red team 19C)
    YEAR_RANGE = "year_out_of_range"  #: a year outside :func:`year_bounds` (red team 20D)


@dataclass(frozen=True)
class ColumnCheck:
    check: str
    column: str
    bad: pl.Expr  #: true on rows that fail
    reason: pl.Expr  #: the sentence written to quarantine (only evaluated on failing rows)


#: A blank (space, tab, no-break space...) at the start or the end of a value.
_BLANK_AROUND = r"^\s|\s$"


def _quoted(raw: pl.Expr) -> pl.Expr:
    return pl.lit("'") + raw.str.slice(0, 60) + pl.lit("'")


def build_typed(column: Column, raw: pl.Expr) -> pl.Expr:
    """The lake value of ``column`` from its text ``raw`` (null where it cannot be parsed)."""
    target = polars_type(column.type)
    if column.type == "date":
        return raw.str.strptime(pl.Date, DATE_FORMATS.get(column.fmt, "%Y-%m-%d"), strict=False)
    if column.type == "str":
        return raw
    return raw.cast(target, strict=False)


def build_checks(column: Column, raw: pl.Expr, typed: pl.Expr,
                 references: pl.Series | Collection | None = None,
                 latest: date | None = None) -> list[ColumnCheck]:
    """The checks of one column, in reporting order. ``references``: the allowed codes when the
    column points into a referential (already loaded; a series, or any collection of values);
    ``latest``: the last date a value may hold (default :func:`latest_date`)."""
    name = column.name
    checks: list[ColumnCheck] = []
    if not column.nullable:
        missing = raw.is_null()
        if column.type == "str":
            # A field of spaces only is as empty as an empty one (a blank pseudonym or
            # organisation key joins nothing); in a typed column it is already unparsable.
            missing = missing | (raw.str.strip_chars(" ") == "")
        checks.append(ColumnCheck(Check.MISSING, name, missing,
                                  pl.lit(f"missing value in required column {name}")))
    if column.type == "str" and not column.free_text:
        # ' E11' and 'E11 ' are not the code E11: loaded, they fail their nomenclature and every
        # join silently (red team 15A). The delivery is fixed at its source, never guessed here.
        checks.append(ColumnCheck(Check.BLANK, name, raw.is_not_null() & raw.str.contains(_BLANK_AROUND),
                                  pl.lit(f"blank before or after the code in {name} (a code never "
                                         "holds one; it would match no other value): ") + _quoted(raw)))
    if column.type != "str":
        what = {"date": f"date (expected {DATE_FORMATS.get(column.fmt, 'YYYY-MM-DD')})",
                "float": "number", "bool": "boolean"}.get(column.type, "integer")
        unparsable = typed.is_null()
        # Tested on the typed copy, computed once per batch (the typed expression itself would
        # parse each value twice), and the rows failing never reach the lake. Both parsers run it.
        if column.type == "date":
            unparsable = unparsable | (typed < EARLIEST_DATE)  # see EARLIEST_DATE
        elif column.type == "float":
            # "NaN", "inf" and a number too large for a double ("1e400" reads as inf) parse, but
            # no SNDS amount or quantity is one: a single NaN makes every sum of a column NaN.
            unparsable = unparsable | ~typed.is_finite()
        checks.append(ColumnCheck(Check.UNPARSABLE, name, raw.is_not_null() & unparsable,
                                  pl.lit(f"unparsable {what} in {name}: ") + _quoted(raw)))
    if column.type == "date" and not is_end_date(column):
        last = latest or latest_date()
        checks.append(ColumnCheck(Check.FUTURE, name, typed.is_not_null() & (typed > last), pl.lit(
            f"date after the ingest in {name} (later than {last.isoformat()}, the ingest's day and "
            f"{FUTURE_MARGIN.days} days): ") + _quoted(raw)))
    if column.type == "date":
        checks.append(ColumnCheck(Check.TOO_OLD, name, typed.is_not_null() & (typed < OLDEST_DATE)
                                  & (typed != MISSING_DATE), pl.lit(
            f"date too old in {name} (before {OLDEST_DATE.isoformat()}, and not the SNDS's missing "
            f"date {MISSING_DATE.isoformat()}: a slip or a null turned into a date?): ") + _quoted(raw)))
    if column.type == "year":
        checks.append(_year_check(column, typed, raw, latest or latest_date()))
    allowed = column.values
    if allowed is None and column.type == "month":
        allowed = frozenset(range(1, 13))
    if allowed is not None:
        shown = ", ".join(str(v) for v in sorted(allowed, key=str))
        values = pl.Series(sorted(allowed, key=str), dtype=polars_type(column.type))
        checks.append(ColumnCheck(Check.NOT_IN_SET, name, typed.is_not_null() & ~typed.is_in(values.implode()),
                                  pl.lit(f"value outside the allowed set of {name} ({shown}): ") + _quoted(raw)))
    if column.pattern is not None:
        checks.append(ColumnCheck(Check.PATTERN, name, raw.is_not_null() & ~raw.str.contains(column.pattern),
                                  pl.lit(f"{name} does not match {column.pattern}: ") + _quoted(raw)))
        if is_year_column(column):  # a year-month of the right shape: 000012, 160101, 299901
            year = raw.str.slice(0, 4).cast(pl.Int32, strict=False)
            checks.append(_year_check(column, year, raw, latest or latest_date()))
    if column.length is not None and column.type == "str":
        checks.append(ColumnCheck(Check.TOO_LONG, name, raw.is_not_null() & (raw.str.len_chars() > column.length),
                                  pl.lit(f"longer than the {column.length} characters of {name} in the "
                                         "SNDS catalogue (a value cut or glued to another?): ") + _quoted(raw)))
    if column.references is not None:
        ref_table, ref_column = column.references
        dtype = polars_type(column.type)
        codes = (references.cast(dtype) if isinstance(references, pl.Series)
                 else pl.Series(list(references or ()), dtype=dtype))
        checks.append(ColumnCheck(Check.REFERENCE, name, typed.is_not_null() & ~typed.is_in(codes.implode()),
                                  pl.lit(f"{name} not found in {ref_table}.{ref_column}: ") + _quoted(raw)))
    return checks


def _year_check(column: Column, year: pl.Expr, raw: pl.Expr, latest: date) -> ColumnCheck:
    """A year (or the year of a year-month) of ``column`` outside :func:`year_bounds`, other than
    the missing date's year :data:`MISSING_YEAR`."""
    first, last = year_bounds(column, latest)
    wrong = year < first if last is None else (year < first) | (year > last)
    kind = "birth year" if is_birth_year(column) else "year"
    until = "" if last is None else f" to {last}"
    empty = " (an unknown birth year is delivered empty)" if is_birth_year(column) else ""
    return ColumnCheck(Check.YEAR_RANGE, column.name, year.is_not_null() & wrong & (year != MISSING_YEAR), pl.lit(
        f"{kind} out of range in {column.name} (expected {first}{until}, or {MISSING_YEAR}, the year of "
        f"the SNDS's missing date: a null written as 0000, a slip or a placeholder?){empty}: ") + _quoted(raw))


def period_days(period: str) -> tuple[date, date]:
    """The first and last days of ``period`` (``YYYYMM`` or ``YYYY``). The last day, not the next
    period's first: that of December 9999 is no date, and building it crashed the run of an
    ER_PRS_F_999912.csv."""
    year = int(period[:4])
    if len(period) == 4:
        return date(year, 1, 1), date(year, 12, 31)
    number = int(period[4:])
    return date(year, number, 1), date(year, number, calendar.monthrange(year, number)[1])


def _period_text(period: str) -> str:
    """``month of the file (2023-01)`` or ``year of the file (2023)``."""
    return f"month of the file ({period[:4]}-{period[4:]})" if len(period) == 6 else f"year of the file ({period})"


def build_month_check(column: Column, raw: pl.Expr, typed: pl.Expr, month: str, table: str = "") -> ColumnCheck:
    """A date, or a ``YYYYMM`` text, of ``column`` outside ``month`` (``YYYYMM``, or ``YYYY`` for
    a yearly file: the period of the file being loaded). The reason says what to do (red team
    20D): which column was compared, the row's month and the file's, and how to deliver the row
    (an extraction split by month of care instead of flux quarantines most of its rows here)."""
    if column.type == "date":
        first, last = period_days(month)
        wrong = typed.is_not_null() & ((typed < first) | (typed > last))
        own = typed.dt.strftime("%Y%m" if len(month) == 6 else "%Y")
    elif column.type == "str" and column.pattern == YEARMONTH:
        wrong = raw.is_not_null() & (raw.str.slice(0, len(month)) != month)
        own = raw.str.slice(0, len(month))
    else:
        raise ValueError(f"{column.name}: only a date or a year-month column can decide the month of a file")
    unit = "month" if len(month) == 6 else "year"
    where = (pl.lit(f"; deliver it in {table}_") + own.fill_null("YYYYMM") + pl.lit(".csv")
             if table and unit == "month" else pl.lit(f"; deliver it in the file of its {unit}"))
    flux = (f". A monthly file holds one month of flux: an extraction split by another month (the month "
            f"of care, EXE_SOI_DTD) is quarantined here, extract it again split by {column.name}"
            if column.name.startswith("FLX_") else "")
    return ColumnCheck(Check.WRONG_MONTH, column.name, wrong, pl.lit(
        f"{column.name} is not in the {_period_text(month)}: ") + _quoted(raw)
        + pl.lit(f" (the {unit} of a row is that of its {column.name})") + where
        + pl.lit(f" (pds ingest --correction if that {unit} is loaded){flux}"))


def build_year_month_check(year_column: str, month_column: str, period: str) -> ColumnCheck:
    """A row whose year and month columns (``SOR_ANN``, ``SOR_MOI``) fall outside ``period``."""
    year, month = pl.col(typed_name(year_column)), pl.col(typed_name(month_column))
    wrong = year.is_not_null() & (year != int(period[:4]))
    if len(period) == 6:
        wrong = wrong | (month.is_not_null() & (month != int(period[4:])))
    return ColumnCheck(Check.WRONG_MONTH, year_column, wrong, pl.lit(
        f"{year_column} and {month_column} are not in the {_period_text(period)}: ")
        + _quoted(pl.concat_str([pl.col(year_column).fill_null(""), pl.col(month_column).fill_null("")],
                                separator="/")))


def typed_name(column: str) -> str:
    """Name of the typed copy of a text column while a batch is checked."""
    return f"~{column}"


def build_table_checks(table: Table, present: Collection[str],
                       references: dict[str, pl.Series | Collection] | None = None, month: str | None = None,
                       latest: date | None = None, blanks: bool = True
                       ) -> tuple[dict[str, pl.Expr], list[ColumnCheck]]:
    """Typed expressions of the columns present (named :func:`typed_name`, computed once per
    batch) and the checks of those columns, which read the text columns and the typed copies.
    ``month``: the period of a monthly (``YYYYMM``) or yearly (``YYYY``) file, checked on
    ``table.month_from`` and ``table.year_month_from``; ``latest``: the last date a value may
    hold (default :func:`latest_date`); ``blanks=False``: the caller knows that no value holds a
    blank (the streamed parser's bytes: ASCII, no control byte but line ends, no space), so the
    checks of blanks around codes, a regular expression over every code (~5 % of a claims file's
    parse), are left out: none could fail."""
    latest = latest or latest_date()
    typed: dict[str, pl.Expr] = {}
    checks: list[ColumnCheck] = []
    period = month if month is not None and len(month) in (4, 6) and month.isdigit() else None
    for column in table.columns:
        if column.name not in present:
            continue
        raw = pl.col(column.name)
        if column.references is None:  # the same for every file of the table: built once
            typed[column.name], column_checks = _column_expressions(column, latest)
            checks.extend(column_checks)
        else:
            typed[column.name] = build_typed(column, raw).alias(typed_name(column.name))
            checks.extend(build_checks(column, raw, pl.col(typed_name(column.name)),
                                       (references or {}).get(column.name), latest))
        if period is not None and column.name == table.month_from:
            checks.append(build_month_check(column, raw, pl.col(typed_name(column.name)), period, table.name))
    pair = table.year_month_from
    if period is not None and pair is not None and pair[0] in present and pair[1] in present:
        checks.append(build_year_month_check(*pair, period))
    if not blanks:
        checks = [check for check in checks if check.check != Check.BLANK]
    return typed, _row_checks(table, present) + checks


def _row_checks(table: Table, present: Collection[str]) -> list[ColumnCheck]:
    """Checks of a whole row that no column check catches (red team 14B), tried first:

    * in a table whose columns are all text (12 PMSI tables: T_HADaaD, T_MCOaaE...), a line
      made of column names: the header of a second file concatenated to the first, which any
      typed column would refuse as unparsable but which loaded there as a row;
    * in a table without a required column (156 of the catalogue), a line of empty fields (a
      file of separators): a row of nulls that carries nothing, loaded and counted as data."""
    columns = [c for c in table.columns if c.name in present]
    checks = []
    if all(c.type == "str" for c in columns):
        # in any case and order: a second export may spell its header otherwise
        names = pl.Series([n.upper() for n in table.column_names], dtype=pl.String).implode()
        header = (pl.all_horizontal([pl.col(c.name).str.to_uppercase().is_in(names) | pl.col(c.name).is_null()
                                     for c in columns])
                  & pl.any_horizontal([pl.col(c.name).is_not_null() for c in columns]))
        checks.append(ColumnCheck(Check.HEADER_LINE, "", header, pl.lit(
            "the line holds column names, not values: a header repeated inside the file (files "
            "concatenated?)")))
    if not table.required:
        checks.append(ColumnCheck(Check.EMPTY_ROW, "", pl.all_horizontal([pl.col(c.name).is_null() for c in columns]),
                                  pl.lit("every field of the line is empty: a row with no value")))
    return checks


@functools.cache
def _column_expressions(column: Column, latest: date) -> tuple[pl.Expr, tuple[ColumnCheck, ...]]:
    """The typed expression and the checks of a column that points into no referential, built
    once per process (expressions are immutable: the parse threads share them). Building them
    again for every file cost about 1 ms a file, a few percent of a small file's parse."""
    raw = pl.col(column.name)
    return (build_typed(column, raw).alias(typed_name(column.name)),
            tuple(build_checks(column, raw, pl.col(typed_name(column.name)), latest=latest)))


def build_lake_columns(table: Table, present: Collection[str]) -> list[pl.Expr]:
    """The lake columns of ``table`` in profile order, from the typed copies (null when absent)."""
    return [pl.col(typed_name(c.name)).alias(c.name) if c.name in present
            else pl.lit(None, dtype=polars_type(c.type)).alias(c.name)
            for c in table.columns]


def joined_fields(header: list[str]) -> pl.Expr:
    """The text columns of ``header`` joined again with ``;`` (empty fields read as null): a line's
    raw text, exactly, when it has one field per column (a field never holds ``;``)."""
    return pl.concat_str([pl.col(c).fill_null("") for c in header], separator=";")


def quoted_fields(table: Table, header: list[str]) -> pl.Expr:
    """True on a line of a quoting export: a field that starts with a double quote (``"C50"``,
    ``"a;b"``, the first half of a quoted line feed), a code or identifier holding one, or a label
    holding an odd number of them or a doubled one (the second half of a quoted ``;`` or line
    feed, an escaped quote). A label that merely holds quotes in pairs (``CREME "X"``) is text:
    red team 14B quarantined every line with a quote, red team 15A keeps those labels."""
    flags = []
    for name in header:
        value = pl.col(name)
        if name in table.column_names and table.column(name).free_text:
            flags.append(value.str.starts_with('"') | value.str.contains('""', literal=True)
                         | (value.str.count_matches('"', literal=True) % 2 == 1))
        else:
            flags.append(value.str.contains('"', literal=True))
    return pl.any_horizontal(flags).fill_null(False)


#: Checks a whole line can fail before its fields are read, with the reason written to quarantine.
LINE_FLAWS = {
    Check.CONTROL_CHARACTER: "the line holds a control character (NUL or another C0 code): "
                             "damaged or binary data, never SNDS text",
    Check.QUOTE: "the line is quoted (a field starts with a double quote, a code holds one, or a "
                 "label an odd or doubled number): deliveries are not quoted, and a quoting export "
                 "(\"a;b\", \"say \"\"x\"\"\") would load its quotes or shift its fields; "
                 "export without quotes",
    Check.INVISIBLE: "the line holds an invisible character (soft hyphen, zero-width space, "
                     "direction mark...): a value that looks like another but is not",
    Check.LAST_LINE_CUT: "the last line of the file has no line end: the file may be cut (an "
                         "interrupted transfer shortens the last value); deliver it again whole",
}


def row_flags(columns: int, checks: list[ColumnCheck]) -> list[pl.Expr]:
    """What decides whether a row of a file of ``columns`` columns is loaded: the flags that make
    it bad (any true, or null, quarantines it). They read ``__flaw`` (the check a whole line
    fails, null when none: see :data:`LINE_FLAWS`), ``__fields`` (the line's field count), the
    text columns and their typed copies."""
    return [pl.col("__flaw").is_not_null(), pl.col("__fields") != columns] + [c.bad for c in checks]


def quarantine_entry(columns: int, checks: list[ColumnCheck]) -> list[pl.Expr]:
    """The ``check``, ``column`` and ``reason`` of a bad row's quarantine entry: those of the first
    of :func:`row_flags` that fails. Built only for a file with a bad row: three expressions of
    every check, a millisecond or two, were most of a small file's checking when every file built
    them."""
    flawed, wrong_count, *_ = row_flags(columns, [])
    flaw_reason = pl.coalesce([pl.when(pl.col("__flaw") == check).then(pl.lit(reason))
                               for check, reason in LINE_FLAWS.items()])
    failing = [(flawed, pl.col("__flaw"), pl.lit(""), flaw_reason),
               (wrong_count, pl.lit(Check.COLUMN_COUNT), pl.lit(""),
                pl.lit(f"wrong number of fields: expected {columns}, got ")
                + pl.col("__fields").cast(pl.String))]
    failing += [(c.bad, pl.lit(c.check), pl.lit(c.column), c.reason) for c in checks]
    return [pl.coalesce([pl.when(bad).then(item[index]) for bad, *item in failing]).alias(name)
            for index, name in enumerate(("check", "column", "reason"))]
