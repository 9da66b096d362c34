"""The text of a delivered block: decoded from the declared encoding, or refused with the reason.

Moved out of :mod:`.parse` (which is at its size limit) with the checks added by red team 14B.
Every check here runs only on a block holding a non-ASCII byte: an ASCII block (nearly all of a
claims file) is returned as it is after one ``bytes.isascii`` call.

What is refused, and why no delivery holds it:

* text not valid in the declared encoding;
* text that decodes to a C1 control character (U+0080 to U+009F): cp1252 or UTF-8 read as latin-1;
* declared latin-1, a value whose every non-ASCII byte is part of a UTF-8 multi-byte sequence
  (:func:`_utf8_values`): a UTF-8 file (``dosé`` read as latin-1 is ``dosÃ©``), or UTF-8 lines or
  values mixed into latin-1 ones (red teams 14B and 15A). A value holding a byte that no UTF-8
  sequence explains (``é`` alone, E9) is latin-1: its ``Â°`` loads as written;
* a UTF-8 byte order mark (EF BB BF) after the header: two files concatenated, the second one's
  mark glued to the first value of its header or first row (red team 14B).
"""

from __future__ import annotations

import codecs
import re

import numpy as np

from ..errors import InvalidInput

_C1_UTF8 = re.compile(rb"\xc2[\x80-\x9f]")
_C1_TEXT = re.compile("[\x80-\x9f]")
_BOM = codecs.BOM_UTF8


def line_of(block: bytes, offset: int, first_line: int) -> int:
    return first_line + block.count(b"\n", 0, offset)


def decode_block(block: bytes, encoding: str, first_line: int = 0) -> bytes:
    """``block`` as UTF-8 with ``\n`` line ends (what the polars CSV reader expects); raises
    :class:`InvalidInput` for any text the module's docstring lists. A lone carriage return is
    kept: the parser quarantines its line (a control character)."""
    if not block.isascii():
        codec = codecs.lookup(encoding).name
        if codec in ("iso8859-1", "utf-8") and (at := block.find(_BOM)) >= 0:
            raise InvalidInput(
                f"line {line_of(block, at, first_line)}: a UTF-8 byte order mark (bytes EF BB BF) "
                "inside the file, where only the first line may start with one: files were "
                "probably concatenated; deliver each file on its own")
        if codec == "iso8859-1":
            _check_latin1(block, encoding, first_line)
        elif codec == "utf-8" and (found := _C1_UTF8.search(block)):
            _refuse_c1(block, found.start(), f"U+00{block[found.start() + 1]:02X}", encoding, first_line)
        try:
            text = block.decode(encoding)
        except UnicodeDecodeError as exc:
            raise InvalidInput(
                f"line {line_of(block, exc.start, first_line)}: file is not valid {encoding} text "
                f"({exc.reason}): convert it to {encoding} or set the delivery's encoding "
                "(ingest.encoding)") from None
        if codec not in ("iso8859-1", "utf-8") and (char := _C1_TEXT.search(text)):
            line = first_line + text.count("\n", 0, char.start())
            raise InvalidInput(_c1_message(line, f"U+{ord(char.group()):04X}", encoding))
        block = text.encode("utf-8")
    if b"\r" in block:
        block = block.replace(b"\r\n", b"\n")
    return block


def _check_latin1(block: bytes, encoding: str, first_line: int) -> None:
    codes = np.frombuffer(block, dtype=np.uint8)
    high = np.flatnonzero(codes >= 0x80)
    c1 = high[codes[high] < 0xA0]  # bytes 0x80-0x9F: C1 controls in latin-1
    if c1.size:
        _refuse_c1(block, int(c1[0]), f"byte 0x{block[c1[0]]:02X}", encoding, first_line)
    found = _utf8_values(codes, high)
    if found is None:
        return
    at, mixed = found
    where = f"line {line_of(block, at, first_line)}"
    size = 2 + (block[at] >= 0xE0) + (block[at] >= 0xF0)
    seen = (f"bytes {block[at:at + size].hex(' ').upper()} are '{block[at:at + size].decode('utf-8')}' "
            f"in UTF-8, which {encoding} reads as '{block[at:at + size].decode('latin-1')}'")
    if mixed:
        raise InvalidInput(
            f"{where}: {seen}, and every accented letter of the value is such a UTF-8 sequence, "
            f"while other values are {encoding}: the file mixes UTF-8 text into {encoding} text; "
            f"convert every line to {encoding} (a {encoding} value whose only accent is Â or Ã "
            "before a symbol, such as 'Â°', reads the same as UTF-8: write it otherwise)")
    raise InvalidInput(
        f"{where}: {seen}: the text is UTF-8 (every accented letter is a UTF-8 multi-byte sequence) "
        f"but the delivery is declared {encoding}, as which it would load as mojibake (É as Ã‰); "
        "convert the file to latin-1 or set the encoding (ingest.encoding: utf-8)")


