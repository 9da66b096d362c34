"""How a table's column writes the text of its cells: one way, or a bit per cell (red team 18).

Red team 17 made a CSV column spell its *numbers* one way (:mod:`.csv_numbers`); the text cells
of any table (CSV, XLSX, Parquet) kept the same room: the review page shows each cell as
written, and a checker reads ``dose 1.5 mg`` and ``dose 1.50 mg``, ``n=010`` and ``n=10``,
``2023-1-5`` and ``2023-01-05``, ``E11`` and ``e11``, ``<10`` and ``< 10``, ``l'hôpital`` and
``l’hôpital`` as the same thing: each choice a writer does not make is a bit per cell. A column
(and the header, as one more column) fails ``hidden-text`` when:

- the numbers inside its text cells, taken by their place in the cell (the first number of each
  cell, the second...), are spelt in several ways (:func:`.csv_numbers.column_problem`: trailing
  zeros, padding, signs, decimal marks, grouping); ``12 (3.4%)`` beside ``150 (10.0%)`` is fine,
  a program wrote both. Numbers glued after a letter are codes (``E11``, ``C50.9``), not numbers:
  their first digits are padded to one width (``R01`` beside ``R2`` fails, ``C01`` beside ``E11``
  is fine);
- it writes a class of look-alike signs (spaces, apostrophes, quotes, dashes) two ways in one
  context (:mod:`.typography`);
- its codes (a letter, then digits: ``E11``, ``a10ba02``) are in capitals in some cells and in
  small letters in others;
- two of its cells differ only by blanks, or by the case of three letters or more (``<10`` and
  ``< 10``, ``Nord`` and ``NORD``; ``N`` and ``n`` often name different things);
- it writes accents both as one character and as a letter and a combining mark
  (:func:`.content.normal_form_rules`).

What stays is each column's one way (its case, its dash, its decimals): a few bits a column.
"""

from __future__ import annotations

import re
from collections.abc import Iterable

import pandas as pd

from . import content, csv_numbers, typography
from .result import Finding, Status

#: a number inside a text: not glued after a letter, digit, ``.`` or ``,``; a sign only where a word
#: does not end before it (``COVID-19`` holds 19); digits grouped by three; a decimal mark only
#: before a digit (``10, 20`` holds two numbers)
TEXT_NUMBER = re.compile(r"(?:(?<![\w.,])[+-])?(?<![\w.,])[0-9]+(?:[ \u00a0\u202f'][0-9]{3}(?![0-9]))*"
                         r"(?:[.,][0-9]+)?(?:[eE][+-]?[0-9]+)?(?![0-9])")
#: a code: letters then digits (``E11``, ``C50``, ``a10ba02``)
_CODE = re.compile(r"(?<![^\W\d_])[A-Za-z]+[0-9][A-Za-z0-9]*")
_DIGITS = re.compile(r"[0-9]+")
_CODE_DIGITS = re.compile(r"(?<![^\W\d_])[A-Za-z]+([0-9]+)")
#: what a number can be spelt with besides digits (a zero first, a mark, a sign, an exponent,
#: grouping): a column without any holds integers that have one spelling each (one search, in C)
_SPELT = re.compile(r"(?<![0-9])0[0-9]|[0-9][.,' \u00a0\u202f][0-9]|[+-][0-9]|[0-9][eE][+-]?[0-9]")
_LOWER_CODE, _UPPER_CODE = re.compile(r"[a-z][0-9]"), re.compile(r"[A-Z][0-9]")
_BLANKS = re.compile(r"\s+")
_MIXED_FORMS = "accents written both as one character (\u00e9) and as a letter and a combining mark (e and U+0301)"
#: columns named in a finding
_NAMED = 3
#: distinct cells judged a column (a column of more is a column of free text or identifiers, judged
#: by other rules; bounded so the rules stay fast)
MAX_DISTINCT = 20_000


def _one_way(values: set[str]) -> bool:
    if len(values) < 2 or (all(v.isdigit() for v in values) and len({len(v) for v in values}) == 1):
        return True  # codes' digits of one width (``C00075``): padded alike
    return not csv_numbers.column_problem(values)


