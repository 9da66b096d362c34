"""Pre-gates: what refuses a table before any disclosure rule runs (OpenSAFELY's idea).

A file that fails one is refused at submission with the reason and never becomes part of a
request (:data:`.result.REFUSAL_RULES`). They judge the file, not the researcher's declaration:

- ``max-rows``: more rows than the project's ``max_table_rows`` (default 5,000): outputs are
  aggregates, the gate is not a data pipe;
- ``max-size``: a table file larger than the gate reads;
- ``person-identifier``: a column that holds person identifiers, whatever its type or header:
  NIR-like 13/15-digit values (text, or numbers: a NIR read as an integer is still a NIR), 64-hex
  pseudonyms, the project's own PERSON_IDs (or a 12+ character prefix of one), 17-character SNDS
  keys, and the person-key column names (``BEN_NIR_PSA``, ``PERSON_ID``...);
- ``exact-date``: day-level dates of birth or death;
- ``microdata``: rows that are records, not cells: category combinations repeated across rows, a
  category column as distinct as the rows holding identifier-like tokens, a count column that is
  mostly 1 (one row per person), or many rows without any category column.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable

import numpy as np
import pandas as pd

from . import content
from .result import Finding, Status

#: rows from which repeated categories or unlabelled rows mean records, not cells
MICRODATA_MIN_ROWS = 20
UNLABELLED_MAX_ROWS = 50
#: a hex token at least this long that starts like a project PERSON_ID is one
PSEUDONYM_PREFIX = 12

_BIRTH_DEATH = re.compile(r"birth|death|dob|dod|naiss|nai_|_nai|deces|décès|dcd|deceased|died|born",
                          re.IGNORECASE)
_HEX = re.compile(rf"^[0-9a-fA-F]{{{PSEUDONYM_PREFIX},}}$")
_TOKEN = re.compile(r"^(?=.*[0-9])[0-9A-Za-z_-]{8,}$")


def _refuse(rule: str, message: str, col: int | None = None, row: int | None = None,
            cell: str | None = None) -> Finding:
    return Finding(rule, Status.FAIL, message, row=row, col=col, cell=cell)


def check_size(rows: int, size: int, max_rows: int, max_bytes: int, columns: int = 0) -> list[Finding]:
    out = []
    if rows > max_rows:
        out.append(_refuse("max-rows", f"{rows} rows: a table file holds at most {max_rows} rows in this project "
                                       "(outputs are aggregates; ask an admin if a larger table is needed)"))
    elif columns > max_rows:
        out.append(_refuse("max-rows", f"{columns} columns: a table file holds at most {max_rows} rows or columns "
                                       "in this project (a transposed table is still a table)"))
    if size > max_bytes:
        out.append(_refuse("max-size", f"{size} bytes: a table file holds at most {max_bytes} bytes"))
    return out


def _nir_numbers(values: np.ndarray) -> np.ndarray:
    """Rows whose number, written as an integer, is NIR-like (13 or 15 digits)."""
    with np.errstate(invalid="ignore"):
        candidate = (np.abs(values) >= 1e12) & (np.abs(values) < 1e15) & (values == np.floor(values))
    rows = np.nonzero(candidate)[0]
    return np.array([r for r in rows if content.NIR.fullmatch(str(int(abs(values[r]))))], dtype=int)


def _text_hits(column: pd.Series, test: Callable[[str], str | None]) -> list[tuple[int, str]]:
    """(row, why) of the cells of a text column for which ``test`` gives a reason, testing each
    distinct value once."""
    text = column.astype("string")
    uniques = text.dropna().unique()
    flagged = {}
    for value in uniques:
        why = test(str(value))
        if why:
            flagged[value] = why
    if not flagged:
        return []
    mask = text.isin(list(flagged)).to_numpy(dtype=bool, na_value=False)
    return [(int(r), flagged[text.iat[r]]) for r in np.nonzero(mask)[0][:20]]


def identifier_test(known_prefixes: frozenset[str] | None) -> Callable[[str], str | None]:
    def test(value: str) -> str | None:
        if content.NIR.search(value) or content.NIR_IN_TOKEN.search(value):
            return "a NIR (social-security number)"
        if content.DIGITS_WITH_SEPARATORS.fullmatch(value.strip()):
            digits = re.sub(r"[^0-9]", "", value)
            if len(digits) in (13, 15) and content.NIR.fullmatch(digits):
                return "a NIR (social-security number) written with separators"
        if content.PSEUDONYM.search(value):
            return "a person pseudonym (64 hexadecimal characters)"
        stripped = value.strip()
        if known_prefixes and _HEX.match(stripped) and stripped[:PSEUDONYM_PREFIX].lower() in known_prefixes:
            return "this project's PERSON_ID (or the start of one)"
        if content.LAKE_KEY.search(value):
            return "an SNDS person key (17 letters and digits)"
        return None
    return test


def check_identifiers(frame: pd.DataFrame, numeric: dict[int, np.ndarray],
                      known_prefixes: frozenset[str] | None = None) -> list[Finding]:
    """Person identifiers in any column, whatever its type or header."""
    out = []
    keys = content.person_key_columns()
    test = identifier_test(known_prefixes)
    for pos, name in enumerate(frame.columns):
        name = str(name)
        if name.strip().upper() in keys:
            out.append(_refuse("person-identifier", f"column {name!r} holds person identifiers (an SNDS key or "
                                                    "the extract's pseudonym): drop it", col=pos))
            continue
        why = test(name)
        if why:
            out.append(_refuse("person-identifier", f"the header of this column looks like {why}", col=pos))
        if pos in numeric:
            rows = _nir_numbers(numeric[pos])
            if len(rows):
                out.append(_refuse("person-identifier", f"{len(rows)} value(s) of column {name!r} look like a NIR "
                                                        "(13 or 15 digits): a column of identifiers never leaves",
                                   col=pos, row=int(rows[0])))
            continue
        column = frame.iloc[:, pos]
        if pd.api.types.is_datetime64_any_dtype(column):
            continue
        hits = _text_hits(column, test)
        if hits:
            out.append(_refuse("person-identifier", f"column {name!r} holds {hits[0][1]}: identifiers never leave",
                               col=pos, row=hits[0][0]))
    return out


#: rows of a column pair sampled for an identifier split across columns
SPLIT_SAMPLE = 200


def _digit_lengths(column: pd.Series, values: np.ndarray | None) -> np.ndarray | None:
    """The number of digits of each of the first :data:`SPLIT_SAMPLE` cells of ``column`` (whole
    numbers, or text of digits; 0 for an empty cell), or None when the column is not made of them."""
    if values is not None:
        v = values[:SPLIT_SAMPLE]
        finite = v[~np.isnan(v)]
        if not finite.size or np.any(finite < 0) or np.any(finite != np.floor(finite)) or np.any(finite >= 1e15):
            return None
        with np.errstate(divide="ignore", invalid="ignore"):
            lengths = np.floor(np.log10(np.maximum(v, 1))) + 1
        return np.where(np.isnan(v), 0, lengths).astype(int)
    if pd.api.types.is_datetime64_any_dtype(column):
        return None
    text = column.iloc[:SPLIT_SAMPLE].astype("string").str.strip().fillna("")
    if not bool(text.str.fullmatch(r"[0-9]{1,14}").mean() > 0.9):
        return None
    return text.str.len().to_numpy(dtype=int)


def _digit_strings(column: pd.Series, values: np.ndarray | None) -> pd.Series:
    if values is not None:
        return pd.Series([str(int(x)) if x == x else "" for x in values[:SPLIT_SAMPLE]], dtype="string")
    return column.iloc[:SPLIT_SAMPLE].astype("string").str.strip().fillna("")


def check_split_identifiers(frame: pd.DataFrame, numeric: dict[int, np.ndarray]) -> list[Finding]:
    """NIR-like values split over two or three adjacent columns (``1851275`` | ``12345678``)."""
    lengths = {pos: _digit_lengths(frame.iloc[:, pos], numeric.get(pos)) for pos in range(frame.shape[1])}
    out = []
    for width in (2, 3):
        for start in range(frame.shape[1] - width + 1):
            parts = [lengths[p] for p in range(start, start + width)]
            if any(part is None for part in parts):
                continue
            total = sum(parts)
            if np.mean((total == 13) | (total == 15)) < 0.5:
                continue
            strings = [_digit_strings(frame.iloc[:, p], numeric.get(p)) for p in range(start, start + width)]
            glued = strings[0].str.cat(strings[1:])
            hits = int(glued.str.fullmatch(content.NIR.pattern).sum())
            if hits >= max(3, 0.5 * len(glued)):
                names = ", ".join(repr(str(frame.columns[p])) for p in range(start, start + width))
                out.append(_refuse("person-identifier", f"columns {names} put side by side give NIR-like values "
                                                        f"(13 or 15 digits) in {hits} of {len(glued)} rows: "
                                                        "identifiers never leave, split or not", col=start))
                return out
    return out


_DAY_NAME = re.compile(r"(?:^|[_ .-])(?:day|jour|jj|dd)(?:$|[_ .-])", re.IGNORECASE)


def _day_level(column: pd.Series, name: str = "") -> bool:
    if pd.api.types.is_datetime64_any_dtype(column):
        days = pd.Series(column.dropna())
        return bool(len(days) and (days.dt.day != 1).any())
    if pd.api.types.is_numeric_dtype(column):
        values = column.dropna().to_numpy(dtype=float)
        if not values.size or np.any(values != np.floor(values)):
            return False
        if _DAY_NAME.search(name) and values.min() >= 1 and values.max() <= 31 and values.max() > 12:
            return True  # the day of a date split over columns (birth_year, birth_month, birth_day)
        written = [str(int(v)) for v in np.unique(values)[:1000]]
        return any(content.COMPACT_DATE.match(v) and not v.endswith("01") for v in written)
    text = column.dropna().astype(str).unique()[:1000]
    return any(content.DAY_DATE.search(v) for v in text)


def check_dates(frame: pd.DataFrame) -> list[Finding]:
    """Exact dates of birth or death: refused."""
    out = []
    for pos, name in enumerate(frame.columns):
        if _BIRTH_DEATH.search(str(name)) and _day_level(frame.iloc[:, pos], str(name)):
            out.append(_refuse("exact-date", f"column {name!r} holds exact dates of birth or death: publish "
                                             "years (or months) instead", col=pos))
    return out


def _distinct_tokens(column: pd.Series) -> bool:
    """As many distinct values as rows, not sorted, and shaped like identifiers (8+ characters with
    digits, or whole numbers of 6+ digits)."""
    values = column.dropna()
    if len(values) < len(column):
        return False
    if pd.api.types.is_numeric_dtype(values):
        numbers = values.to_numpy(dtype=float)  # the cheap tests first: most number columns are no identifiers
        if not len(numbers) or np.abs(numbers).max() < 100_000:
            return False  # a median of 100,000 or more needs a number as large
        if not (np.all(numbers == np.floor(numbers)) and np.median(np.abs(numbers)) >= 100_000):
            return False
        if np.all(np.diff(numbers) > 0) or np.all(np.diff(numbers) < 0):
            return False
        return bool(values.nunique() == len(values))
    if values.nunique() != len(values):
        return False
    text = values.astype(str)
    return bool(text.str.match(_TOKEN).mean() > 0.9) and not text.is_monotonic_increasing


#: value columns from which headers numbered 0..n (or p1..pn) mean a transposed table of records
TRANSPOSED_MIN_COLUMNS = 150
_NUMBERED = re.compile(r"^(\D*?)(\d+)(\D*)$")


def _numbered_headers(names: list[str]) -> bool:
    """Headers that are row numbers (``0, 1, 2...`` or ``p1, p2...``): what ``DataFrame.T`` gives."""
    parts = [_NUMBERED.match(name.strip()) for name in names]
    if not all(parts) or len({(m.group(1), m.group(3)) for m in parts}) != 1:
        return False
    numbers = np.array([int(m.group(2)) for m in parts])
    return bool(np.all(np.diff(np.sort(numbers)) == 1))


def check_transposed(frame: pd.DataFrame, values: list[int]) -> list[Finding]:
    """A table with more value columns than rows whose columns are numbered like records: a
    person-level table turned on its side (review: a checker confirms what the columns are)."""
    names = [str(frame.columns[p]) for p in values]
    if len(values) >= TRANSPOSED_MIN_COLUMNS and len(values) > len(frame) and _numbered_headers(names):
        return [Finding("microdata", Status.REVIEW, f"{len(values)} value columns numbered like records and "
                                                    f"{len(frame)} rows: a person-level table turned on its "
                                                    "side? A checker confirms what the columns are")]
    return []


def check_microdata(frame: pd.DataFrame, labels: list[int], counts: list[np.ndarray],
                    total_rows: Iterable[int] = ()) -> list[Finding]:
    """Rows that are records (one per person or event), not cells of a table."""
    rows = len(frame)
    body = frame.drop(index=frame.index[list(total_rows)]) if total_rows else frame
    out = []
    if labels and len(body) >= TRANSPOSED_MIN_COLUMNS and all(
            _numbered_headers(body.iloc[:, p].astype("string").fillna("").tolist()) for p in labels):
        out.append(Finding("microdata", Status.REVIEW, f"the category columns number the {len(body)} rows "
                                                       "(r1, r2... or 1, 2...): rows of records, not cells? A "
                                                       "checker confirms what each row is"))
    for pos in labels:
        if rows >= UNLABELLED_MAX_ROWS and _distinct_tokens(frame.iloc[:, pos]):
            out.append(_refuse("microdata", f"column {frame.columns[pos]!r} has as many distinct identifier-like "
                                            "values as rows: one row per record, not a table", col=pos))
    if labels and len(body) >= MICRODATA_MIN_ROWS and not any(body.iloc[:, p].is_unique for p in labels[:3]):
        repeated = int(body.iloc[:, labels].duplicated(keep=False).sum())
        if repeated >= max(2, 0.05 * len(body)):
            out.append(_refuse("microdata", f"{repeated} of {len(body)} rows repeat the categories of another "
                                            "row: rows are records, not cells (declare the label columns if "
                                            "a category column is missing)"))
    if not labels and rows > UNLABELLED_MAX_ROWS:
        out.append(_refuse("microdata", f"{rows} rows and no category column: rows of numbers alone are records, "
                                        "not a table (declare the label columns of a real table)"))
    for values in counts:
        finite = values[~np.isnan(values)]
        if len(finite) >= MICRODATA_MIN_ROWS and np.mean(finite == 1) >= 0.5:
            out.append(_refuse("microdata", "most counts are 1: one row per person, not a table"))
            break
        if len(finite) >= MICRODATA_MIN_ROWS:
            # a number making 90 % of the counts is their median: counting the median's copies is
            # counting the most common number's, without sorting
            median = np.partition(finite, len(finite) // 2)[len(finite) // 2]
            repeats = np.count_nonzero(finite == median)
            if repeats >= 0.9 * len(finite):
                out.append(Finding("microdata", Status.REVIEW, f"{repeats} of {len(finite)} counts are the "
                                                               "same number: rows of records with a constant "
                                                               "added? A checker confirms what each row is"))
                break
    for pos in labels:
        if len(body) >= UNLABELLED_MAX_ROWS and _packed_records(body.iloc[:, pos]):
            out.append(Finding("microdata", Status.REVIEW, f"column {frame.columns[pos]!r} packs several values, "
                                                           "numbers among them, into each of its distinct "
                                                           "categories: records written as labels? A checker "
                                                           "confirms what each row is", col=pos))
            break
    return out


_FIELDS = re.compile(r"[|;,/=:_\s]+")


def _packed_records(column: pd.Series) -> bool:
    """A text category column as distinct as its rows whose values are each 3+ fields, 2+ of them
    numbers (``F|1985|75012|4500``): a record per row."""
    if pd.api.types.is_numeric_dtype(column) or pd.api.types.is_datetime64_any_dtype(column):
        return False
    values = column.dropna().astype(str)
    if len(values) < len(column) or not values.is_unique:
        return False
    sample = values.iloc[:500]
    fields = sample.str.split(_FIELDS.pattern, regex=True)
    numbers = fields.map(lambda parts: sum(p.replace(".", "", 1).isdigit() for p in parts))
    return bool(((fields.str.len() >= 3) & (numbers >= 2)).mean() >= 0.9)
