"""Look-alike signs written in two ways in one place: a bit per sign (red team 18).

A page draws a space and a no-break space alike, ``'`` and ``’`` nearly alike, a hyphen, an en
dash and a minus sign nearly alike: a text or a table's column free to write each apostrophe or
each space between digits one way or the other carries a bit per sign past the checker. Writers
do not mix them where a sign plays one part: a French typesetter puts a no-break space before
each ``:`` (or none), a spreadsheet writes every range ``18–24`` with the same dash, a word
processor turns every apostrophe into ``’``. So each class of look-alike signs below must be
written one way in each *context* (what stands on either side: a digit, a letter, a space or
the edge, another sign) of one text or one column: a hyphen in ``Île-de-France`` (between
letters) beside an en dash in ``18–24`` (between digits) is fine, ``l'hôpital`` beside
``l’Isle`` is not. What stays is the one way a text or column chooses for each context: a few
bits a file, not a bit a sign.

A character written both as itself and as its UTF-8 bytes read as Latin-1 or Windows-1252
(``37°`` and ``37Â°``, ``é`` and ``Ã©``, ``’`` and ``â€™``) is a bit per character too, which a
checker takes for noise: a text or column must write each one way (wholly broken passes; red
team 20C).

A text of ASCII signs only is settled in one search (C code); otherwise a search a sign and
context where a non-ASCII sign stands.
"""

from __future__ import annotations

import re
import unicodedata
from functools import cache

from .result import Status

#: classes of signs a page draws alike or nearly alike (the ASCII one first)
CLASSES: dict[str, tuple[str, ...]] = {
    "space": (" ", "\u00a0", "\u202f"),
    "apostrophe": ("'", "\u2019", "\u2018", "\u02bc", "\u2032", "\u00b4"),
    "double quote": ('"', "\u201c", "\u201d", "\u201e", "\u2033"),
    "dash": ("-", "\u2010", "\u2011", "\u2012", "\u2013", "\u2014", "\u2015", "\u2212", "\ufe63"),
}
_PLURAL = {"space": "spaces", "apostrophe": "apostrophes", "double quote": "double quotes", "dash": "dashes"}
_NON_ASCII = re.compile("[" + "".join(c for signs in CLASSES.values() for c in signs if not c.isascii()) + "]")
#: what stands beside a sign: a digit, a letter, a blank, the edge of a line (a Markdown list's
#: ``-`` is not a dash in a sentence), another sign
_BEFORE = {"digit": r"(?<=\d)", "letter": r"(?<=[^\W\d_])", "space": r"(?<=[^\S\n\r])", "edge": r"(?<![^\n\r])",
           "sign": r"(?<=[^\w\s]|_)"}
_AFTER = {"digit": r"(?=\d)", "letter": r"(?=[^\W\d_])", "space": r"(?=[^\S\n\r])", "edge": r"(?![^\n\r])",
          "sign": r"(?=[^\w\s]|_)"}


def _side(char: str) -> str:
    if char in {"", "\n", "\r"}:
        return "edge"
    if char.isspace():
        return "space"
    if char.isdigit():
        return "digit"
    if char.isalpha():
        return "letter"
    return "sign"


_SIDE = {"digit": "a digit", "letter": "a letter", "space": "a blank", "edge": "the edge of a line or cell",
         "sign": "a sign"}


@cache
def _pattern(sign: str, before: str, after: str) -> re.Pattern:
    return re.compile(_BEFORE[before] + re.escape(sign) + _AFTER[after])


def sign_name(sign: str) -> str:
    return f"U+{ord(sign):04X} {unicodedata.name(sign, '?')}"


