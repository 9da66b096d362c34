"""What a figure carries beyond its pixels: the ``embedded-data`` rule for PNG and JPEG images and
PDFs (tables and workbooks: :mod:`.containers`).

A reviewer sees a figure's pixels. Every byte of the file is accounted for: a PNG's chunks and its
image data (exactly the rows its header describes), a JPEG's segments up to its end marker, a PDF's
one revision and the objects its pages refer to. Text the image carries is bounded and searched for
literal rows and identifiers. Anything else fails (a checker can approve it with a comment).
"""

from __future__ import annotations

import re
import struct
import zlib
from collections import Counter
from pathlib import Path

from .containers import fail, text_findings
from .result import Finding

#: bytes of text an image may carry (matplotlib writes its name and version: about 60). Split
#: into short chunks, 700 bytes of rows passed a bound of 1 KiB: no line looked like a table
MAX_IMAGE_TEXT = 256

_PNG_CRITICAL = {b"IHDR", b"PLTE", b"IDAT", b"IEND"}
_PNG_TEXT = {b"tEXt", b"zTXt", b"iTXt"}
_PNG_ANCILLARY = {b"gAMA", b"cHRM", b"sRGB", b"iCCP", b"pHYs", b"sBIT", b"bKGD", b"hIST", b"tRNS", b"tIME",
                  b"sPLT", b"eXIf", b"acTL", b"fcTL", b"fdAT", b"cICP", b"mDCv", b"cLLi"}
#: ancillary PNG chunks (colour profiles, EXIF) above this are a payload
MAX_PNG_ANCILLARY = 16 * 1024
#: JPEG application segments (EXIF, ICC, XMP) above this are a payload
MAX_JPEG_APP = 16 * 1024
_PDF_ACTIVE = (b"/EmbeddedFile", b"/EmbeddedFiles", b"/EF", b"/FileAttachment", b"/JavaScript", b"/JS", b"/Launch",
               b"/RichMedia", b"/GoToE", b"/SubmitForm")


def _inflate(stream: bytes, limit: int = 1 << 20) -> bytes | None:
    """A whole zlib stream, or None when it is broken, longer than ``limit``, or followed by bytes
    (every reader stops at the stream's end: 700 bytes of rows after a 10-byte text passed)."""
    inflater = zlib.decompressobj()
    try:
        out = inflater.decompress(stream, limit)
    except zlib.error:
        return None
    return out if inflater.eof and not inflater.unused_data and not inflater.unconsumed_tail else None


def _png_text(kind: bytes, body: bytes) -> str | None:
    """The text of a tEXt, zTXt or iTXt chunk (keyword included), None when its compressed text
    does not account for all its bytes."""
    if kind == b"zTXt":
        keyword, _, rest = body.partition(b"\x00")
        text = _inflate(rest[1:])
        return None if text is None else (keyword + b"\x00" + text).decode("utf-8", "replace")
    if kind == b"iTXt":
        keyword, _, rest = body.partition(b"\x00")
        flag, rest = rest[:1], rest[2:]
        for _ in range(2):
            rest = rest.partition(b"\x00")[2]
        text = _inflate(rest) if flag == b"\x01" else rest
        return None if text is None else (keyword + b"\x00" + text).decode("utf-8", "replace")
    return body.decode("latin-1")


#: the exact or largest body of the fixed-layout ancillary chunks (a longer one carries more)
_PNG_FIXED = {b"gAMA": 4, b"cHRM": 32, b"sRGB": 1, b"pHYs": 9, b"sBIT": 4, b"bKGD": 6, b"tIME": 7, b"cICP": 4,
              b"mDCv": 24, b"cLLi": 8, b"tRNS": 256, b"hIST": 512}
#: chunks no figure needs: frames of an animation (a checker looks at one picture) and suggested
#: palettes, which no viewer shows
_PNG_REFUSED = {b"acTL", b"fcTL", b"fdAT", b"sPLT"}


