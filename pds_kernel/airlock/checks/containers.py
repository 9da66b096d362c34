"""What a file carries beyond what a checker sees: the ``embedded-data`` rule for containers.

A reviewer sees a table's cells and a figure's pixels. The same file can carry more, which leaves
with it unseen: a Parquet file's key-value metadata, extra parts of an XLSX workbook (custom XML,
comments, embedded objects, macros, unused shared strings), bytes after a PNG's ``IEND`` or a
JPEG's end marker, PNG text chunks, PDF attachments and scripts. Each fails (a checker can approve
it with a comment); the gate never trusts a container's extra room.
"""

from __future__ import annotations

import json
import re
import struct
import zipfile
import zlib
from collections import Counter
from pathlib import Path

from . import content
from .result import Finding, Status

#: bytes of text a container may carry beyond its cells (titles, creator, software...)
MAX_EXTRA_BYTES = 4096
#: bytes of text an image may carry (matplotlib writes its name and version: about 60)
MAX_IMAGE_TEXT = 1024
#: per column, bytes of Parquet schema metadata (pandas' and Arrow's descriptions of a column)
PARQUET_BYTES_PER_COLUMN = 1024
PARQUET_KEYS = frozenset({b"pandas", b"ARROW:schema"})

#: the parts of a workbook written by Excel, LibreOffice, openpyxl or pandas, and their size bound
#: (no printer settings: 16 KiB of binary no checker can read; no calculation chain: it lists the
#: cells holding formulas, which are refused; names are matched
#: whole, in ASCII: ``\d`` and ``\w`` also match other scripts' digits and letters,
#: and ``_rels/<any name>.rels`` let a workbook carry any number of 16 KiB parts nobody reads)
_XLSX_PARTS = [
    (re.compile(r"^\[Content_Types\]\.xml$"), 64 * 1024),
    (re.compile(r"^_rels/\.rels$"), 16 * 1024),
    (re.compile(r"^xl/_rels/workbook\.xml\.rels$"), 16 * 1024),
    (re.compile(r"^xl/worksheets/_rels/sheet[0-9]+\.xml\.rels$"), 4 * 1024),
    (re.compile(r"^docProps/(?:app|core)\.xml$"), MAX_EXTRA_BYTES),
    (re.compile(r"^xl/workbook\.xml$"), 16 * 1024),
    (re.compile(r"^xl/styles\.xml$"), 64 * 1024),
    (re.compile(r"^xl/theme/theme1\.xml$"), 64 * 1024),
    (re.compile(r"^xl/worksheets/sheet[0-9]+\.xml$"), None),
    (re.compile(r"^xl/sharedStrings\.xml$"), None),
]
_SI = re.compile(rb"<(?:\w+:)?si[\s>]")
_SHEET_PART = re.compile(r"^xl/worksheets/sheet[0-9]+\.xml$")
_SHEET_RELS_PART = re.compile(r"^xl/worksheets/_rels/sheet[0-9]+\.xml\.rels$")
_FONT = {"rPr", "b", "i", "u", "strike", "sz", "color", "rFont", "family", "scheme", "vertAlign", "charset",
         "outline", "shadow", "condense", "extend"}
#: the elements a sheet and its shared strings may hold: cells and how they look. Anything else
#: (formulas, validation lists, headers and footers, phonetic runs, extensions) carries text or
#: values a reader of the cells does not see.
_SHEET_ELEMENTS = frozenset({
    "worksheet", "sheetPr", "tabColor", "outlinePr", "pageSetUpPr", "dimension", "sheetViews", "sheetView",
    "pane", "selection", "sheetFormatPr", "cols", "col", "sheetData", "row", "c", "v", "is", "t", "r",
    "printOptions", "pageMargins", "pageSetup", "phoneticPr", "mergeCells", "mergeCell", "ignoredErrors",
    "ignoredError", "sst", "si"} | _FONT)

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


def _fail(message: str) -> Finding:
    return Finding("embedded-data", Status.FAIL, message)


