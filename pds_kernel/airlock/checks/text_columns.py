"""An extract column written out in a text or code file: rule ``embedded-data``.

Text (``.txt .md .json .log``) and code files go to a checker, who reads them; the literal rules
of :mod:`.code` catch a table typed as rows, but a column of the extract pasted as numbers passed
both as soon as its lines were cut by a comment or held a few values each (a list literal of
5,000 paid amounts, dates of care in the extract's row order, a notebook cell holding them, a
JSON list: red team 18B). To a reader it is a list of numbers like any other. The model rules'
comparison with the project's extract (:mod:`.model_tensors`) reads the file's numbers instead:

- the numbers are every number written in the file, in file order (:func:`.model_arrays.text_numbers`),
  and its day-level dates (``2021-03-04``, ``04/03/2021``) as days since 1970, which the extract's
  date columns are compared as; a notebook is read as its cells' sources, outputs and metadata;
- **values of a column**: more than :data:`.model_tensors.MIN_VALUES` distinct values of one
  column beyond chance fail the file, :data:`.model_tensors.REVIEW_VALUES` are named to the
  checker. Chance is measured on the file's own numbers: each is moved by one unit of its last
  written decimal that is no trailing zero (``23.45`` by 0.01, ``25.50`` by 0.1, ``1200`` by 1:
  a moved number is as round as the number was) and the moved numbers that are values of the
  column are what chance gives (a mean or a coefficient is as likely to be a value as its
  neighbours are; a copied value is not). Integers and quarters under 1024 do not count;
- **rows in order**: :data:`.model_tensors.MIN_WINDOWS` runs of a column's consecutive rows in
  the extract's row order (the model rule, through :func:`.model_tensors.column_evidence`) fail.

The cost is bounded: a code file is at most :data:`.code.MAX_CODE_BYTES`, a text file is read up
to its first :data:`MAX_TEXT_BYTES` (the rest is said to the checker), and at most
:data:`MAX_NUMBERS` numbers are compared (measured: about 0.3 s for a file the review page shows
whole, 200,000 bytes; 1 to 3 s for 1 MiB).
"""

from __future__ import annotations

import json
import re
from functools import lru_cache
from pathlib import Path

import numpy as np

from .model_arrays import Arrays, text_numbers
from .model_reference import Reference
from .model_tensors import MIN_VALUES, MIN_WINDOWS, REVIEW_VALUES, column_evidence
from .result import Finding, Status

RULE = "embedded-data"
#: bytes of a text file whose numbers are compared, as many as a code file may hold (a text or
#: code file longer than the review page shows, 200,000 bytes, fails the ``preview`` rule already)
MAX_TEXT_BYTES = 1024 * 1024
#: numbers of one file compared with the extract, at most
MAX_NUMBERS = 200_000
#: a number as written: its digits after the point tell the unit chance is measured with
_WRITTEN = re.compile(r"(?<![\w.])([-+]?\d+(?:\.(\d+))?)(?![\w.])")
_ISO_DAY = re.compile(r"(?<![0-9])((?:19|20)[0-9]{2})-(0[1-9]|1[0-2])-(0[1-9]|[12][0-9]|3[01])(?![0-9])")
_FRENCH_DAY = re.compile(r"(?<![0-9])(0[1-9]|[12][0-9]|3[01])/(0[1-9]|1[0-2])/((?:19|20)[0-9]{2})(?![0-9])")
WHAT_TO_DO = ("results leave as tables of aggregates (pds_kernel.sdc) and code without data: read the data from "
              "/data in the code, do not write it into the file")