def _numbers_problem(cells: list[str], joined: str) -> str:
    """The numbers of the text cells by their place, and the first digits of their codes (``R01``
    beside ``R2``: zeros pad some), each place spelt one way. All of them spelt one way (a search
    in C over ``joined``, the cells joined by line breaks) are so at each place."""
    if _one_way(set(TEXT_NUMBER.findall(joined))) and _one_way(set(_CODE_DIGITS.findall(joined))):
        return ""
    slots: dict[tuple[str, int], set[str]] = {}
    for cell in cells:
        if csv_numbers.NUMBER.fullmatch(cell):
            continue  # a cell that is a number: csv_numbers judges a CSV's
        for place, m in enumerate(TEXT_NUMBER.finditer(cell)):
            slots.setdefault(("numbers", place), set()).add(m.group())
        for place, code in enumerate(_CODE.findall(cell)):
            slots.setdefault(("codes", place), set()).add(_DIGITS.search(code).group())
    for (kind, _), values in sorted(slots.items()):
        why = csv_numbers.column_problem(values) if len(values) > 1 else ""
        if why:
            return f"{kind} inside the cells: {why}"
    return ""


def _case_problem(cells: list[str]) -> str:
    cases = set()
    for cell in cells:
        for code in _CODE.findall(cell):
            letters = re.sub(r"[0-9]", "", code)
            cases.add("upper" if letters.isupper() else "lower" if letters.islower() else "mixed")
    if {"upper", "lower"} <= cases:
        return "codes in capitals in some cells and in small letters in others (E11 beside e11)"
    return ""


def _twins_problem(cells: list[str]) -> str:
    """Two cells equal but for blanks, or for case when they have three letters or more (``N`` and
    ``n``, ``N (%)`` and ``n (%)``, ``Na`` and ``NA`` often name different things)."""
    seen: dict[str, str] = {}
    for cell in cells:
        key = _BLANKS.sub("", cell)
        key = key.casefold() if sum(c.isalpha() for c in key) > 2 else key
        if key in seen and seen[key] != cell:
            return f"{seen[key]!r} beside {cell!r} (the same but for case or blanks)"
        seen[key] = cell
    return ""


def column_problem(cells: Iterable[str], header: bool = False) -> str:
    """Why a column's distinct text ``cells`` are written in several ways, or "" (one way);
    ``header``: they are the header's names (``p25`` beside ``Q1`` is no code's case)."""
    cells = [c for c in cells if c]
    if len(cells) < 2:
        return ""
    joined = "\n".join(cells)
    numbers = _numbers_problem(cells, joined) if _SPELT.search(joined) else ""  # else: integers without zeros before
    cases = "" if header or not (_LOWER_CODE.search(joined) and _UPPER_CODE.search(joined)) else _case_problem(cells)
    return (numbers or typography.mixed_signs(joined) or cases or _twins_problem(cells)
            or (_MIXED_FORMS if content.normal_form_rules(joined) else ""))


def _text_cells(column: pd.Series) -> list[str]:
    distinct = pd.unique(column.dropna())
    if len(distinct) > MAX_DISTINCT:
        return []
    return [v for v in distinct if isinstance(v, str)]


def check_columns(frame: pd.DataFrame) -> list[Finding]:
    """The ``hidden-text`` finding of a table whose header or text columns write their cells in
    several ways (see the module's list)."""
    found = []
    why = column_problem((str(c) for c in frame.columns if not str(c).startswith("Unnamed")), header=True)
    if why:
        found.append(("the header", why))
    texts = [p for p, dtype in enumerate(frame.dtypes)
             if pd.api.types.is_object_dtype(dtype) or pd.api.types.is_string_dtype(dtype)]
    for position in texts:
        why = column_problem(_text_cells(frame.iloc[:, position]))
        if why:
            found.append((repr(str(frame.columns[position])), why))
    if not found:
        return []
    more = f" and {len(found) - _NAMED} more" if len(found) > _NAMED else ""
    named = ", ".join(f"{name}: {why}" for name, why in found[:_NAMED]) + more
    return [Finding("hidden-text", Status.FAIL, f"cells written in several ways in {len(found)} column(s) ({named}): "
                                                "the page shows them as written and a checker reads them as one, so "
                                                "the way each is written can carry data past the checker; write each "
                                                "column one way (the same decimals, case, dash, apostrophe, spaces "
                                                "and accents in every cell)")]