#: a character's UTF-8 bytes read as Windows-1252 (Latin-1 where it leaves a byte undefined):
#: ``Ã©`` for ``é``, ``Â°`` for ``°``, ``â€™`` for ``’`` (red team 20C)
BROKEN_ENCODING = "broken encoding"
_READ_AS = {byte: bytes([byte]).decode("cp1252", "ignore") or chr(byte) for byte in range(0x80, 0x100)}
_BYTE = {char: byte for byte, char in _READ_AS.items()}
_MOJIBAKE = re.compile("[\u00c2-\u00f4][" + re.escape("".join(_READ_AS[b] for b in range(0x80, 0xC0))) + "]{1,3}")
#: every class of signs and the broken encoding: what a text is judged on
ALL = (*CLASSES, BROKEN_ENCODING)


def _broken(m: re.Match) -> tuple[str, str] | None:
    """The character a run of :data:`_MOJIBAKE` is in a broken encoding, and that broken form, or None."""
    raw = bytes(_BYTE[char] for char in m.group())
    size = 2 if raw[0] < 0xE0 else 3 if raw[0] < 0xF0 else 4
    try:
        return raw[:size].decode("utf-8"), m.group()[:size]
    except UnicodeDecodeError:
        return None


def repaired(text: str) -> str:
    """``text`` with each character in a broken encoding written as itself (``rÃ©gion``: ``région``)."""
    def repair(m: re.Match) -> str:
        found = _broken(m)
        return m.group() if found is None else found[0] + m.group()[len(found[1]):]

    return _MOJIBAKE.sub(repair, text)


def broken_encoding(text: str) -> str:
    """Why ``text`` writes a character both as itself and as its UTF-8 bytes read as Latin-1 or
    Windows-1252, which a checker takes for noise (a bit each), or "" (a text wholly in one way passes)."""
    seen: set[str] = set()
    for m in _MOJIBAKE.finditer(text):
        found = _broken(m)
        if found is None:
            continue
        char, broken = found
        if broken not in seen and char in text.replace(broken, ""):
            return (f"{sign_name(char)} written both as itself and as {broken!r} (its UTF-8 bytes read as Latin-1), "
                    "which a checker takes for noise")
        seen.add(broken)
        if len(seen) > 64:
            break
    return ""


def mixed_signs(text: str, kinds: tuple[str, ...] = ALL) -> str:
    """Why ``text`` writes a class of look-alike signs (of ``kinds``) in two ways in one context,
    or a character both as itself and in a broken encoding (:func:`broken_encoding`, when ``kinds``
    holds it), or "" (one way). A table's column is judged as its distinct cells joined by line breaks."""
    contexts: dict[tuple[str, str, str], None] = {}
    for m in _NON_ASCII.finditer(text):
        start = m.start()
        before = _side(text[start - 1] if start else "")
        after = _side(text[start + 1] if start + 1 < len(text) else "")
        kind = next(k for k, signs in CLASSES.items() if m.group() in signs)
        if kind in kinds:
            contexts[(kind, before, after)] = None
        if len(contexts) > 64:
            break
    for kind, before, after in contexts:
        used = [sign for sign in CLASSES[kind] if _pattern(sign, before, after).search(text)]
        if len(used) > 1:
            where = f"between {_SIDE[before]} and {_SIDE[after]}"
            return (f"{_PLURAL[kind]} written in {len(used)} ways {where} ({' and '.join(map(sign_name, used[:3]))}), which a "
                    "page draws alike")
    return broken_encoding(text) if BROKEN_ENCODING in kinds else ""


#: what a program's whole text is judged on: its quotes and minus signs are syntax beside the
#: typographic ones of its comments (``f(a, 'b')  # the ‘b’ column``), a space is a space; its
#: comments and strings are judged on every class (:mod:`.program_text`)
IN_CODE = ("space",)


def sign_rules(text: str, kinds: tuple[str, ...] = ALL) -> list[tuple[str, Status, str]]:
    """The ``hidden-text`` finding of a text file, a program (``kinds``: :data:`IN_CODE`) or a
    notebook writing look-alike signs two ways in one context."""
    why = mixed_signs(text, kinds)
    if not why:
        return []
    return [("hidden-text", Status.FAIL, f"{why}: each can carry a bit past the checker; write each the same way "
                                         "throughout (one apostrophe, one dash, one kind of space in each place)")]