def check_parquet(path: Path, columns: int) -> list[Finding]:
    """Key-value metadata of a Parquet file: only pandas' and Arrow's own keys, bounded, without
    identifiers."""
    import pyarrow.parquet as pq

    try:
        metadata = pq.read_metadata(path).metadata or {}
        schema = pq.read_schema(path)
    except Exception as exc:  # the table reader reports unreadable files
        return [_fail(f"the Parquet metadata cannot be read ({type(exc).__name__})")]
    out = []
    others = sorted(k.decode("utf-8", "replace") for k in metadata if k not in PARQUET_KEYS)
    if others:
        out.append(_fail(f"the Parquet file carries metadata a checker does not see ({', '.join(others[:5])}): "
                         "write the table without custom metadata"))
    fields = [f for f in schema if f.metadata]
    if fields:
        out.append(_fail(f"column {fields[0].name!r} carries metadata a checker does not see"))
    size = sum(len(v) for v in metadata.values())
    bound = MAX_EXTRA_BYTES + PARQUET_BYTES_PER_COLUMN * max(columns, 1)
    if size > bound:
        out.append(_fail(f"{size} bytes of Parquet metadata for {columns} columns (at most {bound}): data "
                         "hidden from the checker's view"))
    pandas_meta = metadata.get(b"pandas")
    if pandas_meta:
        try:
            attributes = json.loads(pandas_meta).get("attributes")
        except ValueError:
            attributes = None
        if attributes:
            out.append(_fail("the Parquet file carries DataFrame.attrs, which a checker does not see: clear them"))
        if content.NIR.search(pandas_meta.decode("utf-8", "replace")):
            out.append(_fail("the Parquet metadata holds a NIR-like number"))
    return out


def check_xlsx(path: Path, text_cells: int, shown: frozenset[str] = frozenset()) -> list[Finding]:
    """The parts of a workbook: the standard ones of one sheet, each once, within their size, and
    no shared string that is not one of the texts the checker is shown (``shown``: the sheet's text
    cells and headers), nor more of them than ``text_cells``."""
    out = []
    try:
        with zipfile.ZipFile(path) as archive:
            repeated = sorted(name for name, n in Counter(archive.namelist()).items() if n > 1)
            if repeated:  # a reader opens the last copy of a name: the others are read by nobody
                out.append(_fail(f"the workbook holds {len(repeated)} part name(s) twice ({repeated[0][:80]}): "
                                 "data hidden from the checker's view"))
            if sum(1 for n in archive.namelist() if _SHEET_RELS_PART.fullmatch(n)) > 1:
                out.append(_fail("the workbook holds the relationships of more than one sheet: one table, one sheet"))
            for member in archive.infolist():
                # fullmatch: "$" also matches before a final line feed, and a part named
                # "xl/sharedStrings.xml\n", which no reader opens, passed as the shared strings
                bound = bound_of(member.filename)
                if bound is False:
                    out.append(_fail(f"the workbook holds a part a checker does not see ({member.filename}): "
                                     "save the table alone (pandas to_excel or sdc)"))
                elif bound is not None and member.file_size > bound:
                    out.append(_fail(f"{member.filename} holds {member.file_size} bytes (at most {bound}): "
                                     "data hidden from the checker's view"))
            sheets = [n for n in archive.namelist() if _SHEET_PART.fullmatch(n)]
            if len(sheets) != 1:
                out.append(_fail(f"the workbook holds {len(sheets)} worksheet parts: one table, one sheet (a sheet "
                                 "the workbook does not list is read by nobody)"))
            for part in archive.namelist():
                if bound_of(part) is not False and part.endswith((".xml", ".rels")):
                    out += _comments(archive, part)
                if part.endswith(".rels") and bound_of(part) is not False:
                    out += _relationships(archive, part)
            for part in sheets[:1] + ["xl/sharedStrings.xml"]:
                if part in archive.namelist():
                    out += _xml_elements(archive, part)
            if "docProps/core.xml" in archive.namelist():
                out += _text_findings(" ".join(_xml_text(archive, "docProps/core.xml")))
            if "xl/styles.xml" in archive.namelist():
                out += _number_formats(archive)
            if "xl/sharedStrings.xml" in archive.namelist():
                strings = len(_SI.findall(archive.read("xl/sharedStrings.xml")))
                if strings > text_cells:
                    out.append(_fail(f"the workbook stores {strings} strings but shows {text_cells} text cells: "
                                     "strings a checker does not see"))
                out += _unshown_strings(archive, shown)
    except (zipfile.BadZipFile, OSError, KeyError) as exc:
        out.append(_fail(f"the workbook cannot be inspected ({type(exc).__name__})"))
    return out[:5]


