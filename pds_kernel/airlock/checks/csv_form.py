"""What a CSV or TSV file carries besides the cells the review page shows (red team 15).

A CSV leaves as it was submitted (it is not rebuilt: docs/adr/0010-release-rebuilt-copies.md),
but a reader (pandas, the page) shows its cells, not its bytes: blank lines are skipped, blanks
around a field and the ending of each line are drawn as nothing, and bytes that are not UTF-8 are
each drawn as the same replacement character. Each carried a bit per line or cell past the
checker; each fails ``hidden-text`` here. The page shows each cell as written (``0120``, ``+120``,
``1.2e2``), not as the number pandas reads (:func:`pds_kernel.airlock.web.render.render_file`).

Red team 17: the page shows ``"N"`` and ``N`` alike, so a field in quotes or not was a bit; now
a column (and the header) must quote alike every field of one kind (texts, numbers, missing
values) that needs no quotes: csv.writer, pandas and R each do. And a column must spell its
numbers one way (:mod:`.csv_numbers`: ``1.5`` beside ``1.50`` fails). Red team 18: and its
missing values (``NA`` beside ``N/A`` or an empty field fails); the text of any table's cells is
judged in :mod:`.cell_spelling`.

A plain CSV (no quotes, no carriage returns, rows of one width: what a program writes for a table
of numbers) is read by pyarrow's reader, its columns judged on their distinct fields; any other is
read record by record with csv.reader. Both tell the rules the same things (tests/airlock/
test_csv_reading.py); the first takes about a third of the time on a million cells.
"""

from __future__ import annotations

import csv
import io
import itertools
import re
from pathlib import Path

from . import content, csv_numbers
from .result import Finding, Status

#: what :func:`_grid` writes for each field: quotes a field needs (it holds the separator, a quote
#: or a line break), then a missing value, a number and a text, in quotes and bare. A column keeps
#: each kind's quoting alike: R quotes texts and leaves ``NA`` and numbers bare, pandas'
#: ``QUOTE_NONNUMERIC`` quotes texts only, csv.writer quotes only what needs it.
_NEEDED, _Q_MISSING, _Q_NUMBER, _Q_TEXT, _MISSING, _NUMBER, _TEXT = "\x02\x03\x04\x05\x06\x07\x08"
_PAIRS = ((_Q_MISSING, _MISSING), (_Q_NUMBER, _NUMBER), (_Q_TEXT, _TEXT))
#: columns named in a finding
_NAMED = 3
#: records read before their columns are judged (a pass of C code a column and batch)
_BATCH = 512
#: a field of a record joined by NUL starting or ending with a blank (one search a record, in C)
_PADDED = re.compile(r"(?:^|\x00)[ \t]|[ \t](?:\x00|$)")


def _grid(text: str, separator: str) -> list[str]:
    """``text``'s lines with each field written as one marker (above), by regular expressions
    (C code: a quoted million-cell table takes a few passes, not a Python loop per field)."""
    s = re.escape(separator)
    start, end = rf"(?<=[{s}\n])", rf"(?=[{s}\n]|\Z)"
    number = rf"(?=[^{s}\n\"]*[0-9]){csv_numbers.NUMBER.pattern}"
    grid = "\n" + re.sub(r"\r\n?", "\n", text)
    for pattern, marker in (
            (rf'{start}"(?=(?:[^"]|"")*(?:""|[{s}\n]))(?:[^"]|"")*"{end}', _NEEDED),
            (rf'{start}"(?:NA)?"{end}', _Q_MISSING), (rf'{start}"{number}"{end}', _Q_NUMBER),
            (rf'{start}"[^"{s}\n]*"{end}', _Q_TEXT), (rf"{start}(?:NA)?{end}", _MISSING),
            (rf"{start}{number}{end}", _NUMBER), (rf"{start}(?![\x02-\x08]{end})[^{s}\n]+{end}", _TEXT)):
        grid = re.sub(pattern, marker, grid)
    return grid[1:].split("\n")


