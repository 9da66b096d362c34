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
#: bytes of text an image may carry (matplotlib writes its name and version: about 60). Split
#: into short chunks, 700 bytes of rows passed a bound of 1 KiB: no line looked like a table
MAX_IMAGE_TEXT = 256
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
        out += _pandas_metadata(pandas_meta, {f.name for f in schema})
    return out + _parquet_layout(path)


#: the keys pandas and pyarrow write in the ``pandas`` metadata (any other key is read by nobody)
_PANDAS_KEYS = frozenset({"index_columns", "column_indexes", "columns", "creator", "pandas_version", "attributes",
                          "name", "field_name", "pandas_type", "numpy_type", "metadata", "library", "version",
                          "encoding", "precision", "scale", "timezone", "unit", "ordered", "num_categories",
                          "kind", "start", "stop", "step"})
#: a string of the ``pandas`` metadata that is not a column's name (a type, a version, a time zone)
MAX_PANDAS_STRING = 40


def _pandas_metadata(raw: bytes, names: set[str]) -> list[Finding]:
    """pandas' description of the columns holds pandas' keys only, each column once, and short
    strings (names excepted, which the checker sees): 700 bytes of rows under a key of its own, or in
    a column's ``metadata``, passed within the size bound and were read by nobody."""
    try:
        meta = json.loads(raw)
    except ValueError:
        return [_fail("the Parquet file's pandas metadata is not JSON")]
    if not isinstance(meta, dict) or len(meta.get("columns") or []) > len(names) or len(
            meta.get("column_indexes") or []) > 8:
        return [_fail("the Parquet file's pandas metadata describes more than the file's columns")]
    stack = [meta]
    while stack:
        item = stack.pop()
        if isinstance(item, dict):
            extra = sorted(set(item) - _PANDAS_KEYS)
            if extra:
                return [_fail(f"the Parquet file's pandas metadata holds a key pandas does not write ({extra[0][:40]!r}): "
                              "data hidden from the checker's view")]
            stack += list(item.values())
        elif isinstance(item, list):
            stack += item
        elif isinstance(item, str) and len(item) > MAX_PANDAS_STRING and item not in names:
            return [_fail(f"the Parquet file's pandas metadata holds a {len(item)}-character string that is no "
                          "column's name: data hidden from the checker's view")]
    return []