def bound_of(part: str) -> int | None | bool:
    """The size bound of a standard workbook part (None: unbounded, checked otherwise), or False
    for a part that is not one. fullmatch: "$" also matches before a final line feed, and a part
    named "xl/sharedStrings.xml\n", which no reader opens, passed as the shared strings."""
    return next((b for pattern, b in _XLSX_PARTS if pattern.fullmatch(part)), False)


def _local(tag: str) -> str:
    return tag.rsplit("}", 1)[-1]


def _comments(archive: zipfile.ZipFile, part: str) -> list[Finding]:
    """XML comments and processing instructions in a standard part: no reader shows them (the XML
    declaration is not one)."""
    import xml.etree.ElementTree as ET

    parser = ET.XMLPullParser(events=("comment", "pi"))
    with archive.open(part) as fh:
        while chunk := fh.read(1 << 16):
            try:
                parser.feed(chunk)
            except ET.ParseError as exc:
                return [_fail(f"{part} is not well-formed XML ({exc})")]
            for _event, _item in parser.read_events():
                return [_fail(f"{part} holds an XML comment or processing instruction, which a checker "
                              "does not see: save the table alone (pandas to_excel, sdc)")]
    return []


_RELATIONSHIP_ATTRIBUTES = frozenset({"Id", "Type", "Target", "TargetMode"})
_RELATIONSHIP_ID = re.compile(r"rId[0-9]{1,6}")
_RELATIONSHIP_TYPES = ("http://schemas.openxmlformats.org/", "http://schemas.microsoft.com/")


def _relationships(archive: zipfile.ZipFile, part: str) -> list[Finding]:
    """A relationships part holds relationships only, each to a part of the workbook: text, other
    elements or attributes, or targets outside the workbook would carry what no reader shows."""
    import posixpath
    import xml.etree.ElementTree as ET

    hidden = _fail(f"{part} holds more than the workbook's relationships: data hidden from the checker's view")
    try:
        root = ET.fromstring(archive.read(part))
    except ET.ParseError as exc:
        return [_fail(f"{part} is not well-formed XML ({exc})")]
    if _local(root.tag) != "Relationships" or (root.text or "").strip() or root.attrib:
        return [hidden]
    source = posixpath.dirname(posixpath.dirname(part))  # "xl/_rels/workbook.xml.rels" -> "xl"
    names = set(archive.namelist())
    for rel in root:
        target = rel.get("Target", "")
        resolved = posixpath.normpath(target[1:] if target.startswith("/") else posixpath.join(source, target))
        if (_local(rel.tag) != "Relationship" or len(rel) or (rel.text or "").strip() or (rel.tail or "").strip()
                or set(rel.attrib) - _RELATIONSHIP_ATTRIBUTES
                or not _RELATIONSHIP_ID.fullmatch(rel.get("Id", ""))
                or not rel.get("Type", "").startswith(_RELATIONSHIP_TYPES) or len(rel.get("Type", "")) > 200):
            return [hidden]
        if rel.get("TargetMode") == "External" or resolved not in names:
            return [_fail(f"{part} points outside the workbook's parts ({target[:80]}): a link a checker "
                          "does not follow")]
    return []


#: texts pandas reads as a missing value (its default ``na_values``): shown as empty cells
_READ_AS_MISSING = frozenset({"", "#N/A", "#N/A N/A", "#NA", "-1.#IND", "-1.#QNAN", "-NaN", "-nan", "1.#IND",
                              "1.#QNAN", "<NA>", "N/A", "NA", "NULL", "NaN", "None", "n/a", "nan", "null"})


def _unshown_strings(archive: zipfile.ZipFile, shown: frozenset[str]) -> list[Finding]:
    """Shared strings that are none of the texts the checker is shown: as few strings as the sheet
    has text cells could still hold a whole file each, referenced by no cell."""
    import xml.etree.ElementTree as ET

    try:
        root = ET.fromstring(archive.read("xl/sharedStrings.xml"))
    except ET.ParseError as exc:
        return [_fail(f"xl/sharedStrings.xml is not well-formed XML ({exc})")]
    unshown = []
    for item in root:
        if _local(item.tag) != "si":
            continue
        text = "".join(t.text or "" for t in item.iter() if _local(t.tag) == "t")  # as openpyxl reads it
        if text and text not in shown and text not in _READ_AS_MISSING:
            unshown.append(len(text))
    if not unshown:
        return []
    return [_fail(f"the workbook stores {len(unshown)} string(s) that no cell or header shows (the first: "
                  f"{unshown[0]:,} characters): data hidden from the checker's view")]


