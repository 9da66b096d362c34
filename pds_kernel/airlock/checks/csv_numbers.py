"""How a CSV column spells its numbers: one way, or a bit per cell (red team 17).

A CSV leaves as submitted and the review page shows each cell as written (``1.50``, ``010``,
``1e1``, ``+3``: :mod:`.csv_form`), but a checker reads ``1.5`` and ``1.50`` as one number: a
column free to write each value in two ways carries a bit per cell past the checker. Writers
spell a column one way: pandas and R the shortest form (``1.5``, ``3.0`` or ``3``, ``1e-05``),
``sprintf``/``float_format`` a fixed count of decimals (``1.50``, ``3.00``), codes padded with
zeros to one width (``01``, ``75``, ``971``). A column fails when its spellings follow none of
these, so the spelling is a function of the value: a sign ``+`` on some non-negative numbers and
not others, zeros padding to several widths, a trailing zero some numbers have and others lack,
``3`` beside ``3.0``, an exponent where neither Python (``repr``, ``%g`` of one precision) nor R
writes one (``1e1`` for 10), two decimal marks, digits grouped in some numbers only. What stays
is the author's one way a column (its decimals, its padding): a few bits a column.

A column is first matched, a batch of values at a time, against the common ways by one regular
expression each (C code: a million cells cost ~0.2 s); only a column none of them matches is
read again and judged on its distinct spellings.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass
from functools import lru_cache

#: a number as a writer spells it: sign, integer part (digits grouped by three or not), decimal
#: mark and fraction, exponent
NUMBER = re.compile(r"([+-]?)([0-9]+(?:[ \u00a0\u202f'][0-9]{3})*|)(?:([.,])([0-9]*))?(?:([eE])([+-]?)([0-9]+))?")
_GROUPING = re.compile(r"[ \u00a0\u202f']")
#: a line that is no number (it holds a character no number has), or is empty
_NOT_NUMBER = r"(?:[^\n]*[^0-9+\-.,eE \u00a0\u202f'\n][^\n]*|)"
#: columns every writer spells one way, recognised in one pass of C code over the column's
#: distinct values (a line each): integers and R's shortest forms; pandas' floats (``3.0``, and
#: ``1e-05`` where ``repr`` writes an exponent and nowhere else)
_PLAIN = [re.compile(rf"(?:(?:{number}|{_NOT_NUMBER})\n)*") for number in (
    r"-?(?:0|[1-9][0-9]*)(?:\.[0-9]*[1-9])?",
    r"-?(?:[1-9][0-9]{0,15}|0(?!\.0000))\.(?:0|[0-9]*[1-9])"
    r"|-?[1-9](?:\.[0-9]*[1-9])?e(?:-(?:0[5-9]|[1-9][0-9]|[0-9]{3})|\+(?:1[6-9]|[2-9][0-9]|[0-9]{3}))")]

@dataclass(frozen=True)
class Spelling:
    plus: bool  #: written with ``+``
    negative: bool
    integer: str  #: the integer part's digits, without grouping
    grouping: str  #: the grouping character ("" when not grouped)
    mark: str  #: the decimal mark ("" when none)
    fraction: str
    exponent: str  #: "" or the exponent letter
    exponent_sign: str
    exponent_digits: str

    @property
    def digits(self) -> tuple[str, int]:
        """(significant digits, decimal exponent of the first): ``0.0120`` -> ("12", -2)."""
        whole = (self.integer + self.fraction).lstrip("0").rstrip("0")
        if not whole:
            return "", 0
        lead = len(self.integer + self.fraction) - len((self.integer + self.fraction).lstrip("0"))
        power = len(self.integer) - lead - 1
        if self.exponent:
            power += int(self.exponent_digits) * (-1 if self.exponent_sign == "-" else 1)
        return whole, power


def parse(text: str) -> Spelling | None:
    """``text`` as a number's spelling, or None when it is not a number."""
    m = NUMBER.fullmatch(text)
    if m is None or not (m.group(2) or m.group(4)):
        return None
    sign, integer, mark, fraction, letter, exp_sign, exp_digits = m.groups()
    grouped = _GROUPING.findall(integer)
    return Spelling(sign == "+", sign == "-", _GROUPING.sub("", integer), grouped[0] if grouped else "",
                    mark or "", fraction or "", letter or "", exp_sign or "", exp_digits or "")


def _one(values: Iterable) -> bool:
    return len(set(values)) <= 1


def _as_g_writes(spellings: list[Spelling]) -> bool:
    """Python's ``%g`` of one precision P (``repr`` is P = 16): an exponent exactly when the first
    digit's power is under -4, or P and over."""
    plain = [s.digits[1] for s in spellings if not s.exponent and s.digits[0]]
    large = [s.digits[1] for s in spellings if s.exponent and s.digits[0] and s.digits[1] >= -4]
    if any(power < -4 for power in plain):
        return False
    return not plain or not large or max(plain) < min(large)


def _r_uses_exponent(s: Spelling) -> bool:
    """R's ``as.character``: an exponent when it is shorter than the plain form (``1e+05``)."""
    digits, power = s.digits
    if not digits:
        return False
    plain = max(len(digits), power + 1) + (len(digits) > power + 1) if power >= 0 else 1 - power + len(digits)
    scientific = len(digits) + (len(digits) > 1) + 2 + max(2, len(str(abs(power))))
    return plain > scientific


def _padded_width(parts: list[str]) -> str:
    """Why zeros padding ``parts`` (integer parts or exponents) carry a choice, or ""."""
    padded = {len(p) for p in parts if len(p) > 1 and p.startswith("0")}
    if not padded:
        return ""
    width = max(padded)
    if len(padded) > 1 or any(len(p) < width for p in parts):
        return "zeros pad some numbers and not others, or to several widths"
    return ""