def _utf8_values(codes: np.ndarray, high: np.ndarray) -> tuple[int, bool] | None:
    """The offset of the first UTF-8 sequence of the first value (field) of ``codes`` that reads
    as UTF-8 text, and whether another value is latin-1; ``None`` when every value is latin-1.

    A value reads as UTF-8 when each of its non-ASCII bytes belongs to a valid UTF-8 multi-byte
    sequence and one of them is the evidence of one: any sequence but a letter of latin-1 from Æ
    to ß followed by a no-break space or a ``»`` (C6-DF then A0 or BB), which French latin-1 text
    writes (``CAFÉ\u00a0:``, ``«\u00a0NOËL\u00a0»``) and which UTF-8 reads as rare letters (ɠ, λ,
    Р). ``Â°`` or ``Ã©`` alone in a value are UTF-8 (``°``, ``é``): the bytes are the same, and
    latin-1 text does not put a symbol after Â or Ã. Only the positions ``high`` (the non-ASCII
    bytes, few in a delivery) are looked at, with vectorised tests; the C1 bytes 80-9F were
    refused before, so continuation bytes here are A0-BF."""
    if not high.size:
        return None
    padded = np.concatenate((codes, np.zeros(3, dtype=np.uint8)))
    lead = padded[high]
    follow = [padded[high + k] for k in (1, 2, 3)]
    cont = [(f & 0xC0) == 0x80 for f in follow]
    two = (lead >= 0xC2) & (lead <= 0xDF) & cont[0]
    three = ((lead & 0xF0) == 0xE0) & cont[0] & cont[1] & ~((lead == 0xED) & (follow[0] >= 0xA0))
    four = (lead >= 0xF0) & (lead <= 0xF4) & cont[0] & cont[1] & cont[2] & ~((lead == 0xF4) & (follow[0] >= 0x90))
    starts = two | three | four
    if not starts.any():
        return None
    inside = np.concatenate((high[starts] + 1, high[three | four] + 2, high[four] + 3))
    stray = ~starts & ~np.isin(high, inside, assume_unique=False)  # a byte no sequence explains
    ambiguous = two & (lead >= 0xC6) & ((follow[0] == 0xA0) | (follow[0] == 0xBB))
    evidence = high[starts & ~ambiguous]
    if not evidence.size:
        return None
    ends = np.flatnonzero((codes == 0x0A) | (codes == 0x3B))  # the ends of the values
    latin1_values = np.unique(np.searchsorted(ends, high[stray]))
    utf8 = ~np.isin(np.searchsorted(ends, evidence), latin1_values)
    if not utf8.any():
        return None
    return int(evidence[np.argmax(utf8)]), bool(latin1_values.size)


def _refuse_c1(block: bytes, offset: int, what: str, encoding: str, first_line: int) -> None:
    raise InvalidInput(_c1_message(line_of(block, offset, first_line), what, encoding))


def _c1_message(line: int, what: str, encoding: str) -> str:
    return (f"line {line}: {what} decodes to a C1 control character in {encoding}, which no SNDS "
            "text holds: the file is probably cp1252 (Windows) or UTF-8 text declared as "
            f"{encoding}; convert it or set the delivery's encoding (ingest.encoding)")


#: Invisible format characters (soft hyphen, zero-width spaces and joiners, direction marks and
#: overrides, word joiners, the BOM as a zero-width no-break space): a value holding one shows the
#: same as a value without it, but is another value. Two identifiers equal to the eye then join
#: nothing, and a repeated key slipped past the duplicate check (red team 14B). Found in the UTF-8
#: text of a decoded block, whatever the delivery's encoding (latin-1 has the soft hyphen, AD).
_INVISIBLE_UTF8 = re.compile(rb"\xc2\xad|\xe2\x80[\x8b-\x8f\xaa-\xae]|\xe2\x81[\xa0-\xa4]|\xef\xbb\xbf")
INVISIBLE = "[\u00ad\u200b-\u200f\u202a-\u202e\u2060-\u2064\ufeff]"


def has_invisible(block: bytes) -> bool:
    """True when the decoded (UTF-8) ``block`` holds an invisible format character."""
    return not block.isascii() and _INVISIBLE_UTF8.search(block) is not None