def _xml_elements(archive: zipfile.ZipFile, part: str) -> list[Finding]:
    """Elements of a workbook part outside :data:`_SHEET_ELEMENTS` (a formula among them)."""
    import xml.etree.ElementTree as ET

    try:
        with archive.open(part) as fh:
            for _, element in ET.iterparse(fh, events=("start",)):
                name = _local(element.tag)
                if name == "f":
                    return [_fail("cells hold formulas: a spreadsheet shows their results, which the gate does not "
                                  "read; save the values (pandas to_excel, sdc)")]
                if name not in _SHEET_ELEMENTS:
                    return [_fail(f"{part} holds <{name}>, which a checker reading the cells does not see: save "
                                  "the table alone (pandas to_excel, sdc)")]
    except ET.ParseError as exc:
        return [_fail(f"{part} is not well-formed XML ({exc})")]
    return []


#: custom number formats a workbook may define (a format can display any literal text)
MAX_NUMBER_FORMATS = 64
_FORMAT_LITERAL = re.compile(r'"([^"]*)"')
_FORMAT_ESCAPE = re.compile(r"\\(.)")


def _number_formats(archive: zipfile.ZipFile) -> list[Finding]:
    """Custom number formats: a format such as ``"185127512345678"`` shows its text in every cell
    it styles, whatever the value the gate reads."""
    import xml.etree.ElementTree as ET

    try:
        root = ET.fromstring(archive.read("xl/styles.xml"))
    except ET.ParseError as exc:
        return [_fail(f"xl/styles.xml is not well-formed XML ({exc})")]
    codes = [e.get("formatCode", "") for e in root.iter() if _local(e.tag) == "numFmt"]
    if len(codes) > MAX_NUMBER_FORMATS:
        return [_fail(f"the workbook defines {len(codes)} number formats (at most {MAX_NUMBER_FORMATS})")]
    literals = [text for code in codes for text in _FORMAT_LITERAL.findall(code) + _FORMAT_ESCAPE.findall(code)]
    if any(ch.isdigit() for text in literals for ch in text):
        return [_fail("a number format displays literal digits instead of the cell's value: a spreadsheet "
                      "shows them, the gate reads the value")]
    return _text_findings("\n".join(literals))


def _xml_text(archive: zipfile.ZipFile, part: str) -> list[str]:
    import xml.etree.ElementTree as ET

    try:
        return [t for t in ET.fromstring(archive.read(part)).itertext() if t.strip()]
    except ET.ParseError:
        return []


def _png_text(kind: bytes, body: bytes) -> str:
    """The text of a tEXt, zTXt or iTXt chunk (keyword included)."""
    try:
        if kind == b"zTXt":
            keyword, _, rest = body.partition(b"\x00")
            body = keyword + b"\x00" + zlib.decompressobj().decompress(rest[1:], 1 << 20)
        elif kind == b"iTXt":
            keyword, _, rest = body.partition(b"\x00")
            flag, rest = rest[:1], rest[2:]
            for _ in range(2):
                rest = rest.partition(b"\x00")[2]
            body = keyword + b"\x00" + (zlib.decompressobj().decompress(rest, 1 << 20) if flag == b"\x01" else rest)
    except zlib.error:
        return body.decode("latin-1")
    return body.decode("utf-8", "replace")


def _png(data: bytes) -> list[Finding]:
    pos, text, ancillary = 8, 0, 0
    words = []
    while pos + 12 <= len(data):
        (length,) = struct.unpack(">I", data[pos:pos + 4])
        kind = data[pos + 4:pos + 8]
        body = data[pos + 8:pos + 8 + length]
        pos += 12 + length
        if kind == b"IEND":
            trailing = len(data) - pos
            if trailing > 0:
                return [_fail(f"{trailing} bytes after the end of the image")]
            return _png_extras(text, ancillary) + _text_findings("\n".join(words))
        if kind in _PNG_TEXT:
            words.append(_png_text(kind, body))
            text += len(words[-1])
        elif kind not in _PNG_CRITICAL:
            if kind not in _PNG_ANCILLARY:
                return [_fail(f"a PNG chunk of an unknown type ({kind.decode('latin-1')!r}, {length} bytes)")]
            if kind == b"iCCP" and not _icc_profile(body):
                return [_fail("the PNG's colour profile (iCCP) is not an ICC profile")]
            ancillary += length
    return [_fail("the PNG has no end (IEND): its bytes cannot all be accounted for")]


