"""Rules that read any text a file carries: identifiers, day-level dates, free text.

Each rule is a small pure function over one string, returning ``(rule, status, message)`` tuples;
:func:`scan_value` runs them all. Tables call it per header and per text cell, text files per line.

- NIR-like strings (the French social-security number, 13 digits + key): fail.
- the project's pseudonyms (64 hexadecimal characters, HMAC-SHA256): fail.
- the lake's person-key column names (``BEN_NIR_PSA``, ``NIR_ANO_17``...) and the extract's
  pseudonym column (``PERSON_ID``) as a header: fail.
- 17-character alphanumeric tokens (the shape of SNDS pseudonymised keys): review.
- day-level dates (ISO, French, SAS ``01JAN2020``): review (month or year is usually enough).
- free text (long sentences in a table cell; any text file): review.
- formulas: a table's cell or header a spreadsheet would run when the file is opened (``=...``,
  ``@...``, or ``+``/``-`` before a function call or a link to a program: ``=WEBSERVICE(...)``
  sends the table to a web site from the checker's own spreadsheet, before any approval): fail.
- hidden text: characters a reader cannot see (format and control characters, tag characters,
  variation selectors, private use, fillers and odd spaces): fail. A page draws them as nothing,
  so they carry data past the checker (Unicode tag characters spell ASCII one for one), or
  reorder what the checker reads (a right-to-left override). The review page shows each as
  ``<U+XXXX>`` (:func:`visible`).
"""

from __future__ import annotations

import re
import unicodedata
from functools import cache, lru_cache

from ...snds.tables import TABLES
from .result import Status

NIR = re.compile(
    r"(?<![0-9A-Za-z])[12] ?[0-9]{2} ?(?:0[1-9]|1[0-2]|[2-9][0-9]) ?(?:[0-9]{2}|2[ABab]) ?"
    r"[0-9]{3} ?[0-9]{3}(?: ?[0-9]{2})?(?![0-9A-Za-z])"
)
#: a NIR glued to letters (``ID185127512345678``): bounded by non-digits only (cells of tables)
NIR_IN_TOKEN = re.compile(NIR.pattern.replace("(?<![0-9A-Za-z])", "(?<![0-9])").replace("(?![0-9A-Za-z])", "(?![0-9])"))
#: digits written with separators (``185 127 512 345 678``, ``1.85.12...``, ``1-85-12-...``)
DIGITS_WITH_SEPARATORS = re.compile(r"^[0-9][0-9 .\-_/\u00a0\u202f]*[0-9]$")
PSEUDONYM = re.compile(r"(?<![0-9A-Fa-f])[0-9A-Fa-f]{64}(?![0-9A-Fa-f])")
LAKE_KEY = re.compile(r"(?<![0-9A-Za-z])(?=[A-Za-z]*[0-9])(?=[0-9]*[A-Za-z])[A-Za-z0-9]{17}(?![0-9A-Za-z])")
_MONTHS = "JAN|FEB|MAR|APR|MAY|JUN|JUL|AUG|SEP|OCT|NOV|DEC"
_DAY = r"(?:0?[1-9]|[12][0-9]|3[01])"
_MONTH = r"(?:0?[1-9]|1[0-2])"
#: a day-level date: ISO and its variants (``2020-03-04``, ``2020/03/04``, ``2020.3.4``), French
#: (``04/03/2020``, ``4.3.2020``, ``04-03-2020``), SAS (``04MAR2020``); the two separators agree
DAY_DATE = re.compile(
    rf"(?<![0-9.])(?:(?:19|20)[0-9]{{2}}(?P<a>[-/.]){_MONTH}(?P=a){_DAY}"
    rf"|{_DAY}(?P<b>[-/.]){_MONTH}(?P=b)(?:19|20)[0-9]{{2}}"
    rf"|(?:0[1-9]|[12][0-9]|3[01])(?:{_MONTHS})(?:19|20)?[0-9]{{2}})(?![0-9])",
    re.IGNORECASE,
)
#: a whole number written ``yyyymmdd`` (a date of birth stored as an integer)
COMPACT_DATE = re.compile(r"^(?:19|20)[0-9]{2}(?:0[1-9]|1[0-2])(?:0[1-9]|[12][0-9]|3[01])$")
#: the extract's pseudonym column (``pds_kernel.extract.spec.PERSON_ID``; a test keeps them equal:
#: importing the extract package here would load polars into the gate for one name)
PERSON_ID = "PERSON_ID"
FREE_TEXT_WORDS = 8  #: a cell with this many words or more is free text
FREE_TEXT_CHARS = 80


@lru_cache(maxsize=1)
def person_key_columns() -> frozenset[str]:
    """Column names that carry a person identifier: the SNDS profile's person keys, and the column
    holding the project's pseudonym in every table of an extract."""
    names = {key for table in TABLES.values() for key in table.person_keys}
    return frozenset(names | {"NIR", "NIR_ANO_17", "BEN_NIR_PSA", "BEN_IDT_ANO", "BEN_NIR_ANO", PERSON_ID})


def identifier_rules(value: str) -> list[tuple[str, Status, str]]:
    out = []
    if NIR.search(value):
        out.append(("identifier", Status.FAIL, "looks like a NIR (social-security number)"))
    if PSEUDONYM.search(value):
        out.append(("identifier", Status.FAIL, "looks like a project pseudonym (64 hexadecimal characters)"))
    elif LAKE_KEY.search(value):
        out.append(("identifier", Status.REVIEW, "looks like an SNDS person key (17 letters and digits)"))
    return out