def _png_pixels(header: bytes, stream: bytes) -> list[Finding]:
    """The image data inflate to exactly the rows IHDR describes, and end there: bytes after the
    zlib stream or rows beyond the image's height are dropped by every viewer."""
    if len(header) != 13:
        return [fail("the PNG's header (IHDR) is malformed")]
    width, height, depth, colour, _, _, interlace = struct.unpack(">IIBBBBB", header)
    channels = {0: 1, 2: 3, 3: 1, 4: 2, 6: 4}.get(colour)
    if channels is None or not width or not height:
        return [fail("the PNG's header (IHDR) is malformed")]
    passes = [(0, 0, 8, 8), (4, 0, 8, 8), (0, 4, 4, 8), (2, 0, 4, 4), (0, 2, 2, 4), (1, 0, 2, 2), (0, 1, 1, 2)] \
        if interlace else [(0, 0, 1, 1)]
    expected = 0
    for x0, y0, dx, dy in passes:
        w, h = (width - x0 + dx - 1) // dx, (height - y0 + dy - 1) // dy
        if w and h:
            expected += h * (1 + (w * channels * depth + 7) // 8)
    pixels = _inflate(stream, expected + 1)
    if pixels is None or len(pixels) != expected:
        return [fail("the PNG's image data hold more than its pixels (bytes after the compressed rows, or rows "
                      "beyond its height): data hidden from the checker's view")]
    return []


def _png(data: bytes) -> list[Finding]:
    pos, text, ancillary = 8, 0, 0
    words, header, stream = [], b"", []
    while pos + 12 <= len(data):
        (length,) = struct.unpack(">I", data[pos:pos + 4])
        kind = data[pos + 4:pos + 8]
        body = data[pos + 8:pos + 8 + length]
        pos += 12 + length
        if kind == b"IEND":
            trailing = len(data) - pos
            if trailing > 0:
                return [fail(f"{trailing} bytes after the end of the image")]
            return (_png_pixels(header, b"".join(stream)) + _png_extras(text, ancillary)
                    + text_findings("\n".join(words)))
        if kind == b"IHDR":
            header = body
        elif kind == b"IDAT":
            stream.append(body)
        elif kind in _PNG_TEXT:
            words.append(_png_text(kind, body))
            if words[-1] is None:
                return [fail(f"a PNG {kind.decode()} chunk holds bytes beyond its compressed text")]
            text += len(words[-1])
        elif kind in _PNG_REFUSED:
            return [fail(f"a PNG {kind.decode()} chunk (animation frames or a suggested palette), which a checker "
                          "looking at the figure does not see")]
        elif kind not in _PNG_CRITICAL:
            if kind not in _PNG_ANCILLARY:
                return [fail(f"a PNG chunk of an unknown type ({kind.decode('latin-1')!r}, {length} bytes)")]
            if kind == b"iCCP" and not _icc_profile(body):
                return [fail("the PNG's colour profile (iCCP) is not an ICC profile, or holds more than it")]
            if length > _PNG_FIXED.get(kind, length):
                return [fail(f"a PNG {kind.decode()} chunk of {length} bytes (at most {_PNG_FIXED[kind]})")]
            if kind == b"eXIf":  # EXIF is text and numbers a viewer does not show: counted as text
                words.append(body.decode("latin-1"))
                text += length
            ancillary += length
    return [fail("the PNG has no end (IEND): its bytes cannot all be accounted for")]


def _icc_profile(body: bytes) -> bool:
    """An iCCP chunk: a name, a compression byte, then a zlib stream of an ICC profile (``acsp``)
    that ends where the chunk ends, as long as the profile says it is."""
    profile = _inflate(body.partition(b"\x00")[2][1:])
    return profile is not None and profile[36:40] == b"acsp" and struct.unpack(">I", profile[:4])[0] == len(profile)


def _png_extras(text: int, ancillary: int) -> list[Finding]:
    if text > MAX_IMAGE_TEXT:
        return [fail(f"{text} bytes of text inside the image (at most {MAX_IMAGE_TEXT})")]
    if ancillary > MAX_PNG_ANCILLARY:
        return [fail(f"{ancillary} bytes of ancillary PNG chunks (at most {MAX_PNG_ANCILLARY})")]
    return []


#: the JPEG markers with a segment: frames (SOF), Huffman and arithmetic tables, quantisation
#: tables, restart interval, scans, line count, expansion, application segments and comments.
#: Other markers (JPG0-13...) are skipped by readers: anything may hide in them
_JPEG_SEGMENTS = frozenset(range(0xC0, 0xF0)) - {0xC8, 0xD0, 0xD1, 0xD2, 0xD3, 0xD4, 0xD5, 0xD6, 0xD7, 0xD8, 0xD9} | {0xFE}
#: bytes of tables (quantisation, Huffman...) in a JPEG: libjpeg writes under 1 KiB, even progressive
MAX_JPEG_TABLES = 2048
#: what each application segment a camera, libjpeg or Pillow writes starts with: any other is
#: skipped by every viewer (700 bytes of rows in an APP9 passed)
_JPEG_APPLICATIONS = {0xE0: (b"JFIF\x00", b"JFXX\x00"), 0xE1: (b"Exif\x00", b"http://ns.adobe.com/xap/1.0/\x00"),
                      0xE2: (b"ICC_PROFILE\x00", b"MPF\x00"), 0xED: (b"Photoshop 3.0\x00",), 0xEE: (b"Adobe",)}
_IMAGE_SIGNATURES = (b"\xff\xd8\xff", b"\x89PNG")


def _jpeg(data: bytes) -> list[Finding]:
    """Every segment of a JPEG, to its end marker, is counted: application segments and comments
    anywhere (between the scans of a progressive JPEG too), and tables. Before, only the segments
    before the first scan were, and comments and application segments were bounded but not read:
    700 bytes of rows in a comment, in an APP segment, in a JPG0 segment or in a quantisation table
    that a later one replaces, or a second picture as an EXIF thumbnail, passed."""
    pos, comments, application, tables = 2, 0, 0, 0
    words, quantisation, applications, frame = [], set(), set(), False
    while pos + 2 <= len(data) and data[pos] == 0xFF:
        marker = data[pos + 1]
        if marker == 0xFF:  # fill byte
            pos += 1
            continue
        if marker == 0xD9:
            tail = data[pos + 2:].rstrip(b"\x00")
            out = [fail(f"{len(tail)} bytes after the end of the image")] if tail else []
            if comments > MAX_IMAGE_TEXT:
                out.append(fail(f"{comments} bytes of comments inside the image (at most {MAX_IMAGE_TEXT})"))
            if application > MAX_JPEG_APP:
                out.append(fail(f"{application} bytes of application segments (EXIF, XMP...) inside the image "
                                 f"(at most {MAX_JPEG_APP})"))
            if tables > MAX_JPEG_TABLES:
                out.append(fail(f"{tables} bytes of JPEG tables (at most {MAX_JPEG_TABLES}): data hidden from the "
                                 "checker's view"))
            return out + text_findings("\n".join(words))
        if marker not in _JPEG_SEGMENTS:
            return [fail(f"a JPEG segment of an unknown kind (0xFF{marker:02X}), which readers skip")]
        if pos + 4 > len(data):
            break
        (length,) = struct.unpack(">H", data[pos + 2:pos + 4])
        body = data[pos + 4:pos + 2 + length]
        if any(signature in body for signature in _IMAGE_SIGNATURES):
            return [fail("a JPEG segment holds another image (a thumbnail a checker does not see)")]
        if marker == 0xFE:
            comments += length
            words.append(body.decode("latin-1"))
        elif 0xE0 <= marker <= 0xEF:
            application += length
            if not body.startswith(_JPEG_APPLICATIONS.get(marker, (b"\x00\x00",))):
                return [fail(f"a JPEG APP{marker - 0xE0} segment of no known kind ({body[:12]!r}), which no "
                              "viewer shows")]
            kind = next(k for k in _JPEG_APPLICATIONS[marker] if body.startswith(k))
            # one segment of each kind, before the frame: EXIF is one segment, and a second one, or
            # one between the scans of a progressive JPEG, is read by nobody (rows split over four
            # EXIF segments between the scans passed); an ICC profile alone spans numbered segments
            if kind != b"ICC_PROFILE\x00" and (kind in applications or frame):
                return [fail(f"a second JPEG {kind[:12].decode('latin-1').rstrip(chr(0))} segment, or one after the "
                              "image's frame: read by nobody")]
            applications.add(kind)
            if not body.startswith(b"ICC_PROFILE\x00"):  # EXIF, XMP: text and numbers no viewer shows
                words.append(body.decode("latin-1"))
        else:
            tables += length
            frame = frame or marker in (0xC0, 0xC1, 0xC2, 0xC3, 0xC5, 0xC6, 0xC7, 0xC9, 0xCA, 0xCB, 0xCD, 0xCE, 0xCF)
            problem = _jpeg_table(marker, body, quantisation)
            if problem:
                return [fail(problem)]
        pos += 2 + length
        if marker == 0xDA:  # entropy-coded data: up to the next marker that is not a restart or a stuffed 0xFF
            while (pos := data.find(b"\xff", pos)) >= 0 and pos + 1 < len(data) and (
                    data[pos + 1] == 0 or 0xD0 <= data[pos + 1] <= 0xD7):
                pos += 2
            if pos < 0:
                break
    return [fail("the JPEG has no end marker: its bytes cannot all be accounted for")]


def _jpeg_table(marker: int, body: bytes, quantisation: set[int]) -> str | None:
    """A quantisation table (DQT) is defined once per id, a Huffman table (DHT) lists distinct
    symbols, and each segment is exactly its tables: a second DQT of the same id, which replaces
    the first unseen, carried 700 bytes of rows."""
    pos = 0
    while pos < len(body) and marker in (0xDB, 0xC4):
        if marker == 0xDB:
            table = body[pos]
            if table & 0x0F in quantisation or table >> 4 > 1:
                return "a JPEG quantisation table defined twice (the first is read by nobody)"
            quantisation.add(table & 0x0F)
            pos += 1 + 64 * (1 + (table >> 4))
        else:
            count = sum(body[pos + 1:pos + 17])
            symbols = body[pos + 17:pos + 17 + count]
            if len(set(symbols)) != count:
                return "a JPEG Huffman table lists a symbol twice or is cut short"
            pos += 17 + count
    if pos != len(body) and marker in (0xDB, 0xC4):
        return "a JPEG table segment holds more than its tables"
    return None


_PDF_NAME_ESCAPE = re.compile(rb"#([0-9A-Fa-f]{2})")
_PDF_OBJSTM = re.compile(rb"<<(?:(?!>>).){0,2000}?/ObjStm(?:(?!stream).){0,2000}?stream\r?\n", re.DOTALL)
#: bytes of object streams the gate inflates per PDF to read the dictionaries they hide
MAX_PDF_INFLATE = 64 * 1024 * 1024


def _pdf_text(data: bytes) -> bytes:
    """The PDF's bytes with its object streams inflated (where dictionaries can hide, compressed)
    and ``#xx`` escapes in names decoded (``/EmbeddedFil#65`` is ``/EmbeddedFile``)."""
    parts = [data]
    budget = MAX_PDF_INFLATE
    for match in _PDF_OBJSTM.finditer(data):
        inflater = zlib.decompressobj()
        try:
            inflated = inflater.decompress(data[match.end():match.end() + budget], budget)
        except zlib.error:
            continue
        budget -= len(inflated)
        parts.append(inflated)
        if budget <= 0:
            break
    return _PDF_NAME_ESCAPE.sub(lambda m: bytes([int(m.group(1), 16)]), b"\n".join(parts))


def _pdf(data: bytes) -> list[Finding]:
    out = []
    text = _pdf_text(data)
    active = sorted({name.decode() for name in _PDF_ACTIVE if re.search(re.escape(name) + rb"(?![A-Za-z])", text)})
    if active:
        out.append(fail(f"the PDF carries {', '.join(active)} (attached files or scripts a checker does not see): "
                         "export the figure alone"))
    end = data.rfind(b"%%EOF")
    if end >= 0 and data[end + 5:].strip():
        out.append(fail(f"{len(data[end + 5:].strip())} bytes after the end of the PDF"))
    if data.count(b"%%EOF") > 1 or data.count(b"startxref") > 1:
        # an incremental update: the objects it replaces are read by nobody (matplotlib and R
        # write one revision)
        out.append(fail("the PDF holds more than one revision (an incremental update): the objects it replaces "
                         "are not shown; export the figure again"))
    orphan = _unreferenced_object(data, text)
    if orphan:
        out.append(fail(f"the PDF holds object {orphan} that nothing refers to: it is read by nobody"))
    return out


_PDF_OBJECT = re.compile(rb"(?<![0-9])([0-9]{1,10}) ([0-9]{1,5}) obj\b")
_PDF_REFERENCE = re.compile(rb"(?<![0-9])([0-9]{1,10}) ([0-9]{1,5}) R\b")


def _unreferenced_object(data: bytes, text: bytes) -> str | None:
    """An object nothing refers to (the trailer refers to the catalogue): 700 bytes of rows in a
    stream of their own, referred to by no page, passed. Cross-reference and object streams are
    found through the cross-reference, not referred to; the objects an object stream holds are."""
    starts = list(_PDF_OBJECT.finditer(data))
    referenced = Counter(m.group(0)[:-2] for m in _PDF_REFERENCE.finditer(text))
    for i, match in enumerate(starts):
        end = data.find(b"endobj", match.end(), starts[i + 1].start() if i + 1 < len(starts) else len(data))
        body = data[match.end():end if end >= 0 else len(data)]
        own = Counter(m.group(0)[:-2] for m in _PDF_REFERENCE.finditer(body))
        name = match.group(0)[:-4]
        if re.search(rb"/Type\s*/(?:XRef|ObjStm)\b", body[:2000]):
            continue
        if referenced[name] - own[name] <= 0:
            return name.decode()
    for match in _PDF_OBJSTM.finditer(data):
        header = re.search(rb"/N\s+([0-9]{1,6})", match.group(0))
        inflated = _inflate_prefix(data[match.end():match.end() + (1 << 22)])
        numbers = inflated.split()[:2 * int(header.group(1)):2] if header else []
        for number in numbers:
            if referenced[number + b" 0"] <= 0:
                return number.decode(errors="replace") + " 0"
    return None


def _inflate_prefix(stream: bytes) -> bytes:
    try:
        return zlib.decompressobj().decompress(stream, 1 << 16)
    except zlib.error:
        return b""


def image_findings(data: bytes, kind: str) -> list[Finding]:
    """Bytes of a PNG or JPEG image outside its pixels (``kind``: png or jpeg)."""
    if kind == "png":
        return _png(data) if data.startswith(b"\x89PNG\r\n\x1a\n") else [fail("not a PNG image")]
    return _jpeg(data) if data.startswith(b"\xff\xd8\xff") else [fail("not a JPEG image")]


def check_figure(path: Path, name: str, max_bytes: int) -> list[Finding]:
    """Bytes of a PNG, JPEG or PDF figure outside what a viewer shows."""
    if path.stat().st_size > max_bytes:
        return [fail(f"a figure over {max_bytes} bytes")]
    data = path.read_bytes()
    ext = Path(name).suffix.lower()
    if ext == ".png":
        return _png(data)
    if ext in {".jpg", ".jpeg"}:
        return _jpeg(data)
    if ext == ".pdf":
        return _pdf(data)
    return []