def _icc_profile(body: bytes) -> bool:
    """An iCCP chunk: a name, a compression byte, then a zlib stream of an ICC profile (``acsp``)."""
    try:
        profile = zlib.decompressobj().decompress(body.partition(b"\x00")[2][1:], 1 << 20)
    except zlib.error:
        return False
    return profile[36:40] == b"acsp"


def _png_extras(text: int, ancillary: int) -> list[Finding]:
    if text > MAX_IMAGE_TEXT:
        return [_fail(f"{text} bytes of text inside the image (at most {MAX_IMAGE_TEXT})")]
    if ancillary > MAX_PNG_ANCILLARY:
        return [_fail(f"{ancillary} bytes of ancillary PNG chunks (at most {MAX_PNG_ANCILLARY})")]
    return []


def _text_findings(text: str) -> list[Finding]:
    """Literal tables, blobs and identifiers in the text an image carries."""
    from .code import embedded_data, identifiers

    found = embedded_data(text, "text inside the image") + identifiers(text, "text inside the image")
    return [Finding(rule, Status.FAIL if rule == "embedded-data" else status, message)
            for rule, status, message, _ in found][:3]


def _jpeg(data: bytes) -> list[Finding]:
    pos, comments, application = 2, 0, 0
    while pos + 4 <= len(data) and data[pos] == 0xFF:
        marker = data[pos + 1]
        if marker == 0xDA:  # start of scan: the end marker follows the entropy-coded data
            end = data.find(b"\xff\xd9", pos)
            if end < 0:
                return [_fail("the JPEG has no end marker: its bytes cannot all be accounted for")]
            tail = data[end + 2:].rstrip(b"\x00")
            out = [_fail(f"{len(tail)} bytes after the end of the image")] if tail else []
            if comments > MAX_IMAGE_TEXT:
                out.append(_fail(f"{comments} bytes of comments inside the image"))
            if application > MAX_JPEG_APP:
                out.append(_fail(f"{application} bytes of application segments (EXIF, XMP...) inside the image "
                                 f"(at most {MAX_JPEG_APP})"))
            return out
        (length,) = struct.unpack(">H", data[pos + 2:pos + 4])
        if marker == 0xFE:
            comments += length
        elif 0xE0 <= marker <= 0xEF:
            application += length
        pos += 2 + length
    return [_fail("the JPEG has no image data (no start of scan): its bytes cannot all be accounted for")]


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
        out.append(_fail(f"the PDF carries {', '.join(active)} (attached files or scripts a checker does not see): "
                         "export the figure alone"))
    end = data.rfind(b"%%EOF")
    if end >= 0 and data[end + 5:].strip():
        out.append(_fail(f"{len(data[end + 5:].strip())} bytes after the end of the PDF"))
    return out


def image_findings(data: bytes, kind: str) -> list[Finding]:
    """Bytes of a PNG or JPEG image outside its pixels (``kind``: png or jpeg)."""
    if kind == "png":
        return _png(data) if data.startswith(b"\x89PNG\r\n\x1a\n") else [_fail("not a PNG image")]
    return _jpeg(data) if data.startswith(b"\xff\xd8\xff") else [_fail("not a JPEG image")]


def check_figure(path: Path, name: str, max_bytes: int) -> list[Finding]:
    """Bytes of a PNG, JPEG or PDF figure outside what a viewer shows."""
    if path.stat().st_size > max_bytes:
        return [_fail(f"a figure over {max_bytes} bytes")]
    data = path.read_bytes()
    ext = Path(name).suffix.lower()
    if ext == ".png":
        return _png(data)
    if ext in {".jpg", ".jpeg"}:
        return _jpeg(data)
    if ext == ".pdf":
        return _pdf(data)
    return []
