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
  ``<U+XXXX>`` (:func:`visible`). Visible but drawn alike (red teams 15 and 18): look-alike
  letters of another script (:func:`lookalike_rules`), full-width and mathematical forms
  (:func:`compatibility_rules`), accents both composed and not (:func:`normal_form_rules`).
"""

from __future__ import annotations

import itertools
import re
import unicodedata
from collections.abc import Iterable
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
#: Rows and columns of a table the review page shows; a larger table fails the ``preview`` rule.
PREVIEW_ROWS = 500
PREVIEW_COLS = 60
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


# ---- visible but misleading (red team 15) ------------------------------------------------------
_WORD = re.compile(r"[^\W\d_]+")
#: scripts whose letters are drawn like Latin ones; ``COMPAT`` is a full-width, mathematical or
#: modifier form of an ASCII letter (``\uff41``, ``\U0001d41a``)
_LOOKALIKE_SCRIPTS = frozenset({"CYRILLIC", "GREEK", "ARMENIAN", "CHEROKEE", "COPTIC", "COMPAT"})
#: Cyrillic and Greek letters a reader takes for Latin ones (a word of these alone, among Latin words)
_CONFUSABLE = frozenset("\u0410\u0412\u0415\u041a\u041c\u041d\u041e\u0420\u0421\u0422\u0425\u0405\u0406"
                        "\u0408\u04ae\u051a\u051c\u04c0\u0430\u0435\u043e\u0440\u0441\u0443\u0445\u0455"
                        "\u0456\u0458\u051b\u051d\u04bb\u04cf\u0501\u0475\u04af\u0391\u0392\u0395\u0396"
                        "\u0397\u0399\u039a\u039c\u039d\u039f\u03a1\u03a4\u03a5\u03a7\u03bf\u03bd\u03b9"
                        "\u03ba\u03b1\u03c1\u03c5")
#: look-alikes that fail alone as a one-letter word (red team 17): every Cyrillic one, and the Greek
#: capitals and omicron; not the Greek small letters statistics name alone (``α``, ``κ``, ``ν``, ``ρ``)
_CONFUSABLE_ALONE = frozenset(c for c in _CONFUSABLE if (
    unicodedata.name(c).startswith("CYRILLIC") or unicodedata.name(c).startswith("GREEK CAPITAL")
    or c == "\u03bf"))


@lru_cache(maxsize=8192)
def _script(char: str) -> str:
    if char.isascii():
        return "LATIN"
    folded = unicodedata.normalize("NFKC", char)
    if (ord(char) > 0xFF and folded != char and folded.isascii()
            and not unicodedata.decomposition(char).startswith(("<super>", "<sub>"))):
        return "COMPAT"  # not a superscript or subscript (``CO\u2082``): drawn raised or lowered
    return unicodedata.name(char, "?").split(" ")[0]


def _lookalikes(value: str, around: str | None = None) -> list[tuple[int, int]]:
    """(start, end) of each word that holds a look-alike letter: mixed with Latin letters, or
    spelt wholly in Cyrillic or Greek look-alikes in a text that has Latin letters (``around``: the
    script of the text around ``value``, a table's cell: :func:`table_script`): two letters or more,
    or one letter of :data:`_CONFUSABLE_ALONE` (a Cyrillic ``а`` for ``a``) out of the script most
    words of ``value`` (else ``around``) are in, or when none is, of every other word; and a Latin
    letter alone among Cyrillic or Greek words (:data:`_TWINS`). ``α = 0.05`` and a Russian ``с``
    among Russian words are fine."""
    if value.isascii():
        return []
    words = [(m.start(), m.end(), {_script(c) for c in m.group()}) for m in _WORD.finditer(value)]
    if around != "LATIN" and not any("LATIN" in scripts for _, _, scripts in words):
        return []
    native = {script for a, b, scripts in words if len(scripts) == 1
              for script in scripts if not all(c in _CONFUSABLE for c in value[a:b])}
    majority = _majority(words) or around

    def alone_out_of_place(scripts: set[str]) -> bool:
        if majority is not None:
            return majority not in scripts
        return not scripts & native

    return [(a, b) for a, b, scripts in words
            if ("LATIN" in scripts and scripts & _LOOKALIKE_SCRIPTS)
            or ("LATIN" not in scripts and all(c in _CONFUSABLE for c in value[a:b])
                and (b - a > 1 or (value[a] in _CONFUSABLE_ALONE and alone_out_of_place(scripts))))
            or (b - a == 1 and value[a] in _TWINS.get(majority or "", ""))]


def table_script(values: Iterable[str], limit: int = 2000) -> str:
    """The script most words of two letters or more of a table's header and text cells (the first
    ``limit``) are written in: Latin unless more are Cyrillic or Greek (a Russian table's cell ``\u0441``
    alone is Russian, a Latin table's is a look-alike)."""
    counts = {"LATIN": 0, "CYRILLIC": 0, "GREEK": 0}
    for value in itertools.islice(values, limit):
        if value.isascii():
            counts["LATIN"] += len(_ASCII_WORD.findall(value))
            continue
        for m in _WORD.finditer(value):
            scripts = {_script(c) for c in m.group()}
            if len(m.group()) > 1 and len(scripts) == 1 and (script := scripts.pop()) in counts:
                counts[script] += 1
    best = max(counts, key=lambda script: counts[script])
    return best if counts[best] > counts["LATIN"] else "LATIN"


_ASCII_WORD = re.compile(r"[A-Za-z]{2,}")


#: Latin letters drawn like a Cyrillic or Greek one: alone among Cyrillic (Greek) words, written in
#: Latin where the text around is in that script (a Latin ``a`` for the Russian ``а``), a bit each
_TWINS = {"CYRILLIC": "aceijopsxyABCEHIJKMOPSTXY", "GREEK": "aikopuvABEHIKMNOPTXYZ"}


def _majority(words: list[tuple[int, int, set[str]]]) -> str | None:
    """The script most of ``words`` of two letters or more are written in (Latin, Cyrillic
    or Greek), if more are in it than in any other; None on a tie (red team 18: a one-letter word
    takes the script of the words around it)."""
    counts = {"LATIN": 0, "CYRILLIC": 0, "GREEK": 0}
    for a, b, scripts in words:
        if b - a > 1 and len(scripts) == 1 and (script := next(iter(scripts))) in counts:
            counts[script] += 1
    ranked = sorted(counts.items(), key=lambda item: -item[1])
    return ranked[0][0] if ranked[0][1] > ranked[1][1] else None


#: compatibility forms a page draws like (or nearly like) an ASCII letter, digit or sign (red team
#: 18): full-width (``\uff4e``, ``\uff11``), mathematical (``\U0001d5c7``, ``\U0001d7e3``, sans-serif as the
#: page's font) and ligatures (``\ufb01``); superscripts and subscripts (``10\u2074``, ``CO\u2082``) are drawn
#: raised or lowered, and fine
_COMPAT_TAGS = ("<font>", "<wide>", "<compat>")


@cache
def _compat() -> re.Pattern:
    """One character class of every compatibility form of ASCII (built once, planes 0 and 1)."""
    points = [c for c in range(0x80, 0x20000) if unicodedata.decomposition(chr(c)).startswith(_COMPAT_TAGS)
              and unicodedata.normalize("NFKC", chr(c)).isascii()]
    return re.compile("[" + "".join(f"\\U{c:08x}" for c in points) + "]")


def compatibility_rules(value: str) -> list[tuple[str, Status, str]]:
    """Full-width, mathematical letters and digits and ligatures in place of ASCII ones
    (``\uff11\uff12\uff10`` for ``120``): a bit each, wherever they stand (a word, a number, alone)."""
    if value.isascii():
        return []
    found = _compat().findall(value)
    if not found:
        return []
    first = found[0]
    return [("hidden-text", Status.FAIL, f"{len(found)} character(s) in a full-width, mathematical or ligature form "
                                         f"of a plain one (the first U+{ord(first):04X} {unicodedata.name(first, '?')}, "
                                         f"drawn like {unicodedata.normalize('NFKC', first)!r}): each can carry a bit "
                                         "past the checker; write the plain characters (unicodedata.normalize('NFKC', "
                                         "text))")]


def normal_form_rules(text: str) -> list[tuple[str, Status, str]]:
    """Accents written both as one character (``\u00e9``) and as a letter and a combining mark (``e``
    U+0301) in one text or column: the page draws both alike, so each accented letter can carry a
    bit (red team 18); a text wholly in one form (NFC, or macOS' NFD) is fine."""
    if text.isascii() or unicodedata.is_normalized("NFC", text) or unicodedata.is_normalized("NFD", text):
        return []
    return [("hidden-text", Status.FAIL, "accents written both as one character (\u00e9) and as a letter and a "
                                         "combining mark (e and U+0301): the page draws both alike, so each can carry "
                                         "a bit past the checker; save the text in one form (NFC: "
                                         "unicodedata.normalize('NFC', text))")]


def _is_lookalike(char: str) -> bool:
    return _script(char) in _LOOKALIKE_SCRIPTS


def _shown_word(word: str) -> str:
    """A flagged word with its look-alike letters coded (wholly, a Latin letter among Cyrillic words)."""
    if not any(_is_lookalike(c) for c in word):
        return _code(word)
    return "".join(_code(c) if _is_lookalike(c) else c for c in word)


def lookalike_rules(value: str, around: str | None = None) -> list[tuple[str, Status, str]]:
    """Letters of another script drawn like Latin ones, inside Latin text (``r\u0435gion``, a
    Cyrillic ``\u0430`` alone); ``around``: the script of the text ``value`` stands in (a table's
    cell: :func:`table_script`)."""
    spans = _lookalikes(value, around)
    if not spans:
        return compatibility_rules(value)
    word = value[spans[0][0]:spans[0][1]]
    first = next((c for c in word if _is_lookalike(c)), word[0])
    return [("hidden-text", Status.FAIL, f"{len(spans)} word(s) written with letters of another script than the "
                                         f"words around them that look alike (the first, {_shown_word(word)!r}, holds U+{ord(first):04X} "
                                         f"{unicodedata.name(first, '?')}): each can carry a bit past the checker; "
                                         "write them in the script of the words around them")]


_TRAILING_BLANKS = re.compile(r"[ \t]+(?=\r\n|\n|\r|$)")


def trailing_blank_rules(line: str) -> list[tuple[str, Status, str]]:
    """Spaces or tabs ending a line: no page shows them (whitespace steganography)."""
    if line.endswith((" ", "\t")):
        return [("hidden-text", Status.FAIL, "the line ends with spaces or tabs, which no page shows: they can carry "
                                             "data past the checker; remove them (in Markdown, end a line with a "
                                             "backslash for a line break)")]
    return []


def padding_rules(value: str) -> list[tuple[str, Status, str]]:
    """Spaces or tabs at either end of a table's cell or header: a page draws `` N`` as ``N``."""
    if value != value.strip(" \t"):
        return [("hidden-text", Status.FAIL, "spaces or tabs at the start or end of this cell, which a page does not "
                                             "show: they can carry data past the checker; remove them")]
    return []


def line_ending_rules(text: str) -> list[tuple[str, Status, str]]:
    """Lines ended in two ways (CR LF and LF, or a lone CR) in one file: each line's ending is a bit
    no page shows."""
    crlf = text.count("\r\n")
    kinds = {"CR LF": crlf, "LF": text.count("\n") - crlf, "CR": text.count("\r") - crlf}
    used = {k: n for k, n in kinds.items() if n}
    if len(used) < 2:
        return []
    counts = ", ".join(f"{n} with {k}" for k, n in used.items())
    return [("hidden-text", Status.FAIL, f"lines end in {len(used)} ways ({counts}): the ending of each line, which "
                                         "no page shows, can carry data past the checker; save the file with one kind "
                                         "of line ending")]


def _code(text: str) -> str:
    return "".join(f"<U+{ord(c):04X}>" for c in text)


_COMBINING = re.compile(r"[\u0300-\u036f\u1ab0-\u1aff\u1dc0-\u1dff\u20d0-\u20ff\ufe20-\ufe2f]")


def _mark_lookalikes(value: str, around: str | None = None) -> str:
    """``value`` with look-alike words, compatibility forms and (in a text not in NFC) combining
    accents written ``<U+XXXX>``."""
    if value.isascii():
        return value
    if not unicodedata.is_normalized("NFC", value):
        value = _COMBINING.sub(lambda m: _code(m.group()), value)
    spans = _lookalikes(value, around)
    out, last = [], 0
    for a, b in spans:
        out += [value[last:a], _shown_word(value[a:b])]
        last = b
    return _compat().sub(lambda m: _code(m.group()), "".join(out + [value[last:]]))


def visible_text(text: str) -> str:
    """A text file or program as the review page shows it: :func:`visible`, look-alike letters and
    the blanks ending a line written ``<U+XXXX>``, and each carriage return when lines end in two ways."""
    text = _TRAILING_BLANKS.sub(lambda m: _code(m.group()), _mark_lookalikes(text))
    if line_ending_rules(text):
        text = text.replace("\r\n", "<U+000D>\n").replace("\r", "<U+000D>\n")
    return visible(text)


def visible_cell(value: str, around: str = "LATIN") -> str:
    """A table's cell or header as the review page shows it: :func:`visible`, look-alike letters
    and the blanks at either end written ``<U+XXXX>``."""
    value = _mark_lookalikes(value, around)
    stripped = value.strip(" \t")
    if stripped != value:
        start = value.index(stripped[:1]) if stripped else len(value)
        value = _code(value[:start]) + stripped + _code(value[start + len(stripped):])
    return visible(value)