def readable_text(path: Path, name: str) -> str:
    """The text of a text or code file whose numbers are compared: a notebook's cell sources,
    outputs and metadata (its JSON would escape the line breaks between numbers), else the file's
    first bytes."""
    with open(path, "rb") as fh:
        text = fh.read(MAX_TEXT_BYTES).decode("utf-8", "replace")
    if Path(name).suffix.lower() != ".ipynb":
        return text
    try:
        notebook = json.loads(text)
    except ValueError:
        return text
    if not isinstance(notebook, dict):
        return text
    cells = notebook.get("cells")
    parts = [json.dumps(notebook.get("metadata"))]
    for cell in cells if isinstance(cells, list) else []:
        if not isinstance(cell, dict):
            continue
        parts += [_joined(cell.get("source", "")), json.dumps(cell.get("metadata"))]
        for output in cell.get("outputs") or []:
            if isinstance(output, dict):
                parts.append(_joined(output.get("text", "")))
                data = output.get("data")
                parts.extend(_joined(v) for mime, v in (data.items() if isinstance(data, dict) else ())
                             if not str(mime).startswith(("image/png", "image/jpeg")))  # base64: no numbers
    return "\n".join(parts)


def _joined(value) -> str:
    return "".join(str(v) for v in value) if isinstance(value, list) else str(value)


@lru_cache(maxsize=65536)
def _day(year: str, month: str, day: str) -> int | None:
    try:
        return int(np.datetime64(f"{year}-{month}-{day}", "D").astype(np.int64))
    except ValueError:
        return None  # 2021-02-30


def _days_written(line: str) -> str:
    """``line`` with its day-level dates written as days since 1970."""
    line = _ISO_DAY.sub(lambda m: f" {_day(m.group(1), m.group(2), m.group(3))} ", line)
    return _FRENCH_DAY.sub(lambda m: f" {_day(m.group(3), m.group(2), m.group(1))} ", line)


def _days(text: str) -> np.ndarray:
    """The day-level dates of ``text`` in order, as days since 1970."""
    found = [(m.start(), _day(m.group(1), m.group(2), m.group(3))) for m in _ISO_DAY.finditer(text)]
    found += [(m.start(), _day(m.group(3), m.group(2), m.group(1))) for m in _FRENCH_DAY.finditer(text)]
    return np.asarray([day for _, day in sorted(found) if day is not None], dtype=np.float64)