def _parquet_layout(path: Path) -> list[Finding]:
    """Every byte of a Parquet file belongs to a column chunk or to the footer, and the footer is
    what the reader parsed: bytes between the chunks and the footer, or fields of the footer no
    reader knows, are skipped by every reader (rows before the footer passed)."""
    import io

    import pyarrow.parquet as pq

    size = path.stat().st_size
    with open(path, "rb") as fh:
        fh.seek(max(size - 8, 0))
        tail = fh.read(8)
    if len(tail) < 8 or tail[4:] != b"PAR1":
        return [_fail("the Parquet file does not end with its footer")]
    footer = struct.unpack("<I", tail[:4])[0]
    metadata = pq.read_metadata(path)
    spans = []
    for g in range(metadata.num_row_groups):
        group = metadata.row_group(g)
        for c in range(group.num_columns):
            chunk = group.column(c)
            if chunk.has_column_index or chunk.has_offset_index:  # written by option only: not checked
                return [_fail("the Parquet file carries a page index, which a checker does not see: write it "
                              "with pandas to_parquet")]
            start = min(o for o in (chunk.dictionary_page_offset, chunk.data_page_offset) if o)
            spans.append((start, start + chunk.total_compressed_size))
    position = 4
    for start, end in sorted(spans):
        if start != position:
            break
        position = end
    reserialised = io.BytesIO()
    metadata.write_metadata_file(reserialised)
    if position != size - 8 - footer or len(reserialised.getvalue()) != footer + 12:
        return [_fail("the Parquet file holds bytes outside its columns and footer: data hidden from the "
                      "checker's view (write it with pandas to_parquet)")]
    return []


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
        return [_fail("the PNG's header (IHDR) is malformed")]
    width, height, depth, colour, _, _, interlace = struct.unpack(">IIBBBBB", header)
    channels = {0: 1, 2: 3, 3: 1, 4: 2, 6: 4}.get(colour)
    if channels is None or not width or not height:
        return [_fail("the PNG's header (IHDR) is malformed")]
    passes = [(0, 0, 8, 8), (4, 0, 8, 8), (0, 4, 4, 8), (2, 0, 4, 4), (0, 2, 2, 4), (1, 0, 2, 2), (0, 1, 1, 2)] \
        if interlace else [(0, 0, 1, 1)]
    expected = 0
    for x0, y0, dx, dy in passes:
        w, h = (width - x0 + dx - 1) // dx, (height - y0 + dy - 1) // dy
        if w and h:
            expected += h * (1 + (w * channels * depth + 7) // 8)
    pixels = _inflate(stream, expected + 1)
    if pixels is None or len(pixels) != expected:
        return [_fail("the PNG's image data hold more than its pixels (bytes after the compressed rows, or rows "
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
                return [_fail(f"{trailing} bytes after the end of the image")]
            return (_png_pixels(header, b"".join(stream)) + _png_extras(text, ancillary)
                    + _text_findings("\n".join(words)))
        if kind == b"IHDR":
            header = body
        elif kind == b"IDAT":
            stream.append(body)
        elif kind in _PNG_TEXT:
            words.append(_png_text(kind, body))
            if words[-1] is None:
                return [_fail(f"a PNG {kind.decode()} chunk holds bytes beyond its compressed text")]
            text += len(words[-1])
        elif kind in _PNG_REFUSED:
            return [_fail(f"a PNG {kind.decode()} chunk (animation frames or a suggested palette), which a checker "
                          "looking at the figure does not see")]
        elif kind not in _PNG_CRITICAL:
            if kind not in _PNG_ANCILLARY:
                return [_fail(f"a PNG chunk of an unknown type ({kind.decode('latin-1')!r}, {length} bytes)")]
            if kind == b"iCCP" and not _icc_profile(body):
                return [_fail("the PNG's colour profile (iCCP) is not an ICC profile, or holds more than it")]
            if length > _PNG_FIXED.get(kind, length):
                return [_fail(f"a PNG {kind.decode()} chunk of {length} bytes (at most {_PNG_FIXED[kind]})")]
            if kind == b"eXIf":  # EXIF is text and numbers a viewer does not show: counted as text
                words.append(body.decode("latin-1"))
                text += length
            ancillary += length
    return [_fail("the PNG has no end (IEND): its bytes cannot all be accounted for")]


def _icc_profile(body: bytes) -> bool:
    """An iCCP chunk: a name, a compression byte, then a zlib stream of an ICC profile (``acsp``)
    that ends where the chunk ends, as long as the profile says it is."""
    profile = _inflate(body.partition(b"\x00")[2][1:])
    return profile is not None and profile[36:40] == b"acsp" and struct.unpack(">I", profile[:4])[0] == len(profile)


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
            out = [_fail(f"{len(tail)} bytes after the end of the image")] if tail else []
            if comments > MAX_IMAGE_TEXT:
                out.append(_fail(f"{comments} bytes of comments inside the image (at most {MAX_IMAGE_TEXT})"))
            if application > MAX_JPEG_APP:
                out.append(_fail(f"{application} bytes of application segments (EXIF, XMP...) inside the image "
                                 f"(at most {MAX_JPEG_APP})"))
            if tables > MAX_JPEG_TABLES:
                out.append(_fail(f"{tables} bytes of JPEG tables (at most {MAX_JPEG_TABLES}): data hidden from the "
                                 "checker's view"))
            return out + _text_findings("\n".join(words))
        if marker not in _JPEG_SEGMENTS:
            return [_fail(f"a JPEG segment of an unknown kind (0xFF{marker:02X}), which readers skip")]
        if pos + 4 > len(data):
            break
        (length,) = struct.unpack(">H", data[pos + 2:pos + 4])
        body = data[pos + 4:pos + 2 + length]
        if any(signature in body for signature in _IMAGE_SIGNATURES):
            return [_fail("a JPEG segment holds another image (a thumbnail a checker does not see)")]
        if marker == 0xFE:
            comments += length
            words.append(body.decode("latin-1"))
        elif 0xE0 <= marker <= 0xEF:
            application += length
            if not body.startswith(_JPEG_APPLICATIONS.get(marker, (b"\x00\x00",))):
                return [_fail(f"a JPEG APP{marker - 0xE0} segment of no known kind ({body[:12]!r}), which no "
                              "viewer shows")]
            kind = next(k for k in _JPEG_APPLICATIONS[marker] if body.startswith(k))
            # one segment of each kind, before the frame: EXIF is one segment, and a second one, or
            # one between the scans of a progressive JPEG, is read by nobody (rows split over four
            # EXIF segments between the scans passed); an ICC profile alone spans numbered segments
            if kind != b"ICC_PROFILE\x00" and (kind in applications or frame):
                return [_fail(f"a second JPEG {kind[:12].decode('latin-1').rstrip(chr(0))} segment, or one after the "
                              "image's frame: read by nobody")]
            applications.add(kind)
            if not body.startswith(b"ICC_PROFILE\x00"):  # EXIF, XMP: text and numbers no viewer shows
                words.append(body.decode("latin-1"))
        else:
            tables += length
            frame = frame or marker in (0xC0, 0xC1, 0xC2, 0xC3, 0xC5, 0xC6, 0xC7, 0xC9, 0xCA, 0xCB, 0xCD, 0xCE, 0xCF)
            problem = _jpeg_table(marker, body, quantisation)
            if problem:
                return [_fail(problem)]
        pos += 2 + length
        if marker == 0xDA:  # entropy-coded data: up to the next marker that is not a restart or a stuffed 0xFF
            while (pos := data.find(b"\xff", pos)) >= 0 and pos + 1 < len(data) and (
                    data[pos + 1] == 0 or 0xD0 <= data[pos + 1] <= 0xD7):
                pos += 2
            if pos < 0:
                break
    return [_fail("the JPEG has no end marker: its bytes cannot all be accounted for")]


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
        out.append(_fail(f"the PDF carries {', '.join(active)} (attached files or scripts a checker does not see): "
                         "export the figure alone"))
    end = data.rfind(b"%%EOF")
    if end >= 0 and data[end + 5:].strip():
        out.append(_fail(f"{len(data[end + 5:].strip())} bytes after the end of the PDF"))
    if data.count(b"%%EOF") > 1 or data.count(b"startxref") > 1:
        # an incremental update: the objects it replaces are read by nobody (matplotlib and R
        # write one revision)
        out.append(_fail("the PDF holds more than one revision (an incremental update): the objects it replaces "
                         "are not shown; export the figure again"))
    orphan = _unreferenced_object(data, text)
    if orphan:
        out.append(_fail(f"the PDF holds object {orphan} that nothing refers to: it is read by nobody"))
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