def date_rules(value: str) -> list[tuple[str, Status, str]]:
    if DAY_DATE.search(value):
        return [("day-date", Status.REVIEW, "day-level date: publish months or years unless the day is needed")]
    return []


def free_text_rules(value: str) -> list[tuple[str, Status, str]]:
    if len(value) >= FREE_TEXT_CHARS or len(value.split()) >= FREE_TEXT_WORDS:
        return [("free-text", Status.REVIEW, "free text: a checker must read it")]
    return []


def header_rules(name: str) -> list[tuple[str, Status, str]]:
    if name.strip().upper() in person_key_columns():
        return [("identifier", Status.FAIL, f"column {name!r} holds person identifiers (an SNDS key or the extract's pseudonym)")]
    return identifier_rules(name)


def scan_value(value: str, *, free_text: bool = True) -> list[tuple[str, Status, str]]:
    """Every identifier, date and free-text finding for one string."""
    found = identifier_rules(value) + date_rules(value)
    if free_text:
        found += free_text_rules(value)
    return found


#: A cell a spreadsheet reads as a formula (CSV injection): ``=`` or ``@`` first (after blanks),
#: or ``+``/``-`` first and then a function call or a program link (``cmd|' /C calc'!A0``).
FORMULA = re.compile(r"^[\s\x00-\x1f]*(?:[=@]|[+\-].*(?:[A-Za-z_.]\(|[|!]))", re.DOTALL)


def formula_rules(value: str) -> list[tuple[str, Status, str]]:
    if FORMULA.match(value):
        return [("formula", Status.FAIL, "a spreadsheet runs this as a formula when the file is opened (it can "
                                         "send the table to a web site or start a program): write it without the "
                                         "leading sign, or quote it ('=...)")]
    return []


#: Bytes of a text or code file the review page shows; a longer file fails the ``preview`` rule.
PREVIEW_BYTES = 200_000
#: Not hidden: tab, new line, carriage return; and a byte-order mark opening a file (stripped first).
_SEEN_CONTROLS = {"\t", "\n", "\r"}
#: Drawn as nothing or as a plain space although they are not one (besides Cf, Cc and Co).
_INVISIBLE_EXTRA = ([(0xFE00, 0xFE0F), (0xE0100, 0xE01EF), (0x034F, 0x034F), (0x115F, 0x1160), (0x3164, 0x3164),
                     (0xFFA0, 0xFFA0), (0x2800, 0x2800), (0x1680, 0x1680), (0x2000, 0x200A), (0x2028, 0x2029),
                     (0x205F, 0x205F), (0x3000, 0x3000)])


#: A colour code of a terminal (IPython writes tracebacks and some streams in colour): not shown
#: on the page and not hidden text; any other escape sequence is.
ANSI_COLOUR = re.compile(r"\x1b\[(?:(?:[0-9]|[1-9][0-9]|1[0-9][0-9]|2[0-4][0-9]|25[0-5])(?:;|(?=m))){0,5}m")


@cache
def _hidden() -> re.Pattern:
    """One character class of every hidden character (built once: planes 0, 1 and 14, where the
    format characters are, and the private-use planes as ranges)."""
    points = [c for c in (*range(0x20000), *range(0xE0000, 0xE1000))
              if unicodedata.category(chr(c)) in {"Cf", "Cc", "Co"} and chr(c) not in _SEEN_CONTROLS]
    ranges: list[tuple[int, int]] = []
    for c in points:
        if ranges and ranges[-1][1] == c - 1:
            ranges[-1] = (ranges[-1][0], c)
        else:
            ranges.append((c, c))
    ranges += _INVISIBLE_EXTRA + [(0xF0000, 0xFFFFD), (0x100000, 0x10FFFD)]
    return re.compile("[" + "".join(f"\\U{a:08x}-\\U{b:08x}" for a, b in ranges) + "]")


def hidden_rules(value: str) -> list[tuple[str, Status, str]]:
    """Characters no one sees on the page (see the module's list); a byte-order mark opening
    ``value`` is not one of them."""
    found = _hidden().findall(value[1:] if value.startswith("\ufeff") else value)
    if not found:
        return []
    first = found[0]
    name = unicodedata.name(first, "") or unicodedata.category(first)
    return [("hidden-text", Status.FAIL, f"{len(found)} character(s) a reader cannot see (the first U+{ord(first):04X} "
                                         f"{name}): they can carry data or reorder the text past the checker; "
                                         "remove them")]


def undecodable_rules(data: bytes, cut: bool = False) -> list[tuple[str, Status, str]]:
    """Bytes of a text or code file that are not UTF-8: the page shows each as U+FFFD, whatever
    its value, so they carry bytes past the checker (``cut``: ``data`` is the start of a longer
    file, and may end inside a character)."""
    bad = 0
    while data:
        try:
            data.decode("utf-8")
            break
        except UnicodeDecodeError as exc:
            if cut and exc.end == len(data) and exc.reason == "unexpected end of data":
                break
            bad += exc.end - exc.start
            data = data[exc.end:]
    if not bad:
        return []
    return [("hidden-text", Status.FAIL, f"{bad} byte(s) are not UTF-8: the review page shows each as \ufffd, "
                                         "whatever its value; save the file as UTF-8")]


def visible(value: str) -> str:
    """``value`` with each hidden character written ``<U+XXXX>``: what a checker's page shows."""
    return _hidden().sub(lambda m: f"<U+{ord(m.group(0)):04X}>", value)