def _free_quotes(text: str, separator: str, header: list[str]) -> list[str]:
    """Columns (``the header`` for the first line) where fields of one kind needing no quotes are
    quoted in some rows and not in others."""
    if '"' not in text:
        return []
    lines = _grid(text, separator)
    mixed = []
    if any(set(pair) <= set(lines[0].split(separator)) for pair in _PAIRS):
        mixed.append("the header")
    columns: dict[int, set[str]] = {}
    for line in set(lines[1:]) - {"", _MISSING}:  # a blank line (failed on its own)
        for position, marker in enumerate(line.split(separator)):
            columns.setdefault(position, set()).add(marker)
    for position in sorted(p for p, markers in columns.items() if any(set(pair) <= markers for pair in _PAIRS)):
        mixed.append(_column_name(header, position))
    return mixed


class _Read:
    """What :func:`check_csv` learns from a CSV's records: its blank lines and lines with padded
    fields (line numbers), its header, and its columns' spelling (:class:`.csv_numbers.Column`)."""

    def __init__(self) -> None:
        self.blank: list[int] = []
        self.padded: list[int] = []
        self.header: list[str] = []
        self.columns: list[csv_numbers.Column] = []


def _read_plain(text: str, separator: str) -> _Read | None:
    """A CSV without quotes or carriage returns, whose data rows all have one width, read without
    a Python loop per row or field: its lines split at the separator are its records (what
    csv.reader gives), and each column's distinct fields come from pyarrow's reader (C++), fed
    once to its :class:`.csv_numbers.Column` (a column's way and missing values are properties of
    its distinct values). None for any other CSV: :func:`_read_records` reads it."""
    if '"' in text or "\r" in text:
        return None
    import pyarrow as pa
    import pyarrow.csv as pacsv

    read = _Read()
    lines = text.split("\n")
    if lines and lines[-1] == "":
        lines.pop()  # the last line's ending
    first = None
    for number, line in enumerate(lines, start=1):
        if not line:
            read.blank.append(number)
            continue
        if (" " in line or "\t" in line) and _PADDED.search(line.replace(separator, "\x00")):
            read.padded.append(number)
        if first is None:
            first = number
    if first is None:
        return read
    read.header = lines[first - 1].split(separator)
    body = "".join(line + "\n" for line in lines[first:] if line)  # pyarrow needs the last line's end
    if not body:
        return read
    width = body[: body.find("\n")].count(separator) + 1
    try:
        grid = pacsv.read_csv(
            pa.py_buffer(body.encode()),
            read_options=pacsv.ReadOptions(autogenerate_column_names=True),
            parse_options=pacsv.ParseOptions(delimiter=separator, quote_char=False, escape_char=False,
                                             newlines_in_values=False, ignore_empty_lines=True),
            convert_options=pacsv.ConvertOptions(column_types={f"f{i}": pa.string() for i in range(width)},
                                                 null_values=[], strings_can_be_null=False,
                                                 quoted_strings_can_be_null=False))
    except (pa.ArrowException, ValueError):
        return None  # rows of several widths, a field longer than a block: read record by record
    if grid.num_columns != width or grid.num_rows != body.count("\n"):
        return None
    for values in grid.columns:
        column = csv_numbers.Column()
        column.feed(values.unique().to_pylist())
        read.columns.append(column)
    return read


def _read_records(text: str, separator: str) -> _Read:
    """Any CSV, record by record (csv.reader), its columns fed a batch of records at a time."""
    read = _Read()
    batch: list[list[str]] = []
    reader = csv.reader(io.StringIO(text, newline=""), delimiter=separator)
    try:
        for record in reader:
            if not record:
                read.blank.append(reader.line_num)
                continue
            joined = "\x00".join(record)
            if (" " in joined or "\t" in joined) and _PADDED.search(joined):
                read.padded.append(reader.line_num)
            if not read.header:
                read.header = record
                continue
            batch.append(record)
            if len(batch) == _BATCH:
                _feed(read.columns, batch)
    except csv.Error:
        pass  # the table reader says what is malformed
    _feed(read.columns, batch)
    return read