def _decimals(plain: list[Spelling]) -> str:
    """Why the fractions of the numbers written without exponent carry a choice, or ""."""
    if _one((s.mark != "", len(s.fraction)) for s in plain):
        return ""  # a fixed count of decimals
    if any(s.mark and not s.fraction for s in plain):
        return "a decimal mark with no digit after it"
    if any(len(s.fraction) > 1 and s.fraction.endswith("0") for s in plain):
        return "zeros end some fractions and not others (1.50 beside 1.5)"
    whole = [s for s in plain if not s.fraction.strip("0")]
    if not _one(bool(s.mark) for s in whole):
        return "whole numbers written both with and without a fraction (3 beside 3.0)"
    return ""


def _exponents(spellings: list[Spelling]) -> str:
    """Why the use or spelling of exponents carries a choice, or ""."""
    written = [s for s in spellings if s.exponent]
    if not written:
        return ""
    if not (_one(s.exponent for s in written) and _one(s.exponent_sign == "+" for s in written if s.exponent_sign != "-")):
        return "exponents written in several ways"
    if _padded_width([s.exponent_digits for s in written]):
        return "exponents padded to several widths"
    mantissas = [Spelling(False, False, s.integer, "", s.mark, s.fraction, "", "", "") for s in written]
    if _decimals(mantissas) or any(len(s.integer) != 1 or s.integer == "0" for s in written):
        return "exponents after mantissas written in several ways"
    if all(s.exponent for s in spellings):
        return ""
    if _as_g_writes(spellings):
        return ""
    if all(bool(s.exponent) == _r_uses_exponent(s) for s in spellings):
        return ""
    return "an exponent where neither Python nor R writes one, or none where they do (1e1 for 10)"


@lru_cache(maxsize=32)
def _fixed(decimals: int) -> re.Pattern:
    number = rf"-?(?:0|[1-9][0-9]*)\.[0-9]{{{decimals}}}" if decimals else r"-?(?:0|[1-9][0-9]*)"
    return re.compile(rf"(?:(?:{number}|{_NOT_NUMBER})\n)*")


_FIRST = re.compile(r"^-?[0-9]+(?:\.([0-9]+))?$", re.MULTILINE)


#: the fields pandas reads as a missing value (``read_csv``'s defaults; the empty field too): a
#: column writes them one way (red team 18), as pandas (empty) and R (``NA``) do
MISSING = ("", "#N/A", "#N/A N/A", "#NA", "-1.#IND", "-1.#QNAN", "-NaN", "-nan", "1.#IND", "1.#QNAN", "<NA>",
           "N/A", "NA", "NULL", "NaN", "None", "n/a", "nan", "null")
_MISSING = re.compile("^(" + "|".join(re.escape(m) for m in sorted(MISSING, key=len, reverse=True)) + ")$", re.MULTILINE)


def _missing_in(lines: str) -> set[str]:
    """The values of :data:`MISSING` among ``lines`` (each ending with a line break): the empty
    one found by two scans of C code, the others searched only where their letters are."""
    found = {""} if lines.startswith("\n") or "\n\n" in lines else set()
    if "N" in lines or "n" in lines or "#" in lines or "<" in lines:
        found.update(_MISSING.findall(lines[:-1]))
    return found


class Column:
    """The first of the ways of :data:`_PLAIN` and a fixed count of decimals that a column's
    values follow, fed a batch at a time (a pass of C code a batch); ``way`` is None when they
    follow none of them: :func:`column_problem` then judges its distinct values. ``missing``: how
    the column writes its missing values."""

    def __init__(self) -> None:
        self.way: int | None = -1  #: -1 until the first batch; an index in (*_PLAIN, fixed)
        self.decimals: int | None = None
        self.missing: set[str] = set()

    def feed(self, values: Iterable[str]) -> None:
        lines = "\n".join(values) + "\n"
        if len(self.missing) < 2:
            self.missing |= _missing_in(lines)
        if self.way is None:
            return
        if self.decimals is None and (first := _FIRST.search(lines)):
            self.decimals = len(first.group(1) or "")
        patterns = (*_PLAIN, _fixed(self.decimals or 0))
        if self.way >= 0:  # a later batch must follow the way of the first (else: judged whole)
            self.way = self.way if patterns[self.way].fullmatch(lines) else None
        else:
            self.way = next((i for i, pattern in enumerate(patterns) if pattern.fullmatch(lines)), None)


def _plain(values: Iterable[str]) -> bool:
    """True when ``values`` are spelt as integers and R writes numbers, or as pandas writes floats,
    or all with one count of decimals (no value holds a line break: a cell that does is no number)."""
    column = Column()
    column.feed(values)
    return column.way is not None


def column_problem(values: Iterable[str]) -> str:
    """Why the numbers among a column's distinct ``values`` are spelt freely, or "" (one way)."""
    values = list(values)
    if _plain(values):
        return ""
    spellings = [s for s in map(parse, values) if s is not None]
    if len(spellings) < 2:
        return ""
    if not _one(s.plus for s in spellings if not s.negative):
        return "a + sign on some numbers and not others"
    if not _one(s.mark for s in spellings if s.mark):
        return "two decimal marks"
    if not _one(s.grouping for s in spellings if len(s.integer) > 3):
        return "digits grouped in some numbers and not others"
    if not _one(s.integer == "" for s in spellings if s.mark and s.integer in {"", "0"}):
        return "a zero before the decimal mark in some numbers and not others (.5 beside 0.5)"
    padding = _padded_width([s.integer for s in spellings if s.integer])
    if padding:
        return padding
    return _exponents(spellings) or _decimals([s for s in spellings if not s.exponent])