def _line_matrix(text: str) -> np.ndarray:
    """The lines holding the most common count of numbers (two or more), one row each in file
    order: records written one a line (``2021-03-04, 12.50, 3``), read column by column as a
    model's tensor is read along each axis (the file's order interleaves their columns)."""
    rows = [text_numbers(_days_written(line)) for line in text.splitlines()[:MAX_NUMBERS]]
    counts = np.bincount([len(r) for r in rows]) if rows else np.zeros(0, dtype=np.int64)
    if len(counts) < 3:
        return np.zeros((0, 0))
    width = int(np.argmax(counts[2:])) + 2
    if counts[width] < MIN_WINDOWS:
        return np.zeros((0, 0))
    return np.stack([r for r in rows if len(r) == width])[: MAX_NUMBERS // width]


def _written(text: str) -> tuple[np.ndarray, np.ndarray]:
    """(distinct numbers of ``text``, each one's unit: one in its last decimal that is not a
    trailing zero, so that a moved number stays as round as it was (``25.50`` moves by 0.1,
    ``1.160`` by 0.01); the smallest when a number is written in several ways)."""
    found = _WRITTEN.findall(text)[:MAX_NUMBERS]
    values = np.asarray([float(number) for number, _ in found], dtype=np.float64)
    units = np.asarray([10.0 ** -len(decimals.rstrip("0")) for _, decimals in found], dtype=np.float64)
    order = np.lexsort((units, values))
    values, units = values[order], units[order]
    first = np.ones(len(values), dtype=bool)
    first[1:] = values[1:] != values[:-1]
    return values[first], units[first]


def _trivial(values: np.ndarray) -> np.ndarray:
    return (np.abs(values) < 1024) & (values * 4 == np.round(values * 4))


def _in(values: np.ndarray, column: np.ndarray) -> np.ndarray:
    pos = np.minimum(np.searchsorted(column, values), len(column) - 1)
    return column[pos] == values


def _moved(values: np.ndarray, units: np.ndarray, sign: int) -> np.ndarray:
    decimals = np.round(-np.log10(units)).astype(np.int64)
    out = values + sign * units
    for d in np.unique(decimals):
        out[decimals == d] = np.round(out[decimals == d], int(d))
    return out


def evidence(text: str, reference: Reference) -> dict[str, tuple[set[float], float, int]]:
    """What ``text`` holds of each extract column, as :func:`.model_tensors.column_evidence` says
    of a model (label -> distinct values, chance, runs of rows in row order), chance measured on
    the written numbers (see the module)."""
    values, units = _written(text)
    days = _days(text)
    if len(days):
        distinct_days = np.unique(days)
        values = np.concatenate([values, distinct_days])
        units = np.concatenate([units, np.ones(len(distinct_days))])
    out: dict[str, tuple[set[float], float, int]] = {}
    for column in reference.columns:
        informative = column.distinct[~_trivial(column.distinct)]
        if len(column.distinct) < REVIEW_VALUES or not len(informative) or not len(values):
            continue
        hit = _in(values, informative)  # never a trivial value; a moved one may be: chance counts it
        if hit.any():
            chance = (_in(_moved(values, units, 1), informative).sum()
                      + _in(_moved(values, units, -1), informative).sum()) / 2
            out[column.label] = (set(values[hit].tolist()), float(chance), 0)
    arrays = Arrays()
    arrays.add("the numbers of the file", text_numbers(text)[:MAX_NUMBERS])
    arrays.add("the dates of the file", days[:MAX_NUMBERS])
    arrays.add("the lines of the file", _line_matrix(text))
    for label, (_, _, runs) in column_evidence(arrays, reference).items():
        if runs:
            found, chance, _ = out.get(label, (set(), 0.0, 0))
            out[label] = (found, chance, runs)
    return out


def column_findings(path: Path, name: str, reference: Reference | None) -> tuple[list[Finding], dict | None]:
    """``embedded-data`` findings of the text or code file at ``path`` holding an extract column,
    and what it holds of each column (:func:`evidence`; ``None`` without an extract), which the
    rule judging several files together reads instead of reading the file again."""
    if reference is None:
        return [], None
    text = readable_text(path, name)
    out = []
    if path.stat().st_size > MAX_TEXT_BYTES or len(_WRITTEN.findall(text)) > MAX_NUMBERS:
        out.append(Finding(RULE, Status.REVIEW, (
            f"only the first {MAX_TEXT_BYTES} bytes and {MAX_NUMBERS} numbers of the file were compared with the "
            "extract: a checker must confirm the rest is not a column of it")))
    found_in_file = evidence(text, reference)
    for label, (found, chance, runs) in found_in_file.items():
        excess = len(found) - chance
        if excess >= MIN_VALUES:
            out.append(Finding(RULE, Status.FAIL, (
                f"the file holds {len(found)} distinct values of the extract's column {label} (chance explains "
                f"{chance:.0f}): a column of the extract written out, which only a table of aggregates may "
                f"summarise; {WHAT_TO_DO}")))
        elif excess >= REVIEW_VALUES:
            out.append(Finding(RULE, Status.REVIEW, (
                f"the file holds {len(found)} distinct values of the extract's column {label} (chance explains "
                f"{chance:.0f}): a checker must confirm they are results (quantiles, thresholds), not the column")))
        if runs >= MIN_WINDOWS:
            out.append(Finding(RULE, Status.FAIL, (
                f"the file holds {runs} runs of consecutive rows of the extract's column {label} in the extract's "
                f"row order: the column's rows written out; {WHAT_TO_DO}")))
    return out, found_in_file


__all__ = ["column_findings", "evidence", "readable_text", "MAX_NUMBERS", "MAX_TEXT_BYTES"]