def _feed(columns: list[csv_numbers.Column], batch: list[list[str]]) -> None:
    """Each column's values of ``batch`` to its :class:`.csv_numbers.Column` (a short row's
    missing fields read as empty); ``batch`` is emptied."""
    if not batch:
        return
    width = max(map(len, batch))
    columns += [csv_numbers.Column() for _ in range(width - len(columns))]
    for column, values in zip(columns, itertools.zip_longest(*batch, fillvalue="")):
        column.feed(values)
    batch.clear()


def _spelling_problems(text: str, separator: str, columns: list[csv_numbers.Column]) -> list[tuple[int, str]]:
    """(position, why) of each column whose numbers no writer's one way explains: read again for
    those columns only, their distinct values judged by :func:`.csv_numbers.column_problem`."""
    odd = [i for i, column in enumerate(columns) if column.way is None]
    if not odd:
        return []
    values: dict[int, set[str]] = {i: set() for i in odd}
    records = csv.reader(io.StringIO(text, newline=""), delimiter=separator)
    try:
        next((record for record in records if record), None)  # the header
        for record in records:
            for i in odd:
                values[i].add(record[i] if i < len(record) else "")
    except csv.Error:
        pass
    return [(i, why) for i in odd if (why := csv_numbers.column_problem(values[i]))]


def _column_name(header: list[str], position: int) -> str:
    """How a finding names the column at ``position``: its header, or its number past the header."""
    return repr(header[position]) if position < len(header) else f"column {position + 1}"


def _named(columns: list[str]) -> str:
    more = f" and {len(columns) - _NAMED} more" if len(columns) > _NAMED else ""
    return ", ".join(columns[:_NAMED]) + more


def check_csv(path: Path, separator: str) -> list[Finding]:
    """The ``hidden-text`` findings of a CSV's bytes outside its cells (the caller bounds its size)."""
    data = path.read_bytes()
    found = content.undecodable_rules(data)
    text = data.decode("utf-8", "replace").removeprefix("\ufeff")
    found += content.line_ending_rules(text)
    read = _read_plain(text, separator) or _read_records(text, separator)
    blank, padded, header, columns = read.blank, read.padded, read.header, read.columns
    out = [Finding(rule, status, message) for rule, status, message in found]
    if blank:
        out.append(Finding("hidden-text", Status.FAIL, f"{len(blank)} blank line(s) (the first is line {blank[0]}): "
                                                       "readers skip them and the page does not show them, so they "
                                                       "can carry data past the checker; remove them"))
    if padded:
        out.append(Finding("hidden-text", Status.FAIL, f"{len(padded)} line(s) with spaces or tabs at the start or end "
                                                       f"of a field (the first is line {padded[0]}): the page does not "
                                                       "show them, so they can carry data past the checker; remove "
                                                       "them"))
    quoted = _free_quotes(text, separator, header)
    if quoted:
        out.append(Finding("hidden-text", Status.FAIL, f"fields in quotes in some rows and not in others where quotes "
                                                       f"change nothing ({_named(quoted)}): the page shows \"N\" and N "
                                                       "alike, so the quotes can carry data past the checker; write "
                                                       "the file with one quoting rule (csv.writer, pandas' to_csv)"))
    missing = [f"{_column_name(header, i)}: {' and '.join(map(repr, sorted(c.missing)))}"
               for i, c in enumerate(columns) if len(c.missing) > 1]
    if missing:
        out.append(Finding("hidden-text", Status.FAIL, f"missing values written in several ways in {len(missing)} "
                                                       f"column(s) ({_named(missing)}): a reader takes each for a "
                                                       "missing value, so the way each is written can carry data past "
                                                       "the checker; write them one way (pandas' to_csv leaves them "
                                                       "empty, R writes NA)"))
    spelt = [(_column_name(header, i), why)
             for i, why in _spelling_problems(text, separator, columns)]
    if spelt:
        out.append(Finding("hidden-text", Status.FAIL, f"numbers spelt in several ways in {len(spelt)} column(s) "
                                                       f"({_named([f'{n}: {why}' for n, why in spelt])}): the page "
                                                       "shows 1.5 and 1.50 as one number, so the spelling can carry "
                                                       "data past the checker; write each column's numbers one way "
                                                       "(a fixed count of decimals, or the shortest form)"))
    return out
