"""The text of a delivered block: decoded from the declared encoding, or refused with the reason.

Moved out of :mod:`.parse` (which is at its size limit) with the checks added by red team 14B.
Every check here runs only on a block holding a non-ASCII byte: an ASCII block (nearly all of a
claims file) is returned as it is after one ``bytes.isascii`` call.

What is refused, and why no delivery holds it:

* text not valid in the declared encoding;
* text that decodes to a C1 control character (U+0080 to U+009F): cp1252 or UTF-8 read as latin-1;
* declared latin-1, a block whose non-ASCII bytes all form valid UTF-8 sequences (a UTF-8 file);
* declared latin-1, a UTF-8 encoded letter of latin-1 (bytes C2 or C3 followed by A0 to BF: ``è``
  is C3 A8, read as latin-1 ``Ã¨``) in a block that also holds real latin-1 letters: a file
  mixing UTF-8 lines into latin-1 ones, whose UTF-8 lines loaded as mojibake (red team 14B);
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
    c1 = np.flatnonzero((codes & 0xE0) == 0x80)  # bytes 0x80-0x9F: C1 controls in latin-1
    if c1.size:
        _refuse_c1(block, int(c1[0]), f"byte 0x{block[c1[0]]:02X}", encoding, first_line)
    try:
        block.decode("utf-8")
    except UnicodeDecodeError:
        _check_mixed(block, codes, encoding, first_line)
        return
    offset = next(i for i, byte in enumerate(block) if byte >= 0x80)
    raise InvalidInput(
        f"line {line_of(block, offset, first_line)}: the text is UTF-8 (every accented letter is "
        f"a UTF-8 multi-byte sequence) but the delivery is declared {encoding}: read as {encoding} "
        "it would load as mojibake (É as Ã‰); convert the file to latin-1 or set the encoding "
        "(ingest.encoding: utf-8)")


def _check_mixed(block: bytes, codes: np.ndarray, encoding: str, first_line: int) -> None:
    """Refuse a latin-1 block holding a UTF-8 encoded latin-1 letter: Â or Ã (C2, C3) followed
    by a byte A0 to BF (the C1 bytes 80 to 9F are refused before). French latin-1 text does not
    put a symbol or a non-breaking space right after Â or Ã; UTF-8 writes à to ÿ that way. Â and
    Ã are rare, so the second byte is looked at only where one occurs."""
    leads = np.flatnonzero((codes[:-1] & 0xFE) == 0xC2)
    if not leads.size:
        return
    hits = leads[(codes[leads + 1] & 0xE0) == 0xA0]
    if hits.size:
        at = int(hits[0])
        letter = block[at:at + 2].decode("utf-8")
        raise InvalidInput(
            f"line {line_of(block, at, first_line)}: bytes {block[at]:02X} {block[at + 1]:02X} are "
            f"'{letter}' in UTF-8, which {encoding} reads as '{block[at:at + 2].decode('latin-1')}': "
            f"the file mixes UTF-8 text into {encoding} text; convert every line to {encoding}")


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
